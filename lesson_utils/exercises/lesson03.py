"""Exercises for lesson 03 (checkpoints, resume). ``from lesson_utils.exercises import lesson03 as ex``."""

import pickle

import torch

from lesson_utils.checkpoint import CheckpointError, load_checkpoint
from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    choice,
    close_values,
    different_setting,
    parameters_of,
    require_file,
    require_in_workdir,
    require_net,
    require_optimizer_for,
    require_resumed_optimizer,
    require_same_tensors,
    require_training_mode,
    same_setting,
    same_values,
    seed0_net_state,
    state_of,
)
from lesson_utils.i18n import N_, _
from lesson_utils.models import Net

REQUIRED = ["epoch", "model_state_dict", "optimizer_state_dict"]


def _checkpoint(checkpoint_path: object, how: str) -> dict:
    require_file(checkpoint_path, "checkpoint_path", how)
    try:
        torch.load(str(checkpoint_path), weights_only=True)
    except pickle.UnpicklingError:
        raise Incorrect(
            _(
                "the checkpoint does not load with weights_only=True: it holds objects, not only tensors and numbers "
                "(the model or optimizer object itself, a method without its (), a numpy number?). Save state_dicts, "
                "and plain numbers (int(...) or .item())"
            )
        ) from None
    except Exception:
        pass  # load_checkpoint below says what is wrong
    try:
        checkpoint = load_checkpoint(str(checkpoint_path), required=REQUIRED)
    except CheckpointError as error:
        raise Incorrect(_("load_checkpoint refuses it: {error}").format(error=error)) from None
    saved = checkpoint["optimizer_state_dict"]
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) or "param_groups" not in saved:
        raise Incorrect(_("'optimizer_state_dict' should be what optimizer.state_dict() returns"))
    return checkpoint


def _momentum_key(name: str) -> str:
    """The key of a parameter's momentum buffer in :func:`_momentum`: "momentum of <name>", shown in messages."""
    return _("momentum of {name}").format(name=name)


def _momentum(state: object, names: list[str]) -> dict:
    """{"momentum of <parameter name>": buffer} from an optimizer's state_dict()['state'] (keyed by index)."""
    state = state if isinstance(state, dict) else {}
    return {
        _momentum_key(names[i]): s["momentum_buffer"]
        for i, s in state.items()
        if isinstance(i, int) and i < len(names) and isinstance(s, dict) and s.get("momentum_buffer") is not None
    }


def _untrained(weights: object) -> bool:
    """Whether ``weights`` are the ones the set-up cell's `net` starts with (seed 0), before any training."""
    initial = seed0_net_state()
    return (
        isinstance(weights, dict)
        and weights.keys() == initial.keys()
        and all(same_values(v, initial[k]) for k, v in weights.items())
    )


def _reference_epoch() -> tuple[dict, dict]:
    """What the set-up's net and optimizer hold after the one epoch Q1 asks for: weights, and the
    optimizer's state_dict.

    The set-up cell and Q1's training, replayed on the CPU with every random state saved and
    put back, so the notebook's own random numbers are untouched; without a progress bar, which
    would show in the check cell's output.
    """
    from unittest import mock

    from lesson_utils import OfflineShapes, seed_everything, training
    from lesson_utils.reproducibility import rng_state, set_rng_state

    saved = rng_state()
    try:
        seed_everything(0)
        train_set = OfflineShapes(512)
        net = Net()  # on the CPU: checkers run under torch_as_installed
        optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
        with mock.patch.object(training, "tqdm", lambda batches, **_options: batches):
            training.train_one_epoch(net, optimizer, train_set, epoch=0)
    finally:
        set_rng_state(saved)
    return net.state_dict(), optimizer.state_dict()


def _close(found: object, expected: torch.Tensor) -> bool:
    """Same shape and dtype, and the same numbers up to float rounding (thread counts can change the last bits)."""
    return type(found) in (torch.Tensor, torch.nn.Parameter) and close_values(found, expected, rtol=1e-4, atol=1e-6)


