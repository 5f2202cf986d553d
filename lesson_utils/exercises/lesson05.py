"""Exercises for lesson 05 (big models). ``from lesson_utils.exercises import lesson05 as ex``."""

import mmap
import os
import struct
from pathlib import Path

from lesson_utils.exercises import initialisation
from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    _listed,
    choice,
    load_weights_only,
    require_module,
    require_same_tensors,
    seed0_net_state,
    state_of,
)
from lesson_utils.i18n import N_, _
from lesson_utils.memory import mapped_from


def _mapping(address: int) -> dict | None:
    """The entry of this process's ``/proc/self/smaps`` whose range holds ``address``: ``low``, ``high``,
    ``path`` (the mapped file, "" for anonymous memory; " (deleted)" when it was deleted) and the entry's kB
    counters (``Anonymous``: pages that are private copies now); None if no mapping holds it."""
    entry = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=5)
            if "-" in head[0] and head[0].count("-") == 1 and ":" not in head[0]:  # a new mapping's first line
                if entry is not None:
                    return entry
                low, high = (int(x, 16) for x in head[0].split("-"))
                path = head[5].strip() if len(head) == 6 else ""
                entry = {"low": low, "high": high, "path": path} if low <= address < high else None
            elif entry is not None and line.endswith(" kB\n"):
                key, value = line.split(":", 1)
                entry[key] = int(value.split()[0])
    return entry


def _same_file(mapped: str, path: Path) -> bool:
    """Whether the mapped file ``mapped`` (a path from smaps) is the file ``path``: the same path, or a
    hard link to it (the same inode on the same device)."""
    try:
        return os.path.samefile(mapped, path)
    except OSError:  # deleted, or not a path at all
        return False


