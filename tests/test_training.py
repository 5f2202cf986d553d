"""The training helpers follow the model's device (checked on this CPU-only machine with ``meta``).

A batch left on the CPU while the model is on a GPU fails on every machine with an NVIDIA
card (the pinned torch is a CUDA build). ``meta`` is a device that exists everywhere: a
model moved there receives its inputs through a forward pre-hook, which records where they
are before the first ``.item()`` (meaningless on ``meta``) stops the run.
"""

from __future__ import annotations

import pytest
import torch

from lesson_utils import Net, OfflineShapes
from lesson_utils.training import accuracy, train_one_epoch


def inputs_seen_on_meta(run) -> list[torch.device]:
    model = Net().to("meta")
    seen: list[torch.device] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].device))
    with pytest.raises((RuntimeError, NotImplementedError)):
        run(model)  # .item() / .sum().item() cannot read a meta tensor: the run stops after one batch
    return seen


def test_train_one_epoch_moves_each_batch_to_the_models_device() -> None:
    data = OfflineShapes(8)
    seen = inputs_seen_on_meta(lambda m: train_one_epoch(m, torch.optim.SGD(m.parameters(), lr=0.1), data, 0))
    assert seen == [torch.device("meta")]


def test_accuracy_moves_each_batch_to_the_models_device() -> None:
    seen = inputs_seen_on_meta(lambda m: accuracy(m, OfflineShapes(8)))
    assert seen == [torch.device("meta")]


def test_a_helper_that_forgets_to_move_the_batch_is_caught() -> None:
    def forgetful(model):  # the bug this file guards against: the batch stays on the CPU
        images, labels = OfflineShapes(8).tensors
        return model(images).argmax(1).eq(labels).sum().item()

    assert inputs_seen_on_meta(forgetful) == [torch.device("cpu")]


def test_accuracy_counts_right_answers_and_keeps_the_mode() -> None:
    class Oracle(torch.nn.Module):  # answers label 3 for every image
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float() + self.w

    data = OfflineShapes(40)
    expected = (data.labels == 3).float().mean().item()
    oracle = Oracle().train()
    assert accuracy(oracle, data, batch_size=7) == pytest.approx(expected)
    assert oracle.training, "accuracy() puts the model back in the mode it found it in"
