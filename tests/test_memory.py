"""Measuring memory and loads (not their timings: the machine is shared and noisy)."""

import mmap
import time

import pytest
import torch

from lesson_utils.memory import PeakSampler, mapped_from, measure_load


def test_peak_sampler_sees_a_short_lived_allocation():
    with PeakSampler() as sampler:
        # Fresh anonymous pages, touched: malloc could reuse heap pages that are resident already.
        block = mmap.mmap(-1, 80_000_000, flags=mmap.MAP_PRIVATE)
        block[::4096] = b"x" * len(range(0, 80_000_000, 4096))
        # Keep the block until the thread has sampled a few times since it was made and its peak
        # rose (not for a fixed time: on a busy machine the thread can be late), at most 30 s;
        # then free it before the end.
        seen, deadline = sampler.samples, time.monotonic() + 30
        while time.monotonic() < deadline and (
            sampler.samples < seen + 3 or sampler.peak - sampler.start <= 70_000_000
        ):
            time.sleep(0.001)
        block.close()
    assert sampler.samples >= seen + 3, "the sampling thread did not run for 30 s"
    assert sampler.peak - sampler.start > 70_000_000


def test_measure_load_runs_in_a_fresh_process_and_reports_the_copy(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(60_000_000))
    result = measure_load("raw read", path)
    assert result["way"] == "raw read" and result["seconds"] > 0
    assert result["extra_anon_bytes"] > 50_000_000, "read() makes a private copy of the file"


def test_unknown_way_is_refused():
    with pytest.raises(ValueError, match="unknown load way 'fast'"):
        measure_load("fast", "x")


def test_mapped_from_tells_a_file_backed_tensor_from_a_copy(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(10_000)}, path)
    assert mapped_from(torch.load(path, mmap=True, weights_only=True)["w"], path)
    assert not mapped_from(torch.load(path, weights_only=True)["w"], path)
    assert not mapped_from(torch.load(path, mmap=True, weights_only=True)["w"], tmp_path / "other.pt")
