"""Grade a class's exercise notebooks: a CSV, a feedback file per student, a class summary.

    python -m lesson_utils.classroom.grade SUBMISSIONS --out grades/grades.csv [--lesson 03] [-j 2]
                                 [--timeout 120] [--resume] [--sandbox]

``SUBMISSIONS`` holds one ``.ipynb`` per student, or one folder per student (its notebook and
the files it reads), read without following any symbolic link. Each notebook runs in a fresh
kernel, in a fresh working folder holding only its own files, under a time limit, in a worker
process of its own (:mod:`lesson_utils.classroom.grade_worker`). The grade comes from the notebook's
*final state*: the kernel only exports the values the questions name
(:mod:`lesson_utils.classroom.export`), the worker adds what it reads from outside the kernel (the
files, which memory is a file's: :mod:`lesson_utils.classroom.outside`), and once the kernel and
everything it started are gone, a judge process that never ran notebook code rebuilds the objects
and runs the checkers (:mod:`lesson_utils.classroom.judge`); not what ``check()`` printed, and
nothing computed in the student's process. Each row is written to the CSV as soon as its notebook is graded;
``--resume`` skips the rows already there. Beside the CSV: ``feedback/<student>.md``,
``summary.md`` and ``summary.png`` (per-question success rates, totals by status), and
``grade.log`` (every kernel's warnings and tracebacks, kept off the console).

WARNING: without ``--sandbox`` the students' code runs as the user running the grader, with
that user's files and network; the grader restores the submissions and the course package if
a notebook changes them and flags it, but cannot stop it. ``--sandbox`` (bubblewrap) can.

Example:
    >>> classify(b"", "alice.ipynb")
    ('empty file', 'the file is empty (0 bytes)', None)
"""

from __future__ import annotations

import argparse
import collections
import compileall
import csv
import hashlib
import hmac
import importlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from tqdm.auto import tqdm

from lesson_utils import i18n
from lesson_utils.classroom import grade_probe, grade_worker
from lesson_utils.classroom.judge import Judges
from lesson_utils.i18n import N_
from lesson_utils.numerics import numeric_environment
from lesson_utils.processes import run

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # lesson_utils/, the course package
LESSON_IMPORT = re.compile(r"lesson_utils\.exercises(?:\s+import\s+|\.)(lesson\d\d)\b")
FIXED_COLUMNS = ["file", "student", "lesson", "language", "status", "reason", "points", "max points", "percent",
                 "needs review"]  # fmt: skip
NOT_GRADED = ("empty file", "not a notebook", "symbolic link", "no code", "wrong lesson", "stopped the grader")
# the statuses a feedback file names, marked for the catalogs: a Chinese notebook's feedback is in Chinese
STATUSES = (N_("graded"), N_("ran with errors"), N_("timed out"), N_("grading failed"), N_("grader stopped"),
            N_("not json"), N_("empty file"), N_("not a notebook"), N_("symbolic link"), N_("no code"),
            N_("wrong lesson"), N_("stopped the grader"), N_("correct"), N_("incorrect"), N_("not attempted"),
            N_("not graded"), N_("no result"))  # fmt: skip
TITLE = N_("{student}: {lesson}")
POINTS = N_("**{points} of {total} points** ({percent}%). Status: {status}.")
QUESTION = N_("{question}: {status} ({points} of {total})")
HINT = N_("Hint: {hint}")
SAID_CORRECT = N_(" (check() had said correct; the final state is {status})")


def classify(data: bytes, name: str, lesson: str | None = None) -> tuple[str, str, str | None]:
    """(status, reason, detected lesson) before running anything; status "run" when it should run.

    A notebook that imports the lesson given (``lesson``, the teacher's ``--lesson``) is run as that lesson,
    whatever else it imports; one that imports only other lessons' exercises is "wrong lesson".

    Example:
        >>> classify(b"not json", "bob.ipynb")[0]
        'not a notebook'
    """
    if not data:
        return "empty file", "the file is empty (0 bytes)", None
    try:
        notebook = nbformat.reads(data.decode("utf-8-sig"), as_version=4)
    except Exception as error:
        kind = "" if name.endswith(".ipynb") else f"{shown(name)} is not a .ipynb file; "
        return "not a notebook", f"{kind}it does not read as a notebook ({type(error).__name__})", None
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()]
    if not code:
        return "no code", "the notebook has no code cells with code in them", None
    found = collections.Counter(m for source in code for m in LESSON_IMPORT.findall(source))
    detected = found.most_common(1)[0][0] if found else None
    if lesson and found and lesson not in found:  # one import of the teacher's lesson is enough: --lesson decides
        return "wrong lesson", f"this is a {detected} notebook; this class is graded for {lesson}", detected
    return "run", "", lesson if lesson in found else detected


