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
    lesson07,
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
    return {"model_fp64": model, "optimizer_fp64": optimizer, "checkpoint_path": path}


def test_l07_q1_optimizer_state_where_the_parameters_are(momentum_checkpoint):
    q = lesson07.q1
    expect(q, resumed_fp64(momentum_checkpoint), CORRECT)
    expect(q, resumed_fp64(momentum_checkpoint, convert_first=False), INCORRECT, "convert or move the model first")
    expect(q, resumed_fp64(momentum_checkpoint, load_state=False), INCORRECT, "state was not loaded")
    expect(q, resumed_fp64(momentum_checkpoint, other_model=True), INCORRECT, "does not hold")
    expect(q, resumed_fp64(momentum_checkpoint, load_model=False), INCORRECT, "weights are not the checkpoint's")
    float32 = resumed_fp64(momentum_checkpoint)
    float32["model_fp64"].float()  # converted back: the model no longer trains in float64
    expect(q, float32, INCORRECT, "should train in float64")
    halved = resumed_fp64(momentum_checkpoint)
    for state in halved["optimizer_fp64"].state.values():
        state["momentum_buffer"].mul_(0.5)  # buffers of the right kind, but not the saved ones
    expect(q, halved, INCORRECT, "not the checkpoint's")
    no_momentum = resumed_fp64(momentum_checkpoint, load_state=False, momentum=0.0)
    saved = torch.load(momentum_checkpoint, weights_only=True)["optimizer_state_dict"]["state"]
    for index, p in enumerate(no_momentum["model_fp64"].parameters()):  # buffers copied in by hand: SGD ignores them
        no_momentum["optimizer_fp64"].state[p]["momentum_buffer"] = saved[index]["momentum_buffer"].double()
    expect(q, no_momentum, INCORRECT, "momentum=0.0")


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
        return {"model": model, "optimizer": optimizer, "checkpoint_path": momentum_checkpoint}

    expect(q, resume(lr_after=0.001), CORRECT)
    expect(q, resume(lr_before=0.001), INCORRECT, "set it after load_state_dict")
    expect(q, resume(lr_after=0.001, load=False), INCORRECT, "was not loaded")
    expect(q, resume(lr_after=0.01), INCORRECT, "not 0.001")
    wrong_model = resume(lr_after=0.001)
    wrong_model["model"] = Net()
    expect(q, wrong_model, INCORRECT, "does not hold")
    expect(q, resume(lr_after=0.001, load_model=False), INCORRECT, "weights are not the checkpoint's")
    expect(q, resume(lr_after=0.001, momentum=0.5), CORRECT)  # load_state_dict brings momentum 0.9 back
    no_momentum = resume(lr_after=0.001)
    for group in no_momentum["optimizer"].param_groups:
        group["momentum"] = 0.0  # after the load: SGD then ignores the loaded buffers
    expect(q, no_momentum, INCORRECT, "momentum=0.0")
    bare = resume(lr_after=0.001)
    torch.save(checkpoint["model_state_dict"], momentum_checkpoint.with_name("bare.pt"))
    bare["checkpoint_path"] = momentum_checkpoint.with_name("bare.pt")
    expect(q, bare, INCORRECT, "should be the set-up cell's checkpoint")
