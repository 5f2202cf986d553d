"""The models the lessons use: the original lesson's ``Net`` (fixed) and an offline VGG16.

Example:
    >>> import torch
    >>> from lesson_utils.models import Net
    >>> Net()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lesson_utils.i18n import _

# torchvision is imported where VGG16 is needed: it takes about a second to import (it pulls in
# torch._dynamo), which every exercise kernel the grader starts would pay for a small Net.

PRETRAINED_ENV = "LESSON_PRETRAINED"


class Net(nn.Module):
    """The CIFAR-style network of the original lesson, with its three bugs fixed.

    ``forward`` (not ``foward``), ``torch.flatten(x, 1)`` (not a bare ``view``) and
    ``x = F.relu(self.fc1(x))`` (not ``X = ...``). Same layers, same names, same
    printout as the original.

    Example:
        >>> net = Net()
        >>> list(net.state_dict())[:2]
        ['conv1.weight', 'conv1.bias']
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)  # (N, 16, 5, 5) -> (N, 400)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def imagenet_weights_file() -> Path:
    """Where torchvision keeps VGG16's ImageNet weights once downloaded.

    Example:
        >>> imagenet_weights_file().name
        'vgg16-397923af.pth'
    """
    from torchvision.models import VGG16_Weights

    filename = VGG16_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def pretrained_requested() -> bool:
    """Whether ``LESSON_PRETRAINED=1`` asks :func:`vgg16` for ImageNet weights (used if on disk).

    Example:
        >>> pretrained_requested() == (os.environ.get("LESSON_PRETRAINED") == "1")
        True
    """
    return os.environ.get(PRETRAINED_ENV, "") == "1"


def uses_pretrained() -> bool:
    """Whether :func:`vgg16` (called without an argument) returns ImageNet weights right now.

    Example:
        >>> uses_pretrained() == (pretrained_requested() and imagenet_weights_file().is_file())
        True
    """
    return pretrained_requested() and imagenet_weights_file().is_file()


def vgg16(pretrained: bool | None = None) -> torch.nn.Module:
    """VGG16 built with the ``weights=`` API; it never downloads anything.

    ImageNet weights are used only when asked for (``pretrained=True`` or the
    environment variable ``LESSON_PRETRAINED=1``) *and* already in the torch hub cache.
    Otherwise the weights are random and one line says so. The default is random, so a
    notebook prints the same thing on every machine.

    Example:
        >>> model = vgg16()  # doctest: +ELLIPSIS
        vgg16: random weights ...
        >>> model.classifier[-1].out_features
        1000
    """
    import torchvision
    from torchvision.models import VGG16_Weights

    if pretrained is None:
        pretrained = pretrained_requested()
    cached = imagenet_weights_file()
    if pretrained and cached.is_file():
        # The file is in the cache, so torchvision reads it instead of downloading.
        print(_("vgg16: ImageNet weights from {path}").format(path=cached))
        return torchvision.models.vgg16(weights=VGG16_Weights.IMAGENET1K_V1)
    if pretrained:
        print(_("vgg16: random weights ({path} not found; no download is attempted)").format(path=cached))
    else:
        print(
            _("vgg16: random weights (offline default; {switch}=1 uses cached ImageNet weights)").format(
                switch=PRETRAINED_ENV
            )
        )
    return torchvision.models.vgg16(weights=None)
