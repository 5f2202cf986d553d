"""Exercises for lesson 07 (devices, models, optimizer state). ``from lesson_utils.exercises import lesson07 as ex``."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    host_values,
    require_file,
    require_in_workdir,
    require_module,
    require_optimizer_for,
    require_resumed_optimizer,
    require_same_tensors,
    same_setting,
    same_values,
)
from lesson_utils.i18n import N_, _


def _saved(checkpoint_path: object) -> dict:
    """The set-up's checkpoint: model_state_dict and optimizer_state_dict (with a momentum buffer per parameter)."""
    try:
        saved = torch.load(Path(str(checkpoint_path)), weights_only=True)
        if not isinstance(saved, dict):
            raise TypeError(f"it holds a {type(saved).__name__}")
        buffers = [s["momentum_buffer"] for s in saved["optimizer_state_dict"]["state"].values()]
        if not buffers or not all(torch.is_tensor(b) for b in buffers):
            raise KeyError("momentum_buffer")
        return {"model": saved["model_state_dict"], "optimizer": saved["optimizer_state_dict"]}
    except Exception as error:  # missing, unreadable, or not the set-up's layout
        message = _(
            "`checkpoint_path` should be the set-up cell's checkpoint (it cannot be read: {error_type}): "
            "run the set-up cell again"
        )
        raise Incorrect(message.format(error_type=type(error).__name__)) from None


def _require_sgd(optimizer: torch.optim.Optimizer, name: str, lr: float) -> None:
    if not isinstance(optimizer, torch.optim.SGD):
        message = _("`{name}` should be torch.optim.SGD, found {type}")
        raise Incorrect(message.format(name=name, type=type(optimizer).__name__))
    for group in optimizer.param_groups:
        if group["momentum"] != 0.9:
            message = _("`{name}` has momentum={momentum}: with momentum 0.9 the saved buffers are used")
            raise Incorrect(message.format(name=name, momentum=group["momentum"]))
        if group["lr"] != lr:
            message = _("`{name}` has lr={lr}, the question asks for lr={wanted}")
            raise Incorrect(message.format(name=name, lr=group["lr"], wanted=lr))


def _require_loaded(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict, name: str, model_name: str, **options
) -> None:
    """The model holds the checkpoint's weights (in ``dtype`` if given) and the optimizer resumes the
    checkpoint's optimizer completely (with the question's ``settings``, if any)."""
    require_same_tensors(
        model.state_dict(),
        saved["model"],
        _("the checkpoint's model_state_dict"),
        _("load model_state_dict into the model"),
        what=_("the model"),
        dtype=options.get("dtype"),
        changed=_(
            "it was loaded, then changed (a training step?). The resumed model must hold exactly the saved "
            "weights: load again and check before training"
        ),
    )
    if not optimizer.state:
        raise Incorrect(_("the optimizer's state was not loaded: optimizer.load_state_dict(...) from the checkpoint"))
    require_resumed_optimizer(optimizer, model, saved["optimizer"], name, model_name, options.get("settings"))


def _state_where_its_parameters_are(
    model_fp64: object, optimizer_fp64: object, checkpoint_path: object, trained: object
) -> str:
    model, optimizer = model_fp64, optimizer_fp64
    require_module(model, "model_fp64")
    if trained is not None and model is trained:  # trained.double() converts trained itself and returns it
        raise Incorrect(
            _(
                "`model_fp64` is the set-up's `trained` itself (.double() converts a model in place and returns "
                "it), not a resume: build a new Net, load model_state_dict from `checkpoint_path` into it"
            )
        )
    require_optimizer_for(optimizer, model, "optimizer_fp64", "model_fp64")
    if any(t.dtype != torch.float64 for t in model.state_dict().values()):
        raise Incorrect(_("`model_fp64` should train in float64: call .double() (the stand-in for .to(device))"))
    _require_sgd(optimizer, "optimizer_fp64", lr=0.1)
    _require_loaded(model, optimizer, _saved(checkpoint_path), "optimizer_fp64", "model_fp64", dtype=torch.float64)
    return _("the model is in float64 and every momentum buffer was loaded where its parameter is")


q1 = Question(
    "lesson07.q1",
    "Resume from `checkpoint_path` a `Net` (`model_fp64`) that must train in float64 (`.double()`, standing in for "
    "`.to(device)`), with `optimizer_fp64` (SGD, lr=0.1, momentum=0.9) carrying the saved momentum.",
    _state_where_its_parameters_are,
    names=["model_fp64", "optimizer_fp64", "checkpoint_path"],
    optional=["trained"],
    hint=N_("load_state_dict puts the optimizer's state where its parameters are at that moment: convert first."),
)


