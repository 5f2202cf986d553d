"""Classroom exercises with instant feedback: ``from lesson_utils.exercises import lesson01 as ex``.

Each lesson module has questions ``q1``, ``q2``, ... with ``check()``, ``hint()`` and
``solution()``; see :mod:`lesson_utils.exercises.core`.
"""

from lesson_utils.exercises.core import CORRECT, INCORRECT, NOT_ATTEMPTED, RESULTS, Incorrect, Question, results_json

__all__ = ["CORRECT", "INCORRECT", "NOT_ATTEMPTED", "RESULTS", "Incorrect", "Question", "results_json"]
