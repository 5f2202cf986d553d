"""Real multi-process DCP runs (torchrun, gloo, CPU): sharded save, resharded loads, failures."""

import shutil
import subprocess

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from lesson_utils.dist_demo import launch, make_model

pytestmark = pytest.mark.slow  # starts processes or servers: left out of `make check`


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dcp")
    report = launch("save", folder, nproc=2)
    assert report["world_size"] == 2
    return folder


def test_two_ranks_write_one_shard_each_plus_metadata(checkpoint):
    names = {p.name for p in checkpoint.iterdir()}
    assert {".metadata", "__0_0.distcp", "__1_0.distcp"} <= names


@pytest.mark.parametrize("nproc", [1, 2])
def test_load_into_one_or_two_processes_gives_every_saved_tensor(checkpoint, nproc):
    report = launch("load", checkpoint, nproc=nproc)
    assert report == {"world_size": nproc, "tensors": 6, "all_equal": True}


def test_conversion_to_one_file_matches_the_trained_parameters(checkpoint, tmp_path):
    dcp_to_torch_save(checkpoint, tmp_path / "single.pt")
    converted = torch.load(tmp_path / "single.pt", weights_only=True)
    expected = torch.load(checkpoint / "expected.pt", weights_only=True)
    assert converted["model"].keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(converted["model"][key], tensor), key
    # Training really changed the weights: the check would catch a checkpoint of the initial model.
    assert not torch.equal(expected["0.weight"], make_model().state_dict()["0.weight"])


def test_a_failing_worker_raises_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"failed \(exit code 1\): \(rank 0\): FileNotFoundError: no DCP checkpoint"):
        launch("load", tmp_path / "missing", nproc=2, timeout=120)


def test_a_failure_on_one_rank_while_the_other_waits_to_shut_down_is_an_error_not_a_hang(checkpoint, tmp_path):
    # Rank 1 finishes and waits at the shut-down barrier; rank 0 then fails reading expected.pt.
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    (broken / "expected.pt").write_text("not a checkpoint")
    with pytest.raises(RuntimeError, match=r"\(rank 0\): UnpicklingError"):
        launch("load", broken, nproc=2, timeout=120)


def test_a_run_over_its_time_limit_is_killed_not_left_hanging(tmp_path):
    with pytest.raises(TimeoutError, match="did not finish within 1 s; killed"):
        launch("save", tmp_path, nproc=2, timeout=1)
    leftovers = subprocess.run(["pgrep", "-f", f"dist_demo save {tmp_path}"], capture_output=True, text=True)
    assert leftovers.stdout == "", "worker processes survived the timeout"


def test_one_process_saves_without_a_process_group_and_two_load_it(tmp_path):
    report = launch("save", tmp_path, nproc=1)  # plain python: no torchrun, no process group
    assert report == {"world_size": 1, "rank0_local_shapes": {}, "full_tensors_per_rank": [6]}
    assert {".metadata", "__0_0.distcp", "expected.pt"} <= {p.name for p in tmp_path.iterdir()}
    assert launch("load", tmp_path, nproc=2) == {"world_size": 2, "tensors": 6, "all_equal": True}, "resharded"


def test_async_save_in_one_process(tmp_path):
    report = launch("async", tmp_path, nproc=1)
    assert report["async_blocked_s"] >= 0 and (tmp_path / "async" / ".metadata").is_file()
