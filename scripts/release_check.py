"""Check that the collection is ready to be released as pyproject.toml's version, then run the tests.

    python scripts/release_check.py             # the checks below, then `make test`
    python scripts/release_check.py --no-tests  # the checks only (seconds)

The version lives in one place, ``[project] version`` in pyproject.toml. This fails unless
CHANGELOG.md's top entry is that version (with a valid date), CITATION.cff gives the same
version and date, notebooks/00_start_here.ipynb's stored output shows that version, and no
git tag ``vX.Y.Z`` exists for it yet. Each ``check_*`` function returns a list of problems,
empty when all is well, so the tests can feed it a fabricated mismatch.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
START_NOTEBOOK = Path("notebooks/00_start_here.ipynb")  # relative to the repository
# CHANGELOG.md's release headings: "## [0.1.0] - 2026-11-29" (the brackets are optional).
HEADING = re.compile(r"^## \[?(?P<version>[^\]\s]+)\]?(?:\s+-\s+(?P<date>\S+))?\s*$", re.MULTILINE)
# What 00_start_here.ipynb's version cell prints.
SHOWN = re.compile(r"^collection version (\S+)$", re.MULTILINE)


def pyproject_version(text: str) -> str:
    """The ``[project] version`` of a pyproject.toml's text.

    Example:
        >>> pyproject_version('[project]\\nname = "x"\\nversion = "1.2.3"\\n')
        '1.2.3'
    """
    return tomllib.loads(text)["project"]["version"]


def changelog_top(text: str) -> tuple[str, str | None] | None:
    """The (version, date) of the first ``## `` heading of a changelog, or None if it has none.

    Example:
        >>> changelog_top("# Changelog\\n\\n## [0.2.0] - 2027-01-05\\n...\\n## [0.1.0] - 2026-11-29\\n")
        ('0.2.0', '2027-01-05')
    """
    match = HEADING.search(text)
    return (match["version"], match["date"]) if match else None


def released_part(text: str) -> str:
    """The changelog without its ``## [Unreleased]`` section: what the last release said.

    Example:
        >>> released_part("# C\\n\\n## [Unreleased]\\n- new\\n\\n## [0.1.0] - 2026-11-29\\n- old\\n")
        '# C\\n\\n## [0.1.0] - 2026-11-29\\n- old\\n'
    """
    return re.sub(r"^## \[?Unreleased\]?\s*\n(?:(?!^## ).*\n?)*", "", text, flags=re.MULTILINE)


def check_changelog(version: str, text: str) -> list[str]:
    """Problems unless the changelog's top entry is ``version`` with a real date."""
    top = changelog_top(text)
    if top is None:
        return [f"CHANGELOG.md has no entry: add '## [{version}] - YYYY-MM-DD' at the top"]
    found, date = top
    if found != version:
        return [f"CHANGELOG.md's top entry is {found!r}, pyproject.toml says {version!r}: add '## [{version}] - ...'"]
    try:
        datetime.date.fromisoformat(date or "")
    except ValueError:
        return [f"CHANGELOG.md's entry for {version} has no valid date (YYYY-MM-DD): {date!r}"]
    return []


def check_citation(version: str, text: str, date: str | None = None) -> list[str]:
    """Problems unless CITATION.cff gives ``version`` (and ``date``, when given, as date-released)."""
    try:
        citation = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return [f"CITATION.cff is not valid YAML: {error}"]
    if not isinstance(citation, dict):
        return ["CITATION.cff should be a YAML mapping"]
    problems = []
    found = str(citation.get("version"))
    if found != version:
        problems.append(f"CITATION.cff's version is {found!r}, pyproject.toml says {version!r}")
    released = str(citation.get("date-released"))  # a quoted string or a YAML date: same text
    if date is not None and released != date:
        problems.append(f"CITATION.cff's date-released is {released!r}, CHANGELOG.md's entry says {date!r}")
    return problems


def shown_versions(notebook: nbformat.NotebookNode) -> list[str]:
    """Every version that ``notebook``'s stored stream outputs show as 'collection version X'."""
    shown = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "stream":
                shown += SHOWN.findall(output.get("text", ""))
    return shown


def check_notebook(version: str, notebook: nbformat.NotebookNode) -> list[str]:
    """Problems unless the start notebook's stored output shows ``version`` (and no other)."""
    shown = shown_versions(notebook)
    if not shown:
        return ["00_start_here.ipynb shows no 'collection version ...' output: run `make notebooks`"]
    if set(shown) != {version}:
        return [
            f"00_start_here.ipynb shows collection version {', '.join(shown)}, pyproject.toml says {version!r}: "
            "run `make notebooks NOTEBOOKS=notebooks/00_start_here.ipynb` (after `make setup`)"
        ]
    return []


def check_tag(version: str, tags: list[str]) -> list[str]:
    """Problems if the release tag ``v<version>`` already exists (the version was released already)."""
    if f"v{version}" in tags:
        return [f"git tag v{version} exists already: this version was released; raise the version in pyproject.toml"]
    return []


def git_tags(root: Path) -> list[str]:
    """The repository's tags (``git tag --list``)."""
    result = subprocess.run(["git", "tag", "--list"], cwd=root, capture_output=True, text=True, check=True)
    return result.stdout.split()


def problems(root: Path | None = None) -> tuple[str, list[str]]:
    """The version and every problem found in the repository at ``root`` (default: this one)."""
    root = root or ROOT
    version = pyproject_version((root / "pyproject.toml").read_text())
    changelog = (root / "CHANGELOG.md").read_text()
    top = changelog_top(changelog)
    found = check_changelog(version, changelog)
    found += check_citation(version, (root / "CITATION.cff").read_text(), top[1] if top else None)
    found += check_notebook(version, nbformat.read(root / START_NOTEBOOK, as_version=4))
    found += check_tag(version, git_tags(root))
    return version, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-tests", action="store_true", help="only the checks; do not run `make test`")
    args = parser.parse_args(argv)
    version, found = problems()
    for problem in found:
        print(f"release-check: {problem}", file=sys.stderr)
    if found:
        print(f"release-check: {version} is NOT ready ({len(found)} problem(s))", file=sys.stderr)
        return 1
    print(f"release-check: version {version}: CHANGELOG.md, CITATION.cff and 00_start_here.ipynb agree; no tag yet")
    if args.no_tests:
        return 0
    print("release-check: running the README's test command, `make test`", flush=True)
    return subprocess.run(["make", "test"], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
