"""Warm starting: load the weights that fit into a different model, and say what happened.

``model.load_state_dict(sd, strict=False)`` skips missing and unexpected *keys*, but a key
whose tensor has another *shape* still raises ``RuntimeError: ... size mismatch``.
:func:`load_matching_weights` loads only what fits and reports everything else.

Example:
    >>> import torch.nn as nn
    >>> report = load_matching_weights(nn.Linear(3, 2), {"weight": torch.ones(2, 3), "bias": torch.ones(5)})
    >>> report.loaded, [key for key, _, _ in report.skipped_shape]
    (['weight'], ['bias'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

# Prefixes that wrappers add to every key: DataParallel/DDP ("module.") and torch.compile ("_orig_mod.").
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class TransferReport:
    """What :func:`load_matching_weights` did with each key."""

    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    not_selected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    stripped_prefix: str | None = None

    def rows(self) -> list[tuple[str, str, str]]:
        """(key, outcome, detail) for every key, in a stable order.

        Example:
            >>> TransferReport(loaded=["w"], missing=["b"]).rows()
            [('w', 'loaded', ''), ('b', 'missing', 'in the model, not in the file: keeps its initial value')]
        """
        rows = [(key, "loaded", "") for key in self.loaded]
        rows += [(key, "skipped: shape", f"file {list(a)} vs model {list(b)}") for key, a, b in self.skipped_shape]
        rows += [(key, "not selected", "fits, but not chosen to transfer") for key in self.not_selected]
        rows += [(key, "missing", "in the model, not in the file: keeps its initial value") for key in self.missing]
        rows += [(key, "unexpected", "in the file, not in the model: ignored") for key in self.unexpected]
        return rows

    def __str__(self) -> str:
        if not self.rows():
            return "nothing to report: both the model and the state_dict are empty"
        width = max(len(key) for key, _, _ in self.rows())
        lines = [f"{'key':<{width}}  {'outcome':<14}  detail", "-" * (width + 40)]
        lines += [f"{key:<{width}}  {outcome:<14}  {detail}".rstrip() for key, outcome, detail in self.rows()]
        if self.stripped_prefix:
            lines.append(f"(every key in the file started with {self.stripped_prefix!r}; it was stripped first)")
        if not self.loaded:
            lines.append("WARNING: nothing was loaded: is this state_dict from a related model?")
        return "\n".join(lines)


def load_matching_weights(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], only: Iterable[str] | None = None
) -> TransferReport:
    """Copy into ``model`` every tensor of ``state_dict`` whose name and shape match.

    ``only`` restricts the transfer to keys starting with one of the given prefixes (e.g.
    ``["conv1", "conv2"]``). A ``module.`` or ``_orig_mod.`` prefix on every key is
    stripped first. Nothing is loaded into ``model`` unless it fits; the report says why
    each key was or was not loaded.

    Example:
        >>> from lesson_utils import Net
        >>> report = load_matching_weights(Net(num_classes=4), Net().state_dict())
        >>> [key for key, _, _ in report.skipped_shape]
        ['fc3.weight', 'fc3.bias']
    """
    if not isinstance(state_dict, Mapping):
        hint = (
            " Did you pass a path? Load it first: torch.load(path, weights_only=True)."
            if isinstance(state_dict, str)
            else ""
        )
        raise TypeError(
            f"load_matching_weights expects a state_dict (a dict of tensors), got {type(state_dict).__name__}.{hint}"
        )
    source = dict(state_dict)
    report = TransferReport()
    for prefix in WRAPPER_PREFIXES:
        if source and all(key.startswith(prefix) for key in source):
            consume_prefix_in_state_dict_if_present(source, prefix)
            report.stripped_prefix = prefix
    prefixes = None if only is None else tuple(layer.rstrip(".") + "." for layer in only)  # "conv1" is not "conv10"
    target = model.state_dict()
    fitting = {}
    for key, tensor in source.items():
        if key not in target:
            report.unexpected.append(key)
        elif not isinstance(tensor, torch.Tensor) or tensor.shape != target[key].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else ()
            report.skipped_shape.append((key, shape, tuple(target[key].shape)))
        elif prefixes is not None and not key.startswith(prefixes):
            report.not_selected.append(key)
        else:
            fitting[key] = tensor
            report.loaded.append(key)
    report.missing = [key for key in target if key not in source]
    model.load_state_dict(fitting, strict=False)
    return report
