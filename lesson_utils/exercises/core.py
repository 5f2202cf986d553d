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
    >>> q = Question("demo.q1", "What is 6 x 7?", checker, names=["answer"], hint="x")
    >>> q.evaluate({"answer": None}).status, q.evaluate({"answer": 41}).message, q.evaluate({"answer": 42}).status
    ('not attempted', 'count again', 'correct')
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from lesson_utils.i18n import N_, _, language

NOT_ATTEMPTED, INCORRECT, CORRECT = "not attempted", "incorrect", "correct"
RESULTS: dict[str, Result] = {}
NOT_THIS_ONE = N_("not this one: read the question again")  # a wrong choice without its own explanation


class Incorrect(Exception):  # noqa: N818 - reads as the answer's status: raise Incorrect("...")
    """Raised by a checker: the message tells the student what is wrong and where to look."""


@dataclass
class Result:
    question: str
    status: str
    message: str

    def __str__(self) -> str:
        status = {NOT_ATTEMPTED: N_("NOT ATTEMPTED"), INCORRECT: N_("INCORRECT"), CORRECT: N_("CORRECT")}
        shown = _(status.get(self.status, self.status.upper()))
        if self.message:
            return _("{question}: {status}: {message}").format(
                question=self.question, status=shown, message=self.message
            )
        return _("{question}: {status}").format(question=self.question, status=shown)


class Question:
    """An exercise question. ``names`` are the notebook variables its checker receives."""

    def __init__(
        self,
        qid: str,
        prompt: str,
        checker: Callable[..., str],
        names: list[str],
        hint: str,
        none_message: str = "",
    ) -> None:
        self.qid, self.prompt, self.checker, self.names = qid, prompt, checker, names
        self._hint = hint
        self.none_message = none_message  # added to "still None": why a real attempt can leave None behind

    def evaluate(self, namespace: Mapping[str, object]) -> Result:
        """Check the answer found in ``namespace`` (a notebook's globals) and record the result."""
        values = {name: namespace.get(name) for name in self.names}
        if any(value is None for value in values.values()):
            missing = ", ".join(f"`{n}`" for n, v in values.items() if v is None)
            message = _("set {names} (still None), then run check() again").format(names=missing)
            if self.none_message:
                message = _("{message}. {reason}").format(message=message, reason=_(self.none_message))
            else:  # the usual way a real attempt leaves None behind
                message += _(
                    " (torch.save, load_state_dict and optimizer.load_state_dict return None: "
                    "call them on a line of their own, not as `x = ...`)"
                )
            result = Result(self.qid, NOT_ATTEMPTED, message)
        else:
            try:
                result = Result(self.qid, CORRECT, self.checker(**values))
            except Incorrect as wrong:
                result = Result(self.qid, INCORRECT, str(wrong))
            except Exception as error:  # the student's object broke the checker: say so, do not crash
                message = _("checking your answer raised {error_type}: {error}")
                result = Result(self.qid, INCORRECT, message.format(error_type=type(error).__name__, error=error))
        RESULTS[self.qid] = result
        return result

    def check(self) -> None:
        """Check the answer in the calling notebook's variables and print the result.

        An answer whose cell raised is not finished, even when what it left behind looks right
        (``load_state_dict`` copies every tensor that fits before it raises a size mismatch): in
        IPython, a right answer checked just after a cell that raised is *incorrect*, naming the
        error. (The grader runs whole notebooks and reports such cells itself.)
        """
        result = self.evaluate(sys._getframe(1).f_globals)
        error = _error_just_before()
        if result.status == CORRECT and error is not None:
            message = _(
                "the cell run just before this check raised {error_type}: {error}. An answer that raises is not "
                "finished: fix it and run it again (if the error came from another cell, run your answer cell "
                "again, then check)"
            )
            first_line = (str(error).strip().splitlines() or [""])[0]
            result = Result(self.qid, INCORRECT, message.format(error_type=type(error).__name__, error=first_line))
            RESULTS[self.qid] = result
        print(result)

    def hint(self) -> None:
        print(_("Hint for {qid}: {hint}").format(qid=self.qid, hint=_(self._hint)))

    def solution(self) -> None:
        """Print the worked answer: the solution notebook's marked region (``make exercises`` copies it)."""
        print(_("A solution for {qid}:").format(qid=self.qid) + "\n" + solution_text(self.qid))


