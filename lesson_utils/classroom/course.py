"""Collect, grade and return one lesson's exercises for the class on the hub: one teacher command.

    sudo .venv/bin/python -m lesson_utils.classroom.course 01 [--state /srv/lesson-hub] [-j 2] [--timeout 120]

1. **Collect**: each student's exercise notebook of the lesson (``~/lessons/notebooks/exercises/01_*.ipynb``,
   or the Chinese edition's under ``notebooks/zh/exercises/``) is copied, as it is now, into a new
   folder ``grades/lesson01/<date-time>/submissions/<username>.ipynb`` in the hub's folder: a
   snapshot, the students' files untouched. Read as root but never through a link, and only a
   file the student owns (:mod:`lesson_utils.classroom.userfiles`). A student of the Chinese
   edition has both editions' exercise notebooks: theirs is collected, unless only the English
   one was changed since the hand-out. Who had nothing to collect, or a refused file, is listed.
2. **Grade**: ``python -m lesson_utils.classroom.grade`` on that folder, with ``--sandbox``
   (bubblewrap, ``make sandbox``): this command runs as root, and the grader runs the students'
   code. Without bubblewrap it stops, unless ``--no-sandbox`` says the teacher accepts running
   the students' code as root.
3. **Return**: each student's feedback goes to ``~/feedback/lesson01.md`` in their own folder,
   owned by them (their JupyterLab shows it beside ``lessons/``); a second grading of the lesson
   replaces it. The CSV, the class summary and the grader's log stay in the hub's folder (root
   only), and a copy of the CSV and summary goes to each teacher's ``~/grades/lesson01/``
   (0700: only that teacher). Students can read neither.
"""

from __future__ import annotations

import argparse
import csv
import pwd
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lesson_utils.classroom.hub import handout
from lesson_utils.classroom.hub.classlist import Member
from lesson_utils.classroom.hub.settings import COLLECTION, DEFAULT_STATE, Settings
from lesson_utils.classroom.userfiles import UnsafeFileError, make_private_folder, read_file, write_file

TEACHER_COPIES = ("grades.csv", "summary.md", "summary.png")


def lesson_number(text: str) -> str:
    """``"01"`` from ``"1"``, ``"01"`` or ``"lesson01"``; ``ValueError`` for anything else.

    Example:
        >>> lesson_number("lesson3"), lesson_number("7")
        ('03', '07')
    """
    found = re.fullmatch(r"(?:lesson)?0*(\d{1,2})", str(text).strip().lower())
    if not found:
        raise ValueError(f"{text!r} is not a lesson: give its number, e.g. 01")
    return f"{int(found.group(1)):02d}"


def exercise_notebook(number: str, collection: Path = COLLECTION) -> str:
    """The file name of lesson ``number``'s exercise notebook, e.g. ``01_weights.ipynb``."""
    found = sorted(p.name for p in (collection / "notebooks" / "exercises").glob(f"{number}_*.ipynb"))
    if len(found) != 1:
        known = sorted(p.name[:2] for p in (collection / "notebooks" / "exercises").glob("[0-9][0-9]_*.ipynb"))
        raise ValueError(f"there is no exercise notebook for lesson {number}: choose one of {', '.join(known)}")
    return found[0]


@dataclass
class Collected:
    """What was collected from one student."""

    username: str
    language: str
    status: str  # "collected", "nothing to collect" or "refused"
    notebook: str = ""  # where it was, in their folder
    note: str = ""


def choose(language: str, found: dict[str, bytes], handed: dict[str, bytes | None]) -> str:
    """Which edition's notebook to collect (``found``: the notebooks there, by edition; ``handed``: what
    the hand-out gave): the student's own edition, unless only the other one was changed.

    Example:
        >>> choose("zh", {"zh": b"as handed", "en": b"answered"}, {"zh": b"as handed", "en": b"as handed"})
        'en'
        >>> choose("zh", {"zh": b"answered", "en": b"answered too"}, {"zh": b"x", "en": b"y"})
        'zh'
    """
    if len(found) == 1:
        return next(iter(found))
    changed = [lang for lang, data in found.items() if data != handed.get(lang)]
    return changed[0] if len(changed) == 1 else language


