"""Fixtures shared by the tests that start a real JupyterLab server (test_lab, ui/test_browser)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lesson_utils.processes import stop


@pytest.fixture(scope="module")
def free_port() -> Callable[[], int]:
    """A function that returns a loopback port nobody listens on right now."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick


def wait_until_answers(url: str, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise AssertionError(
                f"the server exited ({process.returncode}) before answering:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {seconds:g} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def start_server() -> Iterator[Callable[..., subprocess.Popen]]:
    """``start_server(command, ready_url, log, **popen_args)``: a server in a process group of its
    own, its output in the file ``log``, returned once ``ready_url`` answers.

    At teardown, also when the test failed, the whole group (``make``, JupyterLab and its
    kernels) is stopped with :func:`lesson_utils.processes.stop`: SIGTERM, SIGKILL after 20 s.
    """
    started: list[subprocess.Popen] = []

    def start(command: list[str], ready_url: str, log: Path, **popen_args) -> subprocess.Popen:
        with open(log, "wb") as output:  # the server keeps its own copy of the descriptor
            process = subprocess.Popen(
                command, start_new_session=True, stdout=output, stderr=subprocess.STDOUT, **popen_args
            )
        started.append(process)
        wait_until_answers(ready_url, process, log)
        return process

    yield start
    for process in started:
        stop(process, grace=20)
