"""The opt-in switches, used for real: every lesson that reads one runs without an error.

``LESSON_DATA=cifar10`` reads CIFAR-10 from disk and ``LESSON_PRETRAINED=1`` reads VGG16's
ImageNet weights from torch's hub cache. Neither can be downloaded here, so this test
writes both in their real on-disk formats: a ``cifar-10-batches-py`` folder (pickled
batches of uint8 rows, ``batches.meta``) whose images are OfflineShapes drawings (so the
lessons' "it learns" checks still hold), and a ``vgg16-397923af.pth`` file of the right
shapes in ``$TORCH_HOME/hub/checkpoints``. Then it executes the lessons with both switches
on, in fresh kernels, comparing no outputs and allowing no error: each lesson's cells that a
switch reaches, and the cells those need (tests/notebook_cells.py); the others compute the same
with the switches off, and nbval ran them.

torchvision's ``CIFAR10`` checks each file's md5 against the real download, which a
fabricated folder cannot match; the kernels therefore start with a ``sitecustomize`` that
skips that one comparison (the files must still exist). Everything after it, from ``CIFAR10.__getitem__``
through the lessons' data loaders to the model, is the code a student with CIFAR-10 runs.
"""

from __future__ import annotations

import ast
import os
import pickle
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbclient.exceptions import CellExecutionError
from notebook_cells import cells_reached_from

from lesson_utils.data import CLASSES, DATA_ENV, OfflineShapes
from lesson_utils.models import PRETRAINED_ENV
from lesson_utils.notebooks import NotebookClient  # nbclient, with a lost wake-up fixed

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
# The lesson_utils functions that read a switch, directly or through a helper.
READERS = {"load_datasets", "vgg16", "env_report"}
ENV_NAMES = ("DATA_ENV", "PRETRAINED_ENV")

SKIP_MD5 = """\
# Written by tests/test_opt_in.py: this CIFAR-10 folder is fabricated, so its md5s differ.
# The files must still exist; only their md5 is not compared.
import os

import torchvision.datasets.cifar as cifar

cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)
"""


def write_cifar10(root: Path, n_train: int = 2000, n_test: int = 500) -> None:
    """A ``cifar-10-batches-py`` folder in CIFAR-10's format, holding OfflineShapes images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(dataset: OfflineShapes, part: slice) -> dict:
        images = ((dataset.images[part].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        # str keys: the real files come from python 2, whose keys torchvision reads back as str
        return {"data": images.reshape(len(images), -1).numpy(), "labels": dataset.labels[part].tolist()}

    train, test = OfflineShapes(n_train, seed=0), OfflineShapes(n_test, seed=1)
    step = n_train // 5
    for i in range(5):
        with open(folder / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump(batch(train, slice(i * step, (i + 1) * step)), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(test, slice(None)), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CLASSES), "num_cases_per_batch": step}, f)


def write_vgg16_hub_file(torch_home: Path) -> Path:
    """VGG16's ImageNet file name in the hub cache, holding a state_dict of the right shapes.

    Its biases are not zero, as real ImageNet weights' are not: a lesson that takes
    torchvision's zero-initialised biases for granted fails here as it would with real ones.
    """
    import torchvision

    path = torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"
    path.parent.mkdir(parents=True)
    state = torchvision.models.vgg16(weights=None).state_dict()
    for name, tensor in state.items():
        if name.endswith("bias"):  # trained biases are not zero, unlike torchvision's initial ones
            tensor.normal_(0, 0.01)
    torch.save(state, path)
    return path


def readers_used(path: Path) -> set[str]:
    """The switch-reading lesson_utils names that a notebook's code imports."""
    names = set()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lesson_utils"):
                names |= {alias.name for alias in node.names}
    return names & READERS


LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
USING_SWITCHES = [p for p in LESSONS if readers_used(p)]


