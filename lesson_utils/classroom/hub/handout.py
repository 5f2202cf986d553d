"""Hand-out: the lessons and exercises into each student's own folder, in their language, without ever
overwriting their work.

**Teacher's side** (:func:`build`, run by the hub at each start, as root): the collection's last
commit (``git archive HEAD``; the files on disk where the collection is not a git checkout, as in
an image build) becomes one commit in a small git repository per edition, ``en.git`` and
``zh.git`` in the hub's ``handout/`` folder. The English edition is ``notebooks/`` (the lessons
and ``exercises/``); the Chinese one adds ``notebooks/zh/`` and ``docs/glossary.md``, since the
Chinese notebooks link to their English twins one folder up and to the glossary. Worked
solutions are never handed out. A commit is added only when the files changed, on top of the
previous one, so a student's copy can be brought up to date by merging.

**Student's side** (``python -m lesson_utils.classroom.hub.handout -- SERVER...``, run as the
student by their server's start command, before the server itself): **nbgitpuller**'s
:class:`~nbgitpuller.pull.GitPuller`, the Jupyter ecosystem's hand-out tool, clones the edition
into ``~/lessons`` on the first login; on every later login it fetches the newest hand-out and
merges it with nbgitpuller's rules: the student's changes win (a merge with ``-Xours``), a file
they deleted comes back, a file they made that a new hand-out also brings is renamed, never
overwritten. Then it sets JupyterLab's interface language (Chinese for ``zh``) and opens
Markdown files rendered, unless the student chose otherwise, and starts the server. A hand-out
that fails is written to the hub's log and the server starts all the same: a student is never
locked out by it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

COLLECTION = Path(__file__).resolve().parents[3]  # the checkout: notebooks/, docs/, lesson_utils/
FOLDER = "lessons"  # in each student's home
BRANCH = "main"
LANGUAGE_ENV = "LESSON_HANDOUT_LANGUAGE"
LESSON = r"\d\d_[^/]*\.ipynb"
EDITIONS = {  # which files of the collection each edition hands out (never exercises/solutions/)
    "en": re.compile(rf"notebooks/(exercises/)?{LESSON}"),
    "zh": re.compile(rf"notebooks/(zh/)?(exercises/)?{LESSON}|docs/glossary\.md"),
}
FIRST = {"en": "notebooks/00_start_here.ipynb", "zh": "notebooks/zh/00_start_here.ipynb"}
EXERCISES = {"en": "notebooks/exercises", "zh": "notebooks/zh/exercises"}
AUTHOR = {"GIT_AUTHOR_NAME": "lesson hub", "GIT_AUTHOR_EMAIL": "hub@localhost",
          "GIT_COMMITTER_NAME": "lesson hub", "GIT_COMMITTER_EMAIL": "hub@localhost"}  # fmt: skip


def first_notebook(language: str) -> str:
    """The notebook a student's JupyterLab opens, relative to their home.

    Example:
        >>> first_notebook("zh")
        'lessons/notebooks/zh/00_start_here.ipynb'
    """
    return f"{FOLDER}/{FIRST[language]}"


def exercise_path(language: str, notebook: str) -> str:
    """Where the exercise notebook ``notebook`` (e.g. ``01_weights.ipynb``) of ``language``'s edition lies in a
    student's home.

    Example:
        >>> exercise_path("en", "01_weights.ipynb")
        'lessons/notebooks/exercises/01_weights.ipynb'
    """
    return f"{FOLDER}/{EXERCISES[language]}/{notebook}"


def edition(paths, language: str) -> list[str]:
    """The paths among ``paths`` (relative to the collection) that ``language``'s edition hands out.

    Example:
        >>> edition(["notebooks/01_a.ipynb", "notebooks/zh/01_a.ipynb", "notebooks/exercises/solutions/01_s.ipynb",
        ...          "docs/glossary.md"], "en")
        ['notebooks/01_a.ipynb']
    """
    return sorted(p for p in paths if EDITIONS[language].fullmatch(p))


def _git(*args: str, cwd: Path | None = None, env: dict | None = None, data: bytes | None = None) -> bytes:
    done = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, "LANG": "C", **(env or {})},
                          input=data, capture_output=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def collection_files(collection: Path = COLLECTION) -> tuple[dict[str, bytes], str]:
    """What the hand-outs are made of: ``{path: content}`` for every file an edition may hand out, from the
    collection's last commit (files not committed are not handed out), or from disk where it is no git
    checkout; and a line saying which."""
    collection = Path(collection).resolve()
    wanted = re.compile("|".join(f"(?:{pattern.pattern})" for pattern in EDITIONS.values()))
    if (collection / ".git").exists() and shutil.which("git"):
        safe = ["-c", f"safe.directory={collection}"]  # the checkout may belong to the teacher, not root
        head = _git(*safe, "rev-parse", "HEAD", cwd=collection).decode().strip()
        archive = _git(*safe, "archive", "--format=tar", "HEAD", "--", "notebooks", "docs", cwd=collection)
        files = {}
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar.getmembers():
                if member.isfile() and wanted.fullmatch(member.name):
                    files[member.name] = tar.extractfile(member).read()
        return files, f"commit {head[:12]} of {collection}"
    files = {}
    for folder in ("notebooks", "docs"):
        for path in sorted((collection / folder).rglob("*")):
            relative = path.relative_to(collection).as_posix()
            if path.is_file() and not path.is_symlink() and wanted.fullmatch(relative):
                files[relative] = path.read_bytes()
    return files, f"the files in {collection} (not a git checkout)"


def commit_edition(repo: Path, files: dict[str, bytes], message: str) -> str:
    """Make ``files`` the newest commit of ``repo`` (a bare repository, made if missing) on :data:`BRANCH`,
    on top of the previous one; nothing new when the files did not change. The commit's id."""
    if not (repo / "HEAD").is_file():
        repo.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(repo))
    with tempfile.TemporaryDirectory(prefix="handout-") as tmp:
        work = Path(tmp, "tree")
        for path, content in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_bytes(content)
        work.mkdir(exist_ok=True)
        env = {"GIT_DIR": str(repo), "GIT_WORK_TREE": str(work), "GIT_INDEX_FILE": str(Path(tmp, "index")), **AUTHOR}
        _git("add", "--all", env=env)
        tree = _git("write-tree", env=env).decode().strip()
        try:
            parent = _git("rev-parse", "--verify", "--quiet", f"refs/heads/{BRANCH}", env=env).decode().strip()
        except RuntimeError:
            parent = ""
        if parent and _git("rev-parse", f"{parent}^{{tree}}", env=env).decode().strip() == tree:
            return parent
        commit = _git("commit-tree", tree, *(["-p", parent] if parent else []), "-m", message, env=env)
        commit_id = commit.decode().strip()
        _git("update-ref", f"refs/heads/{BRANCH}", commit_id, *([parent] if parent else []), env=env)
        return commit_id


