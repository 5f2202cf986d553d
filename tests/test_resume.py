"""Bit-exact resume: stop, reload from disk, continue; end exactly where a run that never stopped ends."""

import random

import torch

from lesson_utils import Net, OfflineShapes, seed_everything
from lesson_utils.checkpoint import checkpoint_name, latest_checkpoint, load_checkpoint, save_checkpoint
from lesson_utils.training import rng_state, set_rng_state, train_one_epoch

EPOCHS, CRASH_AT, SEED = 4, 2, 0
DATA = OfflineShapes(256, seed=0)


def build():
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    return model, optimizer, scheduler


def run(model, optimizer, scheduler, start, stop, folder):
    for epoch in range(start, stop):
        train_one_epoch(model, optimizer, DATA, epoch, seed=SEED, batch_size=32)
        scheduler.step()
        save_checkpoint(
            folder / checkpoint_name(epoch + 1),
            {
                "epoch": epoch + 1,
                "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(),
                "scheduler_state_dict": scheduler.state_dict(),
                "rng_state": rng_state(),
            },
            keep_last=2,
        )


def resume(folder, restore_rng=True):
    checkpoint = load_checkpoint(latest_checkpoint(folder), required=["epoch", "rng_state"])
    model, optimizer, scheduler = build()
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    scheduler.load_state_dict(checkpoint["scheduler_state_dict"])
    if restore_rng:
        set_rng_state(checkpoint["rng_state"])
    run(model, optimizer, scheduler, checkpoint["epoch"], EPOCHS, folder)
    return model, optimizer


def optimizer_tensors(optimizer, model):
    return [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]


def test_interrupted_and_resumed_training_is_bit_identical(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    seed_everything(SEED)
    reference, reference_optimizer, scheduler = build()
    run(reference, reference_optimizer, scheduler, 0, EPOCHS, tmp_path / "a")

    seed_everything(SEED)
    model, optimizer, scheduler = build()
    run(model, optimizer, scheduler, 0, CRASH_AT, tmp_path / "b")
    del model, optimizer, scheduler
    seed_everything(random.SystemRandom().randrange(2**32))  # a new process
    resumed, resumed_optimizer = resume(tmp_path / "b")

    for a, b in zip(resumed.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(
        optimizer_tensors(resumed_optimizer, resumed), optimizer_tensors(reference_optimizer, reference), strict=True
    ):
        assert torch.equal(a, b)
    assert resumed_optimizer.param_groups[0]["lr"] == reference_optimizer.param_groups[0]["lr"]

    # The same resume without the RNG state is not exact: the test can tell the difference.
    seed_everything(SEED)
    model, optimizer, scheduler = build()
    run(model, optimizer, scheduler, 0, CRASH_AT, tmp_path / "c")
    seed_everything(12345)
    sloppy, _ = resume(tmp_path / "c", restore_rng=False)
    assert not all(torch.equal(a, b) for a, b in zip(sloppy.parameters(), reference.parameters(), strict=True))
