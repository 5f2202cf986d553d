"""Measuring what reading a shared checkpoint costs: the bytes a process touches and reads, the memory a look takes.

Used by lesson 08 (sharing a model). Three measures, all from Linux's ``/proc``:

- :func:`touched_bytes`: how much of a file this process has brought into its memory through
  memory maps (the ``Rss`` of its mappings of the file, ``/proc/self/smaps``). safetensors and
  ``torch.load(mmap=True)`` map the file, so a tensor's bytes count once they are touched.
- :func:`disk_bytes_read`: what this process has read from storage (``read_bytes`` in
  ``/proc/self/io``); after :func:`drop_from_page_cache`, a read must go to the disk, and the
  count includes the kernel's read-ahead. Where the file lives in memory (``tmpfs``) there is
  no disk: :func:`drop_from_page_cache` says so by returning False.
- :func:`measure_inspection`: in a fresh process, load a file each of the :data:`INSPECT_WAYS`
  (:func:`load_for_inspection`), list every tensor's shape and dtype, and report what holding
  each result adds to the process's memory.

Example:
    >>> import tempfile
    >>> from safetensors import safe_open
    >>> from safetensors.torch import save_file
    >>> p = Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> save_file({"w": torch.zeros(4096, 1024)}, p)  # 16 MiB
    >>> with safe_open(p, framework="pt") as f:
    ...     row = f.get_slice("w")[3000]  # a view of the mapped file: nothing read yet
    ...     before = touched_bytes(p)
    ...     total = float(row.sum())  # touching the row reads its pages (4 KiB, and neighbours)
    ...     after = touched_bytes(p)
    >>> 0 < after - before <= 4 << 20  # far less than the tensor's 16 MiB
    True
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from lesson_utils.i18n import _
from lesson_utils.processes import run, write_result

# The ways to read a torch.save file's shapes and dtypes; the plain load, which copies everything, last.
INSPECT_WAYS = ["mmap=True", 'map_location="meta"', "FakeTensorMode", "skip_data", "torch.load"]


def touched_bytes(path: str | os.PathLike) -> int:
    """Bytes of ``path`` resident in this process's memory maps of it (Linux ``/proc/self/smaps``).

    A mapping's ``Rss`` counts the pages the process has touched, and the neighbours the kernel
    maps along with a touched page (from 64 KiB to a 2 MiB block around it, depending on the
    kernel); pages only cached by the kernel do not count.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "t.pt"; torch.save({"w": torch.ones(1 << 20)}, p)
        >>> touched_bytes(p)
        0
        >>> w = torch.load(p, mmap=True, weights_only=True)["w"]
        >>> _ = w.sum(); touched_bytes(p) >= 4 << 20
        True
    """
    target, total, inside = str(Path(path).resolve()), 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split(maxsplit=5)
            if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's first line: range, perms, ..., path
                inside = len(fields) == 6 and fields[5].strip() == target
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


def disk_bytes_read() -> int:
    """Bytes this process has read from storage so far (``read_bytes``, Linux ``/proc/self/io``).

    Example:
        >>> disk_bytes_read() >= 0
        True
    """
    with open("/proc/self/io") as counters:
        for line in counters:
            name, value = line.split(":", 1)
            if name == "read_bytes":
                return int(value)
    raise RuntimeError(_("read_bytes not found in /proc/self/io: this measure needs Linux"))


def drop_from_page_cache(path: str | os.PathLike) -> bool:
    """Ask the kernel to forget its cached copy of ``path`` (``posix_fadvise(DONTNEED)``); whether it did.

    The next read of the file then comes from the disk, and :func:`disk_bytes_read` counts it.
    Pages that some process still maps stay cached. On ``tmpfs`` the cache *is* the file, so
    nothing is dropped and False is returned: there, no read ever reaches a disk.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "x.bin"; _ = p.write_bytes(bytes(1 << 20))
        >>> isinstance(drop_from_page_cache(p), bool)
        True
    """
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # dirty pages cannot be dropped: write them out first
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        before = disk_bytes_read()
        os.pread(descriptor, 1, 0)  # one byte: from the disk if the cache was dropped
        dropped = disk_bytes_read() > before
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)  # and forget that byte's page again
    finally:
        os.close(descriptor)
    return dropped


def load_for_inspection(way: str, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``torch.save`` file ``path``'s tensors, loaded one of the :data:`INSPECT_WAYS` (to read their
    shapes and dtypes).

    These are the lines lesson 08 shows; :func:`measure_inspection` runs them in a fresh process.
    Only ``torch.load`` and ``mmap=True`` give the saved numbers; the others give shapes and dtypes
    (``skip_data``: real tensors whose numbers were never read).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "t.pt"; torch.save({"w": torch.ones(2, 3)}, p)
        >>> load_for_inspection('map_location="meta"', p)["w"]
        tensor(..., device='meta', size=(2, 3))
    """
    if way == "torch.load":
        return torch.load(path, weights_only=True)
    if way == "mmap=True":
        return torch.load(path, mmap=True, weights_only=True)
    if way == 'map_location="meta"':
        return torch.load(path, map_location="meta", weights_only=True)
    if way == "FakeTensorMode":
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode():
            return torch.load(path, weights_only=True)
    if way == "skip_data":
        with torch.serialization.skip_data():
            return torch.load(path, weights_only=True)
    raise ValueError(_("unknown way {way}; expected one of {ways}").format(way=repr(way), ways=INSPECT_WAYS))


