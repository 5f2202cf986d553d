"""Issue 26, second round: each class of mistake a student-attacker found, attacked again with wrong answers of our
own (none of them the attacker's), each refused with a message that names the real fault; and right answers
written in unusual ways, accepted. The attacker's own cases are in /tmp/attack while it runs; the classes are:
choices written as students write them, a safetensors file whose header starts like a pickle, a cell that raised
before its check, library functions and methods replaced in the kernel, a resume that is not ready to train,
the set-up's files written over, a fresh head, a lean load at check time, DCP answers by value, several models
in one file, a folder that must be new, and the set-up's own loader."""

from __future__ import annotations

import copy
import mmap
import os
import shutil
import types
import warnings

import pytest
import torch
import torch.distributed.checkpoint as dcp
import torch.nn as nn
from exercise_helpers import (
    expect,
    lesson04_source,
    lesson04_warm,
    lesson06_checkpoint,
    lesson07_checkpoint,
    lesson07_gan,
    lesson07_setup,
    workdir_in,
)
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from lesson_utils import Net, OfflineShapes, seed_everything
from lesson_utils.exercises import (
    CORRECT,
    INCORRECT,
    lesson01,
    lesson02,
    lesson03,
    lesson04,
    lesson05,
    lesson06,
    lesson07,
    lesson08,
    lesson09,
)
from lesson_utils.training import train_one_epoch

# choices -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        (lesson01.q3, " b) "),
        (lesson01.q3, "(b)"),
        (lesson01.q3, "[B]"),
        (lesson01.q3, "b:"),
        (lesson01.q3, "（ｂ）"),  # full width, as a Chinese input method types it
        (lesson01.q3, "b、"),  # the Chinese enumeration comma
        (lesson01.q3, "b) The parameters and the buffers."),
        (lesson01.q3, "b - the parameters and the buffers"),
        (lesson01.q3, "the parameters and the buffers"),  # the option's text alone
        (lesson02.q1, "b.\n"),
        (lesson04.q2, "c) a key on both sides"),  # the option's first words
        (lesson05.q2, "B) after the load"),
        (lesson06.q3, "b) copying the state into memory"),
    ],
)
def test_a_choice_reads_a_letter_written_as_students_write_it(question, answer):
    expect(question, {question.names[0]: answer}, CORRECT)


@pytest.mark.parametrize(
    ("question", "answer", "message"),
    [
        (lesson01.q3, "b) only the parameters", "the letter b, but the text after it is option a's (only the param"),
        (lesson05.q2, "b) before the load, as usual", "the text after it is option a's (before the load, as usual)"),
        (lesson04.q2, "a) a key on both sides with different shapes", "the text after it is option c's"),
        (lesson01.q3, "b, c", "answer with one letter of ['a', 'b', 'c']"),
        (lesson01.q3, "b or c", "answer with one letter"),
        (lesson01.q3, "bc", "answer with one letter"),
        (lesson01.q3, "both", "answer with one letter"),  # a word that starts with a letter is not the letter
        (lesson01.q3, "answer: b", "answer with one letter"),
        (lesson01.q3, "the parameters", "answer with one letter"),  # the start of two options' texts
        (lesson01.q3, "(a)", "running_mean and running_var are in it too"),  # a wrong letter, written the same way
        (lesson05.q2, "c) it does not matter", "an optimizer made before the load holding meta tensors"),
    ],
)
def test_a_choice_refuses_what_is_not_one_letter_and_says_so(question, answer, message):
    expect(question, {question.names[0]: answer}, INCORRECT, message)


# lesson 02: a safetensors file is read as one, whatever its first byte --------------------------------------------


