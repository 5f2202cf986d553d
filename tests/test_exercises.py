"""Every checker: its reference solution passes, and at least three distinct wrong answers fail
with the message meant for them. Checkers inspect real objects and files."""

import copy
import importlib.util
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from exercise_helpers import (
    expect,
    lesson04_source,
    lesson04_warm,
    lesson06_checkpoint,
    lesson07_checkpoint,
    lesson07_gan,
    workdir_in,
)
from safetensors.torch import save_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from torch.distributed.checkpoint.state_dict import get_state_dict
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from lesson_utils import Net, OfflineShapes, seed_everything
from lesson_utils.exercises import (
    CORRECT,
    INCORRECT,
    NOT_ATTEMPTED,
    RESULTS,
    Question,
    lesson01,
    lesson02,
    lesson03,
    lesson04,
    lesson05,
    lesson06,
    lesson07,
    results_json,
)
from lesson_utils.exercises.core import Incorrect, require_same_tensors
from lesson_utils.training import train_one_epoch
from lesson_utils.transfer import load_matching_weights


@pytest.fixture
def net():
    seed_everything(0)
    return Net()


# lesson 01 -----------------------------------------------------------------------------------


def test_l01_q1_saved_state_dict(net, tmp_path):
    workdir = workdir_in(tmp_path, "01")
    q, path = lesson01.q1, workdir / "w.pt"
    names = {"net": net, "weights_path": path, "workdir": workdir}
    expect(q, {"net": net, "weights_path": None}, NOT_ATTEMPTED, "`weights_path`")
    torch.save(net.state_dict(), path)
    expect(q, names, CORRECT, "bit for bit")
    expect(q, {**names, "weights_path": tmp_path / "nope.pt"}, INCORRECT, "there is no file")
    expect(q, {**names, "weights_path": tmp_path}, INCORRECT, "is the folder")
    expect(q, {**names, "weights_path": net.state_dict()}, INCORRECT, "should be a path (a str or Path), not a dict")
    torch.save(net, path)
    expect(q, names, INCORRECT, "did you save the model or optimizer object itself")
    torch.save(net.state_dict, path)  # the method, without its ()
    expect(q, names, INCORRECT, "without its ()")
    torch.save(Net().state_dict(), path)
    expect(q, names, INCORRECT, "differs from net's")
    torch.save({"conv1.weight": net.conv1.weight}, path)
    expect(
        q,
        names,
        INCORRECT,
        "the keys do not match net's state_dict. Missing from the file: ['conv1.bias', 'conv2.weight'",
    )
    torch.save({k: v.double() for k, v in net.state_dict().items()}, path)
    expect(q, names, INCORRECT, "conv1.weight is torch.float64 in the file but torch.float32 in net's")
    torch.save(nn.DataParallel(net).state_dict(), path)
    result = expect(q, names, INCORRECT, "Missing from the file: ['conv1.weight'")
    assert "Unexpected in the file: ['module.conv1.weight'" in result.message
    torch.save(list(net.state_dict().values()), path)
    expect(q, names, INCORRECT, "the file holds a list")
    path.write_text("not a torch file")
    expect(q, names, INCORRECT, "is not a file written by torch.save (other bytes)")


def test_l01_q2_ready_to_predict(net, tmp_path):
    q, path = lesson01.q2, tmp_path / "w.pt"
    torch.save(net.state_dict(), path)

    def loaded():
        model = Net()
        model.load_state_dict(torch.load(path, weights_only=True))
        return model

    def names(model):
        return {"model": model, "weights_path": path, "net": net}

    expect(q, {"model": None, "weights_path": path, "net": net}, NOT_ATTEMPTED)
    expect(q, names(loaded().eval()), CORRECT, "holds the file's weights")
    expect(q, names(loaded().train()), INCORRECT, "still in training mode: call model.eval()")
    partly = loaded().eval()
    partly.fc1.train()
    expect(q, names(partly), INCORRECT, "its part `fc1` is training")
    expect(q, names("weights.pt"), INCORRECT, "`model` is a path, not a model")
    expect(q, names(Net().eval()), INCORRECT, "in `model` differs from the file at `weights_path`")  # eval, but random
    expect(q, names(Net().load_state_dict(net.state_dict())), INCORRECT, "what load_state_dict returned")
    expect(q, names(torch.load(path, weights_only=True)), INCORRECT, "`model` is a dict (a state_dict?)")
    expect(q, names(net.eval()), INCORRECT, "`model` is `net` itself")
    expect(q, names(loaded().double().eval()), INCORRECT, "torch.float64 in `model` but torch.float32")
    expect(q, names(loaded().eval), INCORRECT, "the method `eval` of a model, not the model: add the ()")
    expect(q, names(nn.Linear(2, 2).eval()), INCORRECT, "`model` should be a Net, as in Q2, not a Linear")
    expect(q, {**names(loaded().eval()), "weights_path": tmp_path / "x.pt"}, INCORRECT, "answer Q1 first")


@pytest.mark.parametrize(
    "question, right, wrongs",
    [
        (lesson01.q3, "b", {"a": "running_mean", "c": "optimizer.state_dict()", "z": "one letter"}),
        (lesson02.q1, "b", {"a": "before 2.6", "c": "mmap is off", "yes": "one letter"}),
        (lesson02.q3, "b", {"a": "runs whatever the file says", "c": "a pickle stays a pickle", "": "one letter"}),
        (lesson02.q4, "b", {"a": "sample_inputs/model.pt", "c": "no weights_only argument", "d": "one letter"}),
        (lesson03.q3, "b", {"a": "different weights", "c": "still lost", "d": "one letter"}),
        (lesson04.q2, "c", {"a": "missing_keys", "b": "unexpected_keys", "x": "one letter"}),
        (lesson05.q2, "b", {"a": "replaces the parameter tensors", "c": "holding meta tensors", "?": "one letter"}),
        (lesson05.q3, "b", {"a": "does not check the CRC32", "c": "cannot repair", "d": "one letter"}),
        (lesson06.q1, "b", {"a": "whole model on one rank", "c": "follow the ranks", "4": "one letter"}),
        (lesson06.q3, "b", {"a": "that is dcp.save", "c": "must be copied first", "b, c": "one letter"}),
    ],
)
def test_multiple_choice(question, right, wrongs):
    name = question.names[0]
    expect(question, {name: None}, NOT_ATTEMPTED)
    expect(question, {name: right.upper()}, CORRECT)
    for answer, message in wrongs.items():
        expect(question, {name: answer}, INCORRECT, message)


# lesson 02 -----------------------------------------------------------------------------------


def test_l02_q2_safetensors(net, tmp_path):
    workdir = workdir_in(tmp_path, "02")
    q, path = lesson02.q2, workdir / "w.safetensors"
    names = {"net": net, "safetensors_path": path, "workdir": workdir}
    save_file(net.state_dict(), path)
    expect(q, names, CORRECT, "no pickle")
    torch.save(net.state_dict(), path)
    expect(q, names, INCORRECT, "this is a torch.save file")
    save_file(Net().state_dict(), path)
    expect(q, names, INCORRECT, "differs from net's")
    save_file({"w": torch.ones(2)}, path)
    expect(q, names, INCORRECT, "the keys do not match net's state_dict")
    path.write_text("hello")
    expect(q, names, INCORRECT, "safetensors cannot read")
    save_file({k: v.half() for k, v in net.state_dict().items()}, path)
    expect(q, names, INCORRECT, "torch.float16 in the file but torch.float32 in net's")
    expect(q, {**names, "safetensors_path": tmp_path}, INCORRECT, "is the folder")
    expect(q, {**names, "safetensors_path": 3}, INCORRECT, "should be a path")


# lesson 03 -----------------------------------------------------------------------------------


