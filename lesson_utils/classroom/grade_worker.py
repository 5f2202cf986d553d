"""Run one submitted notebook, in a process of its own: ``python -m lesson_utils.classroom.grade_worker PARAMS.json``.

:mod:`lesson_utils.classroom.grade` starts one of these per notebook (``-j N`` of them at once), so a
notebook that kills its kernel's parent kills only this process. The worker:

- starts a fresh kernel in the submission's own working folder, with that folder *not* on
  the import path (``PYTHONSAFEPATH``), optionally inside a bubblewrap sandbox;
- runs the student's cells under one time limit, remembering which cell is running;
- after the set-up cell (the first that imports the lesson's exercises), after each cell that
  calls ``check()`` and at the end (also after a time-out, once the kernel is interrupted) sends
  :mod:`lesson_utils.classroom.export` (with :mod:`lesson_utils.classroom.grade_probe`'s tampering
  scan at the end) as a cell kept out of the kernel's history: the kernel writes the values the
  questions name into a hand-over folder. **Nothing the kernel says is a grade**: its reply (a
  ``user_expressions`` entry named by a secret made for this run) carries only advisory flags;
- while the kernel still runs, reads from *outside* it (:mod:`lesson_utils.classroom.outside`) what
  the judge needs: a copy of the export, the files the answers name (never following a link, only
  what the kernel's user could read), and which memory is a file's pages (``/proc/<kernel>/maps``);
  each export so assembled is a folder the kernel cannot write to, marked complete last;
- stops the kernel and every process it left behind (this process is a child subreaper,
  and the kernel's environment carries a tag that its descendants inherit).

Its row goes back to the grader with :func:`lesson_utils.processes.write_result`, naming the latest
complete export; the grader has it judged (:mod:`lesson_utils.classroom.judge`) once this process
and the kernel are gone. A row is also written after every export, so that the grader can judge what
the notebook had done if the notebook kills this process later.

This process cannot be read or attached to by other processes of its user (``PR_SET_DUMPABLE``):
without ``--sandbox`` the kernel runs as the same user, which would otherwise read the row's signing
key from this process's memory. A kernel running as root (the grader run as root, without
``--sandbox``) can still do anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hmac
import inspect
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

# nbformat's schema checks need no IRI syntax: without this, importing jsonschema builds rfc3987_syntax's
# grammar, about 2.5 s of CPU in every worker (one per notebook); jsonschema goes on without that check
sys.modules.setdefault("rfc3987_syntax", None)

import nbformat  # noqa: E402
from nbclient.exceptions import DeadKernelError  # noqa: E402

from lesson_utils.classroom import export, grade_probe, outside  # noqa: E402
from lesson_utils.notebooks import NotebookClient  # noqa: E402
from lesson_utils.processes import RESULT_DIR_ENV, write_result  # noqa: E402

TAG_ENV = "LESSON_GRADE_TAG"  # in every kernel's environment, inherited by whatever it starts
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # lesson_utils/, the course package
SETUP = re.compile(r"lesson_utils\.exercises")  # the set-up cell imports the lesson's exercises
COMPLETE = "complete"  # written last in an export folder that the judge may read
SETUP_MARK = "setup"  # in the export made after the set-up cell: its files are kept, it is not judged
MAX_OUTPUT = 8 * 2**20  # characters of a notebook's output kept here (outside the sandbox's memory limit)


class CappedClient(NotebookClient):
    """A notebook client that keeps at most :data:`MAX_OUTPUT` characters of what the cells print or
    display (errors are always kept): a notebook that prints without end would otherwise fill the
    grading process's memory, which no sandbox limits."""

    kept = 0
    dropped = 0

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> object:
        content = msg.get("content") or {}
        size = len(content.get("text") or "") + sum(len(str(v)) for v in (content.get("data") or {}).values())
        if msg.get("msg_type") != "error" and self.kept + size > MAX_OUTPUT:
            self.dropped += size
            return None
        self.kept += size
        return super().output(outs, msg, display_id, cell_index)


