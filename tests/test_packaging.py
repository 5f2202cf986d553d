"""The wheel built from the project holds every module (the editable install would hide a gap)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_and_imports_every_module(tmp_path: Path) -> None:
    # Built from the files git knows (as a release is): setuptools reuses a checkout's build/lib/, which
    # once put modules moved away long ago (lesson_utils/grade.py) into the wheel beside their new home.
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             check=True, capture_output=True).stdout  # fmt: skip
    source = tmp_path / "source"
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file() and not name.startswith(("notebooks/", "docs/", "tests/")):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", tmp_path, source],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("lesson_utils-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    in_wheel = {name for name in names if name.endswith(".py")}
    in_tree = {str(p.relative_to(ROOT)) for p in (ROOT / "lesson_utils").rglob("*.py")}
    assert in_tree <= in_wheel, f"the wheel leaves out {sorted(in_tree - in_wheel)}"
    assert in_wheel <= in_tree, f"the wheel holds modules the tree does not: {sorted(in_wheel - in_tree)}"
    assert "lesson_utils/exercises/solutions.json" in names, "the wheel leaves out the exercises' solutions.json"

    # A fresh venv with the wheel, non-editable; the dependencies come from this venv's
    # site-packages through a .pth line (whose own .pth files, the editable install among
    # them, are not processed there).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", wheel], check=True, timeout=300)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = (
        "import importlib, pkgutil, lesson_utils\n"
        f"assert lesson_utils.__file__.startswith({str(venv)!r}), lesson_utils.__file__\n"
        "names = [m.name for m in pkgutil.walk_packages(lesson_utils.__path__, 'lesson_utils.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names), 'modules')\n"
    )
    result = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = len([p for p in in_tree if not p.endswith("lesson_utils/__init__.py")])
    assert result.stdout.strip() == f"{expected} modules"
