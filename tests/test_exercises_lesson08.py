"""Lesson 08's checkers, attacked: right answers (the usual one and unusual ones) pass; wrong answers a
student would plausibly write, and cheats, fail with the message that names the real fault."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from exercise_helpers import expect, workdir_in
from huggingface_hub import load_torch_model, save_torch_state_dict, split_torch_state_dict_into_shards
from safetensors.torch import load_file, save_file, save_model

from lesson_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, lesson08


class TinyLM(nn.Module):
    """The exercise notebook's model: its head tied to its embedding."""

    def __init__(self, vocab=1000, dim=128, layers=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.Sequential(*[nn.Linear(dim, dim) for _ in range(layers)])
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(torch.relu(self.blocks(self.embed(ids))))


@dataclasses.dataclass
class TrainConfig:
    lr: float
    layers: int


class ScaledTensor(torch.Tensor):
    """A tensor that carries the scale it was quantised with."""


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyLM()


# q1: the hub layout ------------------------------------------------------------------------------


@pytest.fixture
def share_dir(tmp_path):
    folder = workdir_in(tmp_path, "08") / "share"
    folder.mkdir()
    return folder


def q1(folder, model, workdir=None):
    """Q1's names: the folder, the model, and the set-up's workdir (the folder's own, unless given)."""
    if workdir is None and isinstance(folder, (str, Path)):
        workdir = Path(folder).parent
    return {"share_dir": folder, "model": model, "workdir": workdir}


def test_q1_the_usual_answer_and_unusual_right_ones(model, share_dir, tmp_path):
    expect(lesson08.q1, {"share_dir": None, "model": model}, NOT_ATTEMPTED, "save_torch_state_dict returns None")
    save_torch_state_dict(model.state_dict(), share_dir, max_shard_size="200KB")
    expect(lesson08.q1, q1(share_dir, model), CORRECT, "3 shards and an index")

    smaller = share_dir.parent / "smaller"  # more, smaller shards: within the limit too
    smaller.mkdir()
    save_torch_state_dict(model.state_dict(), smaller, max_shard_size=100_000)
    expect(lesson08.q1, q1(smaller, model), CORRECT)

    head_kept = share_dir.parent / "head-kept"  # the tied tensor stored under its other name
    head_kept.mkdir()
    save_torch_state_dict(
        model.state_dict(), head_kept, max_shard_size="200KB", shared_tensors_to_discard=["embed.weight"]
    )
    expect(lesson08.q1, q1(head_kept, model), CORRECT)


def test_q1_written_by_hand_from_the_plan(model, share_dir):
    state = {k: v for k, v in model.state_dict().items() if k != "head.weight"}
    plan = split_torch_state_dict_into_shards(state, max_shard_size="200KB")
    for filename, names in plan.filename_to_tensors.items():
        save_file({n: state[n] for n in names}, share_dir / filename, metadata={"format": "pt"})
    index = {"metadata": plan.metadata, "weight_map": plan.tensor_to_filename}
    (share_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    expect(lesson08.q1, q1(share_dir, model), CORRECT)


def test_q1_written_by_dcp(model, share_dir):
    from torch.distributed.checkpoint import HuggingFaceStorageWriter, save

    state = {k: v for k, v in model.state_dict().items() if k != "head.weight"}
    file_of = {k: 1 if k == "embed.weight" else 2 if k < "blocks.2" else 3 for k in state}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        save(state, storage_writer=HuggingFaceStorageWriter(str(share_dir), fqn_to_index_mapping=file_of))
    expect(lesson08.q1, q1(share_dir, model), CORRECT)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda m, d: save_torch_state_dict(m.state_dict(), d), "holds one file, model.safetensors"),
        (lambda m, d: save_model(m, d / "model.safetensors"), "holds one file, model.safetensors"),
        (lambda m, d: save_torch_state_dict(m.state_dict(), d, max_shard_size="1MB"), "one file, model.safetensors"),
        (lambda m, d: torch.save(m.state_dict(), d / "pytorch_model.bin"), "holds pickle files"),
        (lambda m, d: None, "there is no model.safetensors.index.json"),
        (
            lambda m, d: save_torch_state_dict(m.state_dict(), d, max_shard_size="500KB"),
            "model-00002-of-00002.safetensors holds 264,192 bytes of tensors, more than 200 KB",
        ),
        (  # clones dodge save_file's refusal, and store the tied tensor twice
            lambda m, d: save_torch_state_dict(
                {k: v.clone() for k, v in m.state_dict().items()}, d, max_shard_size="200KB"
            ),
            "both embed.weight and head.weight are stored",
        ),
        (  # a dict comprehension unties too
            lambda m, d: save_torch_state_dict(
                {k: v.to(torch.bfloat16) for k, v in m.state_dict().items()}, d, max_shard_size="200KB"
            ),
            "both embed.weight and head.weight are stored",
        ),
        (
            lambda m, d: save_torch_state_dict(
                copy.deepcopy(m).to(torch.bfloat16).state_dict(), d, max_shard_size="200KB"
            ),
            "embed.weight is torch.bfloat16 in the shards but torch.float32",
        ),
        (
            lambda m, d: save_torch_state_dict(TinyLM().state_dict(), d, max_shard_size="200KB"),
            "differs from `model`'s state_dict",
        ),
        (
            lambda m, d: save_torch_state_dict(
                {k: v for k, v in m.state_dict().items() if k != "blocks.3.bias"}, d, max_shard_size="200KB"
            ),
            "Missing from the shards: ['blocks.3.bias']",
        ),
    ],
    ids=[
        "no-limit",
        "save_model",
        "limit-too-high",
        "pickle",
        "nothing-written",
        "shard-too-big",
        "clones",
        "dict-comprehension-to-bf16",
        "model-to-bf16",
        "other-weights",
        "a-tensor-left-out",
    ],
)
def test_q1_wrong_folders(model, share_dir, write, message):
    write(model, share_dir)
    expect(lesson08.q1, q1(share_dir, model), INCORRECT, message)


