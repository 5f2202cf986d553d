"""pytest settings for the whole repository: tests/, the notebooks (nbval) and the doctests; the
numeric profile every kernel computes under, and the order `make test` hands files to its workers."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from lesson_utils import numerics

DIFFERS = "numeric profile: printed other numbers"
_differences: list[str] = []  # node ids of tagged cells whose printed numbers differed (this run)

ROOT = Path(__file__).resolve().parent
# Seconds each test file took in a whole `make test` (setup, call and teardown of its tests, on one
# of the two workers). `make test PYTEST_ARGS=--store-durations` writes it again.
DURATIONS = ROOT / "tests" / "durations.json"
_seconds_by_file: dict[str, float] = {}


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--store-durations",
        action="store_true",
        help=f"after the run, write the seconds of each test file that ran into {DURATIONS.relative_to(ROOT)} "
        "(run whole files): `make test` hands the longest files out first",
    )


def pytest_configure(config) -> None:
    """Every kernel nbval starts, and every process the tests start, computes under the numeric
    profile (``lesson_utils.numerics``: one thread, oneDNN and ATen at AVX2, MKL's compatible
    path), as `make notebooks` did when it stored the outputs. The notebooks apply it in their
    first cell too; setting it here covers this process's doctests and the processes the tests
    start. (One thread also lets pytest-xdist's two workers share two cores without waiting.)"""
    os.environ.update(numerics.numeric_environment())
    config.numeric_profile_gaps = numerics.why_not_pinned()
    if handed_out_by_file(config):
        config.option.loadscopereorder = False  # pytest-xdist keeps the order pytest_collection_modifyitems chose


def handed_out_by_file(config) -> bool:
    """Whether pytest-xdist hands out whole files (``-n 2 --dist loadfile``, as `make test` runs)."""
    return getattr(config.option, "dist", "no") in ("loadfile", "loadscope") and bool(
        getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput")
    )


def pytest_collection_modifyitems(config, items) -> None:
    """Longest file first, when pytest-xdist hands out whole files to two workers: a long file
    started last keeps one worker busy while the other has nothing left to do. (By default
    pytest-xdist starts the files with the most tests first, and the slowest files, a browser
    or a server each, have few.) The tests inside each file keep their order."""
    if not handed_out_by_file(config):
        return
    known = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    seconds = {name: known.get(name, estimated_seconds(name, tests)) for name, tests in files.items()}
    items[:] = [item for name in sorted(files, key=lambda name: -seconds[name]) for item in files[name]]


ROUNDTRIP = "tests/test_grade_roundtrip.py"


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")  # after `-m` and `-k`
def pytest_collection_modifyitems_checker_tests_once(config, items) -> None:
    """The checker tests (test_grade_roundtrip.CHECKER_TESTS) run once per session: when the judge's
    round trip is selected, it runs them all in its own pytest process (every assertion of theirs
    holds there as here, and a failure is reported with their output), so they are not run a second
    time beside it. `make check` leaves the round trip out (it is slow) and runs them alone."""
    roundtrip = [item for item in items if item.nodeid.startswith(ROUNDTRIP + "::")]
    if not roundtrip:
        return
    checker_files = set(roundtrip[0].module.CHECKER_TESTS)
    twice = [item for item in items if item.nodeid.split("::", 1)[0] in checker_files]
    if twice:
        config.hook.pytest_deselected(items=twice)
        items[:] = [item for item in items if item.nodeid.split("::", 1)[0] not in checker_files]


def estimated_seconds(name: str, tests: list) -> float:
    """For a file not in tests/durations.json: a notebook's stored run time (its cells' timings, from
    when it was executed), else 20 s per test marked slow and a tenth of a second per other test."""
    if not name.endswith(".ipynb"):
        return sum(20 if test.get_closest_marker("slow") else 0.1 for test in tests)
    seconds = 0.0
    for cell in json.loads((ROOT / name).read_text(encoding="utf-8"))["cells"]:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start, end = (datetime.fromisoformat(timing[k]) for k in ("iopub.execute_input", "shell.execute_reply"))
            seconds += (end - start).total_seconds()
    return seconds


# Graders share the machine: the course package (lesson_utils/) and the files Python and Jupyter run at
# start. A notebook one grader runs may change them (tests/test_grade.py plants a .pyc and a .pth on
# purpose); another grader running at that moment sees the change and flags its own notebook. Tests
# marked `grader` hold a shared lock while they run, those marked `grader(changes_shared_files=True)`
# hold it alone, so xdist's other worker never grades while a planted file is there. A turnstile lock
# keeps a stream of shared holders from starving the one that waits to hold it alone.
GRADER_LOCKS = ROOT / "build" / "test-locks"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    marker = item.get_closest_marker("grader")
    if marker is None:
        yield
        return
    GRADER_LOCKS.mkdir(parents=True, exist_ok=True)
    alone = marker.kwargs.get("changes_shared_files", False)
    with open(GRADER_LOCKS / "turnstile", "a") as turnstile, open(GRADER_LOCKS / "graders", "a") as graders:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(graders, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield  # setup (module fixtures that grade too), call and teardown


def pytest_report_header(config) -> list[str]:
    """Said once, at the start of the run: whether the stored training numbers can be compared."""
    gaps = config.numeric_profile_gaps
    if not gaps:
        return ["numeric profile: pinned; notebooks are compared bit for bit with their stored outputs"]
    return [
        "numeric profile: NOT pinned on this machine (" + "; ".join(gaps) + ").",
        f"  Cells tagged {numerics.TAG!r} (numbers from training) are checked by their assertions;",
        "  printed numbers that differ from the stored ones are listed at the end, not failed.",
        "  Every other cell is compared as usual.",
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Where the profile cannot hold, a tagged cell still runs and its assertions still count, but
    printed numbers that differ from the stored ones (they come from training) are not a failure:
    they are listed at the end of the run instead. An error in the cell still fails it."""
    outcome = yield
    report = outcome.get_result()
    cell = getattr(item, "cell", None)
    if (
        report.when == "call"
        and report.failed
        and item.config.numeric_profile_gaps
        and cell is not None
        and numerics.TAG in cell.metadata.get("tags", [])
        and call.excinfo is not None
        and str(call.excinfo.value) == "Cell outputs differ"  # nbval's words for a mismatch, not an error
    ):
        report.outcome = "passed"
        report.longrepr = None
        report.user_properties.append((DIFFERS, item.nodeid))  # travels to xdist's controller with the report


def pytest_runtest_logreport(report) -> None:
    _differences.extend(nodeid for key, nodeid in report.user_properties if key == DIFFERS)
    name = report.nodeid.split("::", 1)[0]
    _seconds_by_file[name] = _seconds_by_file.get(name, 0.0) + report.duration


def pytest_sessionfinish(session) -> None:
    config = session.config
    if config.getoption("store_durations") and not hasattr(config, "workerinput") and _seconds_by_file:
        stored = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
        stored.update({name: round(seconds, 1) for name, seconds in _seconds_by_file.items()})  # the files that ran
        stored = {name: stored[name] for name in sorted(stored) if (ROOT / name).exists()}
        DURATIONS.write_text(json.dumps(stored, indent=1, ensure_ascii=False) + "\n")


def pytest_terminal_summary(terminalreporter, config) -> None:
    differences = sorted(set(_differences))
    if differences:
        terminalreporter.write_line(
            f"numeric profile not pinned: {len(differences)} cell(s) tagged {numerics.TAG!r} printed other "
            "training numbers than the stored ones (expected on this machine; their assertions passed):"
        )
        for nodeid in differences:
            terminalreporter.write_line(f"  {nodeid}")
