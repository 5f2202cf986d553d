"""The benchmark's table (its measurements are tested in test_memory.py)."""

from lesson_utils.bench import format_table
from lesson_utils.memory import LOAD_WAYS


def test_table_shows_every_ratio():
    load = {
        way: {
            "seconds": 1.0,
            "slowest_seconds": 1.25,
            "vs_raw_read": 1.0,
            "speedup_vs_naive": 1.0,
            "extra_memory_vs_weights": 0.5,
            "load_and_forward_seconds": 1.5,
            "speedup_vs_naive_with_forward": 2.5,
        }
        for way in LOAD_WAYS
    }
    save = {
        name: {"seconds": 1.0, "slowest_seconds": 1.5, "vs_raw_write_fsync": 1.2, "vs_raw_new_file_rename": 0.8}
        for name in ("raw write + fsync", "save_checkpoint")
    }
    table = format_table({"weights_bytes": 553_000_000, "repeats": 1, "save": save, "load": load})
    assert "save_checkpoint" in table and "1.20x" in table and "0.50x w" in table
    assert all(way in table for way in LOAD_WAYS)
    assert "1.500" in table and "2.5x" in table, "the load + first forward columns"
    assert "1.250" in table, "the slowest run, to show the noise"
    assert "0.80x" in table, "save against the atomic raw baseline"