def test_q1_a_damaged_or_mixed_up_folder(model, share_dir, tmp_path):
    save_torch_state_dict(model.state_dict(), share_dir, max_shard_size="200KB")
    index_path = share_dir / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())

    shutil.copy(share_dir / "model-00003-of-00003.safetensors", share_dir / "model.safetensors")
    expect(lesson08.q1, q1(share_dir, model), INCORRECT, "model.safetensors sits next to the shards but is not one")
    (share_dir / "model.safetensors").unlink()

    shutil.copy(share_dir / "model-00003-of-00003.safetensors", share_dir / "model-00004-of-00005.safetensors")
    expect(lesson08.q1, q1(share_dir, model), INCORRECT, "files of an earlier save are mixed with this one's")
    (share_dir / "model-00004-of-00005.safetensors").unlink()

    wrong = {**index, "weight_map": {**index["weight_map"], "blocks.3.bias": "model-00002-of-00003.safetensors"}}
    index_path.write_text(json.dumps(wrong))
    expect(lesson08.q1, q1(share_dir, model), INCORRECT, "but the file holds")

    gone = {**index, "weight_map": {**index["weight_map"], "blocks.3.bias": "model-00009-of-00009.safetensors"}}
    index_path.write_text(json.dumps(gone))
    expect(lesson08.q1, q1(share_dir, model), INCORRECT, "points to ['model-00009-of-00009.safetensors']")

    index_path.write_text(json.dumps({**index, "metadata": {"total_size": 1}}))
    expect(lesson08.q1, q1(share_dir, model), INCORRECT, "total_size=1, but the shards hold 776192 bytes")

    index_path.write_text("weight_map: everything")
    expect(lesson08.q1, q1(share_dir, model), INCORRECT, "is not an index")
    index_path.write_text(json.dumps(index))
    expect(lesson08.q1, q1(share_dir, model), CORRECT)


def test_q1_shards_without_the_format_metadata(model, share_dir):
    state = {k: v for k, v in model.state_dict().items() if k != "head.weight"}
    plan = split_torch_state_dict_into_shards(state, max_shard_size="200KB")
    for filename, names in plan.filename_to_tensors.items():
        save_file({n: state[n] for n in names}, share_dir / filename)  # no metadata
    index = {"metadata": plan.metadata, "weight_map": plan.tensor_to_filename}
    (share_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    expect(lesson08.q1, q1(share_dir, model), INCORRECT, "without {'format': 'pt'}")


def test_q1_the_model_and_the_folder_must_be_the_set_ups(model, share_dir, tmp_path):
    save_torch_state_dict(model.state_dict(), share_dir, max_shard_size="200KB")
    halved = copy.deepcopy(model).half()  # the folder matches the changed model, but not the question
    save_torch_state_dict(halved.state_dict(), share_dir, max_shard_size="200KB")
    expect(lesson08.q1, q1(share_dir, halved), INCORRECT, "not the set-up cell's model any more")
    expect(lesson08.q1, q1(share_dir, model.state_dict()), INCORRECT, "is a dict (a state_dict?), not a model")
    expect(lesson08.q1, q1(share_dir, nn.Bilinear(2, 2, 2)), INCORRECT, "not the set-up cell's model any more")
    torch.manual_seed(0)
    retied = TinyLM()
    retied.head.weight = nn.Parameter(retied.embed.weight.detach().clone())  # same numbers, no longer tied
    expect(lesson08.q1, q1(share_dir, retied), INCORRECT, "no longer tied to its embedding")
    expect(lesson08.q1, q1(share_dir.parent / "nowhere", model), INCORRECT, "there is no folder at")
    expect(lesson08.q1, q1(share_dir / "model.safetensors.index.json", model), INCORRECT, "is the file")
    expect(lesson08.q1, q1(42, model), INCORRECT, "should be a path")


# q2: allowlists --------------------------------------------------------------------------------


@pytest.fixture
def run_path(tmp_path):
    torch.manual_seed(8)
    calibration = torch.randn(4).as_subclass(ScaledTensor)
    calibration.scale = 0.25
    path = tmp_path / "run.pt"
    torch.save({"config": TrainConfig(0.003, 4), "weights": TinyLM().state_dict(), "calibration": calibration}, path)
    return path


@pytest.fixture
def names(run_path):
    return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(run_path))