@pytest.fixture
def trained(net):
    """Lesson 03's set-up and Q1's epoch, as the notebook runs them."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    train_one_epoch(net, optimizer, OfflineShapes(512), epoch=0)
    return net, optimizer


def test_l03_q1_resumable_checkpoint(trained, tmp_path):
    net, optimizer = trained
    workdir = workdir_in(tmp_path, "03")
    q, path = lesson03.q1, workdir / "c.pt"
    names = {"checkpoint_path": path, "net": net, "optimizer": optimizer, "workdir": workdir}
    good = {"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict()}
    torch.save(good, path)
    expect(q, names, CORRECT, "trained weights")
    torch.save({"epoch": 1, "model_state_dict": net.state_dict()}, path)
    expect(q, names, INCORRECT, "lacks 'optimizer_state_dict'")
    torch.save({**good, "loss": np.float64(0.3)}, path)
    expect(q, names, INCORRECT, "does not load with weights_only=True")
    fresh = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    torch.save({**good, "optimizer_state_dict": fresh.state_dict()}, path)
    expect(q, names, INCORRECT, "no momentum buffers")
    for epoch, message in [("one", "found str"), (True, "found bool"), (torch.tensor(1), "found Tensor"), (5, "is 5")]:
        torch.save({**good, "epoch": epoch}, path)
        expect(q, names, INCORRECT, message)
    torch.save({**good, "model_state_dict": Net().state_dict()}, path)  # another net's weights
    expect(q, names, INCORRECT, "net's trained weights")
    torch.save({**good, "model_state_dict": {k: v.double() for k, v in net.state_dict().items()}}, path)
    expect(q, names, INCORRECT, "torch.float64 in the checkpoint's model_state_dict but torch.float32 in net's")
    torch.save({**good, "model_state_dict": None}, path)
    expect(q, names, INCORRECT, "is a NoneType, not a state_dict")
    doubled = optimizer.state_dict()
    doubled["state"] = {i: {"momentum_buffer": s["momentum_buffer"].double()} for i, s in doubled["state"].items()}
    torch.save({**good, "optimizer_state_dict": doubled}, path)
    expect(q, names, INCORRECT, "the momentum buffer saved for conv1.weight does not match the parameter")
    partial = optimizer.state_dict()
    partial["state"] = {i: s for i, s in partial["state"].items() if i < 4}
    torch.save({**good, "optimizer_state_dict": partial}, path)
    expect(q, names, INCORRECT, "no momentum buffer for fc1.weight")
    faster = optimizer.state_dict()
    faster["param_groups"] = [{**group, "lr": 0.1} for group in faster["param_groups"]]
    torch.save({**good, "optimizer_state_dict": faster}, path)
    expect(q, names, INCORRECT, "has lr=0.1, but the set-up's optimizer (SGD, lr=0.02, momentum=0.9) has lr=0.02")
    torch.save(good, path)
    expect(q, {**names, "optimizer": None}, CORRECT)  # Q2's blank answer cell resets `optimizer`: Q1 still holds
    expect(q, {**names, "checkpoint_path": tmp_path}, INCORRECT, "is the folder")
    expect(q, {**names, "checkpoint_path": good}, INCORRECT, "should be a path")


def test_l03_q1_the_checkpoint_holds_the_trained_weights(tmp_path):
    seed_everything(0)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    path = workdir_in(tmp_path, "03") / "c.pt"
    names = {"checkpoint_path": path, "net": net, "optimizer": optimizer, "workdir": path.parent}
    before = {"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict()}
    torch.save(before, path)  # nothing trained yet
    expect(lesson03.q1, names, INCORRECT, "net's weights from before training: run train_one_epoch")
    train_one_epoch(net, optimizer, OfflineShapes(512), epoch=0)  # trained after the save
    expect(lesson03.q1, names, INCORRECT, "net's weights from before training")
    torch.save({**before, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, path)
    expect(lesson03.q1, names, CORRECT)
    train_one_epoch(net, optimizer, OfflineShapes(512), epoch=1)  # trained again after the save
    expect(lesson03.q1, names, INCORRECT, "save net.state_dict() after train_one_epoch")


@pytest.fixture
def checkpoint_path(trained, tmp_path):
    net, optimizer = trained
    path = workdir_in(tmp_path, "03") / "resume.pt"
    state = {"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict()}
    torch.save(state, path)
    return path


def resumed(path, lr=0.02, model=None, load_model=True, load_optimizer=True, kind=torch.optim.SGD, **options):
    checkpoint = torch.load(path, weights_only=True)
    model = model or Net()
    optimizer = kind(model.parameters(), lr=lr, momentum=0.9) if kind is torch.optim.SGD else kind(model.parameters())
    if load_model:
        model.load_state_dict(checkpoint["model_state_dict"], **options)
    if load_optimizer:
        optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    return {"model": model, "optimizer": optimizer, "checkpoint_path": path, "net": SETUP_NET}


SETUP_NET = Net()  # stands for the set-up's `net` where an answer does not reuse it


def test_l03_q2_optimizer_on_the_loaded_model(trained, checkpoint_path):
    net, optimizer = trained
    q = lesson03.q2
    expect(q, resumed(checkpoint_path), CORRECT, "carries on with the saved momentum")
    wrong = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)  # the original's bug
    wrong.load_state_dict(optimizer.state_dict())
    expect(q, {**resumed(checkpoint_path), "optimizer": wrong}, INCORRECT, "the original lesson's bug")
    expect(q, resumed(checkpoint_path, load_optimizer=False), INCORRECT, "state was not loaded")
    expect(q, {**resumed(checkpoint_path), "optimizer": "sgd"}, INCORRECT, "a torch.optim optimizer")
    expect(q, resumed(checkpoint_path, load_model=False), INCORRECT, "model.load_state_dict(checkpoint[")
    with torch.device("meta"):
        lean = Net()
    meta = resumed(checkpoint_path, model=lean, assign=True)  # optimizer built before the assign=True load
    expect(q, meta, INCORRECT, "built before load_state_dict(..., assign=True)")
    fast = resumed(checkpoint_path)
    fast["optimizer"].param_groups[0]["lr"] = 0.1
    expect(q, fast, INCORRECT, "lr=0.1, momentum=0.9")
    expect(q, resumed(checkpoint_path, kind=torch.optim.Adam, load_optimizer=False), INCORRECT, "found Adam")
    both = resumed(checkpoint_path)
    both["optimizer"].add_param_group({"params": list(net.parameters())})
    expect(q, both, INCORRECT, "does not update exactly `model`'s parameters")
    replaced = resumed(checkpoint_path, load_model=False)  # built on a normal model, then an assign=True load
    replaced["model"].load_state_dict(torch.load(checkpoint_path, weights_only=True)["model_state_dict"], assign=True)
    expect(q, replaced, INCORRECT, "after the load if that uses assign=True")
    halved = resumed(checkpoint_path)
    for state in halved["optimizer"].state.values():
        state["momentum_buffer"].mul_(0.5)
    expect(q, halved, INCORRECT, "in `optimizer` differs from the checkpoint's optimizer_state_dict")
    doubled = resumed(checkpoint_path)
    doubled["model"].double()
    expect(q, doubled, INCORRECT, "torch.float64 in `model` but torch.float32")
    expect(q, {**resumed(checkpoint_path), "model": Net().load_state_dict(net.state_dict())}, INCORRECT, "returned")
    expect(q, {**resumed(checkpoint_path), "checkpoint_path": checkpoint_path.parent}, INCORRECT, "is the folder")
    # found by a helper playing a student: the set-up's net itself, with the set-up's optimizer...
    expect(q, {**resumed(checkpoint_path), "model": net, "optimizer": optimizer, "net": net}, INCORRECT, "not a resume")
    # ...and an optimizer built on the model's parameters in another order, then loaded
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    model = Net()
    backwards = torch.optim.SGD(list(model.parameters())[::-1], lr=0.02, momentum=0.9)
    model.load_state_dict(checkpoint["model_state_dict"])
    backwards.load_state_dict(checkpoint["optimizer_state_dict"])
    answer = {"model": model, "optimizer": backwards, "checkpoint_path": checkpoint_path, "net": net}
    expect(q, answer, INCORRECT, "`optimizer` holds `model`'s parameters in another order")


# lesson 04 -----------------------------------------------------------------------------------


setup_source = lesson04_source


@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")  # wrong answers do that
def test_l04_q1_warm_start():
    source = setup_source()
    q = lesson04.q1

    def warm(**changes):
        target = Net(num_classes=4)
        load_matching_weights(target, source)
        with torch.no_grad():
            for name, value in changes.items():
                getattr(target.fc3, name).copy_(value)
        return {"target": target, "source_state": source}

    expect(q, warm(), CORRECT, "8 tensors transferred")
    expect(q, {"target": Net(num_classes=4), "source_state": source}, INCORRECT, "no layer of `target`")
    partial = Net(num_classes=4)
    load_matching_weights(partial, source, only=["conv1", "conv2"])
    expect(q, {"target": partial, "source_state": source}, INCORRECT, "fit but were not transferred")
    expect(q, {"target": Net(), "source_state": source}, INCORRECT, "4-class head: fc3.weight has shape [10, 84]")
    sliced = warm(weight=source["fc3.weight"][:4], bias=source["fc3.bias"][:4])
    expect(q, sliced, INCORRECT, "rows [0, 1, 2, 3] of fc3.weight are rows [0, 1, 2, 3] of the source's 10-class head")
    picked = warm(weight=source["fc3.weight"][[1, 3, 5, 7]])
    expect(q, picked, INCORRECT, "rows [0, 1, 2, 3] of fc3.weight are rows [1, 3, 5, 7] of the source's")
    result = expect(q, warm(bias=source["fc3.bias"][6:]), INCORRECT, "fc3.bias takes entries [0, 1, 2, 3]")
    assert "(its entries [6, 7, 8, 9])" in result.message
    expect(
        q,
        warm(weight=torch.zeros(4, 84), bias=torch.zeros(4)),
        INCORRECT,
        "every value of fc3.weight is 0: a filled head",
    )
    result = expect(q, warm(weight=torch.randn(4, 84)), INCORRECT, "fc3.weight holds values up to")
    assert "nn.Linear(84, 4)'s own initialisation keeps them within +-0.109" in result.message
    double = warm()
    double["target"].double()
    expect(q, double, INCORRECT, "torch.float64 in `target` but torch.float32 in source_state")
    wrapped = warm()
    wrapped["target"] = nn.DataParallel(wrapped["target"].cpu(), device_ids=[])
    result = expect(q, wrapped, INCORRECT, "Missing from `target`: ['conv1.weight'")
    assert "Unexpected in `target`: ['module.conv1.weight'" in result.message
    report = warm()
    report["target"] = load_matching_weights(Net(num_classes=4), source)
    expect(q, report, INCORRECT, "should be the model (an nn.Module), not a TransferReport")
    with torch.device("meta"):
        lean = Net(num_classes=4)
    load_matching_weights(lean, source)  # copies into meta tensors: nothing is kept, the head has no data
    expect(q, {"target": lean, "source_state": source}, INCORRECT, "on the meta device")


def test_l04_q3_prefix(net):
    q, ddp_state = lesson04.q3, nn.DataParallel(net, device_ids=[]).state_dict()
    expect(q, {"ddp_state": ddp_state, "clean_state": net.state_dict()}, CORRECT)
    expect(q, {"ddp_state": ddp_state, "clean_state": dict(ddp_state)}, INCORRECT, "still start with 'module.'")
    changed = {k: v + 1 for k, v in net.state_dict().items()}
    expect(q, {"ddp_state": ddp_state, "clean_state": changed}, INCORRECT, "do not touch the values")
    expect(q, {"ddp_state": ddp_state, "clean_state": {"fc3.bias": net.fc3.bias}}, INCORRECT, "the keys")
    expect(q, {"ddp_state": ddp_state, "clean_state": "x"}, INCORRECT, "is a str, not a state_dict")
    none = expect(q, {"ddp_state": ddp_state, "clean_state": None}, NOT_ATTEMPTED, "`clean_state` (still None)")
    assert "edits the dict you pass in place and returns None" in none.message
    no_dot = {k.removeprefix("module"): v for k, v in ddp_state.items()}  # consume_prefix(..., "module")
    result = expect(
        q, {"ddp_state": ddp_state, "clean_state": no_dot}, INCORRECT, "Missing from `clean_state`: ['conv1.weight'"
    )
    assert "Unexpected in `clean_state`: ['.conv1.weight'" in result.message
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}
    expect(q, {"ddp_state": ddp_state, "clean_state": arrays}, INCORRECT, "conv1.weight is a ndarray")
    halves = {k: v.half() for k, v in net.state_dict().items()}
    expect(q, {"ddp_state": ddp_state, "clean_state": halves}, INCORRECT, "torch.float16 in `clean_state`")
    consume_prefix_in_state_dict_if_present(ddp_state, "module.")  # in place, on the set-up's dict: the result is right
    expect(q, {"ddp_state": ddp_state, "clean_state": ddp_state}, CORRECT)


# lesson 05 -----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")  # wrong answers do that
def test_l05_q1_lean_load(net, tmp_path):
    q, path = lesson05.q1, tmp_path / "w.pt"
    torch.save(net.state_dict(), path)

    def load(meta=True, mmap=True, assign=True):
        if meta:
            with torch.device("meta"):
                model = Net()
        else:
            model = Net()
        model.load_state_dict(torch.load(path, mmap=mmap, weights_only=True), assign=assign)
        return {"model": model, "weights_path": path}

    expect(q, load(), CORRECT, "straight from the file's pages")
    expect(q, load(meta=False, mmap=False, assign=False), INCORRECT, "random initialisation ran")
    expect(q, load(meta=False), INCORRECT, "random initialisation ran: conv1.weight was created with real data")
    expect(q, load(mmap=False), INCORRECT, "a private copy")
    expect(q, load(assign=False), INCORRECT, "every tensor of `model` is still on the meta device (no data)")
    with torch.device("meta"):
        empty = Net()
    expect(q, {"model": empty, "weights_path": path}, INCORRECT, "still on the meta device")
    expect(q, {"model": Net(), "weights_path": path}, INCORRECT, "load the weights from `weights_path`")
    doubled = load()
    doubled["model"].double()
    expect(q, doubled, INCORRECT, "torch.float64 in `model` but torch.float32")
    expect(q, {"model": torch.load(path, mmap=True, weights_only=True), "weights_path": path}, INCORRECT, "is a dict")
    expect(q, {"model": load()["model"], "weights_path": tmp_path}, INCORRECT, "is the folder")


def test_l05_q1_a_second_copy_of_the_checker_sees_the_random_initialisation_too(net, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    model = Net()  # initialised, then replaced by the file's pages: only the record shows it
    model.load_state_dict(torch.load(path, mmap=True, weights_only=True), assign=True)
    spec = importlib.util.spec_from_file_location("grader_copy_of_lesson05", lesson05.__file__)
    copy = importlib.util.module_from_spec(spec)  # what the grader does: the checkers built again from source
    spec.loader.exec_module(copy)
    expect(copy.q1, {"model": model, "weights_path": path}, INCORRECT, "random initialisation ran")


# lesson 06 -----------------------------------------------------------------------------------


@pytest.fixture
def dcp_checkpoint(tmp_path):
    """Lesson 06's set-up (two ranks' training, in one process), saved with dcp.save into workdir / "checkpoint";
    and the file dcp_to_torch_save makes of it, as it loads."""
    return lesson06_checkpoint(tmp_path)


def test_l06_q2_single_file(dcp_checkpoint, tmp_path):
    checkpoint_dir, reference = dcp_checkpoint
    single = checkpoint_dir.parent / "single.pt"
    names = {"checkpoint_dir": checkpoint_dir, "single_path": single}
    expect(lesson06.q2, names, INCORRECT, "there is no file")
    dcp_to_torch_save(checkpoint_dir, single)
    expect(lesson06.q2, names, CORRECT)
    expected, optimizer = reference["model"], reference["optimizer"]
    torch.save(expected, single)
    expect(lesson06.q2, names, INCORRECT, "a dict with 'model'")
    torch.save({"model": {k: v + 1 for k, v in expected.items()}, "optimizer": optimizer}, single)
    expect(lesson06.q2, names, INCORRECT, "convert the checkpoint in `checkpoint_dir`")
    torch.save({"model": nn.Linear(2, 2)}, single)
    expect(lesson06.q2, names, INCORRECT, "does not load with weights_only=True")
    torch.save({"model": expected}, single)  # the model only
    expect(lesson06.q2, names, INCORRECT, "no 'optimizer' state")
    torch.save({"model": expected, "optimizer": {"state": {}, "param_groups": []}}, single)
    expect(lesson06.q2, names, INCORRECT, "optimizer state lacks ['0.weight'")
    torch.save({"model": {k: v.double() for k, v in expected.items()}, "optimizer": optimizer}, single)
    expect(lesson06.q2, names, INCORRECT, "torch.float64 in the file's 'model'")
    expect(lesson06.q2, {**names, "single_path": checkpoint_dir}, INCORRECT, "is the folder")
    expect(lesson06.q2, {**names, "checkpoint_dir": tmp_path}, INCORRECT, "run the set-up cell again")


def dcp_file(reference, path, change):
    """Write ``reference`` (a converted DCP checkpoint) to ``path`` after ``change(copy)`` edits a deep copy."""
    converted = copy.deepcopy(reference)
    change(converted)
    torch.save(converted, path)


def test_l06_q2_the_optimizer_is_compared_by_value(dcp_checkpoint, tmp_path):
    """Found by a helper playing a student: the right keys with a fresh optimizer's values passed."""
    checkpoint_dir, reference = dcp_checkpoint
    single = checkpoint_dir.parent / "single.pt"
    names = {"checkpoint_dir": checkpoint_dir, "single_path": single}
    from lesson_utils.dist_demo import make_model

    model = make_model()
    model.load_state_dict(reference["model"])
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-2)  # a fresh optimizer, keyed by the parameters' names
    model_state, fresh_state = get_state_dict(model, fresh)
    torch.save({"model": model_state, "optimizer": fresh_state}, single)
    expect(lesson06.q2, names, INCORRECT, "optimizer['state']['0.weight']")
    stepped = {}  # each state entry's keys, but a step count and zeros of its own
    for key, state in reference["optimizer"]["state"].items():
        stepped[key] = {"step": torch.tensor(1.0), **{k: torch.zeros_like(v) for k, v in state.items() if k != "step"}}
    dcp_file(reference, single, lambda c: c["optimizer"].update(state=stepped))
    expect(lesson06.q2, names, INCORRECT, "optimizer['state']['0.weight']['step'] in the file holds other values")
    dcp_file(reference, single, lambda c: c["optimizer"]["state"]["4.bias"]["exp_avg_sq"].mul_(2))
    expect(lesson06.q2, names, INCORRECT, "optimizer['state']['4.bias']['exp_avg_sq'] in the file holds other values")
    dcp_file(reference, single, lambda c: c["optimizer"]["param_groups"][0].update(lr=0.1))
    expect(lesson06.q2, names, INCORRECT, "optimizer['param_groups'][0]['lr'] in the file holds other values")
    dcp_file(reference, single, lambda c: c["optimizer"]["state"]["0.bias"].pop("exp_avg"))
    expect(lesson06.q2, names, INCORRECT, "the file lacks optimizer['state']['0.bias']['exp_avg']")
    dcp_file(reference, single, lambda c: c.update(note="converted by hand"))
    expect(lesson06.q2, names, INCORRECT, "the file holds note, which the DCP checkpoint does not")
    dcp_file(reference, single, lambda c: c["optimizer"]["state"].update({"4.bias": c["optimizer"]["state"]["0.bias"]}))
    expect(lesson06.q2, names, INCORRECT, "optimizer['state']['4.bias']['exp_avg'] in the file holds other values")
    # right, but unusual: the tuple of betas as a list, the converted dict's keys in another order
    dcp_file(reference, single, lambda c: c["optimizer"]["param_groups"][0].update(betas=[0.9, 0.999]))
    expect(lesson06.q2, names, CORRECT)
    reordered = {"optimizer": reference["optimizer"], "model": dict(reversed(reference["model"].items()))}
    torch.save(reordered, single)
    expect(lesson06.q2, names, CORRECT)


