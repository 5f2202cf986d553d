"""The checkers' feedback in Simplified Chinese (domain ``exercises``), and a guard that every
student-facing text in ``lesson_utils/exercises/`` is marked for translation."""

import ast
import gettext
import importlib
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import lesson_utils.exercises as exercises_package
from lesson_utils import Net, seed_everything
from lesson_utils.classroom.grade_probe import fresh_questions
from lesson_utils.exercises import lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07
from lesson_utils.exercises.core import CORRECT, INCORRECT, NOT_ATTEMPTED, Incorrect, require_file, require_same_tensors
from lesson_utils.i18n import LOCALE_DIR, language, set_language

FOLDER = Path(exercises_package.__file__).parent
CHECKED = ["__init__.py", "core.py", "initialisation.py"] + sorted(p.name for p in FOLDER.glob("lesson[0-9][0-9].py"))
CHINESE = re.compile(r"[\u4e00-\u9fff]")
LESSONS = [lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07] + [
    importlib.import_module(f"lesson_utils.exercises.{p.stem}") for p in sorted(FOLDER.glob("lesson[0-9][0-9].py"))[7:]
]


@pytest.fixture
def zh():
    set_language("zh_CN")
    yield
    set_language("en")


@pytest.fixture
def net():
    seed_everything(0)
    return Net()


def chinese(text: str) -> bool:
    return bool(CHINESE.search(text))


# the Chinese messages ------------------------------------------------------------------------


def test_every_exercises_message_has_a_chinese_translation():
    with open(LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "exercises.mo", "rb") as handle:
        catalog = {k: v for k, v in gettext.GNUTranslations(handle)._catalog.items() if k}
    code_only = {"mmap=True"}  # an option that is code in both languages
    formats_only = {"{question}: {status}", "{question}: {status}: {message}", "{message}. {reason}"}
    assert len(catalog) > 200
    for english, translated in catalog.items():
        if english in code_only:
            assert translated == english
        elif english in formats_only:  # full-width punctuation only
            assert translated != english and re.search(r"[：。]", translated), (english, translated)
        else:
            assert chinese(translated), (english, translated)


def test_state_dict_comparison_in_chinese(zh):
    with pytest.raises(Incorrect) as wrong:
        require_same_tensors({"w": torch.ones(1).double()}, {"w": torch.ones(1)})
    assert str(wrong.value) == (
        "w 在你的答案中是 torch.float64，在net 的 state_dict中却是 torch.float32："
        "不要转换它（不要用 .double()、.half() 或 .to(dtype)）"
    )
    with pytest.raises(Incorrect) as wrong:
        require_same_tensors({"v": torch.ones(1)}, {"w": torch.ones(1)}, what="`model`")
    assert "`model`缺少这些键：['w']" in str(wrong.value) and "多出这些键：['v']" in str(wrong.value)
    with pytest.raises(Incorrect) as wrong:
        require_same_tensors({f"k{i}": torch.ones(1) for i in range(9)}, {})
    assert "...（共 9 个）]" in str(wrong.value)
    with pytest.raises(Incorrect) as wrong:
        require_same_tensors({"a": torch.ones(1), "b": torch.ones(1)}, {"a": torch.zeros(1), "b": torch.zeros(1)})
    assert (
        str(wrong.value) == "你的答案中的 a（还有另外 1 个）与net 的 state_dict不同：请直接保存 net.state_dict() 本身"
    )
    with pytest.raises(Incorrect, match=r"^`weights_path` 应该是路径（str 或 Path），而不是 dict 对象$"):
        require_file({"w": 1}, "weights_path", "save it")