def test_l02_a_safetensors_header_that_starts_with_0x80_is_not_a_pickle(tmp_path):
    seed_everything(0)
    net = Net()
    workdir = workdir_in(tmp_path, "02")
    names = {"net": net, "workdir": workdir, "safetensors_path": workdir / "net.safetensors"}
    starts = set()
    for length in range(100, 160):  # the header's length, little-endian, is the file's first 8 bytes
        save_file(net.state_dict(), workdir / "net.safetensors", metadata={"format": "pt", "note": "x" * length})
        first = (workdir / "net.safetensors").read_bytes()[0]
        if first in (0x80, 0x50):  # a pickle's first byte, a zip's "P"
            starts.add(first)
            expect(lesson02.q2, names, CORRECT, "no pickle")
    assert 0x80 in starts
    torch.save(net.state_dict(), workdir / "net.safetensors", _use_new_zipfile_serialization=False)
    expect(lesson02.q2, names, INCORRECT, "this is a pickle, whatever its name")
    torch.save(net.state_dict(), workdir / "net.safetensors")
    expect(lesson02.q2, names, INCORRECT, "this is a torch.save file (a zip archive)")
    (workdir / "net.safetensors").write_bytes(b"\x80\x04" + b"\x00" * 40)  # a pickle's start, then garbage
    expect(lesson02.q2, names, INCORRECT, "this is a pickle")
    # right, if unusual: huggingface_hub's model.safetensors, in a folder of its own inside workdir
    from huggingface_hub import save_torch_state_dict

    (workdir / "release").mkdir()
    save_torch_state_dict(net.state_dict(), workdir / "release")
    expect(lesson02.q2, {**names, "safetensors_path": workdir / "release" / "model.safetensors"}, CORRECT)


# a cell that raised before its check ----------------------------------------------------------------------------


class FakeShell:
    """IPython as seen from a check() cell: the result of the cell run before it."""

    def __init__(self, error):
        self.last_execution_result = types.SimpleNamespace(error_before_exec=None, error_in_exec=error)


def test_not_attempted_after_a_cell_that_raised_names_the_error(monkeypatch, capsys):
    """02-R3: save_torch_state_dict into a folder not made yet raises, and the path is never set: "not attempted"
    is right, but the message names the error, not torch.save's None."""
    import IPython

    raised = FileNotFoundError(2, "No such file or directory", "/tmp/exercises02-x/release")
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell(raised))
    namespace = {"net": Net(), "safetensors_path": None}
    globals().update(namespace)  # check() reads the caller's globals: this module's
    try:
        lesson02.q2.check()
    finally:
        for name in namespace:
            globals().pop(name)
    printed = capsys.readouterr().out
    assert "NOT ATTEMPTED: `safetensors_path` still None: the cell run just before this check raised" in printed
    assert "FileNotFoundError: [Errno 2] No such file or directory" in printed and "torch.save" not in printed


# replaced in the kernel: library functions, methods, hooks -------------------------------------------------------


@pytest.fixture
def lesson01_files(tmp_path):
    seed_everything(0)
    net = Net()
    workdir = workdir_in(tmp_path, "01")
    torch.save(net.state_dict(), workdir / "w.pt")
    return net, workdir


def test_a_replaced_library_function_answers_nothing(lesson01_files, monkeypatch):
    net, workdir = lesson01_files
    torch.save({}, workdir / "empty.pt")  # a dummy, then torch.load made to return the right dict
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: dict(net.state_dict()))
    names = {"net": net, "weights_path": workdir / "empty.pt", "workdir": workdir}
    expect(lesson01.q1, names, INCORRECT, "Missing from the file: ['conv1.weight'")
    assert torch.load("anything") is not None  # the notebook's replacement is back after the check
    monkeypatch.undo()
    import safetensors.torch

    workdir02 = workdir.parent / "exercises02-test"
    workdir02.mkdir()
    (workdir02 / "w.safetensors").write_bytes(b"not a safetensors file")
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *args, **kwargs: dict(net.state_dict()))
    names = {"net": net, "safetensors_path": workdir02 / "w.safetensors", "workdir": workdir02}
    expect(lesson02.q2, names, INCORRECT, "safetensors cannot read")
    monkeypatch.undo()
    model = Net().eval()  # random weights; every Module's state_dict made to answer with the file's
    saved = torch.load(workdir / "w.pt", weights_only=True)
    monkeypatch.setattr(nn.Module, "state_dict", lambda self, *args, **kwargs: saved)
    expect(lesson01.q2, {"model": model, "weights_path": workdir / "w.pt"}, INCORRECT, "differs from the file")


