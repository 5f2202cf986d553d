"""Every English lesson notebook in a real JupyterLab in a real browser: it renders whole with no
error but where tagged, and its widget answers through a live kernel (see browser_run.py)."""

from __future__ import annotations

import re

import nbformat
import pytest
from browser_run import (
    LESSONS,
    ROOT,
    WIDGETS,
    cells_the_widget_needs,
    check_notebook,
    error_problems,
    render_problems,
    require_chromium,
    widget_run,
)

require_chromium()
pytestmark = pytest.mark.slow  # a server and a browser: left out of `make check`


@pytest.mark.parametrize("name", LESSONS)
def test_notebook_renders_in_jupyterlab_and_its_widget_answers(lab, browser, name):
    check_notebook(lab, browser, name)


def test_every_lesson_with_a_widget_is_exercised():
    assert set(WIDGETS) <= set(LESSONS), "WIDGETS names a notebook that does not exist"
    for name in LESSONS:
        sources = [c.source for c in nbformat.read(ROOT / "notebooks" / name, as_version=4).cells]
        makes_one = any(re.search(r"\binteract(_manual)?\b|state_dict_explorer\(", s) for s in sources)
        assert makes_one == (name in WIDGETS), f"{name}: a widget the browser test does not use, or the reverse"
    for name, widget in WIDGETS.items():  # each edition's widget cell is found, with the cells it needs
        for path in (ROOT / "notebooks" / name, ROOT / "notebooks" / "zh" / name):
            assert widget_run(nbformat.read(path, as_version=4), widget.made_by)


def test_the_cells_a_widget_needs_follow_each_name_to_its_last_binding():
    sources = [
        "import os\nprepare()",  # 0: the preamble (binds nothing but imports)
        "a = 1",  # 1: the a that cell 3 reads
        "b = []",  # 2: b, which cell 3 then changes
        "b.append(a)",  # 3
        "c = 5",  # 4: nobody reads c
        "def f():\n    return b + [d]",  # 5: f reads b and d when it is called
        "d = 2",  # 6
        "a = 3",  # 7: after cell 3 read a: not needed
        "show(f())",  # 8: the widget
    ]
    assert cells_the_widget_needs(sources, 8) == [0, 1, 2, 3, 5, 6, 8]
    # a binding that may not run does not end the search; one that always runs does
    conditional = ["x = 1", "x = 2", "if ready:\n    x = 3", "y = [i for i in range(x)]", "show(y)"]
    assert cells_the_widget_needs(conditional, 4) == [1, 2, 3, 4]


def test_the_page_checks_catch_what_they_are_for():
    stored = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n"),
            nbformat.v4.new_code_cell("print(1)", execution_count=1),
        ]
    )
    shown = {"type": "code", "index": 1, "tags": [], "count": 1}
    text = {"type": "stream", "name": "stdout", "mimes": [], "text": "1\n", "images": [], "widget": False}
    whole = [
        {"type": "markdown", "index": 0, "tags": [], "tables": [2], "pipe_lines": 0, "images": []},
        {**shown, "outputs": [{**text, "drawn_text": "1"}]},
    ]
    assert render_problems(stored, whole) == [] and error_problems(whole) == []
    split = [{**whole[0], "tables": [1], "pipe_lines": 1}, whole[1]]  # a blank line split the table
    assert len(render_problems(stored, split)) == 2
    empty = [whole[0], {**shown, "outputs": [{**text, "drawn_text": ""}]}]
    assert render_problems(stored, empty) == ["cell 1: a stream output is drawn empty"]
    error = {**text, "type": "error", "name": "", "text": "ValueError: x"}
    assert error_problems([{**shown, "outputs": [error]}]) == ["cell 1 shows an error: ['ValueError: x']"]
    assert error_problems([{**shown, "tags": ["raises-exception"], "outputs": [error]}]) == []
    assert error_problems([{**shown, "tags": ["raises-exception"], "outputs": []}]) != []
    warning = {**text, "name": "stderr", "text": "UserWarning: y"}
    assert error_problems([{**shown, "outputs": [warning]}]) != []
    assert error_problems([{**shown, "tags": ["warning-expected"], "outputs": [warning]}]) == []
