"""Exercises for lesson 07 (devices, models, optimizer state). ``from lesson_utils.exercises import lesson07 as ex``."""

from __future__ import annotations

from pathlib import Path

import torch

from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    require_file,
    require_module,
    require_optimizer_for,
    require_same_tensors,
)
from lesson_utils.i18n import N_, _


def _saved(checkpoint_path: object) -> dict:
    """The set-up's checkpoint: model_state_dict and optimizer_state_dict (with a momentum buffer per parameter)."""
    try:
        saved = torch.load(Path(str(checkpoint_path)), weights_only=True)
        if not isinstance(saved, dict):
            raise TypeError(f"it holds a {type(saved).__name__}")
        buffers = [s["momentum_buffer"] for s in saved["optimizer_state_dict"]["state"].values()]
        if not buffers or not all(torch.is_tensor(b) for b in buffers):
            raise KeyError("momentum_buffer")
        return {"model": saved["model_state_dict"], "optimizer": saved["optimizer_state_dict"]}
    except Exception as error:  # missing, unreadable, or not the set-up's layout
        message = _(
            "`checkpoint_path` should be the set-up cell's checkpoint (it cannot be read: {error_type}): "
            "run the set-up cell again"
        )
        raise Incorrect(message.format(error_type=type(error).__name__)) from None


def _equal_exactly(found: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None) -> bool:
    """Same dtype (``dtype`` or the expected one), same shape, same numbers (torch.equal alone promotes dtypes)."""
    want = dtype or expected.dtype
    return found.dtype == want and found.shape == expected.shape and torch.equal(found.cpu(), expected.cpu().to(want))


def _require_sgd(optimizer: torch.optim.Optimizer, name: str, lr: float) -> None:
    if not isinstance(optimizer, torch.optim.SGD):
        message = _("`{name}` should be torch.optim.SGD, found {type}")
        raise Incorrect(message.format(name=name, type=type(optimizer).__name__))
    for group in optimizer.param_groups:
        if group["momentum"] != 0.9:
            message = _("`{name}` has momentum={momentum}: with momentum 0.9 the saved buffers are used")
            raise Incorrect(message.format(name=name, momentum=group["momentum"]))
        if group["lr"] != lr:
            message = _("`{name}` has lr={lr}, the question asks for lr={wanted}")
            raise Incorrect(message.format(name=name, lr=group["lr"], wanted=lr))


def _require_loaded(model: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict, dtype=None) -> None:
    """The model's weights and the optimizer's momentum are the checkpoint's (in ``dtype`` if given)."""
    require_same_tensors(
        model.state_dict(),
        saved["model"],
        _("the checkpoint's model_state_dict"),
        _("load model_state_dict into the model"),
        what=_("the model"),
        dtype=dtype,
    )
    if not optimizer.state:
        raise Incorrect(_("the optimizer's state was not loaded: optimizer.load_state_dict(...) from the checkpoint"))
    for index, (name, p) in enumerate(model.named_parameters()):
        buffer = optimizer.state.get(p, {}).get("momentum_buffer")
        expected = saved["optimizer"]["state"].get(index, {}).get("momentum_buffer")
        if expected is None:
            continue
        if buffer is None:
            message = _("{name} has no momentum buffer: load optimizer_state_dict from the checkpoint")
            raise Incorrect(message.format(name=name))
        if (buffer.dtype, buffer.device) != (p.dtype, p.device):
            message = _(
                "the momentum buffer of {name} is {dtype} on {device}, but its parameter is {parameter_dtype} "
                "on {parameter_device}: convert or move the model first, then build the optimizer and load its state"
            )
            raise Incorrect(
                message.format(
                    name=name,
                    dtype=buffer.dtype,
                    device=buffer.device,
                    parameter_dtype=p.dtype,
                    parameter_device=p.device,
                )
            )
        if not _equal_exactly(buffer, expected, p.dtype):
            message = _(
                "the momentum buffer of {name} holds other values than the checkpoint's: load "
                "optimizer_state_dict from the checkpoint as it is"
            )
            raise Incorrect(message.format(name=name))


def _state_where_its_parameters_are(
    model_fp64: object, optimizer_fp64: object, checkpoint_path: object, trained: object
) -> str:
    model, optimizer = model_fp64, optimizer_fp64
    require_module(model, "model_fp64")
    if model is trained:  # trained.double() converts trained itself and returns it
        raise Incorrect(
            _(
                "`model_fp64` is the set-up's `trained` itself (.double() converts a model in place and returns "
                "it), not a resume: build a new Net, load model_state_dict from `checkpoint_path` into it"
            )
        )
    require_optimizer_for(optimizer, model, "optimizer_fp64", "model_fp64")
    if any(t.dtype != torch.float64 for t in model.state_dict().values()):
        raise Incorrect(_("`model_fp64` should train in float64: call .double() (the stand-in for .to(device))"))
    _require_sgd(optimizer, "optimizer_fp64", lr=0.1)
    _require_loaded(model, optimizer, _saved(checkpoint_path), dtype=torch.float64)
    return _("the model is in float64 and every momentum buffer was loaded where its parameter is")


