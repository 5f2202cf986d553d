"""What strict nbval cannot see for itself: how each notebook is stored.

nbval compares nothing in a cell whose stored ``execution_count`` is empty, so a notebook
committed with cleared outputs passes while checking nothing. And a markdown table that a
blank line splits renders as a paragraph of pipes, which no output comparison notices.
"""

from __future__ import annotations

import re
from pathlib import Path

import mistune
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
IDS = [str(p.relative_to(ROOT / "notebooks")) for p in NOTEBOOKS]


def execution_problems(notebook: nbformat.NotebookNode) -> list[str]:
    """Why ``notebook`` is not stored executed top to bottom in one kernel ([] if it is)."""
    problems = []
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for position, cell in enumerate(code, start=1):
        if cell.get("execution_count") != position:
            problems.append(f"code cell {position} has execution_count {cell.get('execution_count')!r}")
    return problems


def markdown_table_rows(text: str) -> list[list[int]]:
    """For each table mistune finds in ``text``: its number of body rows."""
    parse = mistune.create_markdown(renderer=None, plugins=["table"])
    return [
        [len(part["children"]) for part in token["children"] if part["type"] == "table_body"]
        for token in parse(text)
        if token["type"] == "table"
    ]


def pipe_lines_outside_tables(text: str) -> int:
    """How many lines of ``text`` start with ``|`` (a table row), counted outside code fences."""
    lines, fenced = 0, False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.lstrip().startswith("|"):
            lines += 1
    return lines


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_executed_top_to_bottom(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    problems = execution_problems(notebook)
    assert not problems, f"{path.name} is not stored executed top to bottom: {problems[:3]}. Run `make notebooks`."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_markdown_table_parses_as_one_table(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown" or "|" not in cell.source:
            continue
        tables = markdown_table_rows(cell.source)
        rows_in_tables = sum(rows + 2 for rows in (sum(t) for t in tables))  # header + delimiter + body
        assert rows_in_tables == pipe_lines_outside_tables(cell.source), (
            f"{path.name}, cell {index}: {pipe_lines_outside_tables(cell.source)} lines look like table rows "
            f"but only {rows_in_tables} belong to a table ({len(tables)} tables found): a blank line or a "
            "missing delimiter row splits the table"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_link_to_a_notebook_leads_to_one(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for target in re.findall(r"\]\(([^)\s]+\.ipynb)\)", cell.source):
                assert (path.parent / target).is_file(), f"{path.name} links to {target}, which does not exist"


def test_the_checks_catch_what_they_are_for() -> None:
    unexecuted = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2")])
    assert len(execution_problems(unexecuted)) == 2
    unexecuted.cells[0].execution_count, unexecuted.cells[1].execution_count = 1, 3
    assert execution_problems(unexecuted) == ["code cell 2 has execution_count 3"]
    whole = "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n"
    split = "| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n"
    assert markdown_table_rows(whole) == [[2]] and pipe_lines_outside_tables(whole) == 4
    assert markdown_table_rows(split) == [[1]] and pipe_lines_outside_tables(split) == 4
