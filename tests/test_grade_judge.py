"""The judge on its own: what it rebuilds from an export, what it refuses to run, and the rows it gives for
exports that are missing, malformed, hold a value it cannot carry, or take too long to check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import torch

from lesson_utils.classroom.export import export_namespace, global_hooks
from lesson_utils.classroom.judge import NO_EXPORT, Rebuilt, judge
from lesson_utils.exercises.core import Incorrect, Question


def exported(tmp_path, namespace: dict) -> Rebuilt:
    folder = tmp_path / "export"
    folder.mkdir(parents=True, exist_ok=True)
    export_namespace(namespace, list(namespace), str(folder))
    return Rebuilt(folder)


def test_identity_sharing_and_state_survive_the_export(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    net[2].weight = torch.nn.Parameter(net[0].weight.t().contiguous())  # its own tensor...
    tied = torch.nn.Embedding(3, 4)
    head = torch.nn.Linear(4, 3, bias=False)
    head.weight = tied.weight  # ...and a tied one
    net[0].weight.requires_grad_(False)
    net[1].eval()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    net(torch.randn(2, 3)).sum().backward()
    optimizer.step()
    rebuilt = exported(tmp_path, {"net": net, "optimizer": optimizer, "tied": tied, "head": head,
                                  "view": net[2].bias[1:], "copy": net[2].bias.clone()})  # fmt: skip
    model, opt = rebuilt.value("net"), rebuilt.value("optimizer")
    assert type(model) is torch.nn.Sequential and type(model[0]) is torch.nn.Linear and model[0].in_features == 3
    assert {k: v.tolist() for k, v in model.state_dict().items()} == {
        k: v.tolist() for k, v in net.state_dict().items()
    }
    assert not model[0].weight.requires_grad and model[2].weight.requires_grad
    assert model.training and not model[1].training
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["nesterov"] is True
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()], "the model's own"
    assert torch.equal(opt.state[model[2].bias]["momentum_buffer"], optimizer.state[net[2].bias]["momentum_buffer"])
    assert rebuilt.value("head").weight is rebuilt.value("tied").weight
    view, copy = rebuilt.value("view"), rebuilt.value("copy")
    assert view.untyped_storage().data_ptr() == model[2].bias.untyped_storage().data_ptr()
    assert copy.untyped_storage().data_ptr() != model[2].bias.untyped_storage().data_ptr()


def test_classes_and_functions_named_as_values_never_run(tmp_path):
    class Config:  # the notebook's own class
        pass

    Config.__module__ = "__main__"

    config = Config()
    config.lr = 0.1
    rebuilt = exported(
        tmp_path, {"allowed": [torch.nn.Linear, exec, Config], "config": config, "linear": torch.nn.Linear(1, 1)}
    )
    linear_class, exec_value, config_class = rebuilt.value("allowed")
    assert linear_class is not torch.nn.Linear and linear_class.__qualname__ == "Linear", "a stand-in, named alike"
    assert type(rebuilt.value("linear")) is torch.nn.Linear, "an object's class is the library's own"
    with pytest.raises(RuntimeError, match="the grader does not run it"):
        exec_value("open('/tmp/pwned', 'w')")
    assert f"{exec_value.__module__}.{exec_value.__qualname__}" == "builtins.exec"
    assert type(rebuilt.value("config")) is config_class and vars(rebuilt.value("config")) == {"lr": 0.1}


def test_unpickling_in_the_judge_creates_only_what_checkpoints_need(tmp_path):
    marker = tmp_path / "ran"
    script = textwrap.dedent(f"""
        import os, pickle, torch, io
        from lesson_utils.classroom.judge import restrict_pickle
        restrict_pickle()
        buffer = io.BytesIO()
        torch.save({{"w": torch.ones(2), "lr": 0.1}}, buffer)
        buffer.seek(0)
        assert torch.load(buffer, weights_only=False)["lr"] == 0.1  # what DCP's byte entries hold still loads
        class Payload:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        try:
            pickle.loads(pickle.dumps(Payload()))
        except pickle.UnpicklingError as error:
            print("refused:", error)
        # protocol 4 names a global by a dotted path: from an allowed module to anything it imported
        for module, name in [(b"torch.distributed.checkpoint.metadata", b"os.system"),
                             (b"torch.distributed.distributed_c10d", b"builtins.exec"),
                             (b"torch.distributed.checkpoint.metadata", b"dataclass"),
                             (b"torch.distributed.checkpoint.metadata", b"torch")]:
            command = b"touch {marker}"
            payload = (b"\\x80\\x04\\x8c" + bytes([len(module)]) + module + b"\\x8c" + bytes([len(name)]) + name
                       + b"\\x93\\x8c" + bytes([len(command)]) + command + b"\\x85R.")
            try:
                pickle.loads(payload)
                print("ran:", name)
            except pickle.UnpicklingError as error:
                print("refused:", error)
        import torch.distributed.checkpoint.metadata as metadata
        print("metadata:", type(pickle.loads(pickle.dumps(metadata.Metadata(state_dict_metadata={{}})))).__name__)
    """)
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "refused: the grader's judge does not unpickle posix.system" in ran.stdout
    assert "ran:" not in ran.stdout and ran.stdout.count("refused:") == 5, ran.stdout
    assert "metadata: Metadata" in ran.stdout, "what a DCP checkpoint's .metadata holds still loads"
    assert not marker.exists()


@pytest.fixture
def lesson99(monkeypatch):
    """A lesson of one question whose checker says `answer` is right when it is 42 (and may take its time)."""

    def checker(answer, delay=0):
        import time

        time.sleep(delay or 0)
        if answer != 42:
            raise Incorrect("not 42")
        return "42"

    module = types.ModuleType("lesson_utils.exercises.lesson99")
    module.q1 = Question("lesson99.q1", "Set answer to 42.", checker, names=["answer"], optional=["delay"], hint="")
    monkeypatch.setitem(sys.modules, "lesson_utils.exercises.lesson99", module)
    return module


def test_rows_for_missing_malformed_unsupported_and_slow_answers(tmp_path, lesson99):
    def judged(namespace: dict | None, limit: float = 60) -> tuple[str, str, list]:
        folder = tmp_path / f"export-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        if namespace is not None:
            export_namespace(namespace, list(namespace), str(folder))
        found = judge("lesson99", folder, limit)
        return found["results"][0]["status"], found["results"][0]["message"], found["flags"]

    assert judged({"answer": 42})[0] == "correct"
    assert judged({"answer": 41})[:2] == ("incorrect", "not 42")
    assert judged(None)[:2] == ("not attempted", NO_EXPORT)
    status, message, _flags = judged({"answer": iter([42])})
    assert (
        status == "incorrect" and "builtins.list_iterator" in message and "cannot take out of the notebook" in message
    )
    status, message, _flags = judged({"answer": 42, "delay": 5}, limit=0.5)
    assert status == "incorrect" and "longer than 0.5 s" in message
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "export.json").write_text(json.dumps({"format": 1, "names": {"answer": {"$": "ref", "id": 7}},
                                                    "objects": [], "storages": []}))  # fmt: skip
    found = judge("lesson99", broken)
    assert found["results"][0]["status"] == "incorrect" and "malformed" in found["flags"][0], found


@pytest.fixture
def lesson98(monkeypatch):
    """A lesson of one question that is right when the file `path` names holds the teacher's words; it
    records the folder the check ran in."""
    seen = {}

    def checker(path):
        seen["cwd"] = os.getcwd()
        if Path(path).read_bytes() != b"the teacher's words":
            raise Incorrect("another file")
        return "the teacher's file"

    module = types.ModuleType("lesson_utils.exercises.lesson98")
    module.q1 = Question("lesson98.q1", "Name the file.", checker, names=["path"], hint="")
    module.seen = seen
    monkeypatch.setitem(sys.modules, "lesson_utils.exercises.lesson98", module)
    return module


def teachers_file(tmp_path) -> tuple[Path, Path]:
    """A file the judge must never open (it holds lesson98's right answer), and an export folder with copies."""
    secret = tmp_path / "teacher" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(b"the teacher's words")
    folder = tmp_path / "export"
    (folder / "files").mkdir(parents=True)
    return secret, folder


def test_a_forged_export_cannot_lead_the_judge_out_of_the_copied_files(tmp_path, lesson98):
    """The export is the notebook's to forge: a path or a working folder that climbs out with /../.. stays
    under the copies' root (where the kernel's own root would have put it), never the judge's files."""
    secret, folder = teachers_file(tmp_path)
    climb = "/.." * 30
    export_namespace({"path": Path(climb + str(secret))}, ["path"], str(folder))
    document = json.loads((folder / "export.json").read_text())
    document["cwd"] = climb + str(tmp_path / "made-by-the-judge")
    (folder / "export.json").write_text(json.dumps(document))
    found = judge("lesson98", folder)
    assert found["results"][0]["status"] == "incorrect", found
    assert not (tmp_path / "made-by-the-judge").exists(), "the judge made a folder outside the copies"
    assert lesson98.seen["cwd"].startswith(str(folder / "files") + os.sep)


class Text(str):
    """A notebook's own string class."""


def test_a_path_in_a_string_subclass_is_the_copy_too(tmp_path, lesson98):
    """A ``str`` subclass is a string like any other: the judge opens its copy, never the judge's own file."""
    secret, folder = teachers_file(tmp_path)
    export_namespace({"path": Text(str(secret))}, ["path"], str(folder))
    found = judge("lesson98", folder)
    assert found["results"][0]["status"] == "incorrect", found
    assert str(folder / "files") not in found["results"][0]["message"], "the message names the kernel's path"


def test_a_tensor_subclass_cannot_answer_for_its_storage(tmp_path):
    """The export reads a tensor's storage, size and stride with torch's own methods, not those a subclass
    defines in their place, and the judge tells the teacher that a subclass was there."""
    decoy = torch.arange(6.0)

    class Liar(torch.nn.Parameter):
        def untyped_storage(self):
            return decoy.untyped_storage()

        def stride(self, *args):
            return (1,)

    Liar.__module__, Liar.__qualname__ = "torch.nn.parameter", "Parameter"
    liar = torch.zeros(6).as_subclass(Liar)
    rebuilt = exported(tmp_path, {"weight": liar})
    value = rebuilt.value("weight")
    assert type(value) is torch.nn.Parameter and torch.equal(value.detach(), torch.zeros(6))
    assert any("Tensor subclass" in note for note in rebuilt.notes), rebuilt.notes


def test_a_relative_path_that_climbs_stays_in_the_copies_too(tmp_path, lesson98):
    """``../../..`` from the copies' working folder would leave them (in the kernel it stops at /)."""
    secret, folder = teachers_file(tmp_path)
    export_namespace({"path": "../" * 40 + str(secret).lstrip("/")}, ["path"], str(folder))
    document = json.loads((folder / "export.json").read_text())
    document["cwd"] = "/tmp/exercises02-x"
    (folder / "export.json").write_text(json.dumps(document))
    found = judge("lesson98", folder)
    assert found["results"][0]["status"] == "incorrect", found


def test_the_judge_imports_no_script_or_test_module_an_export_names():
    """A class exported as a value names its module; a ``__main__`` module runs when imported (numpy's f2py
    command line ended the judge), a test module may too."""
    script = (
        "import sys\n"
        "from lesson_utils.classroom.judge import importable\n"
        "print(importable('numpy.f2py.__main__', 'main'),"
        " importable('torch.testing._internal.common_utils', 'TestCase'),"
        " 'numpy.f2py.__main__' in sys.modules, importable('collections', 'OrderedDict').__name__)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert ran.stdout.split() == ["None", "None", "False", "OrderedDict"], ran.stdout


def test_with_the_sandbox_a_judge_allocates_at_most_what_a_kernel_may(tmp_path, monkeypatch):
    """A view may repeat four bytes for gigabytes (stride 0), and rebuilding it costs nothing; a checker
    that copies it must fail in the judge (an error, the question incorrect), not take the machine's memory.
    With --sandbox each judge gets the kernel's --memory as its limit of private memory."""
    code = textwrap.dedent(
        """
        from lesson_utils.classroom.judge import start
        start(memory=2 * 2**30)
        import torch
        view = torch.zeros(1).expand(2**31)  # 8 GiB of float32, on 4 bytes of storage
        try:
            view.clone()
            print("copied")
        except RuntimeError as error:
            print("refused:", "can't allocate memory" in str(error))
        print("still here:", torch.ones(2**26).sum().item())  # 256 MB: an honest model's worth
        """
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ran.stdout.split("\n")[:2] == ["refused: True", "still here: 67108864.0"], ran.stdout + ran.stderr[-2000:]

    from lesson_utils.classroom import grade
    from lesson_utils.classroom.judge import Judges

    made = []
    monkeypatch.setattr(grade, "Judges", lambda *args, **kwargs: made.append(kwargs) or Judges(*args, **kwargs))
    (tmp_path / "class").mkdir()
    sandbox = {"memory": 3 * 2**30, "hide": []}
    grade.grade_folder(tmp_path / "class", tmp_path / "grades" / "grades.csv", lesson="01", timeout=60, sandbox=sandbox)
    grade.grade_folder(tmp_path / "class", tmp_path / "plain" / "grades.csv", lesson="01", timeout=60)
    assert [kwargs.get("memory") for kwargs in made] == [3 * 2**30, None]
    judges = Judges(1, memory=3 * 2**30)
    try:
        process = judges._start()

        def data_limit() -> list[str]:
            lines = Path(f"/proc/{process.pid}/limits").read_text().splitlines()
            return [line.split()[3:5] for line in lines if line.startswith("Max data size")][0]

        deadline = time.monotonic() + 60  # the judge sets it once it has imported torch
        while data_limit() != [str(3 * 2**30)] * 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert data_limit() == [str(3 * 2**30)] * 2
    finally:
        judges.close()


def test_what_the_notebook_made_a_model_or_optimizer_do_is_said_to_the_teacher(tmp_path, lesson98):
    """Hooks and methods set on the object change what it does, and no export carries them: the judge grades
    the state and says so. The library's own hooks (and a model only built, trained and saved) say nothing."""
    from lesson_utils import Net

    def zeros(module, args, output):
        return torch.zeros_like(output)

    def fast(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            group["lr"] = 0.1

    honest, hooked, patched = Net(), Net(), Net()
    hooked.register_forward_hook(zeros)
    hooked.fc1.weight.register_hook(lambda grad: grad * 0)
    patched.forward = lambda x: torch.zeros(len(x), 10)
    optimizer = torch.optim.SGD(honest.parameters(), lr=0.001)
    sneaky = torch.optim.SGD(hooked.parameters(), lr=0.001)
    sneaky.register_step_pre_hook(fast)
    patched_optimizer = torch.optim.SGD(patched.parameters(), lr=0.001)
    patched_optimizer.step = lambda closure=None: None
    for name, value, says in [
        ("model", honest, None),
        ("optimizer", optimizer, None),
        ("model", hooked, "forward hooks"),
        ("layer", hooked.fc1, "hooks on its parameters"),
        ("optimizer", sneaky, "optimizer step pre hooks"),
        ("model", patched, "forward set on the object"),
        ("optimizer", patched_optimizer, "step set on the object"),
    ]:
        rebuilt = exported(tmp_path / f"{name}-{id(value)}", {name: value})
        rebuilt.value(name)
        notes = [note for note in rebuilt.notes if "graded on its state" in note]
        assert (notes == []) if says is None else (says in notes[0]), (name, says, rebuilt.notes)

    class Table:  # torch runs what items() gives; no dict, so no dict's methods to read it with
        def __init__(self, hooks):
            self.hooks = hooks

        def __bool__(self):
            return True

        def items(self):
            return self.hooks.items()

    class Unreadable(torch.nn.Parameter):  # its hook table raises when read: still exported, and said
        @property
        def _backward_hooks(self):
            raise RuntimeError("no")

    layer = torch.nn.Linear(2, 2)
    layer.weight = Unreadable(layer.weight.detach())
    rebuilt = exported(tmp_path / "unreadable", {"layer": layer})
    rebuilt.value("layer")
    assert any("hooks that could not be read (RuntimeError)" in note for note in rebuilt.notes), rebuilt.notes
    disguised = Net()
    disguised._forward_hooks = Table({0: zeros})
    assert not disguised(torch.zeros(1, 3, 32, 32)).any(), "the disguised hook runs"
    rebuilt = exported(tmp_path / "disguised", {"model": disguised})
    rebuilt.value("model")
    assert any("forward hooks" in note for note in rebuilt.notes), rebuilt.notes
    assert global_hooks() == []
    handle = torch.nn.modules.module.register_module_forward_hook(zeros)  # a global hook: the kernel's
    try:
        assert global_hooks() == ["torch.nn.modules.module"]
        folder = tmp_path / "global"
        folder.mkdir()
        export_namespace({"model": Net(), "path": "nowhere"}, ["model", "path"], str(folder))
    finally:
        handle.remove()
    assert json.loads((folder / "export.json").read_text())["global_hooks"] == ["torch.nn.modules.module"]
    flags = judge("lesson98", folder)["flags"]
    assert [f for f in flags if "global hooks of its own in torch.nn.modules.module" in f], flags
