"""Generate the blank exercise notebooks and solutions.json from the solution notebooks.

Each exercise is written once, in ``notebooks/exercises/solutions/NN_name_solutions.ipynb``.
The answer cell of question ``qK`` is the code cell just before the cell calling
``ex.qK.check()``; its worked answer sits between nbgrader's markers::

    ### BEGIN SOLUTION
    model = Net()
    ### END SOLUTION

From that, this script writes

- ``notebooks/exercises/NN_name.ipynb``: the same cells, titled "# Exercises · " instead of
  "# Solutions · ", links one level up, and each marked region replaced by a placeholder that
  sets the question's variables the region assigns to ``None`` (``model = None  # your code
  here``; ``q3_answer = None  # "a", "b" or "c"`` for a multiple-choice question);
- ``lesson_utils/exercises/solutions.json``: ``{language: {qid: the region's code}}``, what
  ``ex.qK.solution()`` prints in the chosen language.

The Chinese solution notebooks (``notebooks/zh/exercises/solutions/``, titled ``# 参考答案 · ``)
generate the Chinese blank notebooks (``# 练习 · ``) and the ``zh_CN`` solutions the same way.

A blank notebook whose cells do not change is left alone (outputs kept); one that changes is
written with cleared outputs, so run ``scripts/execute_notebooks.py`` next (``make exercises``
does both). ``--check`` writes nothing and fails, naming the file, if anything stored differs.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib
import json
import re
import sys
import textwrap
from pathlib import Path

import nbformat

from lesson_utils.exercises.core import Question

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK = re.compile(r"\bex\.(q\d+)\.check\(\)")
SOLUTIONS_JSON = Path("lesson_utils", "exercises", "solutions.json")
OPTION = re.compile(r"^\s+([a-z])\) ", re.MULTILINE)  # a choice question's prompt lists "  a) ..." lines


class ExerciseError(Exception):
    """A solution notebook breaks the convention; the message names the notebook and the cell."""


# What the generated blank notebooks say, per edition: the title's start in the solutions and in the
# blank notebook, and the placeholder's comments.
EDITIONS = {
    "en": {"solutions": "# Solutions · ", "exercises": "# Exercises · ", "here": "your code here", "or": " or "},
    "zh_CN": {"solutions": "# 参考答案 · ", "exercises": "# 练习 · ", "here": "在这里写你的代码", "or": " 或 "},
}


def solution_notebooks(root: Path) -> list[Path]:
    """The solution notebooks of both editions: notebooks/exercises/solutions/ and its twin under notebooks/zh/."""
    return [
        *sorted((root / "notebooks" / "exercises" / "solutions").glob("*_solutions.ipynb")),
        *sorted((root / "notebooks" / "zh" / "exercises" / "solutions").glob("*_solutions.ipynb")),
    ]


def edition(solution: Path, root: Path) -> str:
    return "zh_CN" if solution.relative_to(root / "notebooks").parts[0] == "zh" else "en"


def blank_path(solution: Path) -> Path:
    return solution.parent.parent / solution.name.replace("_solutions.ipynb", ".ipynb")


def split_region(source: str, where: str) -> tuple[list[str], list[str], list[str], str]:
    """The lines before, inside and after the one marked region, and the markers' indentation."""
    lines = source.split("\n")
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if not begins and not ends:
        raise ExerciseError(f"{where}: an answer cell needs its answer between `{BEGIN}` and `{END}`")
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ExerciseError(
            f"{where}: unbalanced markers ({len(begins)} `{BEGIN}`, {len(ends)} `{END}`): "
            "wrap the answer in exactly one BEGIN/END pair"
        )
    (b,), (e,) = begins, ends
    indent = lines[b][: len(lines[b]) - len(lines[b].lstrip())]
    return lines[:b], lines[b + 1 : e], lines[e + 1 :], indent


