"""Exercises for lesson 04 (warm start). ``from lesson_utils.exercises import lesson04 as ex``."""

import torch

from lesson_utils.exercises.core import Incorrect, Question, choice


def _warm_started(target: object, source_state: object) -> str:
    if not isinstance(target, torch.nn.Module) or not isinstance(source_state, dict):
        raise Incorrect("`target` should be the new model and `source_state` the source's state_dict")
    state = target.state_dict()
    if "fc3.weight" not in state or state["fc3.weight"].shape[0] != 4:
        raise Incorrect("`target` must keep its 4-class head: fc3.weight should have shape (4, 84)")
    fitting = [k for k, v in state.items() if k in source_state and source_state[k].shape == v.shape]
    copied = [k for k in fitting if torch.equal(state[k], source_state[k])]
    if not copied:
        raise Incorrect("no layer of `target` holds the source's weights: load the tensors whose shapes fit")
    missed = [k for k in fitting if k not in copied]
    if missed:
        raise Incorrect(f"these fit but were not transferred: {missed}; load every tensor whose name and shape match")
    return f"{len(copied)} tensors transferred, the 4-class head kept"


q1 = Question(
    "lesson04.q1",
    "Build `target`, a Net with 4 classes, and warm start it from `source_state` (a 10-class Net's state_dict): "
    "transfer every tensor that fits, keep the new head.",
    _warm_started,
    names=["target", "source_state"],
    hint="strict=False alone raises on fc3's size mismatch: filter by shape first (or use load_matching_weights).",
    solution="target = Net(num_classes=4)\nload_matching_weights(target, source_state)",
)

q2 = choice(
    "lesson04.q2",
    "What does load_state_dict(..., strict=False) NOT ignore?",
    {
        "a": "keys the model has and the file lacks",
        "b": "keys the file has and the model lacks",
        "c": "a key on both sides with different shapes",
    },
    "c",
    {
        "a": "those are the missing_keys it returns instead of raising",
        "b": "those are the unexpected_keys it returns instead of raising",
    },
    hint="Lesson 04, section 3: which cell still raised with strict=False?",
)


def _prefix_stripped(ddp_state: object, clean_state: object) -> str:
    if not isinstance(clean_state, dict):
        raise Incorrect(f"`clean_state` should be a dict (a state_dict), found {type(clean_state).__name__}")
    expected = {k.removeprefix("module."): v for k, v in ddp_state.items()}
    if any(k.startswith("module.") for k in clean_state):
        raise Incorrect("keys still start with 'module.': strip it (consume_prefix_in_state_dict_if_present)")
    if clean_state.keys() != expected.keys():
        raise Incorrect(f"the keys should be {sorted(expected)[:3]}..., found {sorted(clean_state)[:3]}...")
    if not all(torch.equal(clean_state[k], v) for k, v in expected.items()):
        raise Incorrect("the keys are right but some tensors changed: only rename, do not touch the values")
    return "a plain Net can load it now"


q3 = Question(
    "lesson04.q3",
    "`ddp_state` was saved from a DataParallel/DDP-wrapped Net. Make `clean_state`, the same tensors with the "
    "keys a plain Net expects.",
    _prefix_stripped,
    names=["ddp_state", "clean_state"],
    hint="torch.nn.modules.utils.consume_prefix_in_state_dict_if_present edits a dict in place: copy it first.",
    solution="clean_state = dict(ddp_state)\nconsume_prefix_in_state_dict_if_present(clean_state, 'module.')",
)
