"""Exercises for lesson 07 (devices, models, optimizer state). ``from lesson_utils.exercises import lesson07 as ex``."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    host_values,
    optimizer_state_of,
    parameters_of,
    require_file,
    require_in_workdir,
    require_module,
    require_optimizer_for,
    require_resumed_optimizer,
    require_same_tensors,
    require_training_mode,
    same_setting,
    same_state,
    state_of,
    torch_as_installed,
    torch_load,
)
from lesson_utils.i18n import N_, _


def _setup_cell() -> tuple[dict, dict]:
    """What the set-up cell makes, computed here: the checkpoint it saves at `checkpoint_path` (a seed-0 Net and
    its SGD, lr=0.1 and momentum=0.9, after two steps on OfflineShapes(128) in batches of 64), as
    ``{"model": ..., "optimizer": ...}``; and `gan` as it starts, each part's state_dict (the GAN's layers are
    drawn after that training, whose DataLoader drew a seed of its own from the same random numbers)."""
    from torch.utils.data import DataLoader

    from lesson_utils.data import OfflineShapes
    from lesson_utils.models import Net

    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch_as_installed():
        torch.manual_seed(0)
        model = Net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for images, labels in DataLoader(OfflineShapes(128), batch_size=64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
        checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        gan = _new_gan()
        return checkpoint, {name: copy.deepcopy(part.state_dict()) for name, part in gan.items()}


def _new_gan() -> dict:
    """The set-up's `gan`, its layers drawn from the random numbers as they are now."""
    generator = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    discriminator = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    return {
        "generator": generator,
        "discriminator": discriminator,
        "opt_g": torch.optim.Adam(generator.parameters(), lr=1e-2),
        "opt_d": torch.optim.Adam(discriminator.parameters(), lr=1e-2),
    }


def _train_steps(gan: dict, steps: int) -> None:
    """The set-up cell's train_steps(gan, steps), as the notebook defines it."""
    softplus = torch.nn.functional.softplus
    for step in range(steps):
        g = torch.Generator().manual_seed(step)
        noise, real = torch.randn(16, 8, generator=g), torch.randn(16, 2, generator=g) + 3
        fake = gan["generator"](noise)
        d_loss = softplus(-gan["discriminator"](real)).mean() + softplus(gan["discriminator"](fake.detach())).mean()
        gan["opt_d"].zero_grad()
        d_loss.backward()
        gan["opt_d"].step()
        g_loss = softplus(-gan["discriminator"](fake)).mean()
        gan["opt_g"].zero_grad()
        g_loss.backward()
        gan["opt_g"].step()


def _reference_gan(calls: tuple[int, ...]) -> dict:
    """`gan` after the set-up and train_steps(gan, n) for each n in ``calls``: each part's state_dict."""
    start = _setup_cell()[1]
    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch_as_installed():
        gan = _new_gan()
        for name, part in gan.items():
            part.load_state_dict(copy.deepcopy(start[name]))
        for steps in calls:
            _train_steps(gan, steps)
        return {name: copy.deepcopy(part.state_dict()) for name, part in gan.items()}


def _setup_checkpoint() -> dict:
    """The checkpoint the set-up cell saves at `checkpoint_path` (:func:`_setup_cell`)."""
    return _setup_cell()[0]


def _close(found: object, expected: object) -> bool:
    """The same state up to float rounding (another thread count changes the last bits of training)."""
    return same_state(found, expected, rtol=1e-4)


def _saved(checkpoint_path: object) -> dict:
    """The set-up's checkpoint, read from `checkpoint_path`: model_state_dict and optimizer_state_dict, checked
    against what the set-up computes (:func:`_setup_checkpoint`), so that a file written over it is refused."""
    try:
        saved = torch_load(Path(str(checkpoint_path)))
        if not isinstance(saved, dict):
            raise TypeError(f"it holds a {type(saved).__name__}")
        buffers = [s["momentum_buffer"] for s in saved["optimizer_state_dict"]["state"].values()]
        if not buffers or not all(torch.is_tensor(b) for b in buffers):
            raise KeyError("momentum_buffer")
        saved = {"model": saved["model_state_dict"], "optimizer": saved["optimizer_state_dict"]}
    except Exception as error:  # missing, unreadable, or not the set-up's layout
        message = _(
            "`checkpoint_path` should be the set-up cell's checkpoint (it cannot be read: {error_type}): "
            "run the set-up cell again"
        )
        raise Incorrect(message.format(error_type=type(error).__name__)) from None
    if not _close(saved, _setup_checkpoint()):
        raise Incorrect(
            _(
                "the file at `checkpoint_path` is not the set-up cell's checkpoint (its weights, momentum or "
                "settings are not what the set-up trained and saved): run the set-up cell again"
            )
        )
    return saved


