"""The grader's --sandbox (bubblewrap), with submissions that try to write outside their working
folder, reach the network, read the grader's files, leave processes behind and take all the
memory. The same class is graded once without the sandbox as a control: there, each attempt
succeeds (so the test would notice an attempt that does nothing); in the sandbox, none does."""

import csv
import os
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import nbformat
import pytest

from lesson_utils.classroom.grade import grade_folder
from lesson_utils.classroom.sandbox import check_available

pytestmark = [pytest.mark.slow, pytest.mark.grader]

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "notebooks" / "exercises" / "solutions" / "01_weights_solutions.ipynb"


def sandbox_or_skip() -> None:
    try:
        check_available()
    except RuntimeError as error:
        if os.environ.get("CI"):
            raise  # CI installs bubblewrap (make sandbox): there, a missing sandbox is a failure
        pytest.skip(str(error))


class Listener:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def attacker(escape: Path, secret: Path, port: int, marker: str) -> list[str]:
    """A correct lesson-01 notebook that also tries each thing, and records what happened."""
    cells = [c.source for c in nbformat.read(SOLUTION, as_version=4).cells if c.cell_type == "code"]
    return cells + [
        "attempts = {}\n"
        "try:\n"
        f"    open({str(escape)!r}, 'w').write('escaped')\n"
        "    attempts['write outside'] = 'done'\n"
        "except OSError as error:\n"
        "    attempts['write outside'] = repr(error)\n"
        "try:\n"
        f"    attempts['read grader file'] = open({str(secret)!r}).read()\n"
        "except OSError as error:\n"
        "    attempts['read grader file'] = repr(error)\n"
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n"
        "    attempts['network'] = 'connected'\n"
        "except OSError as error:\n"
        "    attempts['network'] = repr(error)\n"
        "import subprocess\n"
        f"subprocess.Popen(['sh', '-c', 'sleep 300; : {marker}'], start_new_session=True)\n"
        f"subprocess.Popen(['sh', '-c', '(sleep 300; : {marker}) & exit 0'])\n"
        "print(attempts)",
        "try:\n    hog = bytearray(64 * 2**30)\n    attempts['memory'] = 'got 64 GiB'\n"
        "except MemoryError:\n    attempts['memory'] = 'MemoryError'\nprint(attempts)",
    ]


def grade(folder: Path, out: Path, sandbox: dict | None) -> dict:
    grade_folder(folder, out, lesson="01", timeout=90, sandbox=sandbox)
    with open(out, newline="", encoding="utf-8-sig") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


def leftovers(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


def test_the_sandbox_stops_what_runs_freely_without_it(tmp_path):
    sandbox_or_skip()
    listener = Listener()
    escape = ROOT / "build" / f"sandbox-escape-{uuid.uuid4().hex}"  # somewhere the teacher can write
    escape.parent.mkdir(exist_ok=True)
    marker = f"sandbox-test-{uuid.uuid4().hex}"
    folder = tmp_path / "class"
    folder.mkdir()
    out = tmp_path / "grades" / "grades.csv"
    secret = folder / "teacher_notes.txt"  # a file in the class folder that no kernel should read
    secret.write_text("the answer key")
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(s) for s in attacker(escape, secret, listener.port, marker)]
        ),
        folder / "mallory.ipynb",
    )
    try:
        # Control: without the sandbox every attempt works (and the processes are still killed).
        control = grade(folder, out, sandbox=None)["mallory.ipynb"]
        assert escape.read_text() == "escaped" and listener.connections == 1
        assert control["points"] == "3" and "process" in control["needs review"]
        assert leftovers(marker) == []
        escape.unlink()

        sandboxed = grade(folder, tmp_path / "sandboxed" / "grades.csv", sandbox={
            "memory": 8 * 2**30, "hide": [str(folder), str(tmp_path / "sandboxed")]})["mallory.ipynb"]  # fmt: skip
        assert not escape.exists(), "nothing written outside the working folder"
        assert listener.connections == 1, "no connection from the sandbox"
        assert leftovers(marker) == [], "nothing it started outlived it"
        assert sandboxed["points"] == "3", "the honest part is still graded"
        assert sandboxed["status"] == "graded", sandboxed  # every attempt failed quietly inside its cell
        assert secret.read_text() == "the answer key"
    finally:
        escape.unlink(missing_ok=True)
        listener.server.close()


