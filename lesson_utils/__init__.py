"""Helpers shared by the save & load lessons. Each module is about one topic:

- :mod:`lesson_utils.models`: ``Net`` (the original lesson's network, fixed) and ``vgg16``.
- :mod:`lesson_utils.original`: the original, buggy ``Net``, kept to show its errors.
- :mod:`lesson_utils.data`: ``OfflineShapes``, an offline CIFAR-shaped dataset.
- :mod:`lesson_utils.env`: ``seed_everything`` and ``env_report``.
- :mod:`lesson_utils.checkpoint`: atomic ``save_checkpoint`` and safe ``load_checkpoint``.
- :mod:`lesson_utils.explore`: the state_dict explorer widget of lesson 01.
"""

from lesson_utils.data import OfflineShapes, load_datasets
from lesson_utils.env import env_report, seed_everything
from lesson_utils.models import Net, vgg16

__all__ = ["Net", "OfflineShapes", "env_report", "load_datasets", "seed_everything", "vgg16"]
