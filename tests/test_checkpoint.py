import collections
import multiprocessing
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch.utils.serialization import config

from lesson_utils import Net
from lesson_utils import checkpoint as ckpt
from lesson_utils.checkpoint import (
    CheckpointDeviceError,
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    IncompleteCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
    UnverifiedCheckpointWarning,
    checkpoint_name,
    latest_checkpoint,
    latest_valid_checkpoint,
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
    with pytest.raises(CorruptCheckpointError, match=r"good\.pt is truncated or corrupt .*latest_valid_checkpoint"):
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


# --- the faults an expert found (issue 25): what may be saved is what weights_only loads, damage reads
# as damage, the machine's errors as the machine's, one process-wide CRC switch shared safely by threads,
# rotation that reads the new file back before deleting, and a resume that skips a damaged newest file.


class Point(NamedTuple):
    x: float
    y: float


class Tagged(torch.Tensor):
    """A tensor subclass nobody allowed."""


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (collections.defaultdict(int, a=1), "collections.defaultdict"),
        (Point(1.0, 2.0), "Point"),
        (torch.ones(2).as_subclass(Tagged), "Tagged"),
        (collections.deque([1, 2]), "collections.deque"),
    ],
    ids=["defaultdict", "namedtuple", "tensor subclass", "deque"],
)
def test_what_weights_only_would_refuse_is_refused_before_anything_is_written(tmp_path, value, named):
    with pytest.raises(TypeError, match=rf"checkpoint\['extra'\] is a .*{named}.*refuses to read back"):
        save_checkpoint(tmp_path / "c.pt", {"epoch": 1, "extra": value})
    assert list(tmp_path.iterdir()) == [], "no file, and no temporary, is left behind"


def test_what_weights_only_reads_is_saved_and_comes_back(tmp_path):
    values = {
        "complex": complex(1, -2),
        "bytearray": bytearray(b"\x00\x01"),
        "set": {1, 2, 3},
        "counter": collections.Counter("aab"),
        "ordered": collections.OrderedDict(a=1),
        "size": torch.Size([2, 3]),
        "dtype": torch.bfloat16,
        "device": torch.device("cpu"),
        "parameter": torch.nn.Parameter(torch.ones(2)),
    }
    path = save_checkpoint(tmp_path / "c.pt", values)
    loaded = load_checkpoint(path)
    for key, value in values.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(loaded[key], value)
        else:
            assert loaded[key] == value and type(loaded[key]) is type(value), key


def small_checkpoint(tmp_path: Path, writer: str) -> Path:
    content = {"epoch": 3, "w": torch.arange(6.0), "opt": {"lr": 0.1, "betas": (0.9, 0.99), "step": 7}}
    if writer == "save_checkpoint":
        return save_checkpoint(tmp_path / "c.pt", content)
    torch.save(content, tmp_path / "c.pt")  # compute_crc32 on: torch.save's default
    return tmp_path / "c.pt"


@pytest.mark.parametrize("writer", ["save_checkpoint", "torch.save"])
def test_a_flipped_byte_anywhere_reads_as_damage_never_as_unsafe_or_a_bare_exception(tmp_path, writer):
    path = small_checkpoint(tmp_path, writer)
    original = path.read_bytes()
    expected = load_checkpoint(path)
    outcomes, caught = collections.Counter(), set()
    for position in range(len(original)):
        damaged = bytearray(original)
        damaged[position] ^= 0x10
        path.write_bytes(damaged)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", UnverifiedCheckpointWarning)
                loaded = load_checkpoint(path)
        except UnsafeCheckpointError as error:
            pytest.fail(f"byte {position}: damage reported as unsafe: {error}")
        except CheckpointError as error:
            outcomes[type(error).__name__] += 1
            caught.add(position)
            continue
        except Exception as error:  # noqa: BLE001
            pytest.fail(f"byte {position}: {type(error).__name__} escaped: {error}")
        # it loaded: then the byte was one that carries no content (an id, padding), and the content is intact
        assert loaded.keys() == expected.keys() and torch.equal(loaded["w"], expected["w"]), position
        assert loaded["opt"] == expected["opt"] and loaded["epoch"] == expected["epoch"], position
        outcomes["loaded intact"] += 1
    # every byte that carries content (the pickle, the tensors) was caught, not only some
    path.write_bytes(original)
    content = [span for name, span in _record_spans(path).items() if name.endswith(("data.pkl", "/data/0"))]
    for start, end in content:
        for position in range(start, end):
            assert position in caught, f"byte {position} of the content loaded without a word"
    assert outcomes["loaded intact"] + len(caught) == len(original), outcomes


