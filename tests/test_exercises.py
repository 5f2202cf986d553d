"""Every checker: its reference solution passes, and at least three distinct wrong answers fail
with the message meant for them. Checkers inspect real objects and files."""

import importlib.util
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file
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


def expect(question, namespace, status, message=""):
    result = question.evaluate(namespace)
    assert result.status == status, result
    assert message in result.message, result
    return result


@pytest.fixture
def net():
    seed_everything(0)
    return Net()


# lesson 01 -----------------------------------------------------------------------------------


def test_l01_q1_saved_state_dict(net, tmp_path):
    q, path = lesson01.q1, tmp_path / "w.pt"
    names = {"net": net, "weights_path": path}
    expect(q, {"net": net, "weights_path": None}, NOT_ATTEMPTED, "`weights_path`")
    torch.save(net.state_dict(), path)
    expect(q, names, CORRECT, "bit for bit")
    expect(q, {"net": net, "weights_path": tmp_path / "nope.pt"}, INCORRECT, "there is no file")
    expect(q, {"net": net, "weights_path": tmp_path}, INCORRECT, "is the folder")
    expect(q, {"net": net, "weights_path": net.state_dict()}, INCORRECT, "should be a path (a str or Path), not a dict")
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
        (lesson06.q3, "b", {"a": "that is dcp.save", "c": "must be copied first", "b)": "one letter"}),
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
    q, path = lesson02.q2, tmp_path / "w.safetensors"
    names = {"net": net, "safetensors_path": path}
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
    expect(q, {"net": net, "safetensors_path": tmp_path}, INCORRECT, "is the folder")
    expect(q, {"net": net, "safetensors_path": 3}, INCORRECT, "should be a path")


# lesson 03 -----------------------------------------------------------------------------------


