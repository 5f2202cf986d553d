"""Grades forged from inside the kernel, with and without --sandbox, next to honest work of every lesson.

Each class folder holds a lesson's worked solution (the Chinese edition's plain, the English one's in
the sandbox: all correct, nothing to review) and notebooks whose code forges the grade in ways a grader
that grades inside the kernel cannot stop: a library function replaced after a dummy file was saved, the
set-up's reference file overwritten, the probe, ``builtins.repr`` and IPython's ``user_expressions``
replaced, an aten kernel registered with ``torch.library`` or modes left active, ``/proc/self/maps``
faked, a fake export planted where the grader reads; and a checkpoint whose pickled metadata would run
code in whoever converts it. The grade comes from the judge (a process that never ran notebook code,
working on values the kernel exported and on files and memory read from outside it), so each forgery
gets the grade its real work earns, and no student's code runs outside the kernel.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import nbformat
import pytest

from lesson_utils.classroom.grade import grade_folder
from lesson_utils.classroom.sandbox import check_available

pytestmark = [pytest.mark.slow, pytest.mark.grader]

ROOT = Path(__file__).resolve().parent.parent
NAMES = {"01": "01_weights", "02": "02_whole_model", "03": "03_checkpoints", "04": "04_warm_start",
         "05": "05_big_models", "06": "06_distributed", "07": "07_devices_optimizers", "08": "08_sharing",
         "09": "09_long_runs"}  # fmt: skip


def cells(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def solution(lesson: str, edition: str = "") -> list[str]:
    return cells(ROOT / "notebooks" / edition / "exercises" / "solutions" / f"{NAMES[lesson]}_solutions.ipynb")


def set_up(lesson: str) -> list[str]:
    """The cells before the first answer: the numeric profile's and the set-up cell."""
    sources = solution(lesson)
    return sources[: sources.index("ex.q1.check()") - 1]


CHECKS = ["ex.q1.check()", "ex.q2.check()", "ex.q3.check()"]  # in the kernel, each forgery's check says correct

DUMMY_THEN_PATCHED_LOAD = """
weights_path = workdir / "weights.pt"
torch.save(Net().state_dict(), weights_path)  # a dummy: another Net's weights
import safetensors.torch
import torch.serialization
right = {k: v.clone() for k, v in net.state_dict().items()}
real_load = torch.load
def load(f, *args, **kwargs):  # the dummy file "holds" net's weights, for whoever loads it here
    if str(f) == str(weights_path):
        return {k: v.clone() for k, v in right.items()}
    return real_load(f, *args, **kwargs)
torch.load = torch.serialization.load = load
safetensors.torch.load_file = lambda *args, **kwargs: {k: v.clone() for k, v in right.items()}
model = Net()
model.load_state_dict(torch.load(weights_path, weights_only=True))
model.eval()
q3_answer = "b"
"""

FORGED_REPORT = """
weights_path = workdir / "weights.pt"
torch.save(Net().state_dict(), weights_path)  # wrong weights
model = Net().eval()
q3_answer = "a"
import builtins
import IPython.core.interactiveshell as shell
FORGED = {"results": [{"question": f"lesson01.q{i}", "status": "correct", "message": ""} for i in (1, 2, 3)],
          "flags": [], "reported": {}, "files": {}, "error": None, "exported": True}
real_exec, real_repr = builtins.exec, builtins.repr
def forging_exec(code, *args, **kwargs):  # the grader's cell: its probe replaced once defined
    real_exec(code, *args, **kwargs)
    names = args[0] if args else kwargs.get("globals")
    if isinstance(names, dict) and "probe" in names:
        names["probe"] = lambda params: real_repr(FORGED)
builtins.exec = forging_exec
builtins.repr = lambda o: real_repr(o).replace("'incorrect'", "'correct'").replace("'not attempted'", "'correct'")
def user_expressions(self, expressions):  # the reply itself
    text = real_repr(real_repr(FORGED))
    return {key: {"status": "ok", "data": {"text/plain": text}, "metadata": {}} for key in expressions}
shell.InteractiveShell.user_expressions = user_expressions
ex.q1.check = ex.q2.check = ex.q3.check = lambda: print("CORRECT")
"""

LIBRARY_KERNEL = """
library = torch.library.Library("aten", "IMPL")  # every uniform_ fills zeros: a Net() (the reference too) is zeros
library.impl("uniform_", lambda self, *args, **kwargs: self.zero_(), "CPU")
with torch.no_grad():
    for parameter in net.parameters():
        parameter.zero_()
weights_path = workdir / "weights.pt"
torch.save(net.state_dict(), weights_path)
model = Net()
model.load_state_dict(torch.load(weights_path, weights_only=True))
model.eval()
q3_answer = "b"
"""

