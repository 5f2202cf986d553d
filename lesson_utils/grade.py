"""Grade a class's exercise notebooks: a CSV, a feedback file per student, a class summary.

    python -m lesson_utils.grade SUBMISSIONS --out grades/grades.csv [--lesson 03] [-j 2]
                                 [--timeout 120] [--resume] [--sandbox]

``SUBMISSIONS`` holds one ``.ipynb`` per student, or one folder per student (its notebook and
the files it reads). Each notebook runs in a fresh kernel, in a fresh working folder holding
only its own files, under a time limit, in a worker process of its own
(:mod:`lesson_utils.grade_worker`). The grade comes from the notebook's *final state*,
checked by the grader's own copy of the checkers (:mod:`lesson_utils.grade_probe`), not from
what ``check()`` printed. Each row is written to the CSV as soon as its notebook is graded;
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
from pathlib import Path

import nbformat
from tqdm.auto import tqdm

from lesson_utils import grade_probe, grade_worker
from lesson_utils.numerics import numeric_environment
from lesson_utils.processes import run

PACKAGE_DIR = Path(__file__).resolve().parent
LESSON_IMPORT = re.compile(r"lesson_utils\.exercises(?:\s+import\s+|\.)(lesson\d\d)\b")
FIXED_COLUMNS = ["file", "student", "lesson", "status", "reason", "points", "max points", "percent", "needs review"]
NOT_GRADED = ("empty file", "not a notebook", "no code", "wrong lesson", "stopped the grader")


def classify(data: bytes, name: str, lesson: str | None = None) -> tuple[str, str, str | None]:
    """(status, reason, detected lesson) before running anything; status "run" when it should run.

    Example:
        >>> classify(b"not json", "bob.ipynb")[0]
        'not a notebook'
    """
    if not data:
        return "empty file", "the file is empty (0 bytes)", None
    try:
        notebook = nbformat.reads(data.decode("utf-8-sig"), as_version=4)
    except Exception as error:
        kind = "" if name.endswith(".ipynb") else f"{name} is not a .ipynb file; "
        return "not a notebook", f"{kind}it does not read as a notebook ({type(error).__name__})", None
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()]
    if not code:
        return "no code", "the notebook has no code cells with code in them", None
    found = collections.Counter(m for source in code for m in LESSON_IMPORT.findall(source))
    detected = found.most_common(1)[0][0] if found else None
    if lesson and detected and detected != lesson:
        return "wrong lesson", f"this is a {detected} notebook; this class is graded for {lesson}", detected
    return "run", "", detected


def submissions_in(folder: Path) -> dict[str, Path]:
    """``{name: path}``: every visible file, and every folder (one student's files) in ``folder``."""
    return {p.name: p for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def notebook_of(path: Path) -> tuple[bytes, Path | None]:
    """The notebook's bytes (a folder's only .ipynb), and the folder whose other files go with it."""
    if path.is_dir():
        notebooks = sorted(path.rglob("*.ipynb"))
        return (notebooks[0].read_bytes(), path) if len(notebooks) == 1 else (b"", path)
    return path.read_bytes(), None


def tree_bytes(folder: Path, caches: bool = False) -> dict[str, bytes]:
    """Every file under ``folder``, path to content (``__pycache__`` too if ``caches``).

    The package's ``__pycache__`` counts: a planted ``.pyc`` with the source's time stamp would
    run instead of the source. The grader compiles the package first and kernels and workers
    write no bytecode (``PYTHONDONTWRITEBYTECODE``), so any change there is a notebook's doing.
    """
    return {
        str(p): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and (caches or "__pycache__" not in p.parts)
    }


def startup_files() -> dict[str, bytes]:
    """Files that Python, IPython or Jupyter run or read when a process starts: a notebook that plants
    one would run code in every later kernel (``.pth`` and ``sitecustomize`` files in site-packages,
    IPython startup files and configs, Jupyter kernel specs and configs)."""
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
            candidates += [p for p in folder.rglob("*") if p.is_file()]
    ipython = Path(os.environ.get("IPYTHONDIR", Path.home() / ".ipython"))
    candidates += [p for p in ipython.glob("profile_*/startup/*") if p.is_file()]
    candidates += [p for p in ipython.glob("profile_*/*.py") if p.is_file()]
    return {str(p): p.read_bytes() for p in sorted(set(candidates)) if p.is_file()}


def restore_files(saved: dict[str, bytes], now: dict[str, bytes]) -> list[str]:
    """Write back what changed or went, delete what appeared; the paths concerned."""
    changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    for key in changed:
        path = Path(key)
        if key in saved:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.chmod(stat.S_IRUSR | stat.S_IWUSR)  # the submissions are read-only while grading
            path.write_bytes(saved[key])
        else:
            path.unlink(missing_ok=True)
    return changed


def set_read_only(folder: Path, read_only: bool) -> None:
    """Take away (or give back) write permission on a folder tree: the kernels' user cannot change it (unless root)."""
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222 if read_only else mode | stat.S_IWUSR)


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
        self.submissions = {name: notebook_of(path) for name, path in submissions_in(folder).items()}
        self.classified = {name: classify(data, name) for name, (data, _) in self.submissions.items()}
        if lesson is None:
            counts = collections.Counter(c[2] for c in self.classified.values() if c[2])
            if not counts:
                raise ValueError(f"no exercise notebook in {folder} imports lesson_utils.exercises: pass --lesson NN")
            lesson = counts.most_common(1)[0][0]
        self.lesson = Lesson(f"lesson{int(lesson):02d}" if str(lesson).isdigit() else str(lesson))
        self.classified = {n: classify(d, n, self.lesson.name) for n, (d, _) in self.submissions.items()}
        for name, path in submissions_in(folder).items():
            count = len(list(path.rglob("*.ipynb"))) if path.is_dir() else 1
            if count != 1:
                self.classified[name] = (
                    "not a notebook",
                    f"the folder holds {count} notebooks; one was expected",
                    None,
                )
        self.columns = FIXED_COLUMNS + self.lesson.columns()
        self.lock = threading.Lock()
        self.journal = out.with_suffix(".journal")
        self.log = out.parent / "grade.log"
        self.feedback = out.parent / "feedback"
        self.done = self._read_done() if resume else {}
        self.started = self._read_started() if resume else collections.Counter()
        for module in ("torch", "safetensors.torch", "lesson_utils.checkpoint", "lesson_utils.memory"):
            importlib.import_module(module)  # so that every watched name resolves here as in a kernel
        self.fingerprints = {name: grade_probe.fingerprint(grade_probe.resolve(name)) for name in grade_probe.WATCHED}

    # -- the files it writes ---------------------------------------------------------------------------
    def _read_done(self) -> dict[str, dict]:
        if not self.out.is_file():
            return {}
        with open(self.out, newline="", encoding="utf-8-sig") as f:
            return {row["file"]: row for row in csv.DictReader(f)}

    def _read_started(self) -> collections.Counter:
        if not self.journal.is_file():
            return collections.Counter()
        return collections.Counter(json.loads(line)["file"] for line in self.journal.read_text().splitlines() if line)

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
            with open(self.out, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, fieldnames=self.columns).writerow({k: row.get(k, "") for k in self.columns})
                f.flush()
                os.fsync(f.fileno())
            self.csv_bytes = self.out.read_bytes()
        write_feedback(self.feedback / f"{row['student']}.md", row, self.lesson)

    # -- one submission --------------------------------------------------------------------------------
    def grade(self, name: str) -> dict:
        data, own_folder = self.submissions[name]
        status, reason, detected = self.classified[name]
        student = name.removesuffix(".ipynb")  # "erin.txt" stays "erin.txt": no two feedback files collide
        row = {"file": name, "student": student, "lesson": detected or "", "status": status, "reason": reason}
        if status == "run" and self.started[name] >= 2:
            status = row["status"] = "stopped the grader"
            row["reason"] = "the grader stopped twice while this notebook ran; it was not run again"
            row["needs review"] = row["reason"]
        if status != "run":
            return self.finish(row, [])
        with self.lock, open(self.journal, "a") as f:
            f.write(json.dumps({"file": name}) + "\n")
        workdir = Path(tempfile.mkdtemp(prefix="grade-work-"))
        private = Path(tempfile.mkdtemp(prefix="grade-private-"))
        tag = secrets.token_hex(16)
        try:
            if own_folder is not None:
                shutil.copytree(own_folder, workdir, dirs_exist_ok=True)
                for extra in workdir.rglob("*.ipynb"):
                    extra.unlink()
            notebook = workdir / (name if name.endswith(".ipynb") else f"{Path(name).name}.ipynb")
            notebook.write_bytes(data)
            params = {
                "notebook": str(notebook),
                "workdir": str(workdir),
                "lesson": self.lesson.name,
                "timeout": self.timeout,
                "probe_timeout": 60,
                "fingerprints": self.fingerprints,
                "tag": tag,
                "sandbox": self.sandbox,
                # the numeric profile (one thread, pinned kernels), as the stored outputs were made:
                # a replay in the kernel gives the bits the notebook's author saw, on any machine
                "kernel_env": numeric_environment(),
            }
            (private / "params.json").write_text(json.dumps(params))
            output, result = "", {"status": "grading failed", "reason": "the grading process did not start"}
            env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}
            key = secrets.token_hex(32)
            try:
                finished = run(
                    [sys.executable, "-m", "lesson_utils.grade_worker", str(private / "params.json")],
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
                output, result = (
                    str(error),
                    {
                        "status": "timed out",
                        "reason": f"the grading process itself ran past {self.timeout + 240:g} s; stopped",
                        "flags": [],
                    },
                )
        finally:
            leftover = grade_worker.kill_leftovers(tag, children=False)  # what a killed worker could not stop
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(private, ignore_errors=True)
        with self.lock, open(self.log, "a", encoding="utf-8") as f:
            f.write(f"===== {name}\n{output.strip()}\n")
        row.update(status=result["status"], reason=result.get("reason", ""))
        flags = list(result.get("flags", []))
        if leftover:
            flags.append(f"{leftover} process(es) outlived the grading process (killed)")
        row["_results"], row["_reported"] = result.get("results", []), result.get("reported", {})
        return self.finish(row, flags)

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
                row[f"{short} message"] += f" (check() had said correct; the final state is {result['status']})"
        row.update({"points": earned, "max points": total, "percent": round(100 * earned / total, 1) if total else 0})
        row["needs review"] = "; ".join(([row["needs review"]] if row.get("needs review") else []) + flags)
        self.write_row(row, flags)
        return row

    # -- the class -------------------------------------------------------------------------------------
    def run(self, resume: bool) -> list[dict]:
        self._start_files(resume)
        self.csv_bytes = self.out.read_bytes()
        compileall.compile_dir(PACKAGE_DIR, quiet=2)  # every .pyc there now; kernels and workers write none
        sys.dont_write_bytecode = True  # so from now on a new or changed .pyc in the package is a notebook's doing
        self.saved_submissions = tree_bytes(self.folder)
        self.saved_package = tree_bytes(PACKAGE_DIR, caches=True)
        self.saved_startup = startup_files()
        todo = [name for name in self.submissions if name not in self.done]
        rows = list(self.done.values())
        set_read_only(self.folder, True)
        bar = tqdm(total=len(todo), desc="grading", unit="notebook")
        running: set[str] = set()

        def one(name: str) -> dict:
            with self.lock:
                running.add(name)
                bar.set_postfix_str(", ".join(sorted(running))[:60])
            try:
                return self.grade(name)
            finally:
                with self.lock:
                    running.discard(name)
                    bar.update()
                    bar.set_postfix_str(", ".join(sorted(running))[:60])

        try:
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                rows += list(pool.map(one, todo))
        finally:
            bar.close()
            set_read_only(self.folder, False)
        for row in rows:  # a notebook may have rewritten someone's feedback: write them all from our own record
            if row.get("student") and row.get("q1") is not None:
                write_feedback(self.feedback / f"{row['student']}.md", row, self.lesson)
        write_summary(self.out.parent, rows, self.lesson)
        return rows


def write_feedback(path: Path, row: dict, lesson: Lesson) -> None:
    """A student's feedback: the status, then each question's result, the checker's message and a hint."""
    lines = [
        f"# {row['student']}: {lesson.name}",
        "",
        f"**{row['points']} of {row['max points']} points** "
        f"({row['percent']}%). Status: {row['status']}." + (f" {row['reason']}" if row.get("reason") else ""),
        "",
    ]
    for q in lesson.questions:
        short = lesson.short(q.qid)
        lines += [f"## {short}: {row[short]} ({row[f'{short} points']} of {lesson.points[q.qid]})", ""]
        if row[f"{short} message"]:
            lines += [row[f"{short} message"], ""]
        if row[short] != "correct":
            lines += [f"Hint: {q._hint}", ""]
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
    parser = argparse.ArgumentParser(prog="python -m lesson_utils.grade", description=__doc__.split("\n\n")[0])
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
        from lesson_utils.sandbox import check_available, parse_size

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
