"""Benchmark: saving and loading VGG16's state_dict (553 MB), side by side, as ratios.

    python -m lesson_utils.bench                    # prints a table, writes build/bench.json
    python -m lesson_utils.bench --json out.json --repeats 5

Save side (in this process, best of ``--repeats``): raw ``write()`` + ``fsync`` of the
bytes of a ``torch.save`` file, ``save_checkpoint`` (atomic and durable), plain
``torch.save`` (neither). Load side: each way in a **fresh subprocess**, so one way's
memory cannot hide another's: raw ``read()``, naive (build, ``torch.load``,
``load_state_dict``), ``mmap=True``, meta device + ``mmap=True`` + ``assign=True``, and
safetensors. Memory is the peak of the process's *anonymous* memory (``RssAnon``, sampled
every millisecond) above what it held before the load: private copies of the weights
count, pages of the file that the kernel maps from its cache do not.

The machine is shared and noisy: compare the ratios of one run, not seconds across runs.
Lesson 05 calls :func:`measure_load` to draw its charts.

Example:
    >>> LOAD_WAYS[0]
    'raw read'
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

LOAD_WAYS = ["raw read", "naive", "mmap", "meta + mmap + assign", "safetensors"]


def rss_anon() -> int:
    """This process's anonymous resident memory in bytes (Linux ``/proc/self/status``).

    Example:
        >>> rss_anon() > 0
        True
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("RssAnon not found in /proc/self/status: this benchmark needs Linux")


class PeakSampler:
    """Samples :func:`rss_anon` every millisecond in a thread; ``peak`` is the highest seen.

    ``samples`` counts the samples taken so far (on a busy machine the thread may be late).

    Example:
        >>> with PeakSampler() as sampler:
        ...     block = bytearray(50_000_000)
        >>> sampler.peak - sampler.start > 40_000_000
        True
    """

    def __enter__(self) -> PeakSampler:
        self.start = self.peak = rss_anon()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss_anon())
            self.samples += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon())


def _load(way: str, path: str) -> object:
    """One way of getting VGG16's weights from ``path`` into memory (runs in the child)."""
    if way == "raw read":
        with open(path, "rb") as f:
            return f.read()
    import torchvision
    from safetensors.torch import load_file

    if way == "naive":
        model = torchvision.models.vgg16(weights=None)
        model.load_state_dict(torch.load(path, weights_only=True))
    elif way == "mmap":
        model = torchvision.models.vgg16(weights=None)
        model.load_state_dict(torch.load(path, mmap=True, weights_only=True))
    elif way == "meta + mmap + assign":
        with torch.device("meta"):
            model = torchvision.models.vgg16(weights=None)  # no memory, no random init
        model.load_state_dict(torch.load(path, mmap=True, weights_only=True), assign=True)
    elif way == "safetensors":
        model = torchvision.models.vgg16(weights=None)
        model.load_state_dict(load_file(path))
    else:
        raise ValueError(f"unknown load way {way!r}; expected one of {LOAD_WAYS}")
    return model


def _child(way: str, path: str) -> None:
    if way != "raw read":
        import torchvision  # noqa: F401 - imported before measuring, like in a real program

    with open(path, "rb") as f:  # warm the page cache: measure loading, not the disk
        while f.read(1 << 24):
            pass
    with PeakSampler() as sampler:
        start = time.perf_counter()
        loaded = _load(way, path)
        seconds = time.perf_counter() - start
    del loaded
    print(json.dumps({"way": way, "seconds": seconds, "extra_anon_bytes": sampler.peak - sampler.start}))


def measure_load(way: str, path: str | os.PathLike, timeout: float = 300) -> dict[str, float]:
    """Load ``path`` one ``way`` in a fresh python process; seconds and extra anonymous bytes.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "x.bin"; _ = p.write_bytes(bytes(1000))
        >>> measure_load("raw read", p)["way"]
        'raw read'
    """
    if way not in LOAD_WAYS:
        raise ValueError(f"unknown load way {way!r}; expected one of {LOAD_WAYS}")
    # Run this file as a script, not ``-m lesson_utils.bench``: the child then imports torch
    # but not the whole lesson_utils package, which saves seconds per measurement.
    command = [sys.executable, str(Path(__file__).resolve()), "--child", way, str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"measuring {way!r} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


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
        save = {name: save[name] for name in ("raw write + fsync", "save_checkpoint", "torch.save")}
        save_file(state, safetensors_file)
        load = {}
        for way in LOAD_WAYS:
            path = safetensors_file if way == "safetensors" else torch_file
            runs = [measure_load(way, path) for _ in range(repeats)]
            load[way] = {
                "seconds": min(r["seconds"] for r in runs),
                "extra_anon_bytes": min(r["extra_anon_bytes"] for r in runs),
            }
    raw_write, raw_read, naive = save["raw write + fsync"], load["raw read"]["seconds"], load["naive"]["seconds"]
    return {
        "weights_bytes": weight_bytes,
        "repeats": repeats,
        "save": {k: {"seconds": v, "vs_raw_write_fsync": v / raw_write} for k, v in save.items()},
        "load": {
            k: {
                **v,
                "vs_raw_read": v["seconds"] / raw_read,
                "speedup_vs_naive": naive / v["seconds"],
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
    lines += ["", f"{'load':<22} {'seconds':>8} {'vs raw read':>12} {'faster than naive':>18} {'extra memory':>14}"]
    for name, r in results["load"].items():
        lines.append(
            f"{name:<22} {r['seconds']:>8.3f} {r['vs_raw_read']:>11.2f}x {r['speedup_vs_naive']:>17.1f}x"
            f" {r['extra_memory_vs_weights']:>11.2f}x w"
        )
    lines.append("(extra memory: peak anonymous memory added by the load, as a multiple of the weights' bytes)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lesson_utils.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="build/bench.json", help="where to write the results (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each measurement; the best counts")
    parser.add_argument("--child", nargs=2, metavar=("WAY", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return
    results = run(repeats=args.repeats)
    print(format_table(results))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
