"""pytest settings for the whole repository: tests/, the notebooks (nbval) and the doctests."""

from __future__ import annotations

import os

import pytest

from lesson_utils import numerics


def pytest_configure(config) -> None:
    """Every kernel nbval starts, and every process the tests start, computes under the numeric
    profile (``lesson_utils.numerics``: one thread, oneDNN and ATen at AVX2, MKL's compatible
    path), as `make notebooks` did when it stored the outputs. The notebooks apply it in their
    first cell too; setting it here covers this process's doctests and the processes the tests
    start. (One thread also lets pytest-xdist's two workers share two cores without waiting.)"""
    os.environ.update(numerics.numeric_environment())
    config.numeric_profile_gaps = numerics.why_not_pinned()


def pytest_report_header(config) -> list[str]:
    """Said once, at the start of the run: whether the stored training numbers can be compared."""
    gaps = config.numeric_profile_gaps
    if not gaps:
        return ["numeric profile: pinned; notebooks are compared bit for bit with their stored outputs"]
    return [
        "numeric profile: NOT pinned on this machine (" + "; ".join(gaps) + ").",
        f"  Cells tagged {numerics.TAG!r} (numbers from training) are checked by their assertions,",
        "  not by their printed output; every other cell is compared as usual.",
    ]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Where the profile cannot hold, a tagged cell still runs (its assertions still run), but its
    printed numbers, which come from training, are not compared with the stored ones."""
    if not config.numeric_profile_gaps:
        return
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is not None and numerics.TAG in cell.metadata.get("tags", []):
            item.options["check"] = False
