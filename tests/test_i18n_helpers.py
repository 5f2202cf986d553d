"""The helpers of ``lesson_utils`` (domain ``lesson_utils``) speak Chinese after ``set_language("zh_CN")``.

Two kinds of tests:

- with the language set to Chinese, a few representative messages of each helper (checkpoint
  errors, the dataset notice, the environment report, the explorer, the warm-start report, the
  VGG16 notice, child-process errors) come out in Chinese, with their values filled in, while
  the data that code reads (the report's dict, ``TransferReport.rows()``) stays English;
- an AST scan of the helper modules fails when a message a student sees (an exception, a
  printed line, a plot label, a widget label) is still a bare string or f-string, when ``_()``
  gets anything but one string literal, or when a function rebinds ``_`` (which would turn
  its ``_()`` calls into an ``UnboundLocalError`` or a call of the wrong object).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from lesson_utils import Net, set_language
from lesson_utils.i18n import language

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lesson_utils"
# The modules of this domain: every module of lesson_utils but the checkers' (domain "exercises"),
# the teachers' grader and sandbox, the benchmark, and i18n itself.
NOT_HERE = {"bench.py", "i18n.py"}
HELPERS = sorted(
    path
    for path in PACKAGE.rglob("*.py")
    if path.name not in NOT_HERE and not {"exercises", "classroom"} & set(path.parts)
)
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def chinese():
    set_language("zh_CN")
    yield
    set_language("en")  # the other tests compare English text


def is_chinese(text: str) -> bool:
    return bool(CJK.search(text))


# --- Chinese messages, their values filled in ------------------------------------------------


def test_the_checkpoint_errors_a_student_meets_are_chinese(chinese, tmp_path):
    from lesson_utils.checkpoint import (
        CheckpointNotFoundError,
        CorruptCheckpointError,
        IncompleteCheckpointError,
        NotACheckpointError,
        latest_checkpoint,
        load_checkpoint,
        save_checkpoint,
    )

    with pytest.raises(CheckpointNotFoundError) as missing:
        load_checkpoint(tmp_path / "nope.pt")
    assert str(missing.value) == f"{tmp_path / 'nope.pt'} 处没有断点：这个文件不存在。请检查路径和文件夹。"

    with pytest.raises(CheckpointNotFoundError, match="断点文件夹 .*typo 不存在"):
        latest_checkpoint(tmp_path / "typo")

    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match=r"empty\.pt 是空文件（0 字节）.*latest_valid_checkpoint"):
        load_checkpoint(tmp_path / "empty.pt")

    (tmp_path / "notes.pt").write_bytes(b"epoch 3")
    with pytest.raises(NotACheckpointError, match=r"它以 b'epoc' 开头，而 zip 归档应以 b'PK\\x03\\x04' 开头"):
        load_checkpoint(tmp_path / "notes.pt")

    torch.save(Net().state_dict(), tmp_path / "bare.pt")
    with pytest.raises(IncompleteCheckpointError) as bare:
        load_checkpoint(tmp_path / "bare.pt", required=["epoch"])
    assert "缺少 'epoch'；它里面有 ['conv1.weight'," in str(bare.value)
    assert "它看起来只是一个 state_dict" in str(bare.value)

    hashed = save_checkpoint(tmp_path / "hashed.pt", {"w": torch.ones(1000), "epoch": 1})
    data = bytearray(hashed.read_bytes())
    start = data.index(torch.ones(1000).numpy().tobytes())  # the tensor's bytes in the file
    data[start : start + 8] = b"\xff" * 8
    hashed.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="已损坏：以下内容与保存时记录的内容哈希不再一致：/w。"):
        load_checkpoint(hashed)


def test_save_checkpoint_refuses_a_numpy_number_in_chinese(chinese, tmp_path):
    from lesson_utils.checkpoint import save_checkpoint

    with pytest.raises(TypeError) as refused:
        save_checkpoint(tmp_path / "refused.pt", {"loss": np.float64(0.25)})
    assert str(refused.value).startswith("checkpoint['loss'] 是 numpy.float64，torch.load(weights_only=True)")
    assert "loss.item()" in str(refused.value)


def test_the_cifar10_notice_is_chinese_and_keeps_the_phrase_lesson_00_checks(chinese, monkeypatch, tmp_path):
    from lesson_utils.data import load_datasets

    monkeypatch.setenv("LESSON_DATA", "cifar10")
    monkeypatch.setenv("LESSON_CIFAR10_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        load_datasets()
    message = str(error.value)
    assert is_chinese(message) and str(tmp_path) in message and "LESSON_CIFAR10_DIR" in message
    assert "expected cifar-10-batches-py/ there" in message  # the Chinese lesson 00 asserts it, in English


def test_env_report_prints_chinese_labels_aligned_and_returns_english_data(chinese, capsys, monkeypatch, tmp_path):
    from lesson_utils.env import env_report
    from lesson_utils.i18n import display_width

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("LESSON_CIFAR10_DIR", str(tmp_path))
    report = env_report()
    assert report["CIFAR-10"] == "not found (used only with LESSON_DATA=cifar10)"  # data for code: English
    lines = capsys.readouterr().out.splitlines()
    assert "CIFAR-10             未找到（仅在 LESSON_DATA=cifar10 时使用）" in lines
    assert any(line.startswith("ImageNet VGG16 权重  未找到") for line in lines)
    assert any(line.startswith("设备") and line.endswith(report["device"]) for line in lines)
    assert re.search(r"^lesson-utils +\S+$", "\n".join(lines), re.MULTILINE)
    value_columns = {display_width(line[: re.search(r" {2,}(?=\S)", line).end()]) for line in lines}
    assert len(value_columns) == 1, f"the values should start in one column: {lines}"


def test_the_state_dict_explorer_speaks_chinese(chinese):
    from lesson_utils.explore import describe_entry, state_dict_explorer, summary_html

    state = {"w": torch.arange(6000.0)}
    assert summary_html(describe_entry(state, "w")) == (
        "<b>w</b>：形状 (6000,)，float32，6,000 个值，24,000 字节；均值 3000，标准差 1732，最小值 0，最大值 5999"
    )
    with pytest.raises(KeyError, match="'b' 不在这个 state_dict 里；它的键是 \\['w'\\]"):
        describe_entry(state, "b")
    assert state_dict_explorer(state).children[0].description == "键"
    with pytest.raises(ValueError, match="这个 state_dict 是空的"):
        state_dict_explorer({})


def test_the_warm_start_report_prints_chinese_and_its_rows_stay_english(chinese):
    from lesson_utils.transfer import load_matching_weights

    report = load_matching_weights(Net(num_classes=4), {"module." + k: v for k, v in Net().state_dict().items()})
    lines = str(report).splitlines()
    assert lines[0] == "键            结果            说明"
    assert "fc3.weight    跳过：形状不符  文件中 [10, 84]，模型中 [4, 84]" in lines
    assert "conv1.weight  已加载" in lines
    assert lines[-1] == "（文件里的每个键都以 'module.' 开头，已先去掉这个前缀）"
    assert ("fc3.bias", "skipped: shape", "file [10] vs model [4]") in report.rows()  # data: English
    assert "警告：什么都没有加载" in str(load_matching_weights(nn.Linear(2, 2), {"x": torch.ones(1)}))
    with pytest.raises(TypeError, match="收到的却是 str。你传入的是路径吗？"):
        load_matching_weights(Net(), "weights.pt")


def test_the_vgg16_notice_is_chinese(chinese, capsys, monkeypatch):
    import torchvision

    from lesson_utils.models import vgg16

    monkeypatch.delenv("LESSON_PRETRAINED", raising=False)
    monkeypatch.setattr(torchvision.models, "vgg16", lambda weights=None: nn.Identity())  # no 138M-parameter build
    vgg16()
    notice = "vgg16：随机权重（离线时的默认设置；设 LESSON_PRETRAINED=1 则使用已缓存的 ImageNet 权重）\n"
    assert capsys.readouterr().out == notice


def test_child_process_errors_are_chinese(chinese, monkeypatch):
    from lesson_utils.memory import load_way
    from lesson_utils.processes import RESULT_DIR_ENV, run, write_result

    with pytest.raises(ValueError, match="未知的加载方式 'fast'；应当是 \\['raw read'"):
        load_way("fast", "vgg.pt")
    monkeypatch.delenv(RESULT_DIR_ENV, raising=False)
    with pytest.raises(RuntimeError, match="没有设置 LESSON_RESULT_DIR：请用 lesson_utils.processes.run 启动这个进程"):
        write_result(1)
    with pytest.raises(TimeoutError, match="sleep 运行超过了 0.2 秒"):
        run(["sleep", "5"], timeout=0.2)


def test_a_lesson_06_worker_speaks_the_notebooks_language(chinese, tmp_path):
    from lesson_utils import dist_demo

    with pytest.raises(FileNotFoundError, match="里没有 DCP 断点：dcp.save 会在那里写一个 .metadata 文件"):
        dist_demo.load(tmp_path)
    # A worker is a new process: it learns the language from LESSON_LANGUAGE, which set_language sets.
    assert os.environ["LESSON_LANGUAGE"] == "zh_CN"
    code = "from lesson_utils.i18n import _; print(_('the loaded parameters differ from the saved ones'))"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert child.stdout == "加载的参数与保存的参数不一致\n"


def test_english_again_after_the_fixture():
    from lesson_utils.transfer import TransferReport

    assert language() == "en" and str(TransferReport()).startswith("nothing to report")


def test_the_catalog_of_this_domain_is_complete_and_compiled():
    spec = importlib.util.spec_from_file_location("translations", ROOT / "scripts" / "translations.py")
    translations = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(translations)
    assert translations.problems("zh_CN", ("lesson_utils",)) == []


# --- every message a student sees goes through _() ---------------------------------------------

# Deliberately English: not for students, or Python's own wording.
ENGLISH_ON_PURPOSE = {
    ("__init__.py", "module 'lesson_utils' has no attribute"),  # what Python itself says for a missing attribute
    ("memory.py", "usage: python -m lesson_utils.memory --child"),  # the measuring child's command line
}
SHOWN_KEYWORDS = {"description", "desc", "label", "title", "xlabel", "ylabel", "placeholder", "tooltip"}
SHOWN_METHODS = {"set_xlabel", "set_ylabel", "set_title", "suptitle", "set_description"}


def bare_text(node: ast.AST) -> str | None:
    """The English words of a string literal or f-string that no ``_()`` wraps, or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if re.search(r"[A-Za-z]{2}", node.value) else None
    if isinstance(node, ast.JoinedStr):
        words = "".join(part.value for part in node.values if isinstance(part, ast.Constant))
        return words if re.search(r"[A-Za-z]{2}", words) else None
    if isinstance(node, ast.BinOp):
        return bare_text(node.left) or bare_text(node.right)
    if isinstance(node, ast.IfExp):
        return bare_text(node.body) or bare_text(node.orelse)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return bare_text(node.func.value)  # "English {x}".format(x=...) is formatted, never translated
    return None


