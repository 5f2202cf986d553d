"""Helpers shared by the save & load lessons, one module per job:

- :mod:`lesson_utils.numerics`: ``use_numeric_profile``, the same training bits on every x86-64 machine.
- :mod:`lesson_utils.models`: ``Net`` (the original lesson's network, fixed) and an offline ``vgg16``.
- :mod:`lesson_utils.original`: the original, buggy ``Net``, kept to show its errors.
- :mod:`lesson_utils.data`: ``OfflineShapes``, an offline CIFAR-shaped dataset, and the opt-in CIFAR-10.
- :mod:`lesson_utils.env`: ``env_report``.
- :mod:`lesson_utils.i18n`: ``set_language`` (English or Chinese messages and plot fonts) and ``_``.
- :mod:`lesson_utils.reproducibility`: ``seed_everything``, the RNG state a resume needs, the data order.
- :mod:`lesson_utils.training`: the training loop and ``accuracy``, on the model's device.
- :mod:`lesson_utils.checkpoint`: atomic ``save_checkpoint``, verified ``load_checkpoint``, ``latest_valid_checkpoint``.
- :mod:`lesson_utils.transfer`: ``load_matching_weights`` for warm starts.
- :mod:`lesson_utils.explore`: the state_dict explorer widget of lesson 01.
- :mod:`lesson_utils.gpu_file`: a file labelled as saved on a GPU, for the ``map_location`` demo.
- :mod:`lesson_utils.memory`: measuring what a load costs (lesson 05 and the benchmark).
- :mod:`lesson_utils.bench`: the benchmark's command line (``python -m lesson_utils.bench``).
- :mod:`lesson_utils.dist_demo`: what every process of lesson 06 runs, and ``launch``.
- :mod:`lesson_utils.exercises`: the exercise questions and their checkers.
- :mod:`lesson_utils.notebooks`: executing a notebook in a fresh kernel (nbclient, one wake-up fixed).
- :mod:`lesson_utils.processes`: child processes in groups of their own, with time limits and result files.

What runs a class (the grader, its sandbox) lives apart, in :mod:`lesson_utils.classroom`.

The names below are imported on first use, so a process that needs only one module (a
torchrun worker, a measuring child) does not pay for torchvision.

Example:
    >>> import lesson_utils
    >>> lesson_utils.Net.__module__
    'lesson_utils.models'
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Net": "lesson_utils.models",
    "vgg16": "lesson_utils.models",
    "OfflineShapes": "lesson_utils.data",
    "load_datasets": "lesson_utils.data",
    "env_report": "lesson_utils.env",
    "seed_everything": "lesson_utils.reproducibility",
    "set_language": "lesson_utils.i18n",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name == "__version__":  # pyproject.toml's [project] version, the one place it is written
        globals()[name] = _version()
        return globals()[name]
    if name not in _HOMES:
        raise AttributeError(f"module 'lesson_utils' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def _version() -> str:
    """The installed package's version; in a checkout used without installing it, pyproject.toml's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lesson-utils")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        from lesson_utils.i18n import _

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        if not pyproject.is_file():
            raise PackageNotFoundError(
                _(
                    "lesson-utils is not installed and no pyproject.toml was found at {path}: "
                    "install the collection with `make setup` (or `pip install -e .` in its folder)"
                ).format(path=pyproject)
            ) from None
        return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES) | {"__version__"})
