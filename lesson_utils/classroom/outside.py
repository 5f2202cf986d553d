"""What the grading process reads from *outside* a student's kernel, while the kernel still runs.

After each export (:mod:`lesson_utils.classroom.export`) the grading process
(:mod:`lesson_utils.classroom.grade_worker`) assembles a folder for the judge
(:mod:`lesson_utils.classroom.judge`) that the kernel cannot write to:

- **the export itself**, copied out of the hand-over folder (regular files only, opened without
  following links, size-limited): a kernel that keeps a file open cannot change the copy later;
- **the files the answers name** (every name whose value is a path, or a string naming one), read
  through the kernel's own view of the file system (``/proc/<kernel>/root``, so a sandboxed
  kernel's private ``/tmp`` too) one component at a time, **never following a symbolic link**,
  and only what the kernel's own user could read (the grader may run as root); copied under
  ``files/`` at their kernel paths. A folder named by a question's ``names`` is copied whole, one
  named only by ``optional`` (``workdir``) is made empty. Links found are listed, not followed;
- **memory facts** (``/proc/<kernel>/maps`` and ``/proc/<kernel>/pagemap``): for every tensor
  storage the export lists, whether its memory lies in a map of one of the copied files (matched by
  device and inode), at which offset, and which of its pages are private copies now (written after
  the map was made). Lesson 05's lean load is judged on these;
- **the set-up's files kept**: the files named when the set-up cell (the first cell that imports the
  lesson's exercises) had run are copied then; a file the notebook changed afterwards under the same
  name is judged as the set-up wrote it, and the change is flagged (an answer cannot rewrite the
  reference a checker compares it with).

Example:
    >>> parse_maps_line("7f42bf39e000-7f42bf400000 rw-p 00001000 fe:00 2179773   /tmp/w.pt")
    (139924652810240, 139924653211648, 4096, '254:0', 2179773, '/tmp/w.pt')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import struct
from pathlib import Path

from lesson_utils.classroom.export import EXPORT, STORAGES

NOT_COPIED = ("/proc", "/sys", "/dev")  # never files an answer is: /dev/shm is the one exception
COPY_LIMIT = 512 * 2**20  # bytes of answer files per export
COUNT_LIMIT = 2_000  # files per export (a folder answer holds a few: a checkpoint, its shards)
EXPORT_LIMITS = {EXPORT: 256 * 2**20, STORAGES: 8 * 2**30}
PAGE = os.sysconf("SC_PAGE_SIZE")


class Ledger:
    """The files the grading process wrote into an export folder, each with the sha256 of the bytes it wrote
    (hashed as they were written, never read back): the worker signs these with its row, and the grader
    judges the folder only if it holds exactly these files with these contents."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.hashes: dict[str, str] = {}

    def write(self, relative: str, blocks: object, limit: int | None = None) -> int:
        """Write ``blocks`` (an iterable of bytes) to ``folder/relative`` (at most ``limit`` bytes); how many."""
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, written = hashlib.sha256(), 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            for block in blocks:
                if limit is not None and written + len(block) > limit:
                    block = block[: limit - written]
                out.write(block)
                digest.update(block)
                written += len(block)
                if limit is not None and written >= limit:
                    break
        self.hashes[relative] = digest.hexdigest()
        return written


def blocks(f: object, size: int = 1 << 22) -> object:
    while block := f.read(size):
        yield block


def parse_maps_line(line: str) -> tuple[int, int, int, str, int, str] | None:
    """(low, high, file offset, "major:minor" in decimal, inode, path) of one ``/proc/<pid>/maps`` line."""
    fields = line.split(maxsplit=5)
    if len(fields) < 5:
        return None
    try:
        low, high = (int(x, 16) for x in fields[0].split("-"))
        major, minor = (int(x, 16) for x in fields[3].split(":"))
        shown = fields[5].strip() if len(fields) == 6 else ""
        return low, high, int(fields[2], 16), f"{major}:{minor}", int(fields[4]), shown
    except ValueError:
        return None


def children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    return found


def kernel_process(root: int) -> int | None:
    """The kernel's process id as this process sees it: ``root`` (the process the kernel manager started)
    if it is Python running ipykernel, else the first such process below it (in the sandbox, below bwrap)."""
    queue, seen = [root], set()
    while queue:
        pid = queue.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        program = os.path.basename(command[0]) if command else b""
        launcher = any(part.endswith((b"ipykernel_launcher", b"ipykernel")) for part in command)
        if program.startswith(b"python") and launcher:
            return pid  # the kernel itself (bwrap's own command line names ipykernel_launcher too)
        queue += children(pid)
    return None


