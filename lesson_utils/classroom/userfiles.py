"""Reading and writing files in a person's home folder as root, without ever following a link they made.

The teacher's collect and return commands run as root and work in folders that students
control. A student could put a symbolic link where their notebook should be (to a classmate's
notebook, or to a file only root may read) or where their feedback will be written (to a file
root would then overwrite). So every path is walked one folder at a time from the home folder,
each step opened with ``O_NOFOLLOW`` relative to the folder opened before it (``openat``): a link
anywhere on the way is refused, and a folder swapped for a link midway changes nothing, since
the walk holds the folders it checked. Every file and folder on the way must also belong to the
person: a file a student did not make (a hard link to another's file) is refused too.

Example:
    >>> import os, shutil, tempfile
    >>> home = Path(tempfile.mkdtemp())
    >>> write_file(home, "feedback/lesson01.md", b"well done", os.getuid(), os.getgid())
    >>> read_file(home, "feedback/lesson01.md", os.getuid())
    b'well done'
    >>> os.symlink("/etc/hostname", home / "feedback" / "link.md")
    >>> read_file(home, "feedback/link.md", os.getuid())
    Traceback (most recent call last):
    ...
    lesson_utils.classroom.userfiles.UnsafeFileError: feedback/link.md is a symbolic link (never followed)
    >>> shutil.rmtree(home)
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFileError(OSError):
    """The file cannot be read or written safely; the message says why."""


def _open_folders(home: Path, parts: list[str], uid: int, make: tuple[int, int] | None = None) -> int:
    """An open descriptor of ``home/parts...``, each step checked (not a link, owned by ``uid``); with
    ``make=(uid, gid)`` missing folders are made (0755, owned by the person)."""
    try:
        fd = os.open(home, DIRECTORY)
    except OSError as error:
        raise UnsafeFileError(f"{home} cannot be opened as a folder ({error.strerror})") from None
    walked = []
    try:
        _check_owner(fd, uid, str(home))
        for part in parts:
            walked.append(part)
            try:
                next_fd = os.open(part, DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                if make is None:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                os.chown(part, *make, dir_fd=fd, follow_symlinks=False)
                next_fd = os.open(part, DIRECTORY, dir_fd=fd)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    kind = "a symbolic link" if _is_link(fd, part) else "not a folder"
                    raise UnsafeFileError(f"{'/'.join(walked)} is {kind} (never followed)") from None
                raise
            os.close(fd)
            fd = next_fd
            _check_owner(fd, uid, "/".join(walked))
        return fd
    except BaseException:
        os.close(fd)
        raise


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _check_owner(fd: int, uid: int, shown: str) -> os.stat_result:
    info = os.fstat(fd)
    if info.st_uid != uid:
        raise UnsafeFileError(f"{shown} belongs to user id {info.st_uid}, not to its owner's ({uid})")
    return info


def read_file(home: Path, relative: str, uid: int, limit: int = 50 * 2**20) -> bytes:
    """The content of the regular file ``home/relative``, which ``uid`` owns, at most ``limit`` bytes;
    :class:`UnsafeFileError` if a link is on the way, it is not a regular file or not theirs, or it is too big;
    ``FileNotFoundError`` if it is not there."""
    *folders, name = relative.split("/")
    dir_fd = _open_folders(Path(home), folders, uid)
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafeFileError(f"{relative} is a symbolic link (never followed)") from None
            raise
        with os.fdopen(fd, "rb") as f:
            info = _check_owner(f.fileno(), uid, relative)
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeFileError(f"{relative} is not a regular file")
            if info.st_size > limit:
                raise UnsafeFileError(f"{relative} is {info.st_size} bytes, more than the {limit} a notebook may have")
            return f.read(limit + 1)[:limit]
    finally:
        os.close(dir_fd)


def write_file(home: Path, relative: str, data: bytes, uid: int, gid: int, mode: int = 0o644) -> None:
    """Write ``data`` to ``home/relative`` as a new file owned by ``uid``:``gid`` with ``mode`` (folders on the
    way made if missing, owned by them). Whatever was there (a file, or a link: replaced, never followed)
    is replaced in one step (a new file renamed over it); a folder there is refused."""
    *folders, name = relative.split("/")
    dir_fd = _open_folders(Path(home), folders, uid, make=(uid, gid))
    try:
        temporary = f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)  # fmt: skip
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                os.fchown(f.fileno(), uid, gid)
                os.fchmod(f.fileno(), mode)
            try:
                os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except IsADirectoryError:
                raise UnsafeFileError(f"{relative} is a folder: move it away to receive the file") from None
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            raise
    finally:
        os.close(dir_fd)


def make_private_folder(home: Path, relative: str, uid: int, gid: int) -> None:
    """Make ``home/relative`` (and the folders on the way) a folder of ``uid``'s that only they may open (0700)."""
    fd = _open_folders(Path(home), relative.split("/"), uid, make=(uid, gid))
    try:
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
