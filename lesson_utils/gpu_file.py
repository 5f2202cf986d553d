"""Write a file exactly as ``torch.save`` on a GPU machine would label it, without a GPU.

``torch.save`` records, for every tensor's storage, the device it lived on ("cpu",
"cuda:0"). ``torch.load`` puts each tensor back on that device, which fails on a machine
without one unless ``map_location`` says otherwise. Lesson 01 needs such a file to show
that error on a CPU-only machine; this writes one by tagging the storages "cuda:0"
through torch's own hook for storage locations (``torch.serialization.register_package``).

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "from_gpu.pt"
    >>> save_as_gpu_file({"w": torch.ones(2)}, path)
    >>> torch.load(path, weights_only=True, map_location="cpu")["w"]
    tensor([1., 1.])
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.serialization import register_package

_tag_as: list[str] = []  # the device to record while save_as_gpu_file runs; empty otherwise


def _tagger(storage: Any) -> str | None:
    return _tag_as[-1] if _tag_as else None  # None: let torch's own taggers decide


def _no_restore(storage: Any, location: str) -> None:
    return None  # loading is left entirely to torch's own restore functions


register_package(5, _tagger, _no_restore)  # 5: asked before torch's cpu (10) and cuda (20) taggers


def save_as_gpu_file(obj: Any, path: str | os.PathLike, device: str = "cuda:0") -> None:
    """``torch.save(obj, path)``, recording every storage as saved from ``device``.

    Example:
        >>> import os, tempfile
        >>> save_as_gpu_file({"w": torch.ones(1)}, os.path.join(tempfile.mkdtemp(), "f.pt"))
    """
    _tag_as.append(device)
    try:
        torch.save(obj, path)
    finally:
        _tag_as.pop()