def credentials(pid: int) -> tuple[int, set[int]]:
    """The effective user id and every group id of process ``pid``."""
    uid, groups = 0, set()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[2])
        elif line.startswith("Gid:"):
            groups.add(int(line.split()[2]))
        elif line.startswith("Groups:"):
            groups.update(int(g) for g in line.split()[1:])
    return uid, groups


def allowed(info: os.stat_result, uid: int, groups: set[int], bit: int) -> bool:
    """Whether ``uid`` (in ``groups``) has permission ``bit`` (4 read, 1 search) on a file with ``info``."""
    if uid == 0:
        return True
    if info.st_uid == uid:
        return bool(info.st_mode & (bit << 6))
    if info.st_gid in groups:
        return bool(info.st_mode & (bit << 3))
    return bool(info.st_mode & bit)


class Copier:
    """Copies files from a kernel's view of the file system into ``target`` (their paths kept), as that
    kernel's user could read them, never following a link."""

    def __init__(self, pid: int, ledger: Ledger, limit: int = COPY_LIMIT) -> None:
        self.root = f"/proc/{pid}/root"
        self.uid, self.groups = credentials(pid)
        self.ledger = ledger
        self.target = ledger.folder / "files"
        self.limit, self.total, self.count = limit, 0, 0
        self.found: dict[str, dict] = {}  # kernel path -> what was there
        self.links: list[str] = []

    def copy(self, path: str, whole: bool) -> dict:
        """Copy the file or folder at the kernel's absolute ``path``; folders only if ``whole``. What was found."""
        parts = path.split("/")
        for index, part in enumerate(parts[1:], start=1):  # "sub/../w.pt": "sub" must exist in the copies too
            if part == ".." and index > 1:
                before = os.path.normpath("/".join(parts[:index]))
                if self.copy(before, whole=False).get("kind") != "folder":
                    break
        path = os.path.normpath(path)
        if path in self.found and (self.found[path].get("kind") != "folder" or not whole):
            return self.found[path]
        if not path.startswith("/") or (path.startswith(NOT_COPIED) and not path.startswith("/dev/shm")):
            return self._found(path, {"kind": "refused"})
        parts = [p for p in path.split("/") if p]
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return self._found(path, {"kind": "missing"})
        try:
            walked = ""
            for part in parts[:-1]:
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                walked += "/" + part
                if stat.S_ISLNK(info.st_mode):
                    self.links.append(walked)
                    return self._found(path, {"kind": "link", "at": walked})
                if not stat.S_ISDIR(info.st_mode) or not allowed(info, self.uid, self.groups, 1):
                    return self._found(path, {"kind": "missing" if not stat.S_ISDIR(info.st_mode) else "refused"})
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = inner
            return self._found(path, self._copy_entry(fd, parts[-1] if parts else ".", path, whole))
        except FileNotFoundError:
            return self._found(path, {"kind": "missing"})
        except OSError as error:
            return self._found(path, {"kind": "refused", "error": type(error).__name__})
        finally:
            os.close(fd)

    def _found(self, path: str, what: dict) -> dict:
        self.found[path] = what
        return what

    def _copy_entry(self, fd: int, name: str, path: str, whole: bool) -> dict:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        where = {"dev": f"{os.major(info.st_dev)}:{os.minor(info.st_dev)}", "ino": info.st_ino}
        if stat.S_ISLNK(info.st_mode):
            self.links.append(path)
            return {"kind": "link", "at": path}
        if stat.S_ISREG(info.st_mode):
            if not allowed(info, self.uid, self.groups, 4):
                return {"kind": "refused"}
            return {"kind": "file", **where, **self._copy_file(fd, name, path)}
        if stat.S_ISDIR(info.st_mode):
            destination = self.target / path.lstrip("/")
            destination.mkdir(parents=True, exist_ok=True)
            if whole and allowed(info, self.uid, self.groups, 5):
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                try:
                    for entry in sorted(os.listdir(inner)):
                        inside = f"{path.rstrip('/')}/{entry}"
                        if self.count >= COUNT_LIMIT or self.total >= self.limit:
                            return {"kind": "folder", **where, "copied": False, "why": "too many files"}
                        if inside.startswith(NOT_COPIED) and not inside.startswith("/dev/shm"):
                            continue  # an answer "/" walks no pseudo-file system
                        self.found[inside] = self._copy_entry(inner, entry, inside, True)
                finally:
                    os.close(inner)
            return {"kind": "folder", **where}
        return {"kind": "refused", "error": "not a regular file"}

    def _copy_file(self, fd: int, name: str, path: str) -> dict:
        self.count += 1
        if self.count > COUNT_LIMIT or self.total >= self.limit:
            return {"copied": False, "why": f"more than {COUNT_LIMIT} files"}
        source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        try:
            info = os.fstat(source)
            if not stat.S_ISREG(info.st_mode):
                return {"copied": False, "why": "not a regular file"}
            if self.total + info.st_size > self.limit:
                return {"copied": False, "why": f"over {self.limit // 2**20} MiB of files"}
            with os.fdopen(os.dup(source), "rb") as f:
                copied = self.ledger.write("files/" + path.lstrip("/"), blocks(f), self.limit - self.total)
            self.total += copied
            if copied < info.st_size:
                return {"copied": False, "why": f"over {self.limit // 2**20} MiB of files"}
            return {"copied": True, "size": copied}
        finally:
            os.close(source)


