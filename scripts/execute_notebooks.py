"""Re-execute notebooks in place so their stored outputs are what they really print.

    python scripts/execute_notebooks.py                 # every notebook under notebooks/
    python scripts/execute_notebooks.py notebooks/01_weights_state_dict.ipynb

Stored outputs must hold on every machine, so the opt-in switches (cached ImageNet
weights, CIFAR-10) are turned off while executing: the default, offline path is stored.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
OPT_IN = ("LESSON_PRETRAINED", "LESSON_DATA")


def execute(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    nbformat.write(notebook, path)
    print(f"{path.relative_to(ROOT)}: executed in {time.perf_counter() - start:.1f} s")


def main(args: list[str]) -> None:
    for name in OPT_IN:
        os.environ.pop(name, None)
    paths = [Path(a).resolve() for a in args] or sorted((ROOT / "notebooks").rglob("*.ipynb"))
    for path in paths:
        if ".ipynb_checkpoints" not in path.parts:
            execute(path)


if __name__ == "__main__":
    main(sys.argv[1:])
