"""The class's hub without a browser: the class list, the hand-out (nbgitpuller's merge, for real), the
limits, the safe reading and writing in a student's folder, JupyterHub's configuration, and the offline
checks of deploy/ (the Zero to JupyterHub values against the chart's schema, the image's pins against
pyproject.toml). The hub itself, in Chromium: tests/ui/test_hub.py."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml

from lesson_utils.classroom import course
from lesson_utils.classroom.hub import handout, limits
from lesson_utils.classroom.hub.__main__ import SITE_PACKAGES, closed_to_others
from lesson_utils.classroom.hub.classlist import ClassListError, parse_class, read_class
from lesson_utils.classroom.userfiles import UnsafeFileError, read_file, write_file
from lesson_utils.numerics import PROFILE

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


# -- the class list ----------------------------------------------------------------------------------------
def test_a_class_list_from_a_spreadsheet_reads_with_its_roles_and_languages(tmp_path):
    path = tmp_path / "class.csv"
    path.write_bytes("\ufeffUsername,Language,Role\nteacher,en,teacher\nada,EN,\nli,zh_CN,student\n\n".encode())
    members = read_class(path)
    assert [(m.username, m.language, m.role) for m in members] == [
        ("teacher", "en", "teacher"), ("ada", "en", "student"), ("li", "zh", "student")]  # fmt: skip
    assert [m.is_teacher for m in members] == [True, False, False]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,language\nada,en\n", "username is missing"),
        ("username,language,group\nada,en,1\n", "unknown column(s) group"),
        ("username,language\nAda,en\n", "line 2: 'Ada' cannot be a username"),
        ("username,language\nroot;rm,en\n", "cannot be a username"),
        ("username,language\nada,en\nli,zh\nada,zh\n", "line 4: ada is listed twice (also on line 2)"),
        ("username,language\nada,fr\n", "ada's language is 'fr': write en or zh"),
        ("username,language,role\nada,en,admin\n", "ada's role is 'admin'"),
        ("username,language,role\nteacher,en,teacher\n", "no student is listed"),
    ],
)
def test_a_wrong_class_list_says_what_to_write(text, message):
    with pytest.raises(ClassListError, match=re.escape(message)):
        parse_class(io.StringIO(text))


def test_a_missing_class_list_says_what_it_should_hold(tmp_path):
    with pytest.raises(ClassListError, match="username,language,role"):
        read_class(tmp_path / "class.csv")


# -- the hand-out ------------------------------------------------------------------------------------------
def notebook(text: str) -> str:
    """A notebook as nbformat writes one: each line of a cell's source on a line of the file of its own."""
    cell = {"cell_type": "code", "source": text.splitlines(keepends=True)}
    return json.dumps({"cells": [cell], "nbformat": 4}, indent=1) + "\n"


def make_collection(folder: Path, git: bool = True) -> Path:
    """A small collection: two lessons and an exercise in each edition, a worked solution, the glossary."""
    files = {
        "notebooks/00_start_here.ipynb": notebook("start"),
        "notebooks/01_weights.ipynb": notebook("lesson 1"),
        "notebooks/exercises/01_weights.ipynb": notebook("q3_answer = None\nline 2\nline 3\nline 4"),
        "notebooks/exercises/solutions/01_weights_solutions.ipynb": notebook("q3_answer = 'b'"),
        "notebooks/zh/00_start_here.ipynb": notebook("开始"),
        "notebooks/zh/exercises/01_weights.ipynb": notebook("q3_answer = None"),
        "docs/glossary.md": "# 术语表\n",
        "lesson_utils/__init__.py": "",
    }
    for path, content in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(content)
    if git:
        commit(folder, "the collection")
    return folder


def commit(folder: Path, message: str) -> None:
    run = {"cwd": folder, "check": True, "capture_output": True}
    if not (folder / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main"], **run)
    subprocess.run(["git", "add", "-A"], **run)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message], **run)


