"""Every Chinese lesson notebook (notebooks/zh/) in a real JupyterLab whose interface is Chinese, as
`make lab-zh` opens it, in a real browser: it renders whole with no error but where tagged, and its
widget answers through a live kernel (see browser_run.py)."""

from __future__ import annotations

import pytest
from browser_run import LESSONS, ROOT, check_notebook, require_chromium

require_chromium()
pytestmark = pytest.mark.slow  # a server and a browser: left out of `make check`


@pytest.mark.parametrize("name", [f"zh/{name}" for name in LESSONS])
def test_chinese_notebook_renders_in_a_chinese_jupyterlab_and_its_widget_answers(lab_zh, browser, name):
    check_notebook(lab_zh, browser, name)


def test_every_lesson_has_a_chinese_twin_to_open():
    assert all((ROOT / "notebooks" / "zh" / name).is_file() for name in LESSONS)
