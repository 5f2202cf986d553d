"""What a student reads, in English (the default) or in Simplified Chinese, with ``gettext``.

The Chinese notebooks (``notebooks/zh/``) start with ``set_language("zh_CN")``: from then on
``check()``, ``hint()``, ``solution()`` and the messages of ``lesson_utils`` that a student
sees come from the catalogs under ``locale/zh_CN/LC_MESSAGES/`` (``exercises.mo``: the
checkers' feedback; ``lesson_utils.mo``: everything else), and plots use a CJK font. The
choice is explicit, never the machine's locale, so stored outputs hold on every machine. It
is also put in ``LESSON_LANGUAGE``, so child processes (torchrun workers, measuring
children) speak the same language.

Messages are marked with ``_()`` and written with named ``{placeholders}`` that ``.format``
fills after translation, so a translation may reorder them. ``make translations`` extracts
the messages with Babel, merges them into the ``.po`` files and compiles those;
``tests/test_i18n.py`` fails when a message has no translation or a stale catalog.

Example:
    >>> set_language("zh_CN")
    >>> language(), _("Hint for {qid}: {hint}") != "Hint for {qid}: {hint}"
    ('zh_CN', True)
    >>> set_language("en")
    >>> _("Hint for {qid}: {hint}").format(qid="lesson01.q1", hint="look at the keys")
    'Hint for lesson01.q1: look at the keys'
"""

from __future__ import annotations

import gettext
import os
import unicodedata
import warnings
from pathlib import Path

DOMAINS = ("exercises", "lesson_utils")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = {"en": "English", "zh_CN": "简体中文"}
ALIASES = {"zh": "zh_CN", "zh-CN": "zh_CN", "zh_cn": "zh_CN", "zh-Hans": "zh_CN", "en_US": "en", "en-US": "en"}
# Fonts with Simplified Chinese glyphs, most common first: Debian's fonts-noto-cjk, then macOS and Windows.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "PingFang SC", "Microsoft YaHei", "SimHei")  # fmt: skip

_translation: gettext.NullTranslations = gettext.NullTranslations()
_language = "en"


def set_language(language: str) -> None:
    """Choose the language of messages and plots: ``"en"`` (the default) or ``"zh_CN"`` (also ``"zh"``)."""
    if _choose(language) == "zh_CN":
        use_cjk_font()


def language() -> str:
    """The language chosen with :func:`set_language` (``"en"`` until then)."""
    return _language


def _(message: str) -> str:
    """``message`` in the chosen language (``message`` itself in English)."""
    return _translation.gettext(message)


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "translate later"
    """Mark ``message`` for the catalogs without translating it now: for text defined at import
    time (a question's hint, prompt, options), translated with ``_()`` when it is shown."""
    return message


def translator(language: str) -> object:
    """The ``_`` of ``language``, without choosing it for this process: for text written for someone else
    (the grader writes each student's feedback in the language of the student's notebook).

    >>> hint = "Hint for {qid}: {hint}"
    >>> translator("zh")(hint) != hint, translator("en")(hint) == hint, language()
    (True, True, 'en')
    """
    return _catalogs(_code(language)).gettext


def _code(language: str) -> str:
    code = ALIASES.get(language, language)
    if code not in LANGUAGES:
        choices = ", ".join(f"{key!r} ({name})" for key, name in LANGUAGES.items())
        raise ValueError(f"unknown language {language!r}: choose one of {choices}")
    return code


def _choose(language: str) -> str:
    global _translation, _language
    code = _code(language)
    _translation, _language = _catalogs(code), code
    os.environ["LESSON_LANGUAGE"] = code
    return code


def _catalogs(code: str) -> gettext.NullTranslations:
    translation = gettext.NullTranslations()
    if code != "en":
        try:
            found = [gettext.translation(domain, LOCALE_DIR, languages=[code]) for domain in DOMAINS]
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no compiled catalogs ({', '.join(d + '.mo' for d in DOMAINS)}) for {code} under {LOCALE_DIR}: "
                "run `make translations`, or reinstall the collection"
            ) from None
        translation = found[0]
        for other in found[1:]:
            translation.add_fallback(other)
    return translation


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal or a notebook's output: a Chinese character takes two.

    >>> display_width("loss"), display_width("损失")
    (4, 4)
    """
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def pad(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` columns, like ``f"{text:<{width}}"`` for Latin text."""
    return text + " " * (width - display_width(text))


def use_cjk_font() -> str | None:
    """Make matplotlib draw Chinese text with an installed CJK font; the font's name, or None.

    Latin letters and digits keep matplotlib's default font, and the glyphs it lacks come from
    the CJK font. Without any CJK font one line says so, and matplotlib's missing-glyph
    warnings are silenced: the plots still draw, with boxes for the Chinese characters.
    """
    import matplotlib
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    found = next((name for name in CJK_FONTS if name in installed), None)
    if found is None:
        print(
            "未找到中文字体，图中的汉字会显示为方框（Debian/Ubuntu：apt-get install fonts-noto-cjk）"
            " / no CJK font found: Chinese text in plots shows as boxes"
        )
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        return None
    # A list of families: matplotlib (>= 3.6) takes each glyph from the first family that has it.
    matplotlib.rcParams["font.family"] = [matplotlib.rcParamsDefault["font.sans-serif"][0], found]
    return found


def _from_environment() -> None:
    """A child process started by a Chinese notebook (``LESSON_LANGUAGE=zh_CN``) speaks Chinese too."""
    wanted = os.environ.get("LESSON_LANGUAGE", "en")
    if ALIASES.get(wanted, wanted) != "en":
        try:
            _choose(wanted)
        except (ValueError, FileNotFoundError) as error:
            warnings.warn(f"LESSON_LANGUAGE: {error}; using English", stacklevel=2)


_from_environment()
