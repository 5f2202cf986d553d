"""The Chinese edition cannot drift from the English one.

Every notebook under ``notebooks/`` has a twin at the same place under ``notebooks/zh/``. Their
code cells must be the same Python once comments and the text of string literals are set
aside (compared token by token, with :mod:`tokenize`), in the same order and with the same
tags, so only prose, comments, printed text and plot labels differ. The one cell the Chinese
edition adds is its first code cell, ``set_language("zh_CN")``. An f-string's text may be
translated, but the expressions it formats may not change.
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
LANGUAGE_CELL = 'from lesson_utils import set_language\nset_language("zh_CN")'


def _string_group(literals: list[str]) -> tuple[str, ...]:
    """One placeholder for adjacent string literals: their text may change, an f-string's expressions may not."""
    expressions = []
    for literal in literals:
        node = ast.parse(literal.strip(), mode="eval").body
        for part in ast.walk(node):
            if isinstance(part, ast.FormattedValue):
                spec = ast.unparse(part.format_spec) if part.format_spec else ""
                expressions.append(f"{ast.unparse(part.value)}!{part.conversion}:{spec}")
    return ("<string>", *sorted(expressions))


def code_tokens(source: str) -> list[tuple]:
    """The tokens of ``source`` that are code: no comments, blank lines or string text.

    >>> code_tokens('print("hello", x)  # say hello') == code_tokens('print("你好",\\n      x)')
    True
    >>> code_tokens('print(f"{loss:.3f}")') == code_tokens('print(f"损失 {loss:.3f}")')
    True
    >>> code_tokens('print(f"{loss:.3f}")') == code_tokens('print(f"{loss:.4f}")')
    False
    >>> code_tokens('x = "a" "b"') == code_tokens('x = "甲"')
    True
    """
    tokens: list[tuple] = []
    pending: list[str] = []
    readline = io.StringIO(source + "\n").readline
    for token in tokenize.generate_tokens(readline):
        if token.type in SKIPPED:
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


def code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def twin(path: Path) -> Path:
    return ZH / path.relative_to(NOTEBOOKS)


@pytest.mark.parametrize("english", ENGLISH, ids=IDS)
def test_every_english_notebook_has_a_chinese_twin_with_the_same_code(english: Path) -> None:
    chinese = twin(english)
    assert chinese.is_file(), f"{english.relative_to(ROOT)} has no Chinese edition: write {chinese.relative_to(ROOT)}"
    zh_cells = code_cells(chinese)
    assert zh_cells and code_tokens(zh_cells[0].source) == code_tokens(LANGUAGE_CELL), (
        f"{chinese.relative_to(ROOT)}: the first code cell must choose the language, exactly:\n{LANGUAGE_CELL}"
    )
    en_cells, zh_cells = code_cells(english), zh_cells[1:]
    assert len(zh_cells) == len(en_cells), (
        f"{chinese.relative_to(ROOT)} has {len(zh_cells)} code cells after the language cell, "
        f"{english.relative_to(ROOT)} has {len(en_cells)}"
    )
    for number, (en, zh) in enumerate(zip(en_cells, zh_cells, strict=True), start=1):
        assert code_tokens(zh.source) == code_tokens(en.source), (
            f"code cell {number} of {chinese.relative_to(ROOT)} is not the English code (comments and "
            f"strings aside):\n--- English\n{en.source}\n--- Chinese\n{zh.source}"
        )
        en_tags, zh_tags = sorted(en.metadata.get("tags", [])), sorted(zh.metadata.get("tags", []))
        assert zh_tags == en_tags, f"code cell {number} of {chinese.relative_to(ROOT)}: tags {zh_tags}, not {en_tags}"


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


def test_the_token_comparison_catches_changed_code() -> None:
    same = 'print("Saved", len(state))  # comment'
    assert code_tokens('print("已保存", len(state))  # 注释') == code_tokens(same)
    for changed in ('print("Saved", len(states))', 'print("Saved", len(state), end="")', 'print("Saved")'):
        assert code_tokens(changed) != code_tokens(same), changed