def _require_sgd(optimizer: torch.optim.Optimizer, name: str, lr: float) -> None:
    if not isinstance(optimizer, torch.optim.SGD):
        message = _("`{name}` should be torch.optim.SGD, found {type}")
        raise Incorrect(message.format(name=name, type=type(optimizer).__name__))
    for group in optimizer.param_groups:
        if not same_setting(group.get("momentum"), 0.9):
            message = _("`{name}` has momentum={momentum}: with momentum 0.9 the saved buffers are used")
            raise Incorrect(message.format(name=name, momentum=group.get("momentum")))
        if not same_setting(group.get("lr"), lr):
            message = _("`{name}` has lr={lr}, the question asks for lr={wanted}")
            raise Incorrect(message.format(name=name, lr=group.get("lr"), wanted=lr))


def _require_loaded(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict, name: str, model_name: str, **options
) -> None:
    """The model holds the checkpoint's weights (in ``dtype`` if given) and the optimizer resumes the
    checkpoint's optimizer completely (with the question's ``settings``, if any)."""
    require_same_tensors(
        state_of(model),
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
    require_training_mode(model, model_name)


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
    if any(t.dtype != torch.float64 for t in state_of(model).values()):
        raise Incorrect(_("`model_fp64` should train in float64: call .double() (the stand-in for .to(device))"))
    saved = _saved(checkpoint_path)
    _require_sgd(optimizer, "optimizer_fp64", lr=0.1)
    _require_loaded(model, optimizer, saved, "optimizer_fp64", "model_fp64", dtype=torch.float64)
    return _("the model is in float64 and every momentum buffer was loaded where its parameter is")


q1 = Question(
    "lesson07.q1",
    "Resume from `checkpoint_path` a `Net` (`model_fp64`) that must train in float64 (`.double()`, standing in for "
    "`.to(device)`), with `optimizer_fp64` (SGD, lr=0.1, momentum=0.9) carrying the saved momentum, ready to go on "
    "training.",
    _state_where_its_parameters_are,
    names=["model_fp64", "optimizer_fp64", "checkpoint_path"],
    optional=["trained"],
    hint=N_("load_state_dict puts the optimizer's state where its parameters are at that moment: convert first."),
)


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
    if len(path) == 1 and isinstance(path[0], str):
        return repr(path[0])
    return "".join(f"[{key!r}]" for key in path) or _("the file itself")


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
        own = state_of(part)
        return entry.keys() == own.keys() and all(
            torch.is_tensor(v) and tuple(v.shape) == tuple(own[k].shape) for k, v in entry.items()
        )
    shapes = [tuple(p.shape) for _key, p in parameters_of(model)]
    state = entry.get("state")
    return isinstance(state, Mapping) and all(
        isinstance(i, int)
        and 0 <= i < len(shapes)
        and isinstance(s, Mapping)
        and all(tuple(v.shape) == shapes[i] for k, v in s.items() if torch.is_tensor(v) and k != "step")
        for i, s in state.items()
    )


def _current(part: object) -> dict:
    """A part of `gan` as its state_dict is now (a model's or an optimizer's), read through its class."""
    if isinstance(part, torch.optim.Optimizer):
        return optimizer_state_of(part)
    return state_of(part)


def _refuse_entry(kind: str, shown: str, name: str, entry: Mapping, part: object) -> None:
    """Raise :class:`Incorrect` saying why an entry meant for ``part`` (gan[name]) is not its current state."""
    own = _current(part)
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


def _require_trained_by_train_steps(gan: dict, steps: int) -> None:
    """:class:`Incorrect` unless every part of `gan` is what the set-up's gan becomes after ``steps`` steps of
    train_steps (in calls of 3, as re-running the answer cell does, or in one call), up to float rounding: an
    optimizer state written by hand, or models trained another way, are not the training the question asks."""
    current = {name: _current(part) for name, part in gan.items()}
    splits = {(3,) * (steps // 3) + ((steps % 3,) if steps % 3 else ()), (steps,)}
    if any(all(_close(current[n], v) for n, v in _reference_gan(calls).items()) for calls in sorted(splits)):
        return
    reference = _reference_gan((3,) * (steps // 3) + ((steps % 3,) if steps % 3 else ()))
    differs = [
        name for name in ("generator", "discriminator", "opt_g", "opt_d") if not _close(current[name], reference[name])
    ]
    message = _(
        "`gan` is not what train_steps makes of the set-up's gan: its optimizers say {steps} steps, but {part} "
        "differs from {steps} steps of train_steps (trained another way, or a state written by hand?). Run the "
        "set-up cell again, then train_steps(gan, 3)"
    )
    raise Incorrect(message.format(steps=steps, part=differs[0]))


def _everything_in_one_file(gan_path: object, gan: object, workdir: object) -> str:
    if not isinstance(gan, dict) or set(gan) != set(SIDES):
        raise Incorrect(_("`gan` is the dict the notebook made: run the set-up cell again"))
    models = {"opt_g": gan["generator"], "opt_d": gan["discriminator"]}
    if not all(isinstance(gan[name], torch.nn.Module) for name in ("generator", "discriminator")) or not all(
        isinstance(gan[name], torch.optim.Optimizer) for name in ("opt_g", "opt_d")
    ):
        raise Incorrect(_("`gan` is the dict the notebook made: run the set-up cell again"))
    steps = {name: _steps(_current(gan[name])) for name in ("opt_g", "opt_d")}
    if min(steps.values()) < 3:
        raise Incorrect(_("`gan` has not been trained for 3 steps yet: call train_steps(gan, 3) before saving"))
    _require_trained_by_train_steps(gan, steps["opt_g"])
    path = require_file(gan_path, "gan_path", _("save the checkpoint there"))
    require_in_workdir(path, workdir, "gan_path", "07")
    try:
        saved = torch_load(path)
    except Exception as error:  # a pickled module or optimizer object, or not a torch.save file
        message = _(
            "torch.load(..., weights_only=True) refuses the file ({error_type}): save state_dicts, "
            "not the model or optimizer objects"
        )
        raise Incorrect(message.format(error_type=type(error).__name__)) from None
    current = {name: _current(part) for name, part in gan.items()}
    known = [set(current["generator"]), set(current["discriminator"])]
    entries = list(_entries(saved, known))
    judged = {}  # each entry's parts by content: those whose state it equals, those whose keys and shapes it has
    for where, kind, entry in entries:
        equal = [name for name in gan if KINDS[name] == kind and same_state(entry, current[name])]
        fitting = [n for n in gan if KINDS[n] == kind and _fits(kind, entry, gan[n], models.get(n, gan[n]))]
        judged[where] = (equal, fitting)
    places = {}  # an entry's side by its place: two entries of a kind side by side, names saying nothing: gan's order
    for where, kind, _entry in entries:
        if where and _named(where, _named_side) is None:
            siblings = [w for w, k, _e in entries if w[:-1] == where[:-1] and k == kind and w]
            if len(siblings) == 2 and all(_named(w, _named_side) is None for w in siblings):
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
        equal, fitting = judged[where]
        side = _named(where, _named_side) or places.get(where)
        if side is None and kind == "optimizer":  # beside exactly one model: that model's optimizer
            beside = [w for w, k, _e in entries if w and where and w[:-1] == where[:-1] and k == "model"]
            mates = [w for w, k, _e in entries if w and where and w[:-1] == where[:-1] and k == "optimizer"]
            whose = judged[beside[0]][0] or judged[beside[0]][1] if len(beside) == 1 and len(mates) == 1 else []
            if len(whose) == 1:
                mine = {"generator": "opt_g", "discriminator": "opt_d"}[whose[0]]
                theirs = [name for name in (equal or fitting) if name != mine]
                if theirs and mine not in (equal or fitting):
                    message = _(
                        "the entry {entry} sits beside {model}'s weights ({beside}) but holds {other}'s state: a "
                        "resume would give {model} the other optimizer's state"
                    )
                    raise Incorrect(
                        message.format(entry=shown, model=whose[0], beside=_shown(beside[0]), other=theirs[0])
                    )
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
                        "the entry {entry} is, by its place (names that say nothing: gan's order, generator first), "
                        "for {owner}, but holds {other}'s state: a resume in that order would load it into the wrong "
                        "part"
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
    rates = [group.get("lr") for group in optimizer.param_groups]
    if isinstance(optimizer, torch.optim.SGD) and not all(same_setting(rate, 0.001) for rate in rates):
        saved_rates = [group["lr"] for group in saved["optimizer"]["param_groups"]]
        if same_setting(rates, saved_rates):
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
    "(the checkpoint says 0.1), ready to go on training.",
    _new_learning_rate,
    names=["model", "optimizer", "checkpoint_path"],
    optional=["trained"],
    hint=N_("optimizer.load_state_dict replaces every hyper-parameter: change the lr after loading."),
)