def _memory() -> dict[str, int]:
    """This process's anonymous and file-backed resident memory, in bytes (``/proc/self/status``)."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, value = line.split(":", 1)
            if name in ("RssAnon", "RssFile"):
                found[name] = int(value.split()[0]) * 1024
    return found


def _child(path: str, ways: list[str]) -> None:
    # Each way once on a tiny file first: what a way imports on its first use is not what it costs per byte.
    with tempfile.TemporaryDirectory() as folder:
        tiny = Path(folder) / "tiny.pt"
        torch.save({"w": torch.ones(4)}, tiny)
        for way in ways:
            load_for_inspection(way, tiny)
    results = {}
    for way in ways:
        gc.collect()
        before = _memory()
        start = time.perf_counter()
        state = load_for_inspection(way, path)
        seconds = time.perf_counter() - start
        shapes = {name: [list(t.shape), str(t.dtype)] for name, t in state.items()}
        after = _memory()  # while the loaded tensors are alive: what holding them costs
        del state
        results[way] = {
            "seconds": seconds,
            "extra_anon_bytes": after["RssAnon"] - before["RssAnon"],
            "extra_file_bytes": after["RssFile"] - before["RssFile"],
            "shapes": shapes,
        }
    write_result(results)


def measure_inspection(path: str | os.PathLike, ways: list[str] = INSPECT_WAYS, timeout: float = 120) -> dict:
    """Load ``path`` each of the ``ways`` in turn, in one fresh python process, and list its shapes; for each way
    the seconds, the anonymous and file-backed memory it added (while the loaded tensors are alive), and the shapes.

    Each way's tensors are freed before the next way runs. A way that makes private copies (``torch.load``) should
    come last, as in :data:`INSPECT_WAYS`: memory it frees could otherwise be reused, unseen, by a later way. The
    child first runs every way on a tiny file, so that the modules a way imports on its first use
    (``FakeTensorMode`` brings in a good part of ``torch._dynamo``) are not counted.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "t.pt"; torch.save({"w": torch.ones(2, 3)}, p)
        >>> measure_inspection(p, ["mmap=True"])["mmap=True"]["shapes"]
        {'w': [[2, 3], 'torch.float32']}
    """
    unknown = [way for way in ways if way not in INSPECT_WAYS]
    if unknown:
        raise ValueError(_("unknown way {way}; expected one of {ways}").format(way=repr(unknown[0]), ways=INSPECT_WAYS))
    # Run this file as a script: the child imports torch, not the whole lesson_utils package.
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), *ways]
    finished = run(command, timeout=timeout)
    if finished.returncode or "result" not in finished.results:
        raise RuntimeError(
            _("measuring {way} failed (exit {code}):").format(way=", ".join(ways), code=finished.returncode)
            + "\n"
            + finished.output[-2000:]
        )
    return finished.results["result"]


if __name__ == "__main__":  # the child of measure_inspection: python sharing.py --child PATH WAY...
    if sys.argv[1:2] != ["--child"] or len(sys.argv) < 4:
        raise SystemExit(_("usage: python -m lesson_utils.sharing --child PATH WAY... (started by measure_inspection)"))
    _child(sys.argv[2], sys.argv[3:])
