"""Every English lesson notebook, run in a real JupyterLab in a real browser (see browser_run.py)."""

from __future__ import annotations

import pytest
from browser_run import LESSONS, WIDGETS, check_notebook, require_chromium

require_chromium()
pytestmark = pytest.mark.slow  # a server and a browser: left out of `make check`


@pytest.mark.parametrize("name", LESSONS)
def test_notebook_runs_in_jupyterlab_and_its_widgets_respond(lab, browser, name):
    check_notebook(lab, browser, name)


def test_every_lesson_with_a_widget_is_exercised():
    assert set(WIDGETS) <= set(LESSONS), "WIDGETS names a notebook that does not exist"