def test_a_method_replaced_on_the_object_answers_nothing(lesson01_files, tmp_path):
    """The checks read the tensors a model computes with, from its modules' own registries: a state_dict replaced
    on the object or answered by a hook changes nothing (and a right model with a replaced method is still right,
    as the grader, which rebuilds real objects, judges it)."""
    net, workdir = lesson01_files
    saved = torch.load(workdir / "w.pt", weights_only=True)
    model = Net().eval()
    model.state_dict = lambda *args, **kwargs: saved  # 01-C5, written another way
    names = {"model": model, "weights_path": workdir / "w.pt", "net": net}
    expect(lesson01.q2, names, INCORRECT, "in `model` differs from the file at `weights_path`: load the file into it")
    hooked = Net().eval()  # a state_dict hook that answers with the file's numbers
    hooked._register_state_dict_hook(lambda module, state, prefix, local: state.update(saved))
    expect(lesson01.q2, {**names, "model": hooked}, INCORRECT, "in `model` differs from the file at `weights_path`")
    deep = Net().eval()
    deep.load_state_dict(saved)
    deep.fc3.named_parameters = lambda *args, **kwargs: iter([])  # a right model, a method replaced deep inside
    expect(lesson01.q2, {**names, "model": deep}, CORRECT)
    source = lesson04_source()
    target = Net(num_classes=4)  # 04-C2, another way: nothing transferred, state_dict answering with the source's
    target.state_dict = lambda *args, **kwargs: {**Net(num_classes=4).state_dict(), **source, "fc3.weight": None}
    expect(lesson04.q1, {"target": target}, INCORRECT, "no layer of `target` holds the source's weights")
    path, gan, train_steps = lesson07_setup(tmp_path)
    train_steps(gan, 3)
    gan["opt_g"].state_dict = lambda: {"state": {}, "param_groups": []}  # the file gets an empty state...
    torch.save({n: p.state_dict() for n, p in gan.items()}, path.with_name("gan.pt"))
    names = {"gan": gan, "gan_path": path.with_name("gan.pt"), "workdir": path.parent}
    expect(lesson07.q2, names, INCORRECT, "the entry 'opt_g' holds opt_g's state after 0 step(s), but opt_g has")


# a resume goes on training -----------------------------------------------------------------------------------------