def test_what_the_kernel_saw_inside_the_sandbox(tmp_path):
    """The notebook's own record of each attempt: refused, unreachable, hidden, out of memory."""
    sandbox_or_skip()
    from jupyter_core.utils import run_sync

    from lesson_utils.classroom.sandbox import SandboxedKernelManager
    from lesson_utils.notebooks import NotebookClient

    listener = Listener()
    secret = tmp_path / "hidden" / "teacher_notes.txt"
    secret.parent.mkdir()
    secret.write_text("the answer key")
    escape = Path("/etc") / f"sandbox-escape-{uuid.uuid4().hex}"  # visible in the sandbox, read-only there
    work = tmp_path / "work"
    work.mkdir()
    cells = attacker(escape, secret, listener.port, f"sandbox-test-{uuid.uuid4().hex}")[-2:]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in cells])
    km = SandboxedKernelManager(
        workdir=str(work), shared=[], hide=[str(secret.parent)], env={}, memory=8 * 2**30, kernel_name="python3"
    )
    try:
        NotebookClient(notebook, timeout=120, km=km, allow_errors=True).execute()
    finally:
        run_sync(km.shutdown_kernel)(now=True)  # a kernel manager handed to nbclient is ours to stop
    printed = notebook.cells[-1].outputs[-1]["text"]
    assert "Read-only file system" in printed  # write outside
    assert "No such file or directory" in printed and "the answer key" not in printed  # the hidden folder
    assert "Connection refused" in printed or "unreachable" in printed  # its own network namespace
    assert "'memory': 'MemoryError'" in printed


def test_a_notebook_holding_threads_leaves_the_next_kernels_their_own_limit(tmp_path):
    """As root, each sandboxed kernel runs as a user id of its own, with a process limit of its own:
    a notebook that takes every thread it can get and holds them does not make the kernels graded
    beside it or after it fail."""
    sandbox_or_skip()
    if os.geteuid() != 0:
        pytest.skip("the kernels get user ids of their own when the grader runs as root")
    hog = (  # for 30 s (while the two others are graded), takes every thread it can get, also those given back
        "import threading, time\n"
        "threading.stack_size(2**16)\n"
        "held, deadline = [], time.monotonic() + 30\n"
        "while time.monotonic() < deadline:\n"
        "    try:\n"
        "        threading.Thread(target=time.sleep, args=(300,), daemon=True).start()\n"
        "        held.append(1)\n"
        "    except RuntimeError:\n"
        "        time.sleep(0.01)\n"
        "print(len(held), 'threads held')"
    )
    cells = [c.source for c in nbformat.read(SOLUTION, as_version=4).cells if c.cell_type == "code"]
    folder = tmp_path / "class"
    folder.mkdir()
    for name, sources in [("a_hog", [hog]), ("b_beside", cells), ("c_after", cells)]:
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]),
                       folder / f"{name}.ipynb")  # fmt: skip
    out = tmp_path / "grades" / "grades.csv"
    sandbox = {"memory": 8 * 2**30, "hide": [str(folder), str(out.parent)]}
    rows = {r["file"]: r for r in grade_folder(folder, out, lesson="01", timeout=120, jobs=2, sandbox=sandbox)}
    for name in ("b_beside.ipynb", "c_after.ipynb"):
        assert (rows[name]["status"], rows[name]["points"], rows[name]["needs review"]) == ("graded", 3, ""), rows[name]
