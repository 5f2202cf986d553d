"""One object per exercise question: ``check()``, ``hint()``, ``solution()``.

A checker reads the student's variables from the notebook, inspects the real objects and
files they name, and either returns a success message or raises :class:`Incorrect` with a
message written to the student. Variables still at their placeholder (``None``) mean "not
attempted". Every result is also recorded in :data:`RESULTS`, which the grader reads.

Example:
    >>> def checker(answer):
    ...     if answer != 42:
    ...         raise Incorrect("count again")
    ...     return "right"
    >>> q = Question("demo.q1", "What is 6 x 7?", checker, names=["answer"], hint="x", solution="answer = 42")
    >>> q.evaluate({"answer": None}).status, q.evaluate({"answer": 41}).message, q.evaluate({"answer": 42}).status
    ('not attempted', 'count again', 'correct')
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

NOT_ATTEMPTED, INCORRECT, CORRECT = "not attempted", "incorrect", "correct"
RESULTS: dict[str, Result] = {}


class Incorrect(Exception):  # noqa: N818 - reads as the answer's status: raise Incorrect("...")
    """Raised by a checker: the message tells the student what is wrong and where to look."""


@dataclass
class Result:
    question: str
    status: str
    message: str

    def __str__(self) -> str:
        return f"{self.question}: {self.status.upper()}" + (f": {self.message}" if self.message else "")


class Question:
    """An exercise question. ``names`` are the notebook variables its checker receives."""

    def __init__(
        self, qid: str, prompt: str, checker: Callable[..., str], names: list[str], hint: str, solution: str
    ) -> None:
        self.qid, self.prompt, self.checker, self.names = qid, prompt, checker, names
        self._hint, self._solution = hint, solution

    def evaluate(self, namespace: Mapping[str, object]) -> Result:
        """Check the answer found in ``namespace`` (a notebook's globals) and record the result."""
        values = {name: namespace.get(name) for name in self.names}
        if any(value is None for value in values.values()):
            missing = ", ".join(f"`{n}`" for n, v in values.items() if v is None)
            result = Result(self.qid, NOT_ATTEMPTED, f"set {missing} (still None), then run check() again")
        else:
            try:
                result = Result(self.qid, CORRECT, self.checker(**values))
            except Incorrect as wrong:
                result = Result(self.qid, INCORRECT, str(wrong))
            except Exception as error:  # the student's object broke the checker: say so, do not crash
                result = Result(self.qid, INCORRECT, f"checking your answer raised {type(error).__name__}: {error}")
        RESULTS[self.qid] = result
        return result

    def check(self) -> None:
        """Check the answer in the calling notebook's variables and print the result."""
        print(self.evaluate(sys._getframe(1).f_globals))

    def hint(self) -> None:
        print(f"Hint for {self.qid}: {self._hint}")

    def solution(self) -> None:
        print(f"A solution for {self.qid}:\n{self._solution}")


def require_same_tensors(
    found: Mapping[str, object], expected: Mapping[str, object], owner: str = "net", advice: str = ""
) -> None:
    """Raise :class:`Incorrect` unless ``found`` has exactly ``expected``'s keys and equal tensors.

    Example:
        >>> import torch
        >>> require_same_tensors({"w": torch.ones(1)}, {"w": torch.zeros(1)})
        Traceback (most recent call last):
        ...
        lesson_utils.exercises.core.Incorrect: w differs from net's: save the state_dict of `net` itself
    """
    import torch

    if found.keys() != expected.keys():
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        raise Incorrect(f"the keys do not match {owner}'s state_dict: missing {missing}, unexpected {extra}")
    differ = [key for key in expected if not torch.equal(found[key], expected[key])]
    if differ:
        raise Incorrect(f"{differ[0]} differs from {owner}'s: {advice or f'save the state_dict of `{owner}` itself'}")


def results_json() -> str:
    """Every recorded result as JSON (what the grader collects after running a notebook).

    Example:
        >>> json.loads(results_json()) == [asdict(r) for r in RESULTS.values()]
        True
    """
    return json.dumps([asdict(result) for result in RESULTS.values()])


def choice(qid: str, prompt: str, options: dict[str, str], correct: str, why: dict[str, str], hint: str) -> Question:
    """A multiple-choice question answered by setting ``<qid's last part>_answer = "b"``.

    Example:
        >>> q = choice("x.q9", "Pick b", {"a": "no", "b": "yes"}, "b", {"a": "not a"}, hint="b")
        >>> q.evaluate({"q9_answer": "a"}).message
        'not a'
    """
    name = qid.rsplit(".", 1)[-1] + "_answer"
    text = prompt + "\n" + "\n".join(f"  {key}) {value}" for key, value in options.items())

    def checker(**answer: object) -> str:
        value = str(answer[name]).strip().lower()
        if value not in options:
            raise Incorrect(f"answer with one letter of {sorted(options)}, e.g. {name} = {sorted(options)[0]!r}")
        if value != correct:
            raise Incorrect(why.get(value, "not this one: read the question again"))
        return f"{correct}) {options[correct]}"

    return Question(qid, text, checker, names=[name], hint=hint, solution=f"{name} = {correct!r}")
