"""A training run that survives being stopped: what lesson 09's preempted process runs.

    python -m lesson_utils.preemption FOLDER --steps 12 --save-every 4 [--no-handler]
                                      [--step-seconds 0.5] [--save-seconds 1]

The run trains lesson 03's ``Net`` on ``OfflineShapes(256)`` one step at a time and resumes
from the newest checkpoint in FOLDER that loads and verifies
(:func:`~lesson_utils.checkpoint.latest_valid_checkpoint`), or starts afresh when there is none:

- the **data order** comes from the step number alone (:func:`batch_at`: epoch ``e``'s shuffle
  is drawn from ``(seed, e)``, the position is ``step % STEPS_PER_EPOCH``), so a resume in the
  middle of an epoch goes on with the right batch;
- a **full checkpoint** (:func:`checkpoint_state`: model, optimizer, scheduler, RNG states, step)
  is written with :func:`~lesson_utils.checkpoint.save_checkpoint` every ``--save-every`` steps
  and at the end, keeping the last three;
- on **SIGTERM** (what a cluster scheduler or a spot machine sends before it kills) the handler
  only sets a flag; the step in progress finishes, a checkpoint is written, and the process exits
  with 143 (128 + SIGTERM, what a shell reports for a process ended by SIGTERM), so whoever
  started it can tell that it was stopped, not finished. ``--no-handler`` keeps Python's default:
  SIGTERM ends the process at once. ``--step-seconds`` makes each step last that long (a sleep
  standing for a big model's computation), so that a signal lands in the middle of a step;
  ``--save-seconds`` makes each save take that much longer (a big checkpoint on slow storage).

It reports in result files (:func:`lesson_utils.processes.write_result`): ``progress`` when each
step begins (the step, the losses so far), ``signal`` when the handler runs, ``result`` at the end.
Lesson 09 shows :func:`train`'s loop and the handler in its own cells and checks that this
process ends with exactly the same tensors.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> run = train(folder, steps=2, save_every=1)
    >>> run.status, run.step, sorted(p.name for p in folder.iterdir())
    ('finished', 2, ['ckpt_00000001.pt', 'ckpt_00000002.pt'])
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lesson_utils.checkpoint import checkpoint_name, latest_valid_checkpoint, save_checkpoint
from lesson_utils.data import OfflineShapes
from lesson_utils.i18n import _
from lesson_utils.models import Net
from lesson_utils.processes import RESULT_DIR_ENV, write_result
from lesson_utils.reproducibility import epoch_order_generator, rng_state, seed_everything, set_rng_state

SEED = 0
IMAGES, BATCH_SIZE = 256, 32
STEPS_PER_EPOCH = IMAGES // BATCH_SIZE  # 8: the last batch is always full
KEEP_LAST = 3
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM  # 143
REQUIRED = ["step", "model_state_dict", "optimizer_state_dict", "scheduler_state_dict", "rng_state"]

_dataset: OfflineShapes | None = None


def dataset() -> OfflineShapes:
    """The run's training images (``OfflineShapes(256)``), drawn once per process.

    Example:
        >>> len(dataset())
        256
    """
    global _dataset
    if _dataset is None:
        _dataset = OfflineShapes(IMAGES, seed=SEED)
    return _dataset


def device() -> torch.device:
    """The GPU when there is one (with deterministic kernels, as lesson 03 sets), else the CPU.

    Example:
        >>> device().type in ("cpu", "cuda")
        True
    """
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
        torch.use_deterministic_algorithms(True)
        return torch.device("cuda")
    return torch.device("cpu")


def build() -> tuple[Net, torch.optim.SGD, torch.optim.lr_scheduler.StepLR]:
    """Model, optimizer and scheduler, in that order: ``Net`` on its device, SGD on *it*, StepLR.

    The learning rate halves after every epoch (the scheduler steps once per training step).

    Example:
        >>> model, optimizer, scheduler = build()
        >>> optimizer.param_groups[0]["lr"], scheduler.step_size
        (0.02, 8)
    """
    model = Net().to(device())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=STEPS_PER_EPOCH, gamma=0.5)
    return model, optimizer, scheduler


def batch_at(step: int, seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of training step ``step``: epoch ``step // 8``'s shuffle, at position ``step % 8``.

    Example:
        >>> images, labels = batch_at(9)
        >>> images.shape, torch.equal(labels, batch_at(9)[1])
        (torch.Size([32, 3, 32, 32]), True)
    """
    epoch, position = divmod(step, STEPS_PER_EPOCH)
    order = torch.randperm(IMAGES, generator=epoch_order_generator(seed, epoch))
    chosen = order[position * BATCH_SIZE : (position + 1) * BATCH_SIZE]
    return dataset().images[chosen], dataset().labels[chosen]


def train_step(
    model: Net, optimizer: torch.optim.Optimizer, scheduler: Any, images: torch.Tensor, labels: torch.Tensor
) -> float:
    """One step: random flips from torch's global RNG (as lesson 03), SGD, then the scheduler; the loss.

    Example:
        >>> model, optimizer, scheduler = build()
        >>> isinstance(train_step(model, optimizer, scheduler, *batch_at(0)), float)
        True
    """
    model.train()
    flip = torch.rand(len(images)) < 0.5  # augmentation from the global RNG: rng_state() must hold it
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    where = next(model.parameters()).device
    images, labels = images.to(where), labels.to(where)  # the data follow the model
    optimizer.zero_grad()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


