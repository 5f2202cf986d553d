"""Exercises for lesson 08 (sharing a model). ``from lesson_utils.exercises import lesson08 as ex``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    _a,
    _listed,
    require_file,
    require_folder,
    require_in_workdir,
    require_module,
    require_same_tensors,
    same_setting,
    same_values,
    state_of,
    torch_as_installed,
    torch_load,
)
from lesson_utils.i18n import N_, _

INDEX = "model.safetensors.index.json"
SHARD = re.compile(r"model-(\d{5})-of-(\d{5})\.safetensors")
SHARD_LIMIT = 200_000  # the question's max_shard_size="200KB": bytes of tensors per shard
TIED = ("embed.weight", "head.weight")  # the set-up's TinyLM ties its head to its embedding


def _tiny_lm() -> torch.nn.Module:
    """The notebook's TinyLM(vocab=1000, dim=128, layers=4), built layer by layer in its order, so that the same
    random numbers fall to the same tensors, without running the notebook's own class."""
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(1000, 128)
    model.blocks = torch.nn.Sequential(*[torch.nn.Linear(128, 128) for _layer in range(4)])
    model.head = torch.nn.Linear(128, 1000, bias=False)
    model.head.weight = model.embed.weight
    return model


def _setup_model_state() -> dict[str, torch.Tensor]:
    """The weights the set-up's `model` holds: a TinyLM built right after ``seed_everything(0)``."""
    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch_as_installed():
        torch.manual_seed(0)
        return _tiny_lm().state_dict()


def _setup_colleagues_files() -> dict:
    """What the set-up's ``colleagues_files()`` writes, computed here: after ``seed_everything(8)``, the run's
    calibration numbers (``torch.randn(4)``, scale 0.25), the run's weights (a TinyLM) and the bfloat16 release
    (the next TinyLM, converted), each TinyLM built by :func:`_tiny_lm`.

    Example:
        >>> files = _setup_colleagues_files()
        >>> files["calibration"].shape, files["release"]["embed.weight"].dtype, sorted(files["config"].items())
        (torch.Size([4]), torch.bfloat16, [('layers', 4), ('lr', 0.003)])
    """
    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch_as_installed():
        torch.manual_seed(8)
        calibration = torch.randn(4)
        weights = _tiny_lm().state_dict()
        release = _tiny_lm().to(torch.bfloat16).state_dict()
    return {"config": {"lr": 0.003, "layers": 4}, "calibration": calibration, "scale": 0.25, "weights": weights,
            "release": release}  # fmt: skip


