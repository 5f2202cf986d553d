"""What the browser tests share: every lesson notebook, opened in a real JupyterLab in a real
browser (Debian's Chromium). test_browser_en.py opens the English edition, test_browser_zh.py
the Chinese one (notebooks/zh/) in a JupyterLab whose interface is Chinese, as `make lab-zh`
opens it: two modules, so pytest-xdist (`--dist loadfile`) gives each to a worker of its own.

Who proves what:

- **strict nbval** (``pytest --nbval``, the root conftest.py) runs every notebook top to bottom
  in a fresh kernel started as JupyterLab starts one (ipykernel, the notebook's folder as its
  working directory, the numeric profile) and compares every output with the stored one: that
  each cell runs, raises only where tagged ``raises-exception``, and prints what is stored.
  tests/test_notebooks_stored.py adds that the stored outputs come from one run, top to bottom.
- **this test** proves what only a browser shows, without executing the notebook a second time:

  1. *It opens and renders.* Every cell of the file is in the page; every markdown cell is
     rendered, its tables as tables with the rows the source has (no line of pipes left as
     text); every stored output is drawn: text shows its text, each image loads (a widget shows
     its text form until its cell runs, as in JupyterLab without a kernel's widget state). The
     interface speaks the edition's language. A screenshot of the notebook's first screen as it
     opens: build/screenshots/NN_topic.png (the Chinese edition's zh-NN_topic.png).
  2. *No error shows* except in the cells tagged ``raises-exception`` (each of which shows one),
     and no cell shows stderr (a warning) unless tagged ``warning-expected``: checked on what the
     page shows, the stored outputs nbval proved to be the notebook's real ones.
  3. *Each widget answers* (``WIDGETS``): a round trip through a live kernel, which nbval cannot
     make. In the page's own kernel, through JupyterLab's "run cell", the test runs the widget's
     cell and the cells it needs (:func:`cells_the_widget_needs`: every earlier cell that binds,
     or may change, a name the widget's code reads, and theirs in turn, plus the notebook's
     preamble; each ran under nbval in the same order), checks them as in 2, changes the widget,
     presses its button where it has one, and waits for the kernel's answer. Its screenshot:
     NN_topic-widget.png.

The cells a widget does not need are not re-run here: nbval has run them, and a second run in
the browser's kernel proved nothing more (the kernel does not know which front end sends it code).
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mistune
import nbformat
import pytest
from notebook_cells import cells_the_widget_needs
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
# 00_start_here and the lessons: "01_weights_state_dict.ipynb" (the Chinese twin: "zh/01_weights_state_dict.ipynb")
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_MS = 300_000  # as nbval's --nbval-cell-timeout


def require_chromium() -> None:
    """Skip the calling test module when Chromium is missing (in CI: fail)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install it with `make browser` (apt-get install -y chromium)"
        if os.environ.get("CI"):
            raise RuntimeError(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason, allow_module_level=True)


require_chromium()


# ---------------------------------------------------------------------------------------------
# The page: what it shows, and running cells in its kernel
# ---------------------------------------------------------------------------------------------