@pytest.fixture
def lesson03_checkpoint(tmp_path):
    """Lesson 03's set-up and Q1's answer: one epoch, saved in workdir."""
    seed_everything(0)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    train_one_epoch(net, optimizer, OfflineShapes(512), epoch=0)
    path = workdir_in(tmp_path, "03") / "checkpoint.pt"
    torch.save({"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, path)
    return path


def resume(path, names=("model", "optimizer"), lr=0.1, convert=None, after=None):
    """A right resume from ``path`` (SGD, momentum 0.9), then ``after(model, optimizer)``."""
    checkpoint = torch.load(path, weights_only=True)
    model = Net()
    if convert:
        model.to(convert)
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    if after:
        after(model, optimizer)
    return {names[0]: model, names[1]: optimizer, "checkpoint_path": path}


def new_lr(value):
    def change(model, optimizer):
        for group in optimizer.param_groups:
            group["lr"] = value

    return change


def test_a_resume_is_left_ready_to_go_on_training(lesson03_checkpoint, tmp_path):
    """03-W15 and 07-W6: eval() at the end of a resume. Lesson 03 Q2, lesson 07 Q1 and Q3."""
    path07 = lesson07_checkpoint(tmp_path)
    fp64 = ("model_fp64", "optimizer_fp64")
    cases = [
        (lesson03.q2, dict(path=lesson03_checkpoint), "model"),
        (lesson07.q1, dict(path=path07, names=fp64, convert=torch.float64), "model_fp64"),
        (lesson07.q3, dict(path=path07, after=new_lr(0.001)), "model"),
    ]
    for question, options, model in cases:
        expect(question, resume(**options), CORRECT)
        answer = resume(**options)
        answer[model].eval()
        result = expect(question, answer, INCORRECT, f"`{model}` is in eval mode: a resume goes on training")
        assert f"({model}.train(); eval() is for predicting" in result.message
        answer[model].train()
        answer[model].fc2.eval()
        expect(question, answer, INCORRECT, f"`{model}` is in training mode but its part `fc2` is in eval mode")
        answer[model].eval().train()  # eval, then train again: ready
        expect(question, answer, CORRECT)


def test_a_resumed_optimizer_is_compared_setting_by_setting_to_float32_precision(lesson03_checkpoint, tmp_path):
    """07-R10: a learning rate of torch.tensor(0.001).item() is 0.001 to float32's precision, and right; one off in
    the seventh digit is not."""
    path07 = lesson07_checkpoint(tmp_path)
    expect(lesson07.q3, resume(path07, after=new_lr(torch.tensor(0.001).item())), CORRECT)
    expect(lesson07.q3, resume(path07, after=new_lr(torch.tensor(0.001))), CORRECT)  # a tensor learning rate
    expect(lesson07.q3, resume(path07, after=new_lr(0.0010001)), INCORRECT, "the learning rate is 0.0010001")
    expect(lesson03.q2, resume(lesson03_checkpoint, lr=0.02, after=new_lr(0.02000001)), INCORRECT, "lr=0.02000001")
    for key, value in [("dampening", 0.1), ("nesterov", True), ("weight_decay", 1e-5), ("maximize", True)]:

        def change(model, optimizer, key=key, value=value):
            optimizer.param_groups[0][key] = value

        answer = resume(path07, names=("model_fp64", "optimizer_fp64"), convert=torch.float64, after=change)
        expect(lesson07.q1, answer, INCORRECT, f"`optimizer_fp64` has {key}={value}, but the checkpoint says")

    def unfreeze_half(model, optimizer):
        model.fc3.bias.requires_grad_(False)

    expect(lesson07.q3, resume(path07, after=lambda m, o: (new_lr(0.001)(m, o), unfreeze_half(m, o))), INCORRECT,
           "fc3.bias of `model` has requires_grad=False")  # fmt: skip


# the set-up's files, written over, are judged against what the set-up makes ---------------------------------------


def test_a_set_up_file_written_over_is_refused(lesson03_checkpoint, tmp_path):
    seed_everything(0)
    net = Net()
    other = Net()  # lesson 01: Q1's file replaced by another Net's weights, and those loaded
    path = workdir_in(tmp_path, "01") / "w.pt"
    torch.save(other.state_dict(), path)
    model = Net().eval()
    model.load_state_dict(other.state_dict())
    result = expect(lesson01.q2, {"model": model, "weights_path": path, "net": net}, INCORRECT, "the file at")
    assert "differs from the set-up cell's net: answer Q1 again" in result.message
    # lesson 03: checkpoint_path pointed at a checkpoint of another run, resumed right from it
    seed_everything(1)
    stranger = Net()
    optimizer = torch.optim.SGD(stranger.parameters(), lr=0.02, momentum=0.9)
    train_one_epoch(stranger, optimizer, OfflineShapes(64), epoch=0)
    elsewhere = lesson03_checkpoint.with_name("other.pt")
    torch.save(
        {"epoch": 1, "model_state_dict": stranger.state_dict(), "optimizer_state_dict": optimizer.state_dict()},
        elsewhere,
    )
    expect(lesson03.q2, resume(elsewhere, lr=0.02), INCORRECT, "is not Q1's checkpoint any more: answer Q1 again")
    # lesson 07: the set-up's checkpoint written over (two steps of another seed), resumed from
    path07 = lesson07_checkpoint(tmp_path)
    torch.save(
        {"model_state_dict": stranger.state_dict(), "optimizer_state_dict": optimizer.state_dict()},
        path07,
    )
    message = "the file at `checkpoint_path` is not the set-up cell's checkpoint"
    expect(lesson07.q3, resume(path07, after=new_lr(0.001)), INCORRECT, message)
    answer = resume(path07, names=("model_fp64", "optimizer_fp64"), convert=torch.float64)
    expect(lesson07.q1, answer, INCORRECT, message)


def test_l06_a_dcp_folder_of_ones_own_is_not_the_set_ups(tmp_path):
    checkpoint_dir, _converted = lesson06_checkpoint(tmp_path)
    from lesson_utils.dist_demo import make_model

    model = make_model()  # the student's own DCP save, with an expected.pt beside it, converted
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(4, 32)).sum().backward()
    optimizer.step()
    mine = checkpoint_dir.parent / "mine"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one process
        dcp.save(dict(zip(("model", "optimizer"), get_state_dict(model, optimizer), strict=True)), checkpoint_id=mine)
    torch.save(model.state_dict(), mine / "expected.pt")
    dcp_to_torch_save(mine, mine.parent / "mine.pt")
    names = {"checkpoint_dir": mine, "single_path": mine.parent / "mine.pt"}
    expect(lesson06.q2, names, INCORRECT, "`checkpoint_dir` does not hold the set-up's checkpoint")
    (checkpoint_dir / "expected.pt").unlink()  # the set-up's own folder needs no reference file of its own
    dcp_to_torch_save(checkpoint_dir, checkpoint_dir.parent / "single.pt")
    expect(lesson06.q2, {"checkpoint_dir": checkpoint_dir, "single_path": checkpoint_dir.parent / "single.pt"}, CORRECT)


# a fresh head, new cases --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")
def test_l04_a_head_that_carries_the_old_one_is_refused_in_new_ways():
    source = lesson04_source()
    old_weight, old_bias = source["fc3.weight"], source["fc3.bias"]
    torch.manual_seed(7)
    fresh = nn.Linear(84, 4)
    weight, bias = fresh.weight.detach(), fresh.bias.detach()

    def warm(new_weight=None, new_bias=None):
        return lesson04_warm(
            source, weight if new_weight is None else new_weight, bias if new_bias is None else new_bias
        )

    wrong = [
        (warm(0.5 * old_weight[:4] + 0.5 * weight), "was computed from the source's head: 6"),  # half old, half new
        (warm(-old_weight[5:9]), "100% of it lies in the span of the old rows"),
        (warm(old_weight[0:8:2] + old_weight[1:8:2]), "100% of it lies in the span"),
        (warm(torch.roll(old_weight[:4], 3, dims=1)), "shares 336 values with the source's 10-class head"),
        (warm((old_weight[:4] * 100).round() / 100), "lies in the span"),  # rounded copies
        (warm(old_weight[:4] ** 2 * 9), "entry by entry"),
        (warm(new_bias=old_bias[[1, 4, 6, 8]] + 1e-4 * torch.randn(4)), "every entry of fc3.bias lies within 0.0003"),
        (warm(new_bias=old_bias[[3, 3, 3, 3]]), "fc3.bias takes entries [0, 1, 2, 3] from the source's"),
        (warm(new_bias=torch.full((4,), 0.01)), "every value of fc3.bias is 0.01"),
        (warm(nn.init.xavier_uniform_(torch.empty(4, 84))), "holds values up to"),
    ]
    for answer, message in wrong:
        result = expect(lesson04.q1, answer, INCORRECT, message)
        assert "Net(num_classes=4)" in result.message
    # right, if unusual: drawn again by another honest rule within the initialisation's range
    expect(lesson04.q1, warm(), CORRECT)
    expect(lesson04.q1, warm(torch.randn(4, 84) * 0.01, torch.zeros(4).uniform_(-0.05, 0.05)), CORRECT)
    expect(lesson04.q1, warm(nn.init.orthogonal_(torch.empty(4, 84)) * 0.1), CORRECT)


def test_l04_q3_stripping_ddp_state_in_place_is_right_and_the_message_says_what_happened():
    """04-W12: the question asks for `clean_state` only; stripping `ddp_state` in place and naming the result
    `clean_state` gives that. Right, and the message says `ddp_state` changed too."""
    from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

    seed_everything(0)
    ddp_state = nn.DataParallel(Net(), device_ids=[]).state_dict()
    consume_prefix_in_state_dict_if_present(ddp_state, "module.")
    clean_state = ddp_state
    result = expect(lesson04.q3, {"clean_state": clean_state, "ddp_state": ddp_state}, CORRECT)
    assert "`ddp_state` itself was renamed in place" in result.message
    result = expect(lesson04.q3, {"clean_state": dict(ddp_state), "ddp_state": ddp_state}, CORRECT)
    assert "in place" not in result.message
    assert "on a copy, if you want to keep ddp_state as it is" in lesson04.q3._hint


# a lean load, new cases ------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")
def test_l05_a_lean_load_of_another_file_or_moved_after_is_refused(tmp_path):
    seed_everything(0)
    weights = tmp_path / "net.pt"
    torch.save(Net().state_dict(), weights)

    def lean(path=weights, after=None):
        with torch.device("meta"):
            model = Net()
        model.load_state_dict(torch.load(path, mmap=True, weights_only=True), assign=True)
        if after:
            after(model)
        return {"model": model, "weights_path": weights}

    shutil.copy(weights, tmp_path / "copy.pt")
    result = expect(lesson05.q1, lean(tmp_path / "copy.pt"), INCORRECT, "is mapped from")
    assert "copy.pt, another file than `weights_path`" in result.message
    save_file(torch.load(weights, weights_only=True), tmp_path / "net.safetensors")
    with torch.device("meta"):
        model = Net()
    model.load_state_dict(load_file(tmp_path / "net.safetensors"), assign=True)  # lean, but from another file
    expect(lesson05.q1, {"model": model, "weights_path": weights}, INCORRECT, "net.safetensors, another file")
    moved = expect(lesson05.q1, lean(after=lambda m: m.double().float()), INCORRECT, "lie in this process's own")
    assert "or something moved them after it (.to(), .share_memory()" in moved.message
    stepped = lean()
    optimizer = torch.optim.SGD(stepped["model"].parameters(), lr=0.0)  # a step of size 0 still writes every page
    stepped["model"](torch.zeros(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    expect(lesson05.q1, stepped, INCORRECT, "are private copies now")
    # right, if unusual: a hard link or a symbolic link to the file, a shared map, no-op conversions
    os.link(weights, tmp_path / "hard.pt")
    expect(lesson05.q1, lean(tmp_path / "hard.pt"), CORRECT)
    (tmp_path / "link.pt").symlink_to(weights)
    expect(lesson05.q1, lean(tmp_path / "link.pt"), CORRECT)
    expect(lesson05.q1, lean(after=lambda m: m.float().cpu().requires_grad_(False)), CORRECT)
    torch.serialization.set_default_mmap_options(mmap.MAP_SHARED)
    try:
        expect(lesson05.q1, lean(), CORRECT)
    finally:
        torch.serialization.set_default_mmap_options(mmap.MAP_PRIVATE)


# DCP answers by value, new cases ------------------------------------------------------------------------------


def test_l06_a_converted_file_is_compared_by_value_and_named_by_its_fault(tmp_path):
    checkpoint_dir, converted = lesson06_checkpoint(tmp_path)
    single = checkpoint_dir.parent / "single.pt"
    names = {"checkpoint_dir": checkpoint_dir, "single_path": single}

    def saved(change):
        copied = copy.deepcopy(converted)
        change(copied)
        torch.save(copied, single)

    saved(
        lambda c: c["optimizer"]["state"]["0.weight"].update(
            exp_avg=c["optimizer"]["state"]["0.weight"]["exp_avg"].half()
        )
    )
    expect(lesson06.q2, names, INCORRECT, "['exp_avg'] is torch.float16 in the file but torch.float32 in the DCP")
    saved(lambda c: c["optimizer"]["state"]["2.bias"].update(step=torch.tensor(4.0)))  # a step more
    expect(lesson06.q2, names, INCORRECT, "optimizer['state']['2.bias']['step'] in the file holds other values")
    saved(lambda c: c["optimizer"]["param_groups"][0].update(weight_decay=0.0))
    expect(lesson06.q2, names, INCORRECT, "optimizer['param_groups'][0]['weight_decay']")
    from lesson_utils.dist_demo import make_model

    model = make_model()  # loaded into a model and an optimizer, then saved with their own state_dicts
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(state, checkpoint_id=checkpoint_dir)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, single)
    result = expect(lesson06.q2, names, INCORRECT, "the file's optimizer state is keyed by numbers ([0, 1, 2")
    assert "keys it by parameter name (['0.weight'" in result.message
    # right, if unusual: the same, saved with get_state_dict (keyed by name), as DCP does
    torch.save(dict(zip(("model", "optimizer"), get_state_dict(model, optimizer), strict=True)), single)
    expect(lesson06.q2, names, CORRECT)


# several models in one file, new cases ----------------------------------------------------------------------------


def test_l07_q2_entries_are_matched_by_place_and_by_pairs_when_names_say_nothing(tmp_path):
    gan = lesson07_gan(tmp_path)
    workdir = workdir_in(tmp_path, "07")
    path = workdir / "gan.pt"
    names = {"gan_path": path, "gan": gan, "workdir": workdir}
    s = {name: part.state_dict() for name, part in gan.items()}
    wrong = {
        "pairs of (model, optimizer), optimizers swapped": (
            ((s["generator"], s["opt_d"]), (s["discriminator"], s["opt_g"])),
            "the entry [0][1] sits beside generator's weights ([0][0]) but holds opt_d's state",
        ),
        "names that say nothing, models swapped": (
            {"a": s["discriminator"], "b": s["generator"], "c": s["opt_g"], "d": s["opt_d"]},
            "the entry 'a' is, by its place (names that say nothing: gan's order, generator first), for generator",
        ),
        "pairs under neutral names, optimizers swapped": (
            {
                "first": {"weights": s["generator"], "opt": s["opt_d"]},
                "second": {"weights": s["discriminator"], "opt": s["opt_g"]},
            },
            "sits beside generator's weights (['first']['weights'])",
        ),  # fmt: skip
        "one list, discriminator first": (
            [s["discriminator"], s["generator"], s["opt_d"], s["opt_g"]],
            "the entry [0] is, by its place",
        ),
        "the generator saved twice": (
            {"G": s["generator"], "D": s["generator"], "oG": s["opt_g"], "oD": s["opt_d"]},
            "the entry 'D' is named for discriminator but holds generator's state",
        ),
    }
    for what, (layout, message) in wrong.items():
        torch.save(layout, path)
        assert message in lesson07.q2.evaluate(names).message, (what, lesson07.q2.evaluate(names))
    right = {
        "names that say nothing, in gan's order": {"a": s["generator"], "b": s["discriminator"], "c": s["opt_g"],
                                                   "d": s["opt_d"]},
        "pairs of (model, optimizer)": ((s["generator"], s["opt_g"]), (s["discriminator"], s["opt_d"])),
        "pairs under neutral names": {"first": {"weights": s["generator"], "opt": s["opt_g"]},
                                      "second": {"weights": s["discriminator"], "opt": s["opt_d"]}},
        "a step count beside": {**s, "step": 3},
    }  # fmt: skip
    for what, layout in right.items():
        torch.save(layout, path)
        assert lesson07.q2.evaluate(names).status == CORRECT, (what, lesson07.q2.evaluate(names))


def test_l07_q2_gan_must_be_trained_by_train_steps(tmp_path):
    """07-C3: step counts and moments written into the optimizers by hand, nothing trained; and other training."""
    path, gan, train_steps = lesson07_setup(tmp_path)
    names = {"gan_path": path.with_name("gan.pt"), "gan": gan, "workdir": path.parent}
    for name in ("opt_g", "opt_d"):
        optimizer = gan[name]
        for group in optimizer.param_groups:
            for p in group["params"]:
                optimizer.state[p] = {"step": torch.tensor(3.0), "exp_avg": torch.zeros_like(p),
                                      "exp_avg_sq": torch.zeros_like(p)}  # fmt: skip
    torch.save({name: part.state_dict() for name, part in gan.items()}, names["gan_path"])
    result = expect(lesson07.q2, names, INCORRECT, "`gan` is not what train_steps makes of the set-up's gan")
    assert "its optimizers say 3 steps, but generator differs" in result.message
    path, gan, train_steps = lesson07_setup(tmp_path)
    for _step in range(3):  # three steps of a training loop of one's own
        loss = gan["discriminator"](gan["generator"](torch.randn(16, 8))).mean()
        for name in ("opt_g", "opt_d"):
            gan[name].zero_grad()
        loss.backward()
        for name in ("opt_g", "opt_d"):
            gan[name].step()
    torch.save({name: part.state_dict() for name, part in gan.items()}, names["gan_path"])
    expect(lesson07.q2, {**names, "gan": gan}, INCORRECT, "`gan` is not what train_steps makes")
    # right: the answer cell run twice (6 steps in two calls), or train_steps(gan, 6) at once
    for calls in ([3, 3], [6]):
        path, gan, train_steps = lesson07_setup(tmp_path)
        for steps in calls:
            train_steps(gan, steps)
        torch.save({name: part.state_dict() for name, part in gan.items()}, names["gan_path"])
        expect(lesson07.q2, {**names, "gan": gan}, CORRECT, "after 6 steps")


# a folder the question asks to make ------------------------------------------------------------------------------


def test_l08_share_dir_is_a_new_folder_in_workdir(tmp_path, monkeypatch):
    from huggingface_hub import save_torch_state_dict

    workdir = workdir_in(tmp_path, "08")
    torch.save({"weights": 1}, workdir / "run.pt")  # the set-up's files
    torch.manual_seed(0)
    model = lesson08._tiny_lm()
    save_torch_state_dict(model.state_dict(), workdir, max_shard_size="200KB")  # 08-W8: workdir itself
    expect(lesson08.q1, {"share_dir": workdir, "model": model, "workdir": workdir}, INCORRECT, "is `workdir` itself")
    mixed = workdir / "mixed"
    mixed.mkdir()
    shutil.copy(workdir / "run.pt", mixed / "run.pt")
    save_torch_state_dict(model.state_dict(), mixed, max_shard_size="200KB")
    expect(lesson08.q1, {"share_dir": mixed, "model": model, "workdir": workdir}, INCORRECT, "also holds ['run.pt']")
    notebook = tmp_path / "notebook"
    (notebook / "tiny-lm").mkdir(parents=True)
    monkeypatch.chdir(notebook)
    save_torch_state_dict(model.state_dict(), "tiny-lm", max_shard_size="200KB")
    names = {"share_dir": "tiny-lm", "model": model, "workdir": workdir}
    expect(lesson08.q1, names, INCORRECT, "`share_dir` is the relative path tiny-lm")
    # right, if unusual: the model deleted after sharing it (`del model`): the folder is judged on its own
    own = workdir / "tiny-lm"
    own.mkdir()
    save_torch_state_dict(model.state_dict(), own, max_shard_size="200KB")
    expect(lesson08.q1, {"share_dir": own, "model": None, "workdir": workdir}, CORRECT)
    expect(lesson08.q1, {"share_dir": own, "model": model, "workdir": workdir}, CORRECT)


def test_l09_q1_the_state_is_the_set_ups_loaders_own(tmp_path):
    """09-C3: a loader of one's own took the 4 batches, `loader` never moved."""
    workdir = workdir_in(tmp_path, "09")
    loader, spare = lesson09.make_loader(), lesson09.make_loader()
    for taken, _batch in enumerate(spare, start=1):
        if taken == 4:
            break
    torch.save({"loader_state_dict": spare.state_dict()}, workdir / "loader.pt")
    names = {"loader_state_path": workdir / "loader.pt", "workdir": workdir, "loader": loader}
    result = expect(lesson09.q1, names, INCORRECT, "the set-up's `loader` itself has not given a batch yet")
    assert "take the 4 batches from `loader`, not from a loader of your own" in result.message
    for taken, _batch in enumerate(loader, start=1):
        if taken == 5:  # one batch too many, after the save
            break
    expect(lesson09.q1, names, INCORRECT, "the set-up's `loader` itself stands elsewhere")
    expect(lesson09.q1, {**names, "loader": spare}, CORRECT)  # its own state
    expect(lesson09.q1, {**names, "loader": spare.state_dict()}, CORRECT)  # the loader handed over as its state
    expect(lesson09.q1, {**names, "loader": loader.state_dict()}, INCORRECT, "itself stands elsewhere")
    expect(lesson09.q1, {**names, "loader": None}, CORRECT)  # `del loader` after saving: the file is judged
