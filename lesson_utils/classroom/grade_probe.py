"""What the grader runs *inside* a student's kernel besides the export: a scan for tampering, for review.

After the set-up cell, after each cell that calls ``check()`` and once more at the end, the
grader sends :mod:`lesson_utils.classroom.export` and this module's source to the kernel as a cell
that is not stored in the kernel's history, with a call to :func:`probe`. It:

1. **exports** the values the lesson's questions name (:func:`lesson_utils.classroom.export.export_namespace`)
   into the hand-over folder the grader made; the grade is computed from them by
   :mod:`lesson_utils.classroom.judge`, in a process that never ran notebook code;
2. at the end, **looks for tampering**: functions or classes written in the notebook that replaced
   something in the libraries (``torch.equal = lambda *a: True``, ``builtins.print``, a checker),
   library functions swapped for others (``torch.equal = torch.allclose``: each is compared with a
   fingerprint taken in the grader's own process), IPython hooks and input transformers, import
   hooks, trace functions, threads still running notebook code, ``lesson_utils`` modules loaded
   from somewhere else. These are **flags for the teacher, never part of the grade**: code that ran
   in the kernel before this can hide from the scan or change its result, and the grade does not
   depend on it;
3. returns a short report (whether it exported, the flags, what ``check()`` had recorded) as the
   ``repr`` of plain dicts, read from the kernel's reply to this very cell.

:func:`fresh_questions` (the lesson's questions built from source text in modules of their own) and
:func:`clean_state` (a torch state as in a fresh process) are used by the judge and the tests.

Example (the fingerprint of a library function, and of its replacement):
    >>> import torch
    >>> fingerprint(torch.equal) == fingerprint(torch.allclose)
    False
"""

from __future__ import annotations

# Every import is inside the functions: the grader sends this source to the kernel as text.

# The dotted names whose fingerprints the grader compares: what the checkers call.
WATCHED = [
    "torch.equal",
    "torch.allclose",
    "torch.load",
    "torch.save",
    "torch.is_tensor",
    "torch.Tensor.equal",
    "torch.Tensor.to",
    "torch.nn.Module.state_dict",
    "torch.nn.Module.load_state_dict",
    "torch.nn.Module.parameters",
    "torch.nn.Module.named_modules",
    "torch.optim.Optimizer.state_dict",
    "torch.optim.Optimizer.load_state_dict",
    "safetensors.torch.load_file",
    "zipfile.ZipFile",
    "pathlib.Path.is_file",
    "pathlib.Path.exists",
    "builtins.isinstance",
    "builtins.print",
    "builtins.open",
    "builtins.exec",
    "builtins.compile",
    "builtins.id",
    "builtins.all",
    "builtins.any",
    "builtins.getattr",
    "lesson_utils.checkpoint.load_checkpoint",
    "lesson_utils.memory.mapped_from",
    # what carries the report back: IPython evaluates and formats the user expression
    "IPython.core.interactiveshell.InteractiveShell.user_expressions",
    "IPython.core.interactiveshell.InteractiveShell.ev",
    "IPython.core.interactiveshell.InteractiveShell.run_cell",
    "IPython.core.formatters.DisplayFormatter.format",
    "IPython.core.formatters.PlainTextFormatter.__call__",
    "ipykernel.ipkernel.IPythonKernel.do_execute",
    "ipykernel.kernelbase.Kernel.execute_request",
    "jupyter_client.session.Session.send",
    "builtins.repr",
    "builtins.dict",
    "torch._C.DisableTorchFunctionSubclass",
]
# Modules whose attributes must not have been replaced by the notebook's own code.
SCANNED_MODULES = ("torch", "lesson_utils", "safetensors", "builtins", "pathlib", "zipfile", "os", "shutil", "json")
SCANNED_MODULES += ("io", "pickle", "numpy", "IPython", "ipykernel", "importlib", "inspect", "types", "sys", "xxhash")
# Classes whose methods must not have been replaced (module scans do not look inside classes).
SCANNED_CLASSES = ["torch.Tensor", "torch.nn.Module", "torch.optim.Optimizer", "torch.optim.SGD", "torch.optim.Adam"]
SCANNED_CLASSES += ["pathlib.Path", "pathlib.PurePath", "zipfile.ZipFile", "lesson_utils.exercises.core.Question"]


