"""The Chinese edition cannot drift from the English one.

Every notebook under ``notebooks/`` has a twin at the same place under ``notebooks/zh/``. Their
code cells must be the same Python once comments and the text of string literals are set
aside (compared token by token, with :mod:`tokenize`), in the same order and with the same
tags, so only prose, comments, printed text and plot labels differ. The one cell the Chinese
edition adds is its first code cell, ``set_language("zh_CN")``. An f-string's text may be
translated, but the expressions it formats may not change; and a string may be translated
only where it is shown to a person (printed, a label, a message), never where it is data (a
key, a path, an argument, a comparison) unless ``TRANSLATABLE_DATA`` lists it after review.
Cell kinds, tags, metadata, nbval's comment markers and the kernel must be the same too.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
ZH = NOTEBOOKS / "zh"
ENGLISH = sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ZH not in p.parents and ".ipynb_checkpoints" not in p.parts)
CHINESE = sorted(p for p in ZH.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
IDS = [str(p.relative_to(NOTEBOOKS)) for p in ENGLISH]
SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
CJK = re.compile(r"[\u4e00-\u9fff]")
# Chinese text: ideographs, CJK punctuation (。、「」) and full-width forms (，：（）)
CHINESE_TEXT = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")
LANGUAGE_CELL = 'from lesson_utils import set_language\nset_language("zh_CN")'


def _string_group(literals: list[str]) -> tuple:
    """One token for adjacent string literals: the expressions their f-strings format (their text
    is judged by :func:`string_differences`, which knows where the string is used)."""
    expressions = []
    for literal in literals:
        node = ast.parse(literal.strip(), mode="eval").body
        for part in node.values if isinstance(node, ast.JoinedStr) else []:
            if isinstance(part, ast.FormattedValue):
                spec = "".join(
                    piece.value if isinstance(piece, ast.Constant) else "{" + ast.unparse(piece.value) + "}"
                    for piece in (part.format_spec.values if part.format_spec else [])
                )
                expressions.append(f"{ast.unparse(part.value)}!{part.conversion}:{spec}")
    return ("<string>", tuple(sorted(expressions)))


def code_tokens(source: str) -> list[tuple]:
    """The tokens of ``source`` that are code: no comments or blank lines; adjacent string
    literals as one token holding the expressions their f-strings format.

    >>> len(code_tokens('print("hello", x)  # say hello')) == len(code_tokens('print("你好",\\n      x)'))
    True
    >>> code_tokens('x = f"{loss:.3f} s"')[-2]
    ('<string>', ('loss!-1:.3f',))
    """
    tokens: list[tuple] = []
    pending: list[str] = []
    text = source + "\n"
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    fstring_start, depth = None, 0  # Python 3.12 splits an f-string into tokens of its own
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in SKIPPED:
            continue
        if tokenize.tok_name[token.type] == "FSTRING_START":
            fstring_start = fstring_start if depth else token.start
            depth += 1
            continue
        if depth:
            if tokenize.tok_name[token.type] == "FSTRING_END":
                depth -= 1
                if not depth:  # the whole f-string, as 3.11 gives it: one STRING token
                    (row0, col0), (row1, col1) = fstring_start, token.end
                    pending.append(text[offsets[row0 - 1] + col0 : offsets[row1 - 1] + col1])
            continue
        if token.type == tokenize.STRING:
            pending.append(token.string)
            continue
        if pending:
            tokens.append(_string_group(pending))
            pending = []
        tokens.append((tokenize.tok_name[token.type], token.string))
    if pending:
        tokens.append(_string_group(pending))
    return tokens


def code_difference(english: str, chinese: str) -> str | None:
    """Where ``chinese`` stops being ``english``'s code (None if it is the same code).

    >>> code_difference('print("Saved", len(state))', 'print("已保存", len(state))  # 注释') is None
    True
    >>> code_difference('print(f"{loss:.3f}")', 'print(f"损失 {loss:.4f}")')
    "a string formats ('loss!-1:.4f',) instead of ('loss!-1:.3f',)"
    >>> code_difference('print(len(x))', 'print(len(y))')
    "'y' where the English has 'x'"
    """
    en_tokens, zh_tokens = code_tokens(english), code_tokens(chinese)
    for en, zh in zip(en_tokens, zh_tokens, strict=False):
        if en == zh:
            continue
        if en[0] == "<string>" == zh[0]:
            return f"a string formats {zh[1]} instead of {en[1]}"
        return f"{zh[-1]!r} where the English has {en[-1]!r}"
    if len(en_tokens) != len(zh_tokens):
        return f"{len(zh_tokens)} tokens instead of {len(en_tokens)}"
    return None


# Where a string is only shown to a person, its twin may say it in Chinese. Anywhere else (a
# key, a path, an argument, a comparison, code run from a string) it must be the English
# string exactly, unless it is listed here: strings that are data in form but only printed,
# each checked by reading the cell (by notebook, the English text).
DISPLAY_CALLS = {"print", "display", "Markdown", "HTML", "warn"}
DISPLAY_METHODS = {"set_title", "set_xlabel", "set_ylabel", "suptitle", "title", "xlabel", "ylabel", "text",
                   "annotate", "legend", "set_label", "bar_label", "set_text", "set_description"}  # fmt: skip
DISPLAY_KEYWORDS = {"label", "title", "xlabel", "ylabel", "description", "desc", "manual_name", "tooltip"}
TRANSLATABLE_DATA = {
    "00_start_here.ipynb": {"torch {} and torchvision {}, as pinned"},  # a message kept for print()
    "01_weights_state_dict.ipynb": {"parameter", "buffer"},  # what each printed state_dict entry is
    "03_checkpoints_resume.ipynb": {  # labels of the rows the cells print, and the outcomes they print
        "uninterrupted run", "python float, loss.item()", "tensor with a grad_fn", "numpy.float64", "loads",
        "refused (UnpicklingError)", "1. model + optimizer + epoch (the original)", "2. + scheduler",
        "3. + scheduler + RNG states + data order",
    },
    "07_devices_optimizers_formats.ipynb": {"before", "after "},  # when the model was converted, as printed
    "04_warm_start.ipynb": {"cold start", "warm, fine-tune all", "warm, frozen features", "nothing"},
    "05_big_models_fast.ipynb": {  # the claims the checks dict prints, and a printed line's tail
        'f"   + first forward {r[\'first_forward_seconds\']:6.3f} s"',
        "naive adds more than 1.5x the weights",
        "mmap alone adds about 1x (the random model), below 1.25x",
        "meta + mmap + assign adds less than 0.25x",
        "meta + mmap + assign is more than 10x faster than naive",
        "meta + mmap + assign takes less than half the time of a raw read()",
        "building the random model is what costs (mmap alone: over 10x the lean way)",
        "...and, counting the first forward pass, still 1.5x faster than naive",
    },
}  # fmt: skip


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def shown_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether the string ``node`` only reaches a person: printed, a plot's or widget's label,
    an assert's or an exception's message (through f-strings, ``+``, ``%``, ``.format``,
    ``.join`` and tuples or lists on the way)."""
    child = node
    while child in parents:
        parent = parents[child]
        if isinstance(parent, ast.JoinedStr | ast.FormattedValue | ast.Tuple | ast.List):
            child = parent
        elif isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Add | ast.Mod):
            child = parent
        elif isinstance(parent, ast.Attribute) and parent.attr in ("format", "join"):
            child = parents.get(parent, parent)  # the call "...".format(...)
        elif isinstance(parent, ast.keyword):
            return parent.arg in DISPLAY_KEYWORDS
        elif isinstance(parent, ast.Assert):
            return child is parent.msg
        elif isinstance(parent, ast.Call) and child in parent.args:
            function = parent.func
            name = getattr(function, "id", None) or getattr(function, "attr", None)
            is_error = bool(name) and name[0].isupper() and name.endswith(("Error", "Exception"))
            return (
                name in DISPLAY_CALLS
                or name in DISPLAY_METHODS
                or (is_error and isinstance(parents.get(parent), ast.Raise))
            )
        else:
            return False
    return False


