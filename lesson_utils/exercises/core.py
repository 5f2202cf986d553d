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

import importlib
import json
import math
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import safetensors  # noqa: F401 - imported so that ORIGINALS can capture their functions below
import safetensors.torch  # noqa: F401
import torch
import torch.serialization

from lesson_utils.i18n import N_, _, language

NOT_ATTEMPTED, INCORRECT, CORRECT = "not attempted", "incorrect", "correct"
RESULTS: dict[str, Result] = {}
NOT_THIS_ONE = N_("not this one: read the question again")  # a wrong choice without its own explanation

# The library functions and methods the checkers use (directly, or through the library's own code), as they
# were when this module was imported, before a notebook cell could replace any of them: a check puts them back
# while it runs (:func:`originals_in_place`), so `torch.load = ...` or `safetensors.torch.load_file = ...` in
# a notebook answers nothing. A model's tensors are read from its modules' own registries, never through a
# method the object could have replaced (:func:`state_of`): `model.state_dict = lambda: ...` answers nothing either.
WATCHED = {
    "torch": ("load", "save", "equal", "allclose"),
    "torch.serialization": (
        "load",
        "save",
        "get_unsafe_globals_in_checkpoint",
        "get_safe_globals",
        "add_safe_globals",
        "clear_safe_globals",
        "safe_globals",
    ),
    "torch.nn.Module": (
        "state_dict",
        "_save_to_state_dict",
        "named_parameters",
        "parameters",
        "named_modules",
        "modules",
        "named_buffers",
        "buffers",
        "named_children",
        "children",
        "_named_members",
        "__getattr__",
    ),
    "torch.optim.Optimizer": ("state_dict", "load_state_dict"),
    "torch.Tensor": ("data_ptr", "untyped_storage", "detach", "to", "__eq__", "tolist", "numpy"),
    "safetensors": ("safe_open",),
    "safetensors.torch": ("load_file", "load", "safe_open"),
}
_ABSENT = object()  # an attribute the owner did not define itself (it inherits it)


def _owner(dotted: str) -> object:
    module, _dot, attribute = dotted.rpartition(".")
    if dotted in sys.modules:
        return sys.modules[dotted]
    return getattr(importlib.import_module(module), attribute)


ORIGINALS = {  # (owner, name): the attribute as found at import
    (owner, name): vars(_owner(owner)).get(name, _ABSENT) for owner, names in WATCHED.items() for name in names
}


@contextmanager
def originals_in_place() -> Iterator[None]:
    """While the block runs, every attribute of :data:`WATCHED` is the one this module found at import;
    afterwards, what the notebook had put there is back.

    Example:
        >>> real, torch.load = torch.load, lambda *args, **kwargs: "forged"
        >>> with originals_in_place():
        ...     torch.load is real
        True
        >>> torch.load("x")
        'forged'
        >>> torch.load = real
    """
    changed = []
    for (dotted, name), original in ORIGINALS.items():
        owner = _owner(dotted)
        now = vars(owner).get(name, _ABSENT)
        if now is not original:
            changed.append((owner, name, now))
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
    try:
        yield
    finally:
        for owner, name, now in changed:
            if now is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, now)