def _read_shards(folder: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]], dict[str, dict]]:
    """The index of the hub folder ``folder``, each shard's tensors and each shard's metadata, checked for the
    layout: :class:`Incorrect` naming the first thing a hub loader would trip on."""
    from safetensors import safe_open

    names = sorted(p.name for p in folder.iterdir())
    if INDEX not in names:
        if "model.safetensors" in names:
            message = _(
                "{folder} holds one file, model.safetensors, and no {index}: the model fits in one file unless you "
                "limit the shard size (max_shard_size='200KB')"
            )
        elif any(name.endswith((".pt", ".pth", ".bin")) for name in names):
            message = _(
                "{folder} holds pickle files ({files}), not the hub layout: safetensors shards and {index}, "
                "written with huggingface_hub's save_torch_state_dict"
            )
        else:
            message = _(
                "there is no {index} in {folder}: write the folder with huggingface_hub's save_torch_state_dict(..., "
                "max_shard_size='200KB'), which writes the shards and the index"
            )
        raise Incorrect(message.format(folder=folder, index=INDEX, files=names))
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        message = _("{index} is not an index: a JSON object with a weight_map (tensor name -> shard file)")
        raise Incorrect(message.format(index=INDEX)) from None
    stored = [name for name in names if name.endswith(".safetensors")]
    strays = [name for name in stored if not SHARD.fullmatch(name)]
    if strays:
        message = _(
            "{file} sits next to the shards but is not one (model-0000K-of-0000N.safetensors): a loader that reads "
            "the index never sees it, another may read it instead. Leave only the shards and the index"
        )
        raise Incorrect(message.format(file=strays[0]))
    counts = {int(SHARD.fullmatch(name).group(2)) for name in stored}
    numbers = sorted(int(SHARD.fullmatch(name).group(1)) for name in stored)
    if len(counts) != 1 or numbers != list(range(1, max(counts) + 1)):
        message = _(
            "the shards' names do not add up ({files}): files of an earlier save are mixed with this one's. Empty "
            "the folder, then save once"
        )
        raise Incorrect(message.format(files=stored))
    if len(stored) < 2:
        message = _(
            "the folder has a single shard: the question asks for shards of at most 200 KB of tensors, which "
            "makes several (max_shard_size='200KB')"
        )
        raise Incorrect(message)
    mapped = set(weight_map.values())
    if mapped != set(stored):
        if mapped - set(stored):
            message = _("the weight_map points to {files}, which the folder does not hold")
            raise Incorrect(message.format(files=sorted(mapped - set(stored))))
        message = _("the folder holds {files}, which the weight_map never names: a loader would skip them")
        raise Incorrect(message.format(files=sorted(set(stored) - mapped)))
    tensors, metadata = {}, {}
    for name in stored:
        try:
            with safe_open(folder / name, framework="pt") as f:
                tensors[name] = {key: f.get_tensor(key) for key in f.keys()}
                metadata[name] = f.metadata() or {}
        except Exception as error:  # not a safetensors file, or a damaged one
            message = _("safetensors cannot read {file} ({error_type}): write the shards with save_torch_state_dict")
            raise Incorrect(message.format(file=name, error_type=type(error).__name__)) from None
    for name, held in tensors.items():
        listed = sorted(key for key, file in weight_map.items() if file == name)
        if sorted(held) != listed:
            message = _("the weight_map lists {listed} in {file}, but the file holds {held}")
            raise Incorrect(message.format(listed=listed, file=name, held=sorted(held)))
    return index, tensors, metadata


def _hub_folder(share_dir: object, model: object, workdir: object) -> str:
    start = _setup_model_state()
    if model is None:  # `del model` after sharing it: the folder is judged against the set-up's model
        state = start
    else:
        require_module(model, "model")
        state = state_of(model)
        if set(state) != set(start) or not all(same_values(state[k], v) for k, v in start.items()):
            raise Incorrect(_("`model` is not the set-up cell's model any more: run the set-up cell again"))
        if getattr(model.head, "weight", None) is not getattr(model.embed, "weight", None):
            raise Incorrect(_("`model`'s head is no longer tied to its embedding: run the set-up cell again"))
    how = _(
        "the hub layout is a folder of files, and save_torch_state_dict writes into an existing one: make it first "
        "(share_dir.mkdir())"
    )
    folder = require_folder(share_dir, "share_dir", how)
    require_in_workdir(folder, workdir, "share_dir", "08", new_folder=True)
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".pt", ".pth", ".bin", ".pkl", ".ckpt"))
    if pickles and (folder / INDEX).is_file():
        message = _(
            "{folder} also holds {files}: a hub repository made from this folder would publish them next to the "
            "model (a pickle among them). Save the model into a new folder of its own"
        )
        raise Incorrect(message.format(folder=folder, files=pickles))
    index, tensors, metadata = _read_shards(folder)
    for name, found in metadata.items():
        if found.get("format") != "pt":
            message = _(
                "the metadata of {file} is {found}, without {{'format': 'pt'}}: loaders such as transformers refuse "
                "a shard that does not say which framework wrote it (save_torch_state_dict writes it)"
            )
            raise Incorrect(message.format(file=name, found=dict(sorted(found.items()))))
    for name, held in tensors.items():
        size = sum(t.numel() * t.element_size() for t in held.values())
        if size > SHARD_LIMIT and len(held) > 1:
            message = _(
                "{file} holds {size:,} bytes of tensors, more than 200 KB (only a single tensor larger than the "
                "limit may have a shard of its own): max_shard_size='200KB'"
            )
            raise Incorrect(message.format(file=name, size=size))
    found = {key: t for held in tensors.values() for key, t in held.items()}
    if all(name in found for name in TIED):
        message = _(
            "both embed.weight and head.weight are stored: in `model` they are one tensor (tied), so the folder "
            "holds it twice and a loader cannot know they are one. Store it once (save_torch_state_dict does)"
        )
        raise Incorrect(message)
    kept = [name for name in TIED if name in found]
    expected = {key: value for key, value in state.items() if key not in TIED or key in kept[:1]}
    if not kept:
        expected = {key: value for key, value in state.items() if key not in TIED}
        expected["embed.weight"] = state["embed.weight"]  # the usual name to keep: report it as missing
    require_same_tensors(
        found,
        expected,
        _("`model`'s state_dict (its tied weight once)"),
        _("save model.state_dict() itself"),
        what=_("the shards"),
    )
    total = sum(t.numel() * t.element_size() for t in found.values())
    declared = index.get("metadata", {}).get("total_size") if isinstance(index.get("metadata"), dict) else None
    if declared != total:
        message = _("the index's metadata gives total_size={found}, but the shards hold {total} bytes of tensors")
        raise Incorrect(message.format(found=declared, total=total))
    return _("{count} shards and an index, the tied weight stored once: the folder a hub repository holds").format(
        count=len(tensors)
    )


