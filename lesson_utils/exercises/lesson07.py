"""Exercises for lesson 07 (devices, models, optimizer state). ``from lesson_utils.exercises import lesson07 as ex``."""

from __future__ import annotations

from pathlib import Path

import torch

from lesson_utils.exercises.core import Incorrect, Question


def _state_where_its_parameters_are(model_fp64: object, optimizer_fp64: object) -> str:
    model, optimizer = model_fp64, optimizer_fp64
    if not isinstance(model, torch.nn.Module) or not isinstance(optimizer, torch.optim.Optimizer):
        raise Incorrect("`model_fp64` should be an nn.Module and `optimizer_fp64` a torch.optim optimizer")
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if {id(p) for p in held} != {id(p) for p in model.parameters()}:
        raise Incorrect("`optimizer_fp64` does not hold `model_fp64`'s parameters: build it with .parameters()")
    if any(p.dtype != torch.float64 for p in model.parameters()):
        raise Incorrect("`model_fp64` should train in float64: call .double() (the stand-in for .to(device))")
    if not optimizer.state:
        raise Incorrect("the optimizer's state was not loaded: optimizer.load_state_dict(...) from the checkpoint")
    for p in model.parameters():
        buffer = optimizer.state.get(p, {}).get("momentum_buffer")
        if buffer is None:
            raise Incorrect("a parameter has no momentum buffer: load the whole optimizer state from the checkpoint")
        if buffer.dtype != p.dtype or buffer.device != p.device:
            raise Incorrect(
                f"a momentum buffer is {buffer.dtype} on {buffer.device} but its parameter is {p.dtype} on "
                f"{p.device}: convert the model first, then build the optimizer and load its state"
            )
    if all(torch.count_nonzero(optimizer.state[p]["momentum_buffer"]) == 0 for p in model.parameters()):
        raise Incorrect("every momentum buffer is zero: load the trained optimizer state from the checkpoint")
    return "the model is in float64 and every momentum buffer was loaded where its parameter is"


q1 = Question(
    "lesson07.q1",
    "Resume from `checkpoint_path` a `Net` (`model_fp64`) that must train in float64 (`.double()`, standing in for "
    "`.to(device)`), with `optimizer_fp64` (SGD, lr=0.1, momentum=0.9) carrying the saved momentum.",
    _state_where_its_parameters_are,
    names=["model_fp64", "optimizer_fp64"],
    hint="load_state_dict puts the optimizer's state where its parameters are at that moment: convert first.",
    solution=(
        "checkpoint = torch.load(checkpoint_path, weights_only=True)\n"
        "model_fp64 = Net().double()\n"
        "model_fp64.load_state_dict(checkpoint['model_state_dict'])\n"
        "optimizer_fp64 = torch.optim.SGD(model_fp64.parameters(), lr=0.1, momentum=0.9)\n"
        "optimizer_fp64.load_state_dict(checkpoint['optimizer_state_dict'])"
    ),
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
        return torch.is_tensor(found) and found.shape == expected.shape and torch.equal(found, expected)
    return found == expected


def _everything_in_one_file(gan_path: object, gan: object) -> str:
    if not isinstance(gan, dict) or set(gan) != {"generator", "discriminator", "opt_g", "opt_d"}:
        raise Incorrect("`gan` is the dict the notebook made: run the set-up cell again")
    path = Path(str(gan_path))
    if not path.is_file():
        raise Incorrect(f"no file at {path}: save the checkpoint there")
    try:
        saved = torch.load(path, weights_only=True)
    except Exception as error:  # a pickled module or optimizer object, or not a torch.save file
        raise Incorrect(
            f"torch.load(..., weights_only=True) refuses the file ({type(error).__name__}): save state_dicts, "
            "not the model or optimizer objects"
        ) from None
    if not isinstance(saved, dict):
        raise Incorrect("save one dict with a named entry for each model and optimizer")
    entries = [value for value in saved.values() if isinstance(value, dict)]
    missing = [name for name, part in gan.items() if not any(_same_state(e, part.state_dict()) for e in entries)]
    if missing:
        raise Incorrect(
            f"the file has no state equal to {', '.join(missing)}'s current one: every model *and* optimizer "
            "must be saved (after training), or the resume differs"
        )
    return "both models and both optimizers are in the file, each as its state_dict"


q2 = Question(
    "lesson07.q2",
    "Train `gan` 3 steps with `train_steps(gan, 3)`, then save everything a resume needs into `gan_path` "
    "(one file, weights_only-loadable).",
    _everything_in_one_file,
    names=["gan_path", "gan"],
    hint="One dict: {name: part.state_dict() for name, part in gan.items()}; the optimizers are part of it.",
    solution=(
        "train_steps(gan, 3)\n"
        "gan_path = workdir / 'gan.pt'\n"
        "torch.save({name: part.state_dict() for name, part in gan.items()}, gan_path)"
    ),
)


def _new_learning_rate(model: object, optimizer: object, checkpoint_path: object) -> str:
    if not isinstance(model, torch.nn.Module) or not isinstance(optimizer, torch.optim.Optimizer):
        raise Incorrect("`model` should be an nn.Module and `optimizer` a torch.optim optimizer")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if held != {id(p) for p in model.parameters()}:
        raise Incorrect("`optimizer` does not hold `model`'s parameters: build it with model.parameters()")
    saved = torch.load(Path(str(checkpoint_path)), weights_only=True)["optimizer_state_dict"]
    if not optimizer.state:
        raise Incorrect("the saved state was not loaded: optimizer.load_state_dict(...)")
    for index, p in enumerate(model.parameters()):
        found, expected = optimizer.state[p].get("momentum_buffer"), saved["state"][index]["momentum_buffer"]
        if found is None or not torch.equal(found, expected):
            raise Incorrect("the momentum buffers differ from the checkpoint's: load its optimizer state")
    rates = [group["lr"] for group in optimizer.param_groups]
    if any(rate != 0.001 for rate in rates):
        saved_rates = [group["lr"] for group in saved["param_groups"]]
        why = " (the saved one: set it after load_state_dict, which replaces it)" if rates == saved_rates else ""
        raise Incorrect(f"the learning rate is {rates[0]}, not 0.001{why}")
    return "the saved momentum, and the new learning rate"


q3 = Question(
    "lesson07.q3",
    "Resume `optimizer` for `model` from `checkpoint_path` with the saved momentum but a learning rate of 0.001 "
    "(the checkpoint says 0.1).",
    _new_learning_rate,
    names=["model", "optimizer", "checkpoint_path"],
    hint="optimizer.load_state_dict replaces every hyper-parameter: change the lr after loading.",
    solution=(
        "checkpoint = torch.load(checkpoint_path, weights_only=True)\n"
        "model = Net()\n"
        "model.load_state_dict(checkpoint['model_state_dict'])\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)\n"
        "optimizer.load_state_dict(checkpoint['optimizer_state_dict'])\n"
        "for group in optimizer.param_groups:\n"
        "    group['lr'] = 0.001"
    ),
)