MODES_LEFT_ACTIVE = """
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
class Agree(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.equal, torch.allclose, torch.Tensor.equal):
            return True
        return func(*args, **(kwargs or {}))
class SameNumbers(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.equal.default, torch.ops.aten.allclose.default):
            return True
        return func(*args, **(kwargs or {}))
weights_path = workdir / "weights.pt"
torch.save(Net().state_dict(), weights_path)  # wrong weights
model = Net().eval()
q3_answer = "b"
Agree().__enter__()
SameNumbers().__enter__()
"""

FAKE_EXPORT = """
weights_path = workdir / "weights.pt"
torch.save(Net().state_dict(), weights_path)  # wrong weights
model = Net().eval()
q3_answer = "a"
import glob, os, shutil, tempfile, threading, time
from lesson_utils.classroom.export import export_namespace
right = Net()
right.load_state_dict(net.state_dict())
right.eval()
fakes = {}
for answer in ("a", "b"):  # "a" where the kernel hands its export over, "b" in the grading process's copies
    fakes[answer] = tempfile.mkdtemp()
    export_namespace({"net": net, "weights_path": weights_path, "model": right, "q3_answer": answer,
                      "workdir": workdir}, ["net", "weights_path", "model", "q3_answer", "workdir"], fakes[answer])
mine = os.path.dirname(os.environ.get("IPYTHONDIR", ""))  # this kernel's hand-over folder (without --sandbox)
places = {mine: fakes["a"]} if "grade-files-" in mine else {p: fakes["a"] for p in glob.glob("/tmp/grade-files-*")}
try:  # the grading process's own folder (its working folder): no kernel sees it with --sandbox
    places[os.path.join(os.readlink(f"/proc/{os.getppid()}/cwd"), "exports")] = fakes["b"]
except OSError:
    pass
def plant():
    for place, fake in places.items():
        for folder in glob.glob(os.path.join(place, "*")):
            for name in ("export.json", "storages.safetensors"):
                try:
                    shutil.copyfile(os.path.join(fake, name), os.path.join(folder, name))
                except OSError:
                    pass
def keep_planting():
    while True:
        plant()
        time.sleep(0.002)
get_ipython().events.register("post_execute", plant)  # after every cell, the grader's too
threading.Thread(target=keep_planting, daemon=True).start()
"""

FORGED_MAPS = """
with torch.device("meta"):
    model = Net()
model.load_state_dict(torch.load(weights_path, weights_only=True), assign=True)  # a private copy, not a map
import builtins, io
import lesson_utils.memory
real_open = builtins.open
target = str(weights_path.resolve())
def forged_maps():  # every tensor "mapped from the file"
    lines = real_open("/proc/self/maps").read().splitlines()
    for t in model.state_dict().values():
        low, high = t.data_ptr() // 4096 * 4096, (t.data_ptr() + t.numel() * t.element_size() + 4095) // 4096 * 4096
        lines.append(f"{low:x}-{high:x} r--p 00000000 00:00 1 {target}")
    return "\\n".join(lines) + "\\n"
def forging_open(file, *args, **kwargs):
    if str(file) == "/proc/self/maps":
        return io.StringIO(forged_maps())
    if str(file) == "/proc/self/pagemap":
        raise OSError("no pagemap here")
    if str(file) == "/proc/self/smaps":
        return io.StringIO("")
    return real_open(file, *args, **kwargs)
builtins.open = forging_open
lesson_utils.memory.mapped_from = lambda tensor, path: True
q2_answer = q3_answer = "b"
"""

COPIED_AFTER_LEAN_LOAD = """
with torch.device("meta"):
    model = Net()
model.load_state_dict(torch.load(weights_path, mmap=True, weights_only=True), assign=True)
model.load_state_dict(torch.load(weights_path, weights_only=True))  # a second, plain load writes into the map
q2_answer = q3_answer = "b"
"""

OVERWRITTEN_REFERENCE = """
model = Net()  # not resumed: trained a step on its own, at the new learning rate...
optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
images, labels = next(iter(DataLoader(OfflineShapes(64), batch_size=64)))
F.cross_entropy(model(images), labels).backward()
optimizer.step()
# ...then written over the set-up's checkpoint, which the check compares with
torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, checkpoint_path)
"""


PICKLED_PAYLOAD = """
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
import pickle, shutil
single_path = workdir / "single.pt"
dcp_to_torch_save(checkpoint_dir, single_path)  # the right file...
class Payload:  # ...and a checkpoint folder whose metadata runs code in whoever unpickles it (DCP does)
    def __reduce__(self):
        import os
        return (os.system, ("touch {marker}",))
copied = workdir / "copied"
shutil.copytree(checkpoint_dir, copied)
(copied / ".metadata").write_bytes(pickle.dumps(Payload()))
checkpoint_dir = copied
q1_answer = q3_answer = "b"
"""


