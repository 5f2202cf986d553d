"""Per-student limits: memory, CPU and processes, enforced by the kernel's control groups.

Each student's server (and so each of their kernels, terminals and the processes those start)
runs in a control group of its own, ``lesson-hub/<username>``: **memory** (a student whose
kernels use more is stopped by the kernel's OOM killer, not the machine), **CPU** (``--cpus``
cores' worth of time, 1 by default: the numeric profile's one compute thread, and a class of
40 on a machine with fewer cores shares it fairly) and **tasks** (processes and threads: a
runaway loop of ``fork`` stops there). When the server stops, whatever is still in the group
is killed and the group removed: nothing a student started outlives their server.

Both kinds of control groups are handled: cgroup v2 (one tree, ``/sys/fs/cgroup/cgroup.controllers``,
most systems today) and v1 (one tree per controller, ``/sys/fs/cgroup/memory`` ...; some
containers, this project's CI). Where neither can be written (a container without them), the
hub says so at start and falls back on per-process limits: ``RLIMIT_AS``, the address space of
each process (never below 8 GiB: importing torch reserves 3.5 GB of it), and the per-account
process limit ``RLIMIT_NPROC``; the numeric profile's ``OMP_NUM_THREADS=1`` then keeps each
kernel to one compute thread, but not the student to one core.

Example:
    >>> parse_bytes("4G") == 4 * 2**30, parse_bytes("512M"), parse_bytes("1000")
    (True, 536870912, 1000)
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "lesson-hub"
PERIOD = 100_000  # microseconds: the CPU quota's period
V1_CONTROLLERS = ("memory", "cpu", "pids")
# Without control groups, each process's address space is limited instead: importing torch alone
# reserves about 3.5 GB of it (not memory in use), so the limit is never below 8 GiB.
FALLBACK_ADDRESS_SPACE = 8 * 2**30


def parse_bytes(text: str | int) -> int:
    """Bytes in ``"4G"``, ``"512M"``, ``"64K"`` or a plain number; ``ValueError`` otherwise."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    value = str(text).strip().upper().removesuffix("B").removesuffix("I")
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(value)
    except ValueError:
        raise ValueError(f"{text!r} is not an amount of memory: write e.g. 4G, 512M or a number of bytes") from None


@dataclass(frozen=True)
class Limits:
    """What one student may use."""

    memory: int  # bytes, for all their processes together
    cpus: float  # cores' worth of CPU time
    tasks: int = 1024  # processes and threads