def load(path, allowed):
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, weights_only=True)


def q2(allowed, loaded, run_path):
    return {"allowed": allowed, "loaded": loaded, "run_path": run_path}


def test_q2_right_answers(run_path, names):
    allowed = [TrainConfig, ScaledTensor]
    expect(lesson08.q2, q2(None, None, run_path), NOT_ATTEMPTED, "`allowed`, `loaded`")
    expect(lesson08.q2, q2(allowed, load(run_path, allowed), run_path), CORRECT, str(names))
    as_tuple = (ScaledTensor, TrainConfig)
    expect(lesson08.q2, q2(as_tuple, load(run_path, as_tuple), run_path), CORRECT)
    with_names = [(TrainConfig, names[1]), (ScaledTensor, names[0])]  # the form for a class that moved
    expect(lesson08.q2, q2(with_names, load(run_path, with_names), run_path), CORRECT)


def test_q2_wrong_allowlists(run_path, names):
    everything = torch.load(run_path, weights_only=False)  # what a student who gave up on the allowlist has
    expect(lesson08.q2, q2([], everything, run_path), INCORRECT, "lacks ")
    expect(lesson08.q2, q2([TrainConfig], everything, run_path), INCORRECT, f"lacks ['{names[0]}']")
    too_many = [TrainConfig, ScaledTensor, nn.Linear]
    expect(lesson08.q2, q2(too_many, load(run_path, too_many), run_path), INCORRECT, "torch.nn.modules.linear.Linear")
    expect(lesson08.q2, q2(too_many, load(run_path, too_many), run_path), INCORRECT, "nothing more")
    with_function = [TrainConfig, ScaledTensor, getattr]
    expect(lesson08.q2, q2(with_function, everything, run_path), INCORRECT, "Never allow a function")
    expect(lesson08.q2, q2(names, everything, run_path), INCORRECT, "holds the string")
    expect(lesson08.q2, q2(TrainConfig, everything, run_path), INCORRECT, "should be the list you pass to safe_globals")
    expect(lesson08.q2, q2("TrainConfig", everything, run_path), INCORRECT, "should be the list")


def test_q2_a_session_wide_allowlist_is_refused(run_path):
    before = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([TrainConfig, ScaledTensor])
    try:
        loaded = torch.load(run_path, weights_only=True)
        expect(lesson08.q2, q2([TrainConfig, ScaledTensor], loaded, run_path), INCORRECT, "rest of the session")
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)
    assert set(torch.serialization.get_safe_globals()) == set(before)


def test_q2_what_was_loaded_must_be_the_file(run_path, tmp_path):
    allowed = [TrainConfig, ScaledTensor]
    right = load(run_path, allowed)
    ns = q2(allowed, None, run_path)
    expect(lesson08.q2, {**ns, "loaded": right["weights"]}, INCORRECT, "a dict with the keys ['calibration', 'config'")
    plain = {**right, "calibration": right["calibration"].as_subclass(torch.Tensor)}
    expect(lesson08.q2, {**ns, "loaded": plain}, INCORRECT, "loaded['calibration'] is a Tensor, but the file holds")
    rescaled = {**right, "calibration": right["calibration"].clone()}
    rescaled["calibration"].scale = 1.0  # same numbers, the scale lost
    expect(lesson08.q2, {**ns, "loaded": rescaled}, INCORRECT, "loaded['calibration'] differs from the file's")
    by_hand = {**right, "config": TrainConfig(0.001, 4)}  # written from memory instead of loaded
    expect(lesson08.q2, {**ns, "loaded": by_hand}, INCORRECT, "loaded['config'] differs")
    as_dict = {**right, "config": dataclasses.asdict(right["config"])}
    expect(lesson08.q2, {**ns, "loaded": as_dict}, INCORRECT, "loaded['config'] is a dict, but the file holds")
    other = {**right, "weights": TinyLM().state_dict()}
    message = "in `loaded`, under 'weights' differs from the file's 'weights'"
    expect(lesson08.q2, {**ns, "loaded": other}, INCORRECT, message)
    expect(lesson08.q2, {**ns, "loaded": right, "run_path": tmp_path / "nope.pt"}, INCORRECT, "there is no file")


