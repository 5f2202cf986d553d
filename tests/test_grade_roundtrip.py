"""Export, then judge, gives what evaluating in the notebook's own process gives.

The checker tests (tests/test_exercises*.py) build hundreds of right and wrong answers and evaluate
each in their own process. Here they run again with this file loaded as a pytest plugin: every
evaluation of a lesson's question is also sent the grader's way first, as in a graded notebook:
the values exported (:mod:`lesson_utils.classroom.export`), the files and memory facts read from
outside (:mod:`lesson_utils.classroom.outside`, on this very process), the objects rebuilt and the
question judged (:mod:`lesson_utils.classroom.judge`). Its status must be the in-process one, every
time (but for a path that leads through a symbolic link, which the grading process never follows), and
nearly always its message.

This is also where `make test` runs the checker tests (the root conftest.py does not run them a second
time beside it): a failure of theirs fails this test, with their own report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORD_ENV = "GRADE_ROUNDTRIP_RECORD"  # the plugin writes one JSON line per evaluation there
CHECKER_TESTS = ["tests/test_exercises.py", "tests/test_exercises_lesson08.py", "tests/test_exercises_lesson09.py",
                 "tests/test_exercises_attacks.py"]  # fmt: skip
_inside = threading.local()


# -- the plugin: loaded with `-p test_grade_roundtrip` into a run of the checker tests -----------------
def pytest_configure(config: object) -> None:
    if not os.environ.get(RECORD_ENV):
        return
    from lesson_utils.exercises import core

    original = core.Question.evaluate

    def evaluate(self: object, namespace: object) -> object:
        if getattr(_inside, "busy", False):  # the judge's own evaluation
            return original(self, namespace)
        judged = roundtrip(self, namespace)
        result = original(self, namespace)  # last: RESULTS holds the in-process result, as before
        if judged is not None:
            record = {"question": self.qid, "here": [result.status, result.message], "judged": judged}
            with open(os.environ[RECORD_ENV], "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        return result

    core.Question.evaluate = evaluate


def roundtrip(question: object, namespace: object) -> list | None:
    """[status, message] of ``question`` judged from an export of ``namespace``; None for a question that
    is not one of a lesson's (a test's own)."""
    import importlib

    from lesson_utils.classroom import outside
    from lesson_utils.classroom.export import export_namespace
    from lesson_utils.classroom.judge import judge

    lesson = question.qid.split(".")[0]
    try:
        module = importlib.import_module(f"lesson_utils.exercises.{lesson}")
    except ImportError:
        return None
    if getattr(module, question.qid.rsplit(".", 1)[1], None) is not question:
        return None
    _inside.busy = True
    try:
        with tempfile.TemporaryDirectory(prefix="roundtrip-") as folder:
            handover, target = Path(folder, "handover"), Path(folder, "export")
            handover.mkdir()
            export_namespace(dict(namespace), [*question.names, *question.optional], str(handover))
            outside.assemble(handover, target, os.getpid(), list(question.names), list(question.optional))
            found = judge(lesson, target, only=[question.qid])["results"][0]
            return [found["status"], found["message"]]
    finally:
        _inside.busy = False


# -- the test ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_answer_of_the_checker_tests_is_judged_as_in_its_own_process(tmp_path):
    record = tmp_path / "record.jsonl"
    env = {**os.environ, RECORD_ENV: str(record), "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "test_grade_roundtrip", "-p", "no:randomly",
               "--no-header", "-o", "addopts=", *CHECKER_TESTS]  # fmt: skip
    ran = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert ran.returncode == 0, "the checker tests failed:\n" + ran.stdout[-6000:] + ran.stderr[-2000:]
    records = [json.loads(line) for line in record.read_text().splitlines()]
    questions = {r["question"] for r in records}
    assert len(records) > 300 and len(questions) >= 20, (len(records), sorted(questions))
    differ = [r for r in records if r["judged"][0] != r["here"][0]]
    # the one difference on purpose: the grading process never follows a symbolic link (it may run as root)
    unexplained = [r for r in differ if "symbolic link" not in r["judged"][1] or r["judged"][0] != "incorrect"]
    assert unexplained == [], "\n".join(json.dumps(r, ensure_ascii=False) for r in unexplained[:10])
    assert len(differ) <= 6, differ
    worded = [r for r in records if r["judged"][1] != r["here"][1]]
    assert len(worded) <= len(records) // 10, "\n".join(json.dumps(r, ensure_ascii=False) for r in worded[:20])
