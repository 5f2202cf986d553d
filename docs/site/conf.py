"""Sphinx settings for the lessons as a website; `make site` (scripts/build_site.py) runs one build per
edition, English and Chinese (``-D language=zh_CN``), each with its own search index.

The notebooks are shown with their stored outputs (nothing is executed); site_pages.py adds what a
reader of the site needs (how to run each notebook, frozen widgets, the contents, the language switch).
"""

import logging
import sys
from pathlib import Path

import jieba

sys.path.insert(0, str(Path(__file__).parent))
import site_pages  # noqa: E402

jieba.setLogLevel(logging.WARNING)  # the Chinese search index splits words with jieba: no chatter on stderr

project = "Save & Load"
author = "the Save & Load lessons contributors"
copyright = "the Save & Load lessons contributors; text and figures CC BY 4.0, code MIT"
language = "en"
root_doc = "00_start_here"  # the walkthrough, as `make lab` opens it; its table gives the lesson order
extensions = ["myst_nb"]
exclude_patterns = ["**/.ipynb_checkpoints"]

nb_execution_mode = "off"  # the stored outputs, as the tests check them
nb_merge_streams = True
# Tracebacks that quote `code` in their message trip Pygments' IPython traceback lexer; Sphinx then
# highlights them again in its relaxed mode, which shows them well: the warning says nothing more.
suppress_warnings = ["misc.highlighting_failure"]

html_theme = "sphinx_book_theme"
html_title = "Save & Load"  # replaced per edition by site_pages.set_edition_titles
html_theme_options = {
    "home_page_in_toc": True,
    "navbar_persistent": [],  # the search field is in the sidebar: no second one in a top bar
    "use_download_button": False,  # each page's note links to the notebook as stored instead
    "article_header_end": ["language-switch.html", "article-header-buttons.html"],
}
html_context = {"default_mode": "light"}  # the stored plots are drawn on white (and no mode is an error in the console)
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_additional_pages = {"index": "redirect.html"}  # <edition>/index.html leads to 00
html_copy_source = False  # search summaries come from the pages themselves
html_show_sourcelink = False


def setup(app):
    return site_pages.setup(app)