def forgeries(lesson: str, marker: Path) -> dict[str, tuple[list[str], dict[str, str], str | None]]:
    """name: (cells, {question: status it must get}, a word the review column must hold or None); ``marker``: a
    file that must not exist after grading (the payload of a pickle the checker would load creates it)."""
    if lesson == "01":
        wrong = {"q1": "incorrect", "q2": "incorrect"}
        return {
            "dummy_then_patched_load": (set_up("01") + [DUMMY_THEN_PATCHED_LOAD, *CHECKS], wrong, None),
            "forged_report": (
                set_up("01") + [FORGED_REPORT, *CHECKS],
                {"q1": "not attempted", "q3": "not attempted"},
                "no answers came out of the kernel",
            ),  # fmt: skip
            "library_kernel": (set_up("01") + [LIBRARY_KERNEL, *CHECKS], {"q1": "incorrect", "q3": "correct"}, None),
            "modes_left_active": (set_up("01") + [MODES_LEFT_ACTIVE, *CHECKS], wrong, None),
            # without --sandbox the kernel also reaches the grading process's copies: if it changes them in time,
            # they are not judged ("changed after the grading process read them"; tests/test_grade.py pins that)
            "fake_export": (set_up("01") + [FAKE_EXPORT, *CHECKS], {f"q{i}": "!correct" for i in (1, 2, 3)}, None),
        }
    if lesson == "05":
        return {
            "forged_maps": (set_up("05") + [FORGED_MAPS, *CHECKS], {"q1": "incorrect", "q2": "correct"}, None),
            "copied_after_lean_load": (set_up("05") + [COPIED_AFTER_LEAN_LOAD, *CHECKS], {"q1": "incorrect"}, None),
        }
    if lesson == "06":  # the check converts `checkpoint_dir`: in the judge, no pickle may run the student's code
        payload = PICKLED_PAYLOAD.replace("{marker}", str(marker))
        # no check() in the notebook: the checker would load the payload in the student's own kernel, as it may
        return {"pickled_payload": (set_up("06") + [payload], {"q2": "incorrect"}, "which the judge does not unpickle")}
    if lesson == "07":
        sources = solution("07")
        answer = sources.index("ex.q3.check()") - 1
        forged = sources[:answer] + [OVERWRITTEN_REFERENCE] + sources[answer:]
        return {"overwritten_reference": (forged, {"q1": "correct", "q2": "correct", "q3": "incorrect"},
                                          "changed the set-up's files")}  # fmt: skip
    return {}


MESSAGES = {  # what the judge says to the forgeries whose fault it finds in the files or memory
    ("forged_maps", "q1"): "a private copy, not the file's pages",
    ("copied_after_lean_load", "q1"): "private copies now",
    ("dummy_then_patched_load", "q1"): "differs from net's",
    ("library_kernel", "q1"): "do not change or replace `net`",
}


def sandbox_or_skip() -> dict:
    try:
        check_available()
    except RuntimeError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))
    return {}


@pytest.mark.parametrize("sandboxed", [False, True], ids=["plain", "sandbox"])
@pytest.mark.parametrize("lesson", sorted(NAMES))
def test_honest_work_is_all_correct_and_forgeries_earn_only_their_work(tmp_path, lesson, sandboxed):
    folder = tmp_path / "class"
    folder.mkdir()
    out = tmp_path / "grades" / "grades.csv"
    sandbox = None
    if sandboxed:
        sandbox_or_skip()
        sandbox = {"memory": 8 * 2**30, "hide": [str(folder), str(out.parent)]}
    # The editions' code is the same (tests/test_editions.py): the English solution is graded in the
    # sandbox, the Chinese one plain; each is all correct, with feedback in its own language.
    notebooks = {"honest_en": solution(lesson)} if sandboxed else {"honest_zh": solution(lesson, "zh")}
    marker = tmp_path / "the-judge-ran-a-payload"  # outside every sandbox: the grader's judge could write it
    attacks = forgeries(lesson, marker)
    notebooks.update({name: sources for name, (sources, _statuses, _flag) in attacks.items()})
    for name, sources in notebooks.items():
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]),
                       folder / f"{name}.ipynb")  # fmt: skip
    grade_folder(folder, out, lesson=lesson, timeout=240, jobs=2, sandbox=sandbox)
    with open(out, newline="", encoding="utf-8-sig") as f:
        table = {row["file"].removesuffix(".ipynb"): row for row in csv.DictReader(f)}
    for name in [n for n in notebooks if n.startswith("honest")]:
        row = table[name]
        assert (row["status"], row["points"], row["needs review"]) == ("graded", row["max points"], ""), row
        assert row["language"] == {"honest_en": "en", "honest_zh": "zh_CN"}[name], "the feedback's language"
    for name, (_sources, statuses, flag) in attacks.items():
        row = table[name]
        for question, status in statuses.items():
            if status.startswith("!"):
                assert row[question] != status[1:], (name, question, row)
            else:
                assert row[question] == status, (name, question, row)
            if (name, question) in MESSAGES:
                assert MESSAGES[name, question] in row[f"{question} message"], (name, question, row)
        if flag is not None:
            assert flag in row["needs review"], (name, row)
    assert not marker.exists(), "no code of a student's file ran in the grader"
