"""Reproducibility: seeding, the random-number state a resume must restore, and the data order.

Three things decide whether a run can be repeated, or resumed bit for bit (lesson 03):

- the **seeds** it starts from (:func:`seed_everything`);
- the **state of every global random number generator** when it stopped: python's, numpy's,
  torch's on the CPU and on every GPU (:func:`rng_state`, :func:`set_rng_state`); augmentation
  and dropout draw from these;
- the **data order**: epoch ``e`` is shuffled by its own generator seeded with ``(seed, e)``
  (:func:`epoch_order_generator`), so a resumed run knows the order from the epoch number alone.

Example:
    >>> seed_everything(0)
    >>> a = torch.rand(1); seed_everything(0); torch.equal(a, torch.rand(1))
    True
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy and torch (CPU and every GPU).

    Example:
        >>> seed_everything(42)
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def epoch_order_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that shuffles epoch ``epoch``: the order depends on (seed, epoch) only.

    Example:
        >>> a = torch.randperm(5, generator=epoch_order_generator(0, 3))
        >>> torch.equal(a, torch.randperm(5, generator=epoch_order_generator(0, 3)))
        True
    """
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def rng_state() -> dict[str, object]:
    """Every global RNG's state (python, numpy, torch CPU and CUDA), as plain types and tensors.

    The result loads with ``torch.load(..., weights_only=True)``; ``np.random.get_state()``
    itself would not (it holds an ndarray), so numpy's key is stored as a tensor.

    Example:
        >>> state = rng_state()
        >>> a = torch.rand(1); set_rng_state(state); torch.equal(a, torch.rand(1))
        True
    """
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, object]) -> None:
    """Restore what :func:`rng_state` captured.

    Example:
        >>> set_rng_state(rng_state())
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
