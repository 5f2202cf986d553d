"""Execute notebooks top to bottom, each in a fresh kernel, and store or time the result.

    python scripts/execute_notebooks.py                  # re-execute every notebook in place
    python scripts/execute_notebooks.py notebooks/01_weights_state_dict.ipynb
    python scripts/execute_notebooks.py --time           # only measure: a table of seconds per notebook
    python scripts/execute_notebooks.py --no-write --keep-switches NB   # run with the opt-in switches as set
    python scripts/execute_notebooks.py --keep-going --out build/executed  # e.g. on a GPU machine: run all,
                                       # store nothing in place, write each executed copy and a summary there

Stored outputs must hold on every machine, so unless ``--keep-switches`` is given the
opt-in switches (cached ImageNet weights, CIFAR-10) are turned off while executing: the
default, offline path is what gets stored. Kernels start under the numeric profile
(``lesson_utils.numerics``: one thread, pinned kernels, as under the tests), whatever the CPU;
storing outputs where the profile cannot hold is refused (``--time`` and ``--out`` still run).
A cell that raises fails the run, except the
cells tagged ``raises-exception`` (they show an error on purpose).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from lesson_utils import numerics
from lesson_utils.notebooks import NotebookClient  # nbclient, with a lost wake-up fixed

ROOT = Path(__file__).resolve().parent.parent
OPT_IN = ("LESSON_PRETRAINED", "LESSON_DATA")
LIMIT_SECONDS = 60  # each notebook must run top to bottom in a fresh kernel in under a minute here


def all_notebooks() -> list[Path]:
    """Every notebook under notebooks/, in the order a student meets them."""
    return sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def execute(path: Path, timeout: int = 600) -> tuple[nbformat.NotebookNode, float]:
    """Run ``path`` in a fresh kernel started in its folder; the executed notebook and the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return notebook, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook under notebooks/")
    parser.add_argument("--time", action="store_true", help="measure only: run each notebook, write nothing")
    parser.add_argument("--no-write", action="store_true", help="run each notebook, but do not store the outputs")
    parser.add_argument("--keep-going", action="store_true", help="on a failing notebook, report it and go on")
    parser.add_argument("--out", type=Path, help="write each executed copy here instead of in place")
    parser.add_argument("--keep-switches", action="store_true", help=f"leave {', '.join(OPT_IN)} as they are set")
    args = parser.parse_args(argv)
    if not args.keep_switches:
        for name in OPT_IN:
            os.environ.pop(name, None)
    # The numeric profile, as the tests run them (conftest.py): the stored outputs must not depend
    # on this machine's cores or instruction set (torch's sums, and so lesson 04's accuracies, do).
    os.environ.update(numerics.numeric_environment())
    gaps = numerics.why_not_pinned()
    if gaps and not (args.time or args.no_write or args.out):
        sys.exit(
            "refusing to store outputs: the numeric profile cannot hold here ("
            + "; ".join(gaps)
            + "), so the stored numbers would not reproduce elsewhere. Use --out or --no-write."
        )
    paths = [p.resolve() for p in args.notebooks] or all_notebooks()
    seconds, failed = {}, {}
    for path in paths:
        try:
            notebook, seconds[path] = execute(path)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
            if not args.keep_going:
                raise
            failed[path] = str(error).strip().splitlines()[-1]
            print(f"{path.relative_to(ROOT)}: FAILED: {failed[path]}", flush=True)
            continue
        if args.out:
            target = args.out / path.relative_to(ROOT / "notebooks")
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, target)
        elif not (args.time or args.no_write):
            nbformat.write(notebook, path)
        print(f"{path.relative_to(ROOT)}: executed in {seconds[path]:.1f} s", flush=True)
    if failed:
        print(f"\n{len(failed)} of {len(paths)} notebooks failed:", *map(str, failed), sep="\n  ")
        sys.exit(1)
    if args.time:
        width = max(len(str(p.relative_to(ROOT))) for p in paths)
        print(f"\n{'notebook':<{width}}  seconds  (fresh kernel each; limit {LIMIT_SECONDS} s)")
        for path, s in seconds.items():
            print(f"{str(path.relative_to(ROOT)):<{width}}  {s:7.1f}{'  OVER' if s > LIMIT_SECONDS else ''}")
        print(f"{'total':<{width}}  {sum(seconds.values()):7.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
