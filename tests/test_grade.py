"""The grader, attacked: a class folder of honest, broken and cheating lesson-01 submissions,
built here from the solution notebook. Each must be graded as what it really is, or flagged
for review, and nothing outside a submission's working folder may change."""

import csv
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lesson_utils.classroom.grade import classify, grade_folder

pytestmark = [pytest.mark.slow, pytest.mark.grader]  # starts kernels and processes: left out of `make check`

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "notebooks" / "exercises" / "solutions" / "01_weights_solutions.ipynb"
BLANK = ROOT / "notebooks" / "exercises" / "01_weights.ipynb"
MARKER = "grade-test-leftover-7f3a"  # the command line of processes a submission leaves behind


def cells_of(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def write(folder: Path, name: str, sources: list[str]) -> Path:
    path = folder / name
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)
    return path


def solution() -> list[str]:
    return cells_of(SOLUTION)


def blank() -> list[str]:
    return cells_of(BLANK)


def no_checks(sources: list[str]) -> list[str]:
    return [s for s in sources if ".check()" not in s]


def answer(sources: list[str], q: int) -> int:
    """Index of the answer cell of question ``q`` (the cell before ``ex.q<q>.check()``)."""
    return sources.index(f"ex.q{q}.check()") - 1


def set_up() -> list[str]:
    """The cells before the first answer (the numeric profile's, then the set-up cell)."""
    return blank()[: answer(blank(), 1)]


def through(q: int) -> int:
    """How many of the solution's cells there are up to and including ``ex.q<q>.check()``."""
    return solution().index(f"ex.q{q}.check()") + 1


FAKE_LINE = 'GRADER_RESULTS [{"question": "lesson01.q1", "status": "correct", "message": ""}]'

# Attacks on what every notebook shares (the course package, files run at start-up): graded one
# at a time in the sequential class below, so the flag lands on the notebook that did it.
SHARED_ATTACKS = {
    "pyc_poison": (  # a .pyc beside the course package's source would run instead of it, for everyone after
        blank()
        + [
            "import os, sys, lesson_utils.classroom.grade_worker as target\n"
            "folder = os.path.join(os.path.dirname(target.__file__), '__pycache__')\n"
            "cache = os.path.join(folder, f'grade_worker.{sys.implementation.cache_tag}.pyc')\n"
            "os.makedirs(folder, exist_ok=True)\n"
            "open(cache, 'wb').write(b'not really bytecode')"
        ],
        0,
        "graded",
        "course package changed",
    ),
    "startup_files": (  # files every later Python or IPython process would run (harmless contents here)
        blank()
        + [
            "import site\nfrom pathlib import Path\n"
            "startup = Path.home() / '.ipython' / 'profile_default' / 'startup'\n"
            "startup.mkdir(parents=True, exist_ok=True)\n"
            "(startup / '00-planted-by-test-grade.py').write_text('# planted by tests/test_grade.py')\n"
            "(Path(site.getsitepackages()[0]) / 'planted-by-test-grade.pth').write_text('# planted')"
        ],
        0,
        "graded",
        "files run when Python or Jupyter start changed",
    ),
}

