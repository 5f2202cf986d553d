"""Exercises for lesson 01 (state_dict). ``from lesson_utils.exercises import lesson01 as ex``."""

import torch

from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    choice,
    load_weights_only,
    modules_of,
    require_in_workdir,
    require_net,
    require_same_tensors,
    require_setup_net,
    seed0_net_state,
    state_of,
)
from lesson_utils.i18n import N_, _


def _saved_state_dict(net: torch.nn.Module, weights_path: object, workdir: object) -> str:
    require_setup_net(net)
    how = _("write it with torch.save(net.state_dict(), weights_path)")
    loaded = load_weights_only(weights_path, "weights_path", how)
    require_in_workdir(weights_path, workdir, "weights_path", "01")
    if not isinstance(loaded, dict):
        message = _("the file holds a {type}; expected the dict that net.state_dict() returns")
        raise Incorrect(message.format(type=type(loaded).__name__))
    expected = state_of(net)
    require_same_tensors(loaded, expected, what=_("the file"))
    return _("the file holds all {count} tensors of net, bit for bit").format(count=len(expected))


q1 = Question(
    "lesson01.q1",
    "Save the weights (the state_dict) of `net` to a file in `workdir`, and set `weights_path` to that file's path.",
    _saved_state_dict,
    names=["net", "weights_path"],
    optional=["workdir"],
    hint=N_("A state_dict is what model.state_dict() returns; torch.save writes any dict of tensors to a file."),
)


def _ready_to_predict(model: object, weights_path: object, net: object) -> str:
    require_net(model, "model", _("Q2"))
    if net is not None and model is net:
        raise Incorrect(_("`model` is `net` itself: build a new Net() and load the file at `weights_path` into it"))
    saved = load_weights_only(weights_path, "weights_path", _("answer Q1 first: it writes that file"))
    if not isinstance(saved, dict):
        raise Incorrect(_("the file at `weights_path` holds no state_dict: answer Q1 first (save net.state_dict())"))
    require_same_tensors(
        saved,
        seed0_net_state(),
        _("the set-up cell's net"),
        _("answer Q1 again: it saves net.state_dict() there"),
        what=_("the file at `weights_path`"),
    )
    require_same_tensors(
        state_of(model),
        saved,
        _("the file at `weights_path`"),
        _("load the file into it: model.load_state_dict(torch.load(weights_path, weights_only=True))"),
        what="`model`",
    )
    if model.training:
        raise Incorrect(_("`model` is still in training mode: call model.eval() before predicting"))
    training = [name for name, module in modules_of(model) if module.training]
    if training:
        message = _("`model` is in eval mode but its part `{part}` is training: call model.eval() last")
        raise Incorrect(message.format(part=training[0]))
    return _(
        "model holds the file's weights and is in eval mode, ready to predict (this Net has no Dropout or "
        "BatchNorm, so eval() changes nothing here; for a model with them, like lesson 01's vgg16_bn, it does)"
    )


q2 = Question(
    "lesson01.q2",
    "Load `weights_path` into a new `Net` called `model`, ready to predict.",
    _ready_to_predict,
    names=["model", "weights_path"],
    optional=["net"],
    hint=N_(
        "Build a Net(), load the file's state_dict into it; then Dropout and BatchNorm must stop training: one "
        "more method call."
    ),
)

q3 = choice(
    "lesson01.q3",
    "What does model.state_dict() contain?",
    {
        "a": N_("only the parameters"),
        "b": N_("the parameters and the buffers"),
        "c": N_("the parameters, buffers and optimizer"),
    },
    "b",
    {
        "a": N_("BatchNorm's running_mean and running_var are in it too, and they are not parameters"),
        "c": N_("the optimizer has a state_dict of its own: optimizer.state_dict()"),
    },
    hint=N_("Look at vgg16_bn's keys in lesson 01: some of them are not trained by the optimizer."),
)