def test_lesson01_in_chinese(zh, net, tmp_path):
    workdir = tmp_path / "exercises01-zh"
    workdir.mkdir()
    path = workdir / "w.pt"
    result = lesson01.q1.evaluate({"net": net, "weights_path": tmp_path / "nope.pt"})
    assert result.status == INCORRECT
    assert (
        result.message
        == f"{tmp_path / 'nope.pt'} 处没有文件：请用 torch.save(net.state_dict(), weights_path) 写出这个文件"
    )
    assert str(result).startswith("lesson01.q1：不正确：")
    torch.save({"conv1.weight": net.conv1.weight}, path)
    message = lesson01.q1.evaluate({"net": net, "weights_path": path, "workdir": workdir}).message
    assert message.startswith("键与net 的 state_dict不一致。文件缺少这些键：['conv1.bias', ")
    torch.save(net.state_dict(), path)
    result = lesson01.q1.evaluate({"net": net, "weights_path": path, "workdir": workdir})
    assert (result.status, result.message) == (CORRECT, f"文件里有 net 的全部 {len(net.state_dict())} 个张量，逐位一致")
    model = nn.Linear(2, 2)
    message = lesson01.q2.evaluate({"model": model, "weights_path": path, "net": net}).message
    assert message.startswith("`model` 应该是 Net（和第 2 题里一样），而不是 Linear：")
    message = lesson01.q2.evaluate({"model": Net().train(), "weights_path": path, "net": net}).message
    assert "`weights_path` 处的文件" in message and "model.load_state_dict(torch.load(" in message


def test_multiple_choice_in_chinese(zh):
    assert str(lesson01.q3.evaluate({"q3_answer": "b"})) == "lesson01.q3：正确：b) 参数和缓冲区"
    assert lesson01.q3.evaluate({"q3_answer": "a"}).message.startswith("BatchNorm 的 running_mean 和 running_var 也在")
    assert lesson05.q3.evaluate({"q3_answer": "c"}).message == "CRC32 能发现损坏（前提是有人去校验）；它什么也修复不了"
    assert lesson06.q1.evaluate({"q1_answer": "x"}).message.startswith("请用 ['a', 'b', 'c'] 中的一个字母作答")


def test_hints_and_the_none_message_in_chinese(zh, capsys):
    lesson04.q1.hint()
    assert capsys.readouterr().out == (
        "lesson04.q1 的提示：只用 strict=False 仍会因 fc3 尺寸不匹配而报错："
        "先按形状筛选（或者用 load_matching_weights）。\n"
    )
    lesson07.q2.hint()  # braces in a hint are not placeholders
    assert "{name: part.state_dict() for name, part in gan.items()}" in capsys.readouterr().out
    result = lesson04.q3.evaluate({"ddp_state": {}, "clean_state": None})
    assert result.status == NOT_ATTEMPTED
    assert result.message.startswith(
        "请给 `clean_state` 赋值（现在还是 None），再运行一次 check()。如果你写的是 `clean_state = "
    )


def test_optimizer_messages_in_chinese(zh, net):
    result = lesson03.q2.evaluate({"model": Net(), "optimizer": {}, "checkpoint_path": "x", "net": Net()})
    assert result.message == "`optimizer` 应该是 torch.optim 的优化器，而不是 dict 对象（是 state_dict 吗？）"
    other = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    message = lesson03.q2.evaluate({"model": Net(), "optimizer": other, "checkpoint_path": "x", "net": Net()}).message
    assert message.startswith("`optimizer` 更新的并不正好是 `model` 的参数：请用 model.parameters() 创建它")
    assert message.endswith("。在另一个模型的参数上创建优化器，正是原课程里的那个 bug")
    message = lesson07.q1.evaluate(
        {"model_fp64": net, "optimizer_fp64": other, "checkpoint_path": "x", "trained": Net()}
    ).message
    assert message.startswith("`optimizer_fp64` 更新的并不正好是 `model_fp64` 的参数")


def test_a_broken_checker_and_a_state_dict_key_in_chinese(zh, net, tmp_path):
    class Strange(dict):
        def keys(self):
            raise AttributeError("no keys here")

    result = lesson04.q3.evaluate({"ddp_state": {"module.w": torch.ones(1)}, "clean_state": Strange()})
    assert result.message == "检查你的答案时出现了 AttributeError：no keys here"
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    message = lesson05.q1.evaluate({"model": net, "weights_path": path}).message
    assert message == f"{path} 不是 torch.save 写出的文件（文件是空的）：请重新运行准备单元格：这个文件是它写出的"


