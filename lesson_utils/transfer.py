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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from lesson_utils.i18n import N_, _, display_width, pad

# Prefixes that wrappers add to every key: DataParallel/DDP ("module.") and torch.compile ("_orig_mod.").
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

# What happened to a key (rows() gives them in English, as data; printing a report translates them).
LOADED, SKIPPED_SHAPE, NOT_SELECTED = N_("loaded"), N_("skipped: shape"), N_("not selected")
MISSING, UNEXPECTED = N_("missing"), N_("unexpected")
SHAPES_DIFFER = N_("file {file} vs model {model}")
NOT_CHOSEN = N_("fits, but not chosen to transfer")
KEEPS_INITIAL = N_("in the model, not in the file: keeps its initial value")
IGNORED = N_("in the file, not in the model: ignored")


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
        return self._rows(lambda message: message)

    def _rows(self, translate: Callable[[str], str]) -> list[tuple[str, str, str]]:
        """:meth:`rows`, with the outcomes and details passed through ``translate``."""
        shapes = translate(SHAPES_DIFFER)
        rows = [(key, translate(LOADED), "") for key in self.loaded]
        rows += [
            (key, translate(SKIPPED_SHAPE), shapes.format(file=list(a), model=list(b)))
            for key, a, b in self.skipped_shape
        ]
        rows += [(key, translate(NOT_SELECTED), translate(NOT_CHOSEN)) for key in self.not_selected]
        rows += [(key, translate(MISSING), translate(KEEPS_INITIAL)) for key in self.missing]
        rows += [(key, translate(UNEXPECTED), translate(IGNORED)) for key in self.unexpected]
        return rows

    def __str__(self) -> str:
        """The table, in the language chosen with ``set_language`` (the keys stay as they are)."""
        rows = self._rows(_)
        if not rows:
            return _("nothing to report: both the model and the state_dict are empty")
        key_header, outcome_header, detail_header = _("key"), _("outcome"), _("detail")
        width = max(display_width(key) for key, _outcome, _detail in rows)
        outcomes = [outcome_header, *(outcome for _key, outcome, _detail in rows)]
        outcome_width = max(14, *map(display_width, outcomes))
        lines = [f"{pad(key_header, width)}  {pad(outcome_header, outcome_width)}  {detail_header}"]
        lines.append("-" * (width + 40))
        lines += [
            f"{pad(key, width)}  {pad(outcome, outcome_width)}  {detail}".rstrip() for key, outcome, detail in rows
        ]
        if self.stripped_prefix:
            lines.append(
                _("(every key in the file started with {prefix}; it was stripped first)").format(
                    prefix=repr(self.stripped_prefix)
                )
            )
        if not self.loaded:
            lines.append(_("WARNING: nothing was loaded: is this state_dict from a related model?"))
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
        if isinstance(state_dict, str):
            message = _(
                "load_matching_weights expects a state_dict (a dict of tensors), got {type}. "
                "Did you pass a path? Load it first: torch.load(path, weights_only=True)."
            )
        else:
            message = _("load_matching_weights expects a state_dict (a dict of tensors), got {type}.")
        raise TypeError(message.format(type=type(state_dict).__name__))
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
