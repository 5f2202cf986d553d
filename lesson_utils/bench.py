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


def _timings(action, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def _write_fsync(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_fsync_rename(path: Path, data: bytes) -> None:
    """What an atomic save does with raw bytes: a new file, fsync, rename over, fsync the folder."""
    _write_fsync(path.with_name(path.name + ".tmp"), data)
    os.replace(path.with_name(path.name + ".tmp"), path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def run(repeats: int = 3, folder: str | None = None) -> dict[str, object]:
    """Measure everything; returns the results (seconds, bytes and ratios)."""
    import torchvision
    from safetensors.torch import save_file
    from torch.utils.serialization import config

    from lesson_utils.checkpoint import content_digests, save_checkpoint

    torch.manual_seed(0)
    state = torchvision.models.vgg16(weights=None).state_dict()
    weight_bytes = sum(t.numel() * t.element_size() for t in state.values())
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tmp = Path(tmp)
        torch_file, safetensors_file = tmp / "vgg16.pt", tmp / "vgg16.safetensors"
        torch.save(state, torch_file)  # also the file the loads read
        data = torch_file.read_bytes()

        def torch_save_without_crc32() -> None:
            config.save.compute_crc32 = False
            try:
                torch.save(state, tmp / "nocrc.pt")
            finally:
                config.save.compute_crc32 = True  # a process-wide setting: always put it back

        ways = {
            "raw write + fsync": lambda: _write_fsync(tmp / "raw.bin", data),
            "raw, new file + rename": lambda: _write_fsync_rename(tmp / "atomic.bin", data),
            "save_checkpoint": lambda: save_checkpoint(tmp / "ckpt.pt", state),
            "torch.save": lambda: torch.save(state, tmp / "plain.pt"),
            "torch.save, CRC32 off": torch_save_without_crc32,
            "XXH3 of every tensor": lambda: content_digests(state),
        }
        save = {name: [] for name in ways}
        save_rounds = max(5, repeats)  # a save takes a second: more rounds cost little and steady the best
        for round_ in range(1 + save_rounds):  # round robin, so a slow spell of the disk hits every way alike
            for name, way in ways.items():
                os.sync()  # no way pays for the write-back of the one before
                seconds = _timings(way, 1)
                if round_:  # round 0 warms up: a file system writes its first blocks slower (seen here: 2-3x)
                    save[name] += seconds
        save_file(state, safetensors_file)
        load = {}
        for way in LOAD_WAYS:
            path = safetensors_file if way == "safetensors" else torch_file
            runs = [measure_load(way, path) for _ in range(repeats)]
            load[way] = {
                "seconds": min(r["seconds"] for r in runs),
                "slowest_seconds": max(r["seconds"] for r in runs),
                "extra_anon_bytes": min(r["extra_anon_bytes"] for r in runs),
                "load_and_forward_seconds": min(r["seconds"] + (r["first_forward_seconds"] or 0) for r in runs),
            }
    raw_write, raw_read, naive = min(save["raw write + fsync"]), load["raw read"]["seconds"], load["naive"]["seconds"]
    naive_forward = load["naive"]["load_and_forward_seconds"]
    raw_atomic = min(save["raw, new file + rename"])
    return {
        "weights_bytes": weight_bytes,
        "repeats": repeats,
        "save_rounds": save_rounds,
        "save": {
            k: {
                "seconds": min(v),
                "slowest_seconds": max(v),
                "vs_raw_write_fsync": min(v) / raw_write,
                "vs_raw_new_file_rename": min(v) / raw_atomic,
            }
            for k, v in save.items()
        },
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
    lines = [
        f"VGG16 state_dict: {results['weights_bytes'] / 1e6:.0f} MB; saves: best of {results.get('save_rounds', 1)}"
        f" rounds after a warm-up; loads: best of {results['repeats']}, each in a fresh process",
        "",
    ]
    lines.append(f"{'save':<22} {'seconds':>8} {'slowest':>8} {'vs raw write+fsync':>20} {'vs raw new+rename':>18}")
    for name, r in results["save"].items():
        lines.append(
            f"{name:<22} {r['seconds']:>8.3f} {r['slowest_seconds']:>8.3f} {r['vs_raw_write_fsync']:>19.2f}x"
            f" {r['vs_raw_new_file_rename']:>17.2f}x"
        )
    lines += [
        "",
        f"{'load':<22} {'seconds':>8} {'slowest':>8} {'vs raw read':>12} {'faster than naive':>18} {'extra memory':>14}"
        f" {'+ 1st forward':>14} {'faster than naive':>18}",
    ]
    for name, r in results["load"].items():
        with_forward = (
            ""
            if name == "raw read"
            else (f" {r['load_and_forward_seconds']:>14.3f} {r['speedup_vs_naive_with_forward']:>17.1f}x")
        )
        lines.append(
            f"{name:<22} {r['seconds']:>8.3f} {r['slowest_seconds']:>8.3f} {r['vs_raw_read']:>11.2f}x"
            f" {r['speedup_vs_naive']:>17.1f}x"
            f" {r['extra_memory_vs_weights']:>11.2f}x w{with_forward}"
        )
    lines.append("(seconds: the best of the runs, slowest: the worst, to show how noisy the machine was;")
    lines.append(" raw new+rename: the same bytes written as an atomic save writes them, to a new file renamed over;")
    lines.append(" extra memory: peak anonymous memory added by the load, as a multiple of the weights' bytes;")
    lines.append(" + 1st forward: the load and one forward pass on a 224x224 image, where a lazy load reads the file)")
    return "\n".join(lines)


def plot(results: dict[str, object], path: Path) -> None:
    """Draw the ratios of one run: save time vs raw write + fsync, load speed-up and memory vs naive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_save, ax_load, ax_memory) = plt.subplots(1, 3, figsize=(17, 4.4), layout="constrained")
    save = results["save"]
    bars = ax_save.barh(list(save), [r["vs_raw_write_fsync"] for r in save.values()], color="tab:blue")
    ax_save.bar_label(bars, fmt="%.2fx", padding=2, fontsize=8)
    ax_save.axvline(1, color="black", ls=":", lw=1)
    ax_save.set(xlabel="time / raw write + fsync (lower is better)", title="saving VGG16's weights")
    load = {name: r for name, r in results["load"].items() if name != "raw read"}
    speedups = [r["speedup_vs_naive"] for r in load.values()]
    bars = ax_load.barh([n + " (load)" for n in load], speedups, color="tab:green")
    ax_load.bar_label(bars, fmt="%.1fx", padding=2, fontsize=8)
    bars = ax_load.barh(
        [n + " (+ 1st forward)" for n in load],
        [r["speedup_vs_naive_with_forward"] for r in load.values()],
        color="tab:green",
        alpha=0.4,
    )
    ax_load.bar_label(bars, fmt="%.1fx", padding=2, fontsize=8)
    ax_load.set_xscale("log")
    ax_load.set(xlabel="times faster than naive (log scale, higher is better)", title="loading")
    bars = ax_memory.barh(list(results["load"]), [r["extra_memory_vs_weights"] for r in results["load"].values()])
    ax_memory.bar_label(bars, fmt="%.2fx", padding=2, fontsize=8)
    ax_memory.set(xlabel="extra private memory / weights (lower is better)", title="memory a load adds")
    for ax in (ax_save, ax_load, ax_memory):
        ax.invert_yaxis()
    fig.suptitle(
        f"VGG16, saves best of {results.get('save_rounds', 1)}, loads best of {results['repeats']};"
        f" {results['cpus']} CPUs, torch {results['torch']}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lesson_utils.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="build/bench.json", help="where to write the results (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement; the best counts (default: 3)")
    parser.add_argument("--plot", default="build/bench.png", help="where to draw the ratios (default: %(default)s)")
    args = parser.parse_args(argv)
    results = run(repeats=args.repeats)
    print(format_table(results))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    plot(results, Path(args.plot))
    print(f"\nwritten to {args.json} and {args.plot}")


if __name__ == "__main__":
    main()
