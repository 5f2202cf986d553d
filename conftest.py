"""pytest settings for the whole repository: tests/, the notebooks (nbval) and the doctests."""

from __future__ import annotations

import os


def pytest_configure(config) -> None:
    """Every kernel nbval starts, and every process the tests start, computes with one CPU
    thread, as `make notebooks` did when it stored the outputs: torch's sums depend on the
    thread count in their last bits, and lesson 04's training turns those bits into other
    accuracies. (It also lets pytest-xdist's two workers share two cores without waiting.)"""
    os.environ["OMP_NUM_THREADS"] = "1"