def _same_state(found: object, expected: object) -> bool:
    """Equal nested state_dicts: same keys, tensors equal bit for bit, equal plain values."""
    if isinstance(expected, Mapping):
        return (
            isinstance(found, Mapping)
            and found.keys() == expected.keys()
            and all(_same_state(found[k], v) for k, v in expected.items())
        )
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(found, (list, tuple))
            and len(found) == len(expected)
            and all(_same_state(f, e) for f, e in zip(found, expected, strict=True))
        )
    if torch.is_tensor(expected):
        return type(found) in (torch.Tensor, torch.nn.Parameter) and same_values(found, expected)
    return same_setting(found, expected)


SIDES = {"generator": "G", "opt_g": "G", "discriminator": "D", "opt_d": "D"}
KINDS = {"generator": "model", "discriminator": "model", "opt_g": "optimizer", "opt_d": "optimizer"}


def _words(key: object) -> list[str]:
    """The words of a key, lower case: "netG" -> ["net", "g"], "opt_d" -> ["opt", "d"], "生成器" -> ["生成器"]."""
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\x00-\x7f]+", str(key))]


def _named_side(word: str) -> str | None:
    if word == "g" or word.startswith("gen") or "生成" in word:
        return "G"
    if word == "d" or word.startswith(("dis", "critic")) or "判别" in word or "鉴别" in word:
        return "D"
    return None


def _named_kind(word: str) -> str | None:
    if word.startswith("opt") or word in ("adam", "sgd") or "优化" in word:
        return "optimizer"
    if word in ("model", "models", "net", "nets", "network", "weights") or "模型" in word or "网络" in word:
        return "model"
    return None


def _named(path: tuple, read: object) -> str | None:
    """What the innermost key of ``path`` that says anything says (``read`` reads one word), or None."""
    for key in reversed(path):
        said = {read(word) for word in _words(key)} - {None}
        if len(said) == 1:
            return said.pop()
    return None