def _same_optimizer_as_the_setup(saved: dict, reference: dict) -> None:
    """:class:`Incorrect` unless the saved optimizer state_dict has the set-up's parameter groups, every
    setting as the set-up's SGD has it, and no state entry the set-up's SGD does not keep."""
    groups, expected = saved["param_groups"], reference["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(expected) or not all(isinstance(g, dict) for g in groups):
        raise Incorrect(_("'optimizer_state_dict' should be what the set-up's optimizer.state_dict() returns: save it"))
    for group, want in zip(groups, expected, strict=True):
        key = different_setting(group, want)
        if key is not None:
            message = _(
                "'optimizer_state_dict' has {key}={found}, but the set-up's optimizer (SGD, lr=0.02, momentum=0.9) "
                "has {key}={expected}: save its optimizer.state_dict() as it is"
            )
            raise Incorrect(message.format(key=key, found=group.get(key), expected=want[key]))
        if group.get("params") != want["params"]:
            message = _(
                "'optimizer_state_dict' numbers its parameters {found}, the set-up's optimizer {expected}: save "
                "optimizer.state_dict() as it is"
            )
            raise Incorrect(message.format(found=group.get("params"), expected=want["params"]))
    for index, state in saved["state"].items():
        extra = [entry for entry in state if entry not in reference["state"].get(index, {})]
        if extra:
            message = _(
                "the optimizer state holds {entry} for parameter {index}, which the set-up's SGD does not keep: "
                "save optimizer.state_dict() as it is"
            )
            raise Incorrect(message.format(entry=extra[0], index=index))


def _require_the_epoch(checkpoint: dict, again: str = "") -> dict:
    """:class:`Incorrect` unless the checkpoint's weights and momentum buffers are those one epoch of the set-up's
    training leaves (to float rounding), computed here from the set-up, not read from a file. ``again`` (translated)
    is the advice instead of the one for Q1's own answer. Returns the reference optimizer's state_dict."""
    weights_after, optimizer_after = _reference_epoch()
    weights = checkpoint["model_state_dict"]
    if not isinstance(weights, dict) or not all(_close(weights.get(k), v) for k, v in weights_after.items()):
        message = _(
            "the checkpoint's weights are not those of one epoch of train_one_epoch(net, optimizer, train_set, "
            "epoch=0) from the set-up cell: {advice}"
        )
        advice = again or _(
            "run the set-up cell, train exactly once, then save (each run of the training cell trains one more epoch)"
        )
        raise Incorrect(message.format(advice=advice))
    names = list(weights_after)  # a Net has parameters only: its state_dict's keys, in the optimizer's order
    buffers = [_momentum(checkpoint["optimizer_state_dict"]["state"], names).get(_momentum_key(n)) for n in names]
    expected = [optimizer_after["state"][i]["momentum_buffer"] for i in range(len(names))]
    if not all(_close(b, v) for b, v in zip(buffers, expected, strict=True)):
        message = _("the saved momentum buffers are not the ones that epoch of training left in `optimizer`: {advice}")
        advice = again or _("save optimizer.state_dict() right after train_one_epoch")
        raise Incorrect(message.format(advice=advice))
    return optimizer_after


def _resumable_checkpoint(checkpoint_path: object, net: object, workdir: object) -> str:
    require_net(net, "net")
    checkpoint = _checkpoint(checkpoint_path, _("write it with torch.save({...}, checkpoint_path)"))
    require_in_workdir(checkpoint_path, workdir, "checkpoint_path", "03")
    epoch = checkpoint["epoch"]
    if type(epoch) is not int:
        message = _("'epoch' should be a plain int (the next epoch to run: 1), found {type}")
        raise Incorrect(message.format(type=type(epoch).__name__))
    if epoch not in (0, 1):
        message = _("'epoch' is {epoch}, but net was trained for one epoch: store the next epoch to run, 1")
        raise Incorrect(message.format(epoch=epoch))
    weights = checkpoint["model_state_dict"]
    if _untrained(weights):
        raise Incorrect(
            _(
                "the checkpoint holds net's weights from before training: run "
                "train_one_epoch(net, optimizer, train_set, epoch=0) first, then save"
            )
        )
    require_same_tensors(
        weights,
        state_of(net),
        _("net's state_dict"),
        _("the checkpoint must hold net's trained weights: save net.state_dict() after train_one_epoch"),
        what=_("the checkpoint's model_state_dict"),
    )
    saved = checkpoint["optimizer_state_dict"]
    named = parameters_of(net)
    names = [name for name, _parameter in named]
    momentum = _momentum(saved["state"], names)
    if not momentum:
        raise Incorrect(_("the optimizer state holds no momentum buffers: save optimizer.state_dict() after training"))
    for name, parameter in named:
        buffer = momentum.get(_momentum_key(name))
        if buffer is None:
            message = _("the optimizer state has no momentum buffer for {name}: save optimizer.state_dict()")
            raise Incorrect(message.format(name=name))
        if not torch.is_tensor(buffer) or (buffer.dtype, buffer.shape) != (parameter.dtype, parameter.shape):
            message = _(
                "the momentum buffer saved for {name} does not match the parameter ({dtype}, "
                "{shape}): save the set-up's optimizer.state_dict() as it is"
            )
            raise Incorrect(message.format(name=name, dtype=parameter.dtype, shape=list(parameter.shape)))
    _same_optimizer_as_the_setup(saved, _require_the_epoch(checkpoint))
    return _("it loads with weights_only=True and holds net's trained weights, the optimizer's momentum and the epoch")


q1 = Question(
    "lesson03.q1",
    "Train `net` for one epoch with `optimizer` (SGD with momentum), then write a checkpoint that lets training go "
    "on (epoch, model_state_dict, optimizer_state_dict) to a file in `workdir`; set `checkpoint_path` to its path. "
    "Each run of the cell trains one more epoch: to run it again, run the set-up cell first.",
    _resumable_checkpoint,
    names=["checkpoint_path", "net"],
    optional=["workdir"],
    hint=N_("A plain dict of named entries; store numbers with .item() so weights_only=True can read them."),
)


def _optimizer_on_model(model: object, optimizer: object, checkpoint_path: object, net: object) -> str:
    require_net(model, "model", _("the question"))
    if net is not None and model is net:
        raise Incorrect(
            _("`model` is the set-up's `net` itself, not a resume: build a new Net() and load the checkpoint into it")
        )
    bug = _("Building it on another model's parameters is the original lesson's bug")
    require_optimizer_for(optimizer, model, "optimizer", "model", bug)
    if not isinstance(optimizer, torch.optim.SGD):
        raise Incorrect(_("`optimizer` should be optim.SGD, found {type}").format(type=type(optimizer).__name__))
    for group in optimizer.param_groups:
        if not (same_setting(group.get("lr"), 0.02) and same_setting(group.get("momentum"), 0.9)):
            message = _("`optimizer` has lr={lr}, momentum={momentum}: the question asks 0.02, 0.9")
            raise Incorrect(message.format(lr=group["lr"], momentum=group["momentum"]))
    checkpoint = _checkpoint(checkpoint_path, _("answer Q1 first: it writes that file"))
    _require_the_epoch(checkpoint, _("the file at `checkpoint_path` is not Q1's checkpoint any more: answer Q1 again"))
    require_same_tensors(
        state_of(model),
        checkpoint["model_state_dict"],
        _("the checkpoint's model_state_dict"),
        _("load it: model.load_state_dict(checkpoint['model_state_dict'])"),
        what="`model`",
        changed=_(
            "it was loaded, then changed (a training step?). The resumed `model` must hold exactly the saved "
            "weights: load both states again and check before training"
        ),
    )
    if not optimizer.state:
        raise Incorrect(
            _("the optimizer's state was not loaded: optimizer.load_state_dict(checkpoint['optimizer_state_dict'])")
        )
    require_resumed_optimizer(optimizer, model, checkpoint["optimizer_state_dict"], "optimizer", "model")
    require_training_mode(model, "model")
    return _("the optimizer trains `model`, which holds the saved weights, and carries on with the saved momentum")


q2 = Question(
    "lesson03.q2",
    "Resume from `checkpoint_path`: build `model` (a Net) and `optimizer` (SGD, lr=0.02, momentum=0.9) "
    "and load both states, ready to go on training.",
    _optimizer_on_model,
    names=["model", "optimizer", "checkpoint_path"],
    optional=["net"],
    hint=N_(
        "Order matters: build the model, move it to its device, create the optimizer on *it*, then load the states."
    ),
)

q3 = choice(
    "lesson03.q3",
    "Training uses a StepLR schedule, shuffling and random flips. Besides model, optimizer and epoch, what must a "
    "checkpoint hold to resume bit for bit?",
    {
        "a": N_("nothing else"),
        "b": N_("the scheduler's state, the RNG states and the data order"),
        "c": N_("the whole model, pickled"),
    },
    "b",
    {
        "a": N_("lesson 03 shows that this run ends with different weights than one that never stopped"),
        "c": N_("a pickled model holds the same numbers as its state_dict: the schedule and randomness are still lost"),
    },
    hint=N_("Section 4 of lesson 03 adds three things, one at a time, until torch.equal holds."),
)