def git_files(repo: Path) -> list[str]:
    out = subprocess.run(["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", "main"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return sorted(out.split())


def test_each_edition_hands_out_its_notebooks_and_never_the_solutions(tmp_path):
    collection = make_collection(tmp_path / "collection")
    (collection / "notebooks" / "02_not_committed.ipynb").write_text(notebook("draft"))
    commits = handout.build(tmp_path / "handout", collection)
    english = ["notebooks/00_start_here.ipynb", "notebooks/01_weights.ipynb", "notebooks/exercises/01_weights.ipynb"]
    assert git_files(handout.repository(tmp_path / "handout", "en")) == english
    assert git_files(handout.repository(tmp_path / "handout", "zh")) == [
        "docs/glossary.md",
        "notebooks/00_start_here.ipynb",
        "notebooks/01_weights.ipynb",
        "notebooks/exercises/01_weights.ipynb",
        "notebooks/zh/00_start_here.ipynb",
        "notebooks/zh/exercises/01_weights.ipynb",
    ]  # fmt: skip  (the Chinese notes link the English twins)
    assert handout.build(tmp_path / "handout", collection) == commits  # nothing changed: no new commit
    (collection / "notebooks" / "01_weights.ipynb").write_text(notebook("lesson 1, fixed"))
    commit(collection, "a fix")
    again = handout.build(tmp_path / "handout", collection)
    assert again["en"] != commits["en"] and again["zh"] != commits["zh"]
    parent = subprocess.run(["git", "--git-dir", str(tmp_path / "handout" / "en.git"), "rev-parse", "main^"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert parent == commits["en"]  # on top of the last hand-out: a student's copy merges it
    assert "directory = " + str(tmp_path / "handout" / "en.git") in (tmp_path / "handout" / "gitconfig").read_text()
    for root, _dirs, names in os.walk(tmp_path / "handout"):  # the students' processes read it
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o755
        assert all(stat.S_IMODE(os.stat(os.path.join(root, n)).st_mode) == 0o644 for n in names)


def test_an_image_build_hands_out_the_files_on_disk(tmp_path):
    collection = make_collection(tmp_path / "collection", git=False)
    handout.main(["--build", str(tmp_path / "handout"), "--collection", str(collection)])
    assert "notebooks/exercises/01_weights.ipynb" in git_files(tmp_path / "handout" / "en.git")
    with pytest.raises(RuntimeError, match="no lesson notebooks"):
        handout.build(tmp_path / "empty-handout", tmp_path / "nothing")


@pytest.fixture
def shared():
    """A folder another account may pass through (pytest's own are closed): the student's home goes there."""
    folder = Path(tempfile.mkdtemp(prefix="hub-test-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def student_python() -> tuple[str, str]:
    """A Python another account can run, and the code that gives it this environment's packages: this one, or
    (a .venv made from a Python in a private folder, as on CI) the system's of the same version, as the
    hub's bridge does."""
    if not closed_to_others([Path(os.path.realpath(sys.executable)).parent]):
        return sys.executable, ""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"/usr/bin/python{version}", f"import site; site.addsitedir({str(SITE_PACKAGES)!r}); "


def pull_as_student(handout_dir: Path, language: str, home: Path) -> str:
    """The student's side, in a process of its own: as ``nobody`` when root (so git's refusal to read a
    repository another account owns is met as in class), otherwise as this user."""
    python, prefix = student_python()
    code = prefix + (
        "from pathlib import Path; from lesson_utils.classroom.hub import handout; "
        f"handout.pull(Path({str(handout_dir)!r}), {language!r}, Path({str(home)!r})); "
        f"handout.lab_settings(Path({str(home)!r}), {language!r})"
    )
    user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=home, env=env, **user)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def readable_checkout():
    """This checkout and its environment, readable by another account for the test's duration (a clone in
    a private folder, as CI's may be, is opened: passing through only, and closed again after)."""
    opened = {}
    for shown in closed_to_others([ROOT / "lesson_utils", SITE_PACKAGES]) if os.geteuid() == 0 else []:
        folder = Path(shown.rsplit(" (mode", 1)[0])
        opened[folder] = stat.S_IMODE(folder.stat().st_mode)
        folder.chmod(opened[folder] | (0o005 if folder in (ROOT / "lesson_utils", SITE_PACKAGES) else 0o001))
    yield
    for folder, mode in opened.items():
        folder.chmod(mode)


def test_a_later_login_merges_the_new_hand_out_and_keeps_the_students_work(tmp_path, shared, readable_checkout):
    collection = make_collection(tmp_path / "collection")
    handout.build(shared / "handout", collection)
    home = shared / "home"
    home.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(home, NOBODY, NOBODY)
    said = pull_as_student(shared / "handout", "en", home)
    assert "git clone" in said
    lessons = home / "lessons" / "notebooks"
    exercise, lesson, start = (
        lessons / "exercises" / "01_weights.ipynb",
        lessons / "01_weights.ipynb",
        lessons / "00_start_here.ipynb",
    )
    answered = exercise.read_text().replace("q3_answer = None", 'q3_answer = \\"b\\"')
    exercise.write_text(answered)  # the student's work
    start.unlink()  # a lesson deleted by mistake
    (lessons / "02_mine.ipynb").write_text("my notes")  # the student's own file, with a name the teacher then uses
    # The teacher fixes lesson 01, changes the exercise far from the student's answer, adds lesson 02.
    (collection / "notebooks" / "01_weights.ipynb").write_text(notebook("lesson 1, fixed"))
    (collection / "notebooks" / "exercises" / "01_weights.ipynb").write_text(
        notebook("q3_answer = None\nline 2\nline 3\nline 4, clearer")
    )
    (collection / "notebooks" / "02_sharing.ipynb").write_text(notebook("lesson 2"))
    (collection / "notebooks" / "02_mine.ipynb").write_text(notebook("the teacher's"))
    commit(collection, "the next week")
    handout.build(shared / "handout", collection)
    said = pull_as_student(shared / "handout", "en", home)
    assert "git fetch" in said and "git clone" not in said
    assert 'q3_answer = \\"b\\"' in exercise.read_text()  # the student's answer kept
    assert "line 4, clearer" in exercise.read_text()  # the teacher's change merged around it
    assert "lesson 1, fixed" in lesson.read_text()  # an untouched lesson updated
    assert start.exists() and (lessons / "02_sharing.ipynb").exists()  # restored; new
    assert "the teacher's" in (lessons / "02_mine.ipynb").read_text()
    renamed = [p for p in lessons.glob("02_mine__*.ipynb")]
    assert len(renamed) == 1 and renamed[0].read_text() == "my notes"  # the student's file renamed, not lost
    settings = home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    assert json.loads((settings / "translation-extension" / "plugin.jupyterlab-settings").read_text()) == {
        "locale": "en"}  # fmt: skip


def test_jupyterlab_settings_a_student_changed_are_kept(tmp_path):
    handout.lab_settings(tmp_path, "zh")
    locale = tmp_path / ".jupyter/lab/user-settings/@jupyterlab/translation-extension/plugin.jupyterlab-settings"
    assert json.loads(locale.read_text()) == {"locale": "zh_CN"}
    locale.write_text('{"locale": "en"}')  # the student switched JupyterLab to English
    handout.lab_settings(tmp_path, "zh")
    assert json.loads(locale.read_text()) == {"locale": "en"}


def test_a_hand_out_that_fails_still_starts_the_server(tmp_path):
    server = [sys.executable, "-c", "print('the server started')"]
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "lesson_utils.classroom.hub.handout", "--handout", str(tmp_path / "no-such")]
    done = subprocess.run([*command, "--", *server], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "the server started" in done.stdout
    assert "hand-out failed" in done.stderr and "no-such" in done.stderr


# -- safe files in a student's folder ------------------------------------------------------------------------
def test_links_on_the_way_are_never_followed(tmp_path):
    uid, gid = os.getuid(), os.getgid()
    home = tmp_path / "home"
    (home / "lessons").mkdir(parents=True)
    secret = tmp_path / "secret.ipynb"
    secret.write_text("another student's notebook")
    (home / "lessons" / "01.ipynb").symlink_to(secret)
    (home / "linked").symlink_to(tmp_path)
    with pytest.raises(UnsafeFileError, match="lessons/01.ipynb is a symbolic link"):
        read_file(home, "lessons/01.ipynb", uid)
    with pytest.raises(UnsafeFileError, match="linked is a symbolic link"):
        read_file(home, "linked/secret.ipynb", uid)
    (home / "big.ipynb").write_bytes(b"x" * 2000)
    with pytest.raises(UnsafeFileError, match="more than the 1000"):
        read_file(home, "big.ipynb", uid, limit=1000)
    os.mkfifo(home / "pipe.ipynb")
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        read_file(home, "pipe.ipynb", uid)
    with pytest.raises(FileNotFoundError):
        read_file(home, "lessons/02.ipynb", uid)
    # Writing: a link where the feedback goes is replaced, its target untouched; a folder there is refused.
    (home / "feedback").mkdir()
    (home / "feedback" / "lesson01.md").symlink_to(secret)
    write_file(home, "feedback/lesson01.md", b"your feedback", uid, gid)
    assert secret.read_text() == "another student's notebook"
    assert not (home / "feedback" / "lesson01.md").is_symlink()
    assert (home / "feedback" / "lesson01.md").read_bytes() == b"your feedback"
    (home / "feedback" / "lesson02.md").mkdir()
    with pytest.raises(UnsafeFileError, match="is a folder"):
        write_file(home, "feedback/lesson02.md", b"x", uid, gid)
    assert sorted(p.name for p in (home / "feedback").iterdir()) == ["lesson01.md", "lesson02.md"]  # no leftovers
    with pytest.raises(UnsafeFileError, match="linked is a symbolic link"):
        write_file(home, "linked/planted.md", b"x", uid, gid)
    assert not (tmp_path / "planted.md").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a file owned by another account")
def test_a_file_the_student_does_not_own_is_refused_and_written_files_are_theirs(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    (home / "hardlinked.ipynb").write_text("root's")  # a file in their folder that is not theirs
    with pytest.raises(UnsafeFileError, match="belongs to user id 0"):
        read_file(home, "hardlinked.ipynb", NOBODY)
    write_file(home, "feedback/lesson01.md", b"x", NOBODY, NOBODY)
    for path in (home / "feedback", home / "feedback" / "lesson01.md"):
        assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY)
    assert stat.S_IMODE((home / "feedback" / "lesson01.md").stat().st_mode) == 0o644


# -- collect: which notebook, which lesson -------------------------------------------------------------------
def test_the_lesson_names_its_exercise_notebook():
    assert course.exercise_notebook("01", ROOT) == "01_weights.ipynb"
    with pytest.raises(ValueError, match="no exercise notebook for lesson 42: choose one of 01, 02"):
        course.exercise_notebook("42", ROOT)
    with pytest.raises(ValueError, match="is not a lesson"):
        course.lesson_number("weights")


def test_the_students_own_edition_is_collected_unless_only_the_other_was_answered():
    handed = {"en": b"blank", "zh": b"blank zh"}
    assert course.choose("zh", {"zh": b"answered", "en": b"blank"}, handed) == "zh"
    assert course.choose("zh", {"zh": b"blank zh", "en": b"answered"}, handed) == "en"
    assert course.choose("zh", {"zh": b"blank zh", "en": b"blank"}, handed) == "zh"
    assert course.choose("en", {"en": b"answered"}, handed) == "en"


# -- limits ----------------------------------------------------------------------------------------------------
def fake_cgroups(root: Path, version: int) -> limits.Cgroups:
    if version == 2:
        (root / "cgroup.controllers").write_text("cpu memory pids\n")
        (root / "cgroup.subtree_control").write_text("")
    else:
        for controller in limits.V1_CONTROLLERS:
            (root / controller).mkdir()
            (root / controller / "cgroup.procs").write_text("")
    return limits.Cgroups(root)


@pytest.mark.parametrize("version", [2, 1])
def test_a_students_group_gets_the_limits_and_is_removed_at_the_end(tmp_path, version):
    cgroups = fake_cgroups(tmp_path, version)
    assert cgroups.version == version and cgroups.usable() is None
    folders = cgroups.prepare("ada", limits.Limits(memory=3 * 2**30, cpus=1.0, tasks=512))
    written = {f.name: f.read_text().strip() for folder in folders for f in folder.iterdir()}
    if version == 2:
        assert written == {"memory.max": str(3 * 2**30), "cpu.max": "100000 100000", "pids.max": "512"}
        assert (tmp_path / "lesson-hub" / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    else:
        assert written == {"memory.limit_in_bytes": str(3 * 2**30), "cpu.cfs_period_us": "100000",
                           "cpu.cfs_quota_us": "100000", "pids.max": "512"}  # fmt: skip
    for path in cgroups.join_files("ada"):  # what a new server's process writes
        Path(path).write_text("")
    assert cgroups.pids("ada") == set()
    assert cgroups.end("ada") == 0 and not any(f.exists() for f in folders)
    cgroups.remove_parent()
    assert not (tmp_path / "lesson-hub").exists() and not (tmp_path / "memory" / "lesson-hub").exists()


def test_without_control_groups_the_hub_says_why(tmp_path):
    assert "no cgroup v2 or v1" in limits.Cgroups(tmp_path).usable()


def test_a_new_server_enters_its_group_and_gets_the_process_limit(tmp_path):
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    code = (
        "import resource; from pathlib import Path; from lesson_utils.classroom.hub import limits; "
        f"limits.enter([{str(procs)!r}], limits.Limits(2**30, 1.0, 4000), fallback=True); "
        "print(resource.getrlimit(resource.RLIMIT_NPROC)[0], resource.getrlimit(resource.RLIMIT_AS)[0])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child = int(procs.read_text())
    assert done.stdout.split() == ["4000", str(limits.FALLBACK_ADDRESS_SPACE)]  # never below torch's 8 GiB
    assert child > 0


def test_memory_amounts():
    assert limits.parse_bytes("4G") == 4 * 2**30 and limits.parse_bytes("1.5g") == int(1.5 * 2**30)
    with pytest.raises(ValueError, match="write e.g. 4G"):
        limits.parse_bytes("lots")


# -- JupyterHub's configuration ----------------------------------------------------------------------------------
def test_the_hubs_configuration(tmp_path):
    from traitlets.config import Config

    from lesson_utils.classroom.hub.config import CULLER_SCOPES, config_file, configure
    from lesson_utils.classroom.hub.settings import Settings
    from lesson_utils.classroom.hub.spawner import ClassSpawner

    (tmp_path / "class.csv").write_text("username,language,role\nteacher,en,teacher\nada,en,\nli,zh,\n")
    settings = Settings(state=str(tmp_path), hub_port=8081, proxy_api_port=8001, python="/opt/py/bin/python")
    c = Config()
    configure(c, settings)
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000"  # loopback unless the teacher says --ip
    assert c.JupyterHub.hub_bind_url == "http://127.0.0.1:8081"
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:8001"
    assert c.JupyterHub.authenticator_class == "firstuseauthenticator.FirstUseAuthenticator"
    assert c.FirstUseAuthenticator.create_users is False
    assert c.Authenticator.allowed_users == {"teacher", "ada", "li"} and c.Authenticator.admin_users == {"teacher"}
    assert c.JupyterHub.spawner_class is ClassSpawner and c.ClassSpawner.languages["li"] == "zh"
    assert c.Spawner.cmd[0] == "/opt/py/bin/python" and c.Spawner.cmd[-2:] == ["-m", "jupyterhub.singleuser"]
    assert c.Spawner.mem_limit == "4G" and c.Spawner.cpu_limit == 1.0
    (culler,) = c.JupyterHub.services
    assert culler["command"][1:3] == ["-m", "jupyterhub_idle_culler"] and "--timeout=3600" in culler["command"]
    assert c.JupyterHub.load_roles == [{"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]}]
    assert c.JupyterHub.cleanup_servers is True and c.JupyterHub.db_url.endswith(f"{tmp_path}/jupyterhub.sqlite")
    assert f"Settings.load({str(tmp_path)!r})" in config_file(settings)


def test_students_need_every_folder_on_the_way_open(tmp_path):
    closed = tmp_path / "closed"
    (closed / "inside").mkdir(parents=True)
    closed.chmod(0o700)
    try:
        assert f"{closed} (mode 700)" in closed_to_others([closed / "inside"])
        closed.chmod(0o711)  # passing through is enough on the way
        assert not any(p.startswith(f"{closed} ") for p in closed_to_others([closed / "inside"]))
        (closed / "inside").chmod(0o711)  # the folder itself must also be readable
        assert f"{closed / 'inside'} (mode 711)" in closed_to_others([closed / "inside"])
    finally:
        closed.chmod(0o755)


# -- deploy/: beyond one machine, checked offline ------------------------------------------------------------------
SCHEMA = ROOT / "tests" / "data" / "z2jh-4.4.0-values.schema.yaml"


def unknown_keys(values, schema: dict, where: str = "") -> list[str]:
    """The keys of ``values`` that ``schema`` (a JSON schema's structure) does not name, and wrong types."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    python = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
              "boolean": bool, "null": type(None)}  # fmt: skip
    if kinds and not any(isinstance(values, python[k]) for k in kinds):
        return [f"{where or '(top)'}: {type(values).__name__}, the chart wants {'/'.join(kinds)}"]
    if not isinstance(values, dict):
        return []
    problems = []
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key in schema.get("properties", {}):
            problems += unknown_keys(value, schema["properties"][key], path)
        elif any(re.search(pattern, key) for pattern in schema.get("patternProperties", {})):
            pattern = next(p for p in schema["patternProperties"] if re.search(p, key))
            problems += unknown_keys(value, schema["patternProperties"][pattern], path)
        elif schema.get("additionalProperties") is False:
            problems.append(f"{path}: not a key of the chart")
    return problems


def test_the_kubernetes_values_name_only_the_charts_keys():
    values = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "values.yaml").read_text())
    schema = yaml.safe_load(SCHEMA.read_text())
    assert unknown_keys(values, schema) == []
    assert unknown_keys({"singleuser": {"memory": {"limt": "4G"}}}, schema) == [
        "singleuser.memory.limt: not a key of the chart"
    ]
    assert unknown_keys({"cull": {"timeout": "1h"}}, schema) == ["cull.timeout: str, the chart wants integer/null"]


def test_the_kubernetes_class_matches_the_one_machine_hub():
    values = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "values.yaml").read_text())
    single = values["singleuser"]
    assert single["extraEnv"] == PROFILE  # the numeric profile, as lesson_utils.numerics pins it
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "firstuseauthenticator.FirstUseAuthenticator"
    commands = [single["cmd"]] + [p["kubespawner_override"]["cmd"] for p in single["profileList"][1:]]
    for language, command in zip(["en", "zh"], commands, strict=True):
        args = command[command.index("-m") + 1 :]
        assert args[0] == "lesson_utils.classroom.hub.handout" and args[args.index("--language") + 1] == language
    defaults = [single["defaultUrl"], single["profileList"][1]["kubespawner_override"]["default_url"]]
    assert defaults == [f"/lab/tree/{handout.first_notebook(lang)}" for lang in ("en", "zh")]
    readme = (ROOT / "README.md").read_text()
    assert "--version 4.4.0" in (ROOT / "deploy" / "kubernetes" / "values.yaml").read_text()
    assert "4.4.0" in SCHEMA.read_text().split("\n", 1)[0] and "Zero to JupyterHub" in readme


def pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, version = requirement.split("==")
        found[name.lower()] = version
    return found


def test_the_students_image_installs_exactly_pyprojects_pins():
    dockerfile = (ROOT / "deploy" / "image" / "Dockerfile").read_text()
    installs = re.search(r"pip install (.*?)(?:&&|$)", dockerfile.replace("\\\n", " "), re.S).group(1).split()
    named = dict(arg.split("==") for arg in installs if "==" in arg)
    assert named == {"jupyterhub": pins()["jupyterhub"], "nbgitpuller": pins()["nbgitpuller"]}
    assert "/opt/collection" in installs  # the collection itself: its dependencies at pyproject.toml's pins
    copied = re.findall(r"^COPY (.+) /opt/collection/", dockerfile, re.M)
    assert "pyproject.toml" in copied[0] and "lesson_utils" in dockerfile and "notebooks" in dockerfile
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    base = re.search(r"^FROM python:(\d+\.\d+)", dockerfile, re.M).group(1)
    assert python == ">=3.11" and base == "3.11"  # the Python the collection's wheels were pinned on


def test_the_proxy_is_pinned_with_its_lock_file():
    package = json.loads((ROOT / "deploy" / "proxy" / "package.json").read_text())
    lock = json.loads((ROOT / "deploy" / "proxy" / "package-lock.json").read_text())
    pinned = package["dependencies"]["configurable-http-proxy"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned)  # an exact version, not a range
    assert lock["packages"]["node_modules/configurable-http-proxy"]["version"] == pinned
    assert all("integrity" in entry for name, entry in lock["packages"].items() if name)


def test_make_test_installs_what_the_hub_test_needs():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: install\b", makefile, re.M) and re.search(r"^hub: setup hub-proxy", makefile, re.M)
    assert re.search(r"^install: .*\n\t@./scripts/install_all.sh$", makefile, re.M)
    steps = (ROOT / "scripts" / "install_all.sh").read_text()  # pip beside the system's parts, which run in turn
    for script in ("setup.sh", "install_browser.sh", "install_sandbox.sh", "install_hub.sh"):
        assert f"./scripts/{script}" in steps, script
        assert os.access(ROOT / "scripts" / script, os.X_OK), script
