"""The benchmark's parts (not its timings: the machine is shared and noisy)."""

import time

import pytest

from lesson_utils.bench import LOAD_WAYS, PeakSampler, format_table, measure_load


def test_peak_sampler_sees_a_short_lived_allocation():
    with PeakSampler() as sampler:
        block = b"x" * 80_000_000
        # Keep the block until the thread has sampled a few times since it was made (not for a
        # fixed time: on a busy machine the thread can be late), then free it before the end.
        seen, deadline = sampler.samples, time.monotonic() + 30
        while sampler.samples < seen + 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        del block
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


def test_table_shows_every_ratio():
    load = {
        way: {"seconds": 1.0, "vs_raw_read": 1.0, "speedup_vs_naive": 1.0, "extra_memory_vs_weights": 0.5}
        for way in LOAD_WAYS
    }
    save = {name: {"seconds": 1.0, "vs_raw_write_fsync": 1.2} for name in ("raw write + fsync", "save_checkpoint")}
    table = format_table({"weights_bytes": 553_000_000, "repeats": 1, "save": save, "load": load})
    assert "save_checkpoint" in table and "1.20x" in table and "0.50x w" in table
    assert all(way in table for way in LOAD_WAYS)
