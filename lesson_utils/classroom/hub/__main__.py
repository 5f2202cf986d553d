"""``python -m lesson_utils.classroom.hub start|remove-accounts``: the class's JupyterHub on this machine.

    sudo .venv/bin/python -m lesson_utils.classroom.hub start --class class.csv [--state /srv/lesson-hub]
        [--ip 127.0.0.1] [--port 8000] [--homes /home] [--memory 4G] [--cpus 1] [--cull-after 3600]
        [--ssl-cert FILE --ssl-key FILE]
    sudo .venv/bin/python -m lesson_utils.classroom.hub remove-accounts [--state /srv/lesson-hub] --yes

``start`` (what ``make hub`` runs) makes the students' accounts, builds the hand-outs, writes the
configuration and runs JupyterHub in the foreground until Ctrl+C (or SIGTERM). When JupyterHub
has stopped (it stops every student's server and the proxy on its way out), anything still
running as a class account is ended and the control groups removed, so nothing of the class is
left running. ``remove-accounts`` is for the end of the course: it removes the accounts the hub
made and their home folders (the students' work: copy what you keep first).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

from lesson_utils.classroom.hub import handout
from lesson_utils.classroom.hub.accounts import (
    AccountError,
    ensure_accounts,
    kill_processes_of,
    make_folder,
    remove_accounts,
    require_root,
)
from lesson_utils.classroom.hub.classlist import ClassListError, read_class, write_class
from lesson_utils.classroom.hub.config import config_file
from lesson_utils.classroom.hub.limits import Cgroups, parse_bytes
from lesson_utils.classroom.hub.settings import COLLECTION, DEFAULT_STATE, Settings

LOCKS = []  # the state folder's lock, held while the hub runs
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])  # the collection's environment's packages


class StartError(RuntimeError):
    """The hub cannot start as asked; the message says what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_to_others(paths: list[Path]) -> list[str]:
    """The folders on the way to ``paths`` that other accounts cannot pass through (no ``o+x``), or whose
    content they cannot read (the folders in ``paths`` themselves need ``o+rx``)."""
    problems = []
    for path in paths:
        while not path.exists():  # made later (the homes' folder): what lies above must let others through
            path = path.parent
        for folder in [*reversed(path.parents), path]:
            mode = folder.stat().st_mode
            need = stat.S_IXOTH | (stat.S_IROTH if folder == path else 0)
            if mode & need != need:
                problems.append(f"{folder} (mode {stat.S_IMODE(mode):o})")
    return sorted(set(problems))


def check_parts(settings: Settings) -> None:
    """Raise :class:`StartError` unless everything the hub starts is here and the students can reach it."""
    proxy = Path(settings.proxy)
    if not os.access(proxy, os.X_OK):
        raise StartError(f"{proxy} is missing: install the pinned proxy with `make hub-proxy` (needs node and npm)")
    for tool, package in (("node", "nodejs"), ("git", "git")):
        if not subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).stdout:
            raise StartError(f"{tool} is missing: `make hub-proxy` installs it (apt-get install {package})")
    for name in ("ssl_cert", "ssl_key"):
        if getattr(settings, name) and not Path(getattr(settings, name)).is_file():
            raise StartError(f"--{name.replace('_', '-')} {getattr(settings, name)}: no such file")
    if bool(settings.ssl_cert) != bool(settings.ssl_key):
        raise StartError("--ssl-cert and --ssl-key go together")
    closed = closed_to_others([SITE_PACKAGES, COLLECTION / "lesson_utils", Path(settings.homes)])
    if closed:
        raise StartError(
            "each student's server runs as the student's own account and must read the collection's environment "
            f"({sys.prefix}) and lesson_utils, but other accounts cannot pass through: {', '.join(closed)}. "
            "Put the collection where everyone may read it (e.g. /opt/save-load-lessons; not /srv or /home, which "
            "the grader's sandbox hides), or open those folders with `chmod o+rx`"
        )


