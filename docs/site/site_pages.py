"""What the site adds to each notebook as Sphinx reads it (a "how to run it" note, frozen widgets, the
contents in 00's lesson order), and the language switch to each page's twin in the other edition.

The notebooks on disk are never changed: Sphinx hands each one's text to :func:`prepare_notebook`
(its ``source-read`` event), which changes the copy that is about to be rendered.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath

from widget_snapshots import freeze_widgets

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = {"en": REPO / "notebooks", "zh": REPO / "notebooks" / "zh"}
SITE_FILES = {REPO / "docs" / "glossary.md": "glossary"}  # files outside notebooks/ that are pages of each edition
PAGES_IN_BOTH = {"glossary", "search", "genindex"}
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")  # a markdown link: [text](target)

TEXT = {
    "en": {
        "title": "Save & Load: PyTorch lessons",
        "twin": ("zh", "zh-CN", "中文"),
        "note_title": "Run this notebook",
        "note": (
            "This page shows `{path}` as stored, outputs included; widgets, where it has any, are snapshots "
            "here and respond only in JupyterLab. To run it: in the project's folder, `make lab` (installs "
            "what is missing, then opens JupyterLab on 127.0.0.1), or log in to your class's JupyterHub, "
            "where the lessons are in your own folder. Download the notebook: {download}."
        ),
        "captions": ["Lessons", "Exercises", "Solutions", "Reference"],
    },
    "zh": {
        "title": "保存与加载：PyTorch 课程",
        "twin": ("en", "en", "English"),
        "note_title": "运行这个笔记本",
        "note": (
            "本页显示的是 `{path}` 保存时的样子，包括输出；"
            "页面上的交互控件（如果有）只是快照，要在 JupyterLab 里才能操作。"
            "运行方法：在项目文件夹里执行 `make lab-zh`"
            "（先安装缺少的依赖，再在 127.0.0.1 上打开中文界面的 JupyterLab）；"
            "或者登录你们班的 JupyterHub，课程已经放在你自己的文件夹里。"
            "下载笔记本：{download}。"
        ),
        "captions": ["课程", "练习", "参考答案", "参考"],
    },
}


def edition(config) -> str:
    """``"zh"`` for the Chinese build (``-D language=zh_CN``), else ``"en"``."""
    return "zh" if config.language.startswith("zh") else "en"


def prepare_notebook(app, docname: str, source: list[str]) -> None:
    """Sphinx ``source-read``: change the text of notebook ``docname`` before myst-nb renders it."""
    if app.env.doc2path(docname).suffix != ".ipynb":
        return
    lang = edition(app.config)
    notebook = json.loads(source[0])
    freeze_widgets(notebook)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            cell["source"] = LINK.sub(lambda m: link_outside_edition(m, docname, lang), text)
    add_run_note(notebook, docname, lang)
    if docname == app.config.root_doc:
        notebook["cells"].append(contents_cell(notebook, app.env.found_docs, lang))
    source[0] = json.dumps(notebook)


def add_run_note(notebook: dict, docname: str, lang: str) -> None:
    """Under the notebook's title: where the notebook is, how to run it, and a link to download it."""
    name = PurePosixPath(docname).name + ".ipynb"
    path = (NOTEBOOKS[lang] / f"{docname}.ipynb").relative_to(REPO).as_posix()
    note = TEXT[lang]["note"].format(path=path, download=f"{{download}}`{name} <{name}>`")
    first = notebook["cells"][0]
    title, _, rest = "".join(first["source"]).partition("\n")
    fence = f"```{{admonition}} {TEXT[lang]['note_title']}\n:class: tip run-this\n\n{note}\n```"
    first["source"] = f"{title}\n\n{fence}\n{rest}"


def contents_cell(start: dict, docs: set[str], lang: str) -> dict:
    """The site's contents, as hidden toctrees at the end of 00: the lessons in the order of 00's
    table (any lesson the table does not name yet after them), the exercises, the solutions."""
    table = [m.group(2).removesuffix(".ipynb") for c in start["cells"] for m in LINK.finditer("".join(c["source"]))]
    lessons = sorted(d for d in docs if re.fullmatch(r"\d\d_\w+", d) and d != "00_start_here")
    groups = [
        [d for d in table if d in lessons] + [d for d in lessons if d not in table],
        sorted(d for d in docs if re.fullmatch(r"exercises/\d\d_\w+", d)),
        sorted(d for d in docs if d.startswith("exercises/solutions/")),
        sorted(d for d in docs if d in SITE_FILES.values()),
    ]
    trees = [
        f"```{{toctree}}\n:hidden:\n:caption: {caption}\n\n" + "\n".join(group) + "\n```"
        for caption, group in zip(TEXT[lang]["captions"], groups, strict=True)
        if group
    ]
    return {"cell_type": "markdown", "id": "site-contents", "metadata": {}, "source": "\n\n".join(trees)}


def link_outside_edition(match: re.Match, docname: str, lang: str) -> str:
    """A link that leaves this edition's folder: to the other edition's notebook it becomes a link to
    that page of the other site; to a file the site has as a page (the glossary), a link to that page."""
    text, target = match.groups()
    if "://" in target or target.startswith(("#", "mailto:")):
        return match.group(0)
    here = (NOTEBOOKS[lang] / docname).parent
    path = Path(os.path.normpath(here / target))
    if path in SITE_FILES:
        return f"[{text}]({os.path.relpath(NOTEBOOKS[lang] / SITE_FILES[path], here)}.md)"
    other = TEXT[lang]["twin"][0]
    if path.suffix == ".ipynb" and path.is_relative_to(NOTEBOOKS[other]) and not path.is_relative_to(NOTEBOOKS[lang]):
        page = path.relative_to(NOTEBOOKS[other]).with_suffix(".html").as_posix()
        return f'<a href="{"../" * (docname.count("/") + 1)}{other}/{page}">{text}</a>'
    return match.group(0)


def add_twin_link(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Sphinx ``html-page-context``: the URL of this page in the other edition, for language-switch.html
    (the other edition's start page when this page has no twin yet)."""
    lang = edition(app.config)
    other, hreflang, label = TEXT[lang]["twin"]
    has_twin = pagename in PAGES_IN_BOTH or (NOTEBOOKS[other] / f"{pagename}.ipynb").exists()
    target = pagename if has_twin else app.config.root_doc
    url = f"{'../' * (pagename.count('/') + 1)}{other}/{target}.html"
    context["twin"] = {"url": url, "lang": hreflang, "label": label}


def set_edition_titles(app, config) -> None:
    """Sphinx ``config-inited``: the site's title in the edition's language."""
    config.html_title = TEXT[edition(config)]["title"]


def setup(app) -> dict:
    app.connect("config-inited", set_edition_titles)
    app.connect("source-read", prepare_notebook)
    app.connect("html-page-context", add_twin_link)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