def checkpoint_state(step: int, model: Net, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Everything a bit-exact resume needs after ``step`` steps (lesson 03's full checkpoint).

    Example:
        >>> sorted(checkpoint_state(0, *build()))
        ['data_seed', 'model_state_dict', 'optimizer_state_dict', 'rng_state', 'scheduler_state_dict', 'step']
    """
    return {
        "step": step,  # steps done: the next one to run
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "scheduler_state_dict": scheduler.state_dict(),
        "rng_state": rng_state(),  # the flips of the steps to come
        "data_seed": SEED,  # with the step, the data order
    }


def restore(checkpoint: dict[str, Any]) -> tuple[int, Net, torch.optim.SGD, Any]:
    """Rebuild what :func:`checkpoint_state` saved: ``(step, model, optimizer, scheduler)``, RNGs restored.

    Example:
        >>> state = checkpoint_state(3, *build())
        >>> restore(state)[0]
        3
    """
    model, optimizer, scheduler = build()
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    scheduler.load_state_dict(checkpoint["scheduler_state_dict"])
    set_rng_state(checkpoint["rng_state"])
    return checkpoint["step"], model, optimizer, scheduler


@dataclass
class Run:
    """How a call of :func:`train` ended: ``"finished"`` or ``"preempted"``, after ``step`` steps."""

    status: str
    start_step: int
    step: int
    losses: list[float] = field(default_factory=list)  # of the steps this call ran
    saved_at: float | None = None  # time.monotonic() when its last checkpoint was written


def train(
    folder: str | os.PathLike,
    steps: int,
    save_every: int,
    step_seconds: float = 0.0,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, list[float]], None] | None = None,
    save_seconds: float = 0.0,
) -> Run:
    """Train up to ``steps`` steps from the newest valid checkpoint in ``folder`` (or from the start).

    A checkpoint is written every ``save_every`` steps, at the end, and when ``should_stop()`` says
    so after a step; then it returns ``"preempted"``. ``on_step(step, losses)`` is called as each
    step begins. ``step_seconds`` and ``save_seconds`` lengthen each step and each save (sleeps).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> train(folder, steps=3, save_every=2, should_stop=lambda: True).step  # stopped after one step
        1
        >>> train(folder, steps=3, save_every=2).start_step  # resumed there
        1
    """
    folder = Path(folder)
    found = latest_valid_checkpoint(folder, required=REQUIRED)
    if found is None:
        seed_everything(SEED)
        step, (model, optimizer, scheduler) = 0, build()
    else:
        step, model, optimizer, scheduler = restore(found[1])
    run = Run("finished", step, step)
    while step < steps:
        if on_step is not None:
            on_step(step, run.losses)
        time.sleep(step_seconds)  # stands for the computation of a big model
        run.losses.append(train_step(model, optimizer, scheduler, *batch_at(step)))
        step += 1
        stop = should_stop()  # read once: a signal arriving now is seen after the next step
        if step % save_every == 0 or step == steps or stop:
            state = checkpoint_state(step, model, optimizer, scheduler)
            time.sleep(save_seconds)  # stands for writing a big checkpoint to slow storage
            save_checkpoint(folder / checkpoint_name(step), state, keep_last=KEEP_LAST)
            run.saved_at = time.monotonic()
        run.step = step
        if stop:
            run.status = "preempted"
            break
    return run


def read_result(folder: str | os.PathLike, name: str) -> Any:
    """What a child wrote with ``write_result(value, name)`` into ``folder``; None if nothing yet.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> read_result(folder, "progress") is None
        True
        >>> _ = (Path(folder) / "progress.json").write_text('{"step": 4}')
        >>> read_result(folder, "progress")
        {'step': 4}
    """
    path = Path(folder) / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> None:
    """``python -m lesson_utils.preemption FOLDER ...``: train, stop cleanly on SIGTERM, report in files."""
    from lesson_utils.numerics import use_numeric_profile

    use_numeric_profile()  # first: the same bits as the notebook that started this process
    parser = argparse.ArgumentParser(prog="python -m lesson_utils.preemption", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the checkpoints are (resumed from, written to)")
    parser.add_argument("--steps", type=int, default=12, help="train until this many steps are done")
    parser.add_argument("--save-every", type=int, default=4, help="a checkpoint every this many steps")
    parser.add_argument("--step-seconds", type=float, default=0.0, help="make each step last this long")
    parser.add_argument("--save-seconds", type=float, default=0.0, help="make each save take this much longer")
    parser.add_argument("--no-handler", action="store_true", help="keep the default: SIGTERM ends the process")
    args = parser.parse_args(argv)
    reporting = bool(os.environ.get(RESULT_DIR_ENV))
    received: dict[str, Any] = {}
    current = {"step": 0}

    def on_sigterm(signum: int, frame: object) -> None:
        # Only note it: the step in progress finishes, then the loop saves and stops.
        received.update(step=current["step"], at=time.monotonic())
        if reporting:
            write_result({"during_step": current["step"]}, name="signal")

    if not args.no_handler:
        signal.signal(signal.SIGTERM, on_sigterm)

    def on_step(step: int, losses: list[float]) -> None:
        current["step"] = step
        if reporting:
            write_result({"step": step, "losses": losses}, name="progress")

    timing = {"step_seconds": args.step_seconds, "save_seconds": args.save_seconds}
    run = train(args.folder, args.steps, args.save_every, should_stop=lambda: bool(received), on_step=on_step, **timing)
    result = {"status": run.status, "start_step": run.start_step, "step": run.step, "losses": run.losses}
    if run.status == "preempted":
        result["signal_during_step"] = received["step"]
        result["seconds_signal_to_saved"] = run.saved_at - received["at"]
    if reporting:
        write_result(result)
    if run.status == "preempted":
        print(_("preempted: checkpoint saved after step {step}; exiting").format(step=run.step), flush=True)
        sys.exit(PREEMPTED_EXIT_CODE)
    print(_("finished: {step} steps").format(step=run.step), flush=True)


if __name__ == "__main__":
    main()
