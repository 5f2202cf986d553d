"""What the checkers' tests share: ``expect`` (a question's verdict on an answer), the lessons' set-up
folders, and the set-up cells of the exercise notebooks whose files a checker verifies (lessons 06 and 07),
written here as the notebooks run them."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from torch.distributed.checkpoint.state_dict import get_state_dict
from torch.utils.data import DataLoader

from lesson_utils import Net, OfflineShapes, seed_everything


def expect(question, namespace, status, message=""):
    """``question``'s verdict on ``namespace``: its status must be ``status`` and its message contain ``message``."""
    result = question.evaluate(namespace)
    assert result.status == status, result
    assert message in result.message, result
    return result


def workdir_in(folder: Path, lesson: str) -> Path:
    """Lesson ``lesson``'s set-up `workdir` ("01"), made in ``folder``: mkdtemp names it exercises01-..."""
    workdir = folder / f"exercises{lesson}-test"
    workdir.mkdir(exist_ok=True)
    return workdir


def lesson04_source() -> dict:
    """Lesson 04's set-up, as the notebook runs it: seed 0, a Net for ddp_state, then the 10-class source's state."""
    seed_everything(0)
    Net()
    return Net().state_dict()


def lesson04_warm(source: dict, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> dict:
    """Lesson 04 Q1's answer: a Net(num_classes=4) warm started from ``source``, its head's weight and bias
    replaced by ``weight`` and ``bias`` where given."""
    from lesson_utils.transfer import load_matching_weights

    target = Net(num_classes=4)
    load_matching_weights(target, source)
    with torch.no_grad():
        if weight is not None:
            target.fc3.weight.copy_(weight)
        if bias is not None:
            target.fc3.bias.copy_(bias)
    return {"target": target, "source_state": source}


def lesson07_setup(folder: Path) -> tuple[Path, dict, object]:
    """Lesson 07's set-up cell, as the notebook runs it: a seed-0 Net and its SGD (lr=0.1, momentum=0.9) after two
    steps, saved at workdir / "checkpoint.pt"; then `gan` (drawn after that training) and `train_steps`."""
    seed_everything(0)
    trained = Net()
    sgd = torch.optim.SGD(trained.parameters(), lr=0.1, momentum=0.9)
    for images, labels in DataLoader(OfflineShapes(128), batch_size=64):  # two steps: momentum to save
        sgd.zero_grad()
        F.cross_entropy(trained(images), labels).backward()
        sgd.step()
    path = workdir_in(folder, "07") / "checkpoint.pt"
    torch.save({"model_state_dict": trained.state_dict(), "optimizer_state_dict": sgd.state_dict()}, path)
    generator = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    discriminator = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    gan = {
        "generator": generator,
        "discriminator": discriminator,
        "opt_g": torch.optim.Adam(generator.parameters(), lr=1e-2),
        "opt_d": torch.optim.Adam(discriminator.parameters(), lr=1e-2),
    }

    def train_steps(gan, steps):
        for step in range(steps):
            g = torch.Generator().manual_seed(step)
            noise, real = torch.randn(16, 8, generator=g), torch.randn(16, 2, generator=g) + 3
            fake = gan["generator"](noise)
            d_loss = (
                F.softplus(-gan["discriminator"](real)).mean() + F.softplus(gan["discriminator"](fake.detach())).mean()
            )
            gan["opt_d"].zero_grad()
            d_loss.backward()
            gan["opt_d"].step()
            g_loss = F.softplus(-gan["discriminator"](fake)).mean()
            gan["opt_g"].zero_grad()
            g_loss.backward()
            gan["opt_g"].step()

    return path, gan, train_steps


def lesson07_checkpoint(folder: Path) -> Path:
    """Lesson 07's set-up checkpoint (:func:`lesson07_setup`)."""
    return lesson07_setup(folder)[0]


def lesson07_gan(folder: Path, steps: int = 3) -> dict:
    """Lesson 07's `gan` after the set-up and ``train_steps(gan, 3)`` for every 3 of ``steps`` (the answer cell run
    ``steps // 3`` times)."""
    _path, gan, train_steps = lesson07_setup(folder)
    for _call in range(steps // 3):
        train_steps(gan, 3)
    return gan


def lesson06_checkpoint(folder: Path) -> tuple[Path, dict]:
    """Lesson 06's set-up in one process: ``launch("save", checkpoint_dir, nproc=2)`` trains dist_demo's model 3
    AdamW steps, FSDP averaging the two ranks' gradients; here each step's loss is the mean of the two ranks'
    losses, which gives the same numbers up to float rounding. Saved with dcp.save into workdir / "checkpoint".
    Returns the folder and what dcp_to_torch_save makes of it."""
    from lesson_utils.dist_demo import make_model

    checkpoint_dir = workdir_in(folder, "06") / "checkpoint"
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generators = [torch.Generator().manual_seed(100 + rank) for rank in range(2)]
    for _step in range(3):
        optimizer.zero_grad()
        losses = []
        for generator in generators:
            x, y = torch.randn(16, 32, generator=generator), torch.randint(0, 10, (16,), generator=generator)
            losses.append(nn.functional.cross_entropy(model(x), y))
        (sum(losses) / 2).backward()
        optimizer.step()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=checkpoint_dir)
    torch.save(model.state_dict(), checkpoint_dir / "expected.pt")
    dcp_to_torch_save(checkpoint_dir, folder / "reference.pt")
    return checkpoint_dir, torch.load(folder / "reference.pt", weights_only=True)
