"""Lesson 09's checkers, attacked: right answers (the usual and some unusual ones) pass; the wrong answers and
cheats a student would plausibly write fail with a message that names the real fault."""

from __future__ import annotations

import copy
import importlib.util
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from exercise_helpers import expect
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.data import DataLoader

from lesson_utils import OfflineShapes, seed_everything
from lesson_utils.checkpoint import checkpoint_name, save_checkpoint
from lesson_utils.classroom.grade_probe import fresh_questions
from lesson_utils.exercises import lesson09 as ex
from lesson_utils.exercises.core import CORRECT, INCORRECT, NOT_ATTEMPTED

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "lesson_utils" / "exercises"


@pytest.fixture
def workdir():
    folder = Path(tempfile.mkdtemp(prefix="exercises09-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# Q1: the loader's state after 4 batches -----------------------------------------------------------


def taken(loader, count):
    """What the answer cell's loop does: take `count` batches from `loader`, then stop."""
    for number, _batch in enumerate(loader, start=1):
        if number == count:
            break
    return loader


def saved(workdir, value, name="loader_state.pt"):
    path = workdir / name
    torch.save(value, path)
    return path


def q1(workdir, path):
    return {"loader_state_path": path, "workdir": workdir}


def test_q1_right_answers(workdir):
    loader = taken(ex.make_loader(), 4)
    expect(ex.q1, q1(workdir, saved(workdir, {"loader_state_dict": loader.state_dict()})), CORRECT, "batch 5")
    # unusual but right: the state on its own; a str path; more entries; next() by hand; save_checkpoint's file
    expect(ex.q1, q1(workdir, saved(workdir, loader.state_dict(), "bare.pt")), CORRECT)
    expect(ex.q1, q1(str(workdir), str(workdir / "bare.pt")), CORRECT)
    more = {"epoch": 0, "loader_state_dict": loader.state_dict(), "rng_state": torch.get_rng_state()}
    expect(ex.q1, q1(workdir, saved(workdir, more, "more.pt")), CORRECT)
    by_hand = ex.make_loader()
    batches = iter(by_hand)
    for _ in range(4):
        next(batches)
    expect(ex.q1, q1(workdir, saved(workdir, {"loader_state_dict": by_hand.state_dict()}, "next.pt")), CORRECT)
    path = save_checkpoint(workdir / "checkpoint.pt", {"loader_state_dict": loader.state_dict()})
    expect(ex.q1, q1(workdir, path), CORRECT)


@pytest.mark.parametrize(
    ("count", "fault"),
    [
        (0, "at the start of the first epoch"),
        (1, "resumes after 1 batch(es) of the first epoch, not after 4"),
        (3, "resumes after 3 batch(es)"),
        (5, "resumes after 5 batch(es)"),
        (6, "at the end of an epoch: all 6 batches were taken"),
        ("all", "at the end of an epoch: all 6 batches were taken"),
    ],
)
def test_q1_the_wrong_position_is_named(workdir, count, fault):
    loader = ex.make_loader()
    if count == "all":
        list(loader)  # the loop ran to its end: the state is saved after the epoch
    elif count:
        taken(loader, count)
    expect(ex.q1, q1(workdir, saved(workdir, {"loader_state_dict": loader.state_dict()})), INCORRECT, fault)


def test_q1_an_answer_cell_run_twice_is_in_the_second_epoch(workdir):
    loader = taken(taken(ex.make_loader(), 4), 4)  # each new `for` loop over the loader starts the next epoch
    path = saved(workdir, {"loader_state_dict": loader.state_dict()})
    result = expect(ex.q1, q1(workdir, path), INCORRECT, "in the second epoch (after 4 of its batches)")
    assert "Run the set-up cell again" in result.message


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata 0.11 on torch 2.14, harmless
def test_q1_another_loader_or_a_made_up_state_is_refused(workdir):
    from torchdata.stateful_dataloader import StatefulDataLoader

    other = StatefulDataLoader(
        OfflineShapes(192), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(1)
    )
    path = saved(workdir, {"loader_state_dict": taken(other, 4).state_dict()})
    expect(ex.q1, q1(workdir, path), INCORRECT, "gives other batches than the set-up's `loader`")
    unshuffled = taken(StatefulDataLoader(OfflineShapes(192), batch_size=32), 4)
    expect(ex.q1, q1(workdir, saved(workdir, unshuffled.state_dict())), INCORRECT, "other batches")
    made_up = {"loader_state_dict": {"position": 4}}
    expect(ex.q1, q1(workdir, saved(workdir, made_up)), INCORRECT, "StatefulDataLoader.load_state_dict refuses")


def test_q1_files_that_are_not_a_loader_state(workdir):
    loader = taken(ex.make_loader(), 4)
    expect(ex.q1, q1(workdir, saved(workdir, [loader.state_dict()])), INCORRECT, "the file holds a list, not a dict")
    no_state = {"model_state_dict": {}, "epoch": 0}
    expect(ex.q1, q1(workdir, saved(workdir, no_state)), INCORRECT, "the file holds no loader state")
    the_loader = saved(workdir, {"loader_state_dict": ex.make_loader()}, "loader.pt")  # the object, not its state
    expect(ex.q1, q1(workdir, the_loader), INCORRECT, "does not load with weights_only=True")
    expect(ex.q1, q1(workdir, workdir / "missing.pt"), INCORRECT, "there is no file at")
    outside = Path(tempfile.mkdtemp()) / "state.pt"
    torch.save({"loader_state_dict": loader.state_dict()}, outside)
    expect(ex.q1, q1(workdir, outside), INCORRECT, "is not in `workdir`")
    expect(ex.q1, q1(workdir, None), NOT_ATTEMPTED)


# Q2: the last two and the best --------------------------------------------------------------------


def write_run(run_dir, keep_last=2, best="lowest", save=save_checkpoint, names=checkpoint_name):
    """A student's loop over the six epochs; `best` says how best.pt is kept."""
    run_dir.mkdir(exist_ok=True)
    best_val_loss = float("inf") if best != "reversed" else 0.0
    for epoch in range(1, 7):
        state = ex.training_state(epoch)
        if keep_last is None:
            save(run_dir / names(epoch), state)
        else:
            save(run_dir / names(epoch), state, keep_last=keep_last)
        if best == "every epoch":
            save_checkpoint(run_dir / "best.pt", state)
        elif best == "reversed" and state["val_loss"] > best_val_loss:
            best_val_loss = state["val_loss"]
            save_checkpoint(run_dir / "best.pt", state)
        elif best in ("lowest", "weights only", "numbered") and state["val_loss"] < best_val_loss:
            best_val_loss = state["val_loss"]
            if best == "weights only":
                torch.save(state["model_state_dict"], run_dir / "best.pt")
            elif best == "numbered":
                save_checkpoint(run_dir / checkpoint_name(0), state)  # a number: the rotation takes it
            else:
                save_checkpoint(run_dir / "best.pt", state)
    return run_dir


def q2(workdir, run_dir):
    return {"run_dir": run_dir, "workdir": workdir}


def test_q2_right_answers(workdir):
    expect(ex.q2, q2(workdir, write_run(workdir / "run")), CORRECT, "best.pt holds epoch 3")
    # unusual but right: torch.save and deleting by hand; best.pt as a copy of the numbered file
    by_hand = workdir / "by_hand"
    by_hand.mkdir()
    best = float("inf")
    for epoch in range(1, 7):
        state = ex.training_state(epoch)
        torch.save(state, by_hand / checkpoint_name(epoch))
        if state["val_loss"] < best:
            best = state["val_loss"]
            shutil.copy(by_hand / checkpoint_name(epoch), by_hand / "best.pt")
        if epoch > 2:
            (by_hand / checkpoint_name(epoch - 2)).unlink()
    expect(ex.q2, q2(workdir, by_hand), CORRECT)
    inside = Path(tempfile.mkdtemp(prefix="exercises09-"))  # run_dir = workdir: the question asks a new folder
    result = expect(ex.q2, q2(inside, str(write_run(inside))), INCORRECT, "`run_dir` is `workdir` itself")
    assert "make a new folder in it for this answer (workdir / 'run')" in result.message
    shutil.rmtree(inside)


@pytest.mark.parametrize(
    ("options", "fault"),
    [
        ({"best": None}, "no best.pt: keep_last=2 deleted the checkpoint of epoch 3, the best one (val_loss 1.12)"),
        ({"keep_last": None}, "keeps the checkpoints of epochs [1, 2, 3, 4, 5, 6]: keep only the last 2"),
        ({"keep_last": 3}, "keeps the checkpoints of epochs [4, 5, 6]: keep only the last 2"),
        ({"best": "every epoch"}, "best.pt holds epoch 6's checkpoint (val_loss 1.58), but the lowest"),
        ({"best": "reversed"}, "best.pt holds epoch 1's checkpoint (val_loss 1.92)"),
        ({"best": "weights only"}, "no model_state_dict: save the whole checkpoint of the best epoch"),
        ({"best": "numbered"}, "run_dir has no best.pt"),
        ({"names": lambda epoch: checkpoint_name(epoch - 1)}, "keeps the checkpoints of epochs [4, 5], but the last"),
    ],
)
def test_q2_each_fault_is_named(workdir, options, fault):
    expect(ex.q2, q2(workdir, write_run(workdir / "run", **options)), INCORRECT, fault)


def test_q2_the_files_must_hold_their_epochs(workdir):
    run_dir = workdir / "run"
    run_dir.mkdir()
    last = ex.training_state(6)
    for epoch in range(1, 7):  # the same state under every name
        save_checkpoint(run_dir / checkpoint_name(epoch), last, keep_last=2)
    save_checkpoint(run_dir / "best.pt", ex.training_state(3))
    expect(ex.q2, q2(workdir, run_dir), INCORRECT, "ckpt_00000005.pt does not hold epoch 5's checkpoint")
    (run_dir / checkpoint_name(5)).write_bytes(b"")  # an empty file under a final name
    expect(ex.q2, q2(workdir, run_dir), INCORRECT, "load_checkpoint refuses ckpt_00000005.pt")


def test_q2_a_best_that_lies_about_its_epoch_or_holds_other_weights(workdir):
    run_dir = write_run(workdir / "run")
    liar = ex.training_state(3)
    liar["epoch"] = 6
    save_checkpoint(run_dir / "best.pt", liar)
    expect(ex.q2, q2(workdir, run_dir), INCORRECT, "best.pt holds epoch 3's weights but says epoch 6")
    other = ex.training_state(3)
    other["model_state_dict"] = {k: v + 1 for k, v in other["model_state_dict"].items()}
    save_checkpoint(run_dir / "best.pt", other)
    expect(ex.q2, q2(workdir, run_dir), INCORRECT, "weights of none of the 6 epochs")


def test_q2_run_dir_must_be_a_folder_in_workdir(workdir):
    expect(ex.q2, q2(workdir, workdir / "nowhere"), INCORRECT, "there is no folder at")
    (workdir / "file.pt").write_bytes(b"x")
    expect(ex.q2, q2(workdir, workdir / "file.pt"), INCORRECT, "is the file")
    expect(ex.q2, q2(workdir, 3), INCORRECT, "should be a path (a str or Path), not an int")
    empty = workdir / "empty"
    empty.mkdir()
    expect(ex.q2, q2(workdir, empty), INCORRECT, "holds no ckpt_<epoch>.pt")
    outside = write_run(Path(tempfile.mkdtemp()) / "run")
    expect(ex.q2, q2(workdir, outside), INCORRECT, "is not in `workdir`")


# Q3: the EMA, exported ----------------------------------------------------------------------------


def q3_setup():
    """The set-up cell of Q3, as the notebook has it."""
    seed_everything(0)
    model = ex.TinyBN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    train_set = OfflineShapes(256)
    for step in range(16):
        images, labels = ex.ema_batch(train_set.images, train_set.labels, step)
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        ema.update_parameters(model)
    return model, ema, DataLoader(train_set, batch_size=64)


def q3(workdir, path):
    return {"export_path": path, "workdir": workdir}


def test_q3_right_answers(workdir):
    model, ema, train_loader = q3_setup()
    update_bn(train_loader, ema)
    path = workdir / "ema.pt"
    torch.save(ema.module.state_dict(), path)
    expect(ex.q3, q3(workdir, path), CORRECT, "BatchNorm statistics measured for them")
    assert ex.TinyBN().load_state_dict(torch.load(path, weights_only=True)), "the question's own test"
    # unusual but right: update_bn on ema.module; ema.state_dict() with the prefix and n_averaged taken off
    model, ema, train_loader = q3_setup()
    update_bn(train_loader, ema.module)
    stripped = {k.removeprefix("module."): v for k, v in ema.state_dict().items() if k != "n_averaged"}
    torch.save(stripped, path)
    expect(ex.q3, q3(workdir, path), CORRECT)


def test_q3_each_fault_is_named(workdir):
    path = workdir / "ema.pt"
    model, ema, train_loader = q3_setup()
    torch.save(ema.module.state_dict(), path)  # update_bn forgotten
    expect(ex.q3, q3(workdir, path), INCORRECT, "the BatchNorm statistics are the trained model's")
    torch.save(model.state_dict(), path)
    expect(ex.q3, q3(workdir, path), INCORRECT, "the trained model's own weights, not the EMA's")
    update_bn(train_loader, model)  # the live model measured instead of the EMA
    torch.save(ema.module.state_dict(), path)
    expect(ex.q3, q3(workdir, path), INCORRECT, "call update_bn(train_loader, ema) before saving")
    update_bn(train_loader, ema)
    torch.save(ema.state_dict(), path)
    expect(ex.q3, q3(workdir, path), INCORRECT, "AveragedModel's own (`module.` prefixes, n_averaged)")
    save_checkpoint(path, ema.module.state_dict())
    expect(ex.q3, q3(workdir, path), INCORRECT, "save_checkpoint's '_integrity' entry")
    torch.save(ema.module, path)  # the module object, not its state_dict
    expect(ex.q3, q3(workdir, path), INCORRECT, "does not load with weights_only=True")
    torch.save(copy.deepcopy(ema.module).half().state_dict(), path)
    expect(ex.q3, q3(workdir, path), INCORRECT, "is torch.float16, but TinyBN's is torch.float32")
    torch.save({k: v for k, v in ema.module.state_dict().items() if "running" not in k}, path)
    expect(ex.q3, q3(workdir, path), INCORRECT, "the keys are not TinyBN's: missing ['body.2.running_mean'")


def test_q3_statistics_measured_otherwise_are_named(workdir):
    path = workdir / "ema.pt"
    _model, ema, train_loader = q3_setup()
    update_bn(DataLoader(train_loader.dataset, batch_size=256), ema)  # one batch of all: another variance
    torch.save(ema.module.state_dict(), path)
    expect(ex.q3, q3(workdir, path), INCORRECT, "not those update_bn(train_loader, ema) measures")
    for module in ema.module.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.reset_running_stats()
    torch.save(ema.module.state_dict(), path)
    expect(ex.q3, q3(workdir, path), INCORRECT, "reset but never measured")
    _model, ema, train_loader = q3_setup()
    update_bn(train_loader, ema)
    weights = ema.module.state_dict()
    weights["head.weight"] = weights["head.weight"] + 0.01
    torch.save(weights, path)
    expect(ex.q3, q3(workdir, path), INCORRECT, "the weights are not the set-up's EMA weights")


# every checker --------------------------------------------------------------------------------------


def test_no_checker_crashes_on_a_strange_answer_nor_draws_random_numbers(workdir):
    loader = taken(ex.make_loader(), 4)
    right = {
        ex.q1: (q1(workdir, saved(workdir, {"loader_state_dict": loader.state_dict()})), "loader_state_path"),
        ex.q2: (q2(workdir, write_run(workdir / "run")), "run_dir"),
    }
    _model, ema, train_loader = q3_setup()
    update_bn(train_loader, ema)
    torch.save(ema.module.state_dict(), workdir / "ema.pt")
    right[ex.q3] = (q3(workdir, workdir / "ema.pt"), "export_path")
    torch.save(torch.ones(3), workdir / "tensor.pt")
    (workdir / "text.pt").write_text("hello")
    (workdir / "empty.pt").write_bytes(b"")
    strange = [5, "no/such/file.pt", workdir, torch.ones(3), {"a": 1}, [torch.ones(1)], workdir / "tensor.pt"]
    strange += [workdir / "text.pt", workdir / "empty.pt", torch.nn.Linear(2, 2)]
    rng = torch.random.get_rng_state()
    for question, (namespace, name) in right.items():
        assert question.evaluate(namespace).status == CORRECT, question.qid
        for value in strange:
            result = question.evaluate({**namespace, name: value})
            assert result.status == INCORRECT, (question.qid, value, result)
            assert "checking your answer raised" not in result.message, (question.qid, value, result)
    assert torch.equal(rng, torch.random.get_rng_state()), "a checker drew from the notebook's random numbers"


def test_the_graders_fresh_copies_judge_the_same():
    """The grader builds core and lesson09 again from their source (grade_probe.fresh_questions)."""
    i18n_file = FOLDER.parent / "i18n.py"
    sources = {
        "i18n": i18n_file.read_text(encoding="utf-8"),
        "i18n_file": str(i18n_file),
        "core": (FOLDER / "core.py").read_text(encoding="utf-8"),
        "lesson": (FOLDER / "lesson09.py").read_text(encoding="utf-8"),
    }
    questions = fresh_questions(sources, "lesson09")
    assert [q.qid for q in questions] == ["lesson09.q1", "lesson09.q2", "lesson09.q3"]
    for question in questions:
        assert question.evaluate({n: 12345 for n in question.names}).status == INCORRECT


def test_every_student_facing_text_is_marked_for_translation():
    spec = importlib.util.spec_from_file_location("i18n_exercises_checks", ROOT / "tests" / "test_i18n_exercises.py")
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    assert checks.unmarked((FOLDER / "lesson09.py").read_text(encoding="utf-8")) == []


def test_solution_prints_the_solution_notebooks_answer(capsys):
    ex.q3.solution()
    printed = capsys.readouterr().out
    assert printed.startswith("A solution for lesson09.q3:\n") and "update_bn(train_loader, ema)" in printed