def test_the_graders_fresh_copies_speak_chinese_too(zh):
    """grade_probe builds core and each lessonNN again from their source text: their `_` is i18n's."""
    i18n_file = FOLDER.parent / "i18n.py"
    sources = {
        "i18n": i18n_file.read_text(encoding="utf-8"),
        "i18n_file": str(i18n_file),
        "core": (FOLDER / "core.py").read_text(encoding="utf-8"),
    }
    for module in LESSONS:
        name = module.__name__.rsplit(".", 1)[1]
        sources["lesson"] = Path(module.__file__).read_text(encoding="utf-8")
        questions = fresh_questions(sources, name)
        assert [q.qid for q in questions] == [f"{name}.q{i}" for i in range(1, len(questions) + 1)]
        for question in questions:
            result = question.evaluate({n: 12345 for n in question.names})  # wrong everywhere: an int
            assert result.status == INCORRECT and chinese(str(result)), result


def test_english_is_back_after_chinese(zh):
    assert language() == "zh_CN"
    set_language("en")
    assert str(lesson01.q3.evaluate({"q3_answer": "b"})) == "lesson01.q3: CORRECT: b) the parameters and the buffers"
    set_language("zh_CN")


# every student-facing text is marked ---------------------------------------------------------

FRAGMENTS = {  # helper: {positional index or keyword: the text spliced into its messages}
    "require_same_tensors": {2: "owner", 3: "advice", "owner": "owner", "advice": "advice", "what": "what"},
    "require_file": {2: "how", "how": "how"},
    "load_weights_only": {2: "how", "how": "how"},
    "require_net": {2: "origin", "origin": "origin"},
    "require_optimizer_for": {4: "bug", "bug": "bug"},
    "_checkpoint": {1: "how", "how": "how"},  # lesson03's
}
# A name as it is in code, e.g. "`model`" or "source_state": the same in every language, not translated.
CODE_ONLY = re.compile(r"^(`[\w.]+`|\w*[_.][\w.]*)$")


