"""Exercises for lesson 05 (big models). ``from lesson_utils.exercises import lesson05 as ex``."""

from pathlib import Path

from lesson_utils.exercises import initialisation
from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    choice,
    load_weights_only,
    require_module,
    require_same_tensors,
)
from lesson_utils.i18n import N_, _
from lesson_utils.memory import mapped_from


def _lean_load(model: object, weights_path: object) -> str:
    require_module(model, "model")
    saved = load_weights_only(weights_path, "weights_path", _("run the set-up cell again: it writes that file"))
    if not isinstance(saved, dict):
        raise Incorrect(_("the file at `weights_path` is not the set-up cell's state_dict: run the set-up cell again"))
    meta = [name for name, t in model.state_dict().items() if t.is_meta]
    if meta:
        message = _(
            "{key} is still on the meta device (no data): without assign=True, load_state_dict copies into the "
            "meta tensors, which keeps nothing; pass assign=True so the file's tensors replace them"
        )
        raise Incorrect(message.format(key=meta[0]))
    require_same_tensors(
        model.state_dict(),
        saved,
        _("the file at `weights_path`"),
        _("load the weights from `weights_path`"),
        what="`model`",
    )
    initialised = initialisation.initialised(model)
    if initialised:
        message = _(
            "random initialisation ran: {key} was created with real data before the load. Build the "
            "model inside `with torch.device('meta'):` so that no tensor is allocated or initialised"
        )
        raise Incorrect(message.format(key=initialised[0]))
    path = Path(str(weights_path))
    if not all(mapped_from(t, path) for t in model.state_dict().values()):
        raise Incorrect(
            _(
                "the weights are a private copy, not the file's pages: load with "
                "torch.load(..., mmap=True, weights_only=True) and load_state_dict(..., assign=True)"
            )
        )
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
