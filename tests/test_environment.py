"""environment.yml (conda/Binder) and pyproject.toml (pip) must not drift apart."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_TO_PIP = {"pytorch-cpu": "torch", "python-xxhash": "xxhash"}  # conda-forge's names
NOT_PACKAGES = {"python", "pip"}


def pip_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][0-9a-z.]*)", requirement).groups()
        pins[name.lower()] = version
    return pins


def conda_pins() -> tuple[dict[str, str], list]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins, pip_section = {}, []
    for dependency in env["dependencies"]:
        if isinstance(dependency, dict):
            pip_section = dependency["pip"]
            continue
        name, _, version = dependency.partition("=")
        if name not in NOT_PACKAGES:
            pins[CONDA_TO_PIP.get(name, name)] = version
    return pins, pip_section


def test_every_pyproject_requirement_is_pinned_exactly():
    assert pip_pins()["torch"] == "2.14.1" and pip_pins()["torchvision"] == "0.29.1"


def test_environment_yml_names_the_same_packages_and_versions():
    conda, _ = conda_pins()
    assert conda == pip_pins()


def test_environment_yml_uses_conda_forge_only_and_installs_lesson_utils():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    _, pip_section = conda_pins()
    assert pip_section == ["-e ."]


def test_the_project_venv_has_no_rfc3987_syntax():
    """scripts/setup.sh removes it: it builds a parser in every process that imports nbformat (0.9 CPU-s
    each, the grader's worker of every notebook). Only .venv is checked: a conda environment keeps it."""
    import importlib.util
    import sys

    import pytest

    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("not the project's .venv (scripts/setup.sh made that one)")
    assert importlib.util.find_spec("rfc3987_syntax") is None, "run scripts/setup.sh (make setup) again"
