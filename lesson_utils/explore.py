"""The state_dict explorer of lesson 01: pick a key, see its shape, dtype and values.

The logic (:func:`describe_entry`, :func:`histogram_png`) is plain python and tested
without a browser; :func:`state_dict_explorer` only wires it to ipywidgets.

Example:
    >>> import torch
    >>> describe_entry({"w": torch.ones(2, 3)}, "w")["shape"]
    (2, 3)
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch

from lesson_utils.i18n import _


def describe_entry(state_dict: Mapping[str, torch.Tensor], key: str) -> dict[str, object]:
    """Shape, dtype, number of values, bytes and value statistics of one entry.

    Example:
        >>> info = describe_entry({"b": torch.tensor([1.0, 3.0])}, "b")
        >>> info["numel"], info["mean"], info["bytes"]
        (2, 2.0, 8)
    """
    if key not in state_dict:
        keys = list(state_dict)
        raise KeyError(
            _("{key} is not in this state_dict; its keys are {keys}").format(
                key=repr(key), keys=f"{keys[:5]}{' ...' if len(keys) > 5 else ''}"
            )
        )
    tensor = state_dict[key]
    values = tensor.detach().float()  # no copy for float32 weights, even VGG16's 400 MB fc layer
    info: dict[str, object] = {
        "key": key,
        "shape": tuple(tensor.shape),
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "numel": tensor.numel(),
        "bytes": tensor.numel() * tensor.element_size(),
    }
    if tensor.numel():
        info.update(
            mean=round(values.mean().item(), 6),
            std=round(values.std().item(), 6) if tensor.numel() > 1 else 0.0,
            min=round(values.min().item(), 6),
            max=round(values.max().item(), 6),
        )
    return info


def histogram_png(tensor: torch.Tensor, title: str = "", bins: int = 50, max_values: int = 200_000) -> bytes:
    """A PNG histogram of a tensor's values (what the explorer shows).

    Tensors larger than ``max_values`` are drawn from an evenly spaced sample of their
    values, so VGG16's 102-million-value layer takes milliseconds, not seconds.

    Example:
        >>> histogram_png(torch.randn(100))[:4]
        b'\\x89PNG'
    """
    fig, ax = plt.subplots(figsize=(5, 2.6))
    values = tensor.detach().flatten()
    step = max(1, values.numel() // max_values)
    ax.hist(values[::step].float().numpy(), bins=bins, color="tab:blue")
    ax.set_xlabel(_("value"))
    ax.set_ylabel(_("count"))
    ax.set_title(_("{title} (every {step}th value)").format(title=title, step=step) if step > 1 else title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def summary_html(info: Mapping[str, object]) -> str:
    """One HTML line for :func:`describe_entry`'s result.

    Example:
        >>> "shape (2,)" in summary_html({"key": "b", "shape": (2,), "dtype": "float32", "numel": 2, "bytes": 8})
        True
    """
    if "mean" not in info:  # an empty tensor
        return _("<b>{key}</b>: shape {shape}, {dtype}, {numel:,} values, {bytes:,} bytes").format(**info)
    return _(
        "<b>{key}</b>: shape {shape}, {dtype}, {numel:,} values, {bytes:,} bytes; "
        "mean {mean:.4g}, std {std:.4g}, min {min:.4g}, max {max:.4g}"
    ).format(**info)


def state_dict_explorer(state_dict: Mapping[str, torch.Tensor]):
    """A dropdown of the keys, a summary line and a histogram that follow the choice.

    Example:
        >>> ui = state_dict_explorer({"a": torch.zeros(3), "b": torch.ones(4)})
        >>> ui.children[0].value = "b"
        >>> "4 values" in ui.children[1].value
        True
    """
    import ipywidgets as widgets

    keys = list(state_dict)
    if not keys:
        raise ValueError(_("This state_dict is empty: there is nothing to explore."))
    dropdown = widgets.Dropdown(options=keys, value=keys[0], description=_("key"), layout={"width": "420px"})
    summary = widgets.HTML()
    image = widgets.Image(format="png")

    def show(key: str) -> None:
        summary.value = summary_html(describe_entry(state_dict, key))
        image.value = histogram_png(state_dict[key], title=key)

    dropdown.observe(lambda change: show(change["new"]), names="value")
    show(keys[0])
    return widgets.VBox([dropdown, summary, image])