def build(into: Path, collection: Path = COLLECTION) -> dict[str, str]:
    """Bring the hand-out repositories in ``into`` up to date with the collection; each edition's commit.

    ``into`` is made readable by everyone (the students' processes clone from it) and gets the
    ``gitconfig`` that lets them: git refuses to read a repository another account owns unless it is
    named as safe."""
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    files, source = collection_files(collection)
    if not any(EDITIONS["en"].fullmatch(path) for path in files):
        raise RuntimeError(f"no lesson notebooks in {source}: the hand-out needs notebooks/NN_*.ipynb")
    commits = {}
    for language in EDITIONS:
        chosen = {path: files[path] for path in edition(files, language)}
        commits[language] = commit_edition(repository(into, language), chosen, f"The lessons, from {source}")
    lines = ["# lets each student's git read the hand-out repositories, which root owns", "[safe]"]
    lines += [f"\tdirectory = {repository(into, language)}" for language in EDITIONS]
    (into / "gitconfig").write_text("\n".join(lines) + "\n")
    for root, _dirs, names in os.walk(into):
        os.chmod(root, 0o755)
        for name in names:
            os.chmod(os.path.join(root, name), 0o644)
    return commits


def repository(handout: Path, language: str) -> Path:
    """The hand-out repository of ``language``'s edition."""
    return Path(handout) / f"{language}.git"