q1 = Question(
    "lesson08.q1",
    "Share `model` the Hugging Face way: into a new folder `share_dir` in `workdir`, safetensors shards of at most "
    "200 KB of "
    "tensors each (`model-0000K-of-0000N.safetensors`, metadata `{'format': 'pt'}`) and "
    "`model.safetensors.index.json`, the tied weight stored once.",
    _hub_folder,
    names=["share_dir"],
    optional=["model", "workdir"],
    hint=N_("huggingface_hub's save_torch_state_dict(model.state_dict(), folder, max_shard_size=...) does all of it."),
    none_message=N_(
        "`share_dir` is the folder's path; save_torch_state_dict returns None: call it on a line of its own, "
        "not as `share_dir = ...`"
    ),
)


def _global_name(item: object) -> str:
    """The name a pickle gives ``item`` (``module.QualifiedName``), as get_unsafe_globals_in_checkpoint lists it."""
    return f"{getattr(item, '__module__', '?')}.{getattr(item, '__qualname__', type(item).__name__)}"


def _allowed_names(allowed: object) -> dict[str, object]:
    """``allowed``, a list for ``safe_globals``: each entry's global name -> the object it allows."""
    if isinstance(allowed, (str, bytes)) or not isinstance(allowed, (list, tuple, set)):
        message = _("`allowed` should be the list you pass to safe_globals (e.g. [TrainConfig]), not {found}")
        raise Incorrect(message.format(found=_a(allowed)))
    names = {}
    for item in allowed:
        if isinstance(item, str):
            message = _(
                "`allowed` holds the string {item!r}: safe_globals takes the objects themselves ([TrainConfig, ...]); "
                "a name alone allows nothing"
            )
            raise Incorrect(message.format(item=item))
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):  # (object, "the name in the file")
            names[item[1]] = item[0]
        else:
            names[_global_name(item)] = item
    return names


def _differs(found: object, expected: object) -> bool:
    """Whether ``found`` is not ``expected``: same type (a tensor subclass included), same numbers and
    attributes, through dicts and dataclasses."""
    if type(found) is not type(expected):
        return True
    if isinstance(expected, Mapping):
        return found.keys() != expected.keys() or any(_differs(found[k], v) for k, v in expected.items())
    if torch.is_tensor(expected):
        return not same_values(found, expected) or _differs(vars(found), vars(expected))
    if hasattr(expected, "__dict__") and not isinstance(expected, type):
        return _differs(vars(found), vars(expected))
    return not (found == expected)


def _needed_globals(path: Path) -> set[str]:
    """What the file at ``path`` needs allowed, whatever this session has allowed already
    (``get_unsafe_globals_in_checkpoint`` leaves out what ``add_safe_globals`` allowed)."""
    session = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        return set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    finally:
        torch.serialization.add_safe_globals(session)


