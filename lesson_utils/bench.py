"""Benchmark: saving and loading VGG16's state_dict (553 MB), side by side, as ratios.

    python -m lesson_utils.bench                    # prints a table, writes build/bench.json
    python -m lesson_utils.bench --json out.json --repeats 5

Save side (in this process, best of ``--repeats``): raw ``write()`` + ``fsync`` of the
bytes of a ``torch.save`` file, ``save_checkpoint`` (atomic and durable), plain
``torch.save`` (neither), and ``torch.save`` with its CRC32s turned off. Load side: each
way in a **fresh subprocess**, so one way's memory cannot hide another's: raw ``read()``, naive (build, ``torch.load``,
``load_state_dict``), ``mmap=True``, meta device + ``mmap=True`` + ``assign=True``, and
safetensors. Memory is the peak of the process's *anonymous* memory (``RssAnon``, sampled
every millisecond) above what it held before the load: private copies of the weights
count, pages of the file that the kernel maps from its cache do not. Each load is also
timed together with the first forward pass after it, because a memory-mapped load defers
reading the weights to their first use.

The machine is shared and noisy: compare the ratios of one run, not seconds across runs.
The measuring itself lives in :mod:`lesson_utils.memory` (lesson 05 uses it too); this
module is the command line and the table.

Example:
    >>> LOAD_WAYS[0]
    'raw read'
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from lesson_utils.memory import LOAD_WAYS, measure_load


def _best_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def _write_fsync(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def run(repeats: int = 1, folder: str | None = None) -> dict[str, object]:
    """Measure everything; returns the results (seconds, bytes and ratios)."""
    import torchvision
    from safetensors.torch import save_file
    from torch.utils.serialization import config

    from lesson_utils.checkpoint import save_checkpoint

    torch.manual_seed(0)
    state = torchvision.models.vgg16(weights=None).state_dict()
    weight_bytes = sum(t.numel() * t.element_size() for t in state.values())
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tmp = Path(tmp)
        torch_file, safetensors_file = tmp / "vgg16.pt", tmp / "vgg16.safetensors"
        save = {"torch.save": _best_seconds(lambda: torch.save(state, torch_file), repeats)}  # also the load file
        data = torch_file.read_bytes()
        save["save_checkpoint"] = _best_seconds(lambda: save_checkpoint(tmp / "ckpt.pt", state), repeats)
        save["raw write + fsync"] = _best_seconds(lambda: _write_fsync(tmp / "raw.bin", data), repeats)
        config.save.compute_crc32 = False
        try:
            save["torch.save, CRC32 off"] = _best_seconds(lambda: torch.save(state, tmp / "nocrc.pt"), repeats)
        finally:
            config.save.compute_crc32 = True  # a process-wide setting: always put it back
        save = {
            name: save[name] for name in ("raw write + fsync", "save_checkpoint", "torch.save", "torch.save, CRC32 off")
        }
        save_file(state, safetensors_file)
        load = {}
        for way in LOAD_WAYS:
            path = safetensors_file if way == "safetensors" else torch_file
            runs = [measure_load(way, path) for _ in range(repeats)]
            load[way] = {
                "seconds": min(r["seconds"] for r in runs),
                "extra_anon_bytes": min(r["extra_anon_bytes"] for r in runs),
                "load_and_forward_seconds": min(r["seconds"] + (r["first_forward_seconds"] or 0) for r in runs),
            }
    raw_write, raw_read, naive = save["raw write + fsync"], load["raw read"]["seconds"], load["naive"]["seconds"]
    naive_forward = load["naive"]["load_and_forward_seconds"]
    return {
        "weights_bytes": weight_bytes,
        "repeats": repeats,
        "save": {k: {"seconds": v, "vs_raw_write_fsync": v / raw_write} for k, v in save.items()},
        "load": {
            k: {
                **v,
                "vs_raw_read": v["seconds"] / raw_read,
                "speedup_vs_naive": naive / v["seconds"],
                "speedup_vs_naive_with_forward": naive_forward / v["load_and_forward_seconds"],
                "extra_memory_vs_weights": v["extra_anon_bytes"] / weight_bytes,
            }
            for k, v in load.items()
        },
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }


def format_table(results: dict[str, object]) -> str:
    """The results as a text table of ratios (and the seconds they come from)."""
    lines = [f"VGG16 state_dict: {results['weights_bytes'] / 1e6:.0f} MB, best of {results['repeats']}", ""]
    lines.append(f"{'save':<22} {'seconds':>8} {'vs raw write+fsync':>20}")
    for name, r in results["save"].items():
        lines.append(f"{name:<22} {r['seconds']:>8.3f} {r['vs_raw_write_fsync']:>19.2f}x")
    lines += [
        "",
        f"{'load':<22} {'seconds':>8} {'vs raw read':>12} {'faster than naive':>18} {'extra memory':>14}"
        f" {'+ 1st forward':>14} {'faster than naive':>18}",
    ]
    for name, r in results["load"].items():
        with_forward = (
            ""
            if name == "raw read"
            else (f" {r['load_and_forward_seconds']:>14.3f} {r['speedup_vs_naive_with_forward']:>17.1f}x")
        )
        lines.append(
            f"{name:<22} {r['seconds']:>8.3f} {r['vs_raw_read']:>11.2f}x {r['speedup_vs_naive']:>17.1f}x"
            f" {r['extra_memory_vs_weights']:>11.2f}x w{with_forward}"
        )
    lines.append("(extra memory: peak anonymous memory added by the load, as a multiple of the weights' bytes;")
    lines.append(" + 1st forward: the load and one forward pass on a 224x224 image, where a lazy load reads the file)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lesson_utils.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="build/bench.json", help="where to write the results (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each measurement; the best counts")
    args = parser.parse_args(argv)
    results = run(repeats=args.repeats)
    print(format_table(results))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