def collect(settings: Settings, members: list[Member], notebook: str, into: Path) -> list[Collected]:
    """Copy each student's ``notebook`` into ``into/<username>.ipynb``; what happened, per student."""
    results = []
    handed = {lang: handout.handed_out(settings.handout, lang, f"{handout.EXERCISES[lang]}/{notebook}")
              for lang in handout.EDITIONS}  # fmt: skip
    for member in members:
        if member.is_teacher:
            continue
        try:
            account = pwd.getpwnam(member.username)
        except KeyError:
            results.append(Collected(member.username, member.language, "nothing to collect", note="no account"))
            continue
        found, refused = {}, []
        for language in dict.fromkeys([member.language, *handout.EDITIONS]):
            path = handout.exercise_path(language, notebook)
            try:
                found[language] = read_file(Path(account.pw_dir), path, account.pw_uid)
            except FileNotFoundError:
                pass
            except UnsafeFileError as error:
                refused.append(str(error))
        if not found:
            status = "refused" if refused else "nothing to collect"
            results.append(Collected(member.username, member.language, status, note="; ".join(refused)))
            continue
        language = choose(member.language, found, handed)
        target = into / f"{member.username}.ipynb"
        target.write_bytes(found[language])
        target.chmod(0o600)
        note = "" if language == member.language else f"the {language} edition's notebook (the only one answered)"
        results.append(Collected(member.username, member.language, "collected",
                                 handout.exercise_path(language, notebook), note))  # fmt: skip
    with open(into.parent / "collected.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["username", "language", "status", "notebook", "note"])
        writer.writerows((c.username, c.language, c.status, c.notebook, c.note) for c in results)
    return results


def grade(submissions: Path, out: Path, number: str, jobs: int, timeout: float, sandbox: bool) -> int:
    """Run the grader on ``submissions`` (its output on this console); its exit code."""
    command = [sys.executable, "-m", "lesson_utils.classroom.grade", str(submissions), "--out", str(out / "grades.csv"),
               "--lesson", number, "-j", str(jobs), "--timeout", str(timeout)]  # fmt: skip
    if sandbox:
        command.append("--sandbox")
    return subprocess.run(command).returncode


def give_back(members: list[Member], number: str, out: Path, collected: list[Collected]) -> list[str]:
    """Each graded student's feedback into their ``~/feedback/lessonNN.md``, the CSV and summary into each
    teacher's ``~/grades/lessonNN/``; the students who got feedback."""
    returned = []
    for item in collected:
        feedback = out / "feedback" / f"{item.username}.md"
        if item.status != "collected" or not feedback.is_file():
            continue
        account = pwd.getpwnam(item.username)
        write_file(Path(account.pw_dir), f"feedback/lesson{number}.md", feedback.read_bytes(),
                   account.pw_uid, account.pw_gid)  # fmt: skip
        returned.append(item.username)
    for member in members:
        if member.is_teacher:
            account = pwd.getpwnam(member.username)
            home, folder = Path(account.pw_dir), f"grades/lesson{number}"
            make_private_folder(home, folder, account.pw_uid, account.pw_gid)
            for source in [out / name for name in TEACHER_COPIES] + [out.parent / "collected.csv"]:
                if source.is_file():
                    write_file(home, f"{folder}/{source.name}", source.read_bytes(), account.pw_uid,
                               account.pw_gid, mode=0o600)  # fmt: skip
    return returned


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lesson_utils.classroom.course", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("lesson", help="the lesson whose exercises to collect, e.g. 01")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="the hub's folder (default: %(default)s)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="notebooks graded at once (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per notebook (default: %(default)s)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="grade without bubblewrap: the students' code then runs as root")  # fmt: skip
    parser.add_argument("--no-return", action="store_true", help="collect and grade, but hand nothing back yet")
    args = parser.parse_args(argv)
    try:
        number = lesson_number(args.lesson)
        notebook = exercise_notebook(number)
        settings = Settings.load(args.state)
        members = settings.members()
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    sandbox = shutil.which("bwrap") is not None
    if not sandbox and not args.no_sandbox:
        parser.error(
            "bubblewrap is missing (`make sandbox` installs it): this command runs as root and the grader runs the "
            "students' code, which without the sandbox would run as root too. Install it, or pass --no-sandbox "
            "if you accept that"
        )
    run = settings.grades / f"lesson{number}" / time.strftime("%Y%m%d-%H%M%S")
    submissions, out = run / "submissions", run / "grades"
    submissions.mkdir(parents=True, mode=0o700)
    out.mkdir(mode=0o700)
    for folder in (run.parent, run):
        folder.chmod(0o700)
    collected = collect(settings, members, notebook, submissions)
    taken = [c.username for c in collected if c.status == "collected"]
    print(f"collected {len(taken)} of {len(collected)} students' {notebook} into {submissions}")
    for item in collected:
        if item.status != "collected" or item.note:
            print(f"  {item.username}: {item.status}{': ' + item.note if item.note else ''}")
    if not taken:
        sys.exit("nothing to grade: no student has opened this lesson's exercises yet")
    code = grade(submissions, out, number, args.jobs, args.timeout, sandbox and not args.no_sandbox)
    if code != 0:
        sys.exit(f"the grader stopped with exit code {code}: nothing was returned (see {out / 'grade.log'})")
    if args.no_return:
        print(f"grades in {out}; nothing returned (--no-return)")
        return
    returned = give_back(members, number, out, collected)
    teachers = [m.username for m in members if m.is_teacher]
    print(
        f"returned: ~/feedback/lesson{number}.md to {len(returned)} student(s); grades kept in {out}"
        + (f" and copied to ~/grades/lesson{number}/ of {', '.join(teachers)}" if teachers else "")
    )


if __name__ == "__main__":
    main()