def _is_call_to(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def _is_marked(node: ast.AST, name: str = "_") -> bool:
    """``_("literal")`` (or ``N_``), with one plain string literal inside: no f-string, no concatenation."""
    return (
        _is_call_to(node, name)
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def _built(node: ast.AST) -> bool:
    """A text put together in code (f-string, ``+``, ``%``, ``.format``): gettext would never find it."""
    formatted = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
    return isinstance(node, (ast.JoinedStr, ast.BinOp)) or formatted


def _wordless(node: ast.AST) -> bool:
    """An f-string with no words of its own, e.g. ``f"{letter}) {_(text)}"``: nothing in it to translate."""
    return isinstance(node, ast.JoinedStr) and not any(
        isinstance(part, ast.Constant) and re.search(r"[A-Za-z]", part.value) for part in node.values
    )


def _translated(node: ast.AST, assigned: dict[str, list[ast.AST]]) -> bool:
    """``_("...")``, ``_("...").format(...)``, or a variable every assignment of which is one of those."""
    if _is_call_to(node, "_") or _wordless(node):  # _(a variable): text marked with N_ elsewhere, shown now
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _translated(node.func.value, assigned)
    if isinstance(node, ast.IfExp):
        return _translated(node.body, assigned) and _translated(node.orelse, assigned)
    if isinstance(node, ast.Name):
        values = assigned.get(node.id, [])
        return bool(values) and all(_translated(value, assigned) for value in values)
    return False


def _fragment_ok(node: ast.AST, assigned: dict[str, list[ast.AST]]) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(CODE_ONLY.match(node.value))
    return _translated(node, assigned) or (isinstance(node, ast.Name) and node.id in PASSED_ON)


PASSED_ON = {"how", "bug", "origin", "hint"}  # a helper's own parameter, handed on to the next helper


def _assignments(function: ast.AST) -> dict[str, list[ast.AST]]:
    assigned: dict[str, list[ast.AST]] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            assigned.setdefault(node.target.id, []).append(node.value)
    return assigned


def unmarked(source: str) -> list[str]:
    """Where ``source`` shows a student a text that is not marked for translation (line: what)."""
    tree = ast.parse(source)
    found = []
    functions = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    checkers = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in ("_", "N_"):
            found.append(f"{node.lineno}: assigns to `{node.id}`, which hides the translation function")
        if not isinstance(node, ast.Call):
            continue
        if _is_call_to(node, "_") or _is_call_to(node, "N_"):
            if len(node.args) != 1 or node.keywords or _built(node.args[0]):
                found.append(f"{node.lineno}: {node.func.id}() of a text built in code (use named placeholders)")
            elif node.func.id == "N_" and not _is_marked(node, "N_"):
                found.append(f"{node.lineno}: N_() of something else than one string literal")
        if _is_call_to(node, "Question"):
            if len(node.args) > 2 and isinstance(node.args[2], ast.Name):
                checkers.add(node.args[2].id)
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg in ("hint", "none_message") and not (
                    _is_marked(value, "N_") or isinstance(value, ast.Name) and value.id in PASSED_ON
                ):
                    found.append(f"{node.lineno}: {keyword.arg}= is not N_(...)")
        if _is_call_to(node, "choice"):
            texts = [value for index in (2, 4) if len(node.args) > index for value in node.args[index].values]
            texts += [keyword.value for keyword in node.keywords if keyword.arg == "hint"]
            found += [f"{text.lineno}: a choice's text is not N_(...)" for text in texts if not _is_marked(text, "N_")]
    for function in functions.values():
        assigned = _assignments(function)
        for node in ast.walk(function):
            if _is_call_to(node, "Incorrect"):
                if not node.args or not _translated(node.args[0], assigned):
                    found.append(f"{node.lineno}: Incorrect(...) of a text that is not _(...)")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FRAGMENTS:
                spliced = FRAGMENTS[node.func.id]
                given = list(enumerate(node.args)) + [(k.arg, k.value) for k in node.keywords]
                for where, value in given:
                    if where in spliced and not _fragment_ok(value, assigned):
                        found.append(f"{node.lineno}: {node.func.id}'s {spliced[where]} is not _(...)")
            elif isinstance(node, ast.Return) and function.name in checkers and node.value is not None:
                if not _translated(node.value, assigned):
                    found.append(f"{node.lineno}: {function.name} returns a message that is not _(...)")
    return found


@pytest.mark.parametrize("name", CHECKED)
def test_every_student_facing_text_is_marked(name):
    assert unmarked((FOLDER / name).read_text(encoding="utf-8")) == []


def test_the_marking_check_finds_what_is_not_marked():
    source = """
def _check(x, weights_path):
    message = "plain"
    if x:
        raise Incorrect(f"x is {x}")
    if not x:
        raise Incorrect(message)
    load_weights_only(weights_path, "weights_path", "save it first")
    require_same_tensors(x, x, what="the file")
    require_same_tensors(x, x, _("x"), what=_(f"the {x}"))
    for name, _ in x:
        pass
    return f"fine: {x}"

q1 = Question("l.q1", "?", _check, names=["x"], hint="look")
q2 = choice("l.q2", "?", {"a": N_("yes"), "b": "no"}, "a", {"b": N_("no")}, hint=N_("h"))
"""
    found = sorted(line.split(": ", 1)[1] for line in unmarked(source))
    assert found == sorted(
        [
            "assigns to `_`, which hides the translation function",
            "_() of a text built in code (use named placeholders)",
            "hint= is not N_(...)",
            "a choice's text is not N_(...)",
            "Incorrect(...) of a text that is not _(...)",
            "Incorrect(...) of a text that is not _(...)",
            "load_weights_only's how is not _(...)",
            "require_same_tensors's what is not _(...)",
            "_check returns a message that is not _(...)",
        ]
    )


def test_a_notebook_cannot_reach_the_graders_checkers_through_its_own_translation_function(zh, monkeypatch):
    """The grader's copies build their own lesson_utils.i18n too: a notebook that replaces
    `lesson_utils.i18n._` (to look into the checker's frame, say) is never called by them."""
    import lesson_utils.i18n

    calls = []
    monkeypatch.setattr(lesson_utils.i18n, "_", lambda message: calls.append(message) or message)
    i18n_file = FOLDER.parent / "i18n.py"
    sources = {
        "i18n": i18n_file.read_text(encoding="utf-8"),
        "i18n_file": str(i18n_file),
        "core": (FOLDER / "core.py").read_text(encoding="utf-8"),
        "lesson": (FOLDER / "lesson01.py").read_text(encoding="utf-8"),
    }
    (q1, *_rest) = fresh_questions(sources, "lesson01")
    result = q1.evaluate({"net": 1, "weights_path": 2})
    assert calls == [] and chinese(result.message), result


# issue 26: the new checks speak Chinese too ------------------------------------------------------------------


def test_the_new_checks_in_chinese(zh, net, tmp_path, monkeypatch):
    """Where a file lives, a resumed optimizer's settings, a head computed from the old one, pages written
    after a lean load, a DCP file's values, swapped entries, and an answer after `del ddp_state`."""
    import copy

    from exercise_helpers import lesson04_source, lesson04_warm, lesson06_checkpoint, lesson07_gan
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from lesson_utils import OfflineShapes
    from lesson_utils.training import train_one_epoch

    workdir, notebook = tmp_path / "exercises02-zh", tmp_path / "notebook"
    workdir.mkdir()
    notebook.mkdir()
    monkeypatch.chdir(notebook)
    save_file(net.state_dict(), notebook / "w.safetensors")
    message = lesson02.q2.evaluate({"net": net, "safetensors_path": "w.safetensors", "workdir": workdir}).message
    assert message == (
        f"`safetensors_path` 是相对路径 w.safetensors：文件会落在笔记本旁边（{notebook}），而不是 `workdir` 里。"
        "请把文件写进 workdir：workdir / 'w.safetensors'"
    )

    checkpoint = tmp_path / "c.pt"
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    train_one_epoch(net, optimizer, OfflineShapes(512), epoch=0)  # lesson 03's Q1
    torch.save(
        {"epoch": 1, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, checkpoint
    )
    model = Net()
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model_state_dict"])
    resumed = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    resumed.load_state_dict(torch.load(checkpoint, weights_only=True)["optimizer_state_dict"])
    resumed.param_groups[0]["weight_decay"] = 0.01
    answer = {"model": model, "optimizer": resumed, "checkpoint_path": checkpoint}
    assert lesson03.q2.evaluate(answer).message == (
        "`optimizer` 的 weight_decay=0.01，而断点里是 weight_decay=0："
        "optimizer.load_state_dict 会恢复保存下来的每一项设置，加载之后不要再改它"
    )

    source = lesson04_source()
    message = lesson04.q1.evaluate(lesson04_warm(source, source["fc3.weight"][:4] * 0.5)).message
    assert (
        message.startswith("fc3.weight 的第 ") and "行是由源模型的分类头算出来的：它有 100% 落在旧分类头各行" in message
    )
    assert message.endswith("新的 4 个类别不是原来的类别，所以分类头必须保持全新（用 Net(num_classes=4) 自己的初始化）")

    seed_everything(0)
    weights = tmp_path / "net.pt"
    torch.save(Net().state_dict(), weights)
    with torch.device("meta"):
        lean = Net()
    lean.load_state_dict(torch.load(weights, mmap=True, weights_only=True), assign=True)
    lean.load_state_dict(torch.load(weights, weights_only=True))
    message = lesson05.q1.evaluate({"model": lean, "weights_path": weights}).message
    assert message.startswith("权重原本是从文件映射来的，但存放 ['conv1.weight', ")
    assert "的内存页现在成了私有副本" in message

    checkpoint_dir, _converted = lesson06_checkpoint(tmp_path)
    single = checkpoint_dir.parent / "single.pt"
    dcp_to_torch_save(checkpoint_dir, single)
    converted = torch.load(single, weights_only=True)
    converted["optimizer"]["param_groups"][0]["lr"] = 0.1
    torch.save(converted, single)
    message = lesson06.q2.evaluate({"checkpoint_dir": checkpoint_dir, "single_path": single}).message
    assert message == (
        "文件里 optimizer['param_groups'][0]['lr'] 的数值和 DCP 断点里的不同（是另一个优化器的状态吗？）："
        "请原样转换 `checkpoint_dir` 里的断点"
    )

    gan = lesson07_gan(tmp_path)  # lesson 07's set-up, trained 3 steps
    states = {name: copy.deepcopy(part.state_dict()) for name, part in gan.items()}
    folder = tmp_path / "exercises07-zh"
    folder.mkdir()
    swapped = {"生成器": states["discriminator"], "判别器": states["generator"], "优化器G": states["opt_g"]}
    torch.save({**swapped, "优化器D": states["opt_d"]}, folder / "gan.pt")
    message = lesson07.q2.evaluate({"gan_path": folder / "gan.pt", "gan": gan, "workdir": folder}).message
    assert (
        message
        == "条目 '生成器' 的名字对应 generator，里面却是 discriminator 的状态：按名字恢复，就会把它加载到错误的部分"
    )

    seed_everything(0)
    clean_state = {k.removeprefix("module."): v for k, v in nn.DataParallel(Net()).state_dict().items()}
    assert str(lesson04.q3.evaluate({"clean_state": clean_state})) == "lesson04.q3：正确：现在普通的 Net 就能加载它了"


def test_the_second_round_checks_in_chinese(zh, net, tmp_path, monkeypatch, capsys):
    """Issue 26, second round: a letter followed by another option's text, a resume left in eval mode, a cell that
    raised before its check, a lean load of another file, a converted DCP entry
    in another dtype, an optimizer beside the wrong model, a folder that is workdir itself, a loader of one's own,
    a bias copied with a small change, and `ddp_state` stripped in place."""
    import shutil
    import types

    import IPython
    from exercise_helpers import (
        lesson04_source,
        lesson04_warm,
        lesson06_checkpoint,
        lesson07_gan,
        lesson07_setup,
        workdir_in,
    )

    from lesson_utils.exercises import lesson08, lesson09

    assert lesson01.q3.evaluate({"q3_answer": "（ｂ）"}).status == CORRECT
    assert lesson01.q3.evaluate({"q3_answer": "b) 只有参数"}).message == (
        "你写的是字母 b，但后面的文字却是选项 a 的（只有参数）：你到底选哪一个？请只写那个字母，例如 q3_answer = 'b'"
    )

    path, _gan, _train_steps = lesson07_setup(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    model = Net()
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    optimizer.param_groups[0]["lr"] = 0.001
    model.eval()
    assert lesson07.q3.evaluate({"model": model, "optimizer": optimizer, "checkpoint_path": path}).message == (
        "`model` 处于评估模式：恢复训练是要接着训练的，所以请让它保持在训练模式（model.train()；"
        "eval() 是预测时用的，它会改变 Dropout 和 BatchNorm 的行为）"
    )

    class Shell:
        last_execution_result = types.SimpleNamespace(error_before_exec=None, error_in_exec=KeyError("x"))

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    globals().update({"net": net, "safetensors_path": None})
    try:
        lesson02.q2.check()
    finally:
        globals().pop("net")
        globals().pop("safetensors_path")
    assert capsys.readouterr().out == (
        "lesson02.q2：未作答：`safetensors_path` 仍然是 None：在这次检查之前运行的单元格抛出了 KeyError：'x'。"
        "它在那里就停下了，还没来得及给这些变量赋值：请改正它并重新运行，然后再检查\n"
    )

    weights = tmp_path / "net.pt"
    torch.save(net.state_dict(), weights)
    shutil.copy(weights, tmp_path / "copy.pt")
    with torch.device("meta"):
        lean = Net()
    lean.load_state_dict(torch.load(tmp_path / "copy.pt", mmap=True, weights_only=True), assign=True)
    message = lesson05.q1.evaluate({"model": lean, "weights_path": weights}).message
    assert message.startswith(f"conv1.weight 是从 {tmp_path / 'copy.pt'} 映射来的，这不是 `weights_path`（{weights}）")

    checkpoint_dir, converted = lesson06_checkpoint(tmp_path)
    converted["optimizer"]["state"]["0.bias"]["exp_avg"] = converted["optimizer"]["state"]["0.bias"]["exp_avg"].half()
    torch.save(converted, checkpoint_dir.parent / "single.pt")
    names = {"checkpoint_dir": checkpoint_dir, "single_path": checkpoint_dir.parent / "single.pt"}
    assert lesson06.q2.evaluate(names).message == (
        "optimizer['state']['0.bias']['exp_avg'] 在文件里是 torch.float16，而在 DCP 断点里是 torch.float32："
        "请原样转换（不要用 .half() 或 .to(dtype)）"
    )

    gan = lesson07_gan(tmp_path)
    states = {name: part.state_dict() for name, part in gan.items()}
    folder = workdir_in(tmp_path, "07")
    torch.save([(states["generator"], states["opt_d"]), (states["discriminator"], states["opt_g"])], folder / "g.pt")
    assert lesson07.q2.evaluate({"gan_path": folder / "g.pt", "gan": gan, "workdir": folder}).message == (
        "条目 [0][1] 和 generator 的权重（[0][0]）放在一起，里面却是 opt_d 的状态："
        "恢复训练时，generator 会拿到另一个优化器的状态"
    )

    workdir = workdir_in(tmp_path, "08")
    message = lesson08.q1.evaluate({"share_dir": workdir, "model": None, "workdir": workdir}).message
    assert message == (
        "`share_dir` 就是 `workdir` 本身，而那里还放着准备单元格的文件："
        "请按题目要求，在 workdir 里为这道题新建一个文件夹（workdir / 'share'）"
    )

    workdir = workdir_in(tmp_path, "09")
    spare = lesson09.make_loader()
    for taken, _batch in enumerate(spare, start=1):
        if taken == 4:
            break
    torch.save({"loader_state_dict": spare.state_dict()}, workdir / "l.pt")
    names = {"loader_state_path": workdir / "l.pt", "workdir": workdir, "loader": lesson09.make_loader()}
    assert lesson09.q1.evaluate(names).message == (
        "保存下来的状态会从第 5 个批次接着往下走，但准备单元格里的 `loader` 本身还一个批次都没有取出："
        "请从 `loader` 取出 4 个批次（而不是从你自己建的数据加载器里取），再保存它的状态"
    )

    source = lesson04_source()
    message = lesson04.q1.evaluate(lesson04_warm(source, bias=source["fc3.bias"][:4] + 1e-5)).message
    assert message.startswith(
        "fc3.bias 的每一个元素都与源模型 10 类偏置的某个元素相差不到 0.0003（对应那边的第 [0, 1, 2, 3] 个元素）"
    )

    seed_everything(0)
    ddp_state = {k.removeprefix("module."): v for k, v in nn.DataParallel(Net()).state_dict().items()}
    assert lesson04.q3.evaluate({"clean_state": ddp_state, "ddp_state": ddp_state}).message == (
        "现在普通的 Net 就能加载它了。`ddp_state` 本身也被原地改了名：它现在和 `clean_state` 是同一个字典"
        "（如果还需要原来的版本，请先复制一份：dict(ddp_state)）"
    )
