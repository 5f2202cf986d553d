"""Every checker: its reference solution passes, and at least three distinct wrong answers fail
with the message meant for them. Checkers inspect real objects and files."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from lesson_utils import Net, OfflineShapes, seed_everything
from lesson_utils.exercises import (
    CORRECT,
    INCORRECT,
    NOT_ATTEMPTED,
    RESULTS,
    lesson01,
    lesson02,
    lesson03,
    lesson04,
    lesson05,
    lesson06,
    results_json,
)
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
    expect(q, {"net": net, "weights_path": None}, NOT_ATTEMPTED, "`weights_path`")
    torch.save(net.state_dict(), path)
    expect(q, {"net": net, "weights_path": path}, CORRECT, "bit for bit")
    expect(q, {"net": net, "weights_path": tmp_path / "nope.pt"}, INCORRECT, "there is no file")
    torch.save(net, path)
    expect(q, {"net": net, "weights_path": path}, INCORRECT, "Did you save the whole model")
    torch.save(Net().state_dict(), path)
    expect(q, {"net": net, "weights_path": path}, INCORRECT, "differs from net's")
    torch.save({"conv1.weight": net.conv1.weight}, path)
    expect(q, {"net": net, "weights_path": path}, INCORRECT, "the keys do not match")


def test_l01_q2_eval_mode(net):
    q = lesson01.q2
    expect(q, {"model": None}, NOT_ATTEMPTED)
    expect(q, {"model": net.eval()}, CORRECT)
    expect(q, {"model": net.train()}, INCORRECT, "still in training mode: call model.eval()")
    net.eval()
    net.fc1.train()
    expect(q, {"model": net}, INCORRECT, "its part `fc1` is training")
    expect(q, {"model": "weights.pt"}, INCORRECT, "should be the nn.Module")


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
    save_file(net.state_dict(), path)
    expect(q, {"net": net, "safetensors_path": path}, CORRECT, "no pickle")
    torch.save(net.state_dict(), path)
    expect(q, {"net": net, "safetensors_path": path}, INCORRECT, "this is a torch.save file")
    save_file(Net().state_dict(), path)
    expect(q, {"net": net, "safetensors_path": path}, INCORRECT, "differs from net's")
    save_file({"w": torch.ones(2)}, path)
    expect(q, {"net": net, "safetensors_path": path}, INCORRECT, "the keys do not match net's state_dict")
    path.write_text("hello")
    expect(q, {"net": net, "safetensors_path": path}, INCORRECT, "safetensors cannot read")


# lesson 03 -----------------------------------------------------------------------------------


@pytest.fixture
def trained(net):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    train_one_epoch(net, optimizer, OfflineShapes(64), epoch=0)
    return net, optimizer


def test_l03_q1_resumable_checkpoint(trained, tmp_path):
    net, optimizer = trained
    q, path = lesson03.q1, tmp_path / "c.pt"
    good = {"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict()}
    torch.save(good, path)
    expect(q, {"checkpoint_path": path}, CORRECT)
    torch.save({"epoch": 1, "model_state_dict": net.state_dict()}, path)
    expect(q, {"checkpoint_path": path}, INCORRECT, "lacks 'optimizer_state_dict'")
    torch.save({**good, "loss": np.float64(0.3)}, path)
    expect(q, {"checkpoint_path": path}, INCORRECT, "refuses to load with weights_only=True")
    fresh = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    torch.save({**good, "optimizer_state_dict": fresh.state_dict()}, path)
    expect(q, {"checkpoint_path": path}, INCORRECT, "no momentum buffers")
    torch.save({**good, "epoch": "one"}, path)
    expect(q, {"checkpoint_path": path}, INCORRECT, "'epoch' should be an int")


def test_l03_q2_optimizer_on_the_loaded_model(trained):
    net, optimizer = trained
    model = Net()
    right = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    right.load_state_dict(optimizer.state_dict())
    expect(lesson03.q2, {"model": model, "optimizer": right}, CORRECT)
    wrong = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)  # the original's bug
    wrong.load_state_dict(optimizer.state_dict())
    expect(lesson03.q2, {"model": model, "optimizer": wrong}, INCORRECT, "the original lesson's bug")
    not_loaded = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    expect(lesson03.q2, {"model": model, "optimizer": not_loaded}, INCORRECT, "state was not loaded")
    expect(lesson03.q2, {"model": model, "optimizer": "sgd"}, INCORRECT, "a torch.optim optimizer")


# lesson 04 -----------------------------------------------------------------------------------


def test_l04_q1_warm_start(net):
    source = net.state_dict()
    target = Net(num_classes=4)
    load_matching_weights(target, source)
    expect(lesson04.q1, {"target": target, "source_state": source}, CORRECT, "8 tensors transferred")
    expect(lesson04.q1, {"target": Net(num_classes=4), "source_state": source}, INCORRECT, "no layer of `target`")
    partial = Net(num_classes=4)
    load_matching_weights(partial, source, only=["conv1", "conv2"])
    expect(lesson04.q1, {"target": partial, "source_state": source}, INCORRECT, "fit but were not transferred")
    expect(lesson04.q1, {"target": Net(), "source_state": source}, INCORRECT, "keep its 4-class head")


def test_l04_q3_prefix(net):
    ddp_state = nn.DataParallel(net).state_dict()
    expect(lesson04.q3, {"ddp_state": ddp_state, "clean_state": net.state_dict()}, CORRECT)
    expect(
        lesson04.q3, {"ddp_state": ddp_state, "clean_state": dict(ddp_state)}, INCORRECT, "still start with 'module.'"
    )
    changed = {k: v + 1 for k, v in net.state_dict().items()}
    expect(lesson04.q3, {"ddp_state": ddp_state, "clean_state": changed}, INCORRECT, "do not touch the values")
    expect(lesson04.q3, {"ddp_state": ddp_state, "clean_state": {"fc3.bias": net.fc3.bias}}, INCORRECT, "the keys")
    expect(lesson04.q3, {"ddp_state": ddp_state, "clean_state": "x"}, INCORRECT, "should be a dict")


# lesson 05 -----------------------------------------------------------------------------------


def test_l05_q1_lean_load(net, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    with torch.device("meta"):
        lean = Net()
    lean.load_state_dict(torch.load(path, mmap=True, weights_only=True), assign=True)
    expect(lesson05.q1, {"model": lean, "weights_path": path}, CORRECT, "straight from the file's pages")
    copied = Net()
    copied.load_state_dict(torch.load(path, weights_only=True))
    expect(lesson05.q1, {"model": copied, "weights_path": path}, INCORRECT, "a private copy")
    with torch.device("meta"):
        empty = Net()
    expect(lesson05.q1, {"model": empty, "weights_path": path}, INCORRECT, "still on the meta device")
    expect(lesson05.q1, {"model": Net(), "weights_path": path}, INCORRECT, "load the weights from `weights_path`")


# lesson 06 -----------------------------------------------------------------------------------


def test_l06_q2_single_file(net, tmp_path):
    checkpoint_dir, single = tmp_path / "dcp", tmp_path / "single.pt"
    checkpoint_dir.mkdir()
    torch.save(net.state_dict(), checkpoint_dir / "expected.pt")
    names = {"checkpoint_dir": checkpoint_dir, "single_path": single}
    expect(lesson06.q2, names, INCORRECT, "there is no file")
    torch.save({"model": net.state_dict(), "optimizer": {}}, single)
    expect(lesson06.q2, names, CORRECT)
    torch.save(net.state_dict(), single)
    expect(lesson06.q2, names, INCORRECT, "a dict with 'model'")
    torch.save({"model": Net().state_dict()}, single)
    expect(lesson06.q2, names, INCORRECT, "convert the checkpoint in `checkpoint_dir`")
    torch.save({"model": net}, single)
    expect(lesson06.q2, names, INCORRECT, "cannot read it")


def test_a_checker_that_breaks_on_a_strange_answer_reports_instead_of_crashing():
    result = lesson04.q3.evaluate({"ddp_state": 5, "clean_state": {}})
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
    assert "Hint for lesson01.q3" in out and "q3_answer = 'b'" in out
