"""Running child processes: a process group of their own, a time limit, a clean stop, and results in files.

Every place that starts a process uses these: lesson 06's ``launch`` (torchrun and its
workers), the benchmark's measuring children, the grader's kernels and the tests' servers.

- A child runs in a **new session**, so it and everything it starts (torchrun's workers, a
  JupyterLab's kernels) form one process group that :func:`stop` ends together: SIGTERM,
  then SIGKILL for what is still there after a grace period.
- A child **reports in files**, never in lines fished out of its output: the parent names a
  folder in the environment variable ``LESSON_RESULT_DIR``; the child calls
  :func:`write_result` (each process of a group under its own name), and :func:`run` returns
  what they wrote. Standard output is for people.

Example:
    >>> import sys
    >>> code = "from lesson_utils.processes import write_result; write_result({'answer': 42})"
    >>> finished = run([sys.executable, "-c", code], timeout=120)
    >>> finished.returncode, finished.results
    (0, {'result': {'answer': 42}})
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesson_utils.i18n import _

RESULT_DIR_ENV = "LESSON_RESULT_DIR"


@dataclass
class Finished:
    """What a child left: its exit code, its output (stdout and stderr, for people), its result files."""

    returncode: int
    output: str
    results: dict[str, Any] = field(default_factory=dict)


def write_result(value: Any, name: str = "result") -> Path:
    """In a child: write ``value`` as JSON to ``<LESSON_RESULT_DIR>/<name>.json``, atomically.

    Raises ``RuntimeError`` when the parent named no folder (the child was not started by :func:`run`).

    Example:
        >>> os.environ[RESULT_DIR_ENV] = tempfile.mkdtemp()
        >>> write_result([1, 2], name="rank0").name
        'rank0.json'
        >>> del os.environ[RESULT_DIR_ENV]
    """
    folder = os.environ.get(RESULT_DIR_ENV)
    if not folder:
        raise RuntimeError(
            _("{variable} is not set: start this process with lesson_utils.processes.run").format(
                variable=RESULT_DIR_ENV
            )
        )
    path = Path(folder) / f"{name}.json"
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(value))
    os.replace(partial, path)  # a parent never reads half a result
    return path


def stop(process: subprocess.Popen, grace: float = 20) -> None:
    """End ``process`` and its whole group: SIGTERM, then SIGKILL after ``grace`` seconds.

    Example:
        >>> import sys
        >>> sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        >>> stop(sleeper, grace=5); sleeper.returncode
        -15
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)  # the group outlives its leader while any member is left
        except ProcessLookupError:
            break  # the whole group is gone
        if sig == signal.SIGTERM:
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
    process.wait()


@contextmanager
def started(command: Sequence[str], grace: float = 20, **popen_args: Any) -> Iterator[subprocess.Popen]:
    """Start a long-running ``command`` (a server) in its own group; always :func:`stop` it afterwards.

    Example:
        >>> import sys
        >>> with started([sys.executable, "-c", "import time; time.sleep(60)"], grace=5) as server:
        ...     server.poll() is None
        True
    """
    process = subprocess.Popen(list(command), start_new_session=True, **popen_args)
    try:
        yield process
    finally:
        stop(process, grace)


def run(
    command: Sequence[str],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    input: str | None = None,  # noqa: A002 - subprocess's name for it
) -> Finished:
    """Run ``command`` to the end in its own group, within ``timeout`` seconds; its exit code, output and results.

    ``input`` is written to its standard input (e.g. a key that must not appear in its
    command line or environment, both readable by other processes of the same user).

    A run past ``timeout`` is stopped (the whole group) and raises ``TimeoutError``. A non-zero
    exit code is returned, not raised: the caller says what it means.
    """
    with tempfile.TemporaryDirectory(prefix="results-") as folder:
        child_env = {**(os.environ if env is None else env), RESULT_DIR_ENV: folder}
        process = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
        )
        try:
            output = process.communicate(input=input, timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            stop(process, grace=0)
            process.communicate()
            raise TimeoutError(
                _("{command} ran past {timeout:g} s; stopped with its whole group").format(
                    command=command[0], timeout=timeout
                )
            ) from None
        results = {path.stem: json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.json"))}
    return Finished(process.returncode, output, results)
