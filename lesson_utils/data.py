"""An offline, deterministic, learnable image dataset shaped like CIFAR-10.

``OfflineShapes`` draws 3x32x32 images of ten simple shapes (disk, ring, square, ...)
in random colours, positions and sizes, with noise. The same seed always gives the same
tensors, nothing is downloaded, and the lesson's ``Net`` learns it in a few seconds.

CIFAR-10 is used instead only when asked for (``LESSON_DATA=cifar10``) and already on
disk under ``LESSON_CIFAR10_DIR`` (default ``~/.cache/lesson_data``).

Example:
    >>> train, test = load_datasets()
    >>> image, label = train[0]
    >>> tuple(image.shape), type(label).__name__
    ((3, 32, 32), 'int')
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from lesson_utils.i18n import _

DATA_ENV = "LESSON_DATA"
CIFAR10_DIR_ENV = "LESSON_CIFAR10_DIR"

CLASSES = (
    "disk",
    "ring",
    "square",
    "frame",
    "plus",
    "cross",
    "h-stripes",
    "v-stripes",
    "triangle",
    "checker",
)


class OfflineShapes(TensorDataset):
    """``n`` images of ten shapes, drawn from ``seed``; items are ``(image, int label)``.

    Example:
        >>> ds = OfflineShapes(n=20, seed=0)
        >>> torch.equal(ds.images, OfflineShapes(n=20, seed=0).images)
        True
    """

    classes = CLASSES

    def __init__(self, n: int = 2000, seed: int = 0) -> None:
        images, labels = draw_shapes(n, seed)
        super().__init__(images, labels)
        self.images, self.labels = images, labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def draw_shapes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` images (float32, 3x32x32, roughly in [-1, 1]) and their labels.

    Example:
        >>> images, labels = draw_shapes(10, seed=1)
        >>> images.shape, labels.tolist()[:3]
        (torch.Size([10, 3, 32, 32]), [...])
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, 1, 1, generator=g)

    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    cx, cy, r = uniform(11, 21), uniform(11, 21), uniform(6, 10)
    dx, dy = xs - cx, ys - cy
    dist = (dx**2 + dy**2).sqrt()
    box = torch.maximum(dx.abs(), dy.abs())
    period = uniform(5, 9)
    phase = uniform(0, 6.3)
    masks = torch.stack(
        [
            dist < r,  # disk
            (dist - r).abs() < 1.6,  # ring
            box < r,  # square
            (box - r).abs() < 1.6,  # frame
            ((dx.abs() < 2) & (dy.abs() < r)) | ((dy.abs() < 2) & (dx.abs() < r)),  # plus
            (((dx - dy).abs() < 2) | ((dx + dy).abs() < 2)) & (box < r),  # cross
            torch.sin(2 * torch.pi * ys / period + phase) > 0,  # horizontal stripes
            torch.sin(2 * torch.pi * xs / period + phase) > 0,  # vertical stripes
            (dy < r / 2) & (dx.abs() < (dy + r) / 2),  # triangle
            ((xs // 4 + ys // 4) % 2 == 0).expand(n, 32, 32),  # checker
        ]
    )  # (10, n, 32, 32)
    mask = masks[labels, torch.arange(n)].unsqueeze(1).float()  # (n, 1, 32, 32)
    foreground = torch.rand(n, 3, 1, 1, generator=g) * 0.6 + 0.4
    background = torch.rand(n, 3, 1, 1, generator=g) * 0.4
    noise = 0.15 * torch.randn(n, 3, 32, 32, generator=g)
    images = background + (foreground - background) * mask + noise
    return (images * 2 - 1).clamp(-1.5, 1.5), labels


def cifar10_dir() -> Path:
    """Where a CIFAR-10 copy is looked for (``LESSON_CIFAR10_DIR`` or ``~/.cache/lesson_data``).

    Example:
        >>> cifar10_dir().name in {"lesson_data", os.environ.get(CIFAR10_DIR_ENV, "")}
        True
    """
    return Path(os.environ.get(CIFAR10_DIR_ENV, Path.home() / ".cache" / "lesson_data"))


def cifar10_on_disk() -> bool:
    """True when torchvision's CIFAR-10 folder is already under :func:`cifar10_dir`.

    Example:
        >>> isinstance(cifar10_on_disk(), bool)
        True
    """
    return (cifar10_dir() / "cifar-10-batches-py" / "batches.meta").is_file()


def load_datasets(n_train: int = 2000, n_test: int = 500, seed: int = 0) -> tuple[Dataset, Dataset]:
    """The lessons' (train, test) datasets: OfflineShapes unless ``LESSON_DATA=cifar10``.

    Example:
        >>> train, test = load_datasets(n_train=100, n_test=20)
        >>> len(train), len(test)
        (100, 20)
    """
    if os.environ.get(DATA_ENV, "") == "cifar10":
        if not cifar10_on_disk():
            # Every translation keeps "expected cifar-10-batches-py/ there": lesson 00 checks for it.
            raise FileNotFoundError(
                _(
                    "{data_env}=cifar10 but no CIFAR-10 under {folder} "
                    "(expected cifar-10-batches-py/ there). Put it there, set {dir_env}, "
                    "or unset {data_env} to use the offline OfflineShapes dataset."
                ).format(data_env=DATA_ENV, folder=cifar10_dir(), dir_env=CIFAR10_DIR_ENV)
            )
        import torchvision.transforms as T
        from torchvision.datasets import CIFAR10

        to_tensor = T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
        root = str(cifar10_dir())
        return (
            CIFAR10(root, train=True, download=False, transform=to_tensor),
            CIFAR10(root, train=False, download=False, transform=to_tensor),
        )
    return OfflineShapes(n_train, seed=seed), OfflineShapes(n_test, seed=seed + 1)
