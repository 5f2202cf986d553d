"""Training checkpoints that survive a crash mid-save, prove their content on load, and never run code.

``save_checkpoint`` writes to a temporary file in the same folder, flushes and fsyncs
it, then renames it over the final name (``os.replace`` is atomic), so the final name
only ever holds a complete file. A save killed mid-write leaves its hidden temporary
file behind (as large as a checkpoint); the next save into the same folder deletes the
temporaries of processes that no longer run on this machine.

**Integrity.** ``torch.save`` computes a CRC32 of every zip record, but ``torch.load``
never checks it, and computing it costs more than writing the bytes on a fast disk.
``save_checkpoint`` turns it off and stores instead a content hash of every tensor (xxHash's
XXH3, about 20x faster than zlib's CRC32 here) and one of all other values, under the key
``_integrity``. ``load_checkpoint`` checks them and removes the key; for a file written by
plain ``torch.save`` it checks the zip CRC32s instead. ``load_checkpoint`` always uses
``weights_only=True`` and turns each way a file can be wrong into an error that says what to do.

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

import io
import os
import pickle
import re
import socket
import struct
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import xxhash
from torch.utils.serialization import config

from lesson_utils.i18n import _

NAME_PATTERN = re.compile(r"^ckpt_(\d+)\.pt$")
# ".ckpt_00000003.pt.tmp-<host>-<pid>": where a save writes before the rename
TEMPORARY_PATTERN = re.compile(r"^\..+\.tmp-(?P<host>.+)-(?P<pid>\d+)$")

# Types the restricted unpickler of torch.load(weights_only=True) reads back. Scalars are
# compared by exact type: numpy.float64 is a subclass of float, but does not load back.
TENSOR_TYPES = (torch.Tensor, torch.Size, torch.dtype, torch.device)
SCALAR_TYPES = (int, float, bool, str, bytes, type(None))
INTEGRITY_KEY = "_integrity"  # written by save_checkpoint, checked and removed by load_checkpoint


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


def checkpoint_name(step: int) -> str:
    """The file name ``save_checkpoint`` rotation and ``latest_checkpoint`` recognise.

    Example:
        >>> checkpoint_name(12)
        'ckpt_00000012.pt'
    """
    return f"ckpt_{step:08d}.pt"


def _first_unloadable(value: Any, where: str) -> tuple[str, str] | None:
    """Where in ``value`` sits something ``weights_only=True`` cannot read, and its type; or None."""
    if isinstance(value, TENSOR_TYPES) or type(value) in SCALAR_TYPES:
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _first_unloadable(key, where) or _first_unloadable(item, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple, set)):
        for i, item in enumerate(value):
            found = _first_unloadable(item, f"{where}[{i}]")
            if found:
                return found
        return None
    return where, f"{type(value).__module__}.{type(value).__qualname__}"


def _leaves(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every tensor and plain value in ``value`` with its place (``model_state_dict/fc1.bias``), in order."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{where}/{key}")
    elif isinstance(value, (list, tuple)):
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


@contextmanager
def _zip_crc32_off() -> Iterator[None]:
    """torch.save without its CRC32s (a process-wide setting, put back afterwards)."""
    before = config.save.compute_crc32
    config.save.compute_crc32 = False
    try:
        yield
    finally:
        config.save.compute_crc32 = before


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
    problem = _first_unloadable(checkpoint, "checkpoint")
    if problem:
        raise TypeError(
            _(
                "{where} is a {type}, which torch.load(weights_only=True) refuses to read back. "
                "Store tensors and plain python values only, e.g. float(loss) or loss.item() for a numpy number."
            ).format(where=problem[0], type=problem[1])
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
        with open(tmp, "wb") as f, _zip_crc32_off():
            torch.save({**checkpoint, INTEGRITY_KEY: content_digests(checkpoint)}, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)

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


def _verify_crc32(path: Path) -> None:
    """Check every record of the zip archive against the CRC32 that torch.save stored.

    ``torch.load`` does not check these itself: a flipped byte inside a tensor loads silently.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            if all(record.CRC == 0 for record in records):
                return  # saved with compute_crc32=False: there is nothing to check against
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise CorruptCheckpointError(
            _(
                "{path} is truncated or corrupt (not a complete zip archive: {error}). "
                "Load the previous checkpoint (latest_checkpoint) or retrain."
            ).format(path=path, error=error)
        ) from error
    if bad is not None:
        raise CorruptCheckpointError(
            _(
                "{path} is truncated or corrupt: record {record} does not match the CRC32 stored when it was saved. "
                "Load the previous checkpoint (latest_checkpoint) or retrain."
            ).format(path=path, record=repr(bad))
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
                "{path} is corrupt: {places} no longer match(es) the content hash stored when it was saved. "
                "Load the previous checkpoint (latest_checkpoint) or retrain."
            ).format(path=path, places=shown)
        )


def load_checkpoint(
    path: str | os.PathLike,
    required: Iterable[str] = (),
    map_location: str | torch.device = "cpu",
    verify: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint dict with ``torch.load(..., weights_only=True)``; never runs code.

    With ``verify`` (the default) the content is checked, because ``torch.load`` itself
    checks nothing: a flipped byte in a tensor would otherwise load silently. A file from
    :func:`save_checkpoint` is checked against its content hashes (which are then removed
    from the returned dict); one from plain ``torch.save`` against its zip CRC32s, which
    costs one extra read of the file.

    Raises a :class:`CheckpointError` subclass that names the file and what to do when
    the file is missing, empty, truncated, corrupt, not a checkpoint, lacks one of the
    ``required`` entries, or holds a pickle that would run code.

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
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CorruptCheckpointError(
            _(
                "{path} is empty (0 bytes): the save was interrupted or never happened. "
                "Load the previous checkpoint (latest_checkpoint) or retrain."
            ).format(path=path)
        )
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise NotACheckpointError(
            _(
                "{path} is not a file written by torch.save (it starts with {head}, "
                "expected a zip archive b'PK\\x03\\x04'). Check that the path points at a checkpoint."
            ).format(path=path, head=repr(head))
        )
    if head.startswith(b"PK") and verify:
        _verify_crc32(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            reason = str(error).split("Please file an issue")[0].strip().splitlines()
            detail = next((line for line in reason if "Unsupported" in line or "global" in line.lower()), reason[-1])
            raise UnsafeCheckpointError(
                _(
                    "{path} refuses to load with weights_only=True: it holds objects that would run code "
                    "when unpickled ({detail}). Nothing in it was executed. If you did not make this file, "
                    "delete it. If you made it yourself and trust it, see "
                    "torch.serialization.get_unsafe_globals_in_checkpoint and torch.serialization.safe_globals."
                ).format(path=path, detail=detail.strip())
            ) from error
        raise CorruptCheckpointError(
            _("{path} is damaged and cannot be unpickled ({error}). Load an earlier checkpoint.").format(
                path=path, error=error
            )
        ) from error
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise CorruptCheckpointError(
            _(
                "{path} is truncated or corrupt ({error}). Load the previous checkpoint (latest_checkpoint) or retrain."
            ).format(path=path, error=str(error).splitlines()[0])
        ) from error
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