def _entries(value: object, known: list[set], path: tuple = ()) -> Iterator[tuple[tuple, str, Mapping]]:
    """Every state_dict inside a loaded file, with its path of keys: ("optimizer", ...) for what
    ``optimizer.state_dict()`` returns, ("model", ...) for a dict of tensors. A dict of tensors whose
    keys are several models' with a prefix each (``nn.ModuleDict(...).state_dict()``) counts as one
    entry per prefix; ``known`` are the models' own key sets."""
    if isinstance(value, Mapping):
        if "state" in value and "param_groups" in value:
            yield path, "optimizer", value
        elif value and all(isinstance(k, str) and torch.is_tensor(v) for k, v in value.items()):
            prefixes = {k.split(".", 1)[0] for k in value}
            if set(value) not in known and all("." in k for k in value) and len(prefixes) > 1:
                for prefix in prefixes:
                    part = {k.split(".", 1)[1]: v for k, v in value.items() if k.split(".", 1)[0] == prefix}
                    if set(part) in known:
                        yield (*path, prefix), "model", part
            else:
                yield path, "model", value
        else:
            for key, item in value.items():
                yield from _entries(item, known, (*path, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _entries(item, known, (*path, index))


def _shown(path: tuple) -> str:
    return repr(path[0]) if len(path) == 1 else "".join(f"[{key!r}]" for key in path) or _("the file itself")


def _steps(optimizer_state: Mapping) -> int:
    """How many steps an Adam state_dict has taken (its largest 'step'; 0 without state)."""
    steps = [
        int(host_values(s["step"]).max()) if torch.is_tensor(s.get("step")) else int(s.get("step") or 0)
        for s in optimizer_state.get("state", {}).values()
        if isinstance(s, Mapping)
    ]
    return max(steps, default=0)


def _fits(kind: str, entry: Mapping, part: object, model: torch.nn.Module) -> bool:
    """Whether a state_dict has the shape of ``part``'s (a model's keys and shapes; an optimizer's state
    shaped like its model's parameters), whatever its numbers."""
    if kind == "model":
        own = part.state_dict()
        return entry.keys() == own.keys() and all(
            torch.is_tensor(v) and tuple(v.shape) == tuple(own[k].shape) for k, v in entry.items()
        )
    shapes = [tuple(p.shape) for p in model.parameters()]
    state = entry.get("state")
    return isinstance(state, Mapping) and all(
        isinstance(i, int)
        and 0 <= i < len(shapes)
        and isinstance(s, Mapping)
        and all(tuple(v.shape) == shapes[i] for k, v in s.items() if torch.is_tensor(v) and k != "step")
        for i, s in state.items()
    )


def _refuse_entry(kind: str, shown: str, name: str, entry: Mapping, part: object) -> None:
    """Raise :class:`Incorrect` saying why an entry meant for ``part`` (gan[name]) is not its current state."""
    own = part.state_dict()
    if kind == "optimizer" and _steps(entry) != _steps(own):
        message = _(
            "the entry {entry} holds {name}'s state after {saved} step(s), but {name} has taken {now}: save after "
            "the last train_steps"
        )
    elif kind == "optimizer":
        message = _("the entry {entry} (for {name}) is not {name}.state_dict() as it is now: save that, unchanged")
    elif entry.keys() != own.keys() or any(tuple(v.shape) != tuple(own[k].shape) for k, v in entry.items()):
        message = _("the entry {entry} (for {name}) has other keys or shapes than {name}.state_dict(): save that")
    elif any(v.dtype != own[k].dtype for k, v in entry.items()):
        message = _(
            "the entry {entry} (for {name}) holds {found} tensors where {name}'s are {expected}: save the "
            "state_dict as it is (no .half() or .to(dtype))"
        )
    else:
        message = _(
            "the entry {entry} (for {name}) holds other weights than {name} has now (saved before training, "
            "or before the last train_steps?): save after training"
        )
    dtypes = [
        (v.dtype, own[k].dtype) for k, v in entry.items() if kind == "model" and k in own and v.dtype != own[k].dtype
    ]
    found, expected = dtypes[0] if dtypes else (None, None)
    raise Incorrect(
        message.format(entry=shown, name=name, saved=_steps(entry), now=_steps(own), found=found, expected=expected)
    )


def _everything_in_one_file(gan_path: object, gan: object, workdir: object) -> str:
    if not isinstance(gan, dict) or set(gan) != set(SIDES):
        raise Incorrect(_("`gan` is the dict the notebook made: run the set-up cell again"))
    models = {"opt_g": gan["generator"], "opt_d": gan["discriminator"]}
    steps = {name: _steps(gan[name].state_dict()) for name in ("opt_g", "opt_d")}
    if min(steps.values()) < 3:
        raise Incorrect(_("`gan` has not been trained for 3 steps yet: call train_steps(gan, 3) before saving"))
    path = require_file(gan_path, "gan_path", _("save the checkpoint there"))
    require_in_workdir(path, workdir, "gan_path", "07")
    try:
        saved = torch.load(path, weights_only=True)
    except Exception as error:  # a pickled module or optimizer object, or not a torch.save file
        message = _(
            "torch.load(..., weights_only=True) refuses the file ({error_type}): save state_dicts, "
            "not the model or optimizer objects"
        )
        raise Incorrect(message.format(error_type=type(error).__name__)) from None
    current = {name: part.state_dict() for name, part in gan.items()}
    known = [set(current["generator"]), set(current["discriminator"])]
    entries = list(_entries(saved, known))
    places = {}  # an entry's side by its place: two unnamed entries of a kind in one list are in gan's order
    for where, kind, _entry in entries:
        if where and isinstance(where[-1], int) and _named(where, _named_side) is None:
            siblings = [w for w, k, _e in entries if w[:-1] == where[:-1] and k == kind and isinstance(w[-1], int)]
            if len(siblings) == 2:
                places[where] = "GD"[siblings.index(where)]
    meant = {name: [] for name in gan}  # the entries a resume would load into each part
    for where, kind, entry in entries:
        shown, named_kind = _shown(where), _named(where, _named_kind)
        if named_kind is not None and named_kind != kind:
            if kind == "model":
                message = _(
                    "the entry {entry} is named for an optimizer but holds a model's state_dict: name each entry "
                    "after the part it restores"
                )
            else:
                message = _(
                    "the entry {entry} is named for a model but holds an optimizer's state_dict: name each entry "
                    "after the part it restores"
                )
            raise Incorrect(message.format(entry=shown))
        equal = [name for name in gan if KINDS[name] == kind and _same_state(entry, current[name])]
        fitting = [n for n in gan if KINDS[n] == kind and _fits(kind, entry, gan[n], models.get(n, gan[n]))]
        side = _named(where, _named_side) or places.get(where)
        if side is None:
            owners = equal or (fitting if len(fitting) == 1 else [])  # unnamed: what it holds says whose it is
        else:
            owners = [name for name in gan if KINDS[name] == kind and SIDES[name] == side]
            others = [name for name in equal if name not in owners]  # holds another part's state now...
            shaped = [name for name in fitting if name not in owners and not set(fitting) & set(owners)]
            if shaped and not others:  # ...or has another part's keys and shapes only
                message = _(
                    "the entry {entry} is named for {owner} but has {other}'s keys and shapes: a resume by name "
                    "would fail to load it"
                )
                raise Incorrect(message.format(entry=shown, owner=owners[0], other=shaped[0]))
            if others and not set(equal) & set(owners):
                if where in places:
                    message = _(
                        "the entry {entry} is, by its place in the list (gan's order: generator first), for {owner}, "
                        "but holds {other}'s state: a resume in that order would load it into the wrong part"
                    )
                else:
                    message = _(
                        "the entry {entry} is named for {owner} but holds {other}'s state: a resume by name would "
                        "load it into the wrong part"
                    )
                raise Incorrect(message.format(entry=shown, owner=owners[0], other=others[0]))
        for owner in owners:
            meant[owner].append((shown, entry, owner in equal))
    missing = [name for name, found in meant.items() if not found]
    owned = {id(entry) for found in meant.values() for _shown_as, entry, _is_equal in found}
    for name in missing:  # an entry no part can claim, of the missing part's kind: say what is wrong with it
        for where, kind, entry in entries:
            if kind == KINDS[name] and id(entry) not in owned and _fits(kind, entry, gan[name], models.get(name)):
                _refuse_entry(kind, _shown(where), name, entry, gan[name])
    if missing:
        message = _(
            "the file has no state for {names}: every model *and* optimizer must be saved, each as its state_dict, "
            "or the resume differs"
        )
        raise Incorrect(message.format(names=", ".join(missing)))
    for name in ("opt_g", "opt_d", "generator", "discriminator"):  # a step count behind says the most: first
        found = meant[name]
        if not any(is_equal for _shown_as, _entry, is_equal in found):
            shown, entry, _is_equal = found[0]
            _refuse_entry(KINDS[name], shown, name, entry, gan[name])
    if max(steps.values()) > 3:
        message = _("both models and both optimizers are in the file, each as its state_dict (after {steps} steps)")
        return message.format(steps=max(steps.values()))
    return _("both models and both optimizers are in the file, each as its state_dict")


q2 = Question(
    "lesson07.q2",
    "Train `gan` 3 steps with `train_steps(gan, 3)`, then save everything a resume needs into one file in "
    "`workdir` (weights_only-loadable); set `gan_path` to its path. Running the cell again trains 3 more steps "
    "and saves again: that is fine, the file must match the state `gan` is in when you check.",
    _everything_in_one_file,
    names=["gan_path", "gan"],
    optional=["workdir"],
    hint=N_("One dict: {name: part.state_dict() for name, part in gan.items()}; the optimizers are part of it."),
)


def _new_learning_rate(model: object, optimizer: object, checkpoint_path: object, trained: object) -> str:
    require_module(model, "model")
    if trained is not None and model is trained:
        raise Incorrect(
            _(
                "`model` is the set-up's `trained` itself, not a resume: build a new Net, load model_state_dict from "
                "`checkpoint_path` into it, and build the optimizer on it"
            )
        )
    require_optimizer_for(optimizer, model, "optimizer", "model")
    saved = _saved(checkpoint_path)
    rates = [group["lr"] for group in optimizer.param_groups]
    if isinstance(optimizer, torch.optim.SGD) and any(rate != 0.001 for rate in rates):
        saved_rates = [group["lr"] for group in saved["optimizer"]["param_groups"]]
        if rates == saved_rates:
            message = _(
                "the learning rate is {lr}, not 0.001 (the saved one: set it after load_state_dict, which replaces it)"
            )
        else:
            message = _("the learning rate is {lr}, not 0.001")
        raise Incorrect(message.format(lr=rates[0]))
    _require_sgd(optimizer, "optimizer", lr=0.001)
    _require_loaded(model, optimizer, saved, "optimizer", "model", settings={"lr": 0.001})
    return _("the checkpoint's weights and momentum, and the new learning rate")


q3 = Question(
    "lesson07.q3",
    "Resume `optimizer` for `model` from `checkpoint_path` with the saved momentum but a learning rate of 0.001 "
    "(the checkpoint says 0.1).",
    _new_learning_rate,
    names=["model", "optimizer", "checkpoint_path"],
    optional=["trained"],
    hint=N_("optimizer.load_state_dict replaces every hyper-parameter: change the lr after loading."),
)
