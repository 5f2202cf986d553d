"""Grade one submitted notebook, in a process of its own: ``python -m lesson_utils.classroom.grade_worker PARAMS.json``.

:mod:`lesson_utils.classroom.grade` starts one of these per notebook (``-j N`` of them at once), so a
notebook that kills its kernel's parent kills only this process. The worker:

- starts a fresh kernel in the submission's own working folder, with that folder *not* on
  the import path (``PYTHONSAFEPATH``), optionally inside a bubblewrap sandbox;
- runs the student's cells under one time limit, remembering which cell is running;
- after each cell that calls ``check()`` and at the end (also after a time-out, once the
  kernel is interrupted) sends :mod:`lesson_utils.classroom.grade_probe` as a cell kept out of the
  kernel's history; the probe's report comes back in the execute reply itself (a
  ``user_expressions`` entry named by a secret made for this run), never through printed
  output or files the notebook could write first;
- checks again, in this process, every answer that is only files (a checkpoint on disk), reading
  only the copies the probe handed over, never a link or a path elsewhere;
- stops the kernel and every process it left behind (this process is a child subreaper,
  and the kernel's environment carries a tag that its descendants inherit).

Its row goes back to the grader with :func:`lesson_utils.processes.write_result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hmac
import importlib
import inspect
import json
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient.exceptions import DeadKernelError

from lesson_utils.classroom import grade_probe
from lesson_utils.notebooks import NotebookClient
from lesson_utils.processes import RESULT_DIR_ENV, write_result

TAG_ENV = "LESSON_GRADE_TAG"  # in every kernel's environment, inherited by whatever it starts
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # lesson_utils/, the course package


def become_subreaper() -> None:
    """Orphans of the kernel's descendants are re-parented to this process, not to init (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def tagged_processes(tag: str) -> list[int]:
    """Process ids whose environment holds ``TAG_ENV=tag`` (Linux: read from /proc)."""
    needle = f"{TAG_ENV}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def children_of(pid: int) -> list[int]:
    """The live children of ``pid`` (zombies, already dead, are reaped instead)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if int(parent) != pid:
                continue
            if state == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(entry.name), os.WNOHANG)
            else:
                found.append(int(entry.name))
    return found


def kill_leftovers(tag: str, children: bool = True) -> int:
    """SIGKILL every process carrying ``tag`` (and every child of this process); how many there were."""
    killed: set[int] = set()
    for _ in range(20):  # a process may fork while we look: repeat until none is left
        pids = set(tagged_processes(tag)) | (set(children_of(os.getpid())) if children else set())
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        for pid in pids:
            try:
                os.waitpid(pid, os.WNOHANG)  # reap our own (re-parented) children
            except ChildProcessError:
                pass
    return len(killed)


def probe_cell(params: dict, out_name: str) -> str:
    """The code sent to the kernel: the probe's source and a call that leaves the report in ``out_name``.

    It names no builtin directly (``exec = ...`` in the notebook would catch such a name): it reaches
    them through the ``builtins`` module, and runs the probe with that module as its builtins.
    """
    source = inspect.getsource(grade_probe)
    return (
        "import builtins as _grader_b\n"
        "_grader_x = {'__name__': '__grader__', '__builtins__': _grader_b}\n"
        f"_grader_b.exec(_grader_b.compile({source!r}, '<grader probe>', 'exec'), _grader_x)\n"
        f"{out_name} = _grader_x['probe']({params!r})\n"
        "del _grader_x, _grader_b\n"
    )


class Run:
    """One notebook's run: the kernel, the cell being executed, the latest probe report."""

    def __init__(self, params: dict) -> None:
        self.params = params
        self.secret = secrets.token_hex(16)
        self.cell_index: int | None = None
        self.report: dict | None = None
        self.probes = 0
        self.on_report = lambda: None  # called after each probe that reported
        self.stopped = False  # set at the time limit: no further cell runs
        exercises = PACKAGE_DIR / "exercises"  # read as text: importing them here would import torch (1-2 s)
        self.sources = {
            "i18n": (exercises.parent / "i18n.py").read_text(encoding="utf-8"),
            "i18n_file": str(exercises.parent / "i18n.py"),
            "core": (exercises / "core.py").read_text(encoding="utf-8"),
            "lesson": (exercises / f"{params['lesson']}.py").read_text(encoding="utf-8"),
        }
        self.files_dir = Path(tempfile.mkdtemp(prefix="grade-files-"))
        self.notebook = nbformat.read(params["notebook"], as_version=4)
        self.client = NotebookClient(
            self.notebook,
            timeout=None,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": params["workdir"]}},
            on_cell_start=self._started,
        )
        if params.get("sandbox"):  # the kernel inside bubblewrap (lesson_utils.classroom.sandbox)
            from lesson_utils.classroom.sandbox import SandboxedKernelManager

            inside = {"PYTHONSAFEPATH": "1", TAG_ENV: params["tag"], **params.get("kernel_env", {})}
            inside["PYTHONDONTWRITEBYTECODE"] = "1"
            if os.environ.get("PYTHONPATH"):
                inside["PYTHONPATH"] = os.environ["PYTHONPATH"]
            self.client.km = SandboxedKernelManager(
                workdir=params["workdir"],
                shared=[str(self.files_dir)],
                hide=params["sandbox"]["hide"],
                env=inside,
                memory=params["sandbox"]["memory"],
                kernel_name="python3",
            )

    def _started(self, cell: nbformat.NotebookNode, cell_index: int) -> None:
        self.cell_index = cell_index

    async def probe(self, timeout: float) -> None:
        """Send the probe; keep its report (the reply's user_expressions, parsed)."""
        self.probes += 1
        name = f"_grader_{self.secret}_{secrets.token_hex(8)}"  # a new secret name for each probe
        params = {
            "fingerprints": self.params["fingerprints"],
            "package_dir": str(PACKAGE_DIR),
            "sources": self.sources,
            "lesson": self.params["lesson"],
            "files_dir": str(self.files_dir / str(self.probes)),
            "copy_limit": 500 * 2**20,
        }
        kc = self.client.kc
        msg_id = kc.execute(
            probe_cell(params, name),
            silent=True,
            store_history=False,
            # only the secret name itself: any other name (get_ipython, say) the notebook could have redefined
            user_expressions={"report": name},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await kc.shell_channel.get_msg(timeout=1)
            except Exception:  # queue.Empty: nothing yet
                if not await self.client.km.is_alive():
                    return
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # e.g. the reply to a cell interrupted by the time limit
            expression = msg["content"].get("user_expressions", {}).get("report", {})
            if expression.get("status") == "ok":
                text = expression["data"]["text/plain"]
                report = _literal(_literal(text))  # the repr of the probe's repr of plain containers
                report["probe"] = self.probes
                self.report = report
                self.on_report()
            return

    async def cells(self) -> None:
        for index, cell in enumerate(self.notebook.cells):
            if self.stopped:
                return
            await self.client.async_execute_cell(cell, index, execution_count=self.client.code_cells_executed + 1)
            if cell.cell_type == "code" and ".check(" in cell.source and not self.stopped:
                await self.probe(timeout=self.params["probe_timeout"])

    async def run(self) -> dict:
        row: dict = {"status": "graded", "reason": "", "cell": None}
        env = {k: v for k, v in os.environ.items() if k != RESULT_DIR_ENV}
        env.update({"PYTHONSAFEPATH": "1", TAG_ENV: self.params["tag"], **self.params.get("kernel_env", {})})
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # the grader compiled the package: a new .pyc there is tampering
        # its own IPython and Jupyter folders: no startup file or config that another notebook planted
        env.update(IPYTHONDIR=str(self.files_dir / "ipython"), JUPYTER_CONFIG_DIR=str(self.files_dir / "jupyter"))
        limit = self.params["timeout"]
        start = time.monotonic()
        try:
            async with self.client.async_setup_kernel(env=env, cwd=self.params["workdir"]):
                cells = asyncio.ensure_future(self.cells())
                done, _ = await asyncio.wait({cells}, timeout=max(1.0, limit - (time.monotonic() - start)))
                if cells in done:
                    cells.result()  # raises DeadKernelError if the kernel died
                else:  # the time limit: stop after this cell, interrupt it, grade what was done by then
                    self.stopped = True
                    number = self._cell_number()
                    row.update(status=f"timed out in cell {number}", cell=number)
                    row["reason"] = f"still running after {limit:g} s, in cell {number}{self._cell_text()}"
                    await self.client.km.interrupt_kernel()
                    done, _ = await asyncio.wait({cells}, timeout=10)
                    if cells not in done:  # it ignores interrupts: the kernel stays busy, no probe can run
                        cells.cancel()
                        row["reason"] += "; it ignored the interrupt, so the last report before it counts"
                    with contextlib.suppress(BaseException):
                        await cells
                    if cells.cancelled():
                        return self._with_errors(row)
                await self.probe(timeout=self.params["probe_timeout"])
        except DeadKernelError:
            row.update(status=f"crashed in cell {self._cell_number()}", cell=self._cell_number())
            row["reason"] = f"the kernel died in cell {self._cell_number()}{self._cell_text()}"
        return self._with_errors(row)

    def _with_errors(self, row: dict) -> dict:
        row["errors"] = cell_errors(self.notebook)
        if row["errors"] and row["status"] == "graded":
            row.update(status="ran with errors", reason="; ".join(row["errors"])[:1000])
        return row

    def _cell_number(self) -> int:
        return (self.cell_index or 0) + 1  # as a teacher counts the cells in JupyterLab

    def _cell_text(self) -> str:
        if self.cell_index is None:
            return ""
        first = self.notebook.cells[self.cell_index].source.strip().splitlines()[:1]
        return f": `{first[0][:80]}`" if first else ""


def _literal(text: str) -> object:
    """The value a repr of plain Python values stands for (never evaluates code)."""
    import ast

    return ast.literal_eval(text)


def cell_errors(notebook: nbformat.NotebookNode) -> list[str]:
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {index + 1} raised {output['ename']}: {output['evalue']}"[:300])
    return found


def handed_over(path: str, files_dir: str) -> bool:
    """Whether ``path`` is a regular file or folder in the hand-over folder, with no link on the way or inside.

    The kernel names these paths, and this process may run as root: a path elsewhere, or a link, could make
    it read a file the student cannot (or a pipe that never ends), so such a path is never opened.
    """
    real = os.path.realpath(path)
    if os.path.abspath(path) != real or not real.startswith(os.path.realpath(files_dir) + os.sep):
        return False
    if not os.path.isdir(real):
        return os.path.isfile(real)
    for root, dirs, files in os.walk(real):
        for name in dirs + files:
            mode = os.lstat(os.path.join(root, name)).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                return False
    return True


def recheck_files(lesson: str, report: dict, files_dir: str) -> list[str]:
    """Grade each files-only answer again in this process; fix the results, and say where the kernel disagreed.

    Only copies the probe made in ``files_dir`` are read: any other file the kernel names counts as no file.
    """
    if not report.get("files"):
        return []
    module = importlib.import_module(f"lesson_utils.exercises.{lesson}")
    questions = {q.qid: q for q in vars(module).values() if hasattr(q, "qid") and hasattr(q, "evaluate")}
    notes = []
    for result in report.get("results", []):
        copies = report.get("files", {}).get(result["question"])
        question = questions.get(result["question"])
        if copies is None or question is None:
            continue
        # a value with nothing at it is read as it is (a choice's letter, a file the kernel did not find)
        refused = [
            name
            for name, path in copies.items()
            if not isinstance(path, str) or (os.path.lexists(path) and not handed_over(path, files_dir))
        ]
        if refused:
            notes.append(f"{result['question']}: the kernel named files outside its copies, or links: not read")
        missing = os.path.join(files_dir, "not-handed-over")  # nothing there: the check says "no file"
        copies = {name: os.path.join(missing, name) if name in refused else path for name, path in copies.items()}
        ours = question.evaluate(copies)
        if ours.status != result["status"]:
            notes.append(
                f"{result['question']}: the kernel's check said {result['status']}, the grader's own check of the "
                f"file says {ours.status}"
            )
            result.update(status=ours.status, message=ours.message)
    return notes


def finished_row(row: dict, run: Run, leftover: int = 0) -> dict:
    """The row as the grader gets it: status, reason, results, and what needs a teacher's look."""
    report = run.report or {}
    row = {**row, "results": report.get("results", []), "reported": report.get("reported", {})}
    row["flags"] = list(report.get("flags", []))
    if report.get("error"):
        row["flags"].append(f"the grading probe failed in the kernel: {report['error']}")
    if run.report is None and row["status"] == "graded":
        row["flags"].append("no grading result came back from the kernel")
    if leftover:
        row["flags"].append(f"left {leftover} process(es) running after the notebook (killed)")
    if row["status"] == "grading failed":
        row["flags"].append("the grader could not grade this notebook (see grade.log): grade it by hand")
    return row


def signed(row: dict, key: str) -> dict:
    """The row with an HMAC under ``key``: the grader can tell it from one a notebook wrote."""
    text = json.dumps(row, sort_keys=True)
    return {"row": row, "mac": hmac.new(key.encode(), text.encode(), "sha256").hexdigest()}


def main(argv: list[str]) -> None:
    params = json.loads(Path(argv[0]).read_text())
    key = sys.stdin.readline().strip()  # from the grader, on stdin: not in any file, command line or environment
    become_subreaper()
    run = Run(params)

    def report_so_far() -> None:  # after each probe: if the notebook kills this process, the grader still has it
        write_result(signed(finished_row({"status": "grader stopped", "reason": KILLED}, run), key), "row")

    run.on_report = report_so_far
    try:
        row = asyncio.run(run.run())
    except Exception as error:  # e.g. a kernel that would not start: say so in the row, with the traceback in the log
        import traceback

        traceback.print_exc()
        row = {"status": "grading failed", "reason": f"{type(error).__name__}: {error}"[:500]}
    finally:
        leftover = kill_leftovers(params["tag"])
    row = finished_row(row, run, leftover)
    row["flags"] += recheck_files(params["lesson"], run.report, str(run.files_dir)) if run.report else []
    shutil.rmtree(run.files_dir, ignore_errors=True)
    write_result(signed(row, key), name="row")


KILLED = "the grading process was killed while this notebook ran (by the notebook?)"


if __name__ == "__main__":
    main(sys.argv[1:])