def _error_just_before() -> BaseException | None:
    """The error of the cell IPython ran just before the one running now (None: it succeeded, or
    this is not IPython)."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    result = getattr(shell, "last_execution_result", None)
    if result is None:
        return None
    return result.error_before_exec or result.error_in_exec


def require_same_tensors(
    found: object,
    expected: Mapping[str, object],
    owner: str | None = None,
    advice: str | None = None,
    what: str | None = None,
    dtype: object = None,
) -> None:
    """Raise :class:`Incorrect` unless ``found`` has exactly ``expected``'s keys and equal tensors.

    Equal means same dtype (``dtype`` if given, else the expected one), same shape and the same
    numbers: ``torch.equal`` alone would accept a float64 copy of float32 weights. ``owner``
    names ``expected`` and ``what`` names ``found`` in the messages, and ``advice`` says what
    to do when the numbers differ; the caller passes them translated (``_("the file")``), and
    left out they are "net's state_dict", "save net.state_dict() itself" and "yours".

    Example:
        >>> import torch
        >>> require_same_tensors({"w": torch.ones(1)}, {"w": torch.zeros(1)})
        Traceback (most recent call last):
        ...
        lesson_utils.exercises.core.Incorrect: w in yours differs from net's state_dict: save net.state_dict() itself
        >>> require_same_tensors({"w": torch.ones(1).double()}, {"w": torch.ones(1)})
        Traceback (most recent call last):
        ...
        lesson_utils.exercises.core.Incorrect: w is torch.float64 in yours but torch.float32 in net's state_dict: ...
        >>> require_same_tensors({"w": torch.ones(1), "v": torch.ones(1)}, {"w": torch.ones(1), "b": torch.ones(1)})
        Traceback (most recent call last):
        ...
        lesson_utils.exercises.core.Incorrect: the keys do not match net's state_dict. Missing from yours: ['b']. ...
    """
    import torch

    owner = _("net's state_dict") if owner is None else owner
    advice = _("save net.state_dict() itself") if advice is None else advice
    what = _("yours") if what is None else what
    if not isinstance(found, Mapping):
        message = _("{what} is {found}, not a state_dict (a dict of named tensors)")
        raise Incorrect(message.format(what=what, found=_a(found)))
    if found.keys() != expected.keys():
        missing, extra = [k for k in expected if k not in found], [k for k in found if k not in expected]
        if missing and extra:
            message = _("the keys do not match {owner}. Missing from {what}: {missing}. Unexpected in {what}: {extra}.")
        elif missing:
            message = _("the keys do not match {owner}. Missing from {what}: {missing}.")
        else:
            message = _("the keys do not match {owner}. Unexpected in {what}: {extra}.")
        raise Incorrect(message.format(owner=owner, what=what, missing=_listed(missing), extra=_listed(extra)))
    differ = []
    for key, want in expected.items():
        have, want_dtype = found[key], dtype or want.dtype
        if not torch.is_tensor(have):
            raise Incorrect(_("{key} is {found} in {what}, not a tensor").format(key=key, found=_a(have), what=what))
        if type(have) not in (torch.Tensor, torch.nn.Parameter):  # a subclass can make torch.equal say anything
            message = _("{key} is a {type} in {what}, not a plain tensor: save the tensors themselves")
            raise Incorrect(message.format(key=key, type=type(have).__name__, what=what))
        if have.is_meta:
            message = _("{key} is on the meta device in {what}: it has no data (load the values into it)")
            raise Incorrect(message.format(key=key, what=what))
        if have.dtype != want_dtype:
            message = _(
                "{key} is {found} in {what} but {expected} in {owner}: "
                "do not convert it (no .double(), .half() or .to(dtype))"
            )
            raise Incorrect(message.format(key=key, found=have.dtype, what=what, expected=want_dtype, owner=owner))
        if have.shape != want.shape:
            message = _("{key} has shape {found} in {what} but {expected} in {owner}")
            raise Incorrect(
                message.format(key=key, found=list(have.shape), what=what, expected=list(want.shape), owner=owner)
            )
        with torch._C.DisableTorchFunctionSubclass():  # compare the numbers, whatever the tensors' classes say
            if not torch.equal(have.detach().cpu(), want.detach().cpu().to(want_dtype)):
                differ.append(key)
    if len(differ) > 1:
        message = _("{key} (and {more} more) in {what} differs from {owner}: {advice}")
        raise Incorrect(message.format(key=differ[0], more=len(differ) - 1, what=what, owner=owner, advice=advice))
    if differ:
        message = _("{key} in {what} differs from {owner}: {advice}")
        raise Incorrect(message.format(key=differ[0], what=what, owner=owner, advice=advice))


def solution_text(qid: str) -> str:
    """The worked answer to ``qid`` in the chosen language, from ``solutions.json`` (generated from
    the solution notebooks of both editions).

    Example:
        >>> print(solution_text("lesson01.q3"))
        q3_answer = "b"
    """
    editions = json.loads(Path(__file__).with_name("solutions.json").read_text(encoding="utf-8"))
    for edition in (language(), "en"):  # the Chinese solution notebooks' comments are in Chinese
        if qid in editions.get(edition, {}):
            return editions[edition][qid]
    raise KeyError(f"no worked solution for {qid} in solutions.json: run `make exercises`")


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
        # NFKC: a full-width ｂ, as a Chinese input method types it, is b
        value = unicodedata.normalize("NFKC", str(answer[name])).strip().lower()
        if value not in options:
            message = _("answer with one letter of {letters}, e.g. {name} = {example}")
            raise Incorrect(message.format(letters=sorted(options), name=name, example=repr(sorted(options)[0])))
        if value != correct:
            raise Incorrect(_(why.get(value, NOT_THIS_ONE)))
        return f"{correct}) {_(options[correct])}"

    # its None is not torch.save's: say what a choice needs instead
    return Question(
        qid, text, checker, names=[name], hint=hint, none_message=N_("A choice question takes one letter, in quotes")
    )


def _a(value: object) -> str:
    """``value``'s type with its article, for a message: "a dict", "an int", "a Tensor"."""
    name = "dict" if isinstance(value, Mapping) else type(value).__name__
    return (_("an {type}") if name[0].lower() in "aeiou" else _("a {type}")).format(type=name)


