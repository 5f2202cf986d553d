"""The grader on a folder holding a correct, a partly wrong, a crashing, a hanging, an empty
and a non-notebook submission: every one gets a row, and the run never stops."""

import csv
import shutil
from pathlib import Path

import nbformat
import pytest

from lesson_utils.grade import grade_folder

pytestmark = pytest.mark.slow  # starts processes or servers: left out of `make check`

SOLUTIONS = Path(__file__).resolve().parent.parent / "notebooks" / "exercises" / "solutions"


def notebook(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def test_grader_records_every_kind_of_submission(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    shutil.copy(SOLUTIONS / "01_weights_solutions.ipynb", folder / "alice.ipynb")
    partly = nbformat.read(SOLUTIONS / "01_weights_solutions.ipynb", as_version=4)
    for cell in partly.cells:
        cell.source = cell.source.replace('q3_answer = "b"', 'q3_answer = "c"').replace("model.eval()", "model.train()")
    nbformat.write(partly, folder / "bob.ipynb")
    nbformat.write(notebook("import os", "os._exit(1)"), folder / "carol.ipynb")  # kills its kernel
    nbformat.write(notebook("import time", "time.sleep(600)"), folder / "dave.ipynb")
    nbformat.write(notebook(), folder / "erin.ipynb")
    (folder / "frank.ipynb").write_text("this is not JSON")
    nbformat.write(
        notebook("raise ValueError('oops')", "from lesson_utils.exercises import lesson01 as ex", "ex.q3.check()"),
        folder / "gina.ipynb",
    )

    rows = grade_folder(folder, tmp_path / "grades.csv", timeout=40)

    with open(tmp_path / "grades.csv") as f:
        table = {row["file"]: row for row in csv.DictReader(f)}
    assert len(rows) == len(table) == 7
    assert table["alice.ipynb"]["status"] == "graded" and table["alice.ipynb"]["correct"] == "3"
    assert table["bob.ipynb"]["correct"] == "1"
    assert table["bob.ipynb"]["lesson01.q2"] == "incorrect"
    assert "still in training mode" in table["bob.ipynb"]["lesson01.q2 message"]
    assert table["bob.ipynb"]["lesson01.q3"] == "incorrect"
    assert table["carol.ipynb"]["status"] == "crashed"
    assert table["dave.ipynb"]["status"] == "timed out" and "40 s" in table["dave.ipynb"]["reason"]
    assert table["erin.ipynb"]["status"] == "empty"
    assert table["frank.ipynb"]["status"] == "not a notebook"
    assert table["gina.ipynb"]["status"] == "ran with errors" and "ValueError: oops" in table["gina.ipynb"]["reason"]
    assert table["gina.ipynb"]["lesson01.q3"] == "not attempted"
