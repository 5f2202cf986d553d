"""Exercises for lesson 03 (checkpoints, resume). ``from lesson_utils.exercises import lesson03 as ex``."""

import torch

from lesson_utils.checkpoint import CheckpointError, load_checkpoint
from lesson_utils.exercises.core import Incorrect, Question, choice

REQUIRED = ["epoch", "model_state_dict", "optimizer_state_dict"]


def _resumable_checkpoint(checkpoint_path: object) -> str:
    try:
        checkpoint = load_checkpoint(str(checkpoint_path), required=REQUIRED)
    except CheckpointError as error:
        raise Incorrect(f"load_checkpoint refuses it: {error}") from None
    if not isinstance(checkpoint["epoch"], int):
        raise Incorrect(f"'epoch' should be an int (the next epoch to run), found {type(checkpoint['epoch']).__name__}")
    state = checkpoint["optimizer_state_dict"]
    if not isinstance(state, dict) or "state" not in state or "param_groups" not in state:
        raise Incorrect("'optimizer_state_dict' should be what optimizer.state_dict() returns")
    if not any("momentum_buffer" in s for s in state["state"].values()):
        raise Incorrect("the optimizer state holds no momentum buffers: save it after at least one optimizer.step()")
    return "it loads with weights_only=True and holds the model, the optimizer's momentum and the epoch"


q1 = Question(
    "lesson03.q1",
    "Train `net` for one epoch with `optimizer` (SGD with momentum), then write a checkpoint to `checkpoint_path` "
    "that lets training go on: epoch, model_state_dict, optimizer_state_dict.",
    _resumable_checkpoint,
    names=["checkpoint_path"],
    hint="A plain dict of named entries; store numbers with .item() so weights_only=True can read them.",
    solution=(
        "train_one_epoch(net, optimizer, train_set, epoch=0)\n"
        "torch.save({'epoch': 1, 'model_state_dict': net.state_dict(),\n"
        "            'optimizer_state_dict': optimizer.state_dict()}, checkpoint_path)"
    ),
)


def _optimizer_on_model(model: object, optimizer: object) -> str:
    if not isinstance(model, torch.nn.Module) or not isinstance(optimizer, torch.optim.Optimizer):
        raise Incorrect("`model` should be an nn.Module and `optimizer` a torch.optim optimizer")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not all(id(p) in held for p in model.parameters()):
        raise Incorrect(
            "`optimizer` updates other tensors than `model`'s: build it with optim.SGD(model.parameters(), ...) "
            "(the original lesson's bug)"
        )
    if not optimizer.state:
        raise Incorrect(
            "the optimizer's state was not loaded: optimizer.load_state_dict(checkpoint['optimizer_state_dict'])"
        )
    return "the optimizer trains `model` and carries on with the saved momentum"


q2 = Question(
    "lesson03.q2",
    "Resume from `checkpoint_path`: build `model` (a Net) and `optimizer` (SGD, lr=0.02, momentum=0.9) "
    "and load both states.",
    _optimizer_on_model,
    names=["model", "optimizer"],
    hint="Order matters: build the model, move it to its device, create the optimizer on *it*, then load the states.",
    solution=(
        "checkpoint = torch.load(checkpoint_path, weights_only=True)\n"
        "model = Net()\n"
        "optimizer = optim.SGD(model.parameters(), lr=0.02, momentum=0.9)\n"
        "model.load_state_dict(checkpoint['model_state_dict'])\n"
        "optimizer.load_state_dict(checkpoint['optimizer_state_dict'])"
    ),
)

q3 = choice(
    "lesson03.q3",
    "Training uses a StepLR schedule, shuffling and random flips. Besides model, optimizer and epoch, what must a "
    "checkpoint hold to resume bit for bit?",
    {
        "a": "nothing else",
        "b": "the scheduler's state, the RNG states and the data order",
        "c": "the whole model, pickled",
    },
    "b",
    {
        "a": "lesson 03 shows that this run ends with different weights than one that never stopped",
        "c": "a pickled model holds the same numbers as its state_dict: the schedule and randomness are still lost",
    },
    hint="Section 4 of lesson 03 adds three things, one at a time, until torch.equal holds.",
)
