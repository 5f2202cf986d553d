"""The Chinese notebooks keep to docs/glossary.md, and their prose is typeset the Chinese way.

Every notebook under ``notebooks/zh/`` (lessons, exercises, solutions) is read from its sources
(outputs come from the code and the message catalogs, which have tests of their own):

- a notebook cell is a 单元格, never a bare 单元 (单元测试, a unit test, is another word);
- in place is 原地, never 就地;
- what ``torch.save`` writes is a zip 归档 and is not compressed: no 压缩包 for it (a sentence
  about a really compressed download, ``.tar.gz`` and the like, may say 压缩包);
- a classification head is a 分类头: 输出头 only in a notebook about a language model, where it
  is the output layer tied to the embedding (``lm_head``);
- no hard line break inside a Chinese paragraph of a markdown cell: Jupyter renders it as a
  stray space, so a paragraph is one line (list items, table rows, headings, quotes, code blocks
  and HTML keep their own lines; a list item wrapped onto a second line is a break in its text);
- no half-width colon in a Chinese heading (「步骤 2：…」, not 「步骤 2: …」), nor right after a
  Chinese character anywhere in the prose, the comments or the strings.

Code spans, code blocks and URLs are left out of the punctuation rules: code keeps its own colons.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
ZH = ROOT / "notebooks" / "zh"
CHINESE_NOTEBOOKS = sorted(p for p in ZH.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)

HAN = r"\u4e00-\u9fff"
CJK = re.compile(f"[{HAN}]")
BARE_CELL = re.compile(r"单元(?!格|测试)")
IN_PLACE = re.compile(r"就地")
ZIP_AS_COMPRESSED = re.compile(r"压缩包")
REALLY_COMPRESSED = re.compile(r"\.(?:tar|gz|tgz|bz2|xz|zst|7z|rar)\b|gzip|tar\b", re.I)
OUTPUT_HEAD = re.compile(r"输出头")
LANGUAGE_MODEL = re.compile(r"语言模型|lm_head")
# A line that starts a block of its own: a list item, heading, quote, table row, fence, HTML, math.
BLOCK_START = re.compile(r"\s*(?:[-*+]\s|\d+[.)]\s|#{1,6}\s|>|\||```|~~~|<|\$\$)")
FENCE = re.compile(r"\s*(?:```|~~~)")
CODE_SPAN = re.compile(r"`[^`\n]*`")
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+|\]\([^)\s]*\)", re.I)
HEADING = re.compile(r"\s{0,3}#{1,6}\s")
COLON_AFTER_HAN = re.compile(f"[{HAN}）」』]:")
SENTENCE_END = re.compile(r"[。！？；\n]")


def sentences_with(pattern: re.Pattern, text: str) -> list[str]:
    """The sentences (between 。！？； and line ends) of ``text`` in which ``pattern`` occurs."""
    return [s.strip() for s in SENTENCE_END.split(text) if pattern.search(s)]


def term_problems(text: str, language_model: bool = False) -> list[str]:
    """Where ``text`` (a cell's source) departs from the glossary's terms.

    >>> term_problems("运行下一个单元格；单元测试另有文件")
    []
    >>> term_problems("下面这个单元预期会报错")
    ['单元 for a notebook cell (say 单元格): 下面这个单元预期会报错']
    >>> term_problems("它会就地修改这个字典")
    ['就地 for in place (say 原地): 它会就地修改这个字典']
    """
    found = [f"单元 for a notebook cell (say 单元格): {s}" for s in sentences_with(BARE_CELL, text)]
    found += [f"就地 for in place (say 原地): {s}" for s in sentences_with(IN_PLACE, text)]
    found += [
        f"压缩包 for an archive torch.save does not compress (say 归档): {s}"
        for s in sentences_with(ZIP_AS_COMPRESSED, text)
        if not REALLY_COMPRESSED.search(s)
    ]
    if not language_model:
        found += [f"输出头 for a classification head (say 分类头): {s}" for s in sentences_with(OUTPUT_HEAD, text)]
    return found


def prose_lines(markdown: str) -> list[tuple[int, str, bool]]:
    """The lines of ``markdown`` with their numbers, and whether each lies inside a fenced code block."""
    lines, fenced = [], False
    for number, line in enumerate(markdown.split("\n"), start=1):
        if FENCE.match(line):
            lines.append((number, line, True))
            fenced = not fenced
            continue
        lines.append((number, line, fenced))
    return lines


def hard_breaks(markdown: str) -> list[str]:
    """Line breaks inside a Chinese paragraph: a line of prose followed, in the same block, by a
    line that does not start a block of its own (and one of the two has Chinese in it).

    >>> hard_breaks("第一句，\\n接着第二句。")
    ['line 1: 第一句，⏎接着第二句。']
    >>> hard_breaks("## 标题\\n正文。\\n\\n- 一项\\n- 另一项\\n\\n| a | b |\\n|---|---|\\n```\\n代码\\n注释\\n```")
    []
    >>> hard_breaks("- 一项，\\n  折到了下一行")
    ['line 1: - 一项，⏎  折到了下一行']
    """
    found = []
    lines = prose_lines(markdown)
    for (number, line, fenced), (_, following, following_fenced) in zip(lines, lines[1:], strict=False):
        if fenced or following_fenced or not line.strip() or not following.strip():
            continue
        if BLOCK_START.match(following) or HEADING.match(line) or line.lstrip().startswith(("|", "<", "$$")):
            continue
        if line.endswith(("  ", "\\", "<br>", "<br/>")):  # a deliberate line break
            continue
        if CJK.search(line) or CJK.search(following):
            found.append(f"line {number}: {line.strip()[-30:]}⏎{following[:30]}")
    return found


def without_code(text: str) -> str:
    return URL.sub(" ", CODE_SPAN.sub(" ", text))


def colon_problems(markdown: str) -> list[str]:
    """Half-width colons where Chinese typesetting wants 「：」.

    >>> colon_problems("## 1. 调试 `Net`（步骤 2: 定义网络）")
    ['a half-width colon in a Chinese heading: ## 1. 调试 `Net`（步骤 2: 定义网络）']
    >>> colon_problems("## 2. 训练（步骤 3：初始化优化器）\\n报错 `RuntimeError: x` 的意思是：见 https://pytorch.org/docs")
    []
    >>> colon_problems("注意: 这里")
    ['a half-width colon right after Chinese text: 注意: 这里']
    """
    found = []
    for _number, line, fenced in prose_lines(markdown):
        if fenced:
            continue
        text = without_code(line)
        if HEADING.match(line) and CJK.search(text) and ":" in text:
            found.append(f"a half-width colon in a Chinese heading: {line.strip()}")
        elif COLON_AFTER_HAN.search(text):
            found.append(f"a half-width colon right after Chinese text: {line.strip()}")
    return found


def code_text(source: str) -> str:
    """The comments and string literals of a code cell (where Chinese appears in code)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    kinds = {tokenize.COMMENT, tokenize.STRING} | {
        getattr(tokenize, name) for name in ("FSTRING_MIDDLE",) if hasattr(tokenize, name)
    }
    return "\n".join(token.string for token in tokens if token.type in kinds)


def notebook_problems(path: Path) -> list[str]:
    notebook = nbformat.read(path, as_version=4)
    language_model = any(LANGUAGE_MODEL.search(cell.source) for cell in notebook.cells)
    found = []
    for index, cell in enumerate(notebook.cells):
        where = f"cell {index} ({cell.cell_type})"
        found += [f"{where}: {problem}" for problem in term_problems(cell.source, language_model)]
        if cell.cell_type == "markdown":
            found += [f"{where}: hard line break, {problem}" for problem in hard_breaks(cell.source)]
            found += [f"{where}: {problem}" for problem in colon_problems(cell.source)]
        elif cell.cell_type == "code":
            found += [
                f"{where}: a half-width colon right after Chinese text: {line.strip()}"
                for line in code_text(cell.source).splitlines()
                if COLON_AFTER_HAN.search(line)
            ]
    return found


@pytest.mark.parametrize("path", CHINESE_NOTEBOOKS, ids=[str(p.relative_to(ZH)) for p in CHINESE_NOTEBOOKS])
def test_chinese_notebook_keeps_to_the_glossary_and_chinese_typesetting(path: Path) -> None:
    problems = notebook_problems(path)
    assert not problems, f"{path.relative_to(ROOT)} (see docs/glossary.md):\n" + "\n".join(problems)


def test_the_term_rules_on_small_examples() -> None:
    assert term_problems("先运行准备单元格，再运行答题单元格；`make check` 跑单元测试") == []
    assert term_problems("nbval 不比较本单元的输出") and term_problems("结果在下一个单元打印。")
    assert term_problems("模型.to() 就地修改模块")
    assert term_problems("`torch.save` 写出的文件是一个 zip 压缩包") and term_problems("可压缩包里也有 pickle")
    assert term_problems("下载的 cifar-10-python.tar.gz 是一个压缩包，先解压") == []  # really compressed
    assert term_problems("torch.save 写出的是 zip 归档（不压缩）") == []
    assert term_problems("换上一个新的输出头") and not term_problems("换上一个新的分类头")
    assert term_problems("与嵌入层绑定的输出头", language_model=True) == []


def test_the_line_break_rule_on_small_examples() -> None:
    assert hard_breaks("这一段很长，\n被折成了两行。")
    assert hard_breaks("**用时**：约 25 分钟。\n**前置课程**：第 01 课。"), "two lines of one paragraph"
    assert hard_breaks("**用时**：约 25 分钟。\n\n**前置课程**：第 01 课。") == [], "two paragraphs"
    assert hard_breaks("English prose,\nwrapped.") == [], "not a Chinese paragraph"
    assert hard_breaks("第一项如下：\n- 甲\n- 乙\n1. 丙\n> 引用") == []
    assert hard_breaks("### 小标题\n正文一行。") == []
    assert hard_breaks("| 格式 | 说明 |\n|---|---|\n| a | 甲 |") == []
    assert hard_breaks("```python\n# 注释一\n# 注释二\n```") == []
    assert hard_breaks("要换行就明说：  \n下一行") == [], "two trailing spaces: a deliberate <br>"


def test_the_colon_rule_on_small_examples() -> None:
    assert colon_problems("## 3. 一般断点（步骤 4 和 5: 保存和加载）")
    assert colon_problems("## 3. 一般断点（步骤 4 和 5：保存和加载）") == []
    assert colon_problems("## 5. DDP 的 `module.` 前缀") == []
    assert colon_problems("## 1. Why: English heading") == [], "not a Chinese heading"
    assert colon_problems("报错 `ValueError: bad` 的意思是：值不对") == [], "a colon inside code is code"
    assert colon_problems("见 [文档](https://pytorch.org/docs/stable/x.html)") == []
    assert colon_problems("```\nprint('结果:', x)\n```") == [], "code blocks keep their colons"
    assert colon_problems("结果如下:") and colon_problems("（见上文）: 这里")
    assert code_text('print("步骤 2: 保存", x)  # 注释') == '"步骤 2: 保存"\n# 注释'