# q3: bf16, tied ----------------------------------------------------------------------------------


@pytest.fixture
def bf16_dir(tmp_path):
    torch.manual_seed(8)  # the set-up's colleagues_files(): the run's calibration and weights, then the release
    torch.randn(4)
    TinyLM()
    release = TinyLM().to(torch.bfloat16)
    folder = tmp_path / "bf16-release"
    folder.mkdir()
    save_torch_state_dict(release.state_dict(), folder, max_shard_size="200KB")
    return folder


def merged(folder):
    return {k: v for shard in sorted(folder.glob("*.safetensors")) for k, v in load_file(shard).items()}


def q3(model_bf16, bf16_dir):
    return {"model_bf16": model_bf16, "bf16_dir": bf16_dir, "TinyLM": TinyLM}


def test_q3_right_answers(bf16_dir):
    expect(lesson08.q3, q3(None, bf16_dir), NOT_ATTEMPTED, "`model_bf16`")
    converted_first = TinyLM().to(torch.bfloat16)
    load_torch_model(converted_first, bf16_dir)
    expect(lesson08.q3, q3(converted_first, bf16_dir), CORRECT, "bfloat16 TinyLM")

    with torch.device("meta"):
        lean = TinyLM()
    lean.load_state_dict(merged(bf16_dir), strict=False, assign=True)
    lean.head.weight = lean.embed.weight
    expect(lesson08.q3, q3(lean, bf16_dir), CORRECT)

    loaded_then_converted = TinyLM()  # float32 holds every bfloat16 number exactly: converting back is lossless
    load_torch_model(loaded_then_converted, bf16_dir)
    expect(lesson08.q3, q3(loaded_then_converted.to(torch.bfloat16), bf16_dir), CORRECT)

    plain = TinyLM().to(torch.bfloat16)
    plain.load_state_dict(merged(bf16_dir), strict=False)
    expect(lesson08.q3, q3(plain, bf16_dir), CORRECT)


def test_q3_wrong_answers(bf16_dir, model):
    float32 = TinyLM()
    load_torch_model(float32, bf16_dir)
    expect(lesson08.q3, q3(float32, bf16_dir), INCORRECT, "is torch.float32: load_state_dict copies")

    with torch.device("meta"):
        untied = TinyLM()
    untied.load_state_dict(merged(bf16_dir), strict=False, assign=True)
    expect(lesson08.q3, q3(untied, bf16_dir), INCORRECT, "head.weight is still on the meta device: assign=True")

    assigned = TinyLM()  # not on meta: the head keeps its own random float32 parameter
    assigned.load_state_dict(merged(bf16_dir), strict=False, assign=True)
    expect(lesson08.q3, q3(assigned, bf16_dir), INCORRECT, "head.weight is not embed.weight any more")

    with torch.device("meta"):
        empty = TinyLM()
    expect(lesson08.q3, q3(empty, bf16_dir), INCORRECT, "embed.weight is still on the meta device (no data)")

    halved = TinyLM().half()
    load_torch_model(halved, bf16_dir)
    expect(lesson08.q3, q3(halved, bf16_dir), INCORRECT, "is torch.float16, not torch.bfloat16")

    expect(lesson08.q3, q3(TinyLM().to(torch.bfloat16), bf16_dir), INCORRECT, "differs from the release")
    expect(lesson08.q3, q3(model.to(torch.bfloat16), bf16_dir), INCORRECT, "not another model converted")

    smaller = TinyLM(layers=2).to(torch.bfloat16)
    load_torch_model(smaller, bf16_dir)
    expect(lesson08.q3, q3(smaller, bf16_dir), INCORRECT, "has no ['blocks.2.bias', 'blocks.2.weight'")

    expect(lesson08.q3, q3(nn.Linear(2, 2), bf16_dir), INCORRECT, "should be a TinyLM")
    expect(lesson08.q3, q3(merged(bf16_dir), bf16_dir), INCORRECT, "is a dict (a state_dict?), not a model")
    good = TinyLM().to(torch.bfloat16)
    load_torch_model(good, bf16_dir)
    expect(lesson08.q3, q3(good, bf16_dir.parent), INCORRECT, "should be the set-up cell's release")
