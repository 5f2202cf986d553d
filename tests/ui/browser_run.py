"""What the browser tests share: every lesson notebook, run in a real JupyterLab in a real
browser (Debian's Chromium). test_browser_en.py runs the English edition, test_browser_zh.py the
Chinese one: two modules, so pytest-xdist (`--dist loadfile`) gives each to a worker of its own.

nbval proves what the kernel prints; this proves what a student sees: the notebook opens,
"Restart Kernel and Run All Cells" finishes with no error except in cells tagged to raise,
and each widget answers when it is changed (a round trip through the kernel). A screenshot
of each notebook is kept under build/screenshots/ (the Chinese edition's under zh-*.png).

Both editions run: the English notebooks in an English JupyterLab, the Chinese ones
(notebooks/zh/) in a JupyterLab whose interface is Chinese, as `make lab-zh` opens it.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
# 00_start_here and the lessons: "01_weights_state_dict.ipynb" (the Chinese twin: "zh/01_weights_state_dict.ipynb")
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def require_chromium() -> None:
    """Skip the calling test module when Chromium is missing (in CI: fail)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install it with `make browser` (apt-get install -y chromium)"
        if os.environ.get("CI"):
            raise RuntimeError(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason, allow_module_level=True)


require_chromium()


CELL_REPORT = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session?.kernel;
  const cells = panel.content.widgets.map((cell, index) => {
    const model = cell.model;
    if (model.type !== 'code') return null;
    const outputs = [];
    for (let i = 0; i < model.outputs.length; i++) {
      const out = model.outputs.get(i).toJSON();
      outputs.push({type: out.output_type, name: out.name || '', text: (out.ename || '') + ': ' + (out.evalue || '')});
    }
    return {index, count: model.executionCount, tags: model.getMetadata('tags') || [], outputs};
  }).filter(Boolean);
  return {status: kernel ? kernel.status : 'none', cells};
}"""


def run_all(page: Page, url: str, token: str, name: str) -> list[dict]:
    # A workspace of its own, so the tabs of the notebooks tested before are not restored.
    workspace = name.removesuffix(".ipynb").replace("/", "-")
    page.goto(f"{url}/lab/workspaces/{workspace}/tree/notebooks/{name}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
        timeout=60_000,
    )
    # Clear the stored outputs and counts first, so stale counts cannot pass for a finished run.
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.wait_for_function(f"() => ({CELL_REPORT})().cells.every(c => c.count === null)", timeout=20_000)
    # Not awaited: the command's promise only settles once the dialog is answered and all cells ran.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:restart-run-all'); }")
    page.locator(".jp-Dialog .jp-mod-accept").click(timeout=20_000)  # "Restart" in the confirmation
    # Done when every code cell has an execution count and the kernel is idle, or as soon as a cell
    # not tagged to raise shows an error (JupyterLab stops running the cells below it).
    page.wait_for_function(
        f"""() => {{ const r = ({CELL_REPORT})(); return r.status === 'idle' && (r.cells.every(c => c.count)
            || r.cells.some(c => !c.tags.includes('raises-exception')
                             && c.outputs.some(o => o.type === 'error'))); }}""",
        timeout=240_000,
        polling=1000,
    )
    return page.evaluate(CELL_REPORT)["cells"]


# What a student sees in each edition: JupyterLab's first menu, and each widget's words (the
# explorer's come from lesson_utils' catalogs, the others from the notebooks' own print calls).
TEXTS = {
    "en": {
        "menu": "File",
        "explored": "classifier.0.bias: shape (4096,)",
        "resume_waiting": "crash after epoch",
        "resume": "resume",
        "resumed": "crash after epoch 2: full checkpoint bit-identical: True",
        "train": "train",
        "transfer_waiting": "transferred:",
        "transferred": "transferred: ['conv2', 'fc1', 'fc2'] -> 6 tensors",
        "read": "read",
        "read_waiting": "bytes; touched",
        "was_read": "embed.weight [32000, 512] lives in",
        "stop_resume": "stop and resume",
        "stop_waiting": "resumed bit-identical",
        "stopped": "StatefulFlips, stopped after batch",
        "identical": "resumed bit-identical = True",
    },
    "zh": {
        "menu": "文件",
        "explored": "classifier.0.bias：形状 (4096,)",
        "resume_waiting": "轮后崩溃：",
        "resume": "断点续训",
        "resumed": "第 2 轮后崩溃，用完整断点恢复，逐位一致：True",
        "train": "训练",
        "transfer_waiting": "已迁移：",
        "transferred": "已迁移：['conv2', 'fc1', 'fc2'] -> 加载了 6 个张量",
        "read": "读取",
        "read_waiting": "字节；触及",
        "was_read": "embed.weight [32000, 512] 存放在",
        "stop_resume": "停下再恢复",
        "stop_waiting": "恢复后逐位一致",
        "stopped": "StatefulFlips, 在第",
        "identical": "恢复后逐位一致 = True",
    },
}


def change_explorer(page: Page, texts: dict[str, str]) -> None:
    """01: choose another key in the state_dict explorer; the kernel sends back its summary."""
    select = page.locator(".widget-dropdown select").first
    select.scroll_into_view_if_needed()
    expect(page.locator(".widget-html").first).to_contain_text("features.0.weight", timeout=30_000)
    select.select_option("classifier.0.bias")
    expect(page.locator(".widget-html").first).to_contain_text(texts["explored"], timeout=30_000)


def waiting_interact(page: Page, result_text: str) -> tuple[Locator, Locator]:
    """The notebook's ``interact_manual`` widget and its output, checked to hold no result yet."""
    widget = page.locator(".widget-interact").first
    widget.scroll_into_view_if_needed()
    output = widget.locator(".widget-output").first
    expect(output).not_to_contain_text(result_text, timeout=5_000)  # displaying it computed nothing
    return widget, output


