"""One Unix account per person of the class, made and removed by the hub (as root).

Every student's server, kernels and terminals run as that student's own account, and their
home folder is ``0700``: another student's processes cannot list, read or change it, whatever
they run (the separation is the operating system's, not a convention of the hub). The accounts
the hub makes are members of the group :data:`GROUP`; the hub never reuses, changes or removes
an account that is not (a class list naming ``root`` or an existing person is refused).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from lesson_utils.classroom.hub.classlist import Member

GROUP = "lesson-hub"  # marks the accounts the hub made
SHELL = "/bin/bash"  # JupyterLab's terminals


class AccountError(RuntimeError):
    """An account cannot be made or used as the class list asks."""


def require_root(what: str) -> None:
    """Raise :class:`AccountError` unless this process runs as root."""
    if os.geteuid() != 0:
        raise AccountError(
            f"{what} needs root: the hub makes an account for each student and runs each student's server as "
            "that account (run it with sudo, e.g. `sudo make hub CLASS=class.csv`)"
        )


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise AccountError(f"{name} is missing: the hub makes the students' accounts with it (apt-get install passwd)")
    return found


def is_class_account(username: str) -> bool:
    """Whether ``username`` is an account the hub made (a member of :data:`GROUP`)."""
    try:
        return username in grp.getgrnam(GROUP).gr_mem
    except KeyError:
        return False


def ensure_accounts(members: Iterable[Member], homes: Path) -> dict[str, pwd.struct_passwd]:
    """Make the accounts that do not exist yet (home folder ``homes/<username>``, mode 0700) and check the
    others; the accounts, by username."""
    require_root("making the class's accounts")
    homes, members = Path(homes), list(members)
    existing = set()
    for member in members:  # every name checked before anything is made
        try:
            pwd.getpwnam(member.username)
        except KeyError:
            continue
        if not is_class_account(member.username):
            raise AccountError(
                f"{member.username} is already an account on this machine, not one the hub made: the hub will not "
                "hand it to a student. Give the student another username in the class list"
            )
        existing.add(member.username)
    make_folder(homes, 0o755)
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run([_tool("groupadd"), "--system", GROUP], check=True, capture_output=True, text=True)
    accounts = {}
    for member in members:
        name = member.username
        if name not in existing:
            done = subprocess.run(
                [_tool("useradd"), "--create-home", "--home-dir", str(homes / name), "--shell", SHELL,
                 "--groups", GROUP, "--comment", "lesson hub", name],
                capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode != 0:
                raise AccountError(f"useradd could not make the account {name}: {done.stderr.strip()}")
        account = pwd.getpwnam(name)
        check_home(account)
        accounts[name] = account
    return accounts


def make_folder(path: Path, mode: int) -> None:
    """Make ``path`` with ``mode`` if missing, and the missing folders above it open to pass through (0755),
    whatever the umask."""
    missing = [folder for folder in [*reversed(Path(path).parents), Path(path)] if not folder.exists()]
    for folder in missing:
        folder.mkdir()
        os.chmod(folder, mode if folder == Path(path) else 0o755)


def check_home(account: pwd.struct_passwd) -> Path:
    """The account's home folder, made if missing, owned by the account and private (0700) again if it was
    opened: the separation between students holds even after a ``chmod`` of their own."""
    home = Path(account.pw_dir)
    if not home.exists():
        home.mkdir(parents=True, mode=0o700)
        os.chown(home, account.pw_uid, account.pw_gid)
    info = home.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != account.pw_uid:
        raise AccountError(f"{home} is not a folder owned by {account.pw_name}: fix it by hand before the hub uses it")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(home, 0o700)
    return home


def processes_of(uid: int) -> list[int]:
    """The ids of the processes running as ``uid`` (from ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except FileNotFoundError:
                pass
    return found


def kill_processes_of(uid: int, grace: float = 5) -> int:
    """End every process running as ``uid``: SIGTERM, then SIGKILL after ``grace`` seconds; how many there were."""
    pids = processes_of(uid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while processes_of(uid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not processes_of(uid):
            break
    return len(pids)


def remove_accounts(usernames: Iterable[str]) -> list[str]:
    """Remove the hub's accounts among ``usernames``, their home folders and their processes; the names removed.

    Accounts the hub did not make are left alone. The group goes when no account is left in it."""
    require_root("removing the class's accounts")
    removed = []
    for name in usernames:
        if not is_class_account(name):
            continue
        kill_processes_of(pwd.getpwnam(name).pw_uid)
        done = subprocess.run([_tool("userdel"), "--remove", name], capture_output=True, text=True)
        if done.returncode not in (0, 12):  # 12: the home folder could not be removed (already gone)
            raise AccountError(f"userdel could not remove {name}: {done.stderr.strip()}")
        removed.append(name)
    try:
        if not grp.getgrnam(GROUP).gr_mem:
            subprocess.run([_tool("groupdel"), GROUP], check=True, capture_output=True, text=True)
    except KeyError:
        pass
    return removed
