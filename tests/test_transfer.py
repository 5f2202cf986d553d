import copy

import pytest
import torch
import torch.nn as nn

from lesson_utils import Net
from lesson_utils.transfer import TransferReport, load_matching_weights


class WiderHead(Net):
    """Net with an extra layer and a 4-class head under a new name."""

    def __init__(self):
        super().__init__(num_classes=4)
        self.extra = nn.Linear(84, 84)


def test_identical_models_load_everything():
    source, target = Net(), Net()
    report = load_matching_weights(target, source.state_dict())
    assert report.loaded == list(source.state_dict()) and not (
        report.missing or report.unexpected or report.skipped_shape
    )
    assert all(
        torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values(), strict=True)
    )


def test_new_head_is_skipped_for_shape_and_the_rest_loads():
    source, target = Net(), WiderHead()
    head_before = target.fc3.weight.clone()
    report = load_matching_weights(target, source.state_dict())
    assert report.skipped_shape == [("fc3.weight", (10, 84), (4, 84)), ("fc3.bias", (10,), (4,))]
    assert report.missing == ["extra.weight", "extra.bias"]
    assert torch.equal(target.fc3.weight, head_before), "a skipped tensor is left untouched"
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert "skipped: shape" in str(report) and "file [10, 84] vs model [4, 84]" in str(report)


def test_strict_false_alone_raises_on_the_same_shape_mismatch():
    with pytest.raises(RuntimeError, match="size mismatch for fc3.weight"):
        WiderHead().load_state_dict(Net().state_dict(), strict=False)


@pytest.mark.parametrize("wrap", [nn.DataParallel, torch.compile])
def test_wrapper_prefixes_are_stripped(wrap):
    source = Net()
    prefixed = wrap(copy.deepcopy(source)).state_dict()  # a copy: DataParallel moves what it wraps to cuda:0
    assert all(key.startswith(("module.", "_orig_mod.")) for key in prefixed)
    target = Net()
    report = load_matching_weights(target, prefixed)
    assert report.stripped_prefix in ("module.", "_orig_mod.") and len(report.loaded) == 10
    assert torch.equal(target.fc3.bias, source.fc3.bias)


def test_empty_state_dict_gives_a_clear_report_and_changes_nothing():
    target = Net()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    report = load_matching_weights(target, {})
    assert report.loaded == [] and report.missing == list(before)
    assert "WARNING: nothing was loaded" in str(report)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_unrelated_model_is_reported_never_a_crash():
    unrelated = nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3)).state_dict()
    report = load_matching_weights(Net(), unrelated)
    assert report.loaded == [] and set(report.unexpected) == set(unrelated)
    assert "nothing was loaded" in str(report)


def test_only_transfers_the_chosen_layers_and_matches_whole_names():
    report = load_matching_weights(Net(), Net().state_dict(), only=["conv1", "fc"])
    assert report.loaded == ["conv1.weight", "conv1.bias"]  # "fc" is not a prefix of "fc1."
    assert "conv2.weight" in report.not_selected


def test_a_path_instead_of_a_dict_says_what_to_do():
    with pytest.raises(TypeError, match=r"got str\. Did you pass a path\? Load it first"):
        load_matching_weights(Net(), "weights.pt")


def test_empty_report_prints():
    assert "nothing to report" in str(TransferReport())
