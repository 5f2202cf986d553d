"""How long the grader takes for a class: N copies of a lesson's worked solution, graded with -j J.

    python scripts/measure_grading.py                 # 30 lesson-03 notebooks, -j 2 (issue 17's target: < 3 min)
    python scripts/measure_grading.py --count 10 --jobs 1 --lesson 01 [--sandbox]

A measurement, not a test: it prints the wall-clock time and the time per notebook, and
fails only if a notebook is not graded 100% (then the numbers would mean nothing).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lesson_utils.classroom.grade import grade_folder

ROOT = Path(__file__).resolve().parent.parent
NAMES = {"01": "01_weights", "03": "03_checkpoints"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--lesson", default="03", choices=sorted(NAMES))
    parser.add_argument("--sandbox", action="store_true")
    args = parser.parse_args(argv)
    solution = ROOT / "notebooks" / "exercises" / "solutions" / f"{NAMES[args.lesson]}_solutions.ipynb"
    with tempfile.TemporaryDirectory(prefix="measure-grading-") as tmp:
        folder = Path(tmp) / "class"
        folder.mkdir()
        for index in range(args.count):
            shutil.copy(solution, folder / f"student{index:03d}.ipynb")
        out = Path(tmp) / "grades" / "grades.csv"
        sandbox = {"memory": 8 * 2**30, "hide": [str(folder), str(out.parent)]} if args.sandbox else None
        start = time.perf_counter()
        grade_folder(folder, out, lesson=args.lesson, jobs=args.jobs, sandbox=sandbox)
        seconds = time.perf_counter() - start
        with open(out, newline="", encoding="utf-8-sig") as f:
            percents = [row["percent"] for row in csv.DictReader(f)]
    print(f"{args.count} lesson-{args.lesson} notebooks, -j {args.jobs}{' --sandbox' if args.sandbox else ''}: "
          f"{seconds:.0f} s in all, {seconds / args.count:.1f} s per notebook")  # fmt: skip
    if percents != ["100.0"] * args.count:
        sys.exit(f"not every copy of the solution was graded 100%: {percents}")


if __name__ == "__main__":
    main(sys.argv[1:])