def test_a_checker_that_breaks_on_a_strange_answer_reports_instead_of_crashing():
    def checker(answer):
        return answer.missing_attribute

    result = Question("demo.q1", "?", checker, names=["answer"], hint="").evaluate({"answer": 5})
    assert result.status == INCORRECT and "checking your answer raised AttributeError" in result.message


def test_results_are_recorded_for_the_grader():
    lesson01.q3.evaluate({"q3_answer": "b"})
    assert RESULTS["lesson01.q3"].status == CORRECT and '"lesson01.q3"' in results_json()


def test_check_reads_the_callers_variables_and_prints(capsys):
    globals()["q3_answer"] = "a"  # check() reads the calling module's globals, as in a notebook
    lesson01.q3.check()
    assert "lesson01.q3: INCORRECT" in capsys.readouterr().out
    del globals()["q3_answer"]
    lesson01.q3.hint()
    lesson01.q3.solution()
    out = capsys.readouterr().out
    assert "Hint for lesson01.q3" in out and 'q3_answer = "b"' in out


# lesson 07 -----------------------------------------------------------------------------------


@pytest.fixture
def momentum_checkpoint(tmp_path):
    """Lesson 07's set-up checkpoint: a seed-0 Net and its SGD with momentum, after two steps."""
    return lesson07_checkpoint(tmp_path)


def resumed_fp64(path, convert_first=True, load_state=True, other_model=False, load_model=True, momentum=0.9):
    checkpoint = torch.load(path, weights_only=True)
    model = Net()
    if convert_first:
        model.double()
    if load_model:
        model.load_state_dict(checkpoint["model_state_dict"])
    optimizer = torch.optim.SGD((Net() if other_model else model).parameters(), lr=0.1, momentum=momentum)
    if load_state:
        optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    if not convert_first:
        model.double()
    return {"model_fp64": model, "optimizer_fp64": optimizer, "checkpoint_path": path, "trained": SETUP_NET}


