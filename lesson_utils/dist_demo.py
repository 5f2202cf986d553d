"""Distributed checkpoints with torch.distributed.checkpoint (DCP), run for real on CPU.

Lesson 06 launches this file with ``torchrun`` (backend ``gloo``), so students can read
exactly what every process does:

    torchrun --nproc_per_node 2 -m lesson_utils.dist_demo save CKPT_DIR   # train a few steps, sharded, then dcp.save
    torchrun --nproc_per_node 2 -m lesson_utils.dist_demo load CKPT_DIR   # load into 2 shards again, check
    python -m lesson_utils.dist_demo load CKPT_DIR                        # load into 1 process (resharding), check
    python -m lesson_utils.dist_demo save CKPT_DIR                        # one process: the same files, one shard
    torchrun --nproc_per_node 2 -m lesson_utils.dist_demo async CKPT_DIR  # dcp.save vs dcp.async_save

The model is sharded with FSDP2 (``fully_shard``): each rank holds half of every parameter.
``save`` also writes ``expected.pt``, the full parameters gathered on rank 0, which ``load``
compares with what it loaded, tensor by tensor.

Example:
    >>> make_model()[0]
    Linear(in_features=32, out_features=64, bias=True)
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from lesson_utils.i18n import _  # a worker speaks the notebook's language (LESSON_LANGUAGE)
from lesson_utils.processes import run, write_result


def make_model() -> nn.Sequential:
    """The small model every process builds (same seed, same initial weights).

    Example:
        >>> sum(p.numel() for p in make_model().parameters())
        6922
    """
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def setup() -> tuple[int, int]:
    """Join the process group torchrun describes (or stay a single process)."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1
    dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def shard(model: nn.Module, world_size: int) -> nn.Module:
    """FSDP2: split every parameter across the ranks (a no-op in a single process)."""
    if world_size == 1:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world_size,))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def full_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter, gathered whole, on rank 0's CPU (the other ranks get an empty dict)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def train(model: nn.Module, optimizer: torch.optim.Optimizer, rank: int, steps: int) -> None:
    generator = torch.Generator().manual_seed(100 + rank)  # each rank sees its own data
    for _step in range(steps):
        x, y = torch.randn(16, 32, generator=generator), torch.randint(0, 10, (16,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def save(folder: Path, steps: int) -> None:
    rank, world = setup()
    model = shard(make_model(), world)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(model, optimizer, rank, steps)
    model_state, optimizer_state = get_state_dict(model, optimizer)  # sharded: each rank its part
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=folder)
    full = full_parameters(model)
    full_counts = [len(full)]  # how many whole tensors each rank received
    if world > 1:
        full_counts = [None] * world
        dist.all_gather_object(full_counts, len(full))
    if rank == 0:
        torch.save(full, folder / "expected.pt")
        local = {k: tuple(v.to_local().shape) for k, v in model_state.items()} if world > 1 else {}
        write_result({"world_size": world, "rank0_local_shapes": local, "full_tensors_per_rank": full_counts})


def load(folder: Path) -> None:
    if not (folder / ".metadata").is_file():
        raise FileNotFoundError(
            _("no DCP checkpoint in {folder}: dcp.save writes a .metadata file there; run 'save' first").format(
                folder=folder
            )
        )
    rank, world = setup()
    model = shard(make_model(), world)  # fresh weights: the checkpoint must overwrite them
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=folder)  # each rank reads the pieces its shards need
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    loaded = full_parameters(model)  # gathered whole on rank 0 (cpu_offload: other ranks get {})
    if rank == 0:
        expected = torch.load(folder / "expected.pt", weights_only=True)
        equal = sorted(loaded) == sorted(expected) and all(torch.equal(loaded[k], expected[k]) for k in expected)
        write_result({"world_size": world, "tensors": len(expected), "all_equal": equal})
        if not equal:
            raise SystemExit(_("the loaded parameters differ from the saved ones"))


def compare_async(folder: Path, steps: int) -> None:
    rank, world = setup()
    model = shard(make_model(), world)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(model, optimizer, rank, steps)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    start = time.perf_counter()
    dcp.save(state, checkpoint_id=folder / "sync")
    sync_blocked = time.perf_counter() - start
    # The background save coordinates the ranks on a process group of its own: sharing the
    # training's group would interleave its messages with FSDP's all-gathers.
    checkpoint_group = dist.new_group(backend="gloo") if world > 1 else None  # one process: no group at all
    start = time.perf_counter()
    future = dcp.async_save(state, checkpoint_id=folder / "async", process_group=checkpoint_group)
    async_blocked = time.perf_counter() - start  # training could go on from here
    train(model, optimizer, rank, steps)  # ...and does, while the files are written
    future.result()  # wait before exiting (or before the next save)
    if rank == 0:
        write_result({"sync_blocked_s": sync_blocked, "async_blocked_s": async_blocked})


def launch(action: str, folder: str | os.PathLike, nproc: int = 2, timeout: float = 180) -> dict:
    """Run ``action`` on ``nproc`` processes (``torchrun``; plain python for 1); rank 0's result.

    A failing worker raises ``RuntimeError`` with the end of its output; a run that takes
    longer than ``timeout`` seconds is killed (every process of it) and raises ``TimeoutError``.

    Example:
        >>> launch("load", "/no/such/checkpoint", nproc=1)
        Traceback (most recent call last):
        ...
        RuntimeError: 'load' on 1 process(es) failed (exit code 1): (rank 0): FileNotFoundError: no DCP checkpoint ...
    """
    if nproc == 1:
        command = [sys.executable, "-m", "lesson_utils.dist_demo", action, str(folder)]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone"]
        command += ["-m", "lesson_utils.dist_demo", action, str(folder)]
    try:
        finished = run(command, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except TimeoutError:
        raise TimeoutError(
            _("{action} on {nproc} process(es) did not finish within {timeout} s; killed").format(
                action=repr(action), nproc=nproc, timeout=timeout
            )
        ) from None
    if finished.returncode:
        errors = sorted(value for name, value in finished.results.items() if name.startswith("error"))
        tail = "\n".join(line for line in finished.output.splitlines() if not line.startswith("W1"))[-3000:]
        raise RuntimeError(
            _("{action} on {nproc} process(es) failed (exit code {code}): {errors}. The end of its output:").format(
                action=repr(action),
                nproc=nproc,
                code=finished.returncode,
                errors="; ".join(errors) or _("see the output below"),
            )
            + "\n"
            + tail
        )
    return finished.results["result"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lesson_utils.dist_demo")
    parser.add_argument("action", choices=["save", "load", "async"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    try:
        if args.action == "save":
            save(args.folder, args.steps)
        elif args.action == "load":
            load(args.folder)
        else:
            compare_async(args.folder, args.steps)
    except BaseException as error:
        if not (isinstance(error, SystemExit) and error.code in (0, None)):
            shown = _("(rank {rank}): {error_type}: {error}").format(
                rank=rank, error_type=type(error).__name__, error=error
            )
            write_result(shown, name=f"error-rank{rank}")
        if dist.is_initialized():
            dist.destroy_process_group()  # no barrier: the other ranks may never get there
        raise
    if dist.is_initialized():
        shut_down()


def shut_down() -> None:
    """Leave the process group cleanly, all ranks together.

    FSDP modules hold the process group through reference cycles, so without ``gc.collect()``
    the group's gloo threads are torn down only at interpreter exit, which can abort the
    process (``terminate called without an active exception``) after its work is done. The
    barrier makes every rank finish talking before any rank closes its connections.
    """
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
