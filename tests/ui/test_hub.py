"""The class's JupyterHub, for real: a hub started as `make hub` starts it, two students and a teacher in
Chromium, the teacher's one command to collect, grade and return, and a clean stop.

What it shows, in order (screenshots under build/screenshots/hub-*.png, the hub's log in hub.log):

1. ``python -m lesson_utils.classroom.hub start`` makes a real Unix account per person of the class
   list, builds the hand-outs and runs JupyterHub with its proxy and the idle culler.
2. Ada (English) and Li (Chinese) log in (the first password typed becomes theirs); the teacher logs in
   and sees the class in the admin page.
3. Each student gets their own server, as their own account, in a control group with the class's
   memory limit and the numeric profile's one thread, and JupyterLab opens on the first lesson of
   their edition (Li's interface in Chinese), handed out into ~/lessons.
   (That a later login keeps their work is tests/test_hub_config.py's, without a browser.)
4. Each opens lesson 01's exercise notebook, runs its cells with Shift+Enter, answers Q3 (Ada right,
   Li wrong), runs the check and saves.
5. The teacher's `python -m lesson_utils.classroom.course 01` collects both notebooks, grades them
   in the sandbox and returns the feedback; each student opens ~/feedback/lesson01.md in JupyterLab
   and reads their own result.
6. Li cannot open Ada's server through the hub (403), nor her folder, her notebook or her feedback on
   disk, nor the teacher's grades.
7. SIGTERM stops the hub: every process it started is gone, nothing runs as a class account, the
   control groups are removed; `remove-accounts --yes` removes the accounts and their folders.
"""

from __future__ import annotations

import csv
import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from lesson_utils.classroom.hub.__main__ import SITE_PACKAGES, closed_to_others
from lesson_utils.classroom.hub.accounts import GROUP, processes_of
from lesson_utils.classroom.hub.limits import Cgroups
from lesson_utils.classroom.hub.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
PROXY = ROOT / "build" / "hub-proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
MEMORY = "3G"  # per student, as the test starts the hub
# a hub, servers, kernels, a browser and the grader: left out of `make check`
pytestmark = [pytest.mark.slow, pytest.mark.grader]


def require(what: str, present: bool, how: str) -> None:
    """Skip the module when a piece is missing (in CI, where `make test` installs them all: fail)."""
    if not present:
        reason = f"the hub test needs {what}: {how}"
        if os.environ.get("CI"):
            raise RuntimeError(f"the hub test cannot run in CI: {reason}")
        pytest.skip(reason, allow_module_level=True)


require("/usr/bin/chromium", Path("/usr/bin/chromium").exists(), "`make browser`")
require("root", os.geteuid() == 0, "it makes real Unix accounts (run the tests as root, as CI does)")
require("configurable-http-proxy", os.access(PROXY, os.X_OK), "`make hub-proxy`")
require("git and node", bool(shutil.which("git") and shutil.which("node")), "`make hub-proxy`")
require("bubblewrap", bool(shutil.which("bwrap")), "`make sandbox` (the course command grades in the sandbox)")

