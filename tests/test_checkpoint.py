import multiprocessing
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lesson_utils import Net
from lesson_utils.checkpoint import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    IncompleteCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    tensor_record_spans,
)


@pytest.fixture
def good(tmp_path):
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    checkpoint = {"epoch": 3, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict()}
    return save_checkpoint(tmp_path / "good.pt", checkpoint)


def test_round_trip_keeps_every_tensor(good):
    loaded = load_checkpoint(good, required=["epoch", "model_state_dict"])
    assert loaded["epoch"] == 3
    net = Net()
    net.load_state_dict(loaded["model_state_dict"])


def test_no_temporary_file_is_left_after_a_save(good):
    assert [p.name for p in good.parent.iterdir()] == ["good.pt"]


def test_a_save_removes_only_the_temporaries_of_dead_processes_on_this_machine(tmp_path):
    host = socket.gethostname()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)  # that process has exited
    dead = tmp_path / f".ckpt_00000001.pt.tmp-{host}-{dead_pid}"
    running = tmp_path / f".ckpt_00000001.pt.tmp-{host}-{os.getppid()}"  # a save still in progress
    elsewhere = tmp_path / f".ckpt_00000001.pt.tmp-another-machine-{dead_pid}"  # a shared folder
    unrelated = tmp_path / ".notes.txt"
    for path in (dead, running, elsewhere, unrelated):
        path.write_bytes(b"partial")
    save_checkpoint(tmp_path / checkpoint_name(2), {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [running.name, elsewhere.name, unrelated.name, checkpoint_name(2)]
    )


def test_a_leftover_that_cannot_be_deleted_does_not_stop_the_save(tmp_path, monkeypatch):
    leftover = tmp_path / f".ckpt_00000001.pt.tmp-{socket.gethostname()}-{2**22 + 1}"  # above any pid
    leftover.write_bytes(b"partial")
    unlink = Path.unlink

    def refuse_leftovers(self, missing_ok=False):  # as for another user's file in a sticky folder
        if self == leftover:
            raise PermissionError(13, "Permission denied", str(self))
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse_leftovers)
    path = save_checkpoint(tmp_path / checkpoint_name(2), {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 2 and leftover.exists()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match=r"No checkpoint at .*nope\.pt: the file does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, for callers that catch that
        load_checkpoint(tmp_path / "nope.pt")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="is a folder, not a checkpoint file. Use latest_checkpoint"):
        load_checkpoint(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.pt").touch()
    with pytest.raises(CorruptCheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.pt")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(good, keep):
    data = good.read_bytes()
    good.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptCheckpointError, match=r"good\.pt is truncated or corrupt .*Load the previous"):
        load_checkpoint(good)


def flip_bytes_inside_a_tensor(path):
    spans = tensor_record_spans(path)
    start, end = next(span for span in spans.values() if span[1] - span[0] > 1000)
    middle = (start + end) // 2
    data = bytearray(path.read_bytes())
    data[middle : middle + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


def test_tensor_record_spans_point_at_each_tensors_bytes(tmp_path):
    state = {"a": torch.arange(300.0), "b": torch.ones(7, dtype=torch.float64)}
    path = tmp_path / "two.pt"
    torch.save(state, path)
    data = path.read_bytes()
    found = sorted(data[start:end] for start, end in tensor_record_spans(path).values())
    assert found == sorted(t.numpy().tobytes() for t in state.values())


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_any_tensor_is_caught_and_named(tmp_path):
    state = {"model_state_dict": Net().state_dict(), "epoch": 3, "momentum": [torch.ones(5), torch.zeros(2, 2)]}
    places = ["/model_state_dict/" + k for k in state["model_state_dict"]] + ["/momentum/0", "/momentum/1"]
    clean = save_checkpoint(tmp_path / "clean.pt", state).read_bytes()
    spans = tensor_record_spans(tmp_path / "clean.pt")
    assert len(spans) == len(places)
    named = set()
    for start, end in spans.values():
        damaged = tmp_path / "damaged.pt"
        damaged.write_bytes(clean)
        flip_byte(damaged, (start + end) // 2)
        torch.load(damaged, weights_only=True)  # torch.load alone does not notice
        with pytest.raises(CorruptCheckpointError, match="no longer match") as caught:
            load_checkpoint(damaged)
        named |= {place for place in places if f"{place} no longer" in str(caught.value)}
    assert named == set(places), "every damaged tensor is named"


def test_a_changed_plain_value_is_caught(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 3, "w": torch.ones(2)})
    tampered = torch.load(path, weights_only=True)
    tampered["epoch"] = 4  # as if a byte of the pickle had changed the number
    torch.save(tampered, path)
    with pytest.raises(CorruptCheckpointError, match="its plain values"):
        load_checkpoint(path)


def test_the_integrity_entry_is_checked_and_removed(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 3})
    assert "_integrity" in torch.load(path, weights_only=True)
    assert load_checkpoint(path) == {"epoch": 3}
    with pytest.raises(ValueError, match="save_checkpoint's own"):
        save_checkpoint(tmp_path / "d.pt", {"_integrity": 1})


def test_a_plain_torch_save_file_is_checked_with_its_zip_crc32(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"model_state_dict": Net().state_dict()}, path)
    assert set(load_checkpoint(path)) == {"model_state_dict"}
    flip_bytes_inside_a_tensor(path)
    torch.load(path, weights_only=True)  # torch.load alone does not notice: the damaged numbers load silently
    with pytest.raises(CorruptCheckpointError, match=r"record '.*/data/\d+' does not match the CRC32"):
        load_checkpoint(path)


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("epoch: 3\n")
    with pytest.raises(NotACheckpointError, match=r"is not a file written by torch.save \(it starts with b'epoc'"):
        load_checkpoint(path)


def test_a_bare_tensor_is_not_a_checkpoint(tmp_path):
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    with pytest.raises(NotACheckpointError, match="holds a Tensor, not a dict of named entries"):
        load_checkpoint(tmp_path / "tensor.pt")


def test_missing_entries_are_named_and_a_bare_state_dict_is_recognised(tmp_path):
    torch.save(Net().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(IncompleteCheckpointError, match=r"lacks 'model_state_dict'.*looks like a bare state_dict"):
        load_checkpoint(tmp_path / "weights.pt", required=["model_state_dict"])
    save_checkpoint(tmp_path / "partial.pt", {"epoch": 1})
    with pytest.raises(IncompleteCheckpointError, match=r"lacks 'optimizer_state_dict'; it has \['epoch'\]\.$"):
        load_checkpoint(tmp_path / "partial.pt", required=["epoch", "optimizer_state_dict"])


class Payload:
    """Unpickling this runs `marker.touch()`-equivalent code: a stand-in for a malicious file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_never_runs_and_is_named_unsafe(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    evil = {"model_state_dict": {}, "payload": Payload(marker)}
    if writer == "torch.save":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match=r"refuses to load with weights_only=True.*Nothing in it was"):
        load_checkpoint(path)
    assert not marker.exists(), "the payload ran"
    assert path.exists(), "the evidence is not deleted"
    # Proof that the file really is malicious: an unsafe load runs the payload.
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


def test_save_refuses_values_that_weights_only_cannot_load(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['loss'\] is a numpy.float64.*loss.item\(\)"):
        save_checkpoint(tmp_path / "c.pt", {"loss": np.float64(0.4)})
    assert list(tmp_path.iterdir()) == []


def test_save_into_a_missing_folder_says_so(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="the folder .* does not exist"):
        save_checkpoint(tmp_path / "no" / "c.pt", {"epoch": 1})


def test_rotation_keeps_the_newest_and_latest_finds_it(tmp_path):
    for step in [1, 2, 10, 3]:
        save_checkpoint(tmp_path / checkpoint_name(step), {"step": step}, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint_name(3), checkpoint_name(10)]
    assert latest_checkpoint(tmp_path) == tmp_path / checkpoint_name(10)
    with pytest.raises(ValueError, match="keep_last needs"):
        save_checkpoint(tmp_path / "other.pt", {}, keep_last=2)


def test_latest_checkpoint_of_a_wrong_folder_is_an_error(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        latest_checkpoint(tmp_path / "typo")
    assert latest_checkpoint(tmp_path) is None


def save_forever(path):
    """Child process: overwrite `path` with ever newer, self-consistent checkpoints."""
    torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP thread pool
    version = 1
    while True:
        save_checkpoint(path, {"version": version, "weights": torch.full((4_000_000,), float(version))})
        version += 1


def test_sigkill_during_save_never_leaves_a_partial_file_under_the_final_name(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"version": 0, "weights": torch.zeros(4_000_000)})
    rng = random.Random(0)
    fork = multiprocessing.get_context("fork")
    versions, killed_mid_save = [], 0
    for _ in range(25):
        child = fork.Process(target=save_forever, args=(path,))
        child.start()
        time.sleep(rng.uniform(0.0, 0.3))  # a random moment: before, during or between saves
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        checkpoint = load_checkpoint(path, required=["version", "weights"])
        assert torch.all(checkpoint["weights"] == checkpoint["version"]), "a mix of two saves"
        versions.append(checkpoint["version"])
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.pt"]
        assert all(name.startswith(".ckpt.pt.tmp-") for name in leftovers), leftovers
        assert len(leftovers) <= 1, f"the next save did not remove the earlier leftovers: {leftovers}"
        killed_mid_save += f".ckpt.pt.tmp-{socket.gethostname()}-{child.pid}" in leftovers
    # The test must have exercised both cases: kills after completed saves, and kills mid-write.
    assert sum(v > 0 for v in versions) >= 10, versions
    assert killed_mid_save >= 5, killed_mid_save


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")  # torch notes its O(nnz) check
def test_unusual_tensors_are_hashed_and_verified_too(tmp_path):
    state = {
        "sparse": torch.randn(4, 4).to_sparse(),
        "bf16": torch.ones(3, dtype=torch.bfloat16),
        "empty": torch.zeros(0),
    }
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pt", state))
    assert torch.equal(loaded["sparse"].to_dense(), state["sparse"].to_dense())
    assert loaded["bf16"].dtype == torch.bfloat16 and loaded["empty"].numel() == 0