def resolve(dotted: str) -> object:
    """The object a dotted name refers to, importing its module if needed.

    Example:
        >>> resolve("os.path.join").__name__
        'join'
    """
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def fingerprint(obj: object) -> str:
    """Type, module, qualified name and code location of ``obj``: what a swap would change."""
    import types

    fn = getattr(obj, "__func__", obj)
    code = getattr(fn, "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}" if isinstance(code, types.CodeType) else ""
    owner = getattr(fn, "__self__", None)
    owner_type = "" if owner is None else type(owner).__name__
    return "|".join(
        [type(fn).__name__, str(getattr(fn, "__module__", "")), str(getattr(fn, "__qualname__", "")), where, owner_type]
    )


def from_notebook(obj: object) -> bool:
    """Whether ``obj`` is a function or class written in the notebook (its cells' code)."""
    import functools
    import types

    try:
        while isinstance(obj, functools.partial):
            obj = obj.func
        fn = getattr(obj, "__func__", obj)
        if getattr(fn, "__module__", None) == "__main__":
            return True
        code = getattr(fn, "__code__", None)
    except Exception:  # an object whose attributes raise: not a function
        return False
    name = code.co_filename if isinstance(code, types.CodeType) else ""
    return "ipykernel_" in name or name.startswith("<ipython-input")


def tampering(fingerprints: dict[str, str], package_dir: str) -> list[str]:
    """Every sign that the notebook changed what grading relies on, in words."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # touching every attribute wakes deprecation warnings
        return _tampering(fingerprints, package_dir)


def _tampering(fingerprints: dict[str, str], package_dir: str) -> list[str]:
    import os
    import sys
    import threading

    signs = []
    for name, expected in fingerprints.items():
        try:
            found = fingerprint(resolve(name))
        except Exception as error:  # deleted or made unreadable
            found = f"unreadable ({type(error).__name__})"
        if found != expected:
            signs.append(f"{name} is not the library's own")
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith(SCANNED_MODULES) or module_name.startswith("torch._dynamo"):
            continue
        if module_name.split(".")[0] not in SCANNED_MODULES:
            continue  # e.g. "torchvision" starts with "torch" but is not watched
        for attr, value in list(vars(module).items()):
            if attr not in ("_", "__", "___") and from_notebook(value):  # IPython keeps the last results in builtins
                signs.append(f"{module_name}.{attr} was replaced by code from the notebook")
            elif module_name.startswith("lesson_utils.exercises.") and hasattr(value, "checker"):  # a Question
                for part, inside in list(vars(value).items()):
                    if from_notebook(inside):
                        signs.append(f"{module_name}.{attr}.{part} was replaced by code from the notebook")
    for class_name in SCANNED_CLASSES:
        try:
            cls = resolve(class_name)
        except Exception:
            continue
        for attr, value in list(vars(cls).items()):
            if from_notebook(value):
                signs.append(f"{class_name}.{attr} was replaced by code from the notebook")
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except Exception:
        shell = None
    if shell is not None:
        for event, callbacks in shell.events.callbacks.items():
            signs += [f"an IPython '{event}' hook from the notebook" for cb in callbacks if from_notebook(cb)]
        for attr in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers"):
            for item in getattr(shell, attr, []):
                if from_notebook(item) or from_notebook(type(item)):
                    signs.append(f"an IPython input transformer from the notebook ({attr})")
        for attr, value in list(vars(shell).items()):
            if from_notebook(value):
                signs.append(f"the IPython shell's {attr} was replaced by code from the notebook")
        for cls in type(shell).__mro__:
            signs += [f"IPython's {cls.__name__}.{a} was replaced" for a, v in vars(cls).items() if from_notebook(v)]
    for hook in list(sys.meta_path) + list(sys.path_hooks):
        if from_notebook(hook) or from_notebook(type(hook)):
            signs.append("an import hook from the notebook")
    for tracer in (sys.gettrace(), sys.getprofile(), getattr(threading, "_trace_hook", None)):
        if tracer is not None and from_notebook(tracer):
            signs.append("a trace or profile function from the notebook")
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)
        if thread is not threading.current_thread() and (from_notebook(target) or from_notebook(type(thread).run)):
            signs.append(f"a thread started by the notebook was still running ({thread.name})")
    if shell is not None:  # names the checkers or the probe's cell would find in the notebook's namespace first
        namespace = shell.user_ns
        for name in ("exec", "compile", "globals", "dict", "repr", "isinstance", "type", "get_ipython", "__import__"):
            if name in namespace and from_notebook(namespace[name]):
                signs.append(f"the notebook redefines the built-in name `{name}`")
        if namespace.get("__builtins__") is not sys.modules["builtins"]:
            signs.append("the notebook replaced its `__builtins__`")
    package_dir = os.path.realpath(package_dir)
    for module_name, module in list(sys.modules.items()):
        if module_name == "lesson_utils" or module_name.startswith("lesson_utils."):
            file = getattr(module, "__file__", None)
            if not file or not os.path.realpath(file).startswith(package_dir + os.sep):
                signs.append(f"the module {module_name} does not come from the course package ({file})")
    return sorted(set(signs))


def fresh_questions(sources: dict[str, str], lesson: str) -> list:
    """The lesson's questions, built from source text in modules of their own (not in sys.modules)."""
    import sys
    import types

    i18n_name, core_name = "lesson_utils.i18n", "lesson_utils.exercises.core"
    lesson_name = f"lesson_utils.exercises.{lesson}"
    saved = {name: sys.modules.get(name) for name in (i18n_name, core_name, lesson_name)}
    try:
        # The messages' language module too: the notebook's own `lesson_utils.i18n._` never runs
        # inside the grader's checkers (it takes the language from LESSON_LANGUAGE, as set_language left it).
        i18n = types.ModuleType(i18n_name)
        i18n.__file__ = sources["i18n_file"]  # where its catalogs are: locale/ beside it
        sys.modules[i18n_name] = i18n
        exec(compile(sources["i18n"], f"<grader's {i18n_name}>", "exec"), i18n.__dict__)
        core = types.ModuleType(core_name)
        sys.modules[core_name] = core  # dataclasses and the lesson module look it up while they are built
        exec(compile(sources["core"], f"<grader's {core_name}>", "exec"), core.__dict__)
        module = types.ModuleType(lesson_name)
        sys.modules[lesson_name] = module
        exec(compile(sources["lesson"], f"<grader's {lesson_name}>", "exec"), module.__dict__)
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value
    questions = [v for v in vars(module).values() if isinstance(v, core.Question)]
    return sorted(questions, key=lambda q: int(q.qid.rsplit(".q", 1)[1]))


def clean_state():
    """A context in which the checkers compute their references as in a fresh kernel, whatever global state
    the notebook left behind: grad mode off, inference mode, another default dtype or device, autocast,
    deterministic or anomaly mode, a lower float32 matmul precision, other thread counts, warnings made
    errors. Only what differs is changed, and all of it is put back afterwards: the notebook's next cells
    run as they would have.

    Example:
        >>> import torch
        >>> with torch.no_grad(), torch.device("meta"):
        ...     with clean_state():
        ...         print(torch.is_grad_enabled(), torch.zeros(1).device)
        ...     print(torch.is_grad_enabled(), torch.zeros(1).device)
        True cpu
        False meta
    """
    import contextlib
    import sys
    import warnings

    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    if "numpy" in sys.modules:
        stack.enter_context(sys.modules["numpy"].errstate(all="warn", under="ignore"))  # numpy's defaults
    if torch.is_inference_mode_enabled():
        stack.enter_context(torch.inference_mode(False))
    stack.enter_context(torch.enable_grad())
    for device in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
        if torch.is_autocast_enabled(device):
            stack.enter_context(torch.autocast(device, enabled=False))
    if torch.get_default_device() != torch.device("cpu"):
        stack.enter_context(torch.device("cpu"))  # only then: a device context costs every torch call a detour

    def setting(get, put, clean):  # clean now, the notebook's value back at the end
        found = get()
        if found != clean:
            put(clean)
            stack.callback(put, found)

    setting(torch.get_default_dtype, torch.set_default_dtype, torch.float32)
    setting(torch.get_num_threads, torch.set_num_threads, 1)  # the kernels' numeric profile
    setting(torch.get_float32_matmul_precision, torch.set_float32_matmul_precision, "highest")
    setting(torch.is_anomaly_enabled, torch.autograd.set_detect_anomaly, False)
    if torch.are_deterministic_algorithms_enabled():
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(False)
        stack.callback(torch.use_deterministic_algorithms, True, warn_only=warn_only)
    return stack


def probe(params: dict) -> str:
    """Export the questions' values into ``params["folder"]``, and scan for tampering if ``params["scan"]``;
    a short report (the repr of a dict: whether it exported, the flags, what check() recorded)."""
    import sys

    report: dict = {"exported": False, "flags": [], "reported": {}, "error": None}
    try:
        if params.get("scan"):
            report["flags"] = tampering(params["fingerprints"], params["package_dir"])
        try:
            from IPython import get_ipython

            namespace = get_ipython().user_ns
        except Exception:
            namespace = sys.modules["__main__"].__dict__
        student_core = sys.modules.get("lesson_utils.exercises.core")
        for qid, result in dict(getattr(student_core, "RESULTS", {}) or {}).items():
            report["reported"][str(qid)] = str(getattr(result, "status", result))
        exporter = globals().get("export_namespace")
        if exporter is None:  # imported as a module (tests), not sent as source
            from lesson_utils.classroom.export import export_namespace as exporter
        report["summary"] = exporter(namespace, params["names"], params["folder"])
        report["exported"] = True
    except BaseException as error:  # the probe must always report
        report["error"] = f"{type(error).__name__}: {error}"[:500]
    return report.__repr__()  # a real dict's own repr: C code all the way down