def _record_spans(path: Path) -> dict[str, tuple[int, int]]:
    """Every record's data span, from its local header (tensor_record_spans covers the tensors only)."""
    spans = dict(tensor_record_spans(path))
    with zipfile.ZipFile(path) as archive:
        name = next(i.filename for i in archive.infolist() if i.filename.endswith("/data.pkl"))
    spans[name] = ckpt._pickle_span(path)
    return spans


def test_a_damaged_pickle_is_caught_before_it_is_unpickled(tmp_path):
    path = small_checkpoint(tmp_path, "save_checkpoint")
    start, end = ckpt._pickle_span(path)
    data = bytearray(path.read_bytes())
    data[(start + end) // 2] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(CorruptCheckpointError, match=r"its pickle \(data\.pkl\) no longer matches.*not unpickled"):
        load_checkpoint(path)


def test_a_file_nothing_can_verify_loads_with_a_warning(tmp_path):
    before = config.save.compute_crc32
    config.save.compute_crc32 = False
    try:
        torch.save({"epoch": 1, "w": torch.ones(3)}, tmp_path / "bare.pt")
    finally:
        config.save.compute_crc32 = before
    with pytest.warns(UnverifiedCheckpointWarning, match="loaded unverified"):
        assert load_checkpoint(tmp_path / "bare.pt")["epoch"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(small_checkpoint(tmp_path, "save_checkpoint"))  # verified: not a word
        load_checkpoint(small_checkpoint(tmp_path, "torch.save"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("location", ["cuda", "cuda:0", torch.device("cuda", 3)])
def test_a_missing_device_is_reported_as_such_not_as_damage(tmp_path, location):
    path = small_checkpoint(tmp_path, "save_checkpoint")
    with pytest.raises(CheckpointDeviceError, match=r"this machine has no such device \(0 CUDA device"):
        load_checkpoint(path, map_location=location)


def test_a_map_location_that_is_no_device_says_what_it_expected(tmp_path):
    with pytest.raises(CheckpointDeviceError, match=r"map_location='gpu' is not a device: use 'cpu', 'cuda'"):
        load_checkpoint(small_checkpoint(tmp_path, "save_checkpoint"), map_location="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_file_saved_on_a_gpu_without_map_location_is_a_device_error(tmp_path):
    from lesson_utils.gpu_file import save_as_gpu_file

    save_as_gpu_file({"w": torch.ones(2)}, tmp_path / "gpu.pt")
    with pytest.raises(CheckpointDeviceError, match="saved on a device this machine lacks.*map_location='cpu'"):
        load_checkpoint(tmp_path / "gpu.pt", map_location=None)
    assert torch.equal(load_checkpoint(tmp_path / "gpu.pt")["w"], torch.ones(2))


@pytest.mark.parametrize("error", [PermissionError("denied"), MemoryError(), torch.OutOfMemoryError("oom")])
def test_the_machines_errors_propagate_as_they_are(tmp_path, monkeypatch, error):
    path = small_checkpoint(tmp_path, "save_checkpoint")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(ckpt.torch, "load", fail)
    with pytest.raises(type(error)) as caught:
        load_checkpoint(path)
    assert not isinstance(caught.value, CheckpointError)


def test_two_threads_saving_at_once_leave_the_crc_switch_as_they_found_it(tmp_path, monkeypatch):
    """The order that broke the old switch: A turns CRCs off, B starts, A ends, B ends."""
    real_save = torch.save
    a_inside, a_done = threading.Event(), threading.Event()

    def save(obj, f, **kwargs):
        real_save(obj, f, **kwargs)
        if threading.current_thread().name == "A":
            a_inside.set()
            assert b_inside.wait(10)
        else:
            b_inside.set()
            assert a_done.wait(10)

    b_inside = threading.Event()
    monkeypatch.setattr(ckpt.torch, "save", save)
    assert config.save.compute_crc32 is True
    errors = []

    def worker(name):
        try:
            save_checkpoint(tmp_path / f"{name}.pt", {"who": name, "w": torch.ones(3)})
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            if name == "A":
                a_done.set()

    a = threading.Thread(target=worker, args=("A",), name="A")
    a.start()
    assert a_inside.wait(10)
    b = threading.Thread(target=worker, args=("B",), name="B")
    b.start()
    a.join(20)
    b.join(20)
    assert not errors, errors
    assert config.save.compute_crc32 is True, "CRCs stayed off for every later torch.save"
    assert load_checkpoint(tmp_path / "A.pt")["who"] == "A" and load_checkpoint(tmp_path / "B.pt")["who"] == "B"


def test_rotation_reads_the_new_file_back_before_deleting_the_old_ones(tmp_path, monkeypatch):
    for step in (1, 2):
        save_checkpoint(tmp_path / checkpoint_name(step), {"step": step, "w": torch.ones(64)}, keep_last=2)
    real_fsync = ckpt._fsync

    def fsync_after_a_bad_write(fd):
        real_fsync(fd)
        path = Path(f"/proc/self/fd/{fd}").resolve()
        if path.name.startswith(".ckpt_"):
            (start, end), *_ = tensor_record_spans(path).values()
            data = bytearray(path.read_bytes())
            data[start] ^= 0xFF  # the disk gave back other bytes than were written
            path.write_bytes(data)

    monkeypatch.setattr(ckpt, "_fsync", fsync_after_a_bad_write)
    with pytest.raises(CorruptCheckpointError, match="no longer match"):
        save_checkpoint(tmp_path / checkpoint_name(3), {"step": 3, "w": torch.ones(64)}, keep_last=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint_name(1), checkpoint_name(2)]


def test_a_resume_skips_a_damaged_newest_checkpoint(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path / checkpoint_name(step), {"epoch": step, "w": torch.full((64,), float(step))})
    newest = tmp_path / checkpoint_name(3)
    (start, _end), *_ = tensor_record_spans(newest).values()
    data = bytearray(newest.read_bytes())
    data[start] ^= 0x01
    newest.write_bytes(data)
    (tmp_path / checkpoint_name(4)).write_bytes(b"")  # a save that never finished
    with pytest.warns(UserWarning, match=r"skipping .*ckpt_00000004\.pt: .*empty") as caught:
        path, loaded = latest_valid_checkpoint(tmp_path, required=["epoch"])
    assert any("ckpt_00000003.pt" in str(w.message) and "corrupt" in str(w.message) for w in caught)
    assert path.name == checkpoint_name(2) and loaded["epoch"] == 2


def test_a_folder_of_only_broken_checkpoints_is_an_error_not_a_fresh_start(tmp_path):
    (tmp_path / checkpoint_name(1)).write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(CorruptCheckpointError, match="none of the 1 checkpoints"):
        latest_valid_checkpoint(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert latest_valid_checkpoint(empty) is None


def test_windows_neither_probes_processes_nor_opens_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt, "WINDOWS", True)

    def refuse(*args, **kwargs):
        raise AssertionError("called on Windows")

    monkeypatch.setattr(ckpt.os, "kill", refuse)
    assert ckpt._process_exists(2**22 + 1) is True  # kept: os.kill(pid, 0) would end a process there
    monkeypatch.setattr(ckpt.os, "open", refuse)
    ckpt._fsync_folder(tmp_path)


def test_macos_flushes_to_stable_storage_with_full_fsync(tmp_path, monkeypatch):
    calls = []

    class FakeFcntl:
        F_FULLFSYNC = 51

        @staticmethod
        def fcntl(fd, command):
            calls.append(command)

    monkeypatch.setattr(ckpt, "fcntl", FakeFcntl)
    save_checkpoint(tmp_path / "c.pt", {"epoch": 1})
    assert calls and set(calls) == {51}, "every fsync of the save went through F_FULLFSYNC"
