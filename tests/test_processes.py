"""Child processes: whole groups stopped, time limits kept, results read from files."""

from __future__ import annotations

import os
import sys
import time

import pytest

from lesson_utils.processes import RESULT_DIR_ENV, run, started, write_result

# A child that starts a grandchild (as torchrun starts workers), reports its pid, then waits.
PARENT_OF_SLEEPER = """
import subprocess, sys, time
from lesson_utils.processes import write_result
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
write_result(grandchild.pid, name="grandchild")
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its parent is not alive
        return f.read().split(")")[-1].split()[0] != "Z"


def wait_until_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_every_process_of_a_group_reports_under_its_own_name() -> None:
    code = (
        "from lesson_utils.processes import write_result\n"
        "for rank in range(3): write_result({'rank': rank}, name=f'rank{rank}')\n"
        "print('for people, not parsed')\n"
    )
    finished = run([sys.executable, "-c", code], timeout=60)
    assert finished.returncode == 0 and "for people" in finished.output
    assert finished.results == {f"rank{r}": {"rank": r} for r in range(3)}


def test_a_failing_child_returns_its_code_and_output_and_no_result() -> None:
    finished = run([sys.executable, "-c", "raise SystemExit('went wrong')"], timeout=60)
    assert finished.returncode == 1 and "went wrong" in finished.output and finished.results == {}


def test_a_run_past_its_time_limit_stops_the_whole_group(tmp_path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = PARENT_OF_SLEEPER.replace(
        'write_result(grandchild.pid, name="grandchild")', f"open({str(pid_file)!r}, 'w').write(str(grandchild.pid))"
    )
    with pytest.raises(TimeoutError, match="ran past 3 s"):
        run([sys.executable, "-c", code], timeout=3)
    assert wait_until_gone(int(pid_file.read_text())), "the grandchild outlived the time limit"


def test_a_server_is_stopped_with_its_children_even_when_the_test_fails(tmp_path) -> None:
    env = {**os.environ, RESULT_DIR_ENV: str(tmp_path)}
    with pytest.raises(RuntimeError, match="the test failed"):
        with started([sys.executable, "-c", PARENT_OF_SLEEPER], grace=5, env=env) as server:
            deadline = time.monotonic() + 30
            while not (tmp_path / "grandchild.json").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            raise RuntimeError("the test failed")
    assert server.returncode is not None
    assert wait_until_gone(int((tmp_path / "grandchild.json").read_text()))


def test_write_result_outside_run_says_how_to_start_the_child(monkeypatch) -> None:
    monkeypatch.delenv(RESULT_DIR_ENV, raising=False)
    with pytest.raises(RuntimeError, match="LESSON_RESULT_DIR is not set"):
        write_result(1)
