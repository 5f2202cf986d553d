"""Exercises for lesson 09 (long runs that survive being stopped). ``from lesson_utils.exercises import lesson09``.

The set-up cells use :func:`make_loader`, :func:`training_state` and :class:`TinyBN` from here, so that a
checker rebuilds exactly what the set-up made, without the notebook's objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from lesson_utils.checkpoint import CheckpointError, load_checkpoint
from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    _a,
    close_values,
    load_weights_only,
    require_file,
    require_folder,
    require_in_workdir,
    same_values,
    torch_as_installed,
)
from lesson_utils.i18n import N_, _

IMAGES, BATCH_SIZE, TAKEN = 192, 32, 4  # Q1: 6 batches per epoch; stop after 4
VAL_LOSSES = (1.92, 1.41, 1.12, 1.27, 1.35, 1.58)  # Q2: validation loss after epochs 1 to 6; the best is epoch 3
KEEP = 2  # Q2: keep the last two
EMA_DECAY, EMA_STEPS, EMA_IMAGES = 0.9, 16, 256  # Q3
NUMBERED = re.compile(r"^ckpt_(\d+)\.pt$")


def make_loader() -> object:
    """Q1's loader: ``OfflineShapes(192)`` in batches of 32, shuffled by a sampler with a generator of its own
    (seeded with 0; the loader's generator, for its workers' base seed, is another one: lesson 09, section 2).

    Example:
        >>> len(make_loader())
        6
    """
    import warnings

    from torchdata.stateful_dataloader import StatefulDataLoader
    from torchdata.stateful_dataloader.sampler import RandomSampler

    from lesson_utils.data import OfflineShapes

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'set_vital' is deprecated")  # torchdata 0.11 on torch 2.14
        dataset = OfflineShapes(IMAGES)
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(0))
        generator = torch.Generator().manual_seed(1)
        return StatefulDataLoader(dataset, batch_size=BATCH_SIZE, sampler=sampler, generator=generator)


def training_state(epoch: int) -> dict:
    """Q2: the checkpoint a run writes after epoch ``epoch`` (1 to 6): its epoch, a Net's weights, its val_loss.

    Example:
        >>> state = training_state(3)
        >>> state["epoch"], state["val_loss"], len(state["model_state_dict"])
        (3, 1.12, 10)
    """
    from lesson_utils.models import Net

    if not isinstance(epoch, int) or not 1 <= epoch <= len(VAL_LOSSES):
        raise ValueError(_("training_state takes an epoch from 1 to {last}, got {epoch!r}").format(last=6, epoch=epoch))
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):  # the notebook's random numbers stay as they were
        torch.manual_seed(epoch)
        weights = Net().state_dict()
    return {"epoch": epoch, "model_state_dict": weights, "val_loss": VAL_LOSSES[epoch - 1]}


class TinyBN(nn.Module):
    """Q3's model: a small network with a BatchNorm layer, whose running statistics are buffers.

    Example:
        >>> [k for k in TinyBN().state_dict() if k.startswith("body.2.")]
        ['body.2.weight', 'body.2.bias', 'body.2.running_mean', 'body.2.running_var', 'body.2.num_batches_tracked']
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 32), nn.BatchNorm1d(32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# Q1 ------------------------------------------------------------------------------------------------


def _epochs_of_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches the set-up's loader gives in its first two epochs, in order (12 batches)."""
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        loader = make_loader()
        return [batch for _epoch in range(2) for batch in loader]


def _taken_before(state: object) -> int | None:
    """How many batches were taken (counted over two epochs) when ``state`` was saved; None if its next batch
    is none of the set-up's; -1 if it is at the end of an epoch."""
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        resumed = make_loader()
        try:
            resumed.load_state_dict(state)
            batch = next(iter(resumed), None)
        except Exception as error:  # a state of another loader, or a hand-made dict
            message = _(
                "StatefulDataLoader.load_state_dict refuses the saved state ({error_type}: {error}): save "
                "loader.state_dict() of the set-up's `loader` itself"
            )
            raise Incorrect(message.format(error_type=type(error).__name__, error=error)) from None
    if batch is None:
        return -1
    images, labels = batch
    for index, (expected_images, expected_labels) in enumerate(_epochs_of_batches()):
        if same_values(images, expected_images) and same_values(labels, expected_labels):
            return index
    return None


def _loader_state(found: object) -> object:
    """The loader's state in what the file holds: a dict with "loader_state_dict", or the state itself."""
    if isinstance(found, Mapping) and "loader_state_dict" in found:
        return found["loader_state_dict"]
    if isinstance(found, Mapping) and ("_sampler_iter_state" in found or "_snapshot" in found):
        return found  # loader.state_dict() saved on its own: that is the state too
    if isinstance(found, Mapping):
        message = _(
            "the file holds no loader state (its keys: {keys}): save {{'loader_state_dict': loader.state_dict()}}"
        )
        raise Incorrect(message.format(keys=sorted(map(str, found))[:6]))
    message = _("the file holds {found}, not a dict: save {{'loader_state_dict': loader.state_dict()}}")
    raise Incorrect(message.format(found=_a(found)))


def _require_the_setups_loader(loader: object) -> None:
    """:class:`Incorrect` unless the set-up's `loader` (when the check can see it: the loader, or its
    state_dict where only that was handed over) stands after 4 batches too: the state saved must be its own, not
    one of a loader of the student's making that took the batches instead."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    if isinstance(loader, StatefulDataLoader):
        state = StatefulDataLoader.state_dict(loader)
    elif isinstance(loader, Mapping) and ("_sampler_iter_state" in loader or "_snapshot" in loader):
        state = loader
    else:
        return  # deleted, or not a loader: the file alone is judged
    try:
        now = _taken_before(state)
    except Incorrect:
        now = None
    if now != TAKEN:
        where = _("has not given a batch yet") if now == 0 else _("stands elsewhere")
        message = _(
            "the saved state goes on with batch 5, but the set-up's `loader` itself {where}: take the 4 batches from "
            "`loader`, not from a loader of your own, and save its state"
        )
        raise Incorrect(message.format(where=where))


def _resumes_after_four(loader_state_path: object, workdir: object, loader: object) -> str:
    how = _("take 4 batches from `loader`, then save loader.state_dict() with torch.save, under 'loader_state_dict'")
    path = require_file(loader_state_path, "loader_state_path", how)
    require_in_workdir(path, workdir, "loader_state_path", "09")
    state = _loader_state(load_weights_only(path, "loader_state_path", how))
    taken = _taken_before(state)
    per_epoch = IMAGES // BATCH_SIZE
    if taken == TAKEN:
        _require_the_setups_loader(loader)
        return _("a new StatefulDataLoader that loads this state goes on with batch 5 of the first epoch")
    if taken is None:
        raise Incorrect(
            _(
                "a loader that loads this state gives other batches than the set-up's `loader` would: save the state "
                "of the set-up's `loader` (ex.make_loader()), not of another loader"
            )
        )
    if taken in (-1, per_epoch):  # stopped at the end of the epoch, or saved once the loop was over
        message = _(
            "the saved state is at the end of an epoch: all {count} batches were taken, so nothing of the epoch is "
            "left to resume. Stop after 4 (break out of the loop), then save loader.state_dict()"
        )
        raise Incorrect(message.format(count=per_epoch))
    if taken == 0:
        raise Incorrect(
            _(
                "the saved state is at the start of the first epoch: a resume would repeat its first batches. Take 4 "
                "batches from `loader` first (a for loop that breaks after 4), then save loader.state_dict()"
            )
        )
    if taken >= per_epoch:
        message = _(
            "the saved state is in the second epoch (after {count} of its batches): `loader` had already been through "
            "an epoch (each new `for` loop over it starts the next one). Run the set-up cell again, take 4 batches "
            "once, then save"
        )
        raise Incorrect(message.format(count=taken - per_epoch))
    message = _(
        "the saved state resumes after {count} batch(es) of the first epoch, not after 4: take exactly 4 batches from "
        "`loader` (run the set-up cell again first), then save its state"
    )
    raise Incorrect(message.format(count=taken))


q1 = Question(
    "lesson09.q1",
    "Take 4 batches from `loader` (a StatefulDataLoader; the epoch has 6), as a training loop stopped there would, "
    "then save to `loader_state_path` (in `workdir`) what a new loader needs to go on with batch 5.",
    _resumes_after_four,
    names=["loader_state_path"],
    optional=["workdir", "loader"],
    hint=N_(
        "Break out of `for images, labels in loader:` after the 4th batch; loader.state_dict() then says where the "
        "epoch stands. torch.save({'loader_state_dict': loader.state_dict()}, loader_state_path)."
    ),
)


# Q2 ------------------------------------------------------------------------------------------------


def _epoch_of(weights: object) -> int | None:
    """Which epoch's weights (of :func:`training_state`) ``weights`` are; None if none."""
    if not isinstance(weights, Mapping):
        return None
    for epoch in range(1, len(VAL_LOSSES) + 1):
        expected = training_state(epoch)["model_state_dict"]
        if weights.keys() == expected.keys() and all(same_values(weights[k], v) for k, v in expected.items()):
            return epoch
    return None


def _read(path: Path) -> dict:
    try:
        return load_checkpoint(path, required=["epoch", "model_state_dict"])
    except CheckpointError as error:
        raise Incorrect(_("load_checkpoint refuses {file}: {error}").format(file=path.name, error=error)) from None


def _last_two_and_the_best(run_dir: object, workdir: object) -> str:
    how = _("save each epoch's checkpoint into run_dir with save_checkpoint(..., keep_last=2), the best one as best.pt")
    folder = require_folder(run_dir, "run_dir", how)
    require_in_workdir(folder, workdir, "run_dir", "09", new_folder=True)
    numbered = sorted(int(m.group(1)) for p in folder.iterdir() if (m := NUMBERED.match(p.name)))
    last = list(range(len(VAL_LOSSES) - KEEP + 1, len(VAL_LOSSES) + 1))
    if not numbered:
        message = _(
            "run_dir holds no ckpt_<epoch>.pt: save each epoch's checkpoint with "
            "save_checkpoint(run_dir / checkpoint_name(epoch), state, keep_last=2)"
        )
        raise Incorrect(message)
    if numbered != last:
        if set(last) < set(numbered):
            message = _(
                "run_dir keeps the checkpoints of epochs {found}: keep only the last 2 (save_checkpoint(..., "
                "keep_last=2) deletes the older ones)"
            )
        else:
            message = _(
                "run_dir keeps the checkpoints of epochs {found}, but the last two are epochs {last}: save every epoch "
                "(1 to 6) under checkpoint_name(epoch), with keep_last=2"
            )
        raise Incorrect(message.format(found=numbered, last=last))
    for epoch in last:
        path = folder / f"ckpt_{epoch:08d}.pt"
        saved = _read(path)
        if _epoch_of(saved["model_state_dict"]) != epoch or saved["epoch"] != epoch:
            message = _("{file} does not hold epoch {epoch}'s checkpoint: save training_state(epoch) under its epoch")
            raise Incorrect(message.format(file=path.name, epoch=epoch))
    best_epoch = min(range(1, len(VAL_LOSSES) + 1), key=lambda e: VAL_LOSSES[e - 1])
    best_path = folder / "best.pt"
    if not best_path.is_file():
        message = _(
            "run_dir has no best.pt: keep_last=2 deleted the checkpoint of epoch {epoch}, the best one (val_loss "
            "{loss}). Save the best checkpoint under its own name, best.pt, whenever val_loss beats the best so far"
        )
        raise Incorrect(message.format(epoch=best_epoch, loss=VAL_LOSSES[best_epoch - 1]))
    try:
        best = load_checkpoint(best_path)
    except CheckpointError as error:
        raise Incorrect(_("load_checkpoint refuses {file}: {error}").format(file=best_path.name, error=error)) from None
    if "model_state_dict" not in best:
        message = _(
            "best.pt holds {found} but no model_state_dict: save the whole checkpoint of the best epoch (the dict "
            "training_state(epoch) returns), not bare weights"
        )
        raise Incorrect(message.format(found=sorted(map(str, best))[:4]))
    found = _epoch_of(best["model_state_dict"])
    if found is None:
        raise Incorrect(_("best.pt holds weights of none of the 6 epochs: save training_state(epoch) itself"))
    if found != best_epoch:
        message = _(
            "best.pt holds epoch {found}'s checkpoint (val_loss {found_loss}), but the lowest validation loss is "
            "epoch {best}'s ({best_loss}): write best.pt only when val_loss is lower than the best so far"
        )
        raise Incorrect(
            message.format(
                found=found, found_loss=VAL_LOSSES[found - 1], best=best_epoch, best_loss=VAL_LOSSES[best_epoch - 1]
            )
        )
    if best.get("epoch") != best_epoch:
        message = _("best.pt holds epoch {epoch}'s weights but says epoch {found}: save the state as it is")
        raise Incorrect(message.format(epoch=best_epoch, found=best.get("epoch")))
    return _("run_dir keeps epochs 5 and 6, and best.pt holds epoch 3, the lowest validation loss")


q2 = Question(
    "lesson09.q2",
    "Write the checkpoints of a 6-epoch run (`ex.training_state(epoch)`, epochs 1 to 6) into a folder `run_dir` in "
    "`workdir`, keeping the last 2 and the one with the lowest val_loss as best.pt.",
    _last_two_and_the_best,
    names=["run_dir"],
    optional=["workdir"],
    hint=N_(
        "save_checkpoint(run_dir / checkpoint_name(epoch), state, keep_last=2) rotates the numbered files; a file "
        "with another name (best.pt) is never rotated away. Track the best val_loss so far."
    ),
)


# Q3 ------------------------------------------------------------------------------------------------


def ema_batch(images: torch.Tensor, labels: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Q3's training batch of step ``step``: 32 images in order, round after round.

    Example:
        >>> ema_batch(torch.arange(256), torch.arange(256), 9)[0][:3].tolist()
        [32, 33, 34]
    """
    start = (step * 32) % len(images)
    return images[start : start + 32], labels[start : start + 32]


def _reference_export() -> tuple[dict, dict]:
    """The set-up's live model after training, and its EMA after update_bn(train_loader, ema): two state_dicts.

    The set-up's training, replayed on the CPU with the random state forked (the notebook's stays as it was).
    """
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
    from torch.utils.data import DataLoader

    from lesson_utils.data import OfflineShapes

    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch_as_installed():
        torch.manual_seed(0)
        model = TinyBN()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(EMA_DECAY))
        train_set = OfflineShapes(EMA_IMAGES)
        for step in range(EMA_STEPS):
            images, labels = ema_batch(train_set.images, train_set.labels, step)
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
            ema.update_parameters(model)
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        update_bn(DataLoader(train_set, batch_size=64), ema)
        return live, {k: v.detach().clone() for k, v in ema.module.state_dict().items()}


def _close(found: object, expected: torch.Tensor) -> bool:
    """The same numbers up to float rounding (another thread count changes the last bits)."""
    return close_values(found, expected, rtol=1e-4, atol=1e-6)


def _exported_ema(export_path: object, workdir: object) -> str:
    how = _("update_bn(train_loader, ema), then torch.save(ema.module.state_dict(), export_path)")
    path = require_file(export_path, "export_path", how)
    require_in_workdir(path, workdir, "export_path", "09")
    found = load_weights_only(path, "export_path", how)
    live, expected = _reference_export()
    if not isinstance(found, Mapping):
        message = _("the file holds {found}, not a state_dict: {how}")
        raise Incorrect(message.format(found=_a(found), how=how))
    keys = list(found)
    if "n_averaged" in keys or any(str(k).startswith("module.") for k in keys):
        raise Incorrect(
            _(
                "the keys are AveragedModel's own (`module.` prefixes, n_averaged): TinyBN's load_state_dict refuses "
                "them. Save the averaged model itself: ema.module.state_dict()"
            )
        )
    if "_integrity" in keys:
        raise Incorrect(
            _(
                "the file has save_checkpoint's '_integrity' entry, which TinyBN's load_state_dict refuses: export "
                "with torch.save(ema.module.state_dict(), export_path)"
            )
        )
    if set(keys) != set(expected):
        missing, extra = sorted(set(expected) - set(keys)), sorted(map(str, set(keys) - set(expected)))
        message = _("the keys are not TinyBN's: missing {missing}, unexpected {extra}. Save ema.module.state_dict()")
        raise Incorrect(message.format(missing=missing[:4], extra=extra[:4]))
    for key, value in found.items():
        if not torch.is_tensor(value) or type(value) not in (torch.Tensor, torch.nn.Parameter):
            raise Incorrect(_("{key} is {found}, not a plain tensor").format(key=key, found=_a(value)))
        if value.dtype != expected[key].dtype:
            message = _("{key} is {found}, but TinyBN's is {expected}: do not convert the weights")
            raise Incorrect(message.format(key=key, found=value.dtype, expected=expected[key].dtype))
    weights = [k for k in expected if not k.split(".")[-1].startswith(("running_", "num_batches"))]
    if not all(_close(found[k], expected[k]) for k in weights):
        if all(_close(found[k], live[k]) for k in weights):
            raise Incorrect(
                _(
                    "these are the trained model's own weights, not the EMA's: export ema.module.state_dict() (the "
                    "averaged weights)"
                )
            )
        raise Incorrect(_("the weights are not the set-up's EMA weights: export ema.module.state_dict()"))
    statistics = [k for k in expected if k.split(".")[-1] in ("running_mean", "running_var")]
    if all(_close(found[k], expected[k]) for k in statistics):
        return _("the EMA's weights, with BatchNorm statistics measured for them, in TinyBN's own keys")
    if all(_close(found[k], live[k]) for k in statistics):
        raise Incorrect(
            _(
                "the BatchNorm statistics are the trained model's (AveragedModel copies them at every update), "
                "measured for other weights: call update_bn(train_loader, ema) before saving"
            )
        )
    initial = {
        k: torch.zeros_like(expected[k]) if k.endswith("mean") else torch.ones_like(expected[k]) for k in statistics
    }
    if all(same_values(found[k], initial[k]) for k in statistics):
        raise Incorrect(_("the BatchNorm statistics were reset but never measured: run update_bn(train_loader, ema)"))
    raise Incorrect(
        _(
            "the BatchNorm statistics are not those update_bn(train_loader, ema) measures: use the set-up's "
            "train_loader and the EMA, not another loader or model"
        )
    )


q3 = Question(
    "lesson09.q3",
    "Export the EMA model for inference: a file `export_path` (in `workdir`) that `TinyBN().load_state_dict("
    "torch.load(export_path, weights_only=True))` accepts, with the EMA's weights and BatchNorm statistics measured "
    "for them.",
    _exported_ema,
    names=["export_path"],
    optional=["workdir"],
    hint=N_(
        "AveragedModel copies the model's BatchNorm statistics; update_bn(train_loader, ema) measures the EMA's own. "
        "ema.state_dict() has `module.` keys and n_averaged; ema.module.state_dict() is the plain TinyBN."
    ),
)
