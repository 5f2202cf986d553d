import random

import numpy as np
import torch

from lesson_utils import env_report, seed_everything


def test_seed_everything_seeds_python_numpy_and_torch():
    seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_env_report_lists_versions_device_and_optional_files(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("LESSON_CIFAR10_DIR", str(tmp_path))
    report = env_report()
    assert report["torch"] == torch.__version__
    assert report["device"] in {"cpu", "cuda"}
    assert report["ImageNet VGG16 weights"].startswith("not found")
    assert report["CIFAR-10"].startswith("not found")
    assert "torchvision" in capsys.readouterr().out
