"""Exercises for lesson 06 (distributed checkpoints). ``from lesson_utils.exercises import lesson06 as ex``."""

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    choice,
    load_weights_only,
    require_in_workdir,
    require_same_tensors,
    same_setting,
    same_state,
    same_values,
    torch_as_installed,
    torch_load,
)
from lesson_utils.i18n import N_, _

q1 = choice(
    "lesson06.q1",
    "dcp.save runs on 4 ranks. Which files does it write (besides any of your own)?",
    {
        "a": N_("one file, written by rank 0"),
        "b": N_("one .distcp file per rank and a .metadata file"),
        "c": N_("one file per tensor"),
    },
    "b",
    {
        "a": N_("that is torch.save's way, which needs the whole model on one rank"),
        "c": N_("the files follow the ranks, not the tensors: each rank writes its shards in one file"),
    },
    hint=N_("Lesson 06, section 2: list the checkpoint folder."),
)


def _saved_by_the_ranks(checkpoint_dir: Path) -> dict:
    """Everything the DCP checkpoint in ``checkpoint_dir`` holds, read from its files (as one process)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as folder:
        dcp_to_torch_save(checkpoint_dir, Path(folder) / "reference.pt")
        return torch_load(Path(folder) / "reference.pt")


def _reference_checkpoint(ranks: int = 2, steps: int = 3) -> dict:
    """What the set-up's ``launch("save", checkpoint_dir, nproc=2)`` saves, computed here in one process: the
    dist_demo model trained ``steps`` AdamW steps, each on the mean of the ``ranks`` ranks' losses (FSDP
    averages the ranks' gradients), as ``{"model": ..., "optimizer": ...}`` keyed by parameter name, the
    layout dcp_to_torch_save gives. Equal to the ranks' result up to float rounding.

    Example:
        >>> sorted(_reference_checkpoint()["optimizer"]["state"]["4.bias"])
        ['exp_avg', 'exp_avg_sq', 'step']
    """
    from lesson_utils.dist_demo import make_model

    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch_as_installed():
        model = make_model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        generators = [torch.Generator().manual_seed(100 + rank) for rank in range(ranks)]  # as dist_demo.train
        for _step in range(steps):
            optimizer.zero_grad()
            losses = []
            for generator in generators:
                x, y = torch.randn(16, 32, generator=generator), torch.randint(0, 10, (16,), generator=generator)
                losses.append(torch.nn.functional.cross_entropy(model(x), y))
            (sum(losses) / ranks).backward()
            optimizer.step()
        names = [name for name, _parameter in model.named_parameters()]
        saved = optimizer.state_dict()
        groups = [{**group, "params": [names[i] for i in group["params"]]} for group in saved["param_groups"]]
        state = {names[i]: dict(value) for i, value in saved["state"].items()}
        return {"model": model.state_dict(), "optimizer": {"state": state, "param_groups": groups}}


def _require_the_setups(saved: dict) -> None:
    """:class:`Incorrect` unless the DCP checkpoint's contents ``saved`` are the set-up's (to float rounding)."""
    reference = _reference_checkpoint()
    if not same_state(saved, reference, rtol=1e-4):
        raise Incorrect(
            _(
                "`checkpoint_dir` does not hold the set-up's checkpoint (what the 2 ranks saved after 3 steps of "
                "training): run the set-up cell again, and convert the folder it makes"
            )
        )


def _entry(where: str, key: object) -> str:
    return f"{where}[{key!r}]" if where else str(key)


def _first_difference(found: object, expected: object, where: str = "") -> tuple[str, str] | None:
    """Where ``found`` first differs from ``expected`` (nested dicts, lists and tensors), and how; or None.

    Example:
        >>> _first_difference({"optimizer": {"lr": 0.1}}, {"optimizer": {"lr": 0.01}})
        ("optimizer['lr']", 'values')
    """
    if isinstance(expected, Mapping):
        if not isinstance(found, Mapping):
            return where, "type"
        for key in expected:
            if key not in found:
                return _entry(where, key), "missing"
        for key in found:
            if key not in expected:
                return _entry(where, key), "extra"
        for key, value in expected.items():
            if (difference := _first_difference(found[key], value, _entry(where, key))) is not None:
                return difference
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(found, (list, tuple)) or len(found) != len(expected):
            return where, "type"
        for index, (have, want) in enumerate(zip(found, expected, strict=True)):
            if (difference := _first_difference(have, want, f"{where}[{index}]")) is not None:
                return difference
        return None
    if torch.is_tensor(expected):
        if type(found) not in (torch.Tensor, torch.nn.Parameter):
            return where, "type"
        if found.dtype != expected.dtype:
            return where, f"dtype {found.dtype} {expected.dtype}"
        return None if same_values(found, expected) else (where, "values")
    return None if same_setting(found, expected) else (where, "values")


def _single_file(checkpoint_dir: object, single_path: object) -> str:
    how = _("use dcp_to_torch_save(checkpoint_dir, single_path)")
    converted = load_weights_only(single_path, "single_path", how)
    if not isinstance(converted, dict) or "model" not in converted:
        raise Incorrect(_("the file should hold the whole DCP checkpoint: a dict with 'model' (and 'optimizer')"))
    folder = Path(checkpoint_dir) if isinstance(checkpoint_dir, (str, os.PathLike)) else None
    if folder is None or not (folder / ".metadata").is_file():
        raise Incorrect(_("`checkpoint_dir` should be the set-up cell's folder: run the set-up cell again"))
    require_in_workdir(Path(single_path), folder.parent, "single_path")  # the set-up: checkpoint_dir = workdir / ...
    try:
        saved = _saved_by_the_ranks(folder)
    except Exception as error:  # not a DCP checkpoint any more
        message = _("`checkpoint_dir` cannot be read as a DCP checkpoint ({error_type}): run the set-up cell again")
        raise Incorrect(message.format(error_type=type(error).__name__)) from None
    _require_the_setups(saved)
    expected = saved["model"]
    require_same_tensors(
        converted["model"],
        expected,
        _("the model in `checkpoint_dir`"),
        _("convert the checkpoint in `checkpoint_dir`"),
        what=_("the file's 'model'"),
    )
    optimizer = converted.get("optimizer")
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict):
        raise Incorrect(_("the file has no 'optimizer' state: dcp_to_torch_save converts the whole checkpoint"))
    missing = [key for key in expected if key not in optimizer["state"]]
    if missing and optimizer["state"] and all(isinstance(key, int) for key in optimizer["state"]):
        message = _(
            "the file's optimizer state is keyed by numbers ({found}), as optimizer.state_dict() keys it; the DCP "
            "checkpoint keys it by parameter name ({keys}): convert the checkpoint with dcp_to_torch_save as it is"
        )
        raise Incorrect(message.format(found=sorted(optimizer["state"]), keys=missing))
    if missing:
        message = _("the file's optimizer state lacks {keys}: dcp_to_torch_save converts the whole checkpoint")
        raise Incorrect(message.format(keys=missing))
    difference = _first_difference(converted, saved)
    if difference is not None:
        where, how = difference
        if how == "missing":
            message = _("the file lacks {where}, which the DCP checkpoint holds: convert the whole checkpoint")
        elif how == "extra":
            message = _("the file holds {where}, which the DCP checkpoint does not: convert it as it is")
        elif how == "type":
            message = _("{where} in the file is not laid out as in the DCP checkpoint: convert it as it is")
        elif how.startswith("dtype "):
            message = _(
                "{where} is {found} in the file but {expected} in the DCP checkpoint: convert it as it is (no "
                ".half() or .to(dtype))"
            )
        else:
            message = _(
                "{where} in the file holds other values than the DCP checkpoint (another optimizer's state?): "
                "convert the checkpoint in `checkpoint_dir` as it is"
            )
        found, expected = how.split()[1:] if how.startswith("dtype ") else (None, None)
        raise Incorrect(message.format(where=where, found=found, expected=expected))
    return _("one ordinary file, loadable with weights_only=True, equal to what the 2 ranks saved")


q2 = Question(
    "lesson06.q2",
    "Convert the DCP checkpoint in `checkpoint_dir` into one torch.save file at `single_path`.",
    _single_file,
    names=["checkpoint_dir", "single_path"],
    hint=N_("torch.distributed.checkpoint.format_utils has a function for exactly this."),
)

q3 = choice(
    "lesson06.q3",
    "What does dcp.async_save block training for?",
    {
        "a": N_("the whole write to disk"),
        "b": N_("copying the state into memory; the disk write runs in the background"),
        "c": N_("nothing at all"),
    },
    "b",
    {
        "a": N_("that is dcp.save"),
        "c": N_("the state must be copied first, or training would change it while it is written"),
    },
    hint=N_("Lesson 06, section 4: what did the two timings measure?"),
)
