"""Fixtures shared by the tests that start a real JupyterLab server (test_lab, ui/test_browser)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(scope="module")
def free_port() -> Callable[[], int]:
    """A function that returns a loopback port nobody listens on right now."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick


@pytest.fixture(scope="module")
def start_server() -> Iterator[Callable[..., subprocess.Popen]]:
    """``start_server(command, **popen_args)`` runs a server in a process group of its own.

    At teardown, also when the test failed, the whole group (``make``, JupyterLab and its
    kernels) gets SIGTERM, and SIGKILL if it has not exited within 20 s.
    """
    started: list[subprocess.Popen] = []

    def start(command: list[str], **popen_args) -> subprocess.Popen:
        process = subprocess.Popen(command, start_new_session=True, **popen_args)
        started.append(process)
        return process

    yield start
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except ProcessLookupError:
            pass  # already gone
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
