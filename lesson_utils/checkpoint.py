"""Training checkpoints that survive a crash mid-save, are verified on load, and never run code.

``save_checkpoint`` writes to a temporary file in the same folder, flushes and fsyncs
it, then renames it over the final name (``os.replace`` is atomic), so the final name
only ever holds a complete file. A save killed mid-write leaves its hidden temporary
file behind (as large as a checkpoint); the next save into the same folder deletes the
temporaries of processes that no longer run on this machine.

**What is verified.** ``torch.save`` computes a CRC32 of every zip record, but ``torch.load``
never checks it, and computing it costs more than writing the bytes on a fast disk (lesson 05
measures both, and XXH3 against CRC32). ``save_checkpoint`` turns it off and stores instead:
an XXH3 hash of the pickle (``data.pkl``) in the zip archive's comment, checked *before*
anything is unpickled; and a content hash of every tensor and one of all other values, under
the key ``_integrity``, checked after loading. ``load_checkpoint`` checks them and removes the
key; for a file written by plain ``torch.save`` it checks the zip CRC32s instead. A file with
neither (``torch.save`` with ``compute_crc32=False``) loads with an
:class:`UnverifiedCheckpointWarning`: nothing could tell whether a byte of it changed.
``load_checkpoint`` always uses ``weights_only=True`` and turns each way a file can be wrong
into an error that says what to do; :func:`latest_valid_checkpoint` skips damaged files.

**Errors.** ``load_checkpoint`` raises :class:`CheckpointError` subclasses for what is wrong
with the file or the request (missing, damaged, not a checkpoint, incomplete, unsafe, a device
this machine lacks). What is wrong with the machine is not the file's fault and propagates
unchanged: ``PermissionError``, ``MemoryError`` and ``torch.OutOfMemoryError``.

**Platforms.** Linux (tested). macOS: fsync uses ``F_FULLFSYNC``, since plain ``fsync`` there
does not reach stable storage. Windows: a folder cannot be opened to fsync the rename (NTFS
journals it), and no process is probed for liveness (``os.kill(pid, 0)`` would end it there),
so temporaries of killed saves are left for you to delete.

Example:
    >>> import tempfile, torch
    >>> folder = Path(tempfile.mkdtemp())
    >>> path = save_checkpoint(folder / checkpoint_name(3), {"epoch": 3, "w": torch.ones(2)})
    >>> load_checkpoint(path, required=["epoch"])["epoch"]
    3
    >>> latest_checkpoint(folder).name
    'ckpt_00000003.pt'
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import socket
import struct
import threading
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import xxhash
from torch.utils.serialization import config

from lesson_utils.i18n import N_, _

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

NAME_PATTERN = re.compile(r"^ckpt_(\d+)\.pt$")
# ".ckpt_00000003.pt.tmp-<host>-<pid>": where a save writes before the rename
TEMPORARY_PATTERN = re.compile(r"^\..+\.tmp-(?P<host>.+)-(?P<pid>\d+)$")

INTEGRITY_KEY = "_integrity"  # written by save_checkpoint, checked and removed by load_checkpoint
PICKLE_MARK = b"lesson_utils:data.pkl:xxh3_64="  # the zip comment save_checkpoint writes: the pickle's hash
WINDOWS = os.name == "nt"
RECOVER = N_("latest_valid_checkpoint(folder) finds the newest checkpoint that loads and verifies; or retrain.")


class CheckpointError(Exception):
    """Base class: the checkpoint at a path cannot be used."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """There is no file (or folder) at the given path."""


class CorruptCheckpointError(CheckpointError):
    """The file is empty, truncated or damaged."""


class NotACheckpointError(CheckpointError):
    """The file is readable but is not a dict of named entries saved by ``torch.save``."""


class IncompleteCheckpointError(CheckpointError):
    """The checkpoint lacks entries the caller needs."""


class UnsafeCheckpointError(CheckpointError):
    """Loading the file would run code (a pickle that refers to functions or classes)."""


class CheckpointDeviceError(CheckpointError, RuntimeError):
    """``map_location`` names a device this machine does not have (the file may be fine)."""


class UnverifiedCheckpointWarning(UserWarning):
    """The file holds no hash or CRC32 to check: a changed byte would load silently."""


def checkpoint_name(step: int) -> str:
    """The file name ``save_checkpoint`` rotation and ``latest_checkpoint`` recognise.

    Example:
        >>> checkpoint_name(12)
        'ckpt_00000012.pt'
    """
    return f"ckpt_{step:08d}.pt"


def _where_is(value: Any, names: set[str], where: str = "checkpoint") -> tuple[str, str] | None:
    """Where in ``value`` sits an object whose type is one of ``names`` (``module.qualname``); or None."""
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if kind in names:
        return where, kind
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _where_is(key, names, where) or _where_is(item, names, f"{where}[{key!r}]")
            if found:
                return found
    elif isinstance(value, (list, tuple, set, frozenset)) and not isinstance(value, torch.Size):
        for i, item in enumerate(value):
            found = _where_is(item, names, f"{where}[{i}]")
            if found:
                return found
    return None


PLAIN = (int, float, bool, complex, str, bytes, bytearray, type(None), torch.Size, torch.dtype, torch.device)


def _odd_leaf(value: Any, where: str = "checkpoint") -> tuple[str, str] | None:
    """The first value that is neither a tensor, a plain python value nor a plain container (by exact
    type: ``numpy.float64`` subclasses float): where to look when the unpickler names only helpers."""
    if type(value) in PLAIN or type(value) in (torch.Tensor, torch.nn.Parameter):
        return None
    if type(value) in (dict, collections.OrderedDict, collections.Counter):
        for key, item in value.items():
            found = _odd_leaf(key, where) or _odd_leaf(item, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if type(value) in (list, tuple, set, frozenset):
        for i, item in enumerate(value):
            found = _odd_leaf(item, f"{where}[{i}]")
            if found:
                return found
        return None
    return where, f"{type(value).__module__}.{type(value).__qualname__}"


def _leaves(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every tensor and plain value in ``value`` with its place (``model_state_dict/fc1.bias``), in order."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{where}/{key}")
    elif isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{where}/{index}")
    else:
        yield where or "/", value


def _tensor_bytes(tensor: torch.Tensor) -> Any:
    """The bytes of ``tensor``'s values: a zero-copy view for ordinary tensors, serialised for the rest."""
    if tensor.layout == torch.strided and not tensor.is_quantized and tensor.device.type != "meta":
        return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    buffer = io.BytesIO()  # sparse, quantized or meta tensors: rare in checkpoints, hashed through torch.save
    with _zip_crc32_off():
        torch.save(tensor.detach().cpu() if tensor.device.type != "meta" else tensor, buffer)
    return buffer.getvalue()