class Cgroups:
    """The class's control groups under ``root`` (the machine's ``/sys/fs/cgroup``; a test passes a folder)."""

    def __init__(self, root: Path = CGROUP_ROOT, parent: str = PARENT) -> None:
        self.root, self.parent = Path(root), parent
        if (self.root / "cgroup.controllers").is_file():
            self.version = 2
        elif all((self.root / c / "cgroup.procs").is_file() for c in V1_CONTROLLERS):
            self.version = 1
        else:
            self.version = None

    # -- where --------------------------------------------------------------------------------------------
    def folders(self, username: str | None = None) -> list[Path]:
        """The group's folders (one in v2, one per controller in v1); the class's parent ones without a name."""
        tail = [self.parent] + ([username] if username else [])
        if self.version == 2:
            return [self.root.joinpath(*tail)]
        if self.version == 1:
            return [self.root.joinpath(c, *tail) for c in V1_CONTROLLERS]
        return []

    def usable(self) -> str | None:
        """``None`` when per-student groups can be made here, otherwise why not (for the hub's start message).
        Changes nothing: :meth:`make_parents` is what really tries."""
        if self.version is None:
            return f"no cgroup v2 or v1 (memory, cpu, pids) hierarchy under {self.root}"
        places = [self.root] if self.version == 2 else [self.root / c for c in V1_CONTROLLERS]
        closed = [str(place) for place in places if not os.access(place, os.W_OK)]
        return f"{', '.join(closed)} cannot be written" if closed else None

    def make_parents(self) -> None:
        """Make the class's parent groups (as root, when the hub starts); ``OSError`` if the system refuses."""
        if self.version == 2:
            enable = "+memory +cpu +pids"
            (self.root / "cgroup.subtree_control").write_text(enable)
            parent = self.folders()[0]
            parent.mkdir(exist_ok=True)
            (parent / "cgroup.subtree_control").write_text(enable)
        else:
            for folder in self.folders():
                folder.mkdir(exist_ok=True)

    # -- a student's group -------------------------------------------------------------------------------
    def prepare(self, username: str, limits: Limits) -> list[Path]:
        """Make ``username``'s group with ``limits`` (as root, before their server starts); its folders."""
        self.make_parents()
        folders = self.folders(username)
        for folder in folders:
            folder.mkdir(exist_ok=True)
        quota = max(1000, int(limits.cpus * PERIOD))
        if self.version == 2:
            (group,) = folders
            _write(group / "memory.max", limits.memory)
            _write(group / "memory.swap.max", 0, optional=True)  # no swapping past the limit
            _write(group / "cpu.max", f"{quota} {PERIOD}")
            _write(group / "pids.max", limits.tasks)
        else:
            memory, cpu, pids = folders
            _write(memory / "memory.limit_in_bytes", limits.memory)
            _write(memory / "memory.memsw.limit_in_bytes", limits.memory, optional=True)  # memory + swap
            _write(cpu / "cpu.cfs_period_us", PERIOD)
            _write(cpu / "cpu.cfs_quota_us", quota)
            _write(pids / "pids.max", limits.tasks)
        return folders

    def join_files(self, username: str) -> list[str]:
        """The ``cgroup.procs`` files a new process writes its id to, to enter ``username``'s group."""
        return [str(folder / "cgroup.procs") for folder in self.folders(username)]

    def pids(self, username: str) -> set[int]:
        """The processes in ``username``'s group now."""
        found: set[int] = set()
        for folder in self.folders(username):
            try:
                found.update(int(line) for line in (folder / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                pass
        return found

    def end(self, username: str, grace: float = 5) -> int:
        """Kill what is left in ``username``'s group (SIGTERM, SIGKILL after ``grace`` s) and remove the group;
        how many processes were left."""
        left = self.pids(username)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pids(username):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while self.pids(username) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.pids(username):
                break
        for folder in self.folders(username):
            _remove(folder)
        return len(left)

    def remove_parent(self) -> None:
        """Remove the class's parent groups once no student's group is left in them."""
        for folder in self.folders():
            try:
                _remove(folder)
            except OSError:  # a student's group is still in it (another hub with this parent runs)
                pass


def _remove(folder: Path) -> None:
    """Remove a control group's folder. The kernel's group folders list control files that are not really
    there (``rmdir`` removes them); a plain folder standing in for one (the tests') has real files."""
    try:
        folder.rmdir()
    except FileNotFoundError:
        pass
    except OSError as error:
        if error.errno != errno.ENOTEMPTY:
            raise
        for child in folder.iterdir():
            child.unlink()  # a real control group's subgroup is a folder: this raises, and says so
        folder.rmdir()


def _write(path: Path, value: object, optional: bool = False) -> None:
    if optional and not path.exists():
        return
    path.write_text(f"{value}\n")


def enter(files: list[str], limits: Limits, fallback: bool) -> None:
    """In a new process, before it becomes the student: enter their groups (``files`` from
    :meth:`Cgroups.join_files`) and set the per-account process limit; with ``fallback`` (no groups
    here), also the address-space limit of each process. Safe in a ``preexec_fn``: no allocation-heavy work."""
    pid = str(os.getpid()).encode()
    for path in files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.tasks, limits.tasks))
    if fallback:
        space = max(limits.memory, FALLBACK_ADDRESS_SPACE)
        resource.setrlimit(resource.RLIMIT_AS, (space, space))
