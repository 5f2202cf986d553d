"""The training loop and the accuracy of lessons 03 and 04, on whatever device the model is.

The loop is reproducible epoch by epoch (see :mod:`lesson_utils.reproducibility`):

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

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from lesson_utils.i18n import _
from lesson_utils.reproducibility import epoch_order_generator


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter: where its inputs must go.

    Example:
        >>> from lesson_utils import Net
        >>> model_device(Net())
        device(type='cpu')
    """
    return next(model.parameters()).device


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: Dataset,
    epoch: int,
    seed: int = 0,
    batch_size: int = 64,
) -> list[float]:
    """Train ``model`` for one epoch (cross-entropy, random flips); return each batch's loss.

    Each batch is moved to the model's device, so the same call works on a CPU and a GPU.

    Example:
        >>> from lesson_utils import Net, OfflineShapes
        >>> net = Net()
        >>> losses = train_one_epoch(net, torch.optim.SGD(net.parameters(), lr=0.01), OfflineShapes(128), 0)
        >>> len(losses)
        2
    """
    model.train()
    device = model_device(model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=epoch_order_generator(seed, epoch))
    losses = []
    # iter() first: tqdm.auto calls iter() on what it wraps, and a second iterator over the
    # loader would draw from the order generator again, changing the epoch's order.
    for images, labels in tqdm(
        iter(loader), total=len(loader), desc=_("epoch {epoch}").format(epoch=epoch), leave=False
    ):
        # augmentation from torch's global CPU RNG, like dropout: the same flips on every device
        flip = torch.rand(len(images)) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        images, labels = images.to(device), labels.to(device)  # the data follow the model
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def accuracy(model: torch.nn.Module, dataset: Dataset, batch_size: int = 500) -> float:
    """The fraction of ``dataset`` that ``model`` classifies right (any map-style dataset).

    Runs in eval mode without gradients, on the model's device, and gives the model back in
    the mode it was in.

    Example:
        >>> from lesson_utils import Net, OfflineShapes
        >>> 0.0 <= accuracy(Net(), OfflineShapes(100)) <= 1.0
        True
    """
    device, was_training = model_device(model), model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in DataLoader(dataset, batch_size=batch_size):
            correct += (model(images.to(device)).argmax(1) == labels.to(device)).sum().item()
    model.train(was_training)
    return correct / len(dataset)
