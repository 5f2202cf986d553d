"""Exercises for lesson 03 (checkpoints, resume). ``from lesson_utils.exercises import lesson03 as ex``."""

import pickle

import torch

from lesson_utils.checkpoint import CheckpointError, load_checkpoint
from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    choice,
    require_file,
    require_net,
    require_optimizer_for,
    require_same_tensors,
    seed0_net_state,
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
        and all(torch.is_tensor(v) and v.shape == initial[k].shape for k, v in weights.items())
        and all(torch.equal(v.cpu(), initial[k]) for k, v in weights.items())
    )


def _reference_epoch() -> tuple[dict, list]:
    """What the set-up's net and optimizer hold after the one epoch Q1 asks for: weights and momentum.

    The set-up cell and Q1's training, replayed on the CPU with every random state saved and
    put back, so the notebook's own random numbers are untouched.
    """
    from lesson_utils import OfflineShapes, seed_everything
    from lesson_utils.reproducibility import rng_state, set_rng_state
    from lesson_utils.training import train_one_epoch

    saved = rng_state()
    try:
        seed_everything(0)
        train_set = OfflineShapes(512)
        with torch.device("cpu"):
            net = Net()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
        train_one_epoch(net, optimizer, train_set, epoch=0)
    finally:
        set_rng_state(saved)
    return net.state_dict(), [optimizer.state[p]["momentum_buffer"] for p in net.parameters()]


def _close(found: object, expected: torch.Tensor) -> bool:
    """Same shape and dtype, and the same numbers up to float rounding (thread counts can change the last bits)."""
    return (
        type(found) in (torch.Tensor, torch.nn.Parameter)
        and (found.dtype, found.shape) == (expected.dtype, expected.shape)
        and torch.allclose(found.detach().cpu(), expected, rtol=1e-4, atol=1e-6)
    )


def _resumable_checkpoint(checkpoint_path: object, net: object) -> str:
    require_net(net, "net")
    checkpoint = _checkpoint(checkpoint_path, _("write it with torch.save({...}, checkpoint_path)"))
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
        net.state_dict(),
        _("net's state_dict"),
        _("the checkpoint must hold net's trained weights: save net.state_dict() after train_one_epoch"),
        what=_("the checkpoint's model_state_dict"),
    )
    saved = checkpoint["optimizer_state_dict"]
    names = [name for name, _parameter in net.named_parameters()]
    momentum = _momentum(saved["state"], names)
    if not momentum:
        raise Incorrect(_("the optimizer state holds no momentum buffers: save optimizer.state_dict() after training"))
    for name, parameter in net.named_parameters():
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
    weights_after, momentum_after = _reference_epoch()
    with torch._C.DisableTorchFunctionSubclass():
        if not all(_close(weights.get(k), v) for k, v in weights_after.items()):
            raise Incorrect(
                _(
                    "the checkpoint's weights are not those of one epoch of "
                    "train_one_epoch(net, optimizer, train_set, epoch=0) from the set-up cell: run the set-up cell, "
                    "train exactly once, then save"
                )
            )
        buffers = [momentum.get(_momentum_key(name)) for name, _parameter in net.named_parameters()]
        if not all(_close(b, v) for b, v in zip(buffers, momentum_after, strict=True)):
            raise Incorrect(
                _(
                    "the saved momentum buffers are not the ones that epoch of training left in `optimizer`: "
                    "save optimizer.state_dict() right after train_one_epoch"
                )
            )
    for group in saved["param_groups"] if isinstance(saved["param_groups"], list) else [None]:
        if not isinstance(group, dict) or (group.get("lr"), group.get("momentum")) != (0.02, 0.9):
            raise Incorrect(_("'optimizer_state_dict' is not the set-up's optimizer (lr=0.02, momentum=0.9): save it"))
    return _("it loads with weights_only=True and holds net's trained weights, the optimizer's momentum and the epoch")


q1 = Question(
    "lesson03.q1",
    "Train `net` for one epoch with `optimizer` (SGD with momentum), then write a checkpoint to `checkpoint_path` "
    "that lets training go on: epoch, model_state_dict, optimizer_state_dict.",
    _resumable_checkpoint,
    names=["checkpoint_path", "net"],
    hint=N_("A plain dict of named entries; store numbers with .item() so weights_only=True can read them."),
)


def _optimizer_on_model(model: object, optimizer: object, checkpoint_path: object, net: object) -> str:
    require_net(model, "model", _("the question"))
    if model is net:
        raise Incorrect(
            _("`model` is the set-up's `net` itself, not a resume: build a new Net() and load the checkpoint into it")
        )
    bug = _("Building it on another model's parameters is the original lesson's bug")
    require_optimizer_for(optimizer, model, "optimizer", "model", bug)
    if not isinstance(optimizer, torch.optim.SGD):
        raise Incorrect(_("`optimizer` should be optim.SGD, found {type}").format(type=type(optimizer).__name__))
    for group in optimizer.param_groups:
        if (group["lr"], group["momentum"]) != (0.02, 0.9):
            message = _("`optimizer` has lr={lr}, momentum={momentum}: the question asks 0.02, 0.9")
            raise Incorrect(message.format(lr=group["lr"], momentum=group["momentum"]))
    checkpoint = _checkpoint(checkpoint_path, _("answer Q1 first: it writes that file"))
    require_same_tensors(
        model.state_dict(),
        checkpoint["model_state_dict"],
        _("the checkpoint's model_state_dict"),
        _("load it: model.load_state_dict(checkpoint['model_state_dict'])"),
        what="`model`",
    )
    if not optimizer.state:
        raise Incorrect(
            _("the optimizer's state was not loaded: optimizer.load_state_dict(checkpoint['optimizer_state_dict'])")
        )
    # Each of the model's parameters, in the model's order, with the state the optimizer keeps for
    # *it* (an optimizer built on the parameters in another order holds them under other numbers).
    named = list(model.named_parameters())
    names = [name for name, _parameter in named]
    by_index = {i: optimizer.state[p] for i, (_name, p) in enumerate(named) if p in optimizer.state}
    require_same_tensors(
        _momentum(by_index, names),
        _momentum(checkpoint["optimizer_state_dict"]["state"], names),
        _("the checkpoint's optimizer_state_dict"),
        _("build the optimizer on `model`, then optimizer.load_state_dict(checkpoint['optimizer_state_dict'])"),
        what="`optimizer`",
    )
    return _("the optimizer trains `model`, which holds the saved weights, and carries on with the saved momentum")


q2 = Question(
    "lesson03.q2",
    "Resume from `checkpoint_path`: build `model` (a Net) and `optimizer` (SGD, lr=0.02, momentum=0.9) "
    "and load both states.",
    _optimizer_on_model,
    names=["model", "optimizer", "checkpoint_path", "net"],
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