def test_l07_q1_optimizer_state_where_the_parameters_are(momentum_checkpoint):
    q = lesson07.q1
    expect(q, resumed_fp64(momentum_checkpoint), CORRECT)
    expect(q, resumed_fp64(momentum_checkpoint, convert_first=False), INCORRECT, "convert or move the model first")
    expect(q, resumed_fp64(momentum_checkpoint, load_state=False), INCORRECT, "state was not loaded")
    expect(q, resumed_fp64(momentum_checkpoint, other_model=True), INCORRECT, "does not update exactly")
    expect(q, resumed_fp64(momentum_checkpoint, load_model=False), INCORRECT, "differs from the checkpoint's")
    float32 = resumed_fp64(momentum_checkpoint)
    float32["model_fp64"].float()  # converted back: the model no longer trains in float64
    expect(q, float32, INCORRECT, "should train in float64")
    halved = resumed_fp64(momentum_checkpoint)
    for state in halved["optimizer_fp64"].state.values():
        state["momentum_buffer"].mul_(0.5)  # buffers of the right kind, but not the saved ones
    expect(
        q, halved, INCORRECT, "the momentum_buffer of conv1.weight in `optimizer_fp64` differs from the checkpoint's"
    )
    no_momentum = resumed_fp64(momentum_checkpoint, load_state=False, momentum=0.0)
    saved = torch.load(momentum_checkpoint, weights_only=True)["optimizer_state_dict"]["state"]
    for index, p in enumerate(no_momentum["model_fp64"].parameters()):  # buffers copied in by hand: SGD ignores them
        no_momentum["optimizer_fp64"].state[p]["momentum_buffer"] = saved[index]["momentum_buffer"].double()
    expect(q, no_momentum, INCORRECT, "momentum=0.0")
    checkpoint = torch.load(momentum_checkpoint, weights_only=True)
    with torch.device("meta"):
        lean = Net().double()
    early = torch.optim.SGD(lean.parameters(), lr=0.1, momentum=0.9)  # before the assign=True load
    lean.load_state_dict({k: v.double() for k, v in checkpoint["model_state_dict"].items()}, assign=True)
    names = {"model_fp64": lean, "optimizer_fp64": early, "checkpoint_path": momentum_checkpoint, "trained": SETUP_NET}
    expect(q, names, INCORRECT, "`optimizer_fp64` holds meta tensors (no data): it was built before")
    linear = nn.Linear(2, 2).double()
    names = {"model_fp64": linear, "optimizer_fp64": torch.optim.SGD(linear.parameters(), lr=0.1, momentum=0.9)}
    result = expect(
        q,
        {**names, "checkpoint_path": momentum_checkpoint, "trained": SETUP_NET},
        INCORRECT,
        "Missing from the model: ['conv1.weight'",
    )
    assert "Unexpected in the model: ['weight', 'bias']" in result.message
    right = resumed_fp64(momentum_checkpoint)
    expect(
        q, {**right, "optimizer_fp64": right["optimizer_fp64"].state_dict()}, INCORRECT, "not a dict (a state_dict?)"
    )
    expect(q, {**right, "model_fp64": right["model_fp64"].state_dict()}, INCORRECT, "`model_fp64` is a dict")
    # found by a helper playing a student: the set-up's trained model converted in place, its optimizer loaded
    trained = Net()
    trained.load_state_dict(torch.load(momentum_checkpoint, weights_only=True)["model_state_dict"])
    in_place = trained.double()
    optimizer = torch.optim.SGD(in_place.parameters(), lr=0.1, momentum=0.9)
    optimizer.load_state_dict(torch.load(momentum_checkpoint, weights_only=True)["optimizer_state_dict"])
    answer = {"model_fp64": in_place, "optimizer_fp64": optimizer, "checkpoint_path": momentum_checkpoint}
    expect(q, {**answer, "trained": trained}, INCORRECT, "not a resume")


def small_gan(steps=3):
    """Lesson 07's `gan` after the set-up and `steps` steps of its train_steps (in calls of 3)."""
    with tempfile.TemporaryDirectory() as folder:
        return lesson07_gan(Path(folder), steps)


def test_l07_q2_every_model_and_optimizer_in_one_file(tmp_path):
    workdir = workdir_in(tmp_path, "07")
    q, gan, path = lesson07.q2, small_gan(), workdir / "gan.pt"
    names = {"gan_path": path, "gan": gan, "workdir": workdir}
    torch.save({name: part.state_dict() for name, part in gan.items()}, path)
    expect(q, names, CORRECT)
    torch.save({"g": gan["generator"].state_dict(), "d": gan["discriminator"].state_dict()}, path)
    expect(q, names, INCORRECT, "opt_g, opt_d")
    torch.save({name: part.state_dict() for name, part in gan.items() if name != "opt_d"}, path)
    expect(q, names, INCORRECT, "opt_d")
    torch.save(gan, path)  # the objects themselves, pickled
    expect(q, names, INCORRECT, "refuses the file")
    torch.save(
        {name: part.state_dict() for name, part in small_gan().items() if "opt" in name}
        | {
            "generator": nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)).state_dict(),
            "discriminator": gan["discriminator"].state_dict(),
        },
        path,
    )
    expect(q, names, INCORRECT, "'generator' (for generator) holds other weights")  # another generator's weights
    expect(q, {**names, "gan_path": tmp_path / "nothing.pt"}, INCORRECT, "no file")
    nested = {
        "models": {n: gan[n].state_dict() for n in ("generator", "discriminator")},
        "optimizers": [gan["opt_g"].state_dict(), gan["opt_d"].state_dict()],
    }
    torch.save(nested, path)
    expect(q, names, CORRECT)  # any structure that holds every state
    swapped = {name: part.state_dict() for name, part in gan.items()}
    swapped["opt_g"], swapped["opt_d"] = swapped["opt_d"], swapped["opt_g"]
    torch.save(swapped, path)
    expect(q, names, INCORRECT, "the entry 'opt_g' is named for opt_g but holds opt_d's state")
    untrained = small_gan(steps=0)
    torch.save({name: part.state_dict() for name, part in untrained.items()}, path)
    expect(q, {**names, "gan": untrained}, INCORRECT, "call train_steps(gan, 3)")


def test_l07_q3_a_new_learning_rate_on_resume(momentum_checkpoint):
    q = lesson07.q3
    checkpoint = torch.load(momentum_checkpoint, weights_only=True)

    def resume(lr_before=None, lr_after=None, load=True, model=None, load_model=True, momentum=0.9):
        model = model or Net()
        if load_model:
            model.load_state_dict(checkpoint["model_state_dict"])
        optimizer = torch.optim.SGD(model.parameters(), lr=lr_before or 0.1, momentum=momentum)
        if load:
            optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
        for group in optimizer.param_groups:
            group["lr"] = lr_after or group["lr"]
        return {"model": model, "optimizer": optimizer, "checkpoint_path": momentum_checkpoint, "trained": Net()}

    expect(q, resume(lr_after=0.001), CORRECT)
    live = resume(lr_after=0.001)
    live["trained"] = live["model"]  # the set-up's live model, its lr changed: nothing was resumed
    expect(q, live, INCORRECT, "is the set-up's `trained` itself")
    expect(q, resume(lr_before=0.001), INCORRECT, "set it after load_state_dict")
    expect(q, resume(lr_after=0.001, load=False), INCORRECT, "was not loaded")
    expect(q, resume(lr_after=0.01), INCORRECT, "not 0.001")
    wrong_model = resume(lr_after=0.001)
    wrong_model["model"] = Net()
    expect(q, wrong_model, INCORRECT, "does not update exactly")
    expect(q, resume(lr_after=0.001, load_model=False), INCORRECT, "differs from the checkpoint's model_state_dict")
    expect(q, resume(lr_after=0.001, momentum=0.5), CORRECT)  # load_state_dict brings momentum 0.9 back
    no_momentum = resume(lr_after=0.001)
    for group in no_momentum["optimizer"].param_groups:
        group["momentum"] = 0.0  # after the load: SGD then ignores the loaded buffers
    expect(q, no_momentum, INCORRECT, "momentum=0.0")
    bare = resume(lr_after=0.001)
    torch.save(checkpoint["model_state_dict"], momentum_checkpoint.with_name("bare.pt"))
    bare["checkpoint_path"] = momentum_checkpoint.with_name("bare.pt")
    expect(q, bare, INCORRECT, "should be the set-up cell's checkpoint")
    with torch.device("meta"):
        lean = Net()
    early = torch.optim.SGD(lean.parameters(), lr=0.001, momentum=0.9)
    lean.load_state_dict(checkpoint["model_state_dict"], assign=True)
    names = {"model": lean, "optimizer": early, "checkpoint_path": momentum_checkpoint, "trained": Net()}
    expect(q, names, INCORRECT, "`optimizer` holds meta tensors")
    half = resume(lr_after=0.001)
    half["model"].half()
    expect(q, half, INCORRECT, "torch.float16 in the model but torch.float32 in the checkpoint's")


# every checker: strange answers get a message, never a crash ---------------------------------