def content_digests(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """XXH3-64 of every tensor's bytes (with its dtype and shape), and one of all other values.

    Example:
        >>> a = content_digests({"w": torch.ones(3), "epoch": 2})
        >>> a == content_digests({"w": torch.ones(3), "epoch": 2})
        True
        >>> a == content_digests({"w": torch.ones(3), "epoch": 3})  # another value
        False
        >>> a == content_digests({"w": torch.zeros(3), "epoch": 2})  # another tensor
        False
        >>> a["tensors"]["/w"].startswith("torch.float32(3,):")
        True
    """
    tensors, values = {}, xxhash.xxh3_64()
    for where, leaf in _leaves(checkpoint):
        if where.startswith(f"/{INTEGRITY_KEY}"):
            continue
        if isinstance(leaf, torch.Tensor):
            tensors[where] = f"{leaf.dtype}{tuple(leaf.shape)}:{xxhash.xxh3_64_hexdigest(_tensor_bytes(leaf))}"
        else:
            shown = sorted(map(repr, leaf)) if isinstance(leaf, (set, frozenset)) else leaf  # a set has no order
            values.update(f"{where}={shown!r};".encode())
    return {"algorithm": "xxh3_64", "tensors": tensors, "values": values.hexdigest()}


_crc32_lock = threading.Lock()
_crc32_saves = 0  # save_checkpoint calls running now, in any thread
_crc32_before = True  # the setting the first of them found


@contextmanager
def _zip_crc32_off() -> Iterator[None]:
    """torch.save without its CRC32s; the process-wide setting is put back when the last save ends.

    ``config.save.compute_crc32`` is one setting for the whole process. Two saves in two threads
    that each put back what *they* found would leave it off for good; counting the saves under a
    lock restores what the first one found. (While a save runs, a plain ``torch.save`` in another
    thread also writes without CRC32s: the setting cannot be per thread.)
    """
    global _crc32_saves, _crc32_before
    with _crc32_lock:
        if _crc32_saves == 0:
            _crc32_before = config.save.compute_crc32
            config.save.compute_crc32 = False
        _crc32_saves += 1
    try:
        yield
    finally:
        with _crc32_lock:
            _crc32_saves -= 1
            if _crc32_saves == 0:
                config.save.compute_crc32 = _crc32_before


def _fsync(fd: int) -> None:
    """Flush a file to stable storage: ``F_FULLFSYNC`` on macOS, where ``fsync`` stops at the drive's cache."""
    if fcntl is not None and hasattr(fcntl, "F_FULLFSYNC"):
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
    else:
        os.fsync(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable. Not on Windows: a folder cannot be opened there (NTFS journals it)."""
    if WINDOWS:
        return
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        _fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _pickle_span(path: Path) -> tuple[int, int]:
    """Where the bytes of the archive's ``data.pkl`` record lie in the file (from its local header)."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data.pkl"))
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    if header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(_("data.pkl has no local zip header"))
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_length + extra_length
    return start, start + info.compress_size


def _pickle_digest(path: Path) -> str:
    start, end = _pickle_span(path)
    with open(path, "rb") as f:
        f.seek(start)
        return xxhash.xxh3_64_hexdigest(f.read(end - start))


def _write_pickle_digest(f: Any, path: Path) -> None:
    """Store the hash of ``data.pkl`` as the zip archive's comment (torch.save writes none)."""
    f.flush()
    f.seek(-22, os.SEEK_END)
    end_record = f.read(22)
    if end_record[:4] != b"PK\x05\x06" or end_record[20:22] != b"\x00\x00":
        raise RuntimeError(_("torch.save wrote an archive without a plain end record: cannot store the pickle's hash"))
    comment = PICKLE_MARK + _pickle_digest(path).encode()
    f.seek(-2, os.SEEK_END)
    f.write(struct.pack("<H", len(comment)) + comment)


def save_checkpoint(path: str | os.PathLike, checkpoint: Mapping[str, Any], keep_last: int | None = None) -> Path:
    """Save ``checkpoint`` (a dict of tensors and plain values) atomically and durably.

    The file also holds :func:`content_digests` of the checkpoint under ``"_integrity"``,
    which :func:`load_checkpoint` verifies (the zip CRC32s are not computed: see the module).
    With ``keep_last=N``, only the N newest ``ckpt_<step>.pt`` files stay in the folder
    (``path`` must then be named with :func:`checkpoint_name`). Returns the final path.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for step in range(5):
        ...     _ = save_checkpoint(folder / checkpoint_name(step), {"step": step}, keep_last=2)
        >>> sorted(p.name for p in folder.iterdir())
        ['ckpt_00000003.pt', 'ckpt_00000004.pt']
    """
    path = Path(path)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(
            _("save_checkpoint expects a dict of named entries, got a {type}").format(type=type(checkpoint).__name__)
        )
    if INTEGRITY_KEY in checkpoint:
        raise ValueError(_("the key {key} is save_checkpoint's own: rename that entry").format(key=repr(INTEGRITY_KEY)))
    if keep_last is not None and (keep_last < 1 or not NAME_PATTERN.match(path.name)):
        raise ValueError(
            _("keep_last needs keep_last >= 1 and a file named like {example}, got {name}").format(
                example=repr(checkpoint_name(7)), name=repr(path.name)
            )
        )
    if not path.parent.is_dir():
        raise CheckpointNotFoundError(
            _("Cannot save {path}: the folder {folder} does not exist. Create it first.").format(
                path=path, folder=path.parent
            )
        )

    tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    remove_stale_temporaries(path.parent)  # left by saves that were killed mid-write
    try:
        with open(tmp, "w+b") as f:
            with _zip_crc32_off():
                torch.save({**checkpoint, INTEGRITY_KEY: content_digests(checkpoint)}, f)
            _write_pickle_digest(f, tmp)
            # What the real unpickler of torch.load(weights_only=True) would refuse, read from the
            # pickle just written (no tensor data is read): the only exact answer to "will it load?".
            refused = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(tmp))  # a set inside: sort
            if refused:
                # a plain int or str never needs a GLOBAL: when one is named, a class is pickled (e.g. int
                # as a defaultdict's factory), so look for the other names' objects
                names = set(refused) - {
                    f"builtins.{t.__name__}" for t in (int, float, str, bytes, bool, dict, list, tuple)
                }
                where, kind = _where_is(checkpoint, names) or _odd_leaf(checkpoint) or ("checkpoint", refused[0])
                raise TypeError(
                    _(
                        "{where} is a {type}, which torch.load(weights_only=True) refuses to read back "
                        "(it would need {needs}). Store tensors and plain python values only: e.g. dict(...) "
                        "for a defaultdict, float(loss) or loss.item() for a numpy number."
                    ).format(where=where, type=kind, needs=", ".join(refused))
                )
            f.flush()
            _fsync(f.fileno())  # the bytes are on disk before the name points at them
        if keep_last is not None:  # older files are about to be deleted: read the new one back first
            load_checkpoint(tmp, mmap=True)
        os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)  # make the rename itself durable

    if keep_last is not None:
        for old in _numbered_checkpoints(path.parent)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of saves that were killed mid-write; return what was deleted.

    Only temporaries written on this machine by processes that no longer exist are removed:
    a save still running in another process, or one by another machine sharing the folder,
    keeps its file.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> leftover = folder / f".ckpt_00000001.pt.tmp-{socket.gethostname()}-{2**22 + 1}"  # no such pid
        >>> leftover.touch()
        >>> [p.name == leftover.name for p in remove_stale_temporaries(folder)]
        [True]
        >>> remove_stale_temporaries(folder / "typo")
        Traceback (most recent call last):
        ...
        lesson_utils.checkpoint.CheckpointNotFoundError: Checkpoint folder ... does not exist. Check the path.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointNotFoundError(
            _("Checkpoint folder {folder} does not exist. Check the path.").format(folder=folder)
        )
    host, removed = socket.gethostname(), []
    for candidate in folder.iterdir():
        match = TEMPORARY_PATTERN.match(candidate.name)
        if match and match["host"] == host and not _process_exists(int(match["pid"])):
            try:
                candidate.unlink(missing_ok=True)
            except OSError:
                continue  # e.g. another user's file in a shared folder: no reason to fail this save
            removed.append(candidate)
    return removed


