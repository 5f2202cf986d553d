"""Exercises for lesson 04 (warm start). ``from lesson_utils.exercises import lesson04 as ex``."""

import torch

from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    choice,
    require_module,
    require_same_tensors,
)
from lesson_utils.i18n import N_, _
from lesson_utils.models import Net


def _fresh_head(head: torch.Tensor, source: object) -> None:
    """A freshly initialised head: no row taken from the source's head, values within nn.Linear's initial range."""
    name, head = "fc3.weight" if head.dim() == 2 else "fc3.bias", head.detach().cpu()
    rows = source.get(name) if isinstance(source, dict) else None
    # (The set-up draws the source after another Net: a student who seeds 0 again before
    # Net(num_classes=4) draws a head of its own, not the source's first rows.)
    if torch.is_tensor(rows) and rows.shape[1:] == head.shape[1:]:
        copied = [i for i, row in enumerate(head) if any(torch.equal(row, old) for old in rows.to(head.dtype))]
        if copied:
            message = _(
                "{name} takes rows {rows} from the source's 10-class head: the 4 new classes are not the old ones, "
                "so the head must stay new (Net(num_classes=4)'s own initialisation)"
            )
            raise Incorrect(message.format(name=name, rows=copied))
    bound = 1 / 84**0.5  # nn.Linear(84, 4) draws weight and bias uniformly from (-bound, bound)
    if head.abs().max() > bound or (head.numel() > 1 and torch.all(head == head.flatten()[0])):
        message = _(
            "{name} does not look freshly initialised (its values should be spread within +-{bound:.3f}): "
            "keep the head Net(num_classes=4) built, do not fill or train it"
        )
        raise Incorrect(message.format(name=name, bound=bound))


def _warm_started(target: object, source_state: object) -> str:
    require_module(target, "target")
    if not isinstance(source_state, dict):
        raise Incorrect(_("`source_state` should be the set-up cell's state_dict: run the set-up cell again"))
    with torch.device("meta"):  # names and shapes only: no initialisation, the notebook's RNG untouched
        expected = Net(num_classes=4).state_dict()
    state = target.state_dict()
    if state.keys() != expected.keys():
        require_same_tensors(state, expected, _("a Net(num_classes=4)'s state_dict"), what="`target`")
    if state["fc3.weight"].shape != expected["fc3.weight"].shape:
        shape = list(state["fc3.weight"].shape)
        raise Incorrect(
            _("`target` must have a 4-class head: fc3.weight has shape {shape}, not [4, 84]").format(shape=shape)
        )
    meta = [k for k, v in state.items() if v.is_meta]
    if meta:
        message = _("{key} of `target` is on the meta device (no data): build target normally, on the CPU")
        raise Incorrect(message.format(key=meta[0]))
    fitting = {k: v for k, v in source_state.items() if k in state and torch.is_tensor(v) and v.shape == state[k].shape}
    copied = [k for k, v in fitting.items() if torch.equal(state[k].cpu(), v.cpu())]
    if not copied:
        raise Incorrect(_("no layer of `target` holds the source's weights: load the tensors whose shapes fit"))
    missed = [k for k in fitting if k not in copied]
    if missed:
        message = _("these fit but were not transferred: {keys}; load every tensor whose name and shape match")
        raise Incorrect(message.format(keys=missed))
    require_same_tensors(
        {k: state[k] for k in fitting}, fitting, "source_state", _("load the tensors as they are"), what="`target`"
    )
    _fresh_head(state["fc3.weight"], source_state)
    _fresh_head(state["fc3.bias"], source_state)
    return _("{count} tensors transferred, the 4-class head new").format(count=len(copied))


q1 = Question(
    "lesson04.q1",
    "Build `target`, a Net with 4 classes, and warm start it from `source_state` (a 10-class Net's state_dict): "
    "transfer every tensor that fits, keep the new head.",
    _warm_started,
    names=["target", "source_state"],
    hint=N_("strict=False alone raises on fc3's size mismatch: filter by shape first (or use load_matching_weights)."),
)

q2 = choice(
    "lesson04.q2",
    "What does load_state_dict(..., strict=False) NOT ignore?",
    {
        "a": N_("keys the model has and the file lacks"),
        "b": N_("keys the file has and the model lacks"),
        "c": N_("a key on both sides with different shapes"),
    },
    "c",
    {
        "a": N_("those are the missing_keys it returns instead of raising"),
        "b": N_("those are the unexpected_keys it returns instead of raising"),
    },
    hint=N_("Lesson 04, section 3: which cell still raised with strict=False?"),
)


def _prefix_stripped(ddp_state: object, clean_state: object) -> str:
    if not isinstance(ddp_state, dict) or not ddp_state:
        raise Incorrect(_("`ddp_state` should be the set-up cell's state_dict: run the set-up cell again"))
    if not any(str(k).startswith("module.") for k in ddp_state):
        raise Incorrect(
            _(
                "`ddp_state` itself lost its 'module.' prefix: consume_prefix_in_state_dict_if_present edits the dict "
                "you pass in place. Run the set-up cell again, then strip a copy: clean_state = dict(ddp_state)"
            )
        )
    expected = {k.removeprefix("module."): v for k, v in ddp_state.items()}
    if isinstance(clean_state, dict) and any(str(k).startswith("module.") for k in clean_state):
        raise Incorrect(_("keys still start with 'module.': strip it (consume_prefix_in_state_dict_if_present)"))
    require_same_tensors(
        clean_state,
        expected,
        _("`ddp_state` with 'module.' stripped"),
        _("only rename the keys, do not touch the values"),
        what="`clean_state`",
    )
    return _("a plain Net can load it now")


q3 = Question(
    "lesson04.q3",
    "`ddp_state` was saved from a DataParallel/DDP-wrapped Net. Make `clean_state`, the same tensors with the "
    "keys a plain Net expects.",
    _prefix_stripped,
    names=["ddp_state", "clean_state"],
    hint=N_("torch.nn.modules.utils.consume_prefix_in_state_dict_if_present edits a dict in place: copy it first."),
    none_message=N_(
        "If you wrote `clean_state = consume_prefix_in_state_dict_if_present(...)`: that function edits the dict "
        "you pass in place and returns None. Copy first (clean_state = dict(ddp_state)), then call it on "
        "clean_state without assigning its result"
    ),
)
