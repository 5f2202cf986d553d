"""A Jupyter kernel inside a bubblewrap sandbox, for ``python -m lesson_utils.classroom.grade --sandbox``.

bubblewrap (``bwrap``, Debian's package ``bubblewrap``; ``make sandbox`` installs it) starts
the kernel with:

- the whole system **read-only**, and the places where people keep files (``/root``,
  ``/home``, ``/tmp``, ``/mnt``, ..., the class's submissions and the grades) hidden behind
  empty folders; the kernel's working folder and the grader's hand-over folder are the only
  writable ones (plus a private ``/tmp``, 1 GiB at most);
- **no network** (its own network namespace: not even the machine's loopback);
- its **own process namespace**: nothing it starts outlives it, and it cannot see or signal
  the grader's processes;
- no capabilities; when the grader runs as root, each kernel runs as a user id of its own, one
  that no account has and no other process uses (:func:`kernel_user`; ``nobody`` where the
  system maps no such ids), so that its process limit is its own: a notebook that holds
  threads cannot take the next kernel's share. It cannot read root's files either;
- limits: address space (``--memory``, 8 GiB by default: importing torch alone reserves about
  3.5 GB of address space) and, as that user, 512 processes and threads.

The kernel talks to the grader over Unix sockets (ZeroMQ's ``ipc`` transport) in a folder
shared with the sandbox, since TCP to 127.0.0.1 would not cross the network namespace.
Interrupts are sent as messages: a signal would reach bwrap, not the kernel.

Example:
    >>> parse_size("8G") == 8 * 2**30, parse_size("512M") == 512 * 2**20
    (True, True)
"""

from __future__ import annotations

import os
import pwd
import resource
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
NOBODY = 65534
KERNEL_UIDS = range(1_000_000, 2_000_000)  # ids no account has on a usual system: one for each kernel
PROCESS_LIMIT = 512  # processes and threads, per kernel
HIDDEN = ["/root", "/home", "/tmp", "/var/tmp", "/run", "/mnt", "/media", "/srv"]
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # lesson_utils/, readable inside the sandbox