def make_undumpable() -> None:
    """No other process of this user may read this one's memory or attach to it (Linux ``PR_SET_DUMPABLE``)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


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


def kill_leftovers(tag: str, children: bool = True, grace: float = 0.0) -> int:
    """SIGKILL every process carrying ``tag`` (and every child of this process); how many there were.

    ``grace``: seconds to wait first for such processes to end by themselves (a sandbox's bwrap processes
    exit just after their kernel: on a busy machine, a moment later), checked every 50 ms.
    """
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not (set(tagged_processes(tag)) | (set(children_of(os.getpid())) if children else set())):
            return 0
        time.sleep(0.05)
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
    """The code sent to the kernel: the exporter's and the probe's source, and a call that leaves the probe's
    short report in ``out_name``.

    It names no builtin directly (``exec = ...`` in the notebook would catch such a name): it reaches
    them through the ``builtins`` module, and runs the code with that module as its builtins.
    """
    exporter, probe = inspect.getsource(export), inspect.getsource(grade_probe)
    return (
        "import builtins as _grader_b\n"
        "_grader_x = {'__name__': '__grader__', '__builtins__': _grader_b}\n"
        f"_grader_b.exec(_grader_b.compile({exporter!r}, '<grader export>', 'exec'), _grader_x)\n"
        f"_grader_b.exec(_grader_b.compile({probe!r}, '<grader probe>', 'exec'), _grader_x)\n"
        f"{out_name} = _grader_x['probe']({params!r})\n"
        "del _grader_x, _grader_b\n"
    )


class Run:
    """One notebook's run: the kernel, the cell being executed, the exports assembled so far."""

    def __init__(self, params: dict) -> None:
        self.params = params
        self.secret = secrets.token_hex(16)
        self.cell_index: int | None = None
        self.report: dict | None = None  # the kernel's latest reply: advisory flags, what check() said
        self.probes = 0
        self.latest: Path | None = None  # the latest complete export folder
        self.hashes: dict[str, str] = {}  # its files' hashes, signed with the row
        self.setup: tuple[Path, dict[str, str], dict[str, str]] | None = None  # the set-up's export, paths, hashes
        self.notes: list[str] = []  # what the grading process found outside the kernel, for review
        self.on_report = lambda: None  # called after each export that was assembled
        self.stopped = False  # set at the time limit: no further cell runs
        self.kernel_pid: int | None = None
        self.exports = Path(params["exports"])
        self.files_dir = Path(tempfile.mkdtemp(prefix="grade-files-"))
        self.notebook = nbformat.read(params["notebook"], as_version=4)
        self.client = CappedClient(
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

    def _kernel(self) -> int | None:
        """The kernel's process id, found from the process the kernel manager started (never the kernel's word)."""
        if self.kernel_pid is None:
            process = getattr(getattr(self.client.km, "provisioner", None), "process", None)
            if process is not None:
                self.kernel_pid = outside.kernel_process(process.pid)
        return self.kernel_pid

    async def probe(self, timeout: float, scan: bool = False, setup: bool = False) -> None:
        """Have the kernel export the questions' values (and scan for tampering, if ``scan``), then assemble,
        from outside it, the folder the judge reads (:func:`lesson_utils.classroom.outside.assemble`)."""
        self.probes += 1
        name = f"_grader_{self.secret}_{secrets.token_hex(8)}"  # a new secret name for each probe
        handover = self.files_dir / f"{self.probes}-{secrets.token_hex(8)}"
        handover.mkdir()
        user = getattr(self.client.km, "user", None)
        if user is not None:  # the sandboxed kernel's own user id (the grader runs as root)
            os.chown(handover, user, user)
        params = {
            "fingerprints": self.params["fingerprints"] if scan else {},
            "package_dir": str(PACKAGE_DIR),
            "scan": scan,
            "names": sorted({*self.params["names"], *self.params["optional"]}),
            "folder": str(handover),
        }
        kc = self.client.kc
        msg_id = kc.execute(
            probe_cell(params, name),
            silent=True,
            store_history=False,
            # only the secret name itself: any other name (get_ipython, say) the notebook could have redefined
            user_expressions={"report": name},
        )
        try:
            report = await self._reply(kc, msg_id, timeout)
            if report is None:
                return
            self.report = report
            pid = self._kernel()
            if not report.get("exported") or pid is None:
                return
            target = self.exports / str(self.probes)
            try:
                found, hashes = outside.assemble(handover, target, pid, self.params["names"],
                                                 self.params["optional"], None if setup else self.setup)  # fmt: skip
            except (OSError, ValueError, UnicodeDecodeError) as error:
                self.notes.append(f"an export from the kernel could not be read ({type(error).__name__}: {error})")
                shutil.rmtree(target, ignore_errors=True)
                return
            for link in found["links"]:
                note = f"{link} is a symbolic link, which the grader does not follow"
                if note not in self.notes:
                    self.notes.append(note)
            if found["setup_changed"]:
                changed = ", ".join(found["setup_changed"][:3])
                note = (f"the notebook changed the set-up's files after the set-up cell ({changed}): answers are "
                        "checked against them as the set-up cell wrote them")  # fmt: skip
                if note not in self.notes:
                    self.notes.append(note)
            ledger = outside.Ledger(target)
            if setup:
                ledger.write(SETUP_MARK, [b""])
            ledger.write(COMPLETE, [b""])
            hashes.update(ledger.hashes)
            if setup:
                self.setup = (target, found["paths"], hashes)
            else:
                previous, self.latest, self.hashes = self.latest, target, hashes
                self.on_report()  # the row names the new one first...
                if previous is not None:
                    shutil.rmtree(previous, ignore_errors=True)  # ...then the one before goes (a model may be big)
        finally:
            shutil.rmtree(handover, ignore_errors=True)

    async def _reply(self, kc: object, msg_id: str, timeout: float) -> dict | None:
        """The probe's short report from the execute reply's user expression; None if none came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await kc.shell_channel.get_msg(timeout=1)
            except Exception:  # queue.Empty: nothing yet
                if not await self.client.km.is_alive():
                    return None
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # e.g. the reply to a cell interrupted by the time limit
            expression = msg["content"].get("user_expressions", {}).get("report", {})
            if expression.get("status") != "ok":
                return None
            try:
                report = _literal(_literal(expression["data"]["text/plain"]))  # the repr of the probe's repr
            except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
                return None
            return advisory(report)
        return None

    async def cells(self) -> None:
        for index, cell in enumerate(self.notebook.cells):
            if self.stopped:
                return
            await self.client.async_execute_cell(cell, index, execution_count=self.client.code_cells_executed + 1)
            if cell.cell_type != "code" or self.stopped:
                continue
            if self.setup is None and self.probes == 0 and SETUP.search(cell.source):
                await self.probe(timeout=self.params["probe_timeout"], setup=True)
            if ".check(" in cell.source:
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
                        row["reason"] += "; it ignored the interrupt, so the last export before it counts"
                    with contextlib.suppress(BaseException):
                        await cells
                    if cells.cancelled():
                        return self._with_errors(row)
                await self.probe(timeout=self.params["probe_timeout"], scan=True)
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


def advisory(report: object) -> dict | None:
    """The kernel's report, kept to what it may say (all of it advisory: a flag, what check() printed)."""
    if not isinstance(report, dict):
        return None
    flags, reported = report.get("flags"), report.get("reported")
    return {
        "exported": report.get("exported") is True,
        "flags": [str(f)[:500] for f in flags][:50] if isinstance(flags, list) else [],
        "reported": {str(k): str(v) for k, v in reported.items()} if isinstance(reported, dict) else {},
        "error": str(report["error"])[:500] if report.get("error") else None,
    }


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


def finished_row(row: dict, run: Run, leftover: int = 0) -> dict:
    """The row as the grader gets it: status, reason, the latest complete export, and what needs a teacher's look."""
    report = run.report or {}
    row = {**row, "export": str(run.latest) if run.latest else None, "export_hashes": run.hashes}
    row["reported"] = report.get("reported", {})
    row["flags"] = [str(flag) for flag in report.get("flags", [])] + run.notes
    if run.client.dropped:
        row["flags"].append(f"printed over {MAX_OUTPUT // 2**20} MB: {run.client.dropped:,} more characters not kept")
    if report.get("error"):
        row["flags"].append(f"the grader's export failed in the kernel: {report['error']}")
    if run.latest is None and row["status"] == "graded":
        row["flags"].append("no answers came out of the kernel (no export)")
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
    make_undumpable()  # before any kernel starts: none can read the key from this process's memory
    become_subreaper()
    run = Run(params)

    def report_so_far() -> None:  # after each export: if the notebook kills this process, the grader still has it
        write_result(signed(finished_row({"status": "grader stopped", "reason": KILLED}, run), key), "row")

    run.on_report = report_so_far
    try:
        row = asyncio.run(run.run())
    except Exception as error:  # e.g. a kernel that would not start: say so in the row, with the traceback in the log
        import traceback

        traceback.print_exc()
        row = {"status": "grading failed", "reason": f"{type(error).__name__}: {error}"[:500]}
    finally:
        leftover = kill_leftovers(params["tag"], grace=2.0)
    row = finished_row(row, run, leftover)
    shutil.rmtree(run.files_dir, ignore_errors=True)
    write_result(signed(row, key), name="row")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # done: no interpreter teardown (the kernel's sockets and loops, a second or so)


KILLED = "the grading process was killed while this notebook ran (by the notebook?)"


if __name__ == "__main__":
    main(sys.argv[1:])