# Each cell as the page holds it: its model (type, tags, count, outputs) and what is drawn of it.
PAGE_REPORT = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session?.kernel;
  const cells = panel.content.widgets.map((cell, index) => {
    const model = cell.model, node = cell.node;
    const report = {index, type: model.type, tags: model.getMetadata('tags') || []};
    if (model.type === 'markdown') {
      const rendered = node.querySelector('.jp-RenderedMarkdown');
      // rendered: the element is there and holds the text (it is filled in after it is added)
      report.rendered = Boolean(cell.rendered && rendered
        && (rendered.childNodes.length > 0 || !model.sharedModel.getSource().trim()));
      report.tables = rendered ? [...rendered.querySelectorAll('table')].map(
        t => [...t.tBodies].reduce((rows, body) => rows + body.rows.length, 0)) : [];
      const prose = rendered ? rendered.cloneNode(true) : null;
      if (prose) prose.querySelectorAll('pre, code, table').forEach(n => n.remove());
      report.pipe_lines = prose ? prose.innerText.split('\\n').filter(l => l.trim().startsWith('|')).length : 0;
      report.images = rendered ? [...rendered.querySelectorAll('img')].map(i => i.complete && i.naturalWidth > 0) : [];
    }
    if (model.type === 'code') {
      report.count = model.executionCount;
      const children = [...cell.outputArea.node.querySelectorAll(':scope > .jp-OutputArea-child')];
      report.outputs = [];
      for (let i = 0; i < model.outputs.length; i++) {
        const out = model.outputs.get(i).toJSON();
        const shown = children[i]?.querySelector(':scope > .jp-OutputArea-output');
        const content = out.output_type === 'error' || Boolean(out.text) || Object.keys(out.data || {}).length > 0;
        report.outputs.push({
          type: out.output_type, name: out.name || '', mimes: Object.keys(out.data || {}),
          text: out.output_type === 'error' ? (out.ename || '') + ': ' + (out.evalue || '')
                : (out.text ? String(out.text).slice(0, 200) : ''),
          drawn: Boolean(shown) && (shown.childNodes.length > 0 || !content),
          drawn_text: shown ? shown.innerText.trim().slice(0, 200) : '',
          images: shown ? [...shown.querySelectorAll('img')].map(i => i.complete && i.naturalWidth > 0) : [],
          widget: shown ? Boolean(shown.querySelector('.jupyter-widgets, .widget-box, .widget-hprogress, .widget-html'))
                        && !shown.innerText.includes('Error displaying widget') : false,
        });
      }
    }
    return report;
  });
  return {status: kernel ? kernel.status : 'none', cells};
}"""


# The cells whose drawing is not finished: a markdown cell not rendered, an output with no element,
# an image not loaded.
NOT_DRAWN = """(cells) => cells.filter(c =>
  c.type === 'markdown' ? !c.rendered || !c.images.every(Boolean)
  : c.type === 'code' && !c.outputs.every(o => o.drawn && o.images.every(Boolean))
).map(c => ({index: c.index, type: c.type, outputs: (c.outputs || []).map(o => [o.type, o.mimes, o.drawn_text])}))"""


def open_notebook(page: Page, url: str, token: str, name: str, cells: int) -> None:
    """Open ``name`` in JupyterLab and wait until its ``cells`` cells and every stored output are drawn."""
    # A workspace of its own, so the tabs of the notebooks opened before are not restored.
    workspace = name.removesuffix(".ipynb").replace("/", "-")
    page.goto(f"{url}/lab/workspaces/{workspace}/tree/notebooks/{name}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
    loaded = "window.jupyterapp.shell.currentWidget?.context?.isReady"
    try:
        page.wait_for_function(
            f"() => {loaded} && (r => r.length === {cells} && ({NOT_DRAWN})(r).length === 0)(({PAGE_REPORT})().cells)",
            timeout=60_000,
        )
    except PlaywrightTimeoutError:
        missing = page.evaluate(f"() => {loaded} && ({NOT_DRAWN})(({PAGE_REPORT})().cells)")
        raise AssertionError(f"{name}: not drawn after 60 s (file: {cells} cells): {missing}") from None


def page_cells(page: Page) -> list[dict]:
    return page.evaluate(PAGE_REPORT)["cells"]


def markdown_tables(source: str) -> list[int]:
    """The body rows of each table in ``source``, as a markdown parser reads it."""
    parse = mistune.create_markdown(renderer=None, plugins=["table"])
    return [
        sum(len(part["children"]) for part in token["children"] if part["type"] == "table_body")
        for token in parse(source)
        if token["type"] == "table"
    ]


def render_problems(stored: nbformat.NotebookNode, cells: list[dict]) -> list[str]:
    """Why the page does not show the stored notebook whole ([] if it does)."""
    if [c["type"] for c in cells] != [c.cell_type for c in stored.cells]:
        return [f"the page shows {len(cells)} cells, the file holds {len(stored.cells)} (or their kinds differ)"]
    problems = []
    for cell, source in zip(cells, stored.cells, strict=True):
        where = f"cell {cell['index']}"
        if cell["type"] == "markdown":
            if cell["tables"] != markdown_tables(source.source):
                problems.append(
                    f"{where}: tables drawn with {cell['tables']} body rows, the source has "
                    f"{markdown_tables(source.source)}"
                )
            if cell["pipe_lines"]:
                problems.append(f"{where}: {cell['pipe_lines']} line(s) of '|' drawn as text: a table that broke")
            if not all(cell["images"]):
                problems.append(f"{where}: an image in the markdown did not load")
        elif cell["type"] == "code":
            if cell["count"] != source.execution_count:
                problems.append(f"{where}: drawn with count {cell['count']}, stored {source.execution_count}")
            for out in cell["outputs"]:
                if out["type"] in ("stream", "error", "execute_result", "display_data") and not (
                    out["drawn_text"] or out["images"] or out["widget"] or not (out["text"] or out["mimes"])
                ):
                    problems.append(f"{where}: a {out['type']} output is drawn empty")
                if "image/png" in out["mimes"] and not out["images"]:
                    problems.append(f"{where}: a stored image is not drawn")
    return problems


def error_problems(cells: list[dict], only: set[int] | None = None) -> list[str]:
    """Errors outside the cells tagged ``raises-exception``, a tagged cell that shows none, and
    stderr outside the cells tagged ``warning-expected``; among the cells at positions ``only``."""
    problems = []
    for cell in cells:
        if cell["type"] != "code" or (only is not None and cell["index"] not in only):
            continue
        errors = [out["text"] for out in cell["outputs"] if out["type"] == "error"]
        if "raises-exception" in cell["tags"]:
            if not errors:
                problems.append(f"cell {cell['index']} is tagged raises-exception but shows no error")
        elif errors:
            problems.append(f"cell {cell['index']} shows an error: {errors}")
        stderr = [out["text"] for out in cell["outputs"] if out["name"] == "stderr"]
        if stderr and "warning-expected" not in cell["tags"]:
            problems.append(f"cell {cell['index']} wrote to stderr (a warning?): {stderr}")
    return problems


def kernel_idle(page: Page, timeout: int = 60_000) -> None:
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
        timeout=timeout,
    )


def run_cells(page: Page, positions: list[int]) -> list[dict]:
    """Clear the cells at ``positions`` (all cells counted) and run them one by one, in order, in
    the page's kernel with JupyterLab's "run cell"; stop at the first error in a cell not tagged
    to raise. The page's report of every cell afterwards."""
    page.evaluate(
        """(positions) => { const cells = window.jupyterapp.shell.currentWidget.content.widgets;
             for (const i of positions) { cells[i].model.sharedModel.transact(() => {
               cells[i].model.outputs.clear(); cells[i].model.executionCount = null; }); } }""",
        positions,
    )
    stopped = page.evaluate(
        """async ([positions, limit]) => {
             const app = window.jupyterapp, notebook = app.shell.currentWidget.content;
             for (const position of positions) {
               notebook.activeCellIndex = position;
               notebook.deselectAll();
               let timer;
               const late = new Promise((_, reject) => { timer = setTimeout(
                 () => reject(new Error(`cell ${position} still running after ${limit / 1000} s`)), limit); });
               await Promise.race([app.commands.execute('notebook:run-cell'), late]);
               clearTimeout(timer);
               const model = notebook.widgets[position].model;
               if (model.executionCount === null) return `cell ${position} did not run (no execution count)`;
               const outputs = [...Array(model.outputs.length).keys()].map(i => model.outputs.get(i).type);
               if (outputs.includes('error') && !(model.getMetadata('tags') || []).includes('raises-exception')) break;
             }
             return null;
           }""",
        [positions, CELL_TIMEOUT_MS],
    )
    assert stopped is None, stopped
    return page_cells(page)