@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")
def test_no_checker_crashes_on_a_strange_answer_nor_draws_random_numbers(
    trained, checkpoint_path, momentum_checkpoint, dcp_checkpoint, tmp_path
):
    net, optimizer = trained
    weights, lean_path = tmp_path / "w.pt", tmp_path / "lean.pt"
    torch.save(net.state_dict(), weights)
    save_file(net.state_dict(), tmp_path / "w.safetensors")
    checkpoint_dir, _reference = dcp_checkpoint
    dcp_to_torch_save(checkpoint_dir, checkpoint_dir.parent / "single.pt")
    model = Net()
    model.load_state_dict(net.state_dict())
    source = setup_source()
    target = Net(num_classes=4)
    load_matching_weights(target, source)
    seed_everything(0)
    torch.save(Net().state_dict(), lean_path)  # lesson 05's set-up
    with torch.device("meta"):
        lean = Net()
    lean.load_state_dict(torch.load(lean_path, mmap=True, weights_only=True), assign=True)
    gan, gan_path = small_gan(), workdir_in(tmp_path, "07") / "gan.pt"
    torch.save({name: part.state_dict() for name, part in gan.items()}, gan_path)
    q3 = resumed_fp64(momentum_checkpoint)
    q3 = {"model": q3["model_fp64"].float(), "optimizer": q3["optimizer_fp64"], "checkpoint_path": momentum_checkpoint}
    q3["trained"] = Net()
    q3["optimizer"] = torch.optim.SGD(q3["model"].parameters(), lr=0.1, momentum=0.9)
    q3["optimizer"].load_state_dict(torch.load(momentum_checkpoint, weights_only=True)["optimizer_state_dict"])
    q3["optimizer"].param_groups[0]["lr"] = 0.001
    seed_everything(0)
    net01, weights01 = Net(), workdir_in(tmp_path, "01") / "w01.pt"  # lesson 01's set-up net: untrained, seed 0
    torch.save(net01.state_dict(), weights01)
    model01 = Net()
    model01.load_state_dict(net01.state_dict())
    save_file(net01.state_dict(), workdir_in(tmp_path, "02") / "w01.safetensors")
    answers = {  # a right answer to each question, and the names a student sets
        lesson01.q1: (
            {"net": net01, "weights_path": weights01, "workdir": weights01.parent},
            ["weights_path", "workdir"],
        ),
        lesson01.q2: ({"net": net01, "weights_path": weights01, "model": model01.eval()}, ["model", "weights_path"]),
        lesson02.q2: (
            {
                "net": net01,
                "safetensors_path": tmp_path / "exercises02-test" / "w01.safetensors",
                "workdir": tmp_path / "exercises02-test",
            },
            ["safetensors_path", "workdir"],
        ),
        lesson03.q1: (
            {"net": net, "optimizer": optimizer, "checkpoint_path": checkpoint_path, "workdir": checkpoint_path.parent},
            ["checkpoint_path", "workdir"],
        ),
        lesson03.q2: (resumed(checkpoint_path), ["model", "optimizer", "checkpoint_path"]),
        lesson04.q1: ({"source_state": source, "target": target}, ["target"]),
        lesson04.q3: (
            {"ddp_state": nn.DataParallel(net01, device_ids=[]).state_dict(), "clean_state": net01.state_dict()},
            ["clean_state"],
        ),
        lesson05.q1: ({"weights_path": lean_path, "model": lean}, ["model", "weights_path"]),
        lesson06.q2: (
            {"checkpoint_dir": checkpoint_dir, "single_path": checkpoint_dir.parent / "single.pt"},
            ["single_path"],
        ),
        lesson07.q1: (resumed_fp64(momentum_checkpoint), ["model_fp64", "optimizer_fp64", "checkpoint_path"]),
        lesson07.q2: ({"gan": gan, "gan_path": gan_path, "workdir": gan_path.parent}, ["gan_path", "workdir"]),
        lesson07.q3: (q3, ["model", "optimizer", "checkpoint_path"]),
    }
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    torch.save(
        {"epoch": None, "model_state_dict": {"a": None}, "optimizer_state_dict": {"state": None}}, tmp_path / "n.pt"
    )
    torch.save({"model": None, "optimizer": None, "model_state_dict": None}, tmp_path / "none.pt")
    (tmp_path / "text.pt").write_text("hello")
    (tmp_path / "empty.pt").write_bytes(b"")
    strange = [5, "no/such/file.pt", tmp_path, torch.ones(3), {"conv1.weight": None}, {"a": 1}, [torch.ones(1)]]
    strange += [tmp_path / name for name in ("tensor.pt", "n.pt", "none.pt", "text.pt", "empty.pt")]
    strange += [nn.Linear(2, 2), torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), {"state": None}]
    rng = torch.random.get_rng_state()
    for question, (right, names) in answers.items():
        assert question.evaluate(right).status == CORRECT, (question.qid, question.evaluate(right))
        for name in names:
            for value in strange:
                result = question.evaluate({**right, name: value})
                assert result.status == INCORRECT, (question.qid, name, value, result)
                assert "checking your answer raised" not in result.message, (question.qid, name, value, result)
    assert torch.equal(rng, torch.random.get_rng_state()), "a checker drew from the notebook's random numbers"


# attacks found by a helper playing a student --------------------------------------------------


def test_a_replaced_net_or_a_lying_model_is_not_accepted(tmp_path):
    """net re-pointed to an empty module with an empty file; a Net subclass whose state_dict lies;
    tensors whose __torch_function__ makes torch.equal say True; a one-parameter 'trained' model."""
    empty = tmp_path / "empty.pt"
    torch.save({}, empty)
    expect(lesson01.q1, {"net": nn.Module(), "weights_path": empty}, INCORRECT, "`net` should be a Net")
    seed_everything(0)
    real = Net()
    zeros = tmp_path / "zeros.pt"
    torch.save({k: torch.zeros_like(v) for k, v in real.state_dict().items()}, zeros)

    class Liar(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            return True if func is torch.equal else super().__torch_function__(func, types, args, kwargs or {})

    class FakeNet(Net):
        def state_dict(self, *args, **kwargs):
            return {k: v.as_subclass(Liar) for k, v in Net.state_dict(real, *args, **kwargs).items()}

    expect(lesson01.q1, {"net": FakeNet(), "weights_path": zeros}, INCORRECT, "`net` should be a Net")
    liars = {k: v.as_subclass(Liar) for k, v in real.state_dict().items()}
    with pytest.raises(Incorrect, match="is a Liar in yours, not a plain tensor"):
        require_same_tensors(liars, {k: torch.zeros_like(v) for k, v in real.state_dict().items()})
    retrained = Net()  # a Net that is not the set-up's seed-0 one
    torch.save(retrained.state_dict(), zeros)
    expect(lesson01.q1, {"net": retrained, "weights_path": zeros}, INCORRECT, "differs from the set-up cell's net")
    tiny = nn.Linear(1, 1)
    torch.save({"epoch": 1, "model_state_dict": tiny.state_dict(), "optimizer_state_dict": {}}, zeros)
    expect(lesson03.q1, {"net": tiny, "checkpoint_path": zeros}, INCORRECT, "`net` should be a Net")


def test_solution_prints_the_solution_notebooks_answer(capsys):
    lesson03.q2.solution()
    printed = capsys.readouterr().out
    assert printed.startswith("A solution for lesson03.q2:\n") and "optimizer.load_state_dict(" in printed
    assert "### BEGIN SOLUTION" not in printed


def test_l03_q1_needs_the_real_epoch_of_training(trained, tmp_path):
    """Weights nudged away from the seed-0 start and zero momentum buffers: no training ran."""
    seed_everything(0)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1e-3)
    state = optimizer.state_dict()
    state["state"] = {i: {"momentum_buffer": torch.zeros_like(p)} for i, p in enumerate(net.parameters())}
    path = workdir_in(tmp_path, "03") / "c.pt"
    torch.save({"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": state}, path)
    expect(lesson03.q1, {"net": net, "checkpoint_path": path, "workdir": path.parent}, INCORRECT, "not those of one")
    real, real_optimizer = trained  # the real epoch, but the momentum zeroed
    state = real_optimizer.state_dict()
    state["state"] = {i: {"momentum_buffer": torch.zeros_like(p)} for i, p in enumerate(real.parameters())}
    torch.save({"epoch": 1, "model_state_dict": real.state_dict(), "optimizer_state_dict": state}, path)
    answer = {"net": real, "checkpoint_path": path, "workdir": path.parent}
    expect(lesson03.q1, answer, INCORRECT, "momentum buffers are not the ones")


def test_l04_q1_a_fresh_head_drawn_with_seed_0_is_still_new_and_copied_rows_are_not():
    """As the set-up draws them: seed 0, a Net for ddp_state, then the source. A student who seeds
    0 again before Net(num_classes=4) draws a fresh head (accepted); one who copies the source's
    first 4 weight rows into the new head is refused, even with the head's own bias (both found
    by helpers playing students; the set-up once drew the source first, and a seed-0 4-class
    head then *was* its first rows)."""
    source = setup_source()
    seed_everything(0)
    target = Net(num_classes=4)
    target.load_state_dict({k: v for k, v in source.items() if not k.startswith("fc3")}, strict=False)
    expect(lesson04.q1, {"target": target, "source_state": source}, CORRECT)
    with torch.no_grad():
        target.fc3.weight.copy_(source["fc3.weight"][:4])
    expect(lesson04.q1, {"target": target, "source_state": source}, INCORRECT, "rows [0, 1, 2, 3] of fc3.weight")


def test_a_choice_takes_a_full_width_letter_and_says_what_none_means():
    q = lesson01.q3
    expect(q, {"q3_answer": "ｂ"}, CORRECT)  # typed with a Chinese input method
    result = expect(q, {"q3_answer": None}, NOT_ATTEMPTED, "one letter, in quotes")
    assert "torch.save" not in result.message


class FakeShell:
    """IPython as seen from a check() cell: the result of the cell run before it."""

    def __init__(self, error):
        self.last_execution_result = types.SimpleNamespace(error_before_exec=None, error_in_exec=error)


def test_check_after_a_cell_that_raised_is_not_correct(monkeypatch, capsys):
    """lesson04.q1 without strict=False: load_state_dict copies every tensor that fits, then raises a
    size mismatch; the target then looks right. Found by a helper playing a student."""
    import IPython

    source_state = setup_source()
    target = Net(num_classes=4)
    with pytest.raises(RuntimeError, match="size mismatch") as raised:
        target.load_state_dict(source_state)
    namespace = {"target": target, "source_state": source_state}
    assert lesson04.q1.evaluate(namespace).status == CORRECT  # what it left behind looks right...
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell(raised.value))
    globals().update(namespace)  # check() reads the caller's globals: this module's
    try:
        lesson04.q1.check()
    finally:
        for name in namespace:
            globals().pop(name)
    printed = capsys.readouterr().out
    assert "INCORRECT" in printed and "raised RuntimeError: Error(s) in loading state_dict" in printed, printed
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell(None))  # the same answer, its cell fixed
    globals().update(namespace)
    try:
        lesson04.q1.check()
    finally:
        for name in namespace:
            globals().pop(name)
    assert ": CORRECT" in capsys.readouterr().out


