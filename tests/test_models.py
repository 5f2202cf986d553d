import socket

import pytest
import torch

from lesson_utils import models
from lesson_utils.models import Net, vgg16
from lesson_utils.original import OriginalNet

# The original lesson's printout of print(net), line for line.
ORIGINAL_PRINTOUT = """\
Net(
  (conv1): Conv2d(3, 6, kernel_size=(5, 5), stride=(1, 1))
  (pool): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  (conv2): Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))
  (fc1): Linear(in_features=400, out_features=120, bias=True)
  (fc2): Linear(in_features=120, out_features=84, bias=True)
  (fc3): Linear(in_features=84, out_features=10, bias=True)
)"""


def test_net_gives_ten_logits_for_a_cifar_batch():
    assert Net()(torch.randn(4, 3, 32, 32)).shape == (4, 10)


def test_net_prints_like_the_original_lesson():
    assert str(Net()).splitlines() == ORIGINAL_PRINTOUT.splitlines()
    assert str(OriginalNet()).splitlines() == ORIGINAL_PRINTOUT.splitlines()


def test_net_state_dict_matches_the_original_layers():
    shapes = {k: tuple(v.shape) for k, v in Net().state_dict().items()}
    assert shapes == {
        "conv1.weight": (6, 3, 5, 5),
        "conv1.bias": (6,),
        "conv2.weight": (16, 6, 5, 5),
        "conv2.bias": (16,),
        "fc1.weight": (120, 400),
        "fc1.bias": (120,),
        "fc2.weight": (84, 120),
        "fc2.bias": (84,),
        "fc3.weight": (10, 84),
        "fc3.bias": (10,),
    }
    # Same keys and shapes as the buggy original, so weights move between the two.
    Net().load_state_dict(OriginalNet().state_dict())


def test_original_net_cannot_run():
    # Its three bugs, fixed one at a time, are shown and checked in lesson 03 (strict nbval).
    with pytest.raises(NotImplementedError, match='missing the required "forward" function'):
        OriginalNet()(torch.randn(2, 3, 32, 32))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_vgg16_offline_default_is_random_with_a_notice(no_network, monkeypatch, capsys):
    monkeypatch.delenv(models.PRETRAINED_ENV, raising=False)
    model = vgg16()
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("vgg16: random weights (offline default")
    assert model.classifier[-1].out_features == 1000


def test_vgg16_asked_for_imagenet_without_cache_never_downloads(no_network, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv(models.PRETRAINED_ENV, "1")
    vgg16()
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "not found; no download is attempted" in out


def test_vgg16_uses_cached_imagenet_weights_when_asked(no_network, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    # A stand-in "cached" file with VGG16's own keys: torchvision must read it, not download.
    import torchvision

    weights = torchvision.models.vgg16().state_dict()
    models.imagenet_weights_file().parent.mkdir(parents=True)
    torch.save(weights, models.imagenet_weights_file())
    model = vgg16(pretrained=True)
    assert "ImageNet weights from" in capsys.readouterr().out
    assert torch.equal(model.features[0].weight, weights["features.0.weight"])