def _written_pages(start: int, end: int, mapping: dict) -> bool:
    """Whether a page in ``[start, end)`` is a private copy now, written after the file was mapped (copy on
    write): ``/proc/self/pagemap`` gives each page's kind; where it cannot be read, the mapping's own count of
    such (anonymous) pages in ``/proc/self/smaps`` says whether the whole mapping holds any."""
    page = mmap.PAGESIZE
    try:
        with open("/proc/self/pagemap", "rb") as pagemap:
            pagemap.seek(start // page * 8)
            entries = pagemap.read(((end - 1) // page - start // page + 1) * 8)
    except OSError:
        return mapping.get("Anonymous", 0) > 0
    for (entry,) in struct.iter_unpack("<Q", entries):
        present, swapped, file_page = entry >> 63 & 1, entry >> 62 & 1, entry >> 61 & 1
        if swapped or (present and not file_page):  # a file's own page is never swapped, only private ones
            return True
    return False


def _pages(tensor: object, path: Path) -> tuple[str, str]:
    """Where ``tensor``'s numbers are now, and in which file: ("file", path) in a map of the file ``path``,
    every page still the file's; ("copied", path) in that map, but some of its pages are private copies now;
    ("other", file) in a map of another file; ("elsewhere", "") in the process's own memory."""
    if tensor.numel() == 0:
        return "file", str(path)
    start = tensor.data_ptr()
    end = start + tensor.element_size() * (
        1 + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride(), strict=True))
    )
    mapping = _mapping(start)
    if mapping is None:
        return "elsewhere", ""
    if not mapped_from(tensor, path) and not _same_file(mapping["path"], path):
        mapped = mapping["path"]
        real = mapped.startswith("/") and not mapped.endswith("(deleted)") and Path(mapped).is_file()
        return ("other", mapped) if real and not mapped.startswith("/dev/shm/") else ("elsewhere", "")
    return ("copied" if _written_pages(start, end, mapping) else "file"), str(path)


def _lean_load(model: object, weights_path: object) -> str:
    require_module(model, "model")
    saved = load_weights_only(weights_path, "weights_path", _("run the set-up cell again: it writes that file"))
    if not isinstance(saved, dict):
        raise Incorrect(_("the file at `weights_path` is not the set-up cell's state_dict: run the set-up cell again"))
    state = state_of(model)
    meta = [name for name, t in state.items() if t.is_meta]
    if meta and len(meta) == len(state):
        raise Incorrect(
            _(
                "every tensor of `model` is still on the meta device (no data): nothing was loaded into it that "
                "kept. Without assign=True, load_state_dict copies into the meta tensors, which keeps nothing; with "
                "assign=True the file's tensors replace them. (Built `model` again after loading? Load again.)"
            )
        )
    if meta:
        message = _(
            "{key} is still on the meta device (no data) while other tensors hold the file's: the load did not "
            "replace it (strict=False, or a key it did not match?). Load the whole state_dict with assign=True"
        )
        raise Incorrect(message.format(key=meta[0]))
    require_same_tensors(
        state,
        saved,
        _("the file at `weights_path`"),
        _("load the weights from `weights_path`"),
        what="`model`",
    )
    require_same_tensors(
        saved,
        seed0_net_state(),
        _("the set-up cell's Net"),
        _("the file at `weights_path` was changed: run the set-up cell again"),
        what=_("the file at `weights_path`"),
    )
    initialised = initialisation.initialised(model)
    if initialised:
        message = _(
            "random initialisation ran: {key} was created with real data before the load. Build the "
            "model inside `with torch.device('meta'):` so that no tensor is allocated or initialised"
        )
        raise Incorrect(message.format(key=initialised[0]))
    path = Path(str(weights_path))
    where = {key: _pages(t, path) for key, t in state.items()}
    others = [(key, file) for key, (kind, file) in where.items() if kind == "other"]
    if others:
        message = _(
            "{key} is mapped from {file}, another file than `weights_path` ({path}): a copy of the weights, on disk "
            "and in memory. Map the file at `weights_path` itself: torch.load(weights_path, mmap=True, "
            "weights_only=True)"
        )
        raise Incorrect(message.format(key=others[0][0], file=others[0][1], path=path))
    private = [key for key, (kind, _file) in where.items() if kind == "elsewhere"]
    if private:
        message = _(
            "{keys} lie in this process's own memory: a private copy, not the file's pages. Either the load "
            "copied them (a lean load needs torch.load(..., mmap=True, weights_only=True) and "
            "load_state_dict(..., assign=True)), or something moved them after it (.to(), .share_memory(), a "
            "conversion there and back)"
        )
        raise Incorrect(message.format(keys=_listed(private, most=4)))
    copied = [key for key, (kind, _file) in where.items() if kind == "copied"]
    if copied:
        message = _(
            "the weights were mapped from the file, but pages holding {keys} are private copies now: something "
            "wrote into them after the lean load (a second, plain load_state_dict, or an in-place change). Load "
            "once, with mmap=True and assign=True, and change nothing after"
        )
        raise Incorrect(message.format(keys=_listed(copied, most=4)))
    return _("every tensor comes straight from the file's pages: no random init, no second copy")


q1 = Question(
    "lesson05.q1",
    "Load `weights_path` into `model`, a `Net`, without random initialisation and without a second copy.",
    _lean_load,
    names=["model", "weights_path"],
    hint=N_(
        "Three pieces: torch.device('meta') while building, mmap=True in torch.load, assign=True in load_state_dict."
    ),
)

q2 = choice(
    "lesson05.q2",
    "You loaded with assign=True and want to train. When do you create the optimizer?",
    {"a": N_("before the load, as usual"), "b": N_("after the load"), "c": N_("it does not matter")},
    "b",
    {
        "a": N_("assign=True replaces the parameter tensors: an optimizer made before holds the old (meta) ones"),
        "c": N_("it does: lesson 05 shows an optimizer made before the load holding meta tensors"),
    },
    hint=N_("Which tensors does an optimizer hold: the ones that exist when it is created, or later ones?"),
)

q3 = choice(
    "lesson05.q3",
    "torch.save stored a CRC32 for every record. A byte of a tensor flips on disk. What does torch.load do?",
    {"a": N_("raises an error"), "b": N_("loads the damaged numbers without a word"), "c": N_("repairs the byte")},
    "b",
    {
        "a": N_("it does not check the CRC32: lesson 05 loads a damaged file without an error"),
        "c": N_("a CRC32 detects damage (when someone checks it); it cannot repair anything"),
    },
    hint=N_("Lesson 05, section 3: what did torch.load print for the damaged files?"),
)