def _listed(keys: list[str], most: int = 6) -> str:
    """``keys`` for a message: all of them, or the first ``most`` and how many more."""
    shown = ", ".join(repr(k) for k in keys[:most])
    more = _(", ... ({count} in all)").format(count=len(keys)) if len(keys) > most else ""
    return f"[{shown}{more}]"


def require_file(value: object, name: str, how: str) -> Path:
    """``value`` (a notebook variable) as the path of an existing file; ``how`` says how to write it.

    Example:
        >>> require_file({"w": 1}, "weights_path", "save it")
        Traceback (most recent call last):
        ...
        lesson_utils.exercises.core.Incorrect: `weights_path` should be a path (a str or Path), not a dict
    """
    if not isinstance(value, (str, os.PathLike)):
        raise Incorrect(_("`{name}` should be a path (a str or Path), not {found}").format(name=name, found=_a(value)))
    path = Path(value)
    if path.is_dir():
        message = _("`{name}` is the folder {path}, not a file: point it at the file itself ({how})")
        raise Incorrect(message.format(name=name, path=path, how=how))
    if not path.is_file():
        raise Incorrect(_("there is no file at {path}: {how}").format(path=path, how=how))
    return path


def load_weights_only(value: object, name: str, how: str) -> object:
    """What ``torch.load(value, weights_only=True)`` returns, or :class:`Incorrect` saying why it cannot."""
    import pickle

    import torch

    path = require_file(value, name, how)
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # a zip archive, or a legacy pickle
        if not head:
            message = _("{path} is not a file written by torch.save (empty): {how}")
        else:
            message = _("{path} is not a file written by torch.save (other bytes): {how}")
        raise Incorrect(message.format(path=path, how=how))
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        message = _(
            "{path} does not load with weights_only=True: it holds objects, not only tensors (did you save the "
            "model or optimizer object itself, or a method without its ()?). Save state_dicts."
        )
        raise Incorrect(message.format(path=path)) from None
    except Exception as error:
        message = _("torch.load cannot read {path} ({error_type}): {how}")
        raise Incorrect(message.format(path=path, error_type=type(error).__name__, how=how)) from None


