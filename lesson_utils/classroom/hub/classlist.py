"""The class list: a CSV with one row per person, which the hub turns into accounts, languages and an admin.

    username,language,role
    teacher,en,teacher
    ada,en,student
    li,zh,student

- ``username``: the name a person logs in with, and the name of their account on this machine
  (a real Unix user, whose home folder is theirs alone): lowercase letters, digits, ``-`` and
  ``_``, starting with a letter, at most 32 characters.
- ``language``: ``en`` or ``zh`` (``zh_CN`` and ``zh-CN`` also do): the edition of the lessons
  handed out to that person, the first notebook their JupyterLab opens, and the language of
  JupyterLab's own interface.
- ``role`` (optional; ``student`` when the column or the cell is empty): ``student`` or
  ``teacher``. Teachers are the hub's admins and get the class's grades in their folder;
  their exercise notebooks are not collected.

The file may come from a spreadsheet (UTF-8, with or without the byte-order mark Excel writes).

Example:
    >>> import io
    >>> members = parse_class(io.StringIO("username,language,role\\nteacher,en,teacher\\nli,zh,\\n"))
    >>> [(m.username, m.language, m.role) for m in members]
    [('teacher', 'en', 'teacher'), ('li', 'zh', 'student')]
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

USERNAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
LANGUAGES = {"en": "en", "zh": "zh", "zh_cn": "zh", "zh-cn": "zh", "zh-hans": "zh"}
ROLES = ("student", "teacher")
COLUMNS = ("username", "language", "role")


class ClassListError(ValueError):
    """The class list cannot be used as it is; the message names the line and what to write instead."""


@dataclass(frozen=True)
class Member:
    """One person of the class."""

    username: str
    language: str  # "en" or "zh"
    role: str  # "student" or "teacher"

    @property
    def is_teacher(self) -> bool:
        return self.role == "teacher"


def parse_class(lines: TextIO, source: str = "the class list") -> list[Member]:
    """The members listed in ``lines`` (CSV text), checked; :class:`ClassListError` says what is wrong."""
    reader = csv.DictReader(lines)
    header = [(name or "").strip().lower() for name in (reader.fieldnames or [])]
    missing = [name for name in COLUMNS[:2] if name not in header]
    if missing:
        found = ", ".join(header) or "nothing"
        raise ClassListError(
            f"{source}: the first line must name the columns username,language[,role]; "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing (found: {found})"
        )
    unknown = [name for name in header if name and name not in COLUMNS]
    if unknown:
        raise ClassListError(f"{source}: unknown column(s) {', '.join(unknown)}: the columns are {', '.join(COLUMNS)}")
    reader.fieldnames = header
    members: list[Member] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        cells = {key: (value or "").strip() for key, value in row.items() if key}
        if not any(cells.values()):
            continue  # a blank line
        username = cells.get("username", "")
        if not USERNAME.fullmatch(username):
            raise ClassListError(
                f"{source}, line {line}: {username!r} cannot be a username: use lowercase letters, digits, '-' "
                "and '_', starting with a letter, at most 32 characters (it is also the student's account here)"
            )
        if username in seen:
            raise ClassListError(f"{source}, line {line}: {username} is listed twice (also on line {seen[username]})")
        seen[username] = line
        language = LANGUAGES.get(cells.get("language", "").lower())
        if language is None:
            raise ClassListError(
                f"{source}, line {line}: {username}'s language is {cells.get('language', '')!r}: write en or zh"
            )
        role = cells.get("role", "").lower() or "student"
        if role not in ROLES:
            raise ClassListError(f"{source}, line {line}: {username}'s role is {role!r}: write student or teacher")
        members.append(Member(username, language, role))
    if not any(not m.is_teacher for m in members):
        raise ClassListError(f"{source}: no student is listed: add one row per student (username,language)")
    return members


def read_class(path: str | Path) -> list[Member]:
    """The members listed in the CSV file ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ClassListError(
            f"{path}: no such file: write the class list as a CSV with the columns username,language,role "
            "(one row per student; see README, 'Teaching a class')"
        )
    with open(path, newline="", encoding="utf-8-sig") as f:
        return parse_class(f, str(path))


def write_class(path: str | Path, members: list[Member]) -> None:
    """Write ``members`` as a class list (the hub keeps its own copy beside its state)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows((m.username, m.language, m.role) for m in members)