def _require_the_colleagues_run(loaded: object) -> None:
    """:class:`Incorrect` unless ``loaded`` (the file at `run_path`, loaded) is the run the set-up wrote there."""
    files = _setup_colleagues_files()
    calibration = loaded.get("calibration") if isinstance(loaded, Mapping) else None
    config = loaded.get("config") if isinstance(loaded, Mapping) else None
    weights = loaded.get("weights") if isinstance(loaded, Mapping) else None
    same = (
        isinstance(loaded, Mapping)
        and set(loaded) == {"config", "weights", "calibration"}
        and torch.is_tensor(calibration)
        and same_values(calibration.as_subclass(torch.Tensor), files["calibration"])
        and same_setting(vars(calibration).get("scale"), files["scale"])
        and hasattr(config, "__dict__")
        and all(same_setting(vars(config).get(k), v) for k, v in files["config"].items())
        and isinstance(weights, Mapping)
        and weights.keys() == files["weights"].keys()
        and all(same_values(weights[k], v) for k, v in files["weights"].items())
    )
    if not same:
        message = _("the file at `run_path` is not the colleague's run any more: run the set-up cell again")
        raise Incorrect(message)


def _exact_allowlist(allowed: object, loaded: object, run_path: object) -> str:
    path = require_file(run_path, "run_path", _("run the set-up cell again: it writes that file"))
    needed = _needed_globals(path)
    names = _allowed_names(allowed)
    missing, extra = sorted(needed - set(names)), sorted(set(names) - needed)
    if missing:
        message = _(
            "`allowed` lacks {names}, which the file needs (get_unsafe_globals_in_checkpoint lists them): with "
            "safe_globals(allowed), torch.load(..., weights_only=True) refuses the file"
        )
        raise Incorrect(message.format(names=missing))
    functions = [name for name in extra if not isinstance(names[name], type)]
    if functions:
        message = _(
            "`allowed` also allows {names}, which the file does not need. Never allow a function: the file could "
            "call it with arguments of its choosing"
        )
        raise Incorrect(message.format(names=functions))
    if extra:
        message = _(
            "`allowed` also allows {names}, which the file does not need: allow exactly what "
            "get_unsafe_globals_in_checkpoint lists, nothing more"
        )
        raise Incorrect(message.format(names=extra))
    session = {_global_name(item) for item in torch.serialization.get_safe_globals() if not isinstance(item, tuple)}
    session |= {item[1] for item in torch.serialization.get_safe_globals() if isinstance(item, tuple)}
    leaked = sorted(needed & session)
    if leaked:
        message = _(
            "{names} are allowed for the rest of the session (add_safe_globals): allow them for this one load only, "
            "`with torch.serialization.safe_globals(allowed):` (to take them back, restart the kernel and run the "
            "notebook again)"
        )
        raise Incorrect(message.format(names=leaked))
    with torch.serialization.safe_globals([(obj, name) for name, obj in names.items()]):
        expected = torch_load(path)
    _require_the_colleagues_run(expected)
    if not isinstance(loaded, Mapping) or set(loaded) != set(expected):
        message = _("`loaded` should be what torch.load returns for run_path: a dict with the keys {keys}")
        raise Incorrect(message.format(keys=sorted(expected)))
    for key, value in expected.items():
        if isinstance(value, Mapping) and all(torch.is_tensor(v) for v in value.values()):
            require_same_tensors(
                loaded[key],
                value,
                _("the file's {key}").format(key=repr(key)),
                _("load run_path itself"),
                what=_("`loaded`, under {key}").format(key=repr(key)),
            )
        elif _differs(loaded[key], value):
            if type(loaded[key]) is not type(value):
                message = _("loaded[{key}] is {found}, but the file holds {expected}: load run_path itself")
                found = _a(loaded[key])
                raise Incorrect(message.format(key=repr(key), found=found, expected=_a(value)))
            message = _("loaded[{key}] differs from the file's: load run_path itself, and do not change what it gives")
            raise Incorrect(message.format(key=repr(key)))
    return _("exactly {names}, allowed for this load only, and the file's objects came back whole").format(
        names=sorted(needed)
    )


q2 = Question(
    "lesson08.q2",
    "Load `run_path` into `loaded` with `torch.load(..., weights_only=True)`, allowing exactly the globals the file "
    "needs (the list `allowed`), for this load only.",
    _exact_allowlist,
    names=["allowed", "loaded", "run_path"],
    hint=N_(
        "torch.serialization.get_unsafe_globals_in_checkpoint(run_path) says what the file needs; "
        "`with torch.serialization.safe_globals(allowed):` allows it for the loads inside the block."
    ),
)