# issue 26: what the checkers did not check, attacked as students would ---------------------------------------


def file_questions(tmp_path, net):
    """Each question that writes a file: (question, its lesson's workdir, the other names, the path's name, write)."""
    gan = small_gan()
    return [
        (
            lesson01.q1,
            workdir_in(tmp_path, "01"),
            {"net": net},
            "weights_path",
            lambda p: torch.save(net.state_dict(), p),
        ),
        (
            lesson02.q2,
            workdir_in(tmp_path, "02"),
            {"net": net},
            "safetensors_path",
            lambda p: save_file(net.state_dict(), p),
        ),
        (
            lesson07.q2,
            workdir_in(tmp_path, "07"),
            {"gan": gan},
            "gan_path",
            lambda p: torch.save({name: part.state_dict() for name, part in gan.items()}, p),
        ),
    ]


def test_a_file_answer_must_be_in_workdir(net, tmp_path, monkeypatch):
    """Relative paths (they land next to the notebook), other folders, a link out of workdir, and a
    workdir re-pointed elsewhere are refused; a subfolder, a str, a relative path from inside workdir and
    a workdir reached through a link are accepted."""
    notebook = tmp_path / "notebook"
    notebook.mkdir()
    monkeypatch.chdir(notebook)
    for question, workdir, others, name, write in file_questions(tmp_path, net):
        answer = {**others, "workdir": workdir}
        write(workdir / "answer.bin")
        expect(question, {**answer, name: workdir / "answer.bin"}, CORRECT)
        write(notebook / "answer.bin")  # torch.save(..., "answer.bin"): next to the notebook
        result = expect(
            question, {**answer, name: "answer.bin"}, INCORRECT, f"`{name}` is the relative path answer.bin"
        )
        assert "lands next to the notebook" in result.message and "workdir / 'answer.bin'" in result.message
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        write(elsewhere / "answer.bin")
        expect(question, {**answer, name: elsewhere / "answer.bin"}, INCORRECT, "is not in `workdir`")
        expect(question, {**answer, name: str(elsewhere / "answer.bin")}, INCORRECT, "is not in `workdir`")
        (workdir / "link.bin").unlink(missing_ok=True)
        (workdir / "link.bin").symlink_to(elsewhere / "answer.bin")
        expect(question, {**answer, name: workdir / "link.bin"}, INCORRECT, "is a link in `workdir`")
        for cheat in (notebook, tmp_path, "."):  # workdir re-pointed where the file already is
            expect(
                question, {**answer, "workdir": cheat, name: "answer.bin"}, INCORRECT, "not the set-up cell's folder"
            )
        expect(
            question, {**answer, "workdir": None, name: workdir / "answer.bin"}, INCORRECT, "`workdir` is not defined"
        )
        # right, if unusual
        (workdir / "sub").mkdir(exist_ok=True)
        write(workdir / "sub" / "answer.bin")
        expect(question, {**answer, name: workdir / "sub" / "answer.bin"}, CORRECT)
        expect(question, {**answer, name: str(workdir / "answer.bin")}, CORRECT)
        expect(question, {**answer, name: workdir / "sub" / ".." / "answer.bin"}, CORRECT)
        through = tmp_path / f"link-to-{workdir.name}"
        through.symlink_to(workdir)
        expect(question, {**answer, "workdir": through, name: through / "answer.bin"}, CORRECT)
        monkeypatch.chdir(workdir)  # os.chdir(workdir), then a relative name: the file is in workdir
        expect(question, {**answer, name: "answer.bin"}, CORRECT)
        monkeypatch.chdir(notebook)


def test_l03_q1_and_l06_q2_files_must_be_in_workdir(trained, dcp_checkpoint, tmp_path, monkeypatch):
    net, optimizer = trained
    notebook = tmp_path / "notebook"
    notebook.mkdir()
    monkeypatch.chdir(notebook)
    good = {"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict()}
    workdir = workdir_in(tmp_path, "03")
    torch.save(good, notebook / "checkpoint.pt")
    names = {"net": net, "checkpoint_path": "checkpoint.pt", "workdir": workdir}
    expect(lesson03.q1, names, INCORRECT, "`checkpoint_path` is the relative path checkpoint.pt")
    torch.save(good, workdir / "checkpoint.pt")
    expect(lesson03.q1, {**names, "checkpoint_path": workdir / "checkpoint.pt"}, CORRECT)
    checkpoint_dir, _reference = dcp_checkpoint  # lesson 06: workdir is the folder that holds checkpoint_dir
    dcp_to_torch_save(checkpoint_dir, notebook / "single.pt")
    names = {"checkpoint_dir": checkpoint_dir, "single_path": "single.pt"}
    expect(lesson06.q2, names, INCORRECT, "`single_path` is the relative path single.pt")
    expect(lesson06.q2, {**names, "single_path": notebook / "single.pt"}, INCORRECT, "is not in `workdir`")
    dcp_to_torch_save(checkpoint_dir, checkpoint_dir.parent / "single.pt")
    expect(lesson06.q2, {**names, "single_path": checkpoint_dir.parent / "single.pt"}, CORRECT)


def loaded_sgd(path, lr=0.02, **options):
    """Lesson 03's resume, right: a Net, SGD built on it (with ``options``), both states loaded."""
    checkpoint = torch.load(path, weights_only=True)
    model = Net()
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, **options)
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    return {"model": model, "optimizer": optimizer, "checkpoint_path": path, "net": SETUP_NET, "trained": SETUP_NET}


def one_step(answer, model="model", optimizer="optimizer"):
    """One training step on the resumed model: what a student tries next, before checking."""
    images, labels = next(iter(torch.utils.data.DataLoader(OfflineShapes(16), batch_size=16)))
    answer[optimizer].zero_grad()
    nn.functional.cross_entropy(answer[model](images.to(next(answer[model].parameters()).dtype)), labels).backward()
    answer[optimizer].step()
    return answer


def test_a_resumed_optimizer_is_compared_completely(checkpoint_path, momentum_checkpoint):
    """Every hyperparameter of every group, every state value, trainable parameters: lesson 03 Q2,
    lesson 07 Q1 and Q3."""
    q = lesson03.q2
    expect(q, loaded_sgd(checkpoint_path), CORRECT)
    for key, value in [("weight_decay", 1e-4), ("nesterov", True), ("dampening", 0.1), ("maximize", True)]:
        changed = loaded_sgd(checkpoint_path)
        changed["optimizer"].param_groups[0][key] = value  # set after the load: the checkpoint says otherwise
        expect(q, changed, INCORRECT, f"`optimizer` has {key}={value}, but the checkpoint says {key}=")
    frozen = loaded_sgd(checkpoint_path)
    frozen["model"].conv1.requires_grad_(False)  # lesson 04's freezing, copied into a resume
    expect(q, frozen, INCORRECT, "conv1.weight of `model` has requires_grad=False")
    stepped = one_step(loaded_sgd(checkpoint_path))  # loaded right, then one step: not "load it"
    result = expect(q, stepped, INCORRECT, "is close to the checkpoint's model_state_dict but not equal")
    assert "load it:" not in result.message and "a training step?" in result.message
    nudged = loaded_sgd(checkpoint_path)
    nudged["optimizer"].state[nudged["model"].fc3.bias]["momentum_buffer"].mul_(1.01)
    expect(q, nudged, INCORRECT, "the momentum_buffer of fc3.bias in `optimizer` is close to the checkpoint's")
    extra = loaded_sgd(checkpoint_path)
    extra["optimizer"].state[extra["model"].fc1.weight]["step"] = torch.tensor(3.0)
    expect(q, extra, INCORRECT, "`optimizer` holds a step for fc1.weight that the checkpoint does not")
    split = loaded_sgd(checkpoint_path)
    params = split["optimizer"].param_groups[0]["params"]
    split["optimizer"].param_groups[:] = [{**split["optimizer"].param_groups[0], "params": params[:4]}]
    split["optimizer"].param_groups.append({**split["optimizer"].param_groups[0], "params": params[4:]})
    expect(q, split, INCORRECT, "`optimizer` has 2 parameter group(s), the checkpoint 1")
    # right, if unusual: other settings before the load (it brings the saved ones back), named parameters
    expect(q, loaded_sgd(checkpoint_path, weight_decay=1e-4, nesterov=True, foreach=True), CORRECT)
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    model = Net()
    model.load_state_dict(checkpoint["model_state_dict"])
    named = torch.optim.SGD(model.named_parameters(), lr=0.02, momentum=0.9)
    named.load_state_dict(checkpoint["optimizer_state_dict"])
    expect(q, {"model": model, "optimizer": named, "checkpoint_path": checkpoint_path, "net": SETUP_NET}, CORRECT)

    fp64 = resumed_fp64(momentum_checkpoint)
    fp64["optimizer_fp64"].param_groups[0]["weight_decay"] = 0.01
    expect(lesson07.q1, fp64, INCORRECT, "`optimizer_fp64` has weight_decay=0.01, but the checkpoint says")
    fp64 = resumed_fp64(momentum_checkpoint)
    fp64["model_fp64"].requires_grad_(False)
    expect(lesson07.q1, fp64, INCORRECT, "conv1.weight of `model_fp64` has requires_grad=False")
    fp64 = one_step(resumed_fp64(momentum_checkpoint), "model_fp64", "optimizer_fp64")
    expect(lesson07.q1, fp64, INCORRECT, "is close to the checkpoint's model_state_dict but not equal")

    def new_lr(**after):
        answer = loaded_sgd(momentum_checkpoint, lr=0.1)
        for group in answer["optimizer"].param_groups:
            group.update(lr=0.001, **after)
        return answer

    expect(lesson07.q3, new_lr(), CORRECT)
    expect(lesson07.q3, new_lr(weight_decay=5e-4), INCORRECT, "`optimizer` has weight_decay=0.0005, but the checkpoint")
    expect(lesson07.q3, new_lr(nesterov=True), INCORRECT, "`optimizer` has nesterov=True, but the checkpoint says")
    cold = new_lr()
    cold["model"].fc3.requires_grad_(False)
    expect(lesson07.q3, cold, INCORRECT, "fc3.weight of `model` has requires_grad=False")