def strings_in(source: str) -> list[tuple[str, bool]]:
    """Each string of ``source`` (an f-string as its source), and whether it is only shown."""
    tree = ast.parse(source)
    parents = _parents(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(parents.get(node), ast.JoinedStr | ast.FormattedValue | ast.Expr):
            continue  # a piece of an f-string, or a bare string statement (a docstring)
        if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            text = node.value if isinstance(node, ast.Constant) else ast.unparse(node)
            found.append((text, shown_only(node, parents)))
    return found


def string_differences(english: str, chinese: str, notebook: str) -> list[str]:
    """The strings the Chinese cell changed where they are not only shown to a person.

    >>> string_differences('print("Saved")', 'print("已保存")', "x.ipynb")
    []
    >>> string_differences('d["epoch"] = 1', 'd["轮次"] = 1', "x.ipynb")
    ["'epoch' became '轮次' where it is not only shown (a key, a path, an argument...)"]
    >>> string_differences('name.split(". ")', 'name.split(".")', "x.ipynb")
    ["'. ' became '.' where it is not only shown (a key, a path, an argument...)"]
    """
    allowed = TRANSLATABLE_DATA.get(notebook, set())
    found = []
    for (en, shown), (zh, _) in zip(strings_in(english), strings_in(chinese), strict=True):
        if en != zh and not shown and en not in allowed:
            found.append(f"{en!r} became {zh!r} where it is not only shown (a key, a path, an argument...)")
    return found


def code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def twin(path: Path) -> Path:
    return ZH / path.relative_to(NOTEBOOKS)


@pytest.mark.parametrize("english", ENGLISH, ids=IDS)
def test_every_english_notebook_has_a_chinese_twin_with_the_same_code(english: Path) -> None:
    chinese = twin(english)
    assert chinese.is_file(), f"{english.relative_to(ROOT)} has no Chinese edition: write {chinese.relative_to(ROOT)}"
    zh_cells = code_cells(chinese)
    language_cell = zh_cells[0].source if zh_cells else ""
    assert (
        code_difference(LANGUAGE_CELL, language_cell) is None
        and [text for text, _shown in strings_in(language_cell)] == ["zh_CN"]
        and not markers(language_cell)
    ), f"{chinese.relative_to(ROOT)}: the first code cell must choose the language, exactly:\n{LANGUAGE_CELL}"
    en_cells, zh_cells = code_cells(english), zh_cells[1:]
    assert len(zh_cells) == len(en_cells), (
        f"{chinese.relative_to(ROOT)} has {len(zh_cells)} code cells after the language cell, "
        f"{english.relative_to(ROOT)} has {len(en_cells)}"
    )
    for number, (en, zh) in enumerate(zip(en_cells, zh_cells, strict=True), start=1):
        difference = code_difference(en.source, zh.source)
        assert difference is None, (
            f"code cell {number} of {chinese.relative_to(ROOT)} is not the English code (comments and "
            f"translated strings aside): {difference}\n--- English\n{en.source}\n--- Chinese\n{zh.source}"
        )
        changed = string_differences(en.source, zh.source, english.name)
        assert not changed, f"code cell {number} of {chinese.relative_to(ROOT)}: {changed}"
        assert metadata(zh) == metadata(en), (
            f"code cell {number} of {chinese.relative_to(ROOT)}: other metadata or tags"
        )
        assert markers(zh.source) == markers(en.source), (
            f"code cell {number} of {chinese.relative_to(ROOT)}: nbval's comment markers differ"
        )
    assert nbformat.read(chinese, as_version=4).metadata.get("kernelspec") == nbformat.read(
        english, as_version=4
    ).metadata.get("kernelspec"), f"{chinese.relative_to(ROOT)}: another kernel"


def metadata(cell: nbformat.NotebookNode) -> dict:
    """A code cell's metadata, without what running it writes; tags compared as a set."""
    kept = {k: v for k, v in cell.metadata.items() if k not in ("execution", "collapsed", "scrolled")}
    return {**kept, "tags": sorted(kept.get("tags", []))}


def markers(source: str) -> list[str]:
    """nbval's comment markers (``# NBVAL_IGNORE_OUTPUT``...), which decide what it compares."""
    return re.findall(r"#\s*((?:NBVAL|PYTEST_VALIDATE)_\w+)", source)


def untranslated_markdown(path: Path) -> list[str]:
    """Markdown cells of ``path`` with a sentence of English prose and not one Chinese character."""
    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "markdown" or CJK.search(cell.source):
            continue
        prose = re.sub(r"```.*?```|`[^`]*`|\$[^$]*\$|\(\S*\)|<[^>]+>", " ", cell.source, flags=re.S)
        if len(re.findall(r"[A-Za-z]{3,}", prose)) >= 6:
            found.append(cell.source[:80])
    return found


@pytest.mark.parametrize("chinese", CHINESE, ids=[str(p.relative_to(NOTEBOOKS)) for p in CHINESE])
def test_chinese_notebooks_are_translated_and_have_an_english_original(chinese: Path) -> None:
    english = NOTEBOOKS / chinese.relative_to(ZH)
    assert english.is_file(), f"{chinese.relative_to(ROOT)} has no English original at {english.relative_to(ROOT)}"
    left = untranslated_markdown(chinese)
    assert not left, f"{chinese.relative_to(ROOT)} has markdown cells still in English: {left}"


def test_the_comparison_catches_changed_code() -> None:
    same = 'print("Saved", len(state))  # comment'
    assert code_difference(same, 'print("已保存",\n      len(state))  # 注释') is None
    assert code_difference('x = "a" "b"', 'x = "甲"') is None  # adjacent literals are one string
    for changed in (
        'print("Saved", len(states))',
        'print("Saved", len(state), end="")',
        'print("Saved")',
        'print(f"{len(state)}", len(state))',
    ):
        assert code_difference(same, changed) is not None, changed
    for english, chinese in (  # the same code, but a string that is data changed
        ('torch.save(x, workdir / "a.pt")', 'torch.save(x, workdir / "甲.pt")'),
        ('assert "epoch" not in state', 'assert "轮次" not in state'),
        ('torch.load(f, map_location="cuda:0")', 'torch.load(f, map_location="cuda：0")'),
        ('subprocess.run([sys.executable, "-c", "print(1)"])', 'subprocess.run([sys.executable, "-c", "print(2)"])'),
        ('" ".join(names)', '"".join(names)'),
    ):
        assert code_difference(english, chinese) is None and string_differences(english, chinese, "x"), chinese
    assert markers("x = 1  # NBVAL_IGNORE_OUTPUT") != markers("x = 1  # 忽略输出")


def test_cells_keep_their_kinds_and_order() -> None:
    """A markdown cell of the English notebook is a markdown cell of its twin, in the same
    place: an explanation cannot be dropped or merged away."""
    for chinese in CHINESE:
        english = NOTEBOOKS / chinese.relative_to(ZH)
        if not english.is_file():
            continue
        zh_kinds = [cell.cell_type for cell in nbformat.read(chinese, as_version=4).cells]
        zh_kinds.pop(zh_kinds.index("code"))  # the language cell
        en_kinds = [cell.cell_type for cell in nbformat.read(english, as_version=4).cells]
        assert zh_kinds == en_kinds, f"{chinese.relative_to(ROOT)}: its cells are not the English one's kinds, in order"


def test_no_explanation_is_cut_short() -> None:
    """Each Chinese markdown cell says about as much as its English one. Chinese takes fewer
    characters (about half here); a cell under a fifth of its English length lost something."""
    short = []
    for chinese in CHINESE:
        english = NOTEBOOKS / chinese.relative_to(ZH)
        en = [c.source for c in nbformat.read(english, as_version=4).cells if c.cell_type == "markdown"]
        zh = [c.source for c in nbformat.read(chinese, as_version=4).cells if c.cell_type == "markdown"]
        short += [f"{chinese.name}: {b[:40]!r}" for a, b in zip(en, zh, strict=False) if len(b) < len(a) / 5]
    assert not short, f"markdown cells much shorter than their English: {short}"


HALF_WIDTH_BESIDE_CHINESE = re.compile(r"[\u4e00-\u9fff][,;:?!](?=\s|$)|[\w)`}][,;](?= ?[\u4e00-\u9fff])")


def half_width_punctuation(text: str) -> list[str]:
    """Places where Chinese text uses the half-width comma, semicolon, colon, ... instead of ，；：
    (a Chinese teacher's text, and what the notebooks print, use the full-width forms)."""
    return [text[max(0, m.start() - 12) : m.end() + 12] for m in HALF_WIDTH_BESIDE_CHINESE.finditer(text)]


def test_the_punctuation_check_finds_a_half_width_comma() -> None:
    assert half_width_punctuation('print(f"{kind}, 在第 {n} 个批次后停下")') != []
    assert half_width_punctuation("在第 3 个批次后停下：恢复后逐位一致 = True") == []
    assert half_width_punctuation("torch.save(obj, f)  # 保存") == []


@pytest.mark.parametrize("chinese", CHINESE, ids=lambda p: str(p.relative_to(ZH)))
def test_chinese_text_uses_full_width_punctuation(chinese: Path) -> None:
    notebook = nbformat.read(chinese, as_version=4)
    found = []
    for cell in notebook.cells:
        texts = [cell.source] + [
            output.get("text", "") if isinstance(output.get("text", ""), str) else "".join(output["text"])
            for output in cell.get("outputs", [])
        ]
        for text in texts:
            found += half_width_punctuation(text)
    assert found == [], found


def test_chinese_messages_use_full_width_punctuation() -> None:
    from babel.messages.pofile import read_po

    found = []
    for po in sorted((ROOT / "lesson_utils" / "locale" / "zh_CN" / "LC_MESSAGES").glob("*.po")):
        with open(po, "rb") as f:
            found += [hit for message in read_po(f) if message.id for hit in half_width_punctuation(message.string)]
    assert found == [], found
