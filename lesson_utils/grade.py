"""Grade a folder of submitted exercise notebooks into a CSV.

    python -m lesson_utils.grade SUBMISSIONS_DIR --out grades.csv [--timeout 120]

Each notebook runs in its own fresh kernel, in a temporary copy of its folder, with a time
limit for the whole notebook. Afterwards the grader asks the kernel for every question's
last ``check()`` result. A submission that is not a notebook, is empty, raises, crashes its
kernel or runs past the limit still gets a row saying why; the run always goes on.

WARNING: this executes the students' code as the user running the grader, with that user's
files and network. Run it in a container or a throwaway account (see the README).

Example:
    >>> grade_notebook(Path("no/such/file.ipynb"), timeout=5)["status"]
    'not a notebook'
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient.exceptions import DeadKernelError
from tqdm.auto import tqdm

from lesson_utils.notebooks import NotebookClient  # nbclient, with a lost wake-up fixed
from lesson_utils.processes import RESULT_DIR_ENV

# The last cell the grader adds: the questions' results, written to the file the grader names.
COLLECT = (
    "import json as _json\n"
    "from lesson_utils.exercises.core import results_json as _results_json\n"
    "from lesson_utils.processes import write_result as _write_result\n"
    "_write_result(_json.loads(_results_json()), name='grader')"
)


def _errors(notebook: nbformat.NotebookNode) -> list[str]:
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {index} raised {output['ename']}: {output['evalue']}"[:300])
    return found


def _collected(result_dir: Path) -> list[dict]:
    path = result_dir / "grader.json"
    return json.loads(path.read_text()) if path.is_file() else []


def grade_notebook(path: Path, timeout: float) -> dict:
    """Run one submission; a dict with file, status, reason and each question's result."""
    row: dict = {"file": path.name, "status": "graded", "reason": "", "results": []}
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # not JSON, not a notebook, unreadable, missing
        return {**row, "status": "not a notebook", "reason": f"{type(error).__name__}: {str(error)[:200]}"}
    if not any(cell.cell_type == "code" and cell.source.strip() for cell in notebook.cells):
        return {**row, "status": "empty", "reason": "the notebook has no code"}
    notebook.cells.append(nbformat.v4.new_code_cell(COLLECT))
    with tempfile.TemporaryDirectory(prefix="grade-") as workdir, tempfile.TemporaryDirectory() as result_dir:
        for sibling in path.parent.iterdir():  # data files next to the notebook, as the student had them
            if sibling.is_file() and sibling.suffix != ".ipynb":
                shutil.copy(sibling, workdir)
        client = NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": workdir}},
        )
        start = time.monotonic()
        try:
            kernel_env = {**os.environ, RESULT_DIR_ENV: result_dir}
            asyncio.run(asyncio.wait_for(client.async_execute(env=kernel_env), timeout=timeout))
        except Exception as error:
            if time.monotonic() - start >= timeout * 0.95 or isinstance(error, TimeoutError):
                # the limit was hit (cancelling a run can surface as other errors from the kernel's sockets)
                return {**row, "status": "timed out", "reason": f"still running after {timeout:g} s; stopped"}
            if isinstance(error, DeadKernelError):
                return {**row, "status": "crashed", "reason": f"the kernel died: {str(error)[:200]}"}
            return {**row, "status": "crashed", "reason": f"{type(error).__name__}: {str(error)[:200]}"}
        row["results"] = _collected(Path(result_dir))
    errors = _errors(notebook)
    if errors:
        row.update(status="ran with errors", reason="; ".join(errors))
    return row


def grade_folder(folder: Path, out: Path, timeout: float = 120) -> list[dict]:
    """Grade every file in ``folder`` (sorted) and write ``out`` as CSV; returns the rows."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of submissions")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    rows = [grade_notebook(path, timeout) for path in tqdm(files, desc="grading", unit="notebook")]
    questions = sorted({result["question"] for row in rows for result in row["results"]})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "status", "reason", "correct"] + [c for q in questions for c in (q, f"{q} message")])
        for row in rows:
            by_question = {result["question"]: result for result in row["results"]}
            correct = sum(result["status"] == "correct" for result in row["results"])
            cells = []
            for q in questions:
                result = by_question.get(q, {"status": "not run", "message": ""})
                cells += [result["status"], result["message"]]
            writer.writerow([row["file"], row["status"], row["reason"], correct] + cells)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lesson_utils.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, help="a folder of submitted .ipynb files")
    parser.add_argument("--out", type=Path, default=Path("grades.csv"), help="the CSV to write (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per notebook (default: %(default)s)")
    args = parser.parse_args(argv)
    rows = grade_folder(args.submissions, args.out, args.timeout)
    print(f"{len(rows)} submissions graded into {args.out}")


if __name__ == "__main__":
    main()
