"""Every markdown cell renders as written: no emphasis marker is left as literal text.

CommonMark closes ``**`` only where it is "right-flanking": ``**强调（注释）**后文`` has punctuation
before the closing ``**`` and a letter after it, so Jupyter shows the asterisks. Chinese prose runs
into this easily (full-width punctuation, no spaces), so every notebook is rendered with the same
CommonMark rules JupyterLab's renderer follows, and its text (code left out) must hold no ``**``.

Example (the trap, and the fix):
    >>> from markdown_it import MarkdownIt
    >>> MarkdownIt("commonmark").render("**梯度（scale）**权重")
    '<p>**梯度（scale）**权重</p>\\n'
    >>> MarkdownIt("commonmark").render("**梯度**（scale）权重")
    '<p><strong>梯度</strong>（scale）权重</p>\\n'
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
CODE = re.compile(r"<code>.*?</code>|<pre>.*?</pre>", re.S)
LEFT_OVER = re.compile(r".{0,20}(?:\*\*|(?<![\w/])__(?!\w*__\b)).{0,20}")
TAG = re.compile(r"<[^>]+>")
RENDER = MarkdownIt("commonmark").enable("table")


def literal_markers(source: str) -> list[str]:
    """Emphasis markers that survive rendering, with a little context.

    >>> literal_markers("**从哪个断点恢复？**最新的")
    ['**从哪个断点恢复？**最新的']
    >>> literal_markers("**从哪个断点恢复**？最新的 `a**b` and __init__")
    []
    """
    text = TAG.sub("", CODE.sub("", RENDER.render(source)))
    return [m.group().strip() for m in LEFT_OVER.finditer(text)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT / "notebooks")) for p in NOTEBOOKS])
def test_no_emphasis_marker_is_shown_as_text(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    found = [
        f"cell {index}: {marker}"
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "markdown"
        for marker in literal_markers(cell.source)
    ]
    assert not found, f"{path.name}: emphasis shown as literal asterisks (move the ** inside the punctuation): {found}"


CJK_END = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]$")
CHINESE_MARKDOWN = [ROOT / "README.zh-CN.md", *sorted((ROOT / "notebooks" / "zh").rglob("*.ipynb"))]


def breaks_after_chinese(source: str) -> list[str]:
    """Line breaks inside a paragraph right after a Chinese character: the browser shows them as a
    space in the middle of Chinese text (keep a Chinese paragraph on one line).

    >>> breaks_after_chinese("第一行，\\n第二行")
    ['第一行，⏎第二行']
    >>> breaks_after_chinese("## 标题\\n正文\\n\\n- 一项\\n- 二项\\n\\n`code`\\n正文")
    []
    """
    found = []
    for token in RENDER.parse(source):
        children = token.children or []
        for before, brk, after in zip(children, children[1:], children[2:], strict=False):
            if brk.type == "softbreak" and CJK_END.search(before.content or ""):
                found.append(f"{before.content[-12:]}⏎{after.content[:12]}")
    return found


@pytest.mark.parametrize(
    "path", CHINESE_MARKDOWN, ids=[p.name if p.suffix == ".md" else str(p.relative_to(ROOT)) for p in CHINESE_MARKDOWN]
)
def test_chinese_paragraphs_have_no_line_break_that_shows_as_a_space(path: Path) -> None:
    if path.suffix == ".md":
        sources = [path.read_text(encoding="utf-8")]
    else:
        sources = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
    found = [hit for source in sources for hit in breaks_after_chinese(source)]
    assert not found, found