def assigned_names(code: str, where: str) -> set[str]:
    """Every name the code assigns, at any depth (``x = ``, ``for x in``, ``with ... as x``, ``import x``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        raise ExerciseError(f"{where}: the marked answer is not valid Python on its own: {error}") from None
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


def placeholder(question: Question, code: str, where: str, words: dict[str, str] = EDITIONS["en"]) -> str:
    """``a = b = None  # your code here`` for the question's names the answer assigns, in ``names`` order;
    a multiple-choice question's comment lists its options' letters instead."""
    names = [name for name in question.names if name in assigned_names(code, where)]
    if not names:
        return "# " + words["here"]
    letters = [f'"{letter}"' for letter in OPTION.findall(question.prompt)]
    comment = ", ".join(letters[:-1]) + words["or"] + letters[-1] if len(letters) > 1 else words["here"]
    return " = ".join(names) + " = None  # " + comment


def build_one(solution: Path, root: Path) -> tuple[nbformat.NotebookNode, dict[str, str]]:
    """The blank notebook generated from ``solution``, and its ``{qid: solution text}``."""
    notebook = nbformat.read(solution, as_version=4)
    words = EDITIONS[edition(solution, root)]
    lesson = importlib.import_module(f"lesson_utils.exercises.lesson{solution.name[:2]}")
    blank = copy.deepcopy(notebook)
    blank.metadata.pop("widgets", None)  # widget state is an output of running it
    answers: dict[int, str] = {}
    for index, cell in enumerate(notebook.cells[1:], start=1):
        if cell.cell_type == "code" and (found := CHECK.search(cell.source)):
            answers[index - 1] = found.group(1)
    solutions = {}
    for index, cell in enumerate(blank.cells):
        where = f"{solution.relative_to(root)}, cell {index}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
        if index not in answers:
            if BEGIN in cell.source or END in cell.source:
                raise ExerciseError(f"{where}: solution markers outside an answer cell (one before `ex.qK.check()`)")
            continue
        if cell.cell_type != "code":
            raise ExerciseError(f"{where}: the cell before `ex.{answers[index]}.check()` must be a code cell")
        question = getattr(lesson, answers[index], None)
        if not isinstance(question, Question):
            raise ExerciseError(f"{where}: {lesson.__name__} has no question {answers[index]}")
        before, region, after, indent = split_region(cell.source, where)
        code = textwrap.dedent("\n".join(region)).strip("\n")
        solutions[question.qid] = code
        cell.source = "\n".join([*before, indent + placeholder(question, code, where, words), *after])
    first = next(cell for cell in blank.cells if cell.cell_type == "markdown")
    if not first.source.startswith(words["solutions"]):
        raise ExerciseError(f"{solution.relative_to(root)}: the first markdown cell must start `{words['solutions']}`")
    first.source = first.source.replace(words["solutions"], words["exercises"], 1).replace("](../../", "](../")
    missing = sorted({q.qid for q in vars(lesson).values() if isinstance(q, Question)} - set(solutions))
    if missing:
        raise ExerciseError(f"{solution.relative_to(root)}: no answer cell for {', '.join(missing)}")
    return blank, solutions


def build(root: Path = ROOT) -> dict[Path, nbformat.NotebookNode | str]:
    """What the solution notebooks generate, by path: every blank notebook, and solutions.json's text."""
    generated: dict[Path, nbformat.NotebookNode | str] = {}
    solutions: dict[str, dict[str, str]] = {language: {} for language in EDITIONS}
    for solution in solution_notebooks(root):
        generated[blank_path(solution)], found = build_one(solution, root)
        solutions[edition(solution, root)].update(found)
    generated[root / SOLUTIONS_JSON] = json.dumps(solutions, indent=2, ensure_ascii=False) + "\n"
    return generated


def differs(path: Path, generated: nbformat.NotebookNode | str) -> bool:
    """Whether the stored ``path`` is not ``generated``; for a notebook, only each cell's type, source and
    tags count (not outputs, execution counts or other metadata)."""
    if not path.is_file():
        return True
    if isinstance(generated, str):
        return path.read_text(encoding="utf-8") != generated

    def cells(notebook: nbformat.NotebookNode) -> list[tuple]:
        return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in notebook.cells]

    return cells(nbformat.read(path, as_version=4)) != cells(generated)


def stale(root: Path = ROOT, write: bool = False) -> list[Path]:
    """The stored files that differ from what the solution notebooks generate; ``write`` rewrites them
    (notebooks with cleared outputs, to be executed next)."""
    generated = build(root)
    changed = [path for path, content in generated.items() if differs(path, content)]
    for path in changed if write else ():
        if isinstance(generated[path], str):
            path.write_text(generated[path], encoding="utf-8")
        else:
            nbformat.write(generated[path], path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; fail if a stored file is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    args.root = args.root.resolve()
    try:
        changed = stale(args.root, write=not args.check)
    except ExerciseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in changed:
        action = "differs from what the solution notebooks generate" if args.check else "written"
        print(f"{path.relative_to(args.root)}: {action}", file=sys.stderr if args.check else sys.stdout)
    if args.check and changed:
        print("run `make exercises` (edit the solution notebooks only)", file=sys.stderr)
        return 1
    if changed and not args.check:
        print("now execute them: scripts/execute_notebooks.py (`make exercises` does both)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