# ---------------------------------------------------------------------------------------------
# The widgets, and the words each edition shows
# ---------------------------------------------------------------------------------------------

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
        "resume_waiting": "轮后崩溃",
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
        "stopped": "StatefulFlips，在第",
        "identical": "恢复后逐位一致 = True",
    },
}


def change_explorer(page: Page, cell: Locator, texts: dict[str, str]) -> None:
    """01: choose another key in the state_dict explorer; the kernel sends back its summary."""
    select = cell.locator(".widget-dropdown select").first
    select.scroll_into_view_if_needed()
    expect(cell.locator(".widget-html").first).to_contain_text("features.0.weight", timeout=30_000)
    select.select_option("classifier.0.bias")
    expect(cell.locator(".widget-html").first).to_contain_text(texts["explored"], timeout=30_000)


def waiting_interact(cell: Locator, result_text: str) -> tuple[Locator, Locator]:
    """The cell's ``interact_manual`` widget and its output, checked to hold no result yet."""
    widget = cell.locator(".widget-interact").first
    widget.scroll_into_view_if_needed()
    output = widget.locator(".widget-output").first
    expect(output).not_to_contain_text(result_text, timeout=5_000)  # displaying it computed nothing
    return widget, output


def change_resume_slider(page: Page, cell: Locator, texts: dict[str, str]) -> None:
    """03: move the "crash after" slider, press "resume"; the kernel resumes and re-plots."""
    widget, output = waiting_interact(cell, texts["resume_waiting"])
    widget.locator(".widget-slider .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")  # 1 -> 2
    widget.locator("button", has_text=texts["resume"]).click()
    expect(output).to_contain_text(texts["resumed"], timeout=60_000)
    expect(output.locator("img")).to_have_count(1, timeout=30_000)


def untick_conv1(page: Page, cell: Locator, texts: dict[str, str]) -> None:
    """04: untick "conv1", press "train"; the kernel reloads, retrains and reports."""
    widget, output = waiting_interact(cell, texts["transfer_waiting"])
    widget.locator(".widget-checkbox input").first.click()
    widget.locator("button", has_text=texts["train"]).click()
    expect(output).to_contain_text(texts["transferred"], timeout=60_000)


