"""How long the grader takes for a class: N copies of a lesson's worked solution, graded with -j J.

    python scripts/measure_grading.py                          # 30 lesson-03 notebooks, -j 2 (issue 26: < 2 min)
    python scripts/measure_grading.py --baseline HEAD~1        # the same class, also graded by an older grader
    python scripts/measure_grading.py --count 10 --jobs 1 --lesson 01 [--sandbox]

A measurement, not a test: it prints the wall-clock time, the time per notebook, the CPU time the
grader and every process it started used (kernels included: what a class costs, however busy the
machine is; on an idle machine with ``-j J`` and J CPUs, the wall-clock time is about the CPU time
over J) and the machine's load average before and after each run (a loaded machine is slower), and
fails only if a notebook is not graded 100% (then the numbers would mean nothing). Each grader runs
from a copy of its package (the working tree's, or ``git archive`` of ``--baseline``) in a process
of its own, one after the other on the same class: a measurement never touches the checkout (the
grader puts back files that change under the package it runs from).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = {"01": "01_weights", "02": "02_whole_model", "03": "03_checkpoints", "04": "04_warm_start",
         "05": "05_big_models", "06": "06_distributed", "07": "07_devices_optimizers", "08": "08_sharing",
         "09": "09_long_runs"}  # fmt: skip


def load() -> str:
    """The 1, 5 and 15 minute load averages and the number of CPUs, as ``uptime`` would say them."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def package_copy(into: Path, ref: str | None) -> Path:
    """A folder holding ``lesson_utils`` as the working tree has it (``ref`` None) or as git's ``ref`` does."""
    into.mkdir(parents=True)
    if ref is None:
        shutil.copytree(ROOT / "lesson_utils", into / "lesson_utils", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = subprocess.run(["git", "archive", ref, "lesson_utils"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def measure(package: Path, args: argparse.Namespace, tmp: Path, label: str) -> dict:
    """Grade the class with the grader in ``package``, in a process of its own; its numbers."""
    out = tmp / f"grades-{label}" / "grades.csv"
    command = [sys.executable, __file__, "--inner", str(tmp / "class"), str(out), "--lesson", args.lesson,
               "--jobs", str(args.jobs)] + (["--sandbox"] if args.sandbox else [])  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(package), os.environ.get("PYTHONPATH")]))}
    before = load()
    finished = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True)
    after = load()
    if finished.returncode != 0:
        sys.exit(f"the {label} grader failed:\n{finished.stderr[-3000:]}")
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    return {**result, "label": label, "before": before, "after": after}


def inner(argv: list[str]) -> None:
    """Run in the measuring process: grade, print the seconds and every notebook's percent as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--lesson", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--sandbox", action="store_true")
    args = parser.parse_args(argv)
    from lesson_utils.classroom.grade import grade_folder

    sandbox = {"memory": 8 * 2**30, "hide": [str(args.folder), str(args.out.parent)]} if args.sandbox else None
    start, used = time.perf_counter(), cpu_seconds()
    grade_folder(args.folder, args.out, lesson=args.lesson, jobs=args.jobs, sandbox=sandbox)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - used
    with open(args.out, newline="", encoding="utf-8-sig") as f:
        percents = [row["percent"] for row in csv.DictReader(f)]
    print(json.dumps({"seconds": seconds, "cpu": cpu, "percents": percents}))


def cpu_seconds() -> float:
    """CPU time (user and system) of this process and of every process it started and waited for, theirs
    included (the workers reap their kernels): what a class costs, whatever else the machine runs."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--inner"]:
        inner(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--lesson", default="03", choices=sorted(NAMES))
    parser.add_argument("--sandbox", action="store_true")
    parser.add_argument("--baseline", metavar="REF", help="also measure the grader of this git commit, first")
    args = parser.parse_args(argv)
    solution = ROOT / "notebooks" / "exercises" / "solutions" / f"{NAMES[args.lesson]}_solutions.ipynb"
    with tempfile.TemporaryDirectory(prefix="measure-grading-") as name:
        tmp = Path(name)
        (tmp / "class").mkdir()
        for index in range(args.count):
            shutil.copy(solution, tmp / "class" / f"student{index:03d}.ipynb")
        runs = []
        if args.baseline:
            runs.append(measure(package_copy(tmp / "baseline", args.baseline), args, tmp, f"baseline {args.baseline}"))
        runs.append(measure(package_copy(tmp / "current", None), args, tmp, "working tree"))
    flags = f"-j {args.jobs}{' --sandbox' if args.sandbox else ''}"
    for run in runs:
        per, cpu = run["seconds"] / args.count, run["cpu"] / args.count
        print(f"{run['label']}: {args.count} lesson-{args.lesson} notebooks, {flags}: {run['seconds']:.0f} s in all, "
              f"{per:.1f} s per notebook; CPU {run['cpu']:.0f} s, {cpu:.1f} s per notebook "
              f"({run['before']} before, {run['after']} after)")  # fmt: skip
    for run in runs:
        if run["percents"] != ["100.0"] * args.count:
            sys.exit(f"{run['label']}: not every copy of the solution was graded 100%: {run['percents']}")


if __name__ == "__main__":
    main()
