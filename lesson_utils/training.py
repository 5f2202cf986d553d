"""The training loop of lessons 03 and 04, and the random-number state a resume needs.

Two things make a run reproducible epoch by epoch, and both are visible here:

- the **data order** of epoch ``e`` is drawn from its own generator seeded with
  ``(seed, e)``, so a resumed run knows the order from the epoch number alone;
- the **augmentation** (random horizontal flips) draws from torch's global RNG, as most
  augmentation and dropout do, so a resumed run must restore that RNG's state.

Example:
    >>> from lesson_utils import Net, OfflineShapes
    >>> net = Net()
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.01)
    >>> losses = train_one_epoch(net, opt, OfflineShapes(64), epoch=0)
    >>> len(losses)  # one loss per batch of 64
    1
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm


def epoch_order_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that shuffles epoch ``epoch``: the order depends on (seed, epoch) only.

    Example:
        >>> a = torch.randperm(5, generator=epoch_order_generator(0, 3))
        >>> torch.equal(a, torch.randperm(5, generator=epoch_order_generator(0, 3)))
        True
    """
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: Dataset,
    epoch: int,
    seed: int = 0,
    batch_size: int = 64,
) -> list[float]:
    """Train ``model`` for one epoch (cross-entropy, random flips); return each batch's loss.

    Example:
        >>> from lesson_utils import Net, OfflineShapes
        >>> net = Net()
        >>> losses = train_one_epoch(net, torch.optim.SGD(net.parameters(), lr=0.01), OfflineShapes(128), 0)
        >>> len(losses)
        2
    """
    model.train()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=epoch_order_generator(seed, epoch))
    losses = []
    for images, labels in tqdm(loader, desc=f"epoch {epoch}", leave=False):
        flip = torch.rand(len(images)) < 0.5  # augmentation: global RNG, like dropout
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


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
