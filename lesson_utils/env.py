"""A short report of the environment: versions, device, and the optional files found.

Example:
    >>> report = env_report()  # doctest: +ELLIPSIS
    python ...
    >>> sorted(report)[:2]
    ['CIFAR-10', 'ImageNet VGG16 weights']
"""

from __future__ import annotations

import platform

import torch
import torchvision

import lesson_utils
from lesson_utils.data import DATA_ENV, cifar10_dir, cifar10_on_disk
from lesson_utils.models import PRETRAINED_ENV, imagenet_weights_file


def env_report() -> dict[str, str]:
    """Versions, device and which optional files were found; printed and returned.

    Example:
        >>> report = env_report()  # doctest: +ELLIPSIS
        python ...
        >>> report["torch"] == torch.__version__
        True
    """
    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lesson-utils": lesson_utils.__version__,  # the collection's version (pyproject.toml, CHANGELOG.md)
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu threads": str(torch.get_num_threads()),
        "ImageNet VGG16 weights": (
            f"found at {imagenet_weights_file()}" if imagenet_weights_file().is_file() else "not found"
        )
        + f" (used only with {PRETRAINED_ENV}=1)",
        "CIFAR-10": (f"found under {cifar10_dir()}" if cifar10_on_disk() else "not found")
        + f" (used only with {DATA_ENV}=cifar10)",
    }
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    return report