def python_for_students(settings: Settings) -> Path:
    """The Python that runs each student's server and kernels: always the collection's packages (its
    ``.venv``'s site-packages, ``lesson_utils`` included, at the pinned versions).

    It is the ``.venv``'s own ``python`` wherever the students can run it. A ``.venv`` made from a
    Python installed in a private folder (pyenv in ``/root``, as on this project's CI) cannot be run
    by another account, and the hub does not open root's home to the class: it makes a bridge in
    its folder instead, ``python/``, a virtual environment of the system's Python of the same
    version (``/usr/bin/python3.11``) whose one ``.pth`` line adds the ``.venv``'s site-packages
    (and whose ``etc/jupyter`` and ``share/jupyter`` are the ``.venv``'s), so the same packages run
    on the same Python version (compiled packages depend on that version's ABI, which patch
    releases keep)."""
    own = Path(settings.venv_bin) / "python"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not closed_to_others([Path(os.path.realpath(sys.executable)).parent, Path(sys.base_prefix) / "lib" / version]):
        return own
    for candidate in (Path("/usr/bin") / version, Path("/usr/local/bin") / version):
        base = Path(os.path.realpath(candidate))
        if candidate.is_file() and not closed_to_others([base.parent]):
            break
    else:
        raise StartError(
            f"the students cannot run the collection's Python ({os.path.realpath(sys.executable)}: a folder on the "
            f"way is closed to them) and there is no {version} of the system's to bridge to: install one "
            f"(apt-get install {version}), or make .venv from a Python everyone may run"
        )
    bridge = settings.folder / "python"
    if not (bridge / "bin" / "python").exists():
        subprocess.run([str(candidate), "-m", "venv", "--without-pip", str(bridge)], check=True)
    site = next((bridge / "lib").glob("python3*/site-packages"))
    (site / "collection.pth").write_text(f"import site; site.addsitedir({str(SITE_PACKAGES)!r})\n")
    for shared in ("etc/jupyter", "share/jupyter"):  # Jupyter's config and data (JupyterLab, its language pack)
        link = bridge / shared
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path(sys.prefix) / shared)
    for root, _dirs, names in os.walk(bridge):
        os.chmod(root, 0o755)
        for name in names:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)
    check = "import jupyterhub, nbgitpuller, lesson_utils.classroom.hub.handout"  # the .venv's, through the bridge
    done = subprocess.run([str(bridge / "bin" / "python"), "-c", check], capture_output=True, text=True, cwd="/")
    if done.returncode != 0:
        raise StartError(f"the bridge to the collection's packages ({bridge}) does not work: {done.stderr[-2000:]}")
    return bridge / "bin" / "python"


def prepare(args: argparse.Namespace) -> Settings:
    """Everything before JupyterHub starts: the checks, the state folder, the accounts, the hand-outs."""
    require_root("the hub")
    os.umask(0o077)  # what the hub writes is root's; the parts the students read are opened one by one
    members = read_class(args.class_list)
    parse_bytes(args.memory)  # a clear error now rather than a spawn failure later
    if args.cpus <= 0:
        raise StartError(f"--cpus {args.cpus}: give a positive number of cores, e.g. 1 or 0.5")
    settings = Settings(
        state=str(args.state.resolve()), ip=args.ip, port=args.port, homes=str(args.homes.resolve()),
        memory=args.memory, cpus=args.cpus, cull_after=args.cull_after, ssl_cert=args.ssl_cert or "",
        ssl_key=args.ssl_key or "", hub_port=free_port(), proxy_api_port=free_port(),
    )  # fmt: skip
    check_parts(settings)
    folder = settings.folder
    make_folder(folder, 0o711)
    os.chmod(folder, 0o711)  # the students' processes pass through to handout/ and python/; they list nothing
    lock = open(folder / "hub.lock", "w")  # held until this process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StartError(f"a hub is already running with the folder {folder}: stop it first (Ctrl+C)") from None
    LOCKS.append(lock)
    settings.python = str(python_for_students(settings))
    settings.grades.mkdir(exist_ok=True)
    os.chmod(settings.grades, 0o700)
    write_class(settings.class_list, members)
    os.chmod(settings.class_list, 0o600)
    ensure_accounts(members, Path(settings.homes))
    commits = handout.build(settings.handout)
    cgroups = Cgroups()
    why_not = cgroups.usable()
    if why_not is None:
        try:
            cgroups.make_parents()
        except OSError as error:
            why_not = f"the system refused a control group ({error})"
    settings.cgroups = why_not is None
    settings.save()
    os.chmod(folder / "hub.json", 0o600)
    (folder / "jupyterhub_config.py").write_text(config_file(settings))
    students = [m.username for m in members if not m.is_teacher]
    teachers = [m.username for m in members if m.is_teacher] or ["none (no row with role teacher)"]
    limits = f"{settings.memory} of memory, {settings.cpus:g} CPU, {settings.tasks} processes and threads"
    listed = ", ".join(students[:8]) + (", ..." if len(students) > 8 else "")
    print(
        f"hub: {settings.url} for {len(students)} students ({listed}); admin: {', '.join(teachers)}\n"
        f"hub: each student's account and folder under {settings.homes}; hand-out: "
        + ", ".join(f"{lang} {commit[:12]}" for lang, commit in commits.items())
        + f"\nhub: per student: {limits}"
        + (f" (control groups: {why_not}; each process's address space is limited instead)" if why_not else "")
        + f"\nhub: idle servers stopped after {settings.cull_after} s; the hub's folder: {folder}; stop with Ctrl+C",
        flush=True,
    )
    if settings.ip not in ("127.0.0.1", "localhost", "::1") and not settings.ssl_cert:
        print("hub: WARNING: open to the network without --ssl-cert: passwords cross it unencrypted", flush=True)
    return settings