def _process_exists(pid: int) -> bool:
    if WINDOWS:
        return True  # os.kill(pid, 0) would terminate it there: keep every temporary
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, and belongs to another user
    return True


def _numbered_checkpoints(folder: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := NAME_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The ``ckpt_<step>.pt`` with the highest step in ``folder``, or None if there is none.

    A missing folder is an error (a wrong path must not silently restart training).

    Example:
        >>> import tempfile
        >>> latest_checkpoint(tempfile.mkdtemp()) is None
        True
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointNotFoundError(
            _("Checkpoint folder {folder} does not exist. Check the path, or create the folder to start fresh.").format(
                folder=folder
            )
        )
    found = _numbered_checkpoints(folder)
    return found[-1] if found else None


def latest_valid_checkpoint(
    folder: str | os.PathLike, required: Iterable[str] = (), map_location: Any = "cpu"
) -> tuple[Path, dict[str, Any]] | None:
    """The newest ``ckpt_<step>.pt`` in ``folder`` that loads and verifies, and its content; None if none exists.

    A damaged, incomplete or unsafe newer file is skipped with a warning that names it and
    why. If there are checkpoints but none of them loads, that is an error, not a fresh
    start. Errors of the machine (a missing device, permissions, memory) are raised at once.

    Example:
        >>> import tempfile, warnings
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = save_checkpoint(folder / checkpoint_name(1), {"epoch": 1})
        >>> _ = (folder / checkpoint_name(2)).write_bytes(b"")  # a save that never finished
        >>> with warnings.catch_warnings(record=True):
        ...     path, checkpoint = latest_valid_checkpoint(folder)
        >>> path.name, checkpoint["epoch"]
        ('ckpt_00000001.pt', 1)
    """
    latest_checkpoint(folder)  # a wrong folder is an error
    candidates = _numbered_checkpoints(Path(folder))
    failures = []
    for path in reversed(candidates):
        try:
            return path, load_checkpoint(path, required=required, map_location=map_location)
        except (CorruptCheckpointError, NotACheckpointError, IncompleteCheckpointError, UnsafeCheckpointError) as error:
            failures.append(f"{path.name}: {error}")
            warnings.warn(_("skipping {path}: {error}").format(path=path, error=error), stacklevel=2)
    if failures:
        raise CorruptCheckpointError(
            _("none of the {count} checkpoints in {folder} loads:\n{failures}").format(
                count=len(failures), folder=folder, failures="\n".join(failures)
            )
        )
    return None


def _verify_archive(path: Path) -> str:
    """Check the zip archive before anything is unpickled; say what was checked.

    ``"pickle"``: save_checkpoint's hash of ``data.pkl`` matched (the tensors are checked after
    loading, against their own hashes). ``"crc32"``: every record matched the CRC32 that
    ``torch.save`` stored (``torch.load`` does not check these itself). ``"nothing"``: the file
    carries neither.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            records, comment = archive.infolist(), archive.comment
            odd = next((r for r in records if r.compress_type != zipfile.ZIP_STORED or r.file_size != r.compress_size
                        or r.external_attr & 0x10 or r.filename.endswith("/")), None)  # fmt: skip
            if odd is not None:  # torch.save stores every record plainly; its reader misreads one marked otherwise
                raise CorruptCheckpointError(
                    _(
                        "{path} is corrupt: record {record} is not stored the way torch.save stores it. {recover}"
                    ).format(path=path, record=repr(odd.filename), recover=_(RECOVER))
                )
            if comment.startswith(PICKLE_MARK):
                if _pickle_digest(path) != comment[len(PICKLE_MARK) :].decode("ascii", "replace"):
                    raise CorruptCheckpointError(
                        _(
                            "{path} is corrupt: its pickle (data.pkl) no longer matches the hash stored when it "
                            "was saved, so it was not unpickled. {recover}"
                        ).format(path=path, recover=_(RECOVER))
                    )
                return "pickle"
            if all(record.CRC == 0 for record in records):
                return "nothing"  # saved with compute_crc32=False: there is nothing to check against
            bad = archive.testzip()
    except (CorruptCheckpointError, PermissionError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - zipfile raises many kinds on a damaged archive (NotImplementedError...)
        raise CorruptCheckpointError(
            _("{path} is truncated or corrupt (not a complete zip archive: {error}). {recover}").format(
                path=path, error=error or type(error).__name__, recover=_(RECOVER)
            )
        ) from error
    if bad is not None:
        raise CorruptCheckpointError(
            _(
                "{path} is truncated or corrupt: record {record} does not match the CRC32 stored when it was saved. "
                "{recover}"
            ).format(path=path, record=repr(bad), recover=_(RECOVER))
        )
    return "crc32"


def _check_device(map_location: Any) -> None:
    """Refuse a ``map_location`` that names a device this machine does not have, before loading."""
    if not isinstance(map_location, (str, torch.device)):
        return  # a dict or a function: torch.load reports what it cannot place
    try:
        device = torch.device(map_location)
    except (RuntimeError, ValueError, TypeError) as error:
        raise CheckpointDeviceError(
            _("map_location={location!r} is not a device: use 'cpu', 'cuda', 'cuda:0', ...").format(
                location=map_location
            )
        ) from error
    count = torch.cuda.device_count() if device.type == "cuda" else None
    missing = (device.type == "cuda" and (count == 0 or (device.index or 0) >= count)) or (
        device.type == "mps" and not torch.backends.mps.is_available()
    )
    if missing:
        raise CheckpointDeviceError(
            _(
                "map_location={location!r}: this machine has no such device ({found}). The file was not read. "
                "Load with map_location='cpu', or run where that device exists."
            ).format(
                location=str(map_location),
                found=_("{count} CUDA device(s)").format(count=count) if count is not None else device.type,
            )
        )


def tensor_record_spans(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """Where each storage record of a ``torch.save`` file lies: ``{record name: (start, end)}``.

    The offsets come from each record's *local* zip header (30 bytes, then the name and
    the local extra field, whose length torch.save chooses so that the data starts on a
    64-byte boundary; the central directory's copy of the extra field may differ).

    Example:
        >>> import tempfile, torch
        >>> p = Path(tempfile.mkdtemp()) / "t.pt"; torch.save({"w": torch.arange(4.0)}, p)
        >>> (start, end), = tensor_record_spans(p).values()
        >>> p.read_bytes()[start:end] == torch.arange(4.0).numpy().tobytes(), start % 64
        (True, 0)
        >>> tensor_record_spans(p.with_name("missing.pt"))
        Traceback (most recent call last):
        ...
        lesson_utils.checkpoint.CheckpointNotFoundError: No checkpoint at ...missing.pt: the file does not exist. ...
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(
            _("No checkpoint at {path}: the file does not exist. Check the path.").format(path=path)
        )
    if not zipfile.is_zipfile(path):
        raise NotACheckpointError(
            _("{path} is not a zip archive, so not a file written by torch.save (>= 1.6)").format(path=path)
        )
    spans = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            if not re.search(r"/data/\d+$", info.filename):
                continue  # data.pkl, version, byteorder, ...: not a storage
            f.seek(info.header_offset)
            header = f.read(30)
            if header[:4] != b"PK\x03\x04":
                raise CorruptCheckpointError(
                    _("{path}: record {record} has no local zip header").format(path=path, record=repr(info.filename))
                )
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            start = info.header_offset + 30 + name_length + extra_length
            spans[info.filename] = (start, start + info.compress_size)
    return spans


def _verify_digests(path: Path, checkpoint: dict[str, Any], recorded: Any) -> None:
    """Compare the loaded content with the hashes save_checkpoint stored; name what differs."""
    if not (isinstance(recorded, dict) and recorded.get("algorithm") == "xxh3_64"):
        raise CorruptCheckpointError(
            _("{path}: its {key} entry is not one save_checkpoint writes.").format(path=path, key=repr(INTEGRITY_KEY))
        )
    found = content_digests(checkpoint)
    differ = sorted(set(recorded.get("tensors", {}).items()) ^ set(found["tensors"].items()))
    places = sorted({where for where, _ in differ})
    if found["values"] != recorded.get("values"):
        places.append(_("its plain values (epoch, loss, ...)"))
    if places:
        shown = ", ".join(places[:5])
        if len(places) > 5:
            shown = _("{places} and {count} more").format(places=shown, count=len(places) - 5)
        raise CorruptCheckpointError(
            _(
                "{path} is corrupt: {places} no longer match(es) the content hash stored when it was saved. {recover}"
            ).format(path=path, places=shown, recover=_(RECOVER))
        )


def load_checkpoint(
    path: str | os.PathLike,
    required: Iterable[str] = (),
    map_location: Any = "cpu",
    verify: bool = True,
    mmap: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint dict with ``torch.load(..., weights_only=True)``; never runs code.

    With ``verify`` (the default) the file is checked, because ``torch.load`` itself checks
    nothing: a flipped byte in a tensor would otherwise load silently. A file from
    :func:`save_checkpoint` is checked against the hash of its pickle *before* unpickling and
    against its content hashes after (which are then removed from the returned dict); one from
    plain ``torch.save`` against its zip CRC32s, which costs one extra read of the file. A file
    with neither loads with an :class:`UnverifiedCheckpointWarning`. ``mmap=True`` maps the
    tensors from the file instead of reading them (verification still reads them once).

    Raises a :class:`CheckpointError` subclass that names the file and what to do when the file
    is missing, empty, truncated, corrupt, not a checkpoint, lacks one of the ``required``
    entries or holds a pickle that would run code, or when ``map_location`` names a device this
    machine lacks. ``PermissionError``, ``MemoryError`` and ``torch.OutOfMemoryError`` are the
    machine's, and propagate unchanged.

    Example:
        >>> load_checkpoint("no/such/file.pt")
        Traceback (most recent call last):
        ...
        lesson_utils.checkpoint.CheckpointNotFoundError: No checkpoint at no/such/file.pt: ...
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointNotFoundError(
            _("{path} is a folder, not a checkpoint file. Use latest_checkpoint({folder}).").format(
                path=path, folder=repr(str(path))
            )
        )
    if not path.is_file():
        raise CheckpointNotFoundError(
            _("No checkpoint at {path}: the file does not exist. Check the path and the folder.").format(path=path)
        )
    _check_device(map_location)
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CorruptCheckpointError(
            _("{path} is empty (0 bytes): the save was interrupted or never happened. {recover}").format(
                path=path, recover=_(RECOVER)
            )
        )
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise NotACheckpointError(
            _(
                "{path} is not a file written by torch.save (it starts with {head}, "
                "expected a zip archive b'PK\\x03\\x04'). Check that the path points at a checkpoint."
            ).format(path=path, head=repr(head))
        )
    checked = _verify_archive(path) if verify and head.startswith(b"PK") else "nothing"
    try:
        checkpoint = torch.load(
            path, map_location=map_location, weights_only=True, mmap=mmap and head.startswith(b"PK")
        )
    except (PermissionError, MemoryError, torch.OutOfMemoryError):
        raise  # the machine's, not the file's
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise _damaged(path, error) from error
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = next((line for line in lines if "Unsupported" in line or "global" in line.lower()), lines[-1])
        if "global" not in detail.lower():  # an opcode it cannot read, not a class or function: a malformed pickle
            raise CorruptCheckpointError(
                _(
                    "{path} is damaged: its pickle is not one torch.save writes ({detail}). Nothing in it was "
                    "executed. {recover}"
                ).format(path=path, detail=detail, recover=_(RECOVER))
            ) from error
        if checked == "nothing":  # a damaged pickle can look like one that names a class: say both
            raise UnsafeCheckpointError(
                _(
                    "{path} refuses to load with weights_only=True ({detail}), and nothing in the file (no hash, "
                    "no CRC32) can tell whether it is damaged or holds objects that would run code. Nothing in "
                    "it was executed. Do not load it with weights_only=False unless you made it yourself."
                ).format(path=path, detail=detail)
            ) from error
        raise UnsafeCheckpointError(
            _(
                "{path} refuses to load with weights_only=True: it holds objects that would run code "
                "when unpickled ({detail}). Nothing in it was executed. If you did not make this file, "
                "delete it. If you made it yourself and trust it, see "
                "torch.serialization.get_unsafe_globals_in_checkpoint and torch.serialization.safe_globals."
            ).format(path=path, detail=detail)
        ) from error
    except Exception as error:  # noqa: BLE001 - whatever a damaged file makes the loader raise
        if "on a CUDA device but torch.cuda.is_available() is False" in str(
            error
        ) or "Attempting to deserialize" in str(error):
            raise CheckpointDeviceError(
                _("{path} was saved on a device this machine lacks ({error}). Load it with map_location='cpu'.").format(
                    path=path, error=str(error).splitlines()[0]
                )
            ) from error
        raise _damaged(path, error) from error
    if not isinstance(checkpoint, dict):
        # "{{" in a message: str.format writes one "{" (the example dict literal).
        raise NotACheckpointError(
            _(
                "{path} holds a {type}, not a dict of named entries. "
                "Expected a file saved with torch.save({{'model_state_dict': ..., ...}}, path)."
            ).format(path=path, type=type(checkpoint).__name__)
        )
    recorded = checkpoint.pop(INTEGRITY_KEY, None)
    if verify and recorded is not None:
        _verify_digests(path, checkpoint, recorded)
    elif verify and checked != "crc32":
        warnings.warn(
            _(
                "{path} was loaded unverified: it holds no content hashes and no CRC32s "
                "(torch.save with compute_crc32=False), so a changed byte would not be noticed"
            ).format(path=path),
            UnverifiedCheckpointWarning,
            stacklevel=2,
        )
    missing = [key for key in required if key not in checkpoint]
    if missing:
        keys = list(checkpoint)
        shown = ", ".join(map(repr, keys[:6])) + (", ..." if len(keys) > 6 else "")
        if keys and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            message = _(
                "{path} lacks {missing}; it has [{keys}]. It looks like a bare state_dict: "
                "load it with model.load_state_dict(torch.load(path, weights_only=True))."
            )
        else:
            message = _("{path} lacks {missing}; it has [{keys}].")
        raise IncompleteCheckpointError(message.format(path=path, missing=", ".join(map(repr, missing)), keys=shown))
    return checkpoint


def _damaged(path: Path, error: BaseException) -> CorruptCheckpointError:
    first_line = (str(error).splitlines() or [""])[0]
    return CorruptCheckpointError(
        _("{path} is truncated or corrupt ({error}). {recover}").format(
            path=path, error=f"{type(error).__name__}: {first_line}", recover=_(RECOVER)
        )
    )
