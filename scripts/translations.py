"""Keep the message catalogs in step with the code: extract, merge, compile, check.

    python scripts/translations.py          # extract every _() and N_() message with Babel, merge them
                                            # into each language's .po files, compile the .mo files
    python scripts/translations.py --check  # write nothing; fail naming every message that is missing,
                                            # untranslated, fuzzy, has other {placeholders}, or is stale

Messages under ``lesson_utils/exercises/`` (the checkers' feedback) go to the ``exercises``
domain, the rest of ``lesson_utils`` to ``lesson_utils``; each language has one ``.po`` per
domain under ``lesson_utils/locale/<language>/LC_MESSAGES/``. A translator edits the ``.po``
files (new messages arrive with an empty translation), then runs this script again.
"""

from __future__ import annotations

import argparse
import datetime
import gettext
import io
import re
import string
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lesson_utils"
LOCALE = PACKAGE / "locale"
LANGUAGES = ("zh_CN",)
DOMAINS = ("exercises", "lesson_utils")
KEYWORDS = {"_": None, "N_": None}  # N_ marks a message translated later, when it is shown
HEADER = """\
# {language} messages of lesson-utils, domain {domain} (see scripts/translations.py).
# Translate each empty msgstr; keep every {{placeholder}}. Then run `make translations`.
#"""
CHINESE = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")
SAME_IN_CHINESE = {"mmap=True"}  # messages that are code: their Chinese is the English
FIXED_DATE = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)  # no churn in the headers


def domain_of(path: Path) -> str:
    return "exercises" if "exercises" in path.relative_to(PACKAGE).parts else "lesson_utils"


def extract(domains: tuple[str, ...] = DOMAINS, package: Path = PACKAGE) -> dict[str, Catalog]:
    """A template catalog per domain asked for: every marked message with where it is used."""
    templates = {domain: Catalog(project="lesson-utils", domain=domain, fuzzy=False) for domain in domains}
    for path in sorted(package.rglob("*.py")):
        if domain_of(path) not in templates:
            continue
        relative = path.relative_to(package.parent).as_posix()
        for lineno, message, comments, _context in extract_from_file("python", path, keywords=KEYWORDS):
            if isinstance(message, tuple):
                raise SystemExit(f"{relative}:{lineno}: plural messages are not used here")
            templates[domain_of(path)].add(message, locations=[(relative, lineno)], auto_comments=comments)
    return templates


def po_path(language: str, domain: str) -> Path:
    return LOCALE / language / "LC_MESSAGES" / f"{domain}.po"


def placeholders(text: str) -> list[tuple[str, str, str]] | None:
    """The ``{field!conversion:spec}`` fields of a ``str.format`` text, sorted; None if it is malformed."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return None
    return sorted((name, conv or "", spec or "") for _, name, spec, conv in parsed if name is not None)


def problems(language: str, domains: tuple[str, ...] = DOMAINS) -> list[str]:
    """Why ``language``'s catalogs are not complete and compiled ([] when they are)."""
    found = []
    for domain, template in extract(domains).items():
        po = po_path(language, domain)
        if not po.is_file():
            found.append(f"{po.relative_to(ROOT)} is missing: run `make translations`")
            continue
        with po.open("rb") as handle:
            catalog = read_po(handle)
        where = po.relative_to(ROOT)
        for message in template:
            if not message.id:
                continue
            entry = catalog.get(message.id)
            location = ":".join(map(str, message.locations[0]))
            if entry is None:
                found.append(f"{where}: no entry for {message.id!r} ({location}): run `make translations`")
            elif not entry.string:
                found.append(f"{where}: {message.id!r} ({location}) has no translation")
            elif entry.fuzzy:
                found.append(f"{where}: {message.id!r} is marked fuzzy: review the translation, remove the flag")
            elif language == "zh_CN" and not CHINESE.search(entry.string) and message.id not in SAME_IN_CHINESE:
                found.append(f"{where}: the translation of {message.id!r} has no Chinese: {entry.string!r}")
            elif placeholders(entry.string) != placeholders(message.id):
                found.append(f"{where}: the translation of {message.id!r} has other {{placeholders}}: {entry.string!r}")
        stale = [m.id for m in catalog if m.id and m.id not in template]
        if stale:
            found.append(f"{where}: {len(stale)} entries not in the code (e.g. {stale[0]!r}): run `make translations`")
        mo = po.with_suffix(".mo")
        compiled = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
        if not mo.is_file():
            found.append(f"{mo.relative_to(ROOT)} is missing: run `make translations`")
        else:
            with mo.open("rb") as handle:
                have = {k: v for k, v in gettext.GNUTranslations(handle)._catalog.items() if k}
            if have != compiled:
                found.append(f"{mo.relative_to(ROOT)} is older than its .po: run `make translations`")
    return found


def update(language: str, domains: tuple[str, ...] = DOMAINS) -> list[Path]:
    """Merge the extracted messages into ``language``'s .po files and compile them; the files written."""
    written = []
    for domain, template in extract(domains).items():
        po = po_path(language, domain)
        po.parent.mkdir(parents=True, exist_ok=True)
        if po.is_file():
            with po.open("rb") as handle:
                catalog = read_po(handle, locale=language, domain=domain)
        else:
            catalog = Catalog(locale=language, domain=domain, project="lesson-utils")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        catalog.fuzzy = False
        catalog.creation_date = catalog.revision_date = FIXED_DATE
        catalog.project, catalog.version = "lesson-utils", "0"
        catalog.msgid_bugs_address = catalog.last_translator = catalog.language_team = ""
        catalog.header_comment = HEADER.format(domain=domain, language=language)
        for path, write in ((po, write_po), (po.with_suffix(".mo"), write_mo)):
            buffer = io.BytesIO()
            write(buffer, catalog, **({"width": 100} if write is write_po else {}))
            if not path.is_file() or path.read_bytes() != buffer.getvalue():
                path.write_bytes(buffer.getvalue())
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; fail if a catalog is incomplete or stale")
    parser.add_argument("--domain", choices=DOMAINS, action="append", help="only this domain (default: all)")
    args = parser.parse_args(argv)
    domains = tuple(args.domain or DOMAINS)
    if not args.check:
        for language in LANGUAGES:
            for path in update(language, domains):
                print(f"written: {path.relative_to(ROOT)}")
    left = [problem for language in LANGUAGES for problem in problems(language, domains)]
    for problem in left:
        print(problem, file=sys.stderr)
    if left:
        print(f"{len(left)} problems: translate the empty entries in the .po files, then `make translations`",
              file=sys.stderr)  # fmt: skip
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
