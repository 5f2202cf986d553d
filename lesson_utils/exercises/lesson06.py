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
    same_values,
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
        return torch.load(Path(folder) / "reference.pt", weights_only=True)


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
        return None if same_values(found, expected) else (where, "values")
    return None if same_setting(found, expected) else (where, "values")


def _single_file(checkpoint_dir: object, single_path: object) -> str:
    how = _("use dcp_to_torch_save(checkpoint_dir, single_path)")
    converted = load_weights_only(single_path, "single_path", how)
    if not isinstance(converted, dict) or "model" not in converted:
        raise Incorrect(_("the file should hold the whole DCP checkpoint: a dict with 'model' (and 'optimizer')"))
    folder = Path(checkpoint_dir) if isinstance(checkpoint_dir, (str, os.PathLike)) else None
    if folder is None or not (folder / "expected.pt").is_file() or not (folder / ".metadata").is_file():
        raise Incorrect(_("`checkpoint_dir` should be the set-up cell's folder: run the set-up cell again"))
    require_in_workdir(Path(single_path), folder.parent, "single_path")  # the set-up: checkpoint_dir = workdir / ...
    expected = torch.load(folder / "expected.pt", weights_only=True)
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
    if missing:
        message = _("the file's optimizer state lacks {keys}: dcp_to_torch_save converts the whole checkpoint")
        raise Incorrect(message.format(keys=missing))
    difference = _first_difference(converted, _saved_by_the_ranks(folder))
    if difference is not None:
        where, how = difference
        if how == "missing":
            message = _("the file lacks {where}, which the DCP checkpoint holds: convert the whole checkpoint")
        elif how == "extra":
            message = _("the file holds {where}, which the DCP checkpoint does not: convert it as it is")
        elif how == "type":
            message = _("{where} in the file is not laid out as in the DCP checkpoint: convert it as it is")
        else:
            message = _(
                "{where} in the file holds other values than the DCP checkpoint (another optimizer's state?): "
                "convert the checkpoint in `checkpoint_dir` as it is"
            )
        raise Incorrect(message.format(where=where))
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