@pytest.fixture
def trained(net):
    """Lesson 03's set-up and Q1's epoch, as the notebook runs them."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    train_one_epoch(net, optimizer, OfflineShapes(512), epoch=0)
    return net, optimizer


def test_l03_q1_resumable_checkpoint(trained, tmp_path):
    net, optimizer = trained
    q, path = lesson03.q1, tmp_path / "c.pt"
    names = {"checkpoint_path": path, "net": net, "optimizer": optimizer}
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
    expect(q, names, INCORRECT, "not the set-up's optimizer (lr=0.02, momentum=0.9)")
    torch.save(good, path)
    expect(q, {**names, "optimizer": None}, CORRECT)  # Q2's blank answer cell resets `optimizer`: Q1 still holds
    expect(q, {**names, "checkpoint_path": tmp_path}, INCORRECT, "is the folder")
    expect(q, {**names, "checkpoint_path": good}, INCORRECT, "should be a path")


def test_l03_q1_the_checkpoint_holds_the_trained_weights(tmp_path):
    seed_everything(0)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    path = tmp_path / "c.pt"
    names = {"checkpoint_path": path, "net": net, "optimizer": optimizer}
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
    path = tmp_path / "resume.pt"
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
    expect(q, answer, INCORRECT, "momentum of")


# lesson 04 -----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")  # wrong answers do that
def test_l04_q1_warm_start(net):
    source = net.state_dict()
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
    expect(q, sliced, INCORRECT, "takes rows [0, 1, 2, 3] from the source's 10-class head")
    picked = warm(weight=source["fc3.weight"][[1, 3, 5, 7]])
    expect(q, picked, INCORRECT, "takes rows [0, 1, 2, 3]")
    expect(q, warm(bias=source["fc3.bias"][6:]), INCORRECT, "fc3.bias takes rows")
    expect(q, warm(weight=torch.zeros(4, 84), bias=torch.zeros(4)), INCORRECT, "does not look freshly initialised")
    expect(q, warm(weight=torch.randn(4, 84)), INCORRECT, "does not look freshly initialised")
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
    consume_prefix_in_state_dict_if_present(ddp_state, "module.")  # in place, on the set-up's dict
    expect(q, {"ddp_state": ddp_state, "clean_state": ddp_state}, INCORRECT, "lost its 'module.' prefix")


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
    expect(q, load(assign=False), INCORRECT, "still on the meta device (no data): without assign=True")
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


def test_l06_q2_single_file(net, tmp_path):
    checkpoint_dir, single = tmp_path / "dcp", tmp_path / "single.pt"
    checkpoint_dir.mkdir()
    torch.save(net.state_dict(), checkpoint_dir / "expected.pt")
    optimizer = {"state": {key: {"step": torch.tensor(1.0)} for key in net.state_dict()}, "param_groups": []}
    names = {"checkpoint_dir": checkpoint_dir, "single_path": single}
    expect(lesson06.q2, names, INCORRECT, "there is no file")
    torch.save({"model": net.state_dict(), "optimizer": optimizer}, single)
    expect(lesson06.q2, names, CORRECT)
    torch.save(net.state_dict(), single)
    expect(lesson06.q2, names, INCORRECT, "a dict with 'model'")
    torch.save({"model": Net().state_dict(), "optimizer": optimizer}, single)
    expect(lesson06.q2, names, INCORRECT, "convert the checkpoint in `checkpoint_dir`")
    torch.save({"model": net}, single)
    expect(lesson06.q2, names, INCORRECT, "does not load with weights_only=True")
    torch.save({"model": net.state_dict()}, single)  # the model only
    expect(lesson06.q2, names, INCORRECT, "no 'optimizer' state")
    torch.save({"model": net.state_dict(), "optimizer": {"state": {}, "param_groups": []}}, single)
    expect(lesson06.q2, names, INCORRECT, "optimizer state lacks ['conv1.weight'")
    torch.save({"model": {k: v.double() for k, v in net.state_dict().items()}, "optimizer": optimizer}, single)
    expect(lesson06.q2, names, INCORRECT, "torch.float64 in the file's 'model'")
    expect(lesson06.q2, {**names, "single_path": checkpoint_dir}, INCORRECT, "is the folder")
    expect(lesson06.q2, {**names, "checkpoint_dir": tmp_path}, INCORRECT, "run the set-up cell again")


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
    seed_everything(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_one_epoch(model, optimizer, OfflineShapes(64), epoch=0)
    path = tmp_path / "c.pt"
    torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, path)
    return path


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
    expect(q, halved, INCORRECT, "holds other values than the checkpoint's")
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
    seed_everything(1)
    generator, discriminator = nn.Linear(4, 2), nn.Linear(2, 1)
    gan = {
        "generator": generator,
        "discriminator": discriminator,
        "opt_g": torch.optim.Adam(generator.parameters(), lr=1e-2),
        "opt_d": torch.optim.Adam(discriminator.parameters(), lr=1e-2),
    }
    for _ in range(steps):
        loss = discriminator(generator(torch.randn(8, 4))).mean()
        for name in ("opt_g", "opt_d"):
            gan[name].zero_grad()
        loss.backward()
        for name in ("opt_g", "opt_d"):
            gan[name].step()
    return gan


def test_l07_q2_every_model_and_optimizer_in_one_file(tmp_path):
    q, gan, path = lesson07.q2, small_gan(), tmp_path / "gan.pt"
    torch.save({name: part.state_dict() for name, part in gan.items()}, path)
    expect(q, {"gan_path": path, "gan": gan}, CORRECT)
    torch.save({"g": gan["generator"].state_dict(), "d": gan["discriminator"].state_dict()}, path)
    expect(q, {"gan_path": path, "gan": gan}, INCORRECT, "opt_g, opt_d")
    torch.save({name: part.state_dict() for name, part in gan.items() if name != "opt_d"}, path)
    expect(q, {"gan_path": path, "gan": gan}, INCORRECT, "opt_d")
    torch.save(gan, path)  # the objects themselves, pickled
    expect(q, {"gan_path": path, "gan": gan}, INCORRECT, "refuses the file")
    torch.save(
        {name: part.state_dict() for name, part in small_gan().items() if "opt" in name}
        | {"generator": nn.Linear(4, 2).state_dict(), "discriminator": gan["discriminator"].state_dict()},
        path,
    )
    expect(q, {"gan_path": path, "gan": gan}, INCORRECT, "generator")  # saved another generator's weights
    expect(q, {"gan_path": tmp_path / "nothing.pt", "gan": gan}, INCORRECT, "no file")
    nested = {
        "models": {n: gan[n].state_dict() for n in ("generator", "discriminator")},
        "optimizers": [gan["opt_g"].state_dict(), gan["opt_d"].state_dict()],
    }
    torch.save(nested, path)
    expect(q, {"gan_path": path, "gan": gan}, CORRECT)  # any structure that holds every state
    swapped = {name: part.state_dict() for name, part in gan.items()}
    swapped["opt_g"], swapped["opt_d"] = swapped["opt_d"], swapped["opt_g"]
    torch.save(swapped, path)
    expect(q, {"gan_path": path, "gan": gan}, INCORRECT, "does not hold opt_g's state")
    untrained = small_gan(steps=0)
    torch.save({name: part.state_dict() for name, part in untrained.items()}, path)
    expect(q, {"gan_path": path, "gan": untrained}, INCORRECT, "call train_steps(gan, 3)")


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
    trained, checkpoint_path, momentum_checkpoint, tmp_path
):
    net, optimizer = trained
    weights, lean_path = tmp_path / "w.pt", tmp_path / "lean.pt"
    torch.save(net.state_dict(), weights)
    torch.save(net.state_dict(), lean_path)
    save_file(net.state_dict(), tmp_path / "w.safetensors")
    (tmp_path / "dcp").mkdir()
    torch.save(net.state_dict(), tmp_path / "dcp" / "expected.pt")
    converted = {"state": {key: {} for key in net.state_dict()}}
    torch.save({"model": net.state_dict(), "optimizer": converted}, tmp_path / "single.pt")
    model = Net()
    model.load_state_dict(net.state_dict())
    target = Net(num_classes=4)
    load_matching_weights(target, net.state_dict())
    with torch.device("meta"):
        lean = Net()
    lean.load_state_dict(torch.load(lean_path, mmap=True, weights_only=True), assign=True)
    gan, gan_path = small_gan(), tmp_path / "gan.pt"
    torch.save({name: part.state_dict() for name, part in gan.items()}, gan_path)
    q3 = resumed_fp64(momentum_checkpoint)
    q3 = {"model": q3["model_fp64"].float(), "optimizer": q3["optimizer_fp64"], "checkpoint_path": momentum_checkpoint}
    q3["trained"] = Net()
    q3["optimizer"] = torch.optim.SGD(q3["model"].parameters(), lr=0.1, momentum=0.9)
    q3["optimizer"].load_state_dict(torch.load(momentum_checkpoint, weights_only=True)["optimizer_state_dict"])
    q3["optimizer"].param_groups[0]["lr"] = 0.001
    seed_everything(0)
    net01, weights01 = Net(), tmp_path / "w01.pt"  # lesson 01's set-up net: untrained, seed 0
    torch.save(net01.state_dict(), weights01)
    model01 = Net()
    model01.load_state_dict(net01.state_dict())
    save_file(net01.state_dict(), tmp_path / "w01.safetensors")
    answers = {  # a right answer to each question, and the names a student sets
        lesson01.q1: ({"net": net01, "weights_path": weights01}, ["weights_path"]),
        lesson01.q2: ({"net": net01, "weights_path": weights01, "model": model01.eval()}, ["model", "weights_path"]),
        lesson02.q2: ({"net": net01, "safetensors_path": tmp_path / "w01.safetensors"}, ["safetensors_path"]),
        lesson03.q1: ({"net": net, "optimizer": optimizer, "checkpoint_path": checkpoint_path}, ["checkpoint_path"]),
        lesson03.q2: (resumed(checkpoint_path), ["model", "optimizer", "checkpoint_path"]),
        lesson04.q1: ({"source_state": net.state_dict(), "target": target}, ["target"]),
        lesson04.q3: (
            {"ddp_state": nn.DataParallel(net, device_ids=[]).state_dict(), "clean_state": net.state_dict()},
            ["clean_state"],
        ),
        lesson05.q1: ({"weights_path": lean_path, "model": lean}, ["model", "weights_path"]),
        lesson06.q2: ({"checkpoint_dir": tmp_path / "dcp", "single_path": tmp_path / "single.pt"}, ["single_path"]),
        lesson07.q1: (resumed_fp64(momentum_checkpoint), ["model_fp64", "optimizer_fp64", "checkpoint_path"]),
        lesson07.q2: ({"gan": gan, "gan_path": gan_path}, ["gan_path"]),
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
    path = tmp_path / "c.pt"
    torch.save({"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": state}, path)
    expect(lesson03.q1, {"net": net, "checkpoint_path": path}, INCORRECT, "not those of one epoch")
    real, real_optimizer = trained  # the real epoch, but the momentum zeroed
    state = real_optimizer.state_dict()
    state["state"] = {i: {"momentum_buffer": torch.zeros_like(p)} for i, p in enumerate(real.parameters())}
    torch.save({"epoch": 1, "model_state_dict": real.state_dict(), "optimizer_state_dict": state}, path)
    expect(lesson03.q1, {"net": real, "checkpoint_path": path}, INCORRECT, "momentum buffers are not the ones")


def test_l04_q1_a_fresh_head_drawn_with_seed_0_is_still_new_and_copied_rows_are_not():
    """As the set-up draws them: seed 0, a Net for ddp_state, then the source. A student who seeds
    0 again before Net(num_classes=4) draws a fresh head (accepted); one who copies the source's
    first 4 weight rows into the new head is refused, even with the head's own bias (both found
    by helpers playing students; the set-up once drew the source first, and a seed-0 4-class
    head then *was* its first rows)."""
    seed_everything(0)
    Net()  # ddp_state's
    source = Net().state_dict()
    seed_everything(0)
    target = Net(num_classes=4)
    target.load_state_dict({k: v for k, v in source.items() if not k.startswith("fc3")}, strict=False)
    expect(lesson04.q1, {"target": target, "source_state": source}, CORRECT)
    with torch.no_grad():
        target.fc3.weight.copy_(source["fc3.weight"][:4])
    expect(lesson04.q1, {"target": target, "source_state": source}, INCORRECT, "takes rows [0, 1, 2, 3]")


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

    source = Net()
    source_state = source.state_dict()
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
