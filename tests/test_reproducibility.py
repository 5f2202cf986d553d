"""Seeding, the RNG state a resume restores, and the data order (lesson 03 shows the whole resume)."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from lesson_utils.reproducibility import epoch_order_generator, rng_state, seed_everything, set_rng_state


def draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist(), float(np.random.randn())


def test_rng_state_survives_a_weights_only_round_trip_and_restores_every_generator() -> None:
    seed_everything(3)
    np.random.randn()  # leaves numpy with a cached gaussian, part of its state too
    buffer = io.BytesIO()
    torch.save({"rng_state": rng_state()}, buffer)
    expected = draws()
    seed_everything(99)  # a new process would start elsewhere
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True)["rng_state"])
    assert draws() == expected


def test_without_restoring_the_draws_differ() -> None:
    seed_everything(3)
    expected = draws()
    seed_everything(4)
    assert draws() != expected


def test_each_epoch_has_its_own_order_from_the_seed_alone() -> None:
    def order(seed: int, epoch: int) -> list[int]:
        return torch.randperm(50, generator=epoch_order_generator(seed, epoch)).tolist()

    torch.rand(100)  # the global RNG does not matter
    assert order(0, 2) == order(0, 2)
    assert len({tuple(order(0, e)) for e in range(5)} | {tuple(order(1, 0))}) == 6
