"""Exercises for lesson 02 (whole model, pickle, safetensors). ``from lesson_utils.exercises import lesson02 as ex``."""

import json
from pathlib import Path

import torch

from lesson_utils.exercises.core import (
    ORIGINALS,
    Incorrect,
    Question,
    choice,
    require_file,
    require_in_workdir,
    require_same_tensors,
    require_setup_net,
    state_of,
)
from lesson_utils.i18n import N_, _

q1 = choice(
    "lesson02.q1",
    "Since torch 2.6, what does torch.load(path) do when you pass nothing else?",
    {
        "a": N_("weights_only=False: it unpickles anything"),
        "b": N_("weights_only=True: only tensors and plain types"),
        "c": N_("mmap=True"),
    },
    "b",
    {
        "a": N_("that was the default before 2.6, and why the original lesson's whole-model load worked then"),
        "c": N_("mmap is off unless you ask for it (lesson 05)"),
    },
    hint=N_("Run the original lesson's `torch.load('model.pth')` on a whole model and read the error."),
)


def _file_kind(path: Path) -> str:
    """What the bytes of ``path`` are: "safetensors" (an 8-byte header length, then that many bytes of JSON
    that safetensors reads), "zip" (torch.save's archive), "pickle" (a legacy torch.save or pickle.dump) or
    "other". A safetensors header's length can start with any byte, 0x80 or "PK" too: it is tried first."""
    with open(path, "rb") as f:
        head = f.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else 0
        body = f.read(min(size, 1 << 24)) if 2 <= size <= 1 << 24 else b""
    if body[:1] == b"{" and len(body) == size:
        try:
            header = json.loads(body)
        except ValueError:
            header = None
        if isinstance(header, dict):
            return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # a pickle's PROTO opcode
        return "pickle"
    return "other"


def _safetensors_file(net: torch.nn.Module, safetensors_path: object, workdir: object) -> str:
    require_setup_net(net)
    path = require_file(safetensors_path, "safetensors_path", _("write it with safetensors.torch.save_file"))
    require_in_workdir(path, workdir, "safetensors_path", "02")
    kind = _file_kind(path)
    if kind == "zip":
        raise Incorrect(
            _(
                "this is a torch.save file (a zip archive), whatever its name: "
                "use safetensors.torch.save_file(net.state_dict(), safetensors_path)"
            )
        )
    if kind == "pickle":
        raise Incorrect(
            _(
                "this is a pickle, whatever its name: "
                "use safetensors.torch.save_file(net.state_dict(), safetensors_path)"
            )
        )
    try:
        loaded = ORIGINALS[("safetensors.torch", "load_file")](path)
    except Exception as error:
        message = _("safetensors cannot read {path} ({error_type}: {error})")
        raise Incorrect(message.format(path=path, error_type=type(error).__name__, error=error)) from None
    expected = state_of(net)
    require_same_tensors(loaded, expected, what=_("the file"))
    message = _("a safetensors file with all {count} tensors of net: no pickle, nothing runs when it loads")
    return message.format(count=len(expected))


q2 = Question(
    "lesson02.q2",
    "Save `net`'s weights in the safetensors format to a file in `workdir`; set `safetensors_path` to its path.",
    _safetensors_file,
    names=["net", "safetensors_path"],
    optional=["workdir"],
    hint=N_("`from safetensors.torch import save_file`; it takes a dict of tensors and a path."),
)

q3 = choice(
    "lesson02.q3",
    "A checkpoint you downloaded fails with 'Weights only load failed'. What do you do?",
    {
        "a": N_("load it with weights_only=False"),
        "b": N_(
            "list what it needs (get_unsafe_globals_in_checkpoint); allowlist only classes you trust, or ask for "
            "a state_dict or safetensors file"
        ),
        "c": N_("rename the file to .safetensors"),
    },
    "b",
    {
        "a": N_("weights_only=False runs whatever the file says: lesson 02 shows a payload doing exactly that"),
        "c": N_("the name does not change the bytes: a pickle stays a pickle"),
    },
    hint=N_("Section 3 of lesson 02: what happened to the marker file with each option?"),
)


q4 = choice(
    "lesson02.q4",
    "Someone you do not know sends you model.pt2, made with torch.export. Is torch.export.load(path) safe?",
    {
        "a": N_("yes: the graph is JSON and the weights are raw bytes"),
        "b": N_("no: the archive also holds pickles, and torch.export.load can unpickle them with weights_only=False"),
        "c": N_("yes, if you pass weights_only=True"),
    },
    "b",
    {
        "a": N_(
            "look inside the archive: data/sample_inputs/model.pt is a torch.save pickle, and lesson 02 shows "
            "a payload in it running on load"
        ),
        "c": N_(
            "torch.export.load has no weights_only argument (torch 2.14); it falls back to weights_only=False by itself"
        ),
    },
    hint=N_("Lesson 02, section 5: what happened to the marker file when the tampered .pt2 was loaded?"),
)