RUN = secrets.token_hex(2)  # account names of this run only: a crashed run cannot collide with the next
TEACHER, ADA, LI = f"teach-{RUN}", f"ada-{RUN}", f"li-{RUN}"
PASSWORDS = {name: f"{name}-first-password" for name in (TEACHER, ADA, LI)}
EXERCISE = {ADA: "lessons/notebooks/exercises/01_weights.ipynb", LI: "lessons/notebooks/zh/exercises/01_weights.ipynb"}
ANSWER = {ADA: 'q3_answer = "b"', LI: 'q3_answer = "a"'}  # b is right: the parameters and the buffers
CHECKED = {ADA: "lesson01.q3: CORRECT", LI: "lesson01.q3：不正确"}  # what check() prints, in each edition
IDLE = {ADA: "Idle", LI: "空闲"}  # the kernel's state in JupyterLab's status bar
FEEDBACK = {ADA: "## q3: correct (1 of 1)", LI: "## q3：不正确（0 / 1 分）"}  # the feedback file, in their language


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` now (children, their children, ...), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists() and "(Z)" not in _state(pid)}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1][:4]
    except (FileNotFoundError, IndexError):
        return "(Z)"


def as_student(name: str, code: str, state: Path) -> subprocess.CompletedProcess:
    """Run Python ``code`` as the account ``name`` (its own groups only) with the students' Python, as the
    student's kernel would."""
    account = pwd.getpwnam(name)
    command = [Settings.load(state).python, "-I", "-S", "-c", code]  # -I -S: no site-packages needed, quick
    return subprocess.run(
        command, user=account.pw_uid, group=account.pw_gid, extra_groups=[], capture_output=True, text=True,
        cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": account.pw_dir},
    )  # fmt: skip


def wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the hub exited ({process.returncode}) before answering:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {seconds:g} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def hub(free_port):
    """The hub, started as `make hub` starts it, on a free port, its folder, homes and class list in a
    temporary folder; stopped and its accounts removed at teardown, whatever the test did."""
    base = Path(tempfile.mkdtemp(prefix="lesson-hub-test-"))
    base.chmod(0o755)  # the students' homes are below it
    class_list = base / "class.csv"
    class_list.write_text(f"username,language,role\n{TEACHER},en,teacher\n{ADA},en,student\n{LI},zh,\n")
    state, homes, log = base / "state", base / "home", base / "hub.log"
    # The students' processes must read the collection: a checkout under a private folder (CI's clone may
    # be one) is opened to them for the test's duration, traversal only, and closed again at teardown.
    opened = {}
    for shown in closed_to_others([SITE_PACKAGES, ROOT / "lesson_utils", base]):
        folder = Path(shown.rsplit(" (mode", 1)[0])
        opened[folder] = stat.S_IMODE(folder.stat().st_mode)
        leaf = folder in (SITE_PACKAGES, ROOT / "lesson_utils")  # read as well as passed through
        folder.chmod(opened[folder] | (0o005 if leaf else 0o001))
    port = free_port()
    command = [sys.executable, "-m", "lesson_utils.classroom.hub", "start", "--class", str(class_list),
               "--state", str(state), "--homes", str(homes), "--port", str(port), "--memory", MEMORY]  # fmt: skip
    started = time.monotonic()
    with open(log, "wb") as output:
        process = subprocess.Popen(command, start_new_session=True, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/hub/api/", process, log)
        print(f"hub answered after {time.monotonic() - started:.1f} s")
        yield {"url": f"http://127.0.0.1:{port}", "process": process, "state": state, "homes": homes, "log": log}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        subprocess.run([sys.executable, "-m", "lesson_utils.classroom.hub", "remove-accounts", "--state", str(state),
                        "--yes"], capture_output=True)  # fmt: skip
        for folder, mode in opened.items():
            folder.chmod(mode)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, SCREENSHOTS / "hub.log")  # what the hub, the servers and the hand-outs said
        shutil.rmtree(base, ignore_errors=True)


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"hub-{name}.png"))


def log_in(page: Page, url: str, name: str, next_url: str = "") -> None:
    page.goto(f"{url}/hub/login" + (f"?next={next_url}" if next_url else ""))
    page.fill("#username_input", name)
    page.fill("#password_input", PASSWORDS[name])
    page.click("#login_submit")


PANEL = ".jp-NotebookPanel"


def cell(page: Page, index: int):
    return page.locator(f"{PANEL} .jp-Notebook .jp-Cell").nth(index)


def answer_the_exercise(page: Page, url: str, name: str) -> None:
    """In the exercise notebook just opened: run its cells down to Q3 with Shift+Enter, answer Q3, check, save."""
    try:
        _answer(page, url, name)
    except AssertionError:
        shot(page, f"failed-{name.split('-')[0]}")
        raise


def open_the_exercise(page: Page, url: str, name: str) -> None:
    """Open lesson 01's exercise notebook (its kernel starts meanwhile)."""
    page.goto(f"{url}/user/{name}/lab/workspaces/exercises/tree/{EXERCISE[name]}")  # a workspace: this tab alone


def _answer(page: Page, url: str, name: str) -> None:
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=60_000)
    # its kernel connected and idle, as the status bar says (a cell run before the kernel is there is not run)
    expect(page.locator(".jp-StatusBar-Widget")).to_contain_text(f"(ipykernel) | {IDLE[name]}", timeout=120_000)
    cells = json.loads((pwd_home(name) / EXERCISE[name]).read_text())["cells"]
    answer = next(i for i, c in enumerate(cells) if "".join(c["source"]).startswith("q3_answer = None"))
    code = [i for i, c in enumerate(cells[:answer]) if c["cell_type"] == "code"]  # the set-up, Q1 and Q2
    for count, index in enumerate(code, start=1):  # a new kernel counts from 1 (the file holds older counts)
        run(page, index, count)
    expect(cell(page, answer - 2).locator(".jp-OutputArea-output")).to_contain_text("lesson01.q2")  # not attempted
    run(page, answer, len(code) + 1, ANSWER[name])
    run(page, answer + 1, len(code) + 2)  # ex.q3.check()
    expect(cell(page, answer + 1).locator(".jp-OutputArea-output")).to_contain_text(CHECKED[name])
    page.keyboard.press("Control+s")
    expect(page.locator(".jp-mod-current.jp-mod-dirty")).to_have_count(0, timeout=30_000)
    assert ANSWER[name].replace('"', '\\"') in (pwd_home(name) / EXERCISE[name]).read_text()  # saved, on disk


def run(page: Page, index: int, count: int, text: str | None = None) -> None:
    """What a student does: click into the cell (and type ``text`` over it), press Shift+Enter; then wait for
    the kernel to have run it as its ``count``-th execution."""
    target = cell(page, index)
    target.locator(".cm-content").click()
    if text is not None:
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(text)
    page.keyboard.press("Shift+Enter")
    expect(target.locator(".jp-InputPrompt")).to_have_text(f"[{count}]:", timeout=120_000)


def pwd_home(name: str) -> Path:
    return Path(pwd.getpwnam(name).pw_dir)


def server_pid(name: str) -> int:
    for pid in processes_of(pwd.getpwnam(name).pw_uid):
        try:
            if b"jupyterhub.singleuser" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except FileNotFoundError:
            pass
    raise AssertionError(f"{name} has no server process")


def test_a_class_on_the_hub(hub, browser):
    url, state, times = hub["url"], hub["state"], {}
    clock = time.monotonic()

    # 1. The accounts: real, private, the hub's.
    for name in (TEACHER, ADA, LI):
        home = pwd_home(name)
        assert home.parent == hub["homes"] and stat.S_IMODE(home.stat().st_mode) == 0o700
        assert home.stat().st_uid == pwd.getpwnam(name).pw_uid and name in grp.getgrnam(GROUP).gr_mem

    # 2. Both students log in at once (their servers start meanwhile); the teacher is the hub's admin.
    pages = {name: browser.new_context(viewport={"width": 1400, "height": 900}).new_page() for name in (ADA, LI)}
    for name, page in pages.items():
        log_in(page, url, name)
    teacher = browser.new_context(viewport={"width": 1300, "height": 800}).new_page()
    log_in(teacher, url, TEACHER, next_url="/hub/admin")
    expect(teacher.locator("body")).to_contain_text(ADA, timeout=30_000)
    expect(teacher.locator("body")).to_contain_text(LI)
    shot(teacher, "teacher-admin")

    # 3. Each student lands in the first lesson of their edition, on their own account, in their own group.
    first = {ADA: "lessons/notebooks/00_start_here.ipynb", LI: "lessons/notebooks/zh/00_start_here.ipynb"}
    for name, page in pages.items():
        page.wait_for_url(f"**/user/{name}/lab/tree/{first[name]}*", timeout=120_000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    expect(pages[LI].locator(".lm-MenuBar-itemLabel").first).to_have_text("文件", timeout=30_000)  # 中文界面
    expect(pages[ADA].locator(".lm-MenuBar-itemLabel").first).to_have_text("File")
    times["log in, spawn, JupyterLab"] = time.monotonic() - clock
    for name in (ADA, LI):
        pid = server_pid(name)
        assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam(name).pw_uid  # runs as the student
        environ = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in v)
        assert environ["OMP_NUM_THREADS"] == "1" and environ["HOME"] == str(pwd_home(name))
        cgroups = Cgroups()
        if Settings.load(state).cgroups:  # the class's memory limit holds the server and all it starts
            assert pid in cgroups.pids(name)
            limit = cgroups.folders(name)[0] / ("memory.max" if cgroups.version == 2 else "memory.limit_in_bytes")
            assert int(limit.read_text()) == 3 * 2**30
        assert (pwd_home(name) / "lessons" / ".git").is_dir()
    assert not (pwd_home(ADA) / "lessons" / "notebooks" / "zh").exists()  # Ada's edition only
    assert not list(pwd_home(LI).glob("lessons/**/solutions"))  # no worked solutions handed out

    # 4. Each answers Q3 in lesson 01's exercises: Ada right, Li wrong.
    clock = time.monotonic()
    for name, page in pages.items():  # both kernels start at once
        open_the_exercise(page, url, name)
    for name, page in pages.items():
        answer_the_exercise(page, url, name)
        shot(page, f"{'en' if name == ADA else 'zh'}-exercise")
    times["run the cells, answer, save"] = time.monotonic() - clock

    # 5. The teacher's one command: collect, grade (sandboxed), return.
    clock = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lesson_utils.classroom.course", "01", "--state", str(state)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "collected 2 of 2" in done.stdout and "to 2 student(s)" in done.stdout, done.stdout
    times["collect, grade, return"] = time.monotonic() - clock
    (run,) = (state / "grades" / "lesson01").iterdir()
    with open(run / "grades" / "grades.csv", encoding="utf-8-sig") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert rows[ADA]["q3"] == "correct" and rows[LI]["q3"] == "incorrect", rows
    for name in (ADA, LI):
        feedback = pwd_home(name) / "feedback" / "lesson01.md"
        info = feedback.stat()
        assert info.st_uid == pwd.getpwnam(name).pw_uid and stat.S_IMODE(info.st_mode) == 0o644
        assert FEEDBACK[name] in feedback.read_text()
        page = pages[name]
        page.goto(f"{url}/user/{name}/lab/workspaces/feedback/tree/feedback/lesson01.md")  # opened rendered
        expect(page.locator(".jp-RenderedMarkdown")).to_contain_text(FEEDBACK[name].lstrip("# "), timeout=60_000)
        page.locator(".jp-BreadCrumbs-home").click()  # their folder: the hand-out beside the feedback
        expect(page.locator(".jp-DirListing-content")).to_contain_text("lessons")
        expect(page.locator(".jp-DirListing-content")).to_contain_text("feedback")
        shot(page, f"{'en' if name == ADA else 'zh'}-feedback")
    assert (pwd_home(TEACHER) / "grades" / "lesson01" / "grades.csv").is_file()

    # 6. Li cannot reach Ada's work, through the hub or on disk, nor the teacher's grades.
    response = pages[LI].goto(f"{url}/user/{ADA}/api/contents/lessons")
    assert response.status == 403, response.status
    response = pages[LI].goto(f"{url}/user/{ADA}/lab")
    assert response.status == 403, response.status
    shot(pages[LI], "zh-forbidden")
    targets = [pwd_home(ADA), pwd_home(ADA) / EXERCISE[ADA], pwd_home(ADA) / "feedback" / "lesson01.md",
               state / "grades", run / "grades" / "grades.csv", pwd_home(TEACHER) / "grades", state]  # fmt: skip
    targets += [path for path in state.iterdir() if path.is_file()]  # the database, the password hashes, ...
    for target in targets:
        tried = as_student(LI, f"import os; p = {str(target)!r}; os.listdir(p) if os.path.isdir(p) else open(p)", state)
        assert "PermissionError" in tried.stderr, (target, tried.stdout, tried.stderr)
    tried = as_student(LI, f"open({str(pwd_home(ADA) / 'lessons' / 'mine.txt')!r}, 'w')", state)
    assert "PermissionError" in tried.stderr, tried.stderr

    # 7. A clean stop: every process the hub started is gone, nothing runs as the class.
    clock = time.monotonic()
    process = hub["process"]
    started = descendants(process.pid)
    assert len(started) >= 5, started  # JupyterHub, the proxy, the culler, two students' servers (and kernels)
    process.send_signal(signal.SIGTERM)
    assert process.wait(90) == 0, hub["log"].read_text()[-3000:]
    times["stop"] = time.monotonic() - clock
    time.sleep(0.5)
    assert not alive(started), f"still running after the hub stopped: {alive(started)}"
    for name in (TEACHER, ADA, LI):
        assert not processes_of(pwd.getpwnam(name).pw_uid), name
        assert not any(folder.exists() for folder in Cgroups().folders(name))
    assert "hub: stopped (exit code 0)" in hub["log"].read_text()
    removed = subprocess.run([sys.executable, "-m", "lesson_utils.classroom.hub", "remove-accounts", "--state",
                              str(state), "--yes"], capture_output=True, text=True)  # fmt: skip
    assert removed.returncode == 0, removed.stderr
    for name in (TEACHER, ADA, LI):
        with pytest.raises(KeyError):
            pwd.getpwnam(name)
    assert not any(hub["homes"].iterdir())
    print("; ".join(f"{step}: {seconds:.1f} s" for step, seconds in times.items()))