def read_a_slice(page: Page, cell: Locator, texts: dict[str, str]) -> None:
    """08: press "read"; the kernel reads the chosen rows of one tensor lazily and reports the bytes."""
    widget, output = waiting_interact(cell, texts["read_waiting"])
    widget.locator("button", has_text=texts["read"]).click()
    expect(output).to_contain_text(texts["was_read"], timeout=60_000)
    expect(output).to_contain_text(texts["read_waiting"], timeout=30_000)


def stop_and_resume(page: Page, cell: Locator, texts: dict[str, str]) -> None:
    """09: move the "stop after" slider, press "stop and resume"; the kernel reruns and compares."""
    widget, output = waiting_interact(cell, texts["stop_waiting"])
    widget.locator(".widget-slider .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    widget.locator("button", has_text=texts["stop_resume"]).click()
    expect(output).to_contain_text(texts["stopped"], timeout=90_000)
    expect(output).to_contain_text(texts["identical"], timeout=30_000)


@dataclass(frozen=True)
class Widget:
    """A lesson's widget: the code that makes it (found in exactly one code cell) and how to use it."""

    made_by: str
    use: Callable[[Page, Locator, dict[str, str]], None]


WIDGETS = {
    "01_weights_state_dict.ipynb": Widget("state_dict_explorer(state)", change_explorer),
    "03_checkpoints_resume.ipynb": Widget("(show_resume, crash_at=crash_slider)", change_resume_slider),
    "04_warm_start.ipynb": Widget("(show_transfer)", untick_conv1),
    "08_sharing_models.ipynb": Widget("show_read,\n    name=widgets.Dropdown(", read_a_slice),
    "09_long_runs.ipynb": Widget("button(try_stop_after,", stop_and_resume),
}


def widget_cell(notebook: nbformat.NotebookNode, made_by: str) -> int:
    """The position (all cells counted) of the one code cell whose source holds ``made_by``."""
    found = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and made_by in c.source]
    assert len(found) == 1, f"{made_by!r} must be in exactly one code cell, found in cells {found}"
    return found[0]


def widget_run(notebook: nbformat.NotebookNode, made_by: str) -> list[int]:
    """The positions (all cells counted) of the cells to run for the widget made by ``made_by``."""
    code = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    widget = code.index(widget_cell(notebook, made_by))
    return [code[i] for i in cells_the_widget_needs([notebook.cells[i].source for i in code], widget)]


# ---------------------------------------------------------------------------------------------
# The test of one notebook
# ---------------------------------------------------------------------------------------------


def screenshot(page: Page, name: str, suffix: str = "") -> None:
    """One screen of the page under build/screenshots/ (``zh-`` for the Chinese edition)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / (name.replace("zh/", "zh-").removesuffix(".ipynb") + suffix + ".png")))


def check_notebook(lab: tuple[str, str], browser, name: str) -> None:
    """Open ``name`` (``"01_....ipynb"`` or ``"zh/01_....ipynb"``) in JupyterLab: it renders whole, in
    the edition's language, with errors only where tagged; its widget, if it has one, answers."""
    url, token = lab
    texts = TEXTS["zh" if name.startswith("zh/") else "en"]
    stored = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        open_notebook(page, url, token, name, len(stored.cells))
        screenshot(page, name)
        cells = page_cells(page)
        problems = render_problems(stored, cells) + error_problems(cells)
        assert not problems, f"{name} as JupyterLab shows it: {problems}"
        # The interface speaks the edition's language (the Chinese one through the language pack).
        expect(page.locator(".lm-MenuBar-itemLabel").first).to_have_text(texts["menu"])
        widget = WIDGETS.get(name.removeprefix("zh/"))
        if widget is None:
            return
        kernel_idle(page)
        run = widget_run(stored, widget.made_by)
        cells = run_cells(page, run)
        problems = error_problems(cells, only=set(run))
        assert not problems, f"{name}: running the cells its widget needs ({run}) in JupyterLab: {problems}"
        counts = [cells[position]["count"] for position in run]
        assert counts == list(range(1, len(run) + 1)), f"{name}: cells {run} ran with counts {counts}"
        cell = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(run[-1])
        try:
            widget.use(page, cell, texts)
            # The widget's text arrives before its plot: wait until the kernel is done, so the
            # screenshot shows the widget's whole answer (the histogram of the new key, not the old).
            kernel_idle(page)
            page.wait_for_timeout(500)  # the image's paint after the idle message
        finally:
            screenshot(page, name, suffix="-widget")
    finally:
        try:  # a kernel still starting cannot be listed (jupyter_server answers 500): let it finish
            kernel_idle(page)
        except PlaywrightTimeoutError:
            pass  # shut it down all the same
        page.close()
        shut_down_kernels(url, token)


def shut_down_kernels(url: str, token: str) -> None:
    """Free the memory of the notebook just tested before the next one starts."""
    with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        request = urllib.request.Request(f"{url}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()