def _hub_process() -> None:
    """In JupyterHub's process, before it starts: be sent SIGTERM if this supervisor dies, so no hub outlives
    it; take SIGINT and SIGQUIT back (a shell's background job, or a test runner's worker, ignores them, and
    JupyterHub's servers and services inherit that: each would then wait out its stop's SIGINT stage); and
    make what it writes private."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    os.umask(0o077)  # JupyterHub's database and files: root's only (the folder lets students pass to handout/)


def run_hub(settings: Settings) -> int:
    """Run JupyterHub until it stops; then end what is left of the class. Its exit code."""
    command = [str(Path(settings.venv_bin) / "jupyterhub"), "-f", str(settings.folder / "jupyterhub_config.py")]
    hub = subprocess.Popen(command, cwd=settings.folder, start_new_session=True, preexec_fn=_hub_process)

    def forward(signum, frame) -> None:
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    code = hub.wait()
    cgroups, left = Cgroups(), 0
    for member in settings.members():
        if settings.cgroups:
            left += cgroups.end(member.username)
        try:
            left += kill_processes_of(pwd.getpwnam(member.username).pw_uid)
        except KeyError:
            pass
    cgroups.remove_parent()
    print(f"hub: stopped (exit code {code})" + (f"; ended {left} process(es) the class had left" if left else ""))
    return code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lesson_utils.classroom.hub", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="make the accounts and hand-outs, then run the hub until Ctrl+C")
    start.add_argument("--class", dest="class_list", type=Path, required=True,
                       help="the class list: a CSV with the columns username,language,role")  # fmt: skip
    start.add_argument("--state", type=Path, default=DEFAULT_STATE, help="the hub's folder (default: %(default)s)")
    start.add_argument("--ip", default="127.0.0.1", help="the address it listens on (default: %(default)s)")
    start.add_argument("--port", type=int, default=8000, help="its port (default: %(default)s)")
    start.add_argument("--homes", type=Path, default=Path("/home"), help="where the students' folders go")
    start.add_argument("--memory", default="4G", help="memory per student, all their kernels (default: %(default)s)")
    start.add_argument("--cpus", type=float, default=1.0, help="CPU cores per student (default: %(default)s)")
    start.add_argument("--cull-after", type=int, default=3600, help="stop a server idle this many seconds")
    start.add_argument("--ssl-cert", help="a TLS certificate, for a hub open to the network")
    start.add_argument("--ssl-key", help="its key")
    remove = commands.add_parser("remove-accounts", help="end of course: remove the class's accounts and folders")
    remove.add_argument("--state", type=Path, default=DEFAULT_STATE, help="the hub's folder (default: %(default)s)")
    remove.add_argument("--yes", action="store_true", help="really remove them (their folders too)")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            sys.exit(run_hub(prepare(args)))
        members = Settings.load(args.state).members()
        names = [m.username for m in members]
        if not args.yes:
            print(f"would remove the accounts and home folders of: {', '.join(names)}; add --yes to do it")
            sys.exit(2)
        removed = remove_accounts(names)
        print(f"removed {len(removed)} account(s) and their folders: {', '.join(removed) or 'none'}")
    except (StartError, AccountError, ClassListError, FileNotFoundError, ValueError) as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
