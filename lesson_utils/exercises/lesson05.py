"""Exercises for lesson 05 (big models). ``from lesson_utils.exercises import lesson05 as ex``."""

from pathlib import Path

import torch

from lesson_utils.exercises.core import Incorrect, Question, choice, require_same_tensors
from lesson_utils.memory import mapped_from


def _lean_load(model: object, weights_path: object) -> str:
    if not isinstance(model, torch.nn.Module):
        raise Incorrect(f"`model` should be the nn.Module you loaded, but it is a {type(model).__name__}")
    meta = [name for name, t in model.state_dict().items() if t.is_meta]
    if meta:
        raise Incorrect(f"{meta[0]} is still on the meta device (no data): load with assign=True")
    expected = torch.load(Path(str(weights_path)), weights_only=True)
    require_same_tensors(model.state_dict(), expected, "the file", "load the weights from `weights_path`")
    if not all(mapped_from(t, Path(str(weights_path))) for t in model.state_dict().values()):
        raise Incorrect(
            "the weights are a private copy, not the file's pages: build on the meta device and load with "
            "torch.load(..., mmap=True, weights_only=True) and load_state_dict(..., assign=True)"
        )
    return "every tensor comes straight from the file's pages: no random init, no second copy"


q1 = Question(
    "lesson05.q1",
    "Load `weights_path` into `model`, a `Net`, without random initialisation and without a second copy.",
    _lean_load,
    names=["model", "weights_path"],
    hint="Three pieces: torch.device('meta') while building, mmap=True in torch.load, assign=True in load_state_dict.",
    solution=(
        "with torch.device('meta'):\n    model = Net()\n"
        "model.load_state_dict(torch.load(weights_path, mmap=True, weights_only=True), assign=True)"
    ),
)

q2 = choice(
    "lesson05.q2",
    "You loaded with assign=True and want to train. When do you create the optimizer?",
    {"a": "before the load, as usual", "b": "after the load", "c": "it does not matter"},
    "b",
    {
        "a": "assign=True replaces the parameter tensors: an optimizer made before holds the old (meta) ones",
        "c": "it does: lesson 05 shows an optimizer made before the load holding meta tensors",
    },
    hint="Which tensors does an optimizer hold: the ones that exist when it is created, or later ones?",
)

q3 = choice(
    "lesson05.q3",
    "torch.save stored a CRC32 for every record. A byte of a tensor flips on disk. What does torch.load do?",
    {"a": "raises an error", "b": "loads the damaged numbers without a word", "c": "repairs the byte"},
    "b",
    {
        "a": "it does not check the CRC32: lesson 05 loads a damaged file without an error",
        "c": "a CRC32 detects damage (when someone checks it); it cannot repair anything",
    },
    hint="Lesson 05, section 3: what did torch.load print for the damaged files?",
)