def shown_text(tree: ast.Module) -> list[tuple[int, ast.AST]]:
    """(line, expression) for everything a student may read: exception messages, printed
    values, plot labels and titles, widget labels."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            found += [(node.lineno, arg) for arg in node.exc.args[:1]]
        elif isinstance(node, ast.Assert) and node.msg is not None:
            found.append((node.lineno, node.msg))
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("print", "warn") or name in SHOWN_METHODS:
                found += [(node.lineno, arg) for arg in node.args]
            found += [(node.lineno, kw.value) for kw in node.keywords if kw.arg in SHOWN_KEYWORDS]
    return found


@pytest.mark.parametrize("path", HELPERS, ids=lambda path: path.name)
def test_every_message_a_student_sees_is_marked_for_translation(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bare = []
    for line, node in shown_text(tree):
        text = bare_text(node)
        if text and not any(path.name == name and text.startswith(start) for name, start in ENGLISH_ON_PURPOSE):
            bare.append(f"{path.name}:{line}: {text!r}")
    assert not bare, "wrap these in _() (with named {placeholders}, never an f-string):\n" + "\n".join(bare)


def bound_names(scope: ast.AST) -> set[str]:
    """The names ``scope`` (a module or function) assigns itself, not in nested functions or comprehensions.

    Imports are left out: ``from lesson_utils.i18n import _`` inside a function is the real ``_``.
    """
    names: set[str] = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        arguments = scope.args
        every = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
        names |= {arg.arg for arg in every + [arguments.vararg, arguments.kwarg] if arg}
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        todo.extend(ast.iter_child_nodes(node))
    return names


def scope_is_function(scope: ast.AST) -> bool:
    return isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef))


@pytest.mark.parametrize("path", HELPERS, ids=lambda path: path.name)
def test_no_function_rebinds_the_gettext_underscore(path):
    """``output, _ = process.communicate()`` makes ``_`` local to the whole function: a later
    ``_("...")`` in it then fails (UnboundLocalError) or calls a string."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    scopes = [tree] + [node for node in ast.walk(tree) if scope_is_function(node)]
    wrong = [
        f"{path.name}:{getattr(scope, 'lineno', 0)}: {getattr(scope, 'name', 'the module')} binds _"
        for scope in scopes
        if "_" in bound_names(scope)
    ]
    assert not wrong, "use another name (e.g. _step, or index [0]):\n" + "\n".join(wrong)
