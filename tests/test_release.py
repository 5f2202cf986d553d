"""Licenses, citation and version: present, and saying the same thing everywhere.

The version lives in pyproject.toml only; CHANGELOG.md, CITATION.cff, the stored output of
00_start_here.ipynb and the installed ``lesson_utils.__version__`` must agree with it. The
checks of scripts/release_check.py are fed fabricated mismatches to show that they catch them.
"""

from __future__ import annotations

import doctest
import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.licenses import canonicalize_license_expression

import lesson_utils

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("release_check", ROOT / "scripts" / "release_check.py")
release_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release_check)

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
CHANGELOG = (ROOT / "CHANGELOG.md").read_text()
CITATION_TEXT = (ROOT / "CITATION.cff").read_text()
START = nbformat.read(ROOT / release_check.START_NOTEBOOK, as_version=4)


# The repository as it is ----------------------------------------------------------------------


def test_license_files_exist_and_name_their_licenses():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    docs = " ".join((ROOT / "LICENSE-docs.md").read_text().split())
    assert "Creative Commons Attribution 4.0 International" in docs
    assert "https://creativecommons.org/licenses/by/4.0/legalcode" in docs


def test_pyproject_license_metadata_follows_pep_639():
    assert PROJECT["license"] == "MIT AND CC-BY-4.0"
    assert canonicalize_license_expression(PROJECT["license"]) == PROJECT["license"]  # valid SPDX
    assert PROJECT["license-files"] == ["LICENSE", "LICENSE-docs.md"]
    assert all((ROOT / name).is_file() for name in PROJECT["license-files"])
    assert not [c for c in PROJECT.get("classifiers", []) if c.startswith("License ::")]  # PEP 639 forbids both


def test_readme_states_both_licenses():
    readme = (ROOT / "README.md").read_text()
    assert "MIT" in readme and "CC BY 4.0" in readme and "CITATION.cff" in readme


