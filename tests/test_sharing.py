"""lesson_utils.sharing: what a read touches, what the disk reads, and what a look at shapes costs (not timings)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lesson_utils.sharing import (
    INSPECT_WAYS,
    disk_bytes_read,
    drop_from_page_cache,
    load_for_inspection,
    measure_inspection,
    touched_bytes,
)


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    state = {"big": torch.randn(2048, 1024, generator=torch.Generator().manual_seed(0)), "small": torch.ones(3)}
    path = tmp_path / "state.pt"
    torch.save(state, path)
    return path, state


def test_touched_bytes_counts_what_a_mapped_file_has_brought_in(checkpoint, tmp_path):
    path, state = checkpoint
    assert touched_bytes(path) == 0, "nothing of the file is mapped yet"
    loaded = torch.load(path, mmap=True, weights_only=True)
    untouched = touched_bytes(path)
    assert untouched < 2.2e6, "loading with mmap=True reads the pickle, not the 8 MB tensor"
    assert torch.equal(loaded["big"], state["big"])  # reads every page of it
    assert touched_bytes(path) >= 8 << 20
    assert touched_bytes(tmp_path / "other.pt") == 0
    del loaded
    assert touched_bytes(path) == 0, "the map went away with the tensors"


def test_a_row_of_a_safetensors_file_touches_far_less_than_the_tensor(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(4096, 1024)}, path)  # 16 MiB
    with safe_open(path, framework="pt") as f:
        before = touched_bytes(path)
        float(f.get_slice("w")[3000].sum())
        row = touched_bytes(path) - before
        float(f.get_slice("w")[:, 5].sum())  # one number in every row: every page
        column = touched_bytes(path) - before
    assert 0 < row <= 4 << 20 and column >= 15 << 20


def test_disk_reads_after_dropping_a_file_from_the_page_cache(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(4 << 20))
    if not drop_from_page_cache(path):
        pytest.skip(f"{tmp_path} is in memory (tmpfs): there is no disk to read from")
    start = disk_bytes_read()
    assert len(path.read_bytes()) == 4 << 20
    assert disk_bytes_read() - start >= 4 << 20, "a dropped file is read from the disk again"
    start = disk_bytes_read()
    path.read_bytes()
    assert disk_bytes_read() - start < 1 << 20, "the second read comes from the page cache"


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm")
def test_a_file_in_memory_cannot_be_dropped():
    path = Path("/dev/shm") / f"lesson08-test-{os.getpid()}.bin"
    try:
        path.write_bytes(bytes(1 << 20))
        assert drop_from_page_cache(path) is False, "on tmpfs the page cache is the file"
    finally:
        path.unlink(missing_ok=True)


def test_every_way_lists_the_shapes_and_only_two_give_the_numbers(checkpoint):
    path, state = checkpoint
    shapes = {name: (tuple(t.shape), t.dtype) for name, t in state.items()}
    for way in INSPECT_WAYS:
        loaded = load_for_inspection(way, path)
        assert {name: (tuple(t.shape), t.dtype) for name, t in loaded.items()} == shapes, way
    assert load_for_inspection('map_location="meta"', path)["big"].is_meta
    assert type(load_for_inspection("FakeTensorMode", path)["big"]).__name__ == "FakeTensor"
    assert torch.equal(load_for_inspection("mmap=True", path)["big"], state["big"])
    assert not torch.equal(load_for_inspection("skip_data", path)["big"], state["big"]), "never read from the file"
    with pytest.raises(ValueError, match="unknown way 'fast'"):
        load_for_inspection("fast", path)


def test_measure_inspection_sees_the_plain_load_copy_and_nothing_else(tmp_path):
    path = tmp_path / "big.pt"
    torch.save({f"w{i}": torch.ones(1024, 1024) for i in range(10)}, path)  # 40 MiB
    results = measure_inspection(path)
    assert list(results) == INSPECT_WAYS
    assert results["torch.load"]["extra_anon_bytes"] > 0.9 * (40 << 20)
    for way in INSPECT_WAYS[:-1]:
        assert results[way]["extra_anon_bytes"] + results[way]["extra_file_bytes"] < 2 << 20, way
        assert results[way]["shapes"] == results["torch.load"]["shapes"], way
    assert results["mmap=True"]["shapes"]["w0"] == [[1024, 1024], "torch.float32"]
    with pytest.raises(ValueError, match="unknown way 'fast'"):
        measure_inspection(path, ["mmap=True", "fast"])