def test_l03_q1_every_saved_setting_is_the_set_ups(trained, tmp_path):
    net, optimizer = trained
    path = workdir_in(tmp_path, "03") / "c.pt"
    names = {"checkpoint_path": path, "net": net, "workdir": path.parent}
    for key, value in [("weight_decay", 1e-4), ("nesterov", True), ("dampening", 0.5)]:
        state = optimizer.state_dict()
        state["param_groups"][0][key] = value
        torch.save({"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": state}, path)
        expect(lesson03.q1, names, INCORRECT, f"'optimizer_state_dict' has {key}={value}, but the set-up's optimizer")
    state = optimizer.state_dict()
    state["state"][0]["step"] = torch.tensor(10.0)
    torch.save({"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": state}, path)
    expect(lesson03.q1, names, INCORRECT, "the optimizer state holds step for parameter 0")


@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")
def test_l04_q1_a_head_computed_from_the_source_is_not_new():
    """The head must be independent of the source's: combinations, scalings, shifts, shuffles, noisy
    copies and functions of the old head are refused, whatever the trick; fresh heads of every
    honest kind pass, also after `del source_state`."""
    source = setup_source()
    old_weight, old_bias = source["fc3.weight"], source["fc3.bias"]
    torch.manual_seed(123)
    noise = torch.empty(4, 84).uniform_(-0.1, 0.1)

    def warm(weight=None, bias=None):
        return lesson04_warm(source, weight, bias)

    wrong = {
        "the mean of the old rows": (old_weight.mean(0).expand(4, 84), "was computed from the source's head"),
        "a combination of old rows": (torch.rand(4, 10) @ old_weight / 5, "was computed from the source's head"),
        "old rows, halved": (old_weight[:4] * 0.5, "in the span of the old rows"),
        "old rows, shifted": (old_weight[2:6] - 0.01, "in the span"),
        "old rows plus noise": (old_weight[:4] + 0.3 * noise, "in the span"),
        "old rows, columns shuffled": (old_weight[:4][:, torch.randperm(84)], "shares 336 values"),
        "old rows, flipped": (old_weight[6:].flip(1), "shares 336 values"),
        "old rows' absolute values": (old_weight[:4].abs(), "values with the source's 10-class head"),
        "old rows through tanh": (torch.tanh(old_weight[:4] * 20) / 20, "in the span"),
        "old rows through sin": (
            torch.sin(old_weight[:4] * 40) / 10,
            "was computed from row 1 of the source's head, entry by entry",
        ),
    }
    for what, (weight, message) in wrong.items():
        result = expect(lesson04.q1, warm(weight=weight), INCORRECT, message)
        assert result.message.endswith("the head must stay new (Net(num_classes=4)'s own initialisation)"), what
    for bias, message in [
        (
            old_bias[[2, 5, 7, 9]] * 0.5,
            "fc3.bias was computed from the source's bias: it is a*old + b of its entries [2, 5, 7, 9]",
        ),
        (
            old_bias[:4] - 0.01,
            "fc3.bias was computed from the source's bias: it is a*old + b of its entries [0, 1, 2, 3]",
        ),
        (
            old_bias[[9, 0, 3, 3]],
            "fc3.bias takes entries [0, 1, 2, 3] from the source's 10-class bias (its entries [9, 0, 3, 3])",
        ),
    ]:
        expect(lesson04.q1, warm(bias=bias), INCORRECT, message)
    # right, if unusual: the head initialised again in every honest way, and `del source_state`
    right = warm()
    right["target"].fc3.reset_parameters()
    expect(lesson04.q1, right, CORRECT)
    expect(lesson04.q1, warm(*Net(num_classes=4).fc3.state_dict().values()), CORRECT)
    fresh = nn.Linear(84, 4)
    expect(lesson04.q1, warm(fresh.weight, fresh.bias), CORRECT)
    expect(lesson04.q1, warm(torch.empty(4, 84).uniform_(-0.05, 0.05), torch.empty(4).uniform_(-0.05, 0.05)), CORRECT)
    for seed in range(40):  # fresh heads are never taken for copies
        torch.manual_seed(seed)
        expect(lesson04.q1, warm(*nn.Linear(84, 4).state_dict().values()), CORRECT)


@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")
def test_l05_q1_a_lean_load_is_judged_by_the_memory_at_check_time(tmp_path):
    """A right lean load, then a plain load_state_dict (or any write) makes private copies of the pages,
    though the addresses still lie in the file's map; reading, eval() and no_grad are fine."""
    seed_everything(0)
    path = tmp_path / "net.pt"
    torch.save(Net().state_dict(), path)

    def lean():
        with torch.device("meta"):
            model = Net()
        model.load_state_dict(torch.load(path, mmap=True, weights_only=True), assign=True)
        return {"model": model, "weights_path": path}

    expect(lesson05.q1, lean(), CORRECT)
    again = lean()
    again["model"].load_state_dict(torch.load(path, weights_only=True))  # "to be sure": a second, plain load
    result = expect(lesson05.q1, again, INCORRECT, "pages holding ['conv1.weight', ")
    assert "are private copies now" in result.message and "second, plain load_state_dict" in result.message
    mapped_again = lean()
    mapped_again["model"].load_state_dict(torch.load(path, mmap=True, weights_only=True))  # mmap, but no assign
    expect(lesson05.q1, mapped_again, INCORRECT, "are private copies now")
    touched = lean()
    with torch.no_grad():
        touched["model"].fc1.bias.mul_(1.0)  # the same numbers, written
    expect(lesson05.q1, touched, INCORRECT, "fc1.bias")
    shared = lean()
    for tensor in shared["model"].state_dict().values():
        tensor.share_memory_()  # moved into shared memory: no longer the file's pages
    result = expect(lesson05.q1, shared, INCORRECT, "lie in this process's own memory: a private copy")
    assert "or something moved them after it (.to(), .share_memory()" in result.message
    # right, if unusual: used after loading
    used = lean()
    used["model"].eval().requires_grad_(False)
    with torch.no_grad():
        used["model"](torch.zeros(2, 3, 32, 32))
    expect(lesson05.q1, used, CORRECT)
    # messages that name what happened: assign=True was passed, but the load kept nothing or only a part
    with torch.device("meta"):
        model = Net()
    prefixed = {f"module.{k}": v for k, v in torch.load(path, mmap=True, weights_only=True).items()}
    model.load_state_dict(prefixed, assign=True, strict=False)
    result = expect(lesson05.q1, {"model": model, "weights_path": path}, INCORRECT, "every tensor of `model` is still")
    assert "pass assign=True" not in result.message
    with torch.device("meta"):
        model = Net()
    part = {k: v for k, v in torch.load(path, mmap=True, weights_only=True).items() if not k.startswith("fc3")}
    model.load_state_dict(part, assign=True, strict=False)
    result = expect(lesson05.q1, {"model": model, "weights_path": path}, INCORRECT, "fc3.weight is still on the meta")
    assert "while other tensors hold the file's" in result.message


def gan_file(gan, path, layout):
    states = {name: part.state_dict() for name, part in gan.items()}
    torch.save(layout(states), path)