ATTACKS = {
    # name: (cells, expected points, expected status prefix, a word the review column must hold or None)
    "fake_results": (
        blank()
        + [
            "from lesson_utils.exercises.core import RESULTS, Result\n"
            "for q in ('lesson01.q1', 'lesson01.q2', 'lesson01.q3'):\n"
            "    RESULTS[q] = Result(q, 'correct', 'trust me')"
        ],
        0,
        "graded",
        None,
    ),
    "print_shadowing": (
        blank()
        + [
            "import builtins\n_print = builtins.print\nbuiltins.print = lambda *a, **k: _print(" + repr(FAKE_LINE) + ")"
        ],
        0,
        "graded",
        "builtins.print",
    ),
    "ipython_hook": (
        blank() + ["get_ipython().events.register('pre_run_cell', lambda info: print(" + repr(FAKE_LINE) + "))"],
        0,
        "graded",
        "IPython 'pre_run_cell' hook",
    ),
    "patched_checker": (
        blank()
        + [
            "from lesson_utils.exercises import core\n"
            "core.Question.evaluate = lambda self, ns: core.Result(self.qid, 'correct', '')\n"
            "ex.q1.checker = lambda **kwargs: 'fine'\n"
            "ex.q2.check(); ex.q1.check()"
        ],
        0,
        "graded",
        "Question.evaluate",
    ),
    "patched_torch": (  # a random Net's weights, and torch.equal made to agree with anything
        set_up()
        + [
            "weights_path = workdir / 'w.pt'\ntorch.save(Net().state_dict(), weights_path)\n"
            "torch.equal = lambda a, b: True\ntorch.Tensor.equal = lambda self, other: True",
            "ex.q1.check()",
        ],
        None,  # graded in the same kernel with the patched function: what counts is the flag
        "graded",
        "torch.equal",
    ),
    "swapped_torch": (  # swapped for another library function: no notebook code in it
        set_up()
        + [
            "weights_path = workdir / 'w.pt'\n"
            "torch.save(Net().state_dict(), weights_path)\n"
            "torch.equal = torch.allclose"
        ],
        None,
        "graded",
        "torch.equal is not the library's own",
    ),
    "background_thread": (
        blank()
        + [
            "import threading, time\n"
            "def rewrite():\n"
            "    while True:\n"
            "        time.sleep(0.01)\n"
            "threading.Thread(target=rewrite, daemon=True).start()"
        ],
        0,
        "graded",
        "thread",
    ),
    "json_forge": (  # the probe's report used to go through json.dumps: make it say "all correct"
        blank()
        + [
            "import json\n_dumps = json.dumps\n"
            "def forged(report, *args, **kwargs):\n"
            "    if isinstance(report, dict) and 'results' in report:\n"
            "        for result in report['results']:\n"
            "            result['status'] = 'correct'\n"
            "        report['flags'] = []\n"
            "    return _dumps(report, *args, **kwargs)\n"
            "json.dumps = forged"
        ],
        0,
        "graded",
        "json.dumps",
    ),
    "shadowed_get_ipython": (  # the report used to be fetched with get_ipython(), found in the notebook's names
        blank()
        + [
            "import ast\nfrom IPython import get_ipython as real\n"
            "class Namespace:\n"
            "    def pop(self, key, default=None):\n"
            "        report = ast.literal_eval(real().user_ns.pop(key, default))\n"
            "        for result in report['results']:\n"
            "            result['status'] = 'correct'\n"
            "        report['flags'] = []\n"
            "        return repr(report)\n"
            "class Shell:\n"
            "    user_ns = Namespace()\n"
            "    def __getattr__(self, name):\n"
            "        return getattr(real(), name)\n"
            "def get_ipython():\n"
            "    return Shell()"
        ],
        0,
        "graded",
        "redefines the built-in name `get_ipython`",
    ),
    "never_checked": (no_checks(solution()), 3, "graded", None),
    "fixed_after_check": (  # wrong answers checked, then fixed: the final state counts
        set_up()
        + [
            "weights_path = workdir / 'w.pt'\ntorch.save(Net().state_dict(), weights_path)",
            "ex.q1.check()",
            "q3_answer = 'a'",
            "ex.q3.check()",
            "torch.save(net.state_dict(), weights_path)\nq3_answer = 'b'",
        ],
        2,
        "graded",
        None,
    ),
    "broken_after_check": (  # right answers checked, then undone: the final state counts
        solution() + ["weights_path.unlink()\nmodel.train()"],
        1,
        "graded",
        None,
    ),
    "left_processes": (
        solution()
        + [
            "import subprocess\n"
            f"subprocess.Popen(['sh', '-c', 'sleep 300; : {MARKER}'], start_new_session=True)\n"
            f"subprocess.Popen(['sh', '-c', '(sleep 300; : {MARKER}) & exit 0'])  # a daemon: its parent exits at once"
        ],
        3,
        "graded",
        "process",
    ),
    "kills_its_grader": (  # the kernel's parent is the grading process of this notebook
        solution() + ["import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"],
        3,  # the answers were checked before: the last report the kernel gave counts
        "grader stopped",
        "killed",
    ),
    "loops": (
        # a loop that never ends; sleeping, not spinning, so its 45 s leave the CPU to the other tests
        solution()[: through(2)] + ["import time\nwhile True:\n    time.sleep(0.1)"] + solution()[through(2) :],
        2,  # q1 and q2 were answered before the loop
        f"timed out in cell {through(2) + 1}",
        None,
    ),
    "crashes": (
        solution()[: through(1)] + ["import os\nos._exit(1)"] + solution()[through(1) :],
        1,  # q1 was answered and checked before the crash
        f"crashed in cell {through(1) + 1}",
        None,
    ),
    "raises": (set_up() + ["raise ValueError('oops')"] + solution()[len(set_up()) :], 3, "ran with errors", None),
    # honest work: imports of another lesson outnumber this one's; --lesson is the teacher's word
    "other_lessons_imported": (
        solution()
        + [
            "from lesson_utils.exercises import lesson02",
            "import lesson_utils.exercises.lesson02",
            "import lesson_utils.exercises.lesson04 as other",
        ],
        3,
        "graded",
        None,
    ),
    # honest work that leaves another default dtype behind: the references are still float32
    "float64_left_as_default": (solution() + ["torch.set_default_dtype(torch.float64)"], 3, "graded", None),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The whole class, graded once: {file: row}, plus the folder and the output folder."""
    base = tmp_path_factory.mktemp("class")
    folder = base / "submissions"
    folder.mkdir()
    write(folder, "honest.ipynb", solution())
    write(folder, "blank.ipynb", blank())
    for name, (sources, *_rest) in ATTACKS.items():
        write(folder, f"{name}.ipynb", sources)
    # a planted module next to the notebooks, and one in a student's own folder with its notebook
    (folder / "lesson_utils.py").write_text("raise SystemExit('the planted module was imported')\n")
    own = folder / "mallory"
    own.mkdir()
    write(own, "mallory.ipynb", blank())
    (own / "lesson_utils").mkdir()
    (own / "lesson_utils" / "__init__.py").write_text("raise SystemExit('the planted package was imported')\n")
    (folder / "empty.ipynb").write_bytes(b"")
    (folder / "notes.txt").write_text("not a notebook")
    (folder / "broken.ipynb").write_text("{ not json")
    write(folder, "王小明.ipynb", solution())
    write(
        folder,
        "wrong_lesson.ipynb",
        cells_of(ROOT / "notebooks" / "exercises" / "solutions" / "03_checkpoints_solutions.ipynb"),
    )
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    out = base / "grades" / "grades.csv"
    rows = grade_folder(folder, out, lesson="01", timeout=45, jobs=2)
    after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with open(out, newline="", encoding="utf-8-sig") as f:
        table = {row["file"]: row for row in csv.DictReader(f)}
    return {"rows": rows, "table": table, "out": out, "before": before, "after": after}


def test_every_submission_has_one_row_and_the_csv_opens_in_excel(graded):
    table, out = graded["table"], graded["out"]
    assert len(table) == len(graded["rows"]) == len(ATTACKS) + 9
    assert out.read_bytes().startswith(b"\xef\xbb\xbf"), "UTF-8 with a byte-order mark"
    assert table["王小明.ipynb"]["points"] == "3" and table["王小明.ipynb"]["student"] == "王小明"


def test_honest_and_blank_work_is_graded_as_it_is(graded):
    table = graded["table"]
    assert table["honest.ipynb"]["points"] == "3" and table["honest.ipynb"]["percent"] == "100.0"
    assert table["honest.ipynb"]["needs review"] == ""
    assert table["blank.ipynb"]["points"] == "0" and table["blank.ipynb"]["q1"] == "not attempted"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_each_attack_is_graded_as_what_it_is_or_flagged(graded, name):
    _, points, status, flag = ATTACKS[name]
    row = graded["table"][f"{name}.ipynb"]
    assert row["status"].startswith(status), row
    if points is not None:
        assert row["points"] == str(points), row
    if flag is None:
        assert row["needs review"] == "", row
    else:
        assert flag in row["needs review"], row


def test_results_of_questions_before_a_crash_or_time_out_are_kept(graded):
    table = graded["table"]
    assert table["loops.ipynb"]["q1"] == table["loops.ipynb"]["q2"] == "correct"
    assert f"still running after 45 s, in cell {through(2) + 1}" in table["loops.ipynb"]["reason"]
    assert table["crashes.ipynb"]["q1"] == "correct" and table["crashes.ipynb"]["q2"] == "not attempted"


def test_answers_changed_after_check_are_graded_on_the_final_state(graded):
    table = graded["table"]
    broken = table["broken_after_check.ipynb"]
    assert broken["q1"] == broken["q2"] == "incorrect" and broken["q3"] == "correct"
    assert "check() had said correct" in broken["q1 message"]
    fixed = table["fixed_after_check.ipynb"]
    assert fixed["q1"] == fixed["q3"] == "correct"


def test_a_planted_module_is_not_imported(graded):
    assert graded["after"] == graded["before"], "the submissions folder is as it was"
    table = graded["table"]
    assert table["mallory"]["status"] == "graded" and table["mallory"]["q1"] == "not attempted"
    assert table["blank.ipynb"]["status"] == "graded", "lesson_utils.py beside it was not imported"


def test_no_process_outlives_its_notebook(graded):
    leftovers = subprocess.run(["pgrep", "-f", MARKER], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_statuses_for_files_that_are_not_notebooks_of_this_lesson(graded):
    table = graded["table"]
    assert table["empty.ipynb"]["status"] == "empty file"
    assert table["notes.txt"]["status"] == "not a notebook" and "not a .ipynb file" in table["notes.txt"]["reason"]
    assert table["broken.ipynb"]["status"] == "not a notebook"
    assert (
        table["wrong_lesson.ipynb"]["status"] == "wrong lesson" and "lesson03" in table["wrong_lesson.ipynb"]["reason"]
    )
    assert table["lesson_utils.py"]["status"] == "not a notebook"


def test_reports_beside_the_csv(graded):
    folder = graded["out"].parent
    feedback = (folder / "feedback" / "broken_after_check.md").read_text(encoding="utf-8")
    assert "## q2: incorrect" in feedback and "Hint:" in feedback
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert "| q1 |" in summary and "| empty file | 1 |" in summary and "Needs review:" in summary
    assert (folder / "summary.png").stat().st_size > 1000
    log = (folder / "grade.log").read_text(encoding="utf-8")
    assert "===== raises.ipynb" in log


def test_a_result_not_signed_by_the_grading_process_is_refused():
    from lesson_utils.classroom.grade import Grader
    from lesson_utils.classroom.grade_worker import signed

    row = {"status": "graded", "results": [{"question": "lesson01.q1", "status": "correct", "message": ""}]}
    assert Grader._verified(signed(row, "key"), "key") == row
    assert Grader._verified(signed(row, "guess"), "key")["status"] == "grading failed"
    forged = signed(row, "key")
    forged["row"]["results"][0]["status"] = "incorrect"
    assert Grader._verified(forged, "key")["status"] == "grading failed"


@pytest.mark.parametrize(
    "args, says",
    [
        (["/no/such/folder"], "is not a folder of submissions"),
        (["{empty}"], "pass --lesson NN"),
        (["{empty}", "--lesson", "99"], "--lesson takes one of lesson01"),
        (["{empty}", "--lesson", "../core"], "--lesson takes one of lesson01"),
    ],
)
def test_a_wrong_folder_or_lesson_is_a_clear_error(tmp_path, capsys, args, says):
    from lesson_utils.classroom.grade import main

    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main([a.format(empty=tmp_path / "empty") for a in args] + ["--out", str(tmp_path / "out" / "g.csv")])
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing written"


def test_classify_before_running():
    assert classify(b"", "a.ipynb")[0] == "empty file"
    assert classify("\ufeff{}".encode(), "a.ipynb")[0] == "not a notebook"
    empty_nb = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("   ")])).encode()
    assert classify(empty_nb, "a.ipynb")[0] == "no code"


@pytest.mark.grader(changes_shared_files=True)  # SHARED_ATTACKS plant a .pyc in lesson_utils/ and a .pth
def test_a_notebook_that_kills_the_grader_is_not_run_a_third_time(tmp_path):
    """The kernel finds the grader's own process and kills it: the rows written so far stay, and
    --resume goes on; after two such stops that notebook is marked instead of run again. The
    same class has a notebook that rewrites the others: they are graded and restored."""
    folder = tmp_path / "class"
    folder.mkdir()
    write(folder, "a_honest.ipynb", solution())
    killer = (
        "import os, signal\n"
        "worker = os.getppid()\n"
        "grader = int(open(f'/proc/{worker}/stat').read().rsplit(')', 1)[1].split()[1])\n"
        "os.kill(grader, signal.SIGKILL)"
    )
    write(folder, "b_killer.ipynb", blank()[:1] + [killer])
    write(folder, "c_honest.ipynb", solution())
    # one that rewrites every other submission it can find, and plants a file in the class folder
    vandal = (
        "from pathlib import Path\n"
        f"for p in Path({str(folder)!r}).glob('*.ipynb'):\n"
        "    try:\n        p.write_text('{}')\n    except OSError:\n        pass\n"
        f"try:\n    (Path({str(folder)!r}) / 'planted.txt').write_text('x')\nexcept OSError:\n    pass"
    )
    write(folder, "d_vandal.ipynb", blank() + [vandal])
    out = tmp_path / "grades" / "grades.csv"
    editor = (  # finds the grades file and gives the first student 0 points
        "from pathlib import Path\n"
        f"grades = Path({str(out)!r})\n"
        "text = grades.read_text(encoding='utf-8-sig')\n"
        "grades.write_text(text.replace(',3,3,100.0,', ',0,3,0.0,'), encoding='utf-8')"
    )
    write(folder, "e_csv_editor.ipynb", blank() + [editor])
    for index, (name, (sources, *_rest)) in enumerate(SHARED_ATTACKS.items()):
        write(folder, f"f{index}_{name}.ipynb", sources)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    command = [sys.executable, "-m", "lesson_utils.classroom.grade", str(folder), "--out", str(out), "--lesson", "01"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == -signal.SIGKILL
    with open(out, encoding="utf-8-sig") as f:
        assert [row["file"] for row in csv.DictReader(f)] == ["a_honest.ipynb"], "the first row survived"
    second = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert second.returncode == -signal.SIGKILL, "it was run once more, and stopped the grader again"
    third = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-2000:]
    with open(out, encoding="utf-8-sig") as f:
        table = {row["file"]: row for row in csv.DictReader(f)}
    assert table["b_killer.ipynb"]["status"] == "stopped the grader" and table["b_killer.ipynb"]["needs review"]
    assert table["a_honest.ipynb"]["points"] == table["c_honest.ipynb"]["points"] == "3"
    assert "submissions folder changed" in table["d_vandal.ipynb"]["needs review"]
    assert "grades file changed" in table["e_csv_editor.ipynb"]["needs review"]
    for index, (name, (_, points, _status, flag)) in enumerate(SHARED_ATTACKS.items()):
        row = table[f"f{index}_{name}.ipynb"]
        assert row["points"] == str(points) and flag in row["needs review"], row
    import site

    assert not (Path.home() / ".ipython" / "profile_default" / "startup" / "00-planted-by-test-grade.py").exists()
    assert not (Path(site.getsitepackages()[0]) / "planted-by-test-grade.pth").exists()
    assert table["c_honest.ipynb"]["needs review"] == ""
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before, "restored"


SOLUTION_03 = ROOT / "notebooks" / "exercises" / "solutions" / "03_checkpoints_solutions.ipynb"
# Global state an honest notebook may leave behind once its answers are right: the checkers'
# references (lesson 03 replays the epoch of training) must not inherit it.
LEFT_BEHIND = {
    "grad_off": "torch.set_grad_enabled(False)",
    "inference_mode": "held = torch.inference_mode()\nheld.__enter__()",
    "float64_default": "torch.set_default_dtype(torch.float64)",
    "meta_default_device": "torch.set_default_device('meta')",
    "autocast_and_more": (
        "import warnings\n"
        "torch.autocast('cpu', dtype=torch.bfloat16).__enter__()\n"
        "torch.use_deterministic_algorithms(True)\n"
        "torch.autograd.set_detect_anomaly(True)\n"
        "torch.set_float32_matmul_precision('medium')\n"
        "torch.set_num_threads(2)\n"
        "warnings.simplefilter('error')"
    ),
}


def test_the_references_are_computed_in_a_clean_state(tmp_path):
    """One notebook leaves all of it behind at once (any one not undone would change a reference)."""
    folder = tmp_path / "class"
    folder.mkdir()
    write(folder, "left_behind.ipynb", cells_of(SOLUTION_03) + list(LEFT_BEHIND.values()))
    (row,) = grade_folder(folder, tmp_path / "grades" / "grades.csv", lesson="03", timeout=120)
    assert (row["status"], row["points"], row["needs review"]) == ("graded", row["max points"], ""), row


def test_clean_state_is_clean_inside_and_put_back_after():
    import warnings

    import torch

    from lesson_utils.classroom.grade_probe import clean_state

    before = (torch.get_default_dtype(), torch.get_num_threads(), torch.get_float32_matmul_precision())
    left = (torch.float64, 3, "medium")
    torch.set_default_dtype(left[0]), torch.set_num_threads(left[1]), torch.set_float32_matmul_precision(left[2])
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), warnings.catch_warnings():
            warnings.simplefilter("error")
            with clean_state():
                inside = (torch.get_default_dtype(), torch.get_num_threads(), torch.get_float32_matmul_precision())
                assert inside == (torch.float32, 1, "highest")
                assert torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
                assert not torch.are_deterministic_algorithms_enabled()
                warnings.warn("not an error in here", stacklevel=1)
            after = (torch.get_default_dtype(), torch.get_num_threads(), torch.get_float32_matmul_precision())
            assert after == left
            assert not torch.is_grad_enabled() and torch.is_autocast_enabled("cpu")
            assert (
                torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
            )
            with pytest.raises(UserWarning):
                warnings.warn("an error again", stacklevel=1)
    finally:
        torch.set_default_dtype(before[0]), torch.set_num_threads(before[1])
        torch.set_float32_matmul_precision(before[2]), torch.use_deterministic_algorithms(False)


def test_symbolic_links_in_submissions_are_never_followed(tmp_path):
    """A link handed in must not take a classmate's notebook or files, nor a file only the teacher can
    read, and making the class read-only must not change what a link points to."""
    outside = tmp_path / "teacher_only"
    outside.mkdir()
    secret = outside / "answer_key.pt"
    secret.write_text("the answer key")
    secret.chmod(0o664)
    outside.chmod(0o775)
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "bob").mkdir()
    write(folder / "bob", "bob.ipynb", solution())
    (folder / "bob" / "weights.pt").write_text("bob's own weights")
    (folder / "alice").mkdir()
    looks = (  # raises (so the row says what it found) if anything came through a link
        "import os\n"
        "found = {n: open(n).read() for n in ('key.pt', 'bobs.pt') if os.path.exists(n)}\n"
        "found.update({n: os.listdir(n) for n in ('keys',) if os.path.exists(n)})\n"
        "if found:\n"
        "    raise RuntimeError(f'took {found}')"
    )
    write(folder / "alice", "alice.ipynb", blank() + [looks])
    (folder / "alice" / "key.pt").symlink_to(secret)  # absolute: a file the student cannot read
    (folder / "alice" / "bobs.pt").symlink_to("../bob/weights.pt")  # relative: a classmate's file
    (folder / "alice" / "keys").symlink_to(outside)  # a folder
    (folder / "carol.ipynb").symlink_to("bob/bob.ipynb")  # a classmate's notebook, handed in as one's own
    (folder / "dave").mkdir()
    (folder / "dave" / "dave.ipynb").symlink_to("../bob/bob.ipynb")
    (folder / "erin.ipynb").symlink_to(secret)
    modes = {p: p.lstat().st_mode for p in [secret, outside, *folder.rglob("*")]}
    rows = {r["file"]: r for r in grade_folder(folder, tmp_path / "grades" / "g.csv", lesson="01", timeout=60)}
    assert rows["bob"]["points"] == 3 and rows["bob"]["needs review"] == ""
    alice = rows["alice"]
    assert alice["status"] == "graded", alice  # nothing came through the links
    assert "symbolic links in the submission, not followed" in alice["needs review"], alice
    assert "key.pt -> " in alice["needs review"] and "bobs.pt -> ../bob/weights.pt" in alice["needs review"]
    for name in ("carol.ipynb", "dave", "erin.ipynb"):
        assert rows[name]["status"] == "symbolic link" and rows[name]["points"] == 0, rows[name]
        assert "does not follow" in rows[name]["reason"] and rows[name]["needs review"], rows[name]
    assert "the answer key" not in (tmp_path / "grades" / "grade.log").read_text()
    assert {p: p.lstat().st_mode for p in modes} == modes, "no mode changed, behind a link or not"
    assert secret.read_text() == "the answer key"


def test_odd_file_names_and_restored_modes(tmp_path):
    """A name of 250 bytes gets its row; names that a spreadsheet would run as formulas are escaped (and
    read back by --resume); a file a notebook rewrote comes back with its own mode, and no mode changes."""
    folder = tmp_path / "class"
    folder.mkdir()
    long_name = "学" * 83 + "x"  # 250 bytes in UTF-8
    (folder / long_name).mkdir()
    write(folder / long_name, "work.ipynb", blank())
    (folder / long_name / "data.bin").write_bytes(b"data")
    formulas = ["=1+2.ipynb", "+SUM(A1).ipynb", "-2+3.ipynb", "@cmd.ipynb", "'quoted.ipynb"]
    for name in formulas:
        (folder / name).write_text("{ not json")
    vandal = (  # overwrites and deletes files in the class folder (possible without --sandbox)
        "from pathlib import Path\n"
        f"folder = Path({str(folder)!r})\n"
        f"(folder / {long_name!r} / 'data.bin').write_bytes(b'changed')\n"
        "(folder / '=1+2.ipynb').unlink()\n"
        "(folder / 'notes.txt').chmod(0o666)"
    )
    write(folder, "vandal.ipynb", blank() + [vandal])
    (folder / "notes.txt").write_text("notes")
    (folder / "notes.txt").chmod(0o444)
    (folder / "=1+2.ipynb").chmod(0o640)
    (folder / long_name / "data.bin").chmod(0o751)
    (folder / long_name).chmod(0o750)
    before = {p: (p.read_bytes() if p.is_file() else None, p.stat().st_mode) for p in folder.rglob("*")}
    out = tmp_path / "grades" / "grades.csv"
    rows = {r["file"]: r for r in grade_folder(folder, out, lesson="01", timeout=60)}
    after = {p: (p.read_bytes() if p.is_file() else None, p.stat().st_mode) for p in folder.rglob("*")}
    assert after == before, "contents and modes as they were"
    assert rows[long_name]["status"] == "graded" and rows[long_name]["q1"] == "not attempted", rows[long_name]
    assert (tmp_path / "grades" / "summary.md").is_file()
    review = rows["vandal.ipynb"]["needs review"]
    assert "submissions folder changed" in review and "notes.txt" in review, review
    text = out.read_text(encoding="utf-8-sig")
    for name in formulas:
        assert rows[name]["status"] == "not a notebook"
        assert f"\n'{name}," in text, f"{name} is escaped in the CSV"
    with open(out, newline="", encoding="utf-8-sig") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")], "no cell reads as a formula"
    resumed = grade_folder(folder, out, lesson="01", timeout=60, resume=True)
    assert sorted(r["file"] for r in resumed) == sorted(rows), "--resume reads the names back as they are"


def test_a_notebook_that_stops_the_grader_is_blamed_alone(tmp_path):
    """With -j 2, a notebook that kills the grader stops its neighbour too; the neighbour is graded
    again (first, and alone), and only the notebook that stopped the grader twice is marked."""
    folder = tmp_path / "class"
    folder.mkdir()
    killer = (
        "import os, signal, time\n"
        "time.sleep(5)  # its neighbour is running by now\n"
        "worker = os.getppid()\n"
        "grader = int(open(f'/proc/{worker}/stat').read().rsplit(')', 1)[1].split()[1])\n"
        "os.kill(grader, signal.SIGKILL)"
    )
    write(folder, "a_killer.ipynb", blank()[:1] + [killer])
    write(folder, "b_neighbour.ipynb", ["import time\ntime.sleep(12)", *solution()])  # running when killed
    write(folder, "c_later.ipynb", solution())
    out = tmp_path / "grades" / "grades.csv"
    command = [
        sys.executable,
        "-m",
        "lesson_utils.classroom.grade",
        str(folder),
        "--out",
        str(out),
        "--lesson",
        "01",
        "-j",
        "2",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    second = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert second.returncode == -signal.SIGKILL, second.stderr[-2000:]
    third = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-2000:]
    with open(out, encoding="utf-8-sig") as f:
        table = {row["file"]: row for row in csv.DictReader(f)}
    assert table["a_killer.ipynb"]["status"] == "stopped the grader"
    for name in ("b_neighbour.ipynb", "c_later.ipynb"):
        assert (table[name]["status"], table[name]["points"], table[name]["needs review"]) == ("graded", "3", "")


def test_the_grading_process_copies_only_what_the_kernel_could_read_and_follows_no_link(tmp_path):
    """The kernel names the files to judge, and the grading process may run as root: it reads them through the
    kernel's own view, never through a link, never a pipe or /proc, and only what the kernel's user could read;
    what it copied is signed, so an export folder changed afterwards is not judged."""
    import os
    import shutil
    import tempfile
    import time

    from lesson_utils.classroom.grade import Grader
    from lesson_utils.classroom.outside import Copier, Ledger, manifest

    base = Path(tempfile.mkdtemp(prefix="copier-test-"))  # under /tmp, open to others (pytest's tmp_path is not)
    base.chmod(0o755)
    work = base / "work"
    (work / "sub").mkdir(parents=True)
    work.chmod(0o755)
    (work / "answer.pt").write_bytes(b"answer")
    (work / "answer.pt").chmod(0o644)
    (work / "sub" / "inner.pt").write_bytes(b"inner")
    secret = tmp_path / "teacher_only.pt"
    secret.write_bytes(b"the answer key")
    secret.chmod(0o600)
    (work / "key.pt").symlink_to(secret)  # absolute: a file the student cannot read
    (work / "linked").symlink_to(work / "sub")  # a folder on the way
    os.mkfifo(work / "pipe.pt")  # a read that would never end
    shut = work / "shut"
    shut.mkdir()
    (shut / "hidden.pt").write_bytes(b"hidden")
    shut.chmod(0o700)

    def copy(pid: int) -> tuple[Copier, Ledger]:
        ledger = Ledger(tmp_path / f"export-{pid}-{time.monotonic_ns()}")
        copier = Copier(pid, ledger)
        for name in ("answer.pt", "key.pt", "linked/inner.pt", "pipe.pt", "shut/hidden.pt", "sub/../answer.pt"):
            copier.copy(str(work / name), whole=False)
        copier.copy(str(work / "sub"), whole=True)
        copier.copy("/proc/self/environ", whole=False)
        return copier, ledger

    copier, ledger = copy(os.getpid())
    kinds = {path.removeprefix(str(work) + "/"): what["kind"] for path, what in copier.found.items()}
    assert kinds["answer.pt"] == "file" and kinds["sub/inner.pt"] == "file" and kinds["shut/hidden.pt"] == "file"
    assert kinds["key.pt"] == kinds["linked/inner.pt"] == "link", kinds
    assert kinds["pipe.pt"] == "refused" and kinds["/proc/self/environ"] == "refused", kinds
    copies = ledger.folder / "files" / str(work).lstrip("/")
    assert (copies / "answer.pt").read_bytes() == b"answer" and (copies / "sub" / "inner.pt").read_bytes() == b"inner"
    assert not (copies / "key.pt").exists() and not (copies / "linked").exists(), "no link followed or copied"
    assert sorted(copier.links) == [str(work / "key.pt"), str(work / "linked")]
    assert manifest(ledger.folder) == ledger.hashes, "every file written is in the signed list, hashed as written"
    if os.geteuid() == 0:  # a kernel of another user (as in the sandbox): only what that user may read
        stranger = subprocess.Popen(["setpriv", "--reuid=54321", "--regid=54321", "--clear-groups", "sleep", "30"])
        try:
            time.sleep(0.3)
            copier, ledger = copy(stranger.pid)
        finally:
            stranger.kill()
            stranger.wait()
        assert copier.found[str(work / "shut" / "hidden.pt")]["kind"] == "refused"
        assert copier.found[str(work / "answer.pt")]["kind"] == "file", "readable by anyone: copied"
    # the grader judges an export folder only as the worker signed it
    export = tmp_path / "private" / "exports" / "3"
    signed = Ledger(export)
    signed.write("export.json", [b"{}"])
    signed.write("complete", [b""])
    row = {"export": str(export), "export_hashes": dict(signed.hashes)}
    flags: list[str] = []
    assert Grader._export(row, tmp_path / "private", flags) == str(export) and flags == []
    (export / "files").mkdir()
    (export / "files" / "planted.pt").write_bytes(b"right answer")
    assert Grader._export(row, tmp_path / "private", flags) is None and "changed after" in flags[0]
    assert Grader._export({"export": str(tmp_path / "elsewhere")}, tmp_path / "private", []) is None
    shut.chmod(0o755)
    shutil.rmtree(base)