q1 = Question(
    "lesson07.q1",
    "Resume from `checkpoint_path` a `Net` (`model_fp64`) that must train in float64 (`.double()`, standing in for "
    "`.to(device)`), with `optimizer_fp64` (SGD, lr=0.1, momentum=0.9) carrying the saved momentum.",
    _state_where_its_parameters_are,
    names=["model_fp64", "optimizer_fp64", "checkpoint_path", "trained"],
    hint=N_("load_state_dict puts the optimizer's state where its parameters are at that moment: convert first."),
)


def _same_state(found: object, expected: object) -> bool:
    """Equal nested state_dicts: same keys, equal tensors, equal plain values."""
    if isinstance(expected, dict):
        return (
            isinstance(found, dict)
            and found.keys() == expected.keys()
            and all(_same_state(found[k], v) for k, v in expected.items())
        )
    if torch.is_tensor(expected):
        return (
            torch.is_tensor(found)
            and found.dtype == expected.dtype
            and found.shape == expected.shape
            and (torch.equal(found, expected))
        )
    return found == expected


def _state_dicts_in(value: object) -> list[dict]:
    """Every dict inside ``value`` (nested dicts and lists included): the candidate state_dicts."""
    found = []
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            found += _state_dicts_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += _state_dicts_in(item)
    return found


def _everything_in_one_file(gan_path: object, gan: object) -> str:
    if not isinstance(gan, dict) or set(gan) != {"generator", "discriminator", "opt_g", "opt_d"}:
        raise Incorrect(_("`gan` is the dict the notebook made: run the set-up cell again"))
    steps = [int(s["step"]) for name in ("opt_g", "opt_d") for s in gan[name].state.values()]
    if not steps or min(steps) < 3:
        raise Incorrect(_("`gan` has not been trained for 3 steps yet: call train_steps(gan, 3) before saving"))
    path = require_file(gan_path, "gan_path", _("save the checkpoint there"))
    try:
        saved = torch.load(path, weights_only=True)
    except Exception as error:  # a pickled module or optimizer object, or not a torch.save file
        message = _(
            "torch.load(..., weights_only=True) refuses the file ({error_type}): save state_dicts, "
            "not the model or optimizer objects"
        )
        raise Incorrect(message.format(error_type=type(error).__name__)) from None
    if isinstance(saved, dict) and set(gan) <= set(saved):  # named like gan's parts: each name must hold its own
        swapped = [name for name, part in gan.items() if not _same_state(saved[name], part.state_dict())]
        if swapped:
            message = _("the entry {entry!r} does not hold {entry}'s state: a resume by name would fail")
            raise Incorrect(message.format(entry=swapped[0]))
    candidates = _state_dicts_in(saved)
    missing = [name for name, part in gan.items() if not any(_same_state(c, part.state_dict()) for c in candidates)]
    if missing:
        message = _(
            "the file has no state equal to {names}'s current one: every model *and* optimizer "
            "must be saved (after training), or the resume differs"
        )
        raise Incorrect(message.format(names=", ".join(missing)))
    return _("both models and both optimizers are in the file, each as its state_dict")


q2 = Question(
    "lesson07.q2",
    "Train `gan` 3 steps with `train_steps(gan, 3)`, then save everything a resume needs into `gan_path` "
    "(one file, weights_only-loadable).",
    _everything_in_one_file,
    names=["gan_path", "gan"],
    hint=N_("One dict: {name: part.state_dict() for name, part in gan.items()}; the optimizers are part of it."),
)


def _new_learning_rate(model: object, optimizer: object, checkpoint_path: object, trained: object) -> str:
    require_module(model, "model")
    if model is trained:
        raise Incorrect(
            _(
                "`model` is the set-up's `trained` itself, not a resume: build a new Net, load model_state_dict from "
                "`checkpoint_path` into it, and build the optimizer on it"
            )
        )
    require_optimizer_for(optimizer, model, "optimizer", "model")
    saved = _saved(checkpoint_path)
    rates = [group["lr"] for group in optimizer.param_groups]
    if isinstance(optimizer, torch.optim.SGD) and any(rate != 0.001 for rate in rates):
        saved_rates = [group["lr"] for group in saved["optimizer"]["param_groups"]]
        if rates == saved_rates:
            message = _(
                "the learning rate is {lr}, not 0.001 (the saved one: set it after load_state_dict, which replaces it)"
            )
        else:
            message = _("the learning rate is {lr}, not 0.001")
        raise Incorrect(message.format(lr=rates[0]))
    _require_sgd(optimizer, "optimizer", lr=0.001)
    _require_loaded(model, optimizer, saved)
    return _("the checkpoint's weights and momentum, and the new learning rate")


q3 = Question(
    "lesson07.q3",
    "Resume `optimizer` for `model` from `checkpoint_path` with the saved momentum but a learning rate of 0.001 "
    "(the checkpoint says 0.1).",
    _new_learning_rate,
    names=["model", "optimizer", "checkpoint_path", "trained"],
    hint=N_("optimizer.load_state_dict replaces every hyper-parameter: change the lr after loading."),
)