def test_citation_cff_agrees_with_pyproject_and_changelog():
    citation = yaml.safe_load(CITATION_TEXT)
    assert citation["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= citation.keys()
    assert citation["license"] == ["MIT", "CC-BY-4.0"]
    assert str(citation["version"]) == VERSION
    released = release_check.released_part(CHANGELOG)  # work in progress sits under [Unreleased]
    assert release_check.changelog_top(released) == (VERSION, str(citation["date-released"]))


def test_the_start_notebook_shows_the_version_in_a_compared_output():
    assert release_check.shown_versions(START) == [VERSION]
    (cell,) = [c for c in START.cells if c.cell_type == "code" and "collection version" in c.source]
    assert "nbval-ignore-output" not in cell.metadata.get("tags", []), "nbval must compare the version cell's output"
    assert "env_report" not in cell.source


def test_lesson_utils_version_and_env_report_agree_with_pyproject(capsys):
    assert lesson_utils.__version__ == VERSION, "the installed metadata is stale: run `make setup`"
    assert "__version__" in dir(lesson_utils)
    report = lesson_utils.env_report()
    assert report["lesson-utils"] == VERSION
    assert re.search(rf"^lesson-utils +{re.escape(VERSION)}$", capsys.readouterr().out, re.MULTILINE)


def test_a_checkout_used_without_installing_still_knows_its_version(monkeypatch):
    # Found on a GPU machine where the checkout was only on PYTHONPATH: 00's first cell failed.
    import importlib.metadata

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert lesson_utils._version() == VERSION


def test_release_checks_pass_on_the_repository_apart_from_tags():
    released = release_check.released_part(CHANGELOG)  # before a release, [Unreleased] becomes its entry
    date = release_check.changelog_top(released)[1]
    assert release_check.check_changelog(VERSION, released) == []
    assert release_check.check_citation(VERSION, CITATION_TEXT, date) == []
    assert release_check.check_notebook(VERSION, START) == []  # tags: after a release v<VERSION> exists


def test_release_check_doctests():
    assert doctest.testmod(release_check).failed == 0


@pytest.mark.slow
def test_wheel_carries_the_license_metadata(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", tmp_path, ROOT],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("lesson_utils-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    metadata = zipfile.ZipFile(wheel).read(f"lesson_utils-{VERSION}.dist-info/METADATA").decode()
    assert "License-Expression: MIT AND CC-BY-4.0" in metadata.splitlines()
    assert {"License-File: LICENSE", "License-File: LICENSE-docs.md"} <= set(metadata.splitlines())
    assert f"lesson_utils-{VERSION}.dist-info/licenses/LICENSE-docs.md" in names


# Fabricated mismatches: a repository at 0.2.0 whose other files still say 0.1.0 ------------

OLD_CHANGELOG = "# Changelog\n\n## [0.1.0] - 2026-11-29\n\nThe first release.\n"
OLD_CITATION = 'cff-version: 1.2.0\ntitle: x\nversion: "0.1.0"\ndate-released: "2026-11-29"\n'


def notebook_showing(*texts: str) -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_code_cell("print(...)") for _ in texts]
    for cell, text in zip(cells, texts, strict=True):
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    return nbformat.v4.new_notebook(cells=cells)


def test_check_changelog_reports_a_wrong_missing_or_undated_entry():
    (problem,) = release_check.check_changelog("0.2.0", OLD_CHANGELOG)
    assert "top entry is '0.1.0', pyproject.toml says '0.2.0'" in problem
    assert "no entry" in release_check.check_changelog("0.2.0", "# Changelog\n\nnothing yet\n")[0]
    unreleased = "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2027-01-05\n"
    assert "top entry is 'Unreleased'" in release_check.check_changelog("0.2.0", unreleased)[0]
    assert "no valid date" in release_check.check_changelog("0.2.0", "## [0.2.0] - 2027-13-40\n")[0]
    assert "no valid date" in release_check.check_changelog("0.2.0", "## [0.2.0]\n")[0]
    assert release_check.check_changelog("0.2.0", "## [0.2.0] - 2027-01-05\n" + OLD_CHANGELOG) == []


def test_check_citation_reports_a_wrong_version_or_date():
    (problem,) = release_check.check_citation("0.2.0", OLD_CITATION)
    assert "CITATION.cff's version is '0.1.0', pyproject.toml says '0.2.0'" in problem
    (problem,) = release_check.check_citation("0.1.0", OLD_CITATION, "2027-01-05")
    assert "date-released is '2026-11-29', CHANGELOG.md's entry says '2027-01-05'" in problem
    assert len(release_check.check_citation("0.2.0", OLD_CITATION, "2027-01-05")) == 2
    assert "not valid YAML" in release_check.check_citation("0.2.0", "version: [")[0]
    unquoted = "version: 0.2.0\ndate-released: 2027-01-05\n"  # a YAML date reads as the same text
    assert release_check.check_citation("0.2.0", unquoted, "2027-01-05") == []


def test_check_notebook_reports_a_stale_or_missing_version_output():
    (problem,) = release_check.check_notebook("0.2.0", notebook_showing("collection version 0.1.0\n"))
    assert "shows collection version 0.1.0, pyproject.toml says '0.2.0'" in problem
    assert "make notebooks" in problem
    (problem,) = release_check.check_notebook("0.2.0", notebook_showing("6 lessons found next to this notebook\n"))
    assert "no 'collection version ...' output" in problem
    both = notebook_showing("collection version 0.2.0\n", "collection version 0.1.0\n")
    assert release_check.check_notebook("0.2.0", both) != []
    assert release_check.check_notebook("0.2.0", notebook_showing("collection version 0.2.0\n")) == []


def test_check_tag_reports_an_existing_release_tag():
    assert "git tag v0.1.0 exists already" in release_check.check_tag("0.1.0", ["v0.0.9", "v0.1.0"])[0]
    assert release_check.check_tag("0.1.1", ["v0.0.9", "v0.1.0", "0.1.1"]) == []


def test_main_fails_on_a_fabricated_repository_with_every_mismatch(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0.2.0"\n')
    (tmp_path / "CHANGELOG.md").write_text(OLD_CHANGELOG)
    (tmp_path / "CITATION.cff").write_text(OLD_CITATION)
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook_showing("collection version 0.1.0\n"), tmp_path / release_check.START_NOTEBOOK)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(git + ["init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "x"], cwd=tmp_path, check=True)
    subprocess.run(git + ["tag", "v0.2.0"], cwd=tmp_path, check=True)
    monkeypatch.setattr(release_check, "ROOT", tmp_path)
    assert release_check.main(["--no-tests"]) == 1
    err = capsys.readouterr().err
    for text in ("CHANGELOG.md's top entry", "CITATION.cff's version", "00_start_here.ipynb shows", "tag v0.2.0"):
        assert text in err
    assert "0.2.0 is NOT ready (4 problem(s))" in err

    # Put right, with the tag gone, it passes (and --no-tests runs no tests).
    (tmp_path / "CHANGELOG.md").write_text("## [0.2.0] - 2027-01-05\n" + OLD_CHANGELOG)
    (tmp_path / "CITATION.cff").write_text(OLD_CITATION.replace("0.1.0", "0.2.0").replace("2026-11-29", "2027-01-05"))
    nbformat.write(notebook_showing("collection version 0.2.0\n"), tmp_path / release_check.START_NOTEBOOK)
    subprocess.run(["git", "tag", "-d", "v0.2.0"], cwd=tmp_path, check=True, capture_output=True)
    assert release_check.main(["--no-tests"]) == 0
    assert "version 0.2.0: CHANGELOG.md, CITATION.cff and 00_start_here.ipynb agree" in capsys.readouterr().out
