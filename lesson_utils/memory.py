"""Measuring what a load costs: anonymous memory, its peak, and each way of loading VGG16.

Used by lesson 05 (its charts) and by the benchmark (:mod:`lesson_utils.bench`). Memory is
the process's *anonymous* resident memory (``RssAnon``): private copies of the weights count,
pages of a file that the kernel maps from its cache do not. Each way is measured in a fresh
process (:func:`measure_load`), so one way's memory cannot hide another's.

Example:
    >>> LOAD_WAYS[0]
    'raw read'
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import torch

from lesson_utils.i18n import _
from lesson_utils.processes import run, write_result

LOAD_WAYS = ["raw read", "naive", "mmap", "meta + mmap + assign", "safetensors"]


def mapped_from(tensor: torch.Tensor, path: str | os.PathLike) -> bool:
    """True when ``tensor``'s memory lies in a memory map of the file ``path`` (Linux ``/proc/self/maps``).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "t.pt"; torch.save({"w": torch.ones(1000)}, p)
        >>> mapped_from(torch.load(p, mmap=True, weights_only=True)["w"], p)
        True
        >>> mapped_from(torch.load(p, weights_only=True)["w"], p)
        False
    """
    address, target = tensor.data_ptr(), str(Path(path).resolve())
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == target:
                low, high = (int(x, 16) for x in fields[0].split("-"))
                if low <= address < high:
                    return True
    return False


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
    raise RuntimeError(_("RssAnon not found in /proc/self/status: this benchmark needs Linux"))


class PeakSampler:
    """Samples :func:`rss_anon` every millisecond in a thread; ``peak`` is the highest seen.

    ``samples`` counts the samples taken so far (on a busy machine the thread may be late).
    It sees memory the process newly makes resident: in a long-lived process, malloc may hand
    back heap pages that are resident already, which no ``RssAnon`` sampler can see (so the
    example maps fresh pages itself; the lesson measures each load in a fresh process).

    Example:
        >>> import mmap
        >>> with PeakSampler() as sampler:
        ...     block = mmap.mmap(-1, 50_000_000, flags=mmap.MAP_PRIVATE)  # fresh private pages...
        ...     block[::4096] = b"x" * len(range(0, 50_000_000, 4096))  # ...made resident
        ...     while sampler.peak - sampler.start < 40_000_000 and sampler.samples < 5_000:
        ...         time.sleep(0.001)  # until the thread has sampled it (at most ~5 s)
        ...     block.close()
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


def load_way(way: str, path: str | os.PathLike) -> object:
    """Get VGG16's weights from ``path`` into memory one of the :data:`LOAD_WAYS` (a model, or bytes).

    These are the lines lesson 05 shows; :func:`measure_load` runs them in a fresh process.

    Example:
        >>> import tempfile, torchvision
        >>> p = Path(tempfile.mkdtemp()) / "vgg.pt"
        >>> with torch.device("meta"):
        ...     torch.save(torchvision.models.vgg16(weights=None).state_dict(), p)  # shapes only: a tiny file
        >>> load_way("meta + mmap + assign", p).classifier[0].weight.shape
        torch.Size([4096, 25088])
    """
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
        raise ValueError(_("unknown load way {way}; expected one of {ways}").format(way=repr(way), ways=LOAD_WAYS))
    return model


def _child(way: str, path: str) -> None:
    if way != "raw read":
        import torchvision  # noqa: F401 - imported before measuring, like in a real program

    with open(path, "rb") as f:  # warm the page cache: measure loading, not the disk
        while f.read(1 << 24):
            pass
    with PeakSampler() as sampler:
        start = time.perf_counter()
        loaded = load_way(way, path)
        seconds = time.perf_counter() - start
    forward_seconds = None
    if way != "raw read":  # a lazy (mmap) load reads the weights here, on first use: count it
        start = time.perf_counter()
        with torch.no_grad():
            loaded(torch.zeros(1, 3, 224, 224))
        forward_seconds = time.perf_counter() - start
    del loaded
    write_result(
        {
            "way": way,
            "seconds": seconds,
            "first_forward_seconds": forward_seconds,
            "extra_anon_bytes": sampler.peak - sampler.start,
        }
    )


def measure_load(way: str, path: str | os.PathLike, timeout: float = 300) -> dict[str, float]:
    """Load ``path`` one ``way`` in a fresh python process; seconds, extra anonymous bytes, and
    the seconds of the first forward pass that follows (None for the raw read).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "x.bin"; _ = p.write_bytes(bytes(1000))
        >>> measure_load("raw read", p)["way"]
        'raw read'
    """
    if way not in LOAD_WAYS:
        raise ValueError(_("unknown load way {way}; expected one of {ways}").format(way=repr(way), ways=LOAD_WAYS))
    # Run this file as a script, not ``-m lesson_utils.memory``: the child then imports torch
    # but not the whole lesson_utils package, which saves seconds per measurement.
    command = [sys.executable, str(Path(__file__).resolve()), "--child", way, str(path)]
    finished = run(command, timeout=timeout)
    if finished.returncode or "result" not in finished.results:
        raise RuntimeError(
            _("measuring {way} failed (exit {code}):").format(way=repr(way), code=finished.returncode)
            + "\n"
            + finished.output[-2000:]
        )
    return finished.results["result"]


if __name__ == "__main__":  # the child of measure_load: python memory.py --child WAY PATH
    if sys.argv[1:2] != ["--child"] or len(sys.argv) != 4:
        raise SystemExit("usage: python -m lesson_utils.memory --child WAY PATH (started by measure_load)")
    _child(sys.argv[2], sys.argv[3])
