"""lesson_utils.i18n: English by default, Chinese when a notebook asks, complete catalogs, CJK plots."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from lesson_utils import i18n
from lesson_utils.exercises import lesson01

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("translations", ROOT / "scripts" / "translations.py")
translations = importlib.util.module_from_spec(spec)
spec.loader.exec_module(translations)


@pytest.fixture(autouse=True)
def english_afterwards():
    """Every test leaves the process in English, the default the other tests expect."""
    yield
    i18n.set_language("en")


def test_every_message_has_a_complete_compiled_chinese_translation():
    problems = translations.problems("zh_CN")
    assert not problems, "\n".join(problems[:20]) + f"\n({len(problems)} in all; see scripts/translations.py)"


def test_placeholders_are_compared_field_by_field():
    assert translations.placeholders("{key} has shape {found!r:>4}") == [("found", "r", ">4"), ("key", "", "")]
    assert translations.placeholders("{key} 的形状") != translations.placeholders("{key} has shape {found}")
    assert translations.placeholders("a stray { brace") is None  # a translation that would crash .format


def test_english_is_the_default_and_chinese_is_chosen_explicitly(capsys):
    assert i18n.language() == "en"
    lesson01.q1.check()
    english = capsys.readouterr().out
    assert english.startswith("lesson01.q1: NOT ATTEMPTED: set `net`, `weights_path` (still None)")
    i18n.set_language("zh")  # the short name works too
    assert i18n.language() == "zh_CN" and os.environ["LESSON_LANGUAGE"] == "zh_CN"
    lesson01.q1.check()
    lesson01.q1.hint()
    chinese = capsys.readouterr().out
    assert chinese.startswith("lesson01.q1") and "未作答" in chinese and "`net`, `weights_path`" in chinese
    assert "的提示：" in chinese and "still None" not in chinese
    i18n.set_language("en")
    lesson01.q1.check()
    assert capsys.readouterr().out == english


def test_an_unknown_language_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown language 'fr': choose one of 'en' \(English\), 'zh_CN'"):
        i18n.set_language("fr")
    assert i18n.language() == "en"


def test_a_missing_catalog_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="run `make translations`"):
        i18n.set_language("zh_CN")
    assert i18n.language() == "en"


def child(code: str, language: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LESSON_LANGUAGE": language}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_a_child_process_speaks_the_language_of_the_notebook_that_started_it():
    code = "from lesson_utils.i18n import _, language; print(language(), _('CORRECT'))"
    assert child(code, "zh_CN").stdout.split() == ["zh_CN", "正确"]
    wrong = child(code, "klingon")
    assert wrong.stdout.split() == ["en", "CORRECT"] and "LESSON_LANGUAGE: unknown language 'klingon'" in wrong.stderr


def draw(text: str) -> list[str]:
    """The warnings matplotlib gives while drawing ``text`` as a title, a label and a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", append=True)  # after any filter the code under test added
        figure, axes = plt.subplots()
        axes.plot([0, 1], label=text)
        axes.set_title(text)
        axes.set_xlabel(text)
        axes.legend()
        figure.canvas.draw()
        plt.close(figure)
    return [str(w.message) for w in caught]


def cjk_font_installed() -> bool:
    from matplotlib import font_manager

    return any(font.name in i18n.CJK_FONTS for font in font_manager.fontManager.ttflist)


@pytest.mark.skipif(
    not cjk_font_installed() and not os.environ.get("CI"), reason="no CJK font (make browser installs one)"
)
def test_chinese_plots_draw_with_a_cjk_font_and_no_missing_glyphs():
    import matplotlib

    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # an earlier set_language("zh_CN") in this process chose the font already
        assert draw("损失 loss −1"), "the test cannot fail: the default font has the Chinese glyphs"
        i18n.set_language("zh_CN")
        assert matplotlib.rcParams["font.family"][1] in i18n.CJK_FONTS
        assert draw("损失 loss −1") == []


def test_without_a_cjk_font_one_line_says_so_and_no_glyph_warnings(monkeypatch, capsys):
    import matplotlib

    monkeypatch.setattr(i18n, "CJK_FONTS", ("No Such Font SC",))
    with matplotlib.rc_context(), warnings.catch_warnings():
        assert i18n.use_cjk_font() is None
        said = capsys.readouterr().out
        assert said.count("\n") == 1 and "fonts-noto-cjk" in said
        assert draw("损失") == []


def marked_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "N_")
    ]


def test_every_marked_message_reaches_the_catalog_whole():
    """Babel extracts a message only from a plain literal: `_(f"...")`, `_("a" + b)`,
    `_("...".format(x))` and `_("A" if c else "B")` would be shown in English (or extracted
    glued). `N_()` takes a literal; `_()` a literal or a variable holding a message N_() marked
    where it was written. And `_` is never imported under another name. Every module of the
    package, recursively."""
    wrong = []
    for path in sorted((ROOT / "lesson_utils").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT)
        for call in marked_calls(tree):
            (argument, *more) = call.args or [None]
            plain = isinstance(argument, ast.Constant) and isinstance(argument.value, str)
            formatted = isinstance(argument, ast.Call) and getattr(argument.func, "attr", "") in ("format", "join")
            variable = isinstance(argument, ast.Name | ast.Attribute | ast.Subscript | ast.Call) and not formatted
            if call.func.id == "N_":  # marks a literal for Babel, translated where it is shown
                variable = False
            if more or call.keywords or not (plain or variable):
                wrong.append(f"{where}:{call.lineno}: {ast.unparse(call)[:80]}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "lesson_utils.i18n":
                wrong += [f"{where}:{node.lineno}: {a.name} as {a.asname}" for a in node.names if a.asname]
    assert not wrong, "messages Babel cannot extract whole:\n" + "\n".join(wrong)


def test_the_check_refuses_a_translation_left_in_english(tmp_path, monkeypatch):
    from babel.messages.pofile import read_po, write_po

    for name in ("exercises.po", "lesson_utils.po", "exercises.mo", "lesson_utils.mo"):
        target = tmp_path / "locale" / "zh_CN" / "LC_MESSAGES" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((translations.LOCALE / "zh_CN" / "LC_MESSAGES" / name).read_bytes())
    monkeypatch.setattr(translations, "LOCALE", tmp_path / "locale")
    monkeypatch.setattr(translations, "ROOT", tmp_path)  # where the messages name the files from
    assert translations.problems("zh_CN") == []
    po = tmp_path / "locale" / "zh_CN" / "LC_MESSAGES" / "exercises.po"
    with po.open("rb") as handle:
        catalog = read_po(handle)
    catalog["CORRECT"].string = "CORRECT"
    with po.open("wb") as handle:
        write_po(handle, catalog)
    assert any("'CORRECT' has no Chinese" in problem for problem in translations.problems("zh_CN"))
