"""Exercises for lesson 06 (distributed checkpoints). ``from lesson_utils.exercises import lesson06 as ex``."""

import os
from pathlib import Path

import torch

from lesson_utils.exercises.core import Incorrect, Question, choice, load_weights_only, require_same_tensors
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


def _single_file(checkpoint_dir: object, single_path: object) -> str:
    how = _("use dcp_to_torch_save(checkpoint_dir, single_path)")
    converted = load_weights_only(single_path, "single_path", how)
    if not isinstance(converted, dict) or "model" not in converted:
        raise Incorrect(_("the file should hold the whole DCP checkpoint: a dict with 'model' (and 'optimizer')"))
    if not isinstance(checkpoint_dir, (str, os.PathLike)) or not (Path(checkpoint_dir) / "expected.pt").is_file():
        raise Incorrect(_("`checkpoint_dir` should be the set-up cell's folder: run the set-up cell again"))
    expected = torch.load(Path(checkpoint_dir) / "expected.pt", weights_only=True)
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