def modules_of(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``model.named_modules()``, read from the modules' own registries (``_modules``), whatever methods a
    notebook replaced on the objects."""
    found, seen, stack = [], set(), [("", model)]
    while stack:
        prefix, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        found.append((prefix, module))
        own = vars(module).get("_modules", {})
        children = [(f"{prefix}.{k}" if prefix else k, m) for k, m in own.items() if m is not None]
        stack.extend(reversed(children))
    return found


def parameters_of(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """``model.named_parameters()``: each parameter once, under its first name, read from the modules' registries."""
    found, seen = [], set()
    for prefix, module in modules_of(model):
        for key, parameter in vars(module).get("_parameters", {}).items():
            if parameter is not None and id(parameter) not in seen:
                seen.add(id(parameter))
                found.append((f"{prefix}.{key}" if prefix else key, parameter))
    return found


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What ``torch.nn.Module.state_dict(model)`` returns (every parameter and persistent buffer, tied ones under
    each name, detached), read from the modules' registries: the tensors the model computes with, whatever
    method a notebook replaced on the objects or state_dict hook it registered.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
        >>> model.state_dict = lambda: {"0.weight": torch.zeros(1, 2)}  # answers for the model: not read
        >>> list(state_of(model)) == list(torch.nn.Module.state_dict(model))
        True
    """
    state: dict[str, torch.Tensor] = {}

    def read(module: torch.nn.Module, prefix: str) -> None:
        own = vars(module)
        for key, parameter in own.get("_parameters", {}).items():
            if parameter is not None:
                state[prefix + key] = parameter.detach()
        skipped = own.get("_non_persistent_buffers_set", set())
        for key, buffer in own.get("_buffers", {}).items():
            if buffer is not None and key not in skipped:
                state[prefix + key] = buffer.detach()
        for key, child in own.get("_modules", {}).items():
            if child is not None:
                read(child, f"{prefix}{key}.")

    with torch_as_installed():
        read(model, "")
    return state


def optimizer_state_of(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` as torch.optim.Optimizer computes it, whatever was replaced on the object."""
    return ORIGINALS[("torch.optim.Optimizer", "state_dict")](optimizer)


def torch_load(path: object, **options: object) -> object:
    """``torch.load(path, weights_only=True, **options)`` with the torch.load this module found at import."""
    return ORIGINALS[("torch", "load")](path, weights_only=True, **options)


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
    """An exercise question. ``names`` are the notebook variables its checker receives.

    ``optional`` names are passed too, but may be missing (None): the set-up's objects that an
    answer uses up (``del ddp_state``), and ``workdir``. A question is "not attempted" only
    while one of ``names`` is None.
    """

    def __init__(
        self,
        qid: str,
        prompt: str,
        checker: Callable[..., str],
        names: list[str],
        hint: str,
        none_message: str = "",
        optional: list[str] | None = None,
    ) -> None:
        self.qid, self.prompt, self.checker, self.names = qid, prompt, checker, names
        self.optional = optional or []
        self._hint = hint
        self.none_message = none_message  # added to "still None": why a real attempt can leave None behind

    def evaluate(self, namespace: Mapping[str, object]) -> Result:
        """Check the answer found in ``namespace`` (a notebook's globals) and record the result.

        The checker runs under :func:`torch_as_installed`: no mode or default the notebook left
        active changes what it computes or compares; and with :func:`originals_in_place`: no library
        function the notebook replaced answers for it.
        """
        values = {name: namespace.get(name) for name in self.names}
        given = {**values, **{name: namespace.get(name) for name in self.optional}}
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
                with originals_in_place(), torch_as_installed():
                    result = Result(self.qid, CORRECT, self.checker(**given))
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
        namespace = sys._getframe(1).f_globals
        result = self.evaluate(namespace)
        error = _error_just_before()
        if error is not None and result.status != INCORRECT:
            first_line = (str(error).strip().splitlines() or [""])[0]
            if result.status == CORRECT:
                message = _(
                    "the cell run just before this check raised {error_type}: {error}. An answer that raises is not "
                    "finished: fix it and run it again (if the error came from another cell, run your answer cell "
                    "again, then check)"
                )
                result = Result(self.qid, INCORRECT, message.format(error_type=type(error).__name__, error=first_line))
            else:  # the error stopped the cell before it set the variables: say so, not "torch.save returns None"
                message = _(
                    "{names} still None: the cell run just before this check raised {error_type}: {error}. It "
                    "stopped there, before it set them: fix it and run it again, then check"
                )
                missing = ", ".join(f"`{n}`" for n in self.names if namespace.get(n) is None)
                result = Result(
                    self.qid,
                    NOT_ATTEMPTED,
                    message.format(names=missing, error_type=type(error).__name__, error=first_line),
                )
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


@contextmanager
def torch_as_installed() -> Iterator[None]:
    """Torch as a fresh process has it, while the block runs: no TorchFunctionMode or
    TorchDispatchMode the notebook left active (``torch.set_default_device`` is one), no tensor
    subclass's ``__torch_function__``, the default dtype float32, autograd recording. (A device
    context, ``with torch.device("meta"):``, is a TorchFunctionMode too: inside, it does nothing.)

    A kernel that the notebook registered over an aten operator with ``torch.library`` stays,
    which is why comparisons read the tensors' memory with numpy (:func:`host_values`).

    Example:
        >>> import torch
        >>> torch.set_default_dtype(torch.float64)
        >>> with torch_as_installed():
        ...     torch.zeros(1).dtype
        torch.float32
        >>> torch.set_default_dtype(torch.float32)
    """
    import torch
    from torch.utils._python_dispatch import _disable_current_modes

    dtype = torch.get_default_dtype()
    with torch._C.DisableTorchFunction(), _disable_current_modes(), torch.inference_mode(False), torch.enable_grad():
        torch.set_default_dtype(torch.float32)
        try:
            yield
        finally:
            torch.set_default_dtype(dtype)


def _numpy_dtype(dtype: object) -> object:
    """The numpy dtype that holds ``dtype``'s numbers exactly (float32 for bfloat16), or None."""
    import numpy as np
    import torch

    table = {
        torch.float16: np.float16,
        torch.float32: np.float32,
        torch.float64: np.float64,
        torch.bfloat16: np.float32,
        torch.complex64: np.complex64,
        torch.complex128: np.complex128,
        torch.bool: np.bool_,
        torch.uint8: np.uint8,
        torch.int8: np.int8,
        torch.int16: np.int16,
        torch.int32: np.int32,
        torch.int64: np.int64,
    }
    return table.get(dtype)


def host_values(tensor: object) -> object:
    """``tensor``'s numbers as a numpy array (a copy), read from its memory by numpy: for a tensor on
    the CPU no torch kernel runs, so nothing the notebook registered or left active can change them.
    A tensor elsewhere is copied to the CPU first (under :func:`torch_as_installed`).

    Example:
        >>> import torch
        >>> host_values(torch.arange(6.0).reshape(2, 3)[:, 1])
        array([1., 4.], dtype=float32)
    """
    import ctypes

    import numpy as np
    import torch

    with torch_as_installed():
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
            raise ValueError(f"cannot read a {tensor.layout} {tensor.device} tensor's memory")
        if tensor.device.type != "cpu":
            tensor = tensor.detach().to("cpu")
        size, shape = tensor.element_size(), tuple(tensor.shape)
        bits = np.dtype(f"<u{size}") if size in (1, 2, 4, 8) else np.dtype(f"V{size}")
        if tensor.numel() == 0:
            raw = np.empty(shape, bits)
        else:
            storage = tensor.untyped_storage()
            last = tensor.storage_offset() + sum((n - 1) * s for n, s in zip(shape, tensor.stride(), strict=True))
            if min(tensor.stride(), default=0) < 0 or (last + 1) * size > storage.nbytes():  # never read past it
                raise ValueError("the tensor's view does not fit in its storage")
            memory = (ctypes.c_char * (storage.nbytes() // size * size)).from_address(storage.data_ptr())
            flat = np.frombuffer(memory, dtype=bits)[tensor.storage_offset() :]
            strides = [stride * size for stride in tensor.stride()]
            raw = np.lib.stride_tricks.as_strided(flat, shape, strides, writeable=False).copy()
        if tensor.dtype == torch.bfloat16:
            values = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            kind = _numpy_dtype(tensor.dtype)
            values = raw if kind is None else raw.view(kind)
        if tensor.is_neg():  # a lazy negation: the memory holds the numbers' opposites
            values = -values
        if tensor.is_conj():
            values = np.conj(values)
        return values


def same_values(found: object, expected: object, dtype: object = None) -> bool:
    """Whether ``found`` is a tensor of ``dtype`` (default: ``expected``'s) with ``expected``'s shape
    and numbers, bit for bit (``expected`` converted exactly when the dtypes differ).

    Example:
        >>> import torch
        >>> same_values(torch.ones(2), torch.ones(2)), same_values(torch.ones(2).double(), torch.ones(2))
        (True, False)
        >>> same_values(torch.ones(2).double(), torch.ones(2), torch.float64)
        True
    """
    import torch

    with torch_as_installed():
        dtype = dtype or expected.dtype
        if not torch.is_tensor(found) or found.dtype != dtype or tuple(found.shape) != tuple(expected.shape):
            return False
        want = host_values(expected)
        if dtype != expected.dtype:
            want = want.astype(_numpy_dtype(dtype))
        have = host_values(found)
        return have.dtype == want.dtype and have.tobytes() == want.tobytes()


def close_values(found: object, expected: object, rtol: float, atol: float) -> bool:
    """Whether ``found`` has ``expected``'s dtype and shape and its numbers up to ``rtol``/``atol``
    (``numpy.allclose`` on :func:`host_values`).

    Example:
        >>> import torch
        >>> close_values(torch.ones(2) + 1e-7, torch.ones(2), 1e-4, 1e-6)
        True
    """
    import numpy as np
    import torch

    with torch_as_installed():
        if not torch.is_tensor(found) or (found.dtype, tuple(found.shape)) != (expected.dtype, tuple(expected.shape)):
            return False
        have, want = host_values(found).astype(np.float64), host_values(expected).astype(np.float64)
        return bool(np.allclose(have, want, rtol=rtol, atol=atol))


def same_state(found: object, expected: object, rtol: float | None = None) -> bool:
    """Whether the nested state ``found`` (dicts, lists, tuples, tensors, settings: a state_dict, an optimizer's,
    a checkpoint) is ``expected``: the same keys and layout, plain tensors equal bit for bit (:func:`same_values`),
    or to ``rtol`` (and an absolute 1e-6: float rounding, another thread count) if given, and the same settings
    (:func:`same_setting`).

    Example:
        >>> same_state({"w": [torch.ones(2)], "lr": 0.1}, {"w": [torch.ones(2)], "lr": 0.1})
        True
        >>> same_state({"w": torch.ones(2) + 1e-7}, {"w": torch.ones(2)}), same_state({"w": torch.ones(2) + 1e-7},
        ...     {"w": torch.ones(2)}, rtol=1e-4)
        (False, True)
    """
    if isinstance(expected, Mapping):
        return (
            isinstance(found, Mapping)
            and found.keys() == expected.keys()
            and all(same_state(found[k], v, rtol) for k, v in expected.items())
        )
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(found, (list, tuple))
            and len(found) == len(expected)
            and all(same_state(f, e, rtol) for f, e in zip(found, expected, strict=True))
        )
    if torch.is_tensor(expected):
        if type(found) not in (torch.Tensor, torch.nn.Parameter):
            return False
        return same_values(found, expected) if rtol is None else close_values(found, expected, rtol, 1e-6)
    return same_setting(found, expected)


def relative_distance(found: object, expected: object) -> float:
    """``|found - expected| / |expected|`` (Euclidean norms over all numbers; inf if they cannot be compared).

    Example:
        >>> import torch
        >>> round(relative_distance(torch.tensor([3.0, 4.0]) * 1.01, torch.tensor([3.0, 4.0])), 4)
        0.01
    """
    import numpy as np
    import torch

    with torch_as_installed():
        if not torch.is_tensor(found) or tuple(found.shape) != tuple(expected.shape):
            return float("inf")
        have, want = host_values(found).astype(np.float64), host_values(expected).astype(np.float64)
        scale = np.linalg.norm(want)
        return float(np.linalg.norm(have - want) / scale) if scale > 0 else float("inf")


def _as_installed(function: Callable) -> Callable:
    """``function``, run under :func:`torch_as_installed` (a helper may be called outside a check)."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: object, **kwargs: object) -> object:
        with torch_as_installed():
            return function(*args, **kwargs)

    return wrapper


@_as_installed
def require_same_tensors(
    found: object,
    expected: Mapping[str, object],
    owner: str | None = None,
    advice: str | None = None,
    what: str | None = None,
    dtype: object = None,
    changed: str | None = None,
) -> None:
    """Raise :class:`Incorrect` unless ``found`` has exactly ``expected``'s keys and equal tensors.

    Equal means same dtype (``dtype`` if given, else the expected one), same shape and the same
    numbers, bit for bit (:func:`same_values`): ``torch.equal`` alone would accept a float64 copy
    of float32 weights. ``owner`` names ``expected`` and ``what`` names ``found`` in the
    messages, and ``advice`` says what to do when the numbers differ; the caller passes them
    translated (``_("the file")``), and left out they are "net's state_dict", "save
    net.state_dict() itself" and "yours". ``changed``, if given, is the advice when every
    tensor that differs is close to the expected one (within 5%): loaded, then changed a little.

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
        if not same_values(have, want, want_dtype):  # the numbers in memory, whatever modes or classes say
            differ.append(key)
    if differ and changed is not None and all(relative_distance(found[k], expected[k]) < 0.05 for k in differ):
        message = _("{key} in {what} is close to {owner} but not equal: {advice}")
        raise Incorrect(message.format(key=differ[0], what=what, owner=owner, advice=changed))
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


LETTER = re.compile(r"[(\[]?\s*([a-z])\s*(?:[)\].:,、-]|\s|$)\s*(.*)", re.DOTALL)  # "(b)", "b.", "b) text"


def _words(text: str) -> str:
    """``text`` for comparing an option's text: letters and digits only, lower case (NFKC: full-width is plain)."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if c.isalnum())


def chosen(answer: object, options: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The letter a choice answer names, written as students write it: ``"b"``, ``" B "``, ``"(b)"``, ``"b."``,
    ``"b)"``, ``"b: ..."``, ``"ｂ"``, ``"b) the option's text"``, or the option's text alone (in English or in the
    chosen language). Returns ``(letter, other)``: ``other`` is the letter whose option the text after the
    letter is, when that is another option; ``(None, None)`` when no letter can be read.

    Example:
        >>> options = {"a": "only the parameters", "b": "the parameters and the buffers"}
        >>> chosen(" (b) ", options), chosen("b) the parameters and the buffers", options), chosen("b.", options)
        (('b', None), ('b', None), ('b', None))
        >>> chosen("b) only the parameters", options), chosen("both", options), chosen("Only the parameters", options)
        (('b', 'a'), (None, None), ('a', None))
    """
    value = unicodedata.normalize("NFKC", str(answer)).strip().lower()
    texts = {key: {_words(text), _words(_(text))} - {""} for key, text in options.items()}

    def says(words: str, key: str) -> bool:  # the option's text, whole or its first words (6 characters at least)
        return any(words == text or (len(words) >= 6 and text.startswith(words)) for text in texts[key])

    if value in options:
        return value, None
    match = LETTER.fullmatch(value)
    if match is None or match.group(1) not in options:  # no letter first: the option's text alone?
        said = [key for key in options if _words(value) and says(_words(value), key)]
        return (said[0], None) if len(said) == 1 else (None, None)
    letter, rest = match.group(1), _words(match.group(2))
    if not rest or says(rest, letter):
        return letter, None
    if all(word in options or word in ("and", "or") for word in re.findall(r"\w+", match.group(2))):
        return None, None  # "b, c", "b or c": several letters
    others = [key for key in options if key != letter and says(rest, key)]
    return letter, (others[0] if others else None)


def choice(qid: str, prompt: str, options: dict[str, str], correct: str, why: dict[str, str], hint: str) -> Question:
    """A multiple-choice question answered by setting ``<qid's last part>_answer = "b"`` (a letter written as
    students write it is read too: :func:`chosen`).

    Example:
        >>> q = choice("x.q9", "Pick b", {"a": "no", "b": "yes"}, "b", {"a": "not a"}, hint="b")
        >>> q.evaluate({"q9_answer": "a"}).message, q.evaluate({"q9_answer": "(b)"}).status
        ('not a', 'correct')
    """
    name = qid.rsplit(".", 1)[-1] + "_answer"
    text = prompt + "\n" + "\n".join(f"  {key}) {value}" for key, value in options.items())

    def checker(**answer: object) -> str:
        letter, other = chosen(answer[name], options)
        if letter is None:
            message = _("answer with one letter of {letters}, e.g. {name} = {example}")
            raise Incorrect(message.format(letters=sorted(options), name=name, example=repr(sorted(options)[0])))
        if other is not None:
            message = _(
                "you wrote the letter {letter}, but the text after it is option {other}'s ({text}): which one do you "
                "mean? Answer with its letter alone, e.g. {name} = {example}"
            )
            raise Incorrect(
                message.format(letter=letter, other=other, text=_(options[other]), name=name, example=repr(letter))
            )
        if letter != correct:
            raise Incorrect(_(why.get(letter, NOT_THIS_ONE)))
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


def require_folder(value: object, name: str, how: str) -> Path:
    """``value`` (a notebook variable) as the path of an existing folder; ``how`` says how to make it.

    Example:
        >>> require_folder(__file__, "run_dir", "make it with mkdir()")
        Traceback (most recent call last):
        ...
        lesson_utils.exercises.core.Incorrect: `run_dir` is the file ...core.py, not a folder: make it with mkdir()
    """
    if not isinstance(value, (str, os.PathLike)):
        raise Incorrect(_("`{name}` should be a path (a str or Path), not {found}").format(name=name, found=_a(value)))
    folder = Path(value)
    if folder.is_file():
        raise Incorrect(_("`{name}` is the file {path}, not a folder: {how}").format(name=name, path=folder, how=how))
    if not folder.is_dir():
        raise Incorrect(_("there is no folder at {path}: {how}").format(path=folder, how=how))
    return folder


def load_weights_only(value: object, name: str, how: str) -> object:
    """What ``torch.load(value, weights_only=True)`` returns, or :class:`Incorrect` saying why it cannot."""
    import pickle

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
        return torch_load(path)
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
    if {id(p) for p in held} != {id(p) for _key, p in parameters_of(model)}:
        message = _(
            "`{name}` does not update exactly `{model}`'s parameters: build it with {model}.parameters(), "
            "after the load if that uses assign=True (which replaces the parameters)"
        ).format(name=name, model=model_name)
        raise Incorrect(_("{message}. {reason}").format(message=message, reason=bug) if bug else message)


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
        state_of(net),
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

    with torch.random.fork_rng(devices=[]), torch_as_installed():  # on the CPU, whatever the default device
        torch.manual_seed(0)
        return Net(**kwargs).state_dict()


def require_in_workdir(
    path: object, workdir: object, name: str, lesson: str | None = None, new_folder: bool = False
) -> None:
    """:class:`Incorrect` unless the file ``path`` (the variable ``name``) lies inside the folder
    ``workdir``, as the question asks (a relative path lands next to the notebook instead).

    ``lesson`` ("01"): ``workdir`` must be that lesson's set-up folder, which
    ``tempfile.mkdtemp(prefix="exercises01-")`` names; without it, any existing folder will do.
    ``new_folder``: ``path`` is a folder the question asks to make in ``workdir``, so not ``workdir`` itself.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp(prefix="exercises01-"))
        >>> require_in_workdir(folder / "sub" / "w.pt", folder, "weights_path", "01")
        >>> require_in_workdir("w.pt", folder, "weights_path", "01")
        Traceback (most recent call last):
        ...
        lesson_utils.exercises.core.Incorrect: `weights_path` is the relative path w.pt: it lands next to ...
    """
    if workdir is None:
        raise Incorrect(_("`workdir` is not defined: run the set-up cell again (it makes workdir)"))
    if not isinstance(workdir, (str, os.PathLike)) or not Path(workdir).is_dir():
        message = _("`workdir` should be the set-up cell's folder, not {found}: run the set-up cell again")
        raise Incorrect(message.format(found=_a(workdir) if not isinstance(workdir, (str, os.PathLike)) else workdir))
    folder = Path(workdir).resolve()
    if lesson is not None and not folder.name.startswith(f"exercises{lesson}-"):
        message = _(
            "`workdir` is {folder}, not the set-up cell's folder (a temporary folder named {prefix}...): run the "
            "set-up cell again and leave `workdir` as it makes it"
        )
        raise Incorrect(message.format(folder=folder, prefix=f"exercises{lesson}-"))
    place = Path(path)
    if new_folder and place.resolve() == folder:
        message = _(
            "`{name}` is `workdir` itself, which holds the set-up's files too: make a new folder in it for this "
            "answer (workdir / {example!r}), as the question asks"
        )
        raise Incorrect(message.format(name=name, example=name.removesuffix("_dir")))
    if place.resolve().is_relative_to(folder):
        return
    if not place.is_absolute():
        message = _(
            "`{name}` is the relative path {path}: it lands next to the notebook ({cwd}), not in `workdir`. "
            "Write the file into workdir: workdir / {file!r}"
        )
    elif Path(os.path.abspath(place)).is_relative_to(folder):
        message = _(
            "`{name}` is a link in `workdir` to {target}, outside it: write the file itself into workdir "
            "(workdir / {file!r})"
        )
    else:
        message = _(
            "{path} is not in `workdir` ({folder}): write the file there (workdir / {file!r}). If you ran the "
            "set-up cell again, it made a new workdir: run your answer cell again"
        )
    raise Incorrect(
        message.format(name=name, path=place, cwd=Path.cwd(), file=place.name, target=place.resolve(), folder=folder)
    )


def require_training_mode(model: torch.nn.Module, name: str) -> None:
    """:class:`Incorrect` unless ``model`` and every part of it are in training mode, as a resumed model
    that goes on training must be (the question asks for a resume, not a model for predicting).

    Example:
        >>> require_training_mode(torch.nn.Sequential(torch.nn.Linear(1, 1)).eval(), "model")
        Traceback (most recent call last):
        ...
        lesson_utils.exercises.core.Incorrect: `model` is in eval mode: a resume goes on training, ...
    """
    parts = modules_of(model)
    if not vars(model).get("training", True):
        message = _(
            "`{name}` is in eval mode: a resume goes on training, so leave it in training mode ({name}.train(); "
            "eval() is for predicting, and changes what Dropout and BatchNorm do)"
        )
        raise Incorrect(message.format(name=name))
    resting = [prefix for prefix, module in parts if not vars(module).get("training", True)]
    if resting:
        message = _(
            "`{name}` is in training mode but its part `{part}` is in eval mode: a resume goes on training; call "
            "{name}.train() last"
        )
        raise Incorrect(message.format(name=name, part=resting[0]))


IMPLEMENTATION = {"foreach", "fused", "differentiable", "capturable"}  # how a step runs, not what it computes
PLAIN = (int, float, bool, complex, str, type(None))  # setting types whose == is Python's own


def same_setting(found: object, expected: object) -> bool:
    """Whether an optimizer setting (a number, a bool, a tuple such as Adam's betas) is ``expected``. A float
    equals another within float32's precision (a relative 1e-7): ``torch.tensor(0.001).item()`` is 0.001 as a
    learning rate, 0.00100001 is not.

    Example:
        >>> same_setting(0.9, 0.9), same_setting([0.9, 0.999], (0.9, 0.999)), same_setting(0.02, 0.2)
        (True, True, False)
        >>> same_setting(0.0010000000474974513, 0.001), same_setting(0.00100001, 0.001), same_setting(True, 1.0)
        (True, False, False)
    """
    if torch.is_tensor(found) or torch.is_tensor(expected):  # lr=torch.tensor(0.02): compare the number it holds
        values = [host_values(v).tolist() if torch.is_tensor(v) else v for v in (found, expected)]
        return same_setting(*values)
    if isinstance(found, (list, tuple)) and isinstance(expected, (list, tuple)):
        return len(found) == len(expected) and all(same_setting(f, e) for f, e in zip(found, expected, strict=True))
    numbers = [type(v) in (int, float) for v in (found, expected)]
    if all(numbers) and float in (type(found), type(expected)):
        return math.isclose(found, expected, rel_tol=1e-7, abs_tol=0.0)
    if type(found) is bool or type(expected) is bool:
        return type(found) is type(expected) and found == expected
    return type(found) in PLAIN and found == expected  # a class of the notebook's own could equal anything


def different_setting(found: Mapping, expected: Mapping) -> str | None:
    """The first hyperparameter of the parameter group ``expected`` that ``found`` lacks or holds
    otherwise (``params`` and the :data:`IMPLEMENTATION` switches are not compared), or None.

    Example:
        >>> different_setting({"lr": 0.1, "nesterov": True, "foreach": True}, {"lr": 0.1, "nesterov": False})
        'nesterov'
    """
    for key, value in expected.items():
        if key in ("params", "param_names") or key in IMPLEMENTATION:
            continue
        if key not in found or not same_setting(found[key], value):
            return key
    return None


@_as_installed
def require_resumed_optimizer(
    optimizer: object,
    model: object,
    saved: Mapping,
    name: str,
    model_name: str,
    settings: Mapping[str, object] | None = None,
) -> None:
    """:class:`Incorrect` unless ``optimizer`` (already known to update exactly ``model``'s parameters)
    resumes ``saved``, an optimizer's state_dict, completely: every parameter trainable; the same
    parameter groups, holding the parameters in the saved order; every hyperparameter as saved,
    or as ``settings`` (the question's stated change, ``{"lr": 0.001}``) says; and every state
    value of every parameter equal to the saved one, placed like its parameter (dtype, device),
    as ``optimizer.load_state_dict`` places it.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> saved = torch.optim.SGD(model.parameters(), lr=0.1).state_dict()
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        >>> optimizer.load_state_dict(saved)  # brings lr=0.1 back
        >>> require_resumed_optimizer(optimizer, model, saved, "optimizer", "model")
        >>> optimizer.param_groups[0]["weight_decay"] = 0.01
        >>> require_resumed_optimizer(optimizer, model, saved, "optimizer", "model")
        Traceback (most recent call last):
        ...
        lesson_utils.exercises.core.Incorrect: `optimizer` has weight_decay=0.01, but the checkpoint says ...
    """
    import torch

    settings = settings or {}
    named = parameters_of(model)
    frozen = [key for key, parameter in named if not parameter.requires_grad]
    if frozen:
        message = _(
            "{key} of `{model}` has requires_grad=False: `{name}` would never change it. A resume trains every "
            "parameter: {model}.requires_grad_(True)"
        )
        raise Incorrect(message.format(key=frozen[0], model=model_name, name=name))
    groups, saved_groups = optimizer.param_groups, saved["param_groups"]
    if len(groups) != len(saved_groups):
        message = _(
            "`{name}` has {found} parameter group(s), the checkpoint {expected}: build it with "
            "{model}.parameters(), then load its state"
        )
        raise Incorrect(message.format(name=name, found=len(groups), expected=len(saved_groups), model=model_name))
    for group, saved_group in zip(groups, saved_groups, strict=True):
        order = [named[i][1] if isinstance(i, int) and 0 <= i < len(named) else None for i in saved_group["params"]]
        if [id(p) for p in group["params"]] != [id(p) for p in order]:
            message = _(
                "`{name}` holds `{model}`'s parameters in another order than the checkpoint's optimizer: each saved "
                "state would go to another parameter. Build it with {model}.parameters(), in their own order"
            )
            raise Incorrect(message.format(name=name, model=model_name))
        expected_group = {**saved_group, **settings}
        key = different_setting(group, expected_group)
        if key in settings:
            message = _("`{name}` has {key}={found}; the question asks for {key}={expected}")
        elif key is not None:
            message = _(
                "`{name}` has {key}={found}, but the checkpoint says {key}={expected}: optimizer.load_state_dict "
                "brings every saved setting back; do not change it afterwards"
            )
        if key is not None:
            raise Incorrect(message.format(name=name, key=key, found=group.get(key), expected=expected_group[key]))
    for index, (key, parameter) in enumerate(named):
        want, have = saved["state"].get(index) or {}, optimizer.state.get(parameter) or {}
        missing, extra = [k for k in want if k not in have], [k for k in have if k not in want]
        if missing:
            message = _("`{name}` has no {entry} for {key}: load the optimizer's state from the checkpoint")
            raise Incorrect(message.format(name=name, entry=missing[0], key=key))
        if extra:
            message = _("`{name}` holds a {entry} for {key} that the checkpoint does not: load its state as it is")
            raise Incorrect(message.format(name=name, entry=extra[0], key=key))
        for entry, value in want.items():
            found = have[entry]
            if not torch.is_tensor(value):
                if not same_setting(found, value):
                    message = _("the {entry} of {key} in `{name}` is {found}, but {expected} in the checkpoint")
                    raise Incorrect(message.format(entry=entry, key=key, name=name, found=found, expected=value))
                continue
            placed = entry != "step" and value.is_floating_point()  # where load_state_dict puts it
            dtype = parameter.dtype if placed else value.dtype
            if not torch.is_tensor(found) or type(found) not in (torch.Tensor, torch.nn.Parameter):
                message = _("the {entry} of {key} in `{name}` is {found}, not a plain tensor")
                raise Incorrect(message.format(entry=entry, key=key, name=name, found=_a(found)))
            if placed and (found.dtype, found.device) != (parameter.dtype, parameter.device):
                message = _(
                    "the {entry} of {key} is {dtype} on {device}, but its parameter is {parameter_dtype} on "
                    "{parameter_device}: convert or move the model first, then build the optimizer and load its state"
                )
                raise Incorrect(
                    message.format(
                        entry=entry,
                        key=key,
                        dtype=found.dtype,
                        device=found.device,
                        parameter_dtype=parameter.dtype,
                        parameter_device=parameter.device,
                    )
                )
            if not same_values(found, value, dtype):
                if relative_distance(found, value) < 0.05:
                    message = _(
                        "the {entry} of {key} in `{name}` is close to the checkpoint's but not equal: it was loaded, "
                        "then changed (a training step?). Load the state again and check before training"
                    )
                else:
                    message = _(
                        "the {entry} of {key} in `{name}` differs from the checkpoint's optimizer_state_dict: load "
                        "the optimizer's state from the checkpoint as it is"
                    )
                raise Incorrect(message.format(entry=entry, key=key, name=name))