def handed_out(handout: Path, language: str, path: str) -> bytes | None:
    """The content of ``path`` (relative to the edition) in the newest hand-out, or None if it has none."""
    try:
        return _git("show", f"{BRANCH}:{path}", env={"GIT_DIR": str(repository(handout, language))})
    except RuntimeError:
        return None


# -- the student's side ----------------------------------------------------------------------------------
def pull(handout: Path, language: str, home: Path) -> None:
    """Clone or update ``home/lessons`` from ``language``'s hand-out, as nbgitpuller does (run as the student)."""
    from nbgitpuller.pull import GitPuller

    url = f"file://{repository(handout, language)}"
    target = Path(home) / FOLDER
    if target.exists() and not (target / ".git").is_dir():
        aside = target.with_name(f"{FOLDER}-before-{time.strftime('%Y%m%d-%H%M%S')}")
        target.rename(aside)
        print(f"hand-out: {target} was not a hand-out (no .git): moved to {aside.name}, a fresh copy follows")
    if (target / ".git").is_dir():
        origin = _git("config", "--get", "remote.origin.url", cwd=target).decode().strip()
        if origin != url:
            print(
                f"hand-out: {target} comes from {origin}, not {url} (the language in the class list changed?): "
                "left as it is; move it aside to receive the new edition"
            )
            return
    saved = os.environ.get("GIT_CONFIG_GLOBAL")
    os.environ["GIT_CONFIG_GLOBAL"] = str(Path(handout) / "gitconfig")  # only for this hand-out's git commands
    try:
        for line in GitPuller(url, str(target), branch=BRANCH).pull():
            print(f"hand-out: {line.rstrip()}")
    finally:
        if saved is None:
            del os.environ["GIT_CONFIG_GLOBAL"]
        else:
            os.environ["GIT_CONFIG_GLOBAL"] = saved


def lab_settings(home: Path, language: str) -> None:
    """JupyterLab's interface in ``language``, no news fetched from the internet, and Markdown files (the
    feedback, the glossary) opened rendered rather than in the text editor; unless the student already
    chose otherwise (a settings file already there is kept)."""
    settings = Path(home) / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    wanted = {
        "translation-extension/plugin.jupyterlab-settings": {"locale": "zh_CN" if language == "zh" else "en"},
        "apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
        "docmanager-extension/plugin.jupyterlab-settings": {"defaultViewers": {"markdown": "Markdown Preview"}},
    }
    for name, value in wanted.items():
        path = settings / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lesson_utils.classroom.hub.handout",
        description="Hand out the lessons into ~/lessons (nbgitpuller's merge), then start the server given after "
        "--; or, with --build, make the hand-out repositories (the hub does at each start; an image build too).",
    )
    parser.add_argument("--handout", type=Path, help="the folder of hand-out repositories, to hand out from")
    parser.add_argument("--language", default=os.environ.get(LANGUAGE_ENV, "en"), choices=sorted(EDITIONS))
    parser.add_argument("--build", type=Path, metavar="FOLDER", help="make or update the hand-outs in FOLDER")
    parser.add_argument("--collection", type=Path, default=COLLECTION, help="with --build: the collection's folder")
    parser.add_argument("server", nargs=argparse.REMAINDER, help="-- then the command that starts the server")
    args = parser.parse_args(argv)
    if args.build:
        commits = build(args.build, args.collection)
        print(", ".join(f"{language}.git: {commit[:12]}" for language, commit in commits.items()))
        return
    if args.handout is None:
        parser.error("--handout FOLDER is needed (or --build FOLDER)")
    server = args.server[1:] if args.server[:1] == ["--"] else args.server
    home = Path.home()
    try:
        pull(args.handout, args.language, home)
        lab_settings(home, args.language)
    except Exception as error:  # the student gets their server anyway; the teacher reads the log
        print(f"hand-out failed for {os.environ.get('USER', home.name)}: {error}", file=sys.stderr)
    sys.stdout.flush()
    if server:
        os.execvp(server[0], server)


if __name__ == "__main__":
    main()
