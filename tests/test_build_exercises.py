"""scripts/build_exercises.py: the blank exercise notebooks and solutions.json are generated
from the solution notebooks, and a stored copy that drifts from them is caught (no kernels)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from lesson_utils.exercises.core import Question, choice

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_exercises", ROOT / "scripts" / "build_exercises.py")
build_exercises = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_exercises)
LESSONS = sorted(p.stem for p in (ROOT / "lesson_utils" / "exercises").glob("lesson*.py"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what the script reads and writes: notebooks/exercises and solutions.json."""
    shutil.copytree(ROOT / "notebooks" / "exercises", tmp_path / "notebooks" / "exercises")
    (tmp_path / build_exercises.SOLUTIONS_JSON).parent.mkdir(parents=True)
    shutil.copy(ROOT / build_exercises.SOLUTIONS_JSON, tmp_path / build_exercises.SOLUTIONS_JSON)
    return tmp_path


def edit(path: Path, index: int, source: str) -> None:
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[index].source = source
    nbformat.write(notebook, path)


def test_check_passes_on_the_repository(capsys) -> None:
    assert build_exercises.main(["--check"]) == 0, capsys.readouterr().err


def test_check_fails_on_a_hand_edited_blank_notebook_and_writing_repairs_it(tree: Path, capsys) -> None:
    blank = tree / "notebooks" / "exercises" / "01_weights.ipynb"
    edit(blank, 4, "weights_path = 'my answer'")
    assert build_exercises.main(["--check", "--root", str(tree)]) == 1
    assert "notebooks/exercises/01_weights.ipynb: differs" in capsys.readouterr().err

    assert build_exercises.main(["--root", str(tree)]) == 0
    assert build_exercises.stale(tree) == []
    regenerated = nbformat.read(blank, as_version=4)
    assert regenerated.cells[4].source == "weights_path = None  # your code here"
    assert all(not c.outputs and c.execution_count is None for c in regenerated.cells if c.cell_type == "code")


def test_check_fails_on_a_hand_edited_solutions_json(tree: Path, capsys) -> None:
    path = tree / build_exercises.SOLUTIONS_JSON
    path.write_text(path.read_text().replace("weights.pt", "other.pt"))
    assert build_exercises.main(["--check", "--root", str(tree)]) == 1
    assert "lesson_utils/exercises/solutions.json: differs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("weights_path = workdir / 'w.pt'", "needs its answer between"),
        ("### BEGIN SOLUTION\nweights_path = workdir / 'w.pt'", "unbalanced markers (1 `### BEGIN SOLUTION`, 0"),
        ("### END SOLUTION\nx = 1\n### BEGIN SOLUTION", "unbalanced markers"),
        ("### BEGIN SOLUTION\na = 1\n### END SOLUTION\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION", "unbalanced"),
        ("### BEGIN SOLUTION\nweights_path = (\n### END SOLUTION", "not valid Python on its own"),
    ],
)
def test_a_broken_region_is_an_error_naming_the_notebook_and_cell(tree: Path, source: str, problem: str) -> None:
    edit(tree / "notebooks" / "exercises" / "solutions" / "01_weights_solutions.ipynb", 4, source)
    with pytest.raises(build_exercises.ExerciseError, match="01_weights_solutions.ipynb, cell 4: ") as error:
        build_exercises.build(tree)
    assert problem in str(error.value)
    assert build_exercises.main(["--check", "--root", str(tree)]) == 2


def test_markers_outside_an_answer_cell_are_an_error(tree: Path) -> None:
    edit(tree / "notebooks" / "exercises" / "solutions" / "01_weights_solutions.ipynb", 1, "### BEGIN SOLUTION")
    with pytest.raises(build_exercises.ExerciseError, match=r"01_weights_solutions.ipynb, cell 1: .*outside"):
        build_exercises.build(tree)