def answer_paths(document: dict, names: list[str]) -> dict[str, str]:
    """``{name: kernel path}`` for each of ``names`` whose exported value is a path, or a string that
    looks like one (absolute, or with a ``/`` or a file name's dot); relative ones joined to the kernel's
    working folder."""
    objects, cwd = document.get("objects", []), document.get("cwd")
    found = {}
    for name in names:
        node = document.get("names", {}).get(name)
        text = None
        if isinstance(node, str):
            text = node
        elif isinstance(node, dict) and node.get("$") == "ref" and type(node.get("id")) is int:
            if 0 <= node["id"] < len(objects) and isinstance(objects[node["id"]], dict):
                entry = objects[node["id"]]
                if entry.get("kind") == "path" and isinstance(entry.get("path"), str):
                    text = entry["path"]
                elif entry.get("kind") == "plain" and isinstance(entry.get("value"), str):  # a str subclass
                    text = entry["value"]
        if not text or "\0" in text or len(text) > 4096:
            continue
        if not text.startswith("/"):
            if not isinstance(cwd, str) or not cwd.startswith("/"):
                continue
            text = os.path.join(cwd, text)
        found[name] = text  # as written: "sub/../w.pt" needs "sub" (the copier makes it where the kernel has it)
    return found


def memory_facts(pid: int, document: dict, found: dict[str, dict]) -> dict[str, dict]:
    """For each exported storage that lies in a map of a copied file: that file's kernel path, the
    storage's offset in it, and the file's page numbers whose pages are private copies in the kernel."""
    files = {(what["dev"], what["ino"]): path for path, what in found.items() if what.get("kind") == "file"}
    storages = document.get("storages", [])
    if not files or not isinstance(storages, list):
        return {}
    try:
        maps = [m for m in map(parse_maps_line, Path(f"/proc/{pid}/maps").read_text().splitlines()) if m]
    except OSError:
        return {}
    facts = {}
    for number, info in enumerate(storages):
        if not isinstance(info, dict):
            continue
        address, nbytes = info.get("address"), info.get("nbytes")
        if type(address) is not int or type(nbytes) is not int or nbytes <= 0:
            continue
        for low, high, offset, device, inode, _shown in maps:
            if low <= address and address + nbytes <= high and (device, inode) in files:
                start = offset + address - low  # where the storage starts in the file
                private = private_pages(pid, address, nbytes, low, high)
                facts[str(number)] = {
                    "file": files[(device, inode)],
                    "offset": start,
                    "private_pages": [(page - low) // PAGE + offset // PAGE for page in private],
                }
                break
    return facts


def private_pages(pid: int, address: int, nbytes: int, low: int, high: int) -> list[int]:
    """Addresses of the pages in ``[address, address + nbytes)`` that are private copies (present but not
    the file's, or swapped out: a file's own page is never swapped); ``/proc/<pid>/pagemap``, or, where it
    cannot be read, every page of the map if ``/proc/<pid>/smaps`` says it has anonymous pages."""
    first, last = address // PAGE * PAGE, (address + nbytes - 1) // PAGE * PAGE
    try:
        with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            pagemap.seek(first // PAGE * 8)
            entries = pagemap.read((last - first) // PAGE * 8 + 8)
        return [
            first + i * PAGE
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", entries))
            if entry >> 62 & 1 or (entry >> 63 & 1 and not entry >> 61 & 1)
        ]
    except OSError:
        pass
    inside = False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0]
            if "-" in head:
                inside = int(head.split("-", 1)[0], 16) == low
            elif inside and line.startswith("Anonymous:") and int(line.split()[1]) > 0:
                return list(range(first, last + PAGE, PAGE))
    return []


def copy_export(handover: Path, ledger: Ledger) -> bytes:
    """The kernel's two export files, copied from ``handover`` into the ledger's folder (regular files only,
    read without following a link, under a size limit each); export.json's bytes. ``OSError`` says what is
    wrong with them."""
    text = b""
    for name, limit in EXPORT_LIMITS.items():
        fd = os.open(handover / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as source:
            info = os.fstat(source.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise OSError(f"{name} is not a regular file")
            if info.st_size > limit:
                raise OSError(f"{name} is over {limit // 2**20} MiB")
            if name == EXPORT:
                text = source.read(limit + 1)
                ledger.write(name, [text])
            else:
                ledger.write(name, blocks(source), limit)
    return text


Setup = tuple[Path, dict[str, str], dict[str, str]]  # the set-up's export folder, its paths by name, its hashes


def keep_setup_files(setup: Setup, ledger: Ledger, paths: dict[str, str]) -> list[str]:
    """Put back, in the ledger's copies, every file of the set-up's copies that a name still pointing where it
    did at the set-up now finds changed or gone; the kernel paths put back. ``setup``: the set-up's export
    folder, its paths by name, and its ledger's hashes (a copy that no longer has its hash is not used)."""
    folder, setup_paths, hashes = setup
    restored = []
    for name, path in setup_paths.items():
        if paths.get(name) != path:
            continue  # the name points elsewhere now (the set-up ran again, or the answer replaced it)
        prefix = "files/" + path.lstrip("/")
        for relative, digest in sorted(hashes.items()):
            if not (relative == prefix or relative.startswith(prefix + "/")):
                continue
            if ledger.hashes.get(relative) == digest:
                continue  # as the set-up wrote it
            data = (folder / relative).read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                continue  # changed since the grading process copied it: not trusted either
            copy = ledger.folder / relative
            if copy.is_dir() and not copy.is_symlink():
                shutil.rmtree(copy)
            ledger.write(relative, [data])
            restored.append("/" + relative.removeprefix("files/"))
    return sorted(restored)


def assemble(handover: Path, target: Path, pid: int, required: list[str], optional: list[str],
             setup: Setup | None = None) -> tuple[dict, dict[str, str]]:  # fmt: skip
    """Everything the judge needs from this export, in ``target``: the export, the files, the memory facts.

    Returns what ``outside.json`` holds: ``paths`` (name -> kernel path), ``files`` (kernel path -> what
    was there), ``memory``, ``links`` (not followed), ``setup_changed`` (set-up files put back); and the
    hashes of every file written (:class:`Ledger`). Raises ``OSError`` or ``ValueError`` when the export
    cannot be read, or the folder holds a file this process did not write: then this export does not count.
    """
    ledger = Ledger(target)
    target.mkdir(parents=True, exist_ok=True)
    document = json.loads(copy_export(handover, ledger).decode("ascii"))
    if not isinstance(document, dict):
        raise ValueError("export.json holds no object")
    copier = Copier(pid, ledger)
    written = answer_paths(document, [*required, *optional])
    for name, path in written.items():
        copier.copy(path, whole=name in required)
    paths = {name: os.path.normpath(path) for name, path in written.items()}
    found = dict(copier.found)
    facts = memory_facts(pid, document, found)
    changed = keep_setup_files(setup, ledger, paths) if setup else []
    outside = {"paths": paths, "files": found, "memory": facts, "links": sorted(set(copier.links)),
               "setup_changed": changed}  # fmt: skip
    ledger.write("outside.json", [json.dumps(outside).encode()])
    strangers = set(manifest(target, hashed=False)) - set(ledger.hashes)
    if strangers:
        raise ValueError(f"files the grading process did not write appeared in the export: {sorted(strangers)[:3]}")
    return outside, ledger.hashes


def manifest(folder: Path, hashed: bool = True) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (a link or a special file as such; without
    ``hashed``, the names only): the grader judges a folder only if this is what the worker signed."""
    found = {}
    for path in sorted(Path(folder).rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            found[relative] = "not a regular file"
        elif path.is_file():
            digest = hashlib.sha256()
            if hashed:
                with open(path, "rb") as f:
                    for block in blocks(f):
                        digest.update(block)
            found[relative] = digest.hexdigest()
    return found
