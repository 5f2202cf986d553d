"""Exercises for lesson 01 (state_dict). ``from lesson_utils.exercises import lesson01 as ex``."""

import pickle
from pathlib import Path

import torch

from lesson_utils.exercises.core import Incorrect, Question, choice, require_same_tensors


def _saved_state_dict(net: torch.nn.Module, weights_path: object) -> str:
    path = Path(str(weights_path))
    if not path.is_file():
        raise Incorrect(f"there is no file at {path}: write it with torch.save(net.state_dict(), weights_path)")
    try:
        loaded = torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        raise Incorrect(
            "the file does not load with weights_only=True: it holds more than tensors. Did you save the whole "
            "model with torch.save(net)? Save net.state_dict() instead."
        ) from None
    except Exception as error:
        raise Incorrect(f"torch.load cannot read {path} ({type(error).__name__}): write it with torch.save") from None
    if not isinstance(loaded, dict):
        raise Incorrect(f"the file holds a {type(loaded).__name__}; expected the dict that net.state_dict() returns")
    expected = net.state_dict()
    require_same_tensors(loaded, expected)
    return f"the file holds all {len(expected)} tensors of net, bit for bit"


q1 = Question(
    "lesson01.q1",
    "Save the weights (the state_dict) of `net` to the file `weights_path`.",
    _saved_state_dict,
    names=["net", "weights_path"],
    hint="A state_dict is what model.state_dict() returns; torch.save writes any dict of tensors to a file.",
    solution="torch.save(net.state_dict(), weights_path)",
)


def _eval_mode(model: object) -> str:
    if not isinstance(model, torch.nn.Module):
        raise Incorrect(f"`model` should be the nn.Module you loaded, but it is a {type(model).__name__}")
    if model.training:
        raise Incorrect("`model` is still in training mode: call model.eval() before predicting")
    training = [name for name, module in model.named_modules() if module.training]
    if training:
        raise Incorrect(f"`model` is in eval mode but its part `{training[0]}` is training: call model.eval() last")
    return "model and every submodule are in eval mode: Dropout is off and BatchNorm uses its running statistics"


q2 = Question(
    "lesson01.q2",
    "Load `weights_path` into a new `Net` called `model`, ready to predict.",
    _eval_mode,
    names=["model"],
    hint="Dropout and BatchNorm behave differently while training; one method call switches them for prediction.",
    solution="model = Net()\nmodel.load_state_dict(torch.load(weights_path, weights_only=True))\nmodel.eval()",
)

q3 = choice(
    "lesson01.q3",
    "What does model.state_dict() contain?",
    {"a": "only the parameters", "b": "the parameters and the buffers", "c": "the parameters, buffers and optimizer"},
    "b",
    {
        "a": "BatchNorm's running_mean and running_var are in it too, and they are not parameters",
        "c": "the optimizer has a state_dict of its own: optimizer.state_dict()",
    },
    hint="Look at vgg16_bn's keys in lesson 01: some of them are not trained by the optimizer.",
)
