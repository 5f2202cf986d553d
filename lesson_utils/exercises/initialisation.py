"""Which parameters were created with data, i.e. went through their random initialisation.

Importing this module installs a global parameter-registration hook that records, for each
module, whether each parameter was first registered with data or on the ``meta`` device (where
initialisation does nothing). ``load_state_dict(..., assign=True)`` replaces the tensors later
but cannot undo an initialisation that already ran; the record still shows it. The record lives
in this module of its own so that every copy of the lesson 05 checkers (the grader builds its own
from source) reads the same one. Models built before the first import are not recorded.

Example:
    >>> import torch
    >>> with torch.device("meta"):
    ...     lean = torch.nn.Linear(2, 2)
    >>> initialised(torch.nn.Linear(2, 2)), initialised(lean)
    (['weight', 'bias'], [])
"""

from __future__ import annotations

import weakref

import torch

_FIRST_WITH_DATA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {name: created with data}


def _record(module: torch.nn.Module, name: str, param: torch.Tensor) -> None:
    _FIRST_WITH_DATA.setdefault(module, {}).setdefault(name, not param.is_meta)


torch.nn.modules.module.register_module_parameter_registration_hook(_record)


def initialised(model: torch.nn.Module) -> list[str]:
    """The names of ``model``'s parameters that were first created with data (their initialisation ran)."""
    return [
        f"{prefix}.{name}".lstrip(".")
        for prefix, module in model.named_modules()
        for name, with_data in _FIRST_WITH_DATA.get(module, {}).items()
        if with_data
    ]