def test_every_question_has_a_solution_and_every_answer_cell_a_region() -> None:
    solutions = json.loads((ROOT / build_exercises.SOLUTIONS_JSON).read_text())
    questions = {
        q.qid
        for name in LESSONS
        for q in vars(importlib.import_module(f"lesson_utils.exercises.{name}")).values()
        if isinstance(q, Question)
    }
    # every lesson notebook 01.. has its exercises (00 is the map, not a lesson)
    lesson_notebooks = sorted((ROOT / "notebooks").glob("0[1-9]_*.ipynb")) + sorted(
        (ROOT / "notebooks").glob("[1-9][0-9]_*.ipynb")
    )
    assert len(LESSONS) == len(lesson_notebooks) >= 9 and set(solutions) == {"en", "zh_CN"}
    for language, found in solutions.items():  # both editions answer every question
        assert questions == set(found), language
        assert all(text.strip() and "###" not in text for text in found.values()), language
    for path in build_exercises.solution_notebooks(ROOT):
        cells = nbformat.read(path, as_version=4).cells
        answers = [i - 1 for i, cell in enumerate(cells) if build_exercises.CHECK.search(cell.source)]
        assert answers, path.name
        for i in answers:
            assert cells[i].source.count(build_exercises.BEGIN) == 1 == cells[i].source.count(build_exercises.END)


def test_placeholders() -> None:
    blanks = build_exercises.build(ROOT)
    lesson07 = blanks[ROOT / "notebooks" / "exercises" / "07_devices_optimizers.ipynb"]
    assert lesson07.cells[4].source == "model_fp64 = optimizer_fp64 = None  # your code here"
    assert lesson07.cells[0].source.startswith("# Exercises · Lesson 07: ")
    assert "](../07_devices_optimizers_formats.ipynb)" in lesson07.cells[0].source

    question = Question("x.q1", "?", lambda **_: "", names=["b", "a", "c"], hint="")
    assert build_exercises.placeholder(question, "with x() as a:\n    for b in a:\n        pass", "") == (
        "b = a = None  # your code here"
    )
    assert build_exercises.placeholder(question, "print(1)", "") == "# your code here"
    two = choice("x.q2", "Pick", {"a": "no", "b": "yes"}, "b", {}, hint="")
    assert build_exercises.placeholder(two, 'q2_answer = "b"', "") == 'q2_answer = None  # "a" or "b"'


def test_code_outside_the_markers_stays_and_the_placeholder_keeps_the_indentation(tree: Path) -> None:
    solution = tree / "notebooks" / "exercises" / "solutions" / "05_big_models_solutions.ipynb"
    edit(
        solution,
        4,
        'with torch.device("meta"):\n    ### BEGIN SOLUTION\n    model = Net()\n    ### END SOLUTION\n'
        "model.load_state_dict(torch.load(weights_path, mmap=True, weights_only=True), assign=True)",
    )
    blanks = build_exercises.build(tree)
    assert blanks[tree / "notebooks" / "exercises" / "05_big_models.ipynb"].cells[4].source == (
        'with torch.device("meta"):\n    model = None  # your code here\n'
        "model.load_state_dict(torch.load(weights_path, mmap=True, weights_only=True), assign=True)"
    )
    assert json.loads(blanks[tree / build_exercises.SOLUTIONS_JSON])["en"]["lesson05.q1"] == "model = Net()"


def test_the_chinese_solutions_generate_chinese_blanks_and_solutions(tree: Path) -> None:
    shutil.copytree(ROOT / "notebooks" / "zh" / "exercises", tree / "notebooks" / "zh" / "exercises")
    generated = build_exercises.build(tree)
    blank = generated[tree / "notebooks" / "zh" / "exercises" / "01_weights.ipynb"]
    assert blank.cells[0].source.startswith("# 练习 · ")
    assert "weights_path = None  # 在这里写你的代码" in [cell.source for cell in blank.cells]
    assert 'q3_answer = None  # "a", "b" 或 "c"' in [cell.source for cell in blank.cells]
    solutions = json.loads(generated[tree / build_exercises.SOLUTIONS_JSON])
    assert solutions["zh_CN"].keys() == solutions["en"].keys()
    title = tree / "notebooks" / "zh" / "exercises" / "solutions" / "01_weights_solutions.ipynb"
    edit(title, 0, "# Solutions · lesson 01")  # the English title in a Chinese solution notebook
    with pytest.raises(build_exercises.ExerciseError, match="must start `# 参考答案 · `"):
        build_exercises.build(tree)