def _release(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the bf16 release in ``folder`` (its index, then its shards), as the files hold them."""
    from safetensors import safe_open

    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        tensors = {}
        for name in sorted(set(index["weight_map"].values())):
            with safe_open(folder / name, framework="pt") as f:
                tensors.update({key: f.get_tensor(key) for key in f.keys()})
        return tensors
    except Exception as error:  # missing, unreadable, or not the set-up's layout
        message = _("`bf16_dir` should be the set-up cell's release (it cannot be read: {error_type}): run it again")
        raise Incorrect(message.format(error_type=type(error).__name__)) from None


def _bf16_and_tied(model_bf16: object, bf16_dir: object, TinyLM: object) -> str:  # noqa: N803 - the notebook's class
    require_module(model_bf16, "model_bf16")
    if not isinstance(TinyLM, type) or type(model_bf16) is not TinyLM:
        message = _("`model_bf16` should be a TinyLM, the set-up cell's class, not a {type}")
        raise Incorrect(message.format(type=type(model_bf16).__name__))
    how = _("run the set-up cell again: it writes the release there")
    release = _release(require_folder(bf16_dir, "bf16_dir", how))
    expected_release = _setup_colleagues_files()["release"]
    complete = set(expected_release) - set(TIED) <= set(release) and any(name in release for name in TIED)
    if (
        not complete
        or set(release) - set(expected_release)
        or not all(same_values(value, expected_release[key]) for key, value in release.items())
    ):
        raise Incorrect(_("`bf16_dir` does not hold the set-up's release any more: run the set-up cell again"))
    with torch_as_installed():
        state = state_of(model_bf16)
        on_meta = [key for key, t in state.items() if t.is_meta]
        if on_meta:
            if on_meta == ["head.weight"]:
                message = _(
                    "head.weight is still on the meta device: assign=True gave embed.weight a new parameter and left "
                    "the head's (the file has no head.weight). Tie them again: "
                    "model_bf16.head.weight = model_bf16.embed.weight"
                )
            else:
                message = _(
                    "{key} is still on the meta device (no data): load the release into it with "
                    "load_state_dict(..., assign=True) (without assign=True, nothing is copied into meta tensors)"
                )
            raise Incorrect(message.format(key=on_meta[0]))
        if model_bf16.head.weight is not model_bf16.embed.weight:
            message = _(
                "head.weight is not embed.weight any more: assign=True gave each module a parameter of its own, so "
                "the tie is gone (an optimizer would train two copies). Tie them again: "
                "model_bf16.head.weight = model_bf16.embed.weight"
            )
            raise Incorrect(message)
        wrong = [(key, t.dtype) for key, t in state.items() if t.is_floating_point() and t.dtype != torch.bfloat16]
        if wrong:
            key, dtype = wrong[0]
            if dtype == torch.float32:
                message = _(
                    "{key} is torch.float32: load_state_dict copies into the model's own tensors and casts to their "
                    "dtype. Convert the model first (.to(torch.bfloat16)) or adopt the file's tensors (assign=True)"
                )
            else:
                message = _("{key} is {dtype}, not torch.bfloat16: the release is bfloat16; keep it so (no .half())")
            raise Incorrect(message.format(key=key, dtype=dtype))
        expected = {key: release[key] for key in state if key in release}
        missing = [key for key in release if key not in state]
        if missing:
            message = _("`model_bf16` has no {keys}: build it as TinyLM() (the release's architecture)")
            raise Incorrect(message.format(keys=_listed(missing)))
        require_same_tensors(
            {key: state[key] for key in expected},
            expected,
            _("the release in `bf16_dir`"),
            _("load the release from `bf16_dir` (not another model converted to bfloat16)"),
            what="`model_bf16`",
        )
    return _("a bfloat16 TinyLM holding the release's numbers, its head tied to its embedding")


q3 = Question(
    "lesson08.q3",
    "Load the bfloat16 release in `bf16_dir` into `model_bf16`, a `TinyLM` that computes in bfloat16 and whose head "
    "is still tied to its embedding.",
    _bf16_and_tied,
    names=["model_bf16", "bf16_dir", "TinyLM"],
    hint=N_(
        "load_state_dict casts into the model's dtype: convert the model to bfloat16 first, or load with "
        "assign=True and tie head.weight to embed.weight again afterwards."
    ),
)
