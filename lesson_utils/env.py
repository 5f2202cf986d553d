"""A short report of the environment: versions, device, and the optional files found.

Example:
    >>> report = env_report()  # doctest: +ELLIPSIS
    python ...
    >>> sorted(report)[:2]
    ['CIFAR-10', 'ImageNet VGG16 weights']
"""

from __future__ import annotations

import platform
from collections.abc import Callable

import torch
import torchvision

import lesson_utils
from lesson_utils.data import DATA_ENV, cifar10_dir, cifar10_on_disk
from lesson_utils.i18n import N_, _, display_width
from lesson_utils.models import PRETRAINED_ENV, imagenet_weights_file
from lesson_utils.numerics import profile_report

# What the printed report calls a key, in the chosen language (the returned dict keeps the keys).
LABELS = {
    "device": N_("device"),
    "cpu threads": N_("cpu threads"),
    "numeric profile": N_("numeric profile"),
    "ImageNet VGG16 weights": N_("ImageNet VGG16 weights"),
}
FOUND_AT, FOUND_UNDER, NOT_FOUND = N_("found at {path}"), N_("found under {path}"), N_("not found")
USED_ONLY_WITH = N_("{found} (used only with {switch})")


def env_report() -> dict[str, str]:
    """Versions, device and which optional files were found; printed and returned.

    The returned dict is data for code and stays in English; the printed report is in the
    language chosen with ``set_language``.

    Example:
        >>> report = env_report()  # doctest: +ELLIPSIS
        python ...
        >>> report["torch"] == torch.__version__
        True
    """
    vgg_file = imagenet_weights_file()
    optional = {  # key: (whether it was found, where, the switch that uses it)
        "ImageNet VGG16 weights": (FOUND_AT if vgg_file.is_file() else NOT_FOUND, vgg_file, f"{PRETRAINED_ENV}=1"),
        "CIFAR-10": (FOUND_UNDER if cifar10_on_disk() else NOT_FOUND, cifar10_dir(), f"{DATA_ENV}=cifar10"),
    }

    def describe(key: str, translate: Callable[[str], str]) -> str:
        found, path, switch = optional[key]
        return translate(USED_ONLY_WITH).format(found=translate(found).format(path=path), switch=switch)

    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lesson-utils": lesson_utils.__version__,  # the collection's version (pyproject.toml, CHANGELOG.md)
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu threads": str(torch.get_num_threads()),
        "numeric profile": profile_report(),  # what makes training give the stored bits (lesson 03)
        **{key: describe(key, lambda message: message) for key in optional},  # English: data
    }
    shown = {_(LABELS.get(key, key)): describe(key, _) if key in optional else value for key, value in report.items()}
    width = max(map(display_width, shown))
    for label, value in shown.items():
        print(label + " " * (width - display_width(label)) + f"  {value}")
    return report