def parse_size(text: str) -> int:
    """Bytes in ``"8G"``, ``"512M"`` or a plain number."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    text = str(text).strip().upper().removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def check_available() -> None:
    """Raise a clear error unless bwrap can start a sandbox here."""
    import subprocess

    if not os.path.exists(BWRAP):
        raise RuntimeError("--sandbox needs bubblewrap: `make sandbox` (or `apt-get install -y bubblewrap`)")
    probe = subprocess.run(
        [BWRAP, "--ro-bind", "/", "/", "--unshare-all", "--", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise RuntimeError(f"bubblewrap cannot start a sandbox here: {probe.stderr.strip()} (user namespaces off?)")


def kernel_user() -> int:
    """A user id for one kernel: in :data:`KERNEL_UIDS`, mapped in this user namespace, no account's, and no
    running process's. A process limit counts every process and thread of a user, so each kernel gets its own;
    ``nobody`` (shared) only where the system maps none of these ids.

    Example:
        >>> kernel_user() in KERNEL_UIDS or kernel_user() == NOBODY
        True
    """
    with open("/proc/self/uid_map") as f:
        mapped = [range(int(first), int(first) + int(count)) for first, _outside, count in map(str.split, f)]
    usable = [range(max(r.start, KERNEL_UIDS.start), min(r.stop, KERNEL_UIDS.stop)) for r in mapped]
    usable = [r for r in usable if len(r)]
    if not usable:
        return NOBODY
    running = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                running.add(entry.stat().st_uid)
            except OSError:
                continue
    for _ in range(100):
        ids = usable[secrets.randbelow(len(usable))]
        uid = ids[secrets.randbelow(len(ids))]
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if uid not in running:
                return uid
    return NOBODY


def _under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def bwrap_prefix(workdir: str, shared: list[str], hide: list[str], env: dict[str, str], user: int | None) -> list[str]:
    """bwrap's arguments, up to and including the ``--`` before the kernel's command; ``user``: the id to run
    as (the grader is root), or None (an unprivileged user namespace)."""
    hidden = [h for h in HIDDEN if os.path.isdir(h)]
    hidden += [h for h in map(os.path.realpath, hide) if os.path.isdir(h) and not _under(h, hidden)]
    args = [BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys"]
    for folder in hidden:
        size = 2**30 if folder == "/tmp" else 2**16
        args += ["--perms", "1777" if folder == "/tmp" else "0755", "--size", str(size), "--tmpfs", folder]
    args += ["--perms", "1777", "--size", str(2**30), "--tmpfs", "/dev/shm"]

    def with_parents(path: str) -> list[str]:  # bwrap would make missing parents 0700: nobody could not enter
        parents, parent = [], os.path.dirname(path)
        while parent not in ("/", "") and _under(parent, hidden):
            parents.append(parent)
            parent = os.path.dirname(parent)
        return [a for p in reversed(parents) for a in ("--perms", "0755", "--dir", p)]

    python = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    python.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    readable = sorted(python | {str(PACKAGE_DIR)} | set(filter(None, env.get("PYTHONPATH", "").split(":"))))
    for path in readable:
        if _under(path, hidden) and os.path.exists(path):
            args += [*with_parents(path), "--ro-bind", path, path]
    for path in dict.fromkeys([workdir, *shared]):
        args += [*with_parents(path), "--bind", path, path]
    home = "/tmp/home"
    args += ["--chdir", workdir, "--clearenv", "--perms", "1777", "--dir", home]
    variables = {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "USER": "student",  # the kernel's user id has no account: nothing need look it up
        "LOGNAME": "student",
        "IPYTHONDIR": f"{home}/.ipython",
        "MPLCONFIGDIR": f"{home}/.mpl",
        "XDG_CACHE_HOME": f"{home}/.cache",
        "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter",
        "TMPDIR": "/tmp",
        "JPY_PARENT_PID": "1",  # its parent is bwrap's pid 1: don't shut down over it (--die-with-parent covers it)
        **env,
    }
    for name, value in variables.items():
        args += ["--setenv", name, value]
    for folder in hidden:
        if folder != "/tmp":  # the private /tmp stays writable
            args += ["--remount-ro", folder]
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup", "--unshare-net"]
    args += ["--die-with-parent", "--new-session"]
    if user is not None:  # keeps CAP_SETUID only until setpriv becomes that user with no capabilities at all
        return [*args, "--", "setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all"]  # fmt: skip
    return [*args, "--unshare-user", "--cap-drop", "ALL", "--"]


class SandboxedKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernel starts inside bwrap, over ``ipc`` sockets in a shared folder."""

    def __init__(self, workdir: str, shared: list[str], hide: list[str], env: dict[str, str], memory: int,
                 **kwargs: object) -> None:  # fmt: skip
        self.sandbox_folder = tempfile.mkdtemp(prefix="gk-")  # short: a socket path has at most 107 bytes
        super().__init__(transport="ipc", connection_file=f"{self.sandbox_folder}/k.json", **kwargs)
        self.user = kernel_user() if os.geteuid() == 0 else None
        shared = [*shared, self.sandbox_folder]
        if self.user is not None:
            for path in [workdir, *shared]:
                for folder, dirs, files in os.walk(path):
                    for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                        os.lchown(name, self.user, self.user)  # a link itself, never what it points to
        self.prefix = bwrap_prefix(workdir, shared, hide, env, self.user)
        self.memory = memory
        self.kernel_spec.interrupt_mode = "message"  # a SIGINT would stop bwrap, and the kernel with it

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return self.prefix + super().format_kernel_cmd(extra_arguments)

    def _limits(self) -> None:  # in the child, before bwrap starts: inherited by the kernel
        resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))
        if self.user is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (PROCESS_LIMIT, PROCESS_LIMIT))

    async def _async_pre_start_kernel(self, **kwargs: object) -> tuple[list[str], dict]:
        command, kwargs = await super()._async_pre_start_kernel(**kwargs)
        kwargs["preexec_fn"] = self._limits
        if self.user is not None:
            os.chown(self.connection_file, self.user, self.user)  # written 0600 for root
        return command, kwargs

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        if not restart:
            shutil.rmtree(self.sandbox_folder, ignore_errors=True)
