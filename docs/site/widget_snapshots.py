"""Render the widgets a notebook stored (its ``widgets`` metadata) as static HTML, so that the site
shows each one as it was left, with no kernel and no JavaScript (the usual way, ipywidgets'
HTML manager, loads its code from a CDN when the page is viewed).

The controls are drawn disabled: on the site they are a snapshot; they respond in JupyterLab.

>>> state = {"b": {"model_name": "ButtonModel", "state": {"description": "resume"}}}
>>> snapshot(state, "b")
'<button type="button" class="ws-button" disabled>resume</button>'
"""

from __future__ import annotations

import html
import re

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def snapshot(state: dict, model_id: str) -> str:
    """The HTML of the stored widget ``model_id``, its children drawn inside it; empty for a widget that
    its layout hides (as tqdm hides a finished ``leave=False`` bar: JupyterLab no longer shows it)."""
    model = state[model_id]
    name, s = model["model_name"], model["state"]
    layout = state.get(s.get("layout", "").removeprefix("IPY_MODEL_"), {}).get("state", {})
    if layout.get("visibility") == "hidden" or layout.get("display") == "none":
        return ""
    label = f'<span class="ws-label">{html.escape(s["description"])}</span> ' if s.get("description") else ""
    if name in ("BoxModel", "HBoxModel", "VBoxModel", "GridBoxModel"):
        classes = " ".join(["ws-box", "ws-" + name[:-5].lower(), *s.get("_dom_classes", [])])
        children = "".join(snapshot(state, child.removeprefix("IPY_MODEL_")) for child in s["children"])
        return f'<div class="{classes}">{children}</div>'
    if name in ("HTMLModel", "HTMLMathModel"):
        return f'<div class="ws-html">{label}{s["value"]}</div>'  # the notebook's own HTML, as JupyterLab shows it
    if name == "LabelModel":
        return f'<div class="ws-html">{html.escape(s["value"])}</div>'
    if name in ("FloatProgressModel", "IntProgressModel"):
        style = f" ws-{s['bar_style']}" if s.get("bar_style") else ""
        return (
            f'<div class="ws-progress">{label}<progress class="ws-bar{style}" '
            f'max="{s["max"] - s["min"]}" value="{s["value"] - s["min"]}"></progress></div>'
        )
    if name in ("IntSliderModel", "FloatSliderModel"):
        return (
            f'<label class="ws-slider">{label}<input type="range" min="{s["min"]}" max="{s["max"]}" '
            f'step="{s["step"]}" value="{s["value"]}" disabled> <output>{s["value"]}</output></label>'
        )
    if name == "ButtonModel":
        return f'<button type="button" class="ws-button" disabled>{html.escape(s["description"])}</button>'
    if name == "CheckboxModel":
        box = f'<input type="checkbox" disabled{" checked" if s["value"] else ""}>'
        return f'<label class="ws-checkbox">{box} {html.escape(s["description"])}</label>'
    if name == "ToggleButtonsModel":  # one button per option, the chosen one pressed
        buttons = "".join(
            f'<button type="button" class="ws-button" aria-pressed="{str(i == s["index"]).lower()}" disabled>'
            f"{html.escape(text)}</button>"
            for i, text in enumerate(s["_options_labels"])
        )
        return f'<div class="ws-toggle">{label}{buttons}</div>'
    if "_options_labels" in s:  # Dropdown, Select, RadioButtons, ...: the choices, the chosen one selected
        options = "".join(
            f"<option{' selected' if i == s['index'] else ''}>{html.escape(text)}</option>"
            for i, text in enumerate(s["_options_labels"])
        )
        return f'<label class="ws-dropdown">{label}<select disabled>{options}</select></label>'
    if name == "ImageModel":
        (buffer,) = (b for b in model["buffers"] if b["path"] == ["value"])
        return f'<img class="ws-image" alt="" src="data:image/{s["format"]};base64,{buffer["data"]}">'
    if name == "OutputModel":
        return f'<div class="ws-output">{"".join(output_html(out) for out in s["outputs"])}</div>'
    if "value" in s:  # a text field, a toggle, ...: its value is what the reader needs
        field = f'<input type="text" value="{html.escape(str(s["value"]))}" disabled>'
        return f'<label class="ws-value">{label}{field}</label>'
    raise ValueError(f"widget_snapshots cannot draw a {name} yet: add it to docs/site/widget_snapshots.py")


def output_html(output: dict) -> str:
    """One output an ``Output`` widget captured (stdout, a plot, a table, an error)."""
    if output["output_type"] == "stream":
        return f'<pre class="ws-stream">{html.escape(output["text"])}</pre>'
    if output["output_type"] == "error":
        return f'<pre class="ws-stream">{html.escape(ANSI.sub("", chr(10).join(output["traceback"])))}</pre>'
    data = output["data"]
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            return f'<img class="ws-image" alt="" src="data:{mime};base64,{data[mime].strip()}">'
    if "text/html" in data:
        return "".join(data["text/html"])
    return f'<pre class="ws-stream">{html.escape("".join(data.get("text/plain", "")))}</pre>'


def freeze_widgets(notebook: dict) -> None:
    """Replace each widget view in ``notebook``'s outputs by the HTML snapshot of its stored state,
    and drop the stored state (so no widget JavaScript is put on the page)."""
    state = notebook.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in notebook["cells"]:
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).pop(WIDGET_VIEW, None)
            if view and view["model_id"] in state:
                output["data"] = {"text/html": snapshot(state, view["model_id"])}
            if output.get("data") != {"text/html": ""}:
                outputs.append(output)
        if "outputs" in cell:
            cell["outputs"] = outputs
