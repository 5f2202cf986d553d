import pytest
import torch

from lesson_utils.explore import describe_entry, histogram_png, state_dict_explorer, summary_html


@pytest.fixture
def state():
    return {"w": torch.arange(6.0).reshape(2, 3), "steps": torch.tensor(7), "empty": torch.zeros(0)}


def test_describe_entry_reports_shape_dtype_size_and_statistics(state):
    info = describe_entry(state, "w")
    assert info == {
        "key": "w",
        "shape": (2, 3),
        "dtype": "float32",
        "numel": 6,
        "bytes": 24,
        "mean": 2.5,
        "std": pytest.approx(1.870829, abs=1e-6),
        "min": 0.0,
        "max": 5.0,
    }


def test_describe_entry_handles_integer_scalars_and_empty_tensors(state):
    assert describe_entry(state, "steps")["dtype"] == "int64"
    assert describe_entry(state, "steps")["std"] == 0.0
    assert "mean" not in describe_entry(state, "empty")


def test_describe_entry_unknown_key_lists_the_real_keys(state):
    with pytest.raises(KeyError, match="'nope' is not in this state_dict; its keys are"):
        describe_entry(state, "nope")


def test_histogram_is_a_png_and_samples_huge_tensors():
    assert histogram_png(torch.randn(1000)).startswith(b"\x89PNG")
    assert histogram_png(torch.randn(3_000_000), max_values=10_000).startswith(b"\x89PNG")


def test_explorer_updates_summary_and_histogram_when_the_key_changes(state):
    ui = state_dict_explorer(state)
    dropdown, summary, image = ui.children
    assert dropdown.options == ("w", "steps", "empty") and "<b>w</b>" in summary.value
    first_image = image.value
    dropdown.value = "steps"
    assert "<b>steps</b>" in summary.value and "int64" in summary.value
    assert image.value != first_image


def test_explorer_refuses_an_empty_state_dict():
    with pytest.raises(ValueError, match="empty"):
        state_dict_explorer({})


def test_summary_html_mentions_every_field(state):
    text = summary_html(describe_entry(state, "w"))
    assert all(part in text for part in ("shape (2, 3)", "float32", "6 values", "24 bytes", "mean 2.5"))