def change_resume_slider(page: Page, texts: dict[str, str]) -> None:
    """03: move the "crash after" slider, press "resume"; the kernel resumes and re-plots."""
    widget, output = waiting_interact(page, texts["resume_waiting"])
    widget.locator(".widget-slider .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")  # 1 -> 2
    widget.locator("button", has_text=texts["resume"]).click()
    expect(output).to_contain_text(texts["resumed"], timeout=60_000)
    expect(output.locator("img")).to_have_count(1, timeout=30_000)


def untick_conv1(page: Page, texts: dict[str, str]) -> None:
    """04: untick "conv1", press "train"; the kernel reloads, retrains and reports."""
    widget, output = waiting_interact(page, texts["transfer_waiting"])
    widget.locator(".widget-checkbox input").first.click()
    widget.locator("button", has_text=texts["train"]).click()
    expect(output).to_contain_text(texts["transferred"], timeout=60_000)


def read_a_slice(page: Page, texts: dict[str, str]) -> None:
    """08: press "read"; the kernel reads the chosen rows of one tensor lazily and reports the bytes."""
    widget, output = waiting_interact(page, texts["read_waiting"])
    widget.locator("button", has_text=texts["read"]).click()
    expect(output).to_contain_text(texts["was_read"], timeout=60_000)
    expect(output).to_contain_text(texts["read_waiting"], timeout=30_000)


def stop_and_resume(page: Page, texts: dict[str, str]) -> None:
    """09: move the "stop after" slider, press "stop and resume"; the kernel reruns and compares."""
    widget, output = waiting_interact(page, texts["stop_waiting"])
    widget.locator(".widget-slider .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    widget.locator("button", has_text=texts["stop_resume"]).click()
    expect(output).to_contain_text(texts["stopped"], timeout=90_000)
    expect(output).to_contain_text(texts["identical"], timeout=30_000)


WIDGETS = {
    "01_weights_state_dict.ipynb": change_explorer,
    "03_checkpoints_resume.ipynb": change_resume_slider,
    "04_warm_start.ipynb": untick_conv1,
    "08_sharing_models.ipynb": read_a_slice,
    "09_long_runs.ipynb": stop_and_resume,
}


def check_notebook(lab: tuple[str, str], browser, name: str) -> None:
    """Run ``name`` (``"01_....ipynb"`` or ``"zh/01_....ipynb"``) in JupyterLab, check its cells,
    the interface's language and its widget, and keep a screenshot."""
    url, token = lab
    texts = TEXTS["zh" if name.startswith("zh/") else "en"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        cells = run_all(page, url, token, name)
        errors = [
            (cell["index"], out["text"])
            for cell in cells
            for out in cell["outputs"]
            if out["type"] == "error" and "raises-exception" not in cell["tags"]
        ]
        assert not errors, f"{name}: cells failed in JupyterLab: {errors}"
        expected = [cell["index"] for cell in cells if "raises-exception" in cell["tags"]]
        raised = [cell["index"] for cell in cells if any(out["type"] == "error" for out in cell["outputs"])]
        assert raised == expected, f"{name}: cells tagged to raise {expected}, cells that raised {raised}"
        # a cell tagged warning-expected shows a warning on purpose (05: UnverifiedCheckpointWarning)
        stderr = [
            cell["index"]
            for cell in cells
            for out in cell["outputs"]
            if out["name"] == "stderr" and "warning-expected" not in cell["tags"]
        ]
        assert not stderr, f"{name}: cells wrote to stderr (warnings?): {stderr}"
        # The interface speaks the edition's language (the Chinese one through the language pack).
        expect(page.locator(".lm-MenuBar-itemLabel").first).to_have_text(texts["menu"])
        lesson = name.removeprefix("zh/")
        if lesson in WIDGETS:
            WIDGETS[lesson](page, texts)
            # The widget's text arrives before its plot: wait until the kernel is done, so the
            # screenshot shows the widget's whole answer (the histogram of the new key, not the old).
            page.wait_for_function(
                "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                timeout=60_000,
            )
            page.wait_for_timeout(500)  # the image's paint after the idle message
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name.replace("zh/", "zh-").replace(".ipynb", ".png")))
        page.close()
        shut_down_kernels(url, token)


def shut_down_kernels(url: str, token: str) -> None:
    """Free the memory of the notebook just tested before the next one starts."""
    with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        request = urllib.request.Request(f"{url}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()