def submissions_in(folder: Path) -> dict[str, Path]:
    """``{name: path}``: every visible entry of ``folder`` (files, one student's folders, links: nothing followed)."""
    return {p.name: p for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def shown(name: str) -> str:
    """A file name as text a CSV can hold: bytes that are not UTF-8 written as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def file_name(stem: str, suffix: str) -> str:
    """``stem + suffix``, cut to the 255 bytes a file name may have (with a hash of the whole, so it stays unique).

    Example:
        >>> len(file_name("x" * 300, ".ipynb").encode()), file_name("alice", ".md")
        (255, 'alice.md')
    """
    whole = stem + suffix
    if len(os.fsencode(whole)) <= 255:
        return whole
    digest = hashlib.sha256(os.fsencode(stem)).hexdigest()[:12]
    cut = os.fsencode(stem)[: 255 - len(os.fsencode(suffix)) - len(digest) - 1]
    return f"{cut.decode('utf-8', 'ignore')}-{digest}{suffix}"


def read_regular(path: str | os.PathLike) -> bytes:
    """The content of a regular file, opened without following a link (a link or a pipe raises ``OSError``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # O_NONBLOCK: a named pipe must not hang us
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return f.read()


@dataclass
class Submission:
    """One entry of the submissions folder, read without following any symbolic link."""

    data: bytes = b""
    folder: Path | None = None  # a student's own folder: its other files go to the working folder
    refused: tuple[str, str] | None = None  # (status, reason) when it is not run
    links: list[str] = field(default_factory=list)  # links inside the folder, "path -> target": never followed


def read_submission(path: Path) -> Submission:
    """A submission as it lies on disk. A link is never followed (the grader may run as root: a link could
    take a classmate's notebook or a file the student cannot read): a linked submission is refused, and
    the links in a student's folder are listed, to be left out of the copy and flagged."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        reason = f"it is a symbolic link (to {os.readlink(path)}), which the grader does not follow: hand in the file"
        return Submission(refused=("symbolic link", reason))
    if stat.S_ISDIR(mode):
        notebooks, links = [], []
        for root, dirs, files in os.walk(path):  # never enters a linked folder
            for name in sorted(dirs + files):
                inside = Path(root, name)
                if inside.is_symlink():
                    links.append(f"{inside.relative_to(path)} -> {os.readlink(inside)}")
                elif name.endswith(".ipynb") and stat.S_ISREG(inside.lstat().st_mode):
                    notebooks.append(inside)
        if len(notebooks) == 1:
            return Submission(read_regular(notebooks[0]), path, links=links)
        linked = [link for link in links if link.split(" -> ")[0].endswith(".ipynb")]
        if not notebooks and linked:
            reason = f"its notebook is a symbolic link ({linked[0]}), which the grader does not follow: hand it in"
            return Submission(folder=path, refused=("symbolic link", reason), links=links)
        reason = f"the folder holds {len(notebooks)} notebooks; one was expected"
        return Submission(folder=path, refused=("not a notebook", reason), links=links)
    if not stat.S_ISREG(mode):
        return Submission(refused=("not a notebook", "it is not a regular file (a pipe, socket or device)"))
    return Submission(read_regular(path))


def copy_submission(source: Path, target: Path) -> None:
    """Copy a student's folder into ``target``, all but its notebooks, links and special files (none followed)."""
    for root, dirs, files in os.walk(source):
        inside = Path(target, os.path.relpath(root, source))
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                (inside / name).mkdir(exist_ok=True)
        for name in files:
            mode = os.lstat(os.path.join(root, name)).st_mode
            if stat.S_ISREG(mode) and not name.endswith(".ipynb"):
                (inside / name).write_bytes(read_regular(os.path.join(root, name)))
                os.chmod(inside / name, stat.S_IMODE(mode))


def entry_state(path: str | os.PathLike) -> tuple | None:
    """``("file", content, mode)``, ``("link", target, 0)`` or None (nothing, a folder, a pipe): never followed."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            return ("link", os.readlink(path), 0)
        if stat.S_ISREG(mode):
            return ("file", read_regular(path), stat.S_IMODE(mode))
    except FileNotFoundError:
        pass
    return None


def tree_bytes(folder: Path, caches: bool = False) -> dict[str, tuple]:
    """Every file and link under ``folder`` (``__pycache__`` too if ``caches``): path to :func:`entry_state`.

    Links are recorded as links, never followed. The package's ``__pycache__`` counts: a planted ``.pyc``
    with the source's time stamp would run instead of the source. The grader compiles the package first and
    kernels and workers write no bytecode (``PYTHONDONTWRITEBYTECODE``), so any change there is a notebook's doing.
    """
    found = {}
    for root, dirs, files in os.walk(folder):
        if not caches:
            dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in dirs + files:
            path = os.path.join(root, name)
            entry = entry_state(path)
            if entry is not None:
                found[path] = entry
    return dict(sorted(found.items()))


def startup_files() -> dict[str, tuple]:
    """Files that Python, IPython or Jupyter run or read when a process starts: a notebook that plants
    one would run code in every later kernel (``.pth`` and ``sitecustomize`` files in site-packages,
    IPython startup files and configs, Jupyter kernel specs and configs). Links are recorded, not followed."""
    import site

    from jupyter_core.paths import jupyter_config_path, jupyter_path

    candidates: list[Path] = []
    for folder in map(Path, [*site.getsitepackages(), site.getusersitepackages()]):
        if folder.is_dir():
            candidates += [
                p for p in folder.iterdir() if p.suffix == ".pth" or p.stem in ("sitecustomize", "usercustomize")
            ]
    for folder in map(Path, [*jupyter_path("kernels"), *jupyter_config_path()]):
        if folder.is_dir():
            candidates += list(folder.rglob("*"))
    ipython = Path(os.environ.get("IPYTHONDIR", Path.home() / ".ipython"))
    candidates += [*ipython.glob("profile_*/startup/*"), *ipython.glob("profile_*/*.py")]
    found = {str(p): entry_state(p) for p in sorted(set(candidates))}
    return {path: entry for path, entry in found.items() if entry is not None}


def restore_files(saved: dict[str, tuple], now: dict[str, tuple]) -> list[str]:
    """Put back what changed or went (content, mode, link), delete what appeared; the paths concerned.

    A path is replaced, never written through: a link a notebook put there is removed, not followed.
    """
    changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    for key in changed:  # sorted: a folder's link is replaced before anything under it
        parent = os.path.dirname(key)
        parent_mode = os.stat(parent).st_mode if os.path.isdir(parent) else None
        if parent_mode is not None and not os.access(parent, os.W_OK):  # the submissions are read-only while grading
            os.chmod(parent, parent_mode | stat.S_IWUSR)
        try:
            if os.path.isdir(key) and not os.path.islink(key):
                shutil.rmtree(key)  # a folder where a file was
            elif os.path.lexists(key):
                os.unlink(key)  # a link itself, never its target
            entry = saved.get(key)
            if entry is None:
                continue
            os.makedirs(parent, exist_ok=True)
            kind, content, mode = entry
            if kind == "link":
                os.symlink(content, key)
                continue
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                os.fchmod(f.fileno(), mode)  # its own mode, as it was
        finally:
            if parent_mode is not None and os.stat(parent).st_mode != parent_mode:
                os.chmod(parent, stat.S_IMODE(parent_mode))
    return changed


def _chmod_here(path: str, mode: int) -> None:
    """Change the mode of ``path`` itself: a link is left alone (Linux links have no mode of their own)."""
    try:
        os.chmod(path, mode, follow_symlinks=False)
    except NotImplementedError:  # a link (or a system without fchmodat's no-follow flag)
        if not os.path.islink(path):
            os.chmod(path, mode)


def make_read_only(folder: Path) -> dict[str, int]:
    """Take away write permission under ``folder`` (the kernels' user cannot change it, unless root); the modes
    it had, for :func:`give_back_modes`. Links, and what they point to, are left alone."""
    paths = [str(folder)]
    for root, dirs, files in os.walk(folder):  # never enters a linked folder
        paths += [os.path.join(root, name) for name in dirs + files]
    modes = {}
    for path in paths:
        mode = os.lstat(path).st_mode
        if not stat.S_ISLNK(mode):
            modes[path] = stat.S_IMODE(mode)
            _chmod_here(path, stat.S_IMODE(mode) & ~0o222)
    return modes


def give_back_modes(modes: dict[str, int]) -> None:
    """Give each path the mode :func:`make_read_only` found (a path that is now a link is left alone)."""
    for path, mode in modes.items():
        if os.path.lexists(path) and not os.path.islink(path):
            _chmod_here(path, mode)


def spreadsheet_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: one that starts with ``= + - @`` (a formula), a tab, a carriage
    return or ``'`` gets a ``'`` in front (:func:`from_spreadsheet_cell` takes it off again).

    Example:
        >>> spreadsheet_cell("=1+2.ipynb"), spreadsheet_cell("alice.ipynb"), spreadsheet_cell(3)
        ("'=1+2.ipynb", 'alice.ipynb', 3)
    """
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r", "'"):
        return "'" + value
    return value


def from_spreadsheet_cell(value: str) -> str:
    """The value :func:`spreadsheet_cell` was given."""
    return value[1:] if value.startswith("'") else value


class Lesson:
    """The questions of one lesson, their points and hints (from the grader's own installation)."""

    def __init__(self, name: str) -> None:
        self.name = name
        if not re.fullmatch(r"lesson\d\d", name) or not (PACKAGE_DIR / "exercises" / f"{name}.py").is_file():
            known = sorted(p.stem for p in (PACKAGE_DIR / "exercises").glob("lesson[0-9][0-9].py"))
            raise ValueError(f"there are no exercises for {name!r}: --lesson takes one of {', '.join(known)}")
        module = importlib.import_module(f"lesson_utils.exercises.{name}")
        questions = [v for v in vars(module).values() if hasattr(v, "qid") and hasattr(v, "evaluate")]
        self.questions = sorted(questions, key=lambda q: int(q.qid.rsplit(".q", 1)[1]))
        points = getattr(module, "POINTS", {})
        self.points = {q.qid: points.get(q.qid.rsplit(".", 1)[1], 1) for q in self.questions}
        # the variables the kernel exports: the questions' names (folders copied whole) and optional names
        self.names = sorted({n for q in self.questions for n in q.names})
        self.optional = sorted({n for q in self.questions for n in q.optional} - set(self.names))

    def columns(self) -> list[str]:
        return [
            c
            for q in self.questions
            for c in (self.short(q.qid), f"{self.short(q.qid)} points", f"{self.short(q.qid)} message")
        ]

    @staticmethod
    def short(qid: str) -> str:
        return qid.rsplit(".", 1)[1]


class Grader:
    """Grades a folder into ``out`` (a CSV) and the reports beside it."""

    def __init__(
        self, folder: Path, out: Path, lesson: str | None, timeout: float, jobs: int, resume: bool, sandbox: dict | None
    ) -> None:
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} is not a folder of submissions: give the folder that holds the .ipynb files"
            )
        self.folder, self.out, self.timeout, self.jobs, self.sandbox = folder, out, timeout, jobs, sandbox
        self.submissions = {}
        for name, path in submissions_in(folder).items():
            try:
                self.submissions[name] = read_submission(path)
            except OSError as error:  # unreadable: that submission's row says so, the class goes on
                self.submissions[name] = Submission(refused=("not a notebook", f"it cannot be read ({error})"))
        self.classified = {name: classify(s.data, name) for name, s in self.submissions.items()}
        if lesson is None:
            counts = collections.Counter(c[2] for c in self.classified.values() if c[2])
            if not counts:
                raise ValueError(f"no exercise notebook in {folder} imports lesson_utils.exercises: pass --lesson NN")
            lesson = counts.most_common(1)[0][0]
        self.lesson = Lesson(f"lesson{int(lesson):02d}" if str(lesson).isdigit() else str(lesson))
        self.classified = {
            n: (*s.refused, None) if s.refused else classify(s.data, n, self.lesson.name)
            for n, s in self.submissions.items()
        }
        self.columns = FIXED_COLUMNS + self.lesson.columns()
        self.lock = threading.Lock()
        self.journal = out.with_suffix(".journal")
        self.log = out.parent / "grade.log"
        self.feedback = out.parent / "feedback"
        self.done = self._read_done() if resume else {}
        self.stops = self._read_stops() if resume else collections.defaultdict(list)
        for module in ("torch", "safetensors.torch", "lesson_utils.checkpoint", "lesson_utils.memory"):
            importlib.import_module(module)  # so that every watched name resolves here as in a kernel
        self.fingerprints = {name: grade_probe.fingerprint(grade_probe.resolve(name)) for name in grade_probe.WATCHED}

    # -- the files it writes ---------------------------------------------------------------------------
    def _read_done(self) -> dict[str, dict]:
        if not self.out.is_file():
            return {}
        with open(self.out, newline="", encoding="utf-8-sig") as f:
            rows = [{k: from_spreadsheet_cell(v or "") for k, v in row.items()} for row in csv.DictReader(f)]
        return {row["file"]: row for row in rows}

    def _read_stops(self) -> dict[str, list[bool]]:
        """For each notebook started and never finished (the grader stopped meanwhile): was it alone, each time?"""
        stops = collections.defaultdict(list)
        if self.journal.is_file():
            for line in filter(None, self.journal.read_text().splitlines()):
                entry = json.loads(line)
                stops[entry["file"]].append(entry.get("alone", True))
        return stops

    def _start_files(self, resume: bool) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.feedback.mkdir(exist_ok=True)
        if not (resume and self.out.is_file()):
            with open(self.out, "w", newline="", encoding="utf-8-sig") as f:  # the BOM: Excel reads UTF-8 then
                csv.writer(f).writerow(self.columns)
            self.journal.write_text("")
            self.log.write_text("")

    def write_row(self, row: dict, flags: list[str]) -> None:
        """Append ``row``; if the CSV is not what the grader wrote, put it back first and flag this notebook."""
        with self.lock:
            if self.out.read_bytes() != self.csv_bytes:
                self.out.write_bytes(self.csv_bytes)
                flags.append("the grades file changed while it ran (restored)")
                row["needs review"] = "; ".join(filter(None, [row.get("needs review"), flags[-1]]))
            with open(self.out, "a", newline="", encoding="utf-8") as f:  # a cell is never read as a formula
                cells = {k: spreadsheet_cell(row.get(k, "")) for k in self.columns}
                csv.DictWriter(f, fieldnames=self.columns).writerow(cells)
                f.flush()
                os.fsync(f.fileno())
            self.csv_bytes = self.out.read_bytes()
        write_feedback(self.feedback / file_name(row["student"], ".md"), row, self.lesson)

    # -- one submission --------------------------------------------------------------------------------
    def grade(self, name: str, alone: bool) -> dict:
        """Grade one submission; ``alone``: no other notebook runs meanwhile, so a stop of the grader is its own."""
        submission = self.submissions[name]
        status, reason, detected = self.classified[name]
        student = shown(name).removesuffix(".ipynb")  # "erin.txt" stays "erin.txt": no two feedback files collide
        row = {"file": shown(name), "student": student, "lesson": detected or "", "status": status, "reason": reason}
        flags = []
        if status == "symbolic link":
            flags.append("a symbolic link was handed in (not followed)")
        if submission.links:
            links = ", ".join(submission.links[:5]) + (", ..." if len(submission.links) > 5 else "")
            flags.append(f"symbolic links in the submission, not followed or copied: {links}")
        stops = self.stops[name]
        if status == "run" and len(stops) >= 2 and any(stops):  # any(): once with no other notebook beside it
            status = row["status"] = "stopped the grader"
            row["reason"] = (
                "the grader stopped twice while this notebook ran, once with no other notebook running; "
                "it was not run again"
            )
            row["needs review"] = row["reason"]
        if status != "run":
            return self.finish(row, flags)
        with self.lock, open(self.journal, "a") as f:
            f.write(json.dumps({"file": name, "alone": alone}) + "\n")
        workdir = Path(tempfile.mkdtemp(prefix="grade-work-"))
        private = Path(tempfile.mkdtemp(prefix="grade-private-"))  # the kernel cannot see it with --sandbox
        (private / "exports").mkdir()
        tag = secrets.token_hex(16)
        try:
            if submission.folder is not None:
                copy_submission(submission.folder, workdir)
            notebook = workdir / file_name(name.removesuffix(".ipynb"), ".ipynb")
            notebook.write_bytes(submission.data)
            params = {
                "notebook": str(notebook),
                "workdir": str(workdir),
                "lesson": self.lesson.name,
                "timeout": self.timeout,
                "probe_timeout": 60,
                "fingerprints": self.fingerprints,
                "names": self.lesson.names,
                "optional": self.lesson.optional,
                "exports": str(private / "exports"),
                "tag": tag,
                "sandbox": self.sandbox,
                # the numeric profile (one thread, pinned kernels), as the stored outputs were made:
                # a replay in the kernel gives the bits the notebook's author saw, on any machine
                "kernel_env": numeric_environment(),
            }
            (private / "params.json").write_text(json.dumps(params))
            output, result = "", {"status": "grading failed", "reason": "the grading process did not start"}
            overran = False
            env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}
            key = secrets.token_hex(32)
            try:
                finished = run(
                    [sys.executable, "-m", "lesson_utils.classroom.grade_worker", str(private / "params.json")],
                    timeout=self.timeout + 240,
                    env=env,
                    cwd=private,
                    input=key + "\n",
                )
                output, result = finished.output, self._verified(finished.results.get("row"), key)
                if finished.returncode != 0:  # killed: the row holds what the last probe found, if any
                    result = result or {"status": "grader stopped", "reason": grade_worker.KILLED, "results": []}
                    result["flags"] = [
                        *result.get("flags", []),
                        f"{grade_worker.KILLED} (exit code {finished.returncode})",
                    ]
            except TimeoutError as error:
                overran = True
                output, result = (
                    str(error),
                    {
                        "status": "timed out",
                        "reason": f"the grading process itself ran past {self.timeout + 240:g} s; stopped",
                        "flags": [],
                    },
                )
            leftover = grade_worker.kill_leftovers(tag, children=False)  # what a killed worker could not stop
            # only now, with the kernel and everything it started gone: the judge, on the latest complete export
            export = self._export(result, private, flags, latest=overran)
            judged = self.judges.judge(self.lesson.name, export, [q.qid for q in self.lesson.questions])
        finally:
            grade_worker.kill_leftovers(tag, children=False)
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(private, ignore_errors=True)
        with self.lock, open(self.log, "a", encoding="utf-8") as f:
            f.write(f"===== {shown(name)}\n{output.strip()}\n")
        row.update(status=result["status"], reason=result.get("reason", ""), language=judged.get("language", ""))
        flags += result.get("flags", []) + judged.get("flags", [])
        if leftover:
            flags.append(f"{leftover} process(es) outlived the grading process (killed)")
        row["_results"], row["_reported"] = judged.get("results", []), result.get("reported", {})
        return self.finish(row, flags)

    @staticmethod
    def _export(result: dict, private: Path, flags: list[str], latest: bool = False) -> str | None:
        """The export folder to judge: the one the worker's (signed) row names, if it is one of this notebook's
        complete exports and holds exactly the files whose hashes the row gives; with ``latest`` (the worker ran
        past its time and wrote no row), the latest complete one."""
        from lesson_utils.classroom.outside import manifest

        named = result.get("export")
        exports = private / "exports"
        if isinstance(named, str):
            folder = Path(named)
            if folder.parent != exports or not (folder / grade_worker.COMPLETE).is_file():
                return None
            if manifest(folder) != result.get("export_hashes"):
                flags.append("the answers exported for grading changed after the grading process read them (by the "
                             "notebook?): not graded")  # fmt: skip
                return None
            return str(folder)
        if not latest:
            return None
        found = [p for p in exports.iterdir() if p.name.isdigit() and (p / grade_worker.COMPLETE).is_file()]
        found = [p for p in found if not (p / grade_worker.SETUP_MARK).exists()]
        return str(max(found, key=lambda p: int(p.name))) if found else None

    @staticmethod
    def _verified(signed: dict | None, key: str) -> dict | None:
        """The worker's row if its HMAC holds; else a row saying that something else wrote it."""
        if signed is None:
            return None
        text = json.dumps(signed.get("row"), sort_keys=True)
        if not hmac.compare_digest(str(signed.get("mac")), hmac.new(key.encode(), text.encode(), "sha256").hexdigest()):
            return {"status": "grading failed", "reason": "the grading result was not written by the grader",
                    "flags": ["the grading process's result file was replaced (by the notebook?)"]}  # fmt: skip
        return signed["row"]

    def failed(self, name: str, error: Exception) -> dict:
        """The row of a submission the grader itself failed on: the class goes on, the row says what happened."""
        import traceback

        with self.lock, open(self.log, "a", encoding="utf-8") as f:
            f.write(f"===== {shown(name)}\n{traceback.format_exc()}\n")
        reason = f"the grader failed on this submission: {type(error).__name__}: {error}"[:500]
        row = {"file": shown(name), "student": shown(name).removesuffix(".ipynb"), "lesson": ""}
        row.update(status="grading failed", reason=reason)
        return self.finish(row, ["the grader failed on this submission (see grade.log): grade it by hand"])

    def finish(self, row: dict, flags: list[str]) -> dict:
        shared = len(flags)
        with self.lock:  # one check at a time; with -j 1, the notebook that changed something is the one flagged
            watched = [  # what every notebook shares: put back as it was, and say so
                ("the submissions folder", self.saved_submissions, tree_bytes(self.folder), self.folder),
                ("the course package", self.saved_package, tree_bytes(PACKAGE_DIR, caches=True), PACKAGE_DIR),
                ("files run when Python or Jupyter start", self.saved_startup, startup_files(), None),
            ]
            for what, saved, now, base in watched:
                changed = [os.path.relpath(p, base) if base else p for p in restore_files(saved, now)]
                if changed:
                    flags.append(f"{what} changed while it ran ({', '.join(changed[:5])}); restored")
            if self.jobs > 1:
                flags[shared:] = [f"{flag} (with -j {self.jobs}: this notebook, or one graded at the same time)"
                                  for flag in flags[shared:]]  # fmt: skip
        results = {r["question"]: r for r in row.pop("_results", [])}
        reported = row.pop("_reported", {})
        total = sum(self.lesson.points.values())
        earned = 0
        for q in self.lesson.questions:
            short = self.lesson.short(q.qid)
            result = results.get(
                q.qid, {"status": "not graded" if row["status"] in NOT_GRADED else "no result", "message": ""}
            )
            points = self.lesson.points[q.qid] if result["status"] == "correct" else 0
            earned += points
            row[short], row[f"{short} points"], row[f"{short} message"] = result["status"], points, result["message"]
            if reported.get(q.qid) == "correct" and result["status"] != "correct":
                t = translator_for(row)
                row[f"{short} message"] += t(SAID_CORRECT).format(status=t(result["status"]))
        row.update({"points": earned, "max points": total, "percent": round(100 * earned / total, 1) if total else 0})
        row["needs review"] = "; ".join(([row["needs review"]] if row.get("needs review") else []) + flags)
        self.write_row(row, flags)
        return row

    # -- the class -------------------------------------------------------------------------------------
    def run(self, resume: bool) -> list[dict]:
        grade_worker.make_undumpable()  # the keys that sign the workers' rows: no kernel of this user reads them here
        self._start_files(resume)
        self.csv_bytes = self.out.read_bytes()
        compileall.compile_dir(PACKAGE_DIR, quiet=2)  # every .pyc there now; kernels and workers write none
        sys.dont_write_bytecode = True  # so from now on a new or changed .pyc in the package is a notebook's doing
        modes = make_read_only(self.folder)  # given back at the end, each path its own mode
        self.saved_submissions = tree_bytes(self.folder)
        self.saved_package = tree_bytes(PACKAGE_DIR, caches=True)
        self.saved_startup = startup_files()
        todo = [name for name in self.submissions if shown(name) not in self.done]
        # the grader stopped while these ran: graded first, one at a time, so that a stop is blamed on its notebook
        suspects = [name for name in todo if self.stops[name]]
        others = [name for name in todo if not self.stops[name]]
        rows = list(self.done.values())
        bar = tqdm(total=len(todo), desc="grading", unit="notebook")
        running: set[str] = set()

        def one(name: str, alone: bool) -> dict:
            with self.lock:
                running.add(shown(name))
                bar.set_postfix_str(", ".join(sorted(running))[:60])
            try:
                return self.grade(name, alone)
            except Exception as error:  # one submission never stops the class
                return self.failed(name, error)
            finally:
                with self.lock:
                    running.discard(shown(name))
                    bar.update()
                    bar.set_postfix_str(", ".join(sorted(running))[:60])

        # one judge for every 4 slots (judging is short); with --sandbox, each may allocate what a kernel may
        memory = self.sandbox["memory"] if self.sandbox else None
        self.judges = Judges(-(-self.jobs // 4), self.log, memory=memory)
        try:
            if todo:
                self.judges.warm()  # the judges start before any kernel: no notebook ran when they did
            rows += [one(name, True) for name in suspects]
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                rows += list(pool.map(one, others, [self.jobs == 1] * len(others)))
        finally:
            bar.close()
            self.judges.close()
            give_back_modes(modes)
        for row in rows:  # a notebook may have rewritten someone's feedback: write them all from our own record
            if row.get("student") and row.get("q1") is not None:
                write_feedback(self.feedback / file_name(row["student"], ".md"), row, self.lesson)
        write_summary(self.out.parent, rows, self.lesson)
        return rows


def translator_for(row: dict) -> object:
    """The ``_`` of the row's language (the notebook's ``set_language``); English if none or unknown."""
    language = row.get("language")
    return i18n.translator(language if language in i18n.LANGUAGES else "en")


def write_feedback(path: Path, row: dict, lesson: Lesson) -> None:
    """A student's feedback: the status, then each question's result, the checker's message and a hint; in
    the language the notebook chose with ``set_language`` (the row's ``language``), English if none."""
    t = translator_for(row)
    points = t(POINTS).format(
        points=row["points"], total=row["max points"], percent=row["percent"], status=t(row["status"])
    )
    lines = [
        "# " + t(TITLE).format(student=row["student"], lesson=lesson.name),
        "",
        points + (f" {row['reason']}" if row.get("reason") else ""),
        "",
    ]
    for q in lesson.questions:
        short = lesson.short(q.qid)
        heading = t(QUESTION).format(
            question=short, status=t(row[short]), points=row[f"{short} points"], total=lesson.points[q.qid]
        )
        lines += [f"## {heading}", ""]
        if row[f"{short} message"]:
            lines += [row[f"{short} message"], ""]
        if row[short] != "correct":
            lines += [t(HINT).format(hint=t(q._hint)), ""]
    if path.is_symlink() or (path.exists() and not path.is_file()):  # put there by a notebook: never written through
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    path.write_text("\n".join(lines), encoding="utf-8")


def write_summary(folder: Path, rows: list[dict], lesson: Lesson) -> str:
    """``summary.md`` and ``summary.png``: success rate per question, totals by status; the markdown, printed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [r for r in rows if r["status"] not in NOT_GRADED]
    lines = [
        f"# {lesson.name}: {len(rows)} submissions",
        "",
        "| question | correct | of | success rate |",
        "|---|---|---|---|",
    ]
    rates = {}
    for q in lesson.questions:
        short = lesson.short(q.qid)
        correct = sum(r[short] == "correct" for r in ran)
        rates[short] = 100 * correct / len(ran) if ran else 0.0
        lines.append(f"| {short} | {correct} | {len(ran)} | {rates[short]:.0f}% |")
    lines += ["", "| status | submissions |", "|---|---|"]
    for status, count in collections.Counter(r["status"] for r in rows).most_common():
        lines.append(f"| {status} | {count} |")
    review = [r for r in rows if r.get("needs review")]
    lines += ["", f"Needs review: {len(review)}" + (": " + ", ".join(r["file"] for r in review) if review else "")]
    text = "\n".join(lines) + "\n"
    (folder / "summary.md").write_text(text, encoding="utf-8")
    fig, ax = plt.subplots(figsize=(1.2 * len(rates) + 2, 3))
    ax.bar(list(rates), list(rates.values()), color="tab:blue")
    ax.set_ylim(0, 100)
    ax.set_ylabel("correct (% of notebooks run)")
    ax.set_title(f"{lesson.name}: {len(ran)} notebooks run")
    for x, rate in enumerate(rates.values()):
        ax.annotate(f"{rate:.0f}%", (x, rate), ha="center", va="bottom")
    fig.tight_layout()
    fig.savefig(folder / "summary.png", dpi=100)
    plt.close(fig)
    return text


def grade_folder(
    folder: Path,
    out: Path,
    lesson: str | None = None,
    timeout: float = 120,
    jobs: int = 1,
    resume: bool = False,
    sandbox: dict | None = None,
) -> list[dict]:
    """Grade every submission in ``folder``; the rows (also written to ``out`` and beside it)."""
    return Grader(Path(folder), Path(out), lesson, timeout, jobs, resume, sandbox).run(resume)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lesson_utils.classroom.grade", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("submissions", type=Path, help="a folder of .ipynb files (or of one folder per student)")
    parser.add_argument("--out", type=Path, default=Path("grades/grades.csv"), help="the CSV (default: %(default)s)")
    parser.add_argument("--lesson", help="the lesson, e.g. 03 (default: the one most notebooks import)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per notebook (default: %(default)s)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="notebooks graded at once (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --out; grade the rest")
    parser.add_argument("--sandbox", action="store_true", help="run each kernel in a bubblewrap sandbox (see README)")
    parser.add_argument(
        "--memory", default="8G", help="with --sandbox: address space per kernel (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    sandbox = None
    if args.sandbox:
        from lesson_utils.classroom.sandbox import check_available, parse_size

        try:
            check_available()
        except RuntimeError as error:
            parser.error(str(error))
        hide = [str(args.submissions), str(args.out.parent), str(PACKAGE_DIR.parent / "notebooks")]
        sandbox = {"memory": parse_size(args.memory), "hide": hide}
    try:
        rows = grade_folder(args.submissions, args.out, args.lesson, args.timeout, args.jobs, args.resume, sandbox)
    except (FileNotFoundError, ValueError) as error:  # a wrong folder or lesson: say so, no traceback
        parser.error(str(error))
    print((args.out.parent / "summary.md").read_text(encoding="utf-8"))
    print(
        f"{len(rows)} submissions: {args.out}, feedback in {args.out.parent / 'feedback'}, log in "
        f"{args.out.parent / 'grade.log'}"
    )


if __name__ == "__main__":
    main()