def require_module(value: object, name: str) -> None:
    """:class:`Incorrect` unless ``value`` is an ``nn.Module``, saying what it is instead."""
    import torch

    if isinstance(value, torch.nn.Module):
        return
    if isinstance(getattr(value, "__self__", None), torch.nn.Module):  # model.eval without ()
        message = _("`{name}` is the method `{method}` of a model, not the model: add the ()")
        raise Incorrect(message.format(name=name, method=value.__name__))
    if type(value).__name__ == "_IncompatibleKeys":
        message = _(
            "`{name}` holds what load_state_dict returned (its report of missing and unexpected keys), not the "
            "model: call {name}.load_state_dict(...) on its own line, without `{name} = `"
        )
        raise Incorrect(message.format(name=name))
    if isinstance(value, Mapping):
        message = _("`{name}` is a dict (a state_dict?), not a model: build the model, then load the dict into it")
        raise Incorrect(message.format(name=name))
    if isinstance(value, (str, os.PathLike)):
        raise Incorrect(
            _("`{name}` is a path, not a model: build the model, then load the file into it").format(name=name)
        )
    raise Incorrect(_("`{name}` should be the model (an nn.Module), not {found}").format(name=name, found=_a(value)))


def require_optimizer_for(optimizer: object, model: object, name: str, model_name: str, bug: str = "") -> None:
    """:class:`Incorrect` unless ``optimizer`` is an optimizer that updates exactly ``model``'s parameters."""
    import torch

    if not isinstance(optimizer, torch.optim.Optimizer):
        what = _("a dict (a state_dict?)") if isinstance(optimizer, Mapping) else _a(optimizer)
        raise Incorrect(_("`{name}` should be a torch.optim optimizer, not {found}").format(name=name, found=what))
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if any(p.is_meta for p in held):
        message = _(
            "`{name}` holds meta tensors (no data): it was built before load_state_dict(..., assign=True) "
            "replaced {model}'s parameters. Create the optimizer after the load"
        )
        raise Incorrect(message.format(name=name, model=model_name))
    if {id(p) for p in held} != {id(p) for p in model.parameters()}:
        if bug:
            message = _(
                "`{name}` does not update exactly `{model}`'s parameters: build it with {model}.parameters(), "
                "after the load if that uses assign=True (which replaces the parameters). {bug}"
            )
        else:
            message = _(
                "`{name}` does not update exactly `{model}`'s parameters: build it with {model}.parameters(), "
                "after the load if that uses assign=True (which replaces the parameters)"
            )
        raise Incorrect(message.format(name=name, model=model_name, bug=bug))


def require_net(value: object, name: str, origin: str | None = None) -> None:
    """:class:`Incorrect` unless ``value`` is a ``Net`` itself (not a subclass, not another model).

    ``origin`` (translated by the caller) says where the Net was built: "the set-up cell" if left out.

    Example:
        >>> import torch
        >>> require_net(torch.nn.Linear(1, 1), "net")
        Traceback (most recent call last):
        ...
        lesson_utils.exercises.core.Incorrect: `net` should be a Net, as in the set-up cell, not a Linear: ...
    """
    from lesson_utils.models import Net

    require_module(value, name)
    if type(value) is not Net:
        message = _(
            "`{name}` should be a Net, as in {origin}, not a {type}: "
            "build it with Net() (run the set-up cell again if you replaced it)"
        )
        origin = _("the set-up cell") if origin is None else origin
        raise Incorrect(message.format(name=name, origin=origin, type=type(value).__name__))


def require_setup_net(net: object) -> None:
    """:class:`Incorrect` unless ``net`` is the set-up cell's ``Net``: that class, with its seed-0 weights."""
    require_net(net, "net")
    require_same_tensors(
        net.state_dict(),
        seed0_net_state(),
        _("the set-up cell's net (seed 0)"),
        _("do not change or replace `net`: run the set-up cell again"),
        what="`net`",
    )


def seed0_net_state(**kwargs: object) -> dict:
    """The weights ``seed_everything(0); Net(**kwargs)`` starts with: the set-up cells' ``net``.

    Built on the CPU with the random state forked, so the notebook's own random numbers are
    left as they were.
    """
    import torch

    from lesson_utils.models import Net

    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        torch.manual_seed(0)
        return Net(**kwargs).state_dict()