@pytest.fixture(scope="module")
def switched_on(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("opt-in")
    write_cifar10(base / "data")
    write_vgg16_hub_file(base / "torch_home")
    (base / "shim").mkdir()
    (base / "shim" / "sitecustomize.py").write_text(SKIP_MD5)
    return {
        DATA_ENV: "cifar10",
        "LESSON_CIFAR10_DIR": str(base / "data"),
        PRETRAINED_ENV: "1",
        "TORCH_HOME": str(base / "torch_home"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(base / "shim"), os.environ.get("PYTHONPATH")])),
    }


def test_the_fabricated_files_are_what_the_lessons_read(switched_on: dict[str, str]) -> None:
    code = (
        "from lesson_utils import load_datasets, vgg16\n"
        "train, test = load_datasets()\n"
        "print(type(train).__name__, len(train), len(test), tuple(train[0][0].shape), type(train[0][1]).__name__)\n"
        "model = vgg16()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **switched_on}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CIFAR10 2000 500 (3, 32, 32) int" in result.stdout
    assert "vgg16: ImageNet weights from" in result.stdout


def test_every_switch_reader_is_covered() -> None:
    assert {p.name[:2] for p in USING_SWITCHES} >= {"00", "01", "03"}, [p.name for p in USING_SWITCHES]
    # A new lesson_utils function reading a switch must be added to READERS.
    sources = {p.stem: p.read_text() for p in (ROOT / "lesson_utils").glob("*.py")}
    reading = {stem for stem, text in sources.items() if any(f"os.environ.get({n}" in text for n in ENV_NAMES)}
    assert reading == {"data", "models"}, reading


def switched_cells(path: Path) -> nbformat.NotebookNode:
    """The notebook with only the code cells a switch reaches (and those they need, and the last one),
    and none of its outputs: the cells left out compute the same with the switches on or off, and
    nbval ran them (lesson 03's training fingerprints in new processes, which read no switch)."""
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    keep = cells_reached_from([cell.source for cell in code], READERS)
    notebook.cells = [code[i] for i in keep]
    for cell in notebook.cells:
        cell.outputs, cell.execution_count = [], None
    return notebook


@pytest.mark.parametrize("path", USING_SWITCHES, ids=[p.name for p in USING_SWITCHES])
def test_lesson_runs_with_both_switches_on(path: Path, switched_on: dict[str, str]) -> None:
    notebook = switched_cells(path)
    seen = (  # the kernel had the switches: the lesson read CIFAR-10's files
        "import os\nfrom lesson_utils import load_datasets\n"
        f"assert os.environ[{PRETRAINED_ENV!r}] == '1' and type(load_datasets()[0]).__name__ == 'CIFAR10'"
    )
    notebook.cells.append(nbformat.v4.new_code_cell(seen))
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:  # a fresh kernel with the switches on; an error in a cell not tagged raises-exception fails
        client.execute(env={**os.environ, **switched_on})
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed with the switches on:\n{str(error)[-4000:]}")


def test_the_cells_a_switch_reaches() -> None:
    sources = [
        "import os\nfrom lesson_utils import load_datasets",  # 0: the preamble
        "workdir = make_folder()",  # 1: needed by 2
        "train_set = load_datasets(workdir)",  # 2: reads the switch
        "n = len(train_set)",  # 3: reads what 2 made
        "def loss():\n    return n * 2",  # 4: reads n when it is called
        "fingerprints = run_in_new_processes(os.environ)",  # 5: reads nothing the switch made
        "print(loss())",  # 6: calls a reached function
        "assert fingerprints",  # 7: reads only what 5 made
        "remove(workdir)",  # 8: the last cell
    ]
    assert cells_reached_from(sources, {"load_datasets"}) == [0, 1, 2, 3, 4, 6, 8]
    # a reached cell that reads what an unreached one made needs it
    assert cells_reached_from(sources[:7] + ["print(n, fingerprints)"], {"load_datasets"}) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert [c.source for c in switched_cells(ROOT / "notebooks" / "03_checkpoints_resume.ipynb").cells].count(
        'shutil.rmtree(workdir)\nprint("cleaned up")'
    ) == 1


def test_cifar_format_round_trip(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_train=50, n_test=10)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        batch = pickle.load(f)
    assert batch["data"].dtype == np.uint8 and batch["data"].shape == (10, 3072)
