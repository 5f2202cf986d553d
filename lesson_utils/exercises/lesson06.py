"""Exercises for lesson 06 (distributed checkpoints). ``from lesson_utils.exercises import lesson06 as ex``."""

import os
from pathlib import Path

import torch

from lesson_utils.exercises.core import Incorrect, Question, choice, load_weights_only, require_same_tensors

q1 = choice(
    "lesson06.q1",
    "dcp.save runs on 4 ranks. Which files does it write (besides any of your own)?",
    {
        "a": "one file, written by rank 0",
        "b": "one .distcp file per rank and a .metadata file",
        "c": "one file per tensor",
    },
    "b",
    {
        "a": "that is torch.save's way, which needs the whole model on one rank",
        "c": "the files follow the ranks, not the tensors: each rank writes its shards in one file",
    },
    hint="Lesson 06, section 2: list the checkpoint folder.",
)


def _single_file(checkpoint_dir: object, single_path: object) -> str:
    how = "use dcp_to_torch_save(checkpoint_dir, single_path)"
    converted = load_weights_only(single_path, "single_path", how)
    if not isinstance(converted, dict) or "model" not in converted:
        raise Incorrect("the file should hold the whole DCP checkpoint: a dict with 'model' (and 'optimizer')")
    if not isinstance(checkpoint_dir, (str, os.PathLike)) or not (Path(checkpoint_dir) / "expected.pt").is_file():
        raise Incorrect("`checkpoint_dir` should be the set-up cell's folder: run the set-up cell again")
    expected = torch.load(Path(checkpoint_dir) / "expected.pt", weights_only=True)
    require_same_tensors(
        converted["model"],
        expected,
        "the model in `checkpoint_dir`",
        "convert the checkpoint in `checkpoint_dir`",
        what="the file's 'model'",
    )
    optimizer = converted.get("optimizer")
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict):
        raise Incorrect("the file has no 'optimizer' state: dcp_to_torch_save converts the whole checkpoint")
    missing = [key for key in expected if key not in optimizer["state"]]
    if missing:
        raise Incorrect(f"the file's optimizer state lacks {missing}: dcp_to_torch_save converts the whole checkpoint")
    return "one ordinary file, loadable with weights_only=True, equal to what the 2 ranks saved"


q2 = Question(
    "lesson06.q2",
    "Convert the DCP checkpoint in `checkpoint_dir` into one torch.save file at `single_path`.",
    _single_file,
    names=["checkpoint_dir", "single_path"],
    hint="torch.distributed.checkpoint.format_utils has a function for exactly this.",
)

q3 = choice(
    "lesson06.q3",
    "What does dcp.async_save block training for?",
    {
        "a": "the whole write to disk",
        "b": "copying the state into memory; the disk write runs in the background",
        "c": "nothing at all",
    },
    "b",
    {
        "a": "that is dcp.save",
        "c": "the state must be copied first, or training would change it while it is written",
    },
    hint="Lesson 06, section 4: what did the two timings measure?",
)