def test_l07_q2_each_entry_is_matched_to_what_it_restores(tmp_path):
    """With names of the student's own, swapped models or optimizers are refused; the messages say what is
    wrong (fp16, saved before training, a step behind), not that a name is wrong."""
    workdir = workdir_in(tmp_path, "07")
    gan, path = small_gan(), workdir / "gan.pt"
    names = {"gan_path": path, "gan": gan, "workdir": workdir}
    wrong = {
        "models swapped, own names": (
            lambda s: {"G": s["discriminator"], "D": s["generator"], "optG": s["opt_g"], "optD": s["opt_d"]},
            "the entry 'G' is named for generator but holds discriminator's state",
        ),
        "optimizers swapped, own names": (
            lambda s: {
                "netG": s["generator"],
                "netD": s["discriminator"],
                "optimizerG": s["opt_d"],
                "optimizerD": s["opt_g"],
            },
            "the entry 'optimizerG' is named for opt_g but holds opt_d's state",
        ),
        "optimizers swapped inside pairs": (
            lambda s: {
                "gen": {"model": s["generator"], "optimizer": s["opt_d"]},
                "disc": {"model": s["discriminator"], "optimizer": s["opt_g"]},
            },
            "the entry ['gen']['optimizer'] is named for opt_g but holds opt_d's state",
        ),
        "lists in the other order": (
            lambda s: {"models": [s["discriminator"], s["generator"]], "optimizers": [s["opt_g"], s["opt_d"]]},
            "the entry ['models'][0] is, by its place (names that say nothing: gan's order, generator first), for "
            "generator",
        ),
        "Chinese names, swapped": (
            lambda s: {
                "生成器": s["discriminator"],
                "判别器": s["generator"],
                "生成器优化器": s["opt_g"],
                "判别器优化器": s["opt_d"],
            },
            "the entry '生成器' is named for generator but holds discriminator's state",
        ),
        "an optimizer's name on a model": (
            lambda s: {"generator": s["generator"], "opt_g": s["discriminator"], "opt_d": s["opt_d"]},
            "the entry 'opt_g' is named for an optimizer but holds a model's state_dict",
        ),
        "the generator in fp16": (
            lambda s: {**s, "generator": {k: v.half() for k, v in s["generator"].items()}},
            "the entry 'generator' (for generator) holds torch.float16 tensors where generator's are torch.float32",
        ),
        "fp16, own names": (
            lambda s: {
                "g": {k: v.half() for k, v in s["generator"].items()},
                "d": s["discriminator"],
                "og": s["opt_g"],
                "od": s["opt_d"],
            },
            "the entry 'g' (for generator) holds torch.float16 tensors",
        ),
    }
    for what, (layout, message) in wrong.items():
        gan_file(gan, path, layout)
        result = expect(lesson07.q2, names, INCORRECT, message)
        assert "a resume by name would fail" not in result.message, what
    gan_file(gan, path, lambda s: {**s, "generator": {k: v + 1 for k, v in s["discriminator"].items()}})
    expect(lesson07.q2, names, INCORRECT, "'generator' is named for generator but has discriminator's keys and shapes")
    fresh = torch.optim.Adam(gan["generator"].parameters())  # saved before any step, under its own name
    gan_file(gan, path, lambda s: {**s, "opt_g": fresh.state_dict()})
    expect(
        lesson07.q2, names, INCORRECT, "the entry 'opt_g' holds opt_g's state after 0 step(s), but opt_g has taken 3"
    )
    # saved, then trained again (or saved before training): the file is behind, and the message says so
    gan_file(gan, path, lambda s: {"G": s["generator"], "D": s["discriminator"], "oG": s["opt_g"], "oD": s["opt_d"]})
    behind = small_gan(steps=6)  # the same gan, trained 3 more steps after the save
    expect(
        lesson07.q2,
        {**names, "gan": behind},
        INCORRECT,
        "the entry 'oG' holds opt_g's state after 3 step(s), but opt_g has taken 6",
    )
    # right, if unusual: own names, nesting, lists in gan's order, a ModuleDict's state_dict, Chinese names
    right = {
        "own names": lambda s: {"G": s["generator"], "D": s["discriminator"], "optG": s["opt_g"], "optD": s["opt_d"]},
        "pairs": lambda s: {
            "generator": {"model": s["generator"], "optimizer": s["opt_g"]},
            "discriminator": {"model": s["discriminator"], "optimizer": s["opt_d"]},
        },
        "one list": lambda s: [s["generator"], s["discriminator"], s["opt_g"], s["opt_d"]],
        "numbered": lambda s: {
            "model_1": s["generator"],
            "model_2": s["discriminator"],
            "optim_1": s["opt_g"],
            "optim_2": s["opt_d"],
        },
        "a ModuleDict": lambda s: {
            "models": nn.ModuleDict(
                {"generator": gan["generator"], "discriminator": gan["discriminator"]}
            ).state_dict(),
            "optimizers": {"generator": s["opt_g"], "discriminator": s["opt_d"]},
        },
        "Chinese names": lambda s: {
            "生成器": s["generator"],
            "判别器": s["discriminator"],
            "生成器优化器": s["opt_g"],
            "判别器优化器": s["opt_d"],
        },
        "an extra older copy": lambda s: {**s, "generator_best": {k: v * 0 for k, v in s["generator"].items()}},
    }
    for what, layout in right.items():
        gan_file(gan, path, layout)
        assert lesson07.q2.evaluate(names).status == CORRECT, (what, lesson07.q2.evaluate(names))


def test_l07_q2_more_steps_than_asked_are_fine_when_the_file_matches(tmp_path):
    """Decided: the answer cell run twice trains 6 steps and saves again; the file matches `gan`, so it is
    right (the question says so). Saved at 3 and trained to 6 without saving is not."""
    workdir = workdir_in(tmp_path, "07")
    gan, path = small_gan(steps=6), workdir / "gan.pt"
    gan_file(gan, path, lambda s: s)
    result = expect(lesson07.q2, {"gan_path": path, "gan": gan, "workdir": workdir}, CORRECT, "after 6 steps")
    assert "both models and both optimizers" in result.message
    assert "Running the cell again trains 3 more steps" in lesson07.q2.prompt


def test_deleting_what_an_answer_used_up_is_not_not_attempted(net, checkpoint_path, momentum_checkpoint):
    """`del ddp_state` after stripping it, `del source_state` after a warm start, `del net` or `del trained`
    after a resume: the answer is still judged, and right."""
    seed_everything(0)
    ddp_state = nn.DataParallel(Net(), device_ids=[]).state_dict()  # lesson 04's set-up
    clean_state = dict(ddp_state)
    consume_prefix_in_state_dict_if_present(clean_state, "module.")
    expect(lesson04.q3, {"clean_state": clean_state}, CORRECT)
    expect(
        lesson04.q3, {"clean_state": {k: v * 2 for k, v in clean_state.items()}}, INCORRECT, "do not touch the values"
    )
    source = setup_source()  # the set-up draws ddp_state's Net and the source first, then the answer its target
    target = Net(num_classes=4)
    load_matching_weights(target, source)
    expect(lesson04.q1, {"target": target}, CORRECT)
    expect(lesson04.q1, {"target": Net(num_classes=4)}, INCORRECT, "no layer of `target`")
    answer = {k: v for k, v in loaded_sgd(checkpoint_path).items() if k != "net"}
    expect(lesson03.q2, answer, CORRECT)  # no `net`
    expect(lesson07.q1, {k: v for k, v in resumed_fp64(momentum_checkpoint).items() if k != "trained"}, CORRECT)
    model = Net()
    model.load_state_dict(torch.load(checkpoint_path, weights_only=True)["model_state_dict"])
    expect(lesson01.q2, {"model": model.eval(), "weights_path": None}, NOT_ATTEMPTED, "`weights_path`")


def wrong_answers(tmp_path, checkpoint_path):
    """Wrong answers a comparison must refuse, each with a right twin: {question: (wrong, right)}."""
    seed_everything(0)
    net = Net()
    workdir = workdir_in(tmp_path, "01")
    torch.save(Net().state_dict(), workdir / "random.pt")  # another Net's weights
    torch.save(net.state_dict(), workdir / "right.pt")
    on = {"net": net, "workdir": workdir}
    halved = loaded_sgd(checkpoint_path)
    for state in halved["optimizer"].state.values():
        state["momentum_buffer"].mul_(0.5)
    source = setup_source()
    copied = Net(num_classes=4)
    load_matching_weights(copied, source)
    fresh = copy.deepcopy(copied)
    with torch.no_grad():
        copied.fc3.weight.copy_(source["fc3.weight"][:4])
    return {
        lesson01.q1: ({**on, "weights_path": workdir / "random.pt"}, {**on, "weights_path": workdir / "right.pt"}),
        lesson03.q2: ({**halved, "net": SETUP_NET}, {**loaded_sgd(checkpoint_path), "net": SETUP_NET}),
        lesson04.q1: ({"target": copied, "source_state": source}, {"target": fresh, "source_state": source}),
    }


class Agreeable(torch.overrides.TorchFunctionMode):
    """Left active by a notebook: every comparison says "equal"."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.equal, torch.Tensor.equal, torch.allclose, torch.Tensor.allclose):
            return True
        if func in (torch.eq, torch.Tensor.eq, torch.Tensor.__eq__, torch.isclose):
            return torch.ones_like(args[0], dtype=torch.bool)
        return func(*args, **(kwargs or {}))


class AgreeableDispatch(torch.utils._python_dispatch.TorchDispatchMode):
    """The same, one level down: aten's comparisons answer "equal", subtractions give zeros."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten.equal.default:
            return True
        if func in (torch.ops.aten.eq.Tensor, torch.ops.aten.isclose.default):
            return torch.ones(args[0].shape, dtype=torch.bool)
        if func is torch.ops.aten.sub.Tensor:
            return torch.zeros_like(args[0])
        return func(*args, **kwargs)


def test_a_mode_or_kernel_left_active_does_not_answer_the_comparisons(tmp_path, trained, checkpoint_path):
    """A TorchFunctionMode, a TorchDispatchMode or a torch.library kernel over aten's comparisons, left
    active by the notebook, cannot turn a wrong answer right (nor a right one wrong)."""
    answers = wrong_answers(tmp_path, checkpoint_path)

    def graded():
        return {q.qid: (q.evaluate(wrong).status, q.evaluate(right).status) for q, (wrong, right) in answers.items()}

    expected = {q.qid: (INCORRECT, CORRECT) for q in answers}
    assert graded() == expected, "without a mode"
    mode = Agreeable()
    mode.__enter__()  # left active, as a notebook cell that never exits it
    try:
        assert graded() == expected, "TorchFunctionMode"
    finally:
        mode.__exit__(None, None, None)
    mode = AgreeableDispatch()
    mode.__enter__()
    try:
        assert graded() == expected, "TorchDispatchMode"
    finally:
        mode.__exit__(None, None, None)
    library = torch.library.Library("aten", "IMPL")  # kernels registered over aten's own, for the CPU
    library.impl("equal", lambda a, b: True, "CPU")
    library.impl("eq.Tensor", lambda a, b: torch.ones(a.shape, dtype=torch.bool), "CPU")
    library.impl("allclose", lambda a, b, rtol=1e-5, atol=1e-8, equal_nan=False: True, "CPU")
    try:
        assert torch.equal(torch.zeros(1), torch.ones(1))  # the override is live
        assert graded() == expected, "torch.library"
    finally:
        library._destroy()
    assert not torch.equal(torch.zeros(1), torch.ones(1))


def test_global_state_left_by_the_notebook_does_not_change_the_references(trained, tmp_path):
    """float64 as the default dtype, or grad mode off, left by the notebook: lesson 03 Q1's replayed epoch
    is still the set-up's, so a right answer stays right."""
    net, optimizer = trained
    path = workdir_in(tmp_path, "03") / "c.pt"
    torch.save({"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, path)
    names = {"checkpoint_path": path, "net": net, "workdir": path.parent}
    torch.set_default_dtype(torch.float64)
    try:
        expect(lesson03.q1, names, CORRECT)
    finally:
        torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        expect(lesson03.q1, names, CORRECT)
