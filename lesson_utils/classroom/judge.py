"""The judge: the only place where a grade is computed, in a process that never ran notebook code.

    python -m lesson_utils.classroom.judge EXPORT_FOLDER --lesson 03     # one export, its results as JSON
    python -m lesson_utils.classroom.judge --serve                       # requests on stdin (the grader's way)

The grader starts one judge per ``-j`` slot before any notebook runs, and sends it a
notebook's export only once that notebook's kernel and every process it started are gone. The
judge never imports the notebook's code, never unpickles anything it wrote and never asks the
kernel anything. From the folder the grading process assembled
(:mod:`lesson_utils.classroom.outside`) it:

1. reads ``export.json`` and ``storages.safetensors`` (:mod:`lesson_utils.classroom.export`);
2. **rebuilds real objects**: tensors on their storages (shared storages shared again, tied
   weights one tensor); modules of classes from an allowlist (``torch.nn.*``,
   ``torchvision.models.*``, ``lesson_utils.*``) with the exported structure, state,
   ``requires_grad``, training flags and parameter identity, without running any
   ``__init__`` (so no random initialisation runs; lesson 05's record of which parameters were
   initialised is set as the kernel's was); optimizers of ``torch.optim.*`` classes on the
   rebuilt parameters, with every parameter group's settings and state; a class the notebook
   defined becomes a stand-in of the same name (module ``__main__``) on the nearest allowed
   base, with no code of the notebook's; a stand-in module class builds, when called without
   arguments, the exported structure again from allowed classes in their order, so
   ``type(model)()`` gives what the notebook's class gives after the same seed;
3. **points the paths at the grading process's copies**: ``/tmp/x/w.pt`` becomes
   ``<copies>/tmp/x/w.pt``, and the judge works in the copy of the kernel's working folder,
   so a relative path means what it meant there (messages show the kernel's paths again);
4. **maps memory as the kernel had it**: a storage whose pages were a file's (``/proc/<kernel>/maps``
   read from outside) is rebuilt by mapping the copy of that file, with the pages that were
   private copies in the kernel written again (copy on write), so lesson 05's checker finds what
   the kernel had; where the copy and the exported numbers disagree it gets a plain copy;
5. runs the **unchanged checkers**, ``question.evaluate(namespace)``, each under a time limit,
   in a clean torch state; they compute their references themselves, and the judge keeps
   references between notebooks (functions named ``_reference*`` or ``_setup*`` and
   ``seed0_net_state``, which depend only on their arguments): that, and a judge that starts
   once per class, is where a class is graded faster than a kernel per notebook grading itself.

What the judge takes from the kernel's word, because only the kernel knows it: which
parameters went through their random initialisation (lesson 05) and the globals that
``add_safe_globals`` allowed for the session (lesson 08). Both can only be forged by code that
ran in the kernel, and forging them does not make a wrong answer's numbers or files right.

The judge runs outside any sandbox, on values and files a student made, so nothing in them may
make it run code: a class or a function that appears as a *value* (``allowed = [TrainConfig]``)
is a stand-in of the same name whose constructor is not the library's and whose call raises
(Python's plain types excepted), so a student's file cannot call a real function through the
safe globals; objects are rebuilt without running any ``__init__``; and unpickling in this
process (:func:`restrict_pickle`: DCP reads a checkpoint's ``.metadata`` with ``pickle.load``)
creates only what torch's weights-only loader and DCP's metadata need.

Example:
    >>> import tempfile, torch
    >>> from lesson_utils.classroom.export import export_namespace
    >>> folder = tempfile.mkdtemp()
    >>> net = torch.nn.Linear(2, 1)
    >>> _ = export_namespace({"net": net, "same": net}, ["net", "same"], folder)
    >>> rebuilt = Rebuilt(folder)
    >>> copy, same = rebuilt.value("net"), rebuilt.value("same")
    >>> type(copy).__name__, copy is same, torch.equal(copy.weight, net.weight)
    ('Linear', True, True)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import functools
import importlib
import json
import math
import mmap
import os
import pathlib
import signal
import struct
import sys
import types
from pathlib import Path

from lesson_utils.classroom.export import EXPORT, FORMAT, STORAGES

# Modules whose classes and functions the judge may import by name (never "__main__": the notebook's)
IMPORTABLE = ("torch", "torchvision", "lesson_utils", "builtins", "collections", "pathlib", "numpy", "safetensors",
              "huggingface_hub", "torchdata", "dataclasses", "math", "operator", "functools", "typing")  # fmt: skip
MODULE_CLASSES = ("torch.nn.", "torchvision.models.", "lesson_utils.", "torch.optim.swa_utils")
OPTIMIZER_CLASSES = ("torch.optim.",)
MAX_EXPORT = 256 * 2**20  # bytes of export.json
MAX_TENSOR = 8 * 2**30  # bytes of one rebuilt tensor (a view may repeat its storage: stride 0)
OUTSIDE = "outside.json"  # what the grading process found outside the kernel (files, memory)
FILES = "files"  # the copies of the files the kernel named, under their kernel paths
NO_EXPORT = "no answer exported: the notebook stopped before the end?"
CACHED_PREFIXES = ("_reference", "_setup")
CACHED_NAMES = ("seed0_net_state",)


PLAIN = (bool, int, float, str, type(None))
SAFE_BASES = (object, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)  # + Tensor, Module


@functools.cache
def module_own() -> frozenset[str]:
    """What ``nn.Module.__init__`` sets (hooks, parameters, children): never taken from an export's attributes."""
    import torch

    return frozenset(vars(torch.nn.Module()))


class ExportError(ValueError):
    """The export is not what :mod:`lesson_utils.classroom.export` writes."""


def importable(module: str, qualname: str) -> object | None:
    """The object ``module.qualname`` names, if ``module`` is one the judge may import; else None."""
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    parts = module.split(".")
    if parts[0] not in IMPORTABLE:
        return None
    if module not in sys.modules and any(p == "__main__" or p.startswith(("test", "_test")) for p in parts):
        return None  # a script's or a test's module runs when imported (numpy.f2py.__main__ ends the process)
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj


def under(files_root: str, text: str) -> str | None:
    """``text``, an absolute path the kernel named, as the path of its copy under ``files_root``; None for
    one that is not a path. Never a path outside ``files_root``: "/../../etc" is "/etc" there, as the
    kernel's own root would have it (the export is the notebook's to forge; the judge may run as root).

    >>> under("/copies", "/tmp/w.pt"), under("/copies", "/../../../etc/passwd"), under("/copies", "w.pt")
    ('/copies/tmp/w.pt', '/copies/etc/passwd', None)
    """
    if not isinstance(text, str) or not text.startswith("/") or "\0" in text:
        return None
    root = os.path.realpath(files_root)
    for candidate in (files_root + text, files_root + os.path.normpath(text)):
        if os.path.commonpath([root, os.path.realpath(candidate)]) == root:
            return candidate
    return None


class Rebuilt:
    """Objects rebuilt from one export folder; :meth:`value` gives a name's value."""

    def __init__(self, folder: str | os.PathLike, outside: dict | None = None, files_root: str | None = None) -> None:
        self.folder = Path(folder)
        path = self.folder / EXPORT
        if not path.is_file() or path.is_symlink():
            raise FileNotFoundError(NO_EXPORT)
        if path.stat().st_size > MAX_EXPORT:
            raise ExportError(f"export.json is over {MAX_EXPORT // 2**20} MiB")
        try:
            self.document = json.loads(path.read_text(encoding="ascii"))
        except (ValueError, UnicodeDecodeError) as error:
            raise ExportError(f"export.json does not read as JSON ({error})"[:300]) from None
        if not isinstance(self.document, dict) or self.document.get("format") != FORMAT:
            raise ExportError("export.json is not an export of this grader's format")
        for key, kind in (("names", dict), ("objects", list), ("storages", list)):
            if not isinstance(self.document.get(key), kind):
                raise ExportError(f"export.json has no {key}")
        self.objects = self.document["objects"]
        self.outside = outside or {}
        self.files_root = files_root
        self.built: dict[int, object] = {}
        self.classes: dict[int, type] = {}  # the class of rebuilt objects, by entry
        self.storage_cache: dict[int, object] = {}
        self.maps: list[mmap.mmap] = []
        self.notes: list[str] = []
        self.plans: dict[type, int] = {}  # a stand-in module class -> the entry of an instance: how to build one
        self.keep: list[object] = []  # the storages' owners
        self._offsets = None

    # -- values ------------------------------------------------------------------------------------
    def value(self, name: str) -> object:
        """The value of the notebook's variable ``name``; a path (a ``Path``, or a string naming one at the
        top) points at the grading process's copy."""
        if name not in self.document["names"]:
            return None
        node = self.document["names"][name]
        if isinstance(node, str):
            return self.path(node)
        value = self.node(node)
        if isinstance(value, str) and not isinstance(value, pathlib.PurePath):  # a str subclass: a string as well
            return self.path(str(value))
        return value

    def unsupported(self, name: str) -> str | None:
        """The type named in an ``unsupported`` entry, if ``name``'s value is one."""
        node = self.document["names"].get(name)
        if isinstance(node, dict) and node.get("$") == "ref":
            try:
                entry = self._entry(node.get("id"))
            except ExportError:
                return None  # said when its value is rebuilt
            if entry.get("kind") == "unsupported":
                return str(entry.get("type"))
        return None

    def node(self, node: object) -> object:
        if node is None or type(node) in (bool, int, float, str):
            return node
        if isinstance(node, dict) and node.get("$") == "float":
            text = node.get("repr")
            if text not in ("inf", "-inf", "nan"):
                raise ExportError(f"a float written as {text!r}")
            return float(text)
        if isinstance(node, dict) and node.get("$") == "ref":
            return self.build(node.get("id"))
        raise ExportError(f"a node that is neither a value nor a reference: {str(node)[:80]}")

    def _entry(self, index: object) -> dict:
        if type(index) is not int or not 0 <= index < len(self.objects) or not isinstance(self.objects[index], dict):
            raise ExportError(f"a reference to no object ({index!r})")
        return self.objects[index]

    def build(self, index: int) -> object:
        if index in self.built:
            return self.built[index]
        entry = self._entry(index)
        kind = entry.get("kind")
        builder = getattr(self, f"_build_{kind}", None)
        if builder is None:
            raise ExportError(f"an object of kind {kind!r}")
        return builder(index, entry)

    def _done(self, index: int, value: object) -> object:
        self.built[index] = value
        return value

    # -- classes -----------------------------------------------------------------------------------
    def cls(self, node: object) -> type:
        """The class of a rebuilt object: the library's own if it is one the judge may import (never the
        notebook's), else a stand-in of the same name on a safe base (the same stand-in as the class's value)."""
        if not (isinstance(node, dict) and node.get("$") == "ref"):
            raise ExportError("a class that is not a reference")
        index = node.get("id")
        entry = self._entry(index)
        if entry.get("kind") != "class":
            raise ExportError("a class reference to something else")
        if index not in self.classes:
            found = importable(entry.get("module"), entry.get("qualname"))
            self.classes[index] = found if isinstance(found, type) else self.build(index)
        return self.classes[index]

    def _build_class(self, index: int, entry: dict) -> type:
        """A class as a value (``allowed = [TrainConfig]``, ``TinyLM``): a stand-in, named as the original, with
        none of its code, so that nothing the export names can make the judge run a library's constructor or
        a notebook's code (Python's own plain types excepted)."""
        import torch

        found = importable(entry.get("module"), entry.get("qualname"))
        if isinstance(found, type) and found in SAFE_BASES and found is not object:
            return self._done(index, found)
        safe = (*SAFE_BASES, torch.Tensor, torch.nn.Module)
        bases = [importable(c.get("module"), c.get("qualname")) for c in entry.get("mro", []) if isinstance(c, dict)]
        base = next((b for b in bases if b in safe), object)
        return self._done(index, self._standin(str(entry.get("module")), str(entry.get("qualname")), base, entry))

    def _standin(self, module: str, qualname: str, base: type, entry: dict) -> type:
        """A class named like the notebook's (``__main__.TinyLM``) on an allowed base, with none of its code."""
        import torch

        name = qualname.rsplit(".", 1)[-1]
        namespace = {"__module__": module, "__qualname__": qualname, "__doc__": f"stand-in for {module}.{qualname}"}
        if isinstance(base, type) and issubclass(base, torch.nn.Module):
            rebuilt = self

            def __init__(self, *args, **kwargs):  # noqa: N807 - a class's own __init__
                if args or kwargs:
                    raise TypeError(f"the grader cannot run the notebook's {qualname} with arguments")
                plan = rebuilt.plans.get(type(self))
                if plan is None:
                    raise TypeError(f"the grader cannot build the notebook's {qualname}: no instance was exported")
                rebuilt.replay(self, plan)

            namespace["__init__"] = __init__
        if base is object and entry.get("dataclass"):
            namespace["__eq__"] = lambda self, other: type(self) is type(other) and vars(self) == vars(other)
            namespace["__hash__"] = None
        try:
            return type(name, (base,), namespace)
        except TypeError:  # a base that cannot be subclassed (bool): a plain class
            return type(name, (object,), namespace)

    def _build_function(self, index: int, entry: dict) -> object:
        """A function as a value: always a stand-in of the same name that the judge never runs (a real
        ``builtins.exec`` in ``allowed`` would let a student's file call it in the judge)."""
        qualname, module = str(entry.get("qualname")), str(entry.get("module"))

        def notebook_function(*args, **kwargs):
            raise RuntimeError(f"{module}.{qualname} is a function the notebook named: the grader does not run it")

        notebook_function.__module__, notebook_function.__qualname__ = module, qualname
        notebook_function.__name__ = qualname.rsplit(".", 1)[-1]
        return self._done(index, notebook_function)

    # -- plain containers ----------------------------------------------------------------------------
    def _build_dict(self, index: int, entry: dict) -> dict:
        kind = self.cls(entry.get("class"))
        if _importable_class(kind) and kind not in (dict, collections.OrderedDict, collections.defaultdict,
                                                    collections.Counter):  # fmt: skip
            kind = dict  # a library's dict class: its own code is not run here
        if kind is collections.defaultdict:
            default = self.node(entry.get("default"))
            made = collections.defaultdict(default if callable(default) else None)
        elif isinstance(kind, type) and issubclass(kind, dict):
            try:
                made = kind()
            except Exception:  # a dict class that needs arguments: a plain dict
                made = {}
        else:
            raise ExportError("a dict of a class that is no dict")
        self._done(index, made)
        for pair in entry.get("items", []):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ExportError("a dict item that is not a pair")
            key = self.node(pair[0])
            try:
                dict.__setitem__(made, key, self.node(pair[1]))
            except TypeError:
                raise ExportError(f"an unhashable dict key ({type(key).__name__})") from None
        return made

    def _build_list(self, index: int, entry: dict) -> list:
        kind = self.cls(entry.get("class"))
        standin = isinstance(kind, type) and issubclass(kind, list) and not _importable_class(kind)
        made = kind() if standin else []
        self._done(index, made)
        made.extend(self.node(item) for item in entry.get("items", []))
        return made

    def _build_tuple(self, index: int, entry: dict) -> tuple:
        import torch

        kind = self.cls(entry.get("class"))
        items = [self.node(item) for item in entry.get("items", [])]
        fields = entry.get("fields")
        if kind is torch.Size:
            return self._done(index, torch.Size(items))
        if fields:  # a named tuple: the library's own (torch's _IncompatibleKeys), or one of the same name and fields
            named = isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_make")
            if not (_importable_class(kind) and named and list(getattr(kind, "_fields", ())) == fields):
                kind = collections.namedtuple(kind.__name__, [str(f) for f in fields])
                kind.__module__ = "__main__"
            try:
                return self._done(index, kind(*items))
            except Exception:
                return self._done(index, tuple(items))
        if kind is not tuple and isinstance(kind, type) and issubclass(kind, tuple) and not _importable_class(kind):
            with contextlib.suppress(Exception):
                return self._done(index, kind(items))
        return self._done(index, tuple(items))

    def _build_set(self, index: int, entry: dict) -> set:
        made = self._done(index, set())
        made.update(self.node(item) for item in entry.get("items", []))
        return made

    def _build_frozenset(self, index: int, entry: dict) -> frozenset:
        return self._done(index, frozenset(self.node(item) for item in entry.get("items", [])))

    def _build_plain(self, index: int, entry: dict) -> object:
        kind = self.cls(entry.get("class"))
        value = self.node(entry.get("value"))
        if not (isinstance(kind, type) and issubclass(kind, (bool, int, float, str)) and type(value) in PLAIN):
            raise ExportError("a plain value of a class that is no plain type")
        try:
            return self._done(index, kind(value))
        except Exception:
            return self._done(index, value)

    def _build_complex(self, index: int, entry: dict) -> complex:
        return self._done(index, complex(self.node(entry.get("real")), self.node(entry.get("imag"))))

    def _build_bytes(self, index: int, entry: dict) -> bytes:
        return self._done(index, bytes.fromhex(str(entry.get("hex", ""))))

    def _build_dtype(self, index: int, entry: dict) -> object:
        import torch

        found = getattr(torch, str(entry.get("name")), None)
        if not isinstance(found, torch.dtype):
            raise ExportError(f"no dtype {entry.get('name')!r}")
        return self._done(index, found)

    def _build_device(self, index: int, entry: dict) -> object:
        import torch

        return self._done(index, torch.device(str(entry.get("name"))))

    def _build_path(self, index: int, entry: dict) -> pathlib.Path:
        return self._done(index, Path(self.path(str(entry.get("path")))))

    def path(self, text: str) -> str:
        """A path the kernel named, as the judge must open it: an absolute one under the copies' root."""
        cwd = self.document.get("cwd")
        if self.files_root is not None and not text.startswith("/") and ".." in Path(text).parts:
            # "../../x" from the copies' working folder would climb out of them (in the kernel it stops at /)
            text = os.path.join(cwd, text) if isinstance(cwd, str) and cwd.startswith("/") else "/" + text
        if self.files_root is not None and text.startswith("/"):
            inside = under(self.files_root, text)
            if inside is None:  # a link in the copies would be needed for this: there are none
                self.notes.append(f"the kernel named a path that leads out of the copied files: {text[:200]!r}")
                return self.files_root + "/nowhere"
            return inside
        return text

    def _build_method(self, index: int, entry: dict) -> object:
        owner = self.node(entry.get("self"))
        name = str(entry.get("name"))
        if not name.isidentifier() or name.startswith("_"):
            raise ExportError(f"a method named {name!r}")
        try:
            return self._done(index, getattr(owner, name))
        except AttributeError:
            raise ExportError(f"a method {name!r} its object does not have") from None

    def _build_object(self, index: int, entry: dict) -> object:
        import dataclasses

        kind = self.cls(entry.get("class"))
        if _importable_class(kind) and not dataclasses.is_dataclass(kind):
            raise ExportError(f"an object of {kind.__qualname__}: the grader rebuilds only dataclasses and the "
                              "notebook's own classes")  # fmt: skip
        try:
            made = kind.__new__(kind)
        except Exception as error:
            raise ExportError(f"an object of {kind.__qualname__} that cannot be made ({error})") from None
        self._done(index, made)
        attrs = self.node(entry.get("attrs"))
        if isinstance(attrs, dict) and hasattr(made, "__dict__"):
            made.__dict__.update({str(k): v for k, v in attrs.items()})
        return made

    def _build_unsupported(self, index: int, entry: dict) -> object:
        kind = str(entry.get("type"))
        module, _, qualname = kind.partition(" ")[0].rpartition(".")
        namespace = {"__module__": module or "__main__", "__repr__": lambda self: f"<a {kind} (not exported)>"}
        standin = type(qualname or "Unexported", (), namespace)
        return self._done(index, standin())

    # -- tensors -----------------------------------------------------------------------------------
    def storage(self, number: object) -> object:
        if type(number) is not int or not 0 <= number < len(self.document["storages"]):
            raise ExportError(f"a tensor on no storage ({number!r})")
        if number in self.storage_cache:
            return self.storage_cache[number]
        info = self.document["storages"][number]
        nbytes = info.get("nbytes") if isinstance(info, dict) else None
        if type(nbytes) is not int or nbytes < 0:
            raise ExportError("a storage without its size")
        data = self._read_storage(number, nbytes)
        mapped = self._mapped_storage(number, nbytes, data)
        storage = (mapped if mapped is not None else data).untyped_storage()
        self.storage_cache[number] = storage
        self.keep.append(mapped if mapped is not None else data)
        return storage

    def _read_storage(self, number: int, nbytes: int) -> object:
        """Storage ``number``'s bytes from ``storages.safetensors`` (its header read here; nothing unpickled)."""
        import torch

        path = self.folder / STORAGES
        if self._offsets is None:
            if not path.is_file() or path.is_symlink():
                raise ExportError("no storages.safetensors beside export.json")
            with open(path, "rb") as f:
                size = struct.unpack("<Q", f.read(8))[0]
                if size > 2**26:
                    raise ExportError("storages.safetensors has an oversized header")
                try:
                    header = json.loads(f.read(size))
                except ValueError:
                    raise ExportError("storages.safetensors has a header that is not JSON") from None
            self._offsets = (8 + size, header, path.stat().st_size)
        start, header, total = self._offsets
        item = header.get(f"s{number}") if isinstance(header, dict) else None
        offsets = item.get("data_offsets") if isinstance(item, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise ExportError(f"storage s{number} is not in storages.safetensors")
        if offsets[1] - offsets[0] != nbytes or offsets[0] < 0 or start + offsets[1] > total:
            raise ExportError(f"storage s{number} has another size in storages.safetensors")
        data = torch.empty(nbytes, dtype=torch.uint8)
        if nbytes:
            with open(path, "rb") as f:
                f.seek(start + offsets[0])
                if f.readinto(memoryview(data.numpy())) != nbytes:
                    raise ExportError(f"storage s{number} is cut short")
        return data

    def _mapped_storage(self, number: int, nbytes: int, data: object) -> object | None:
        """The storage as a map of the copy of the file its pages belonged to in the kernel, or None."""
        import torch

        fact = (self.outside.get("memory") or {}).get(str(number))
        if not fact or not nbytes or self.files_root is None:
            return None
        copy_path = under(self.files_root, str(fact.get("file", ""))) or self.files_root + "/nowhere"
        offset, private = fact.get("offset"), fact.get("private_pages", [])
        if type(offset) is not int or not os.path.isfile(copy_path) or os.path.islink(copy_path):
            self.notes.append(f"the kernel's memory was a map of {fact.get('file')}, which was not copied: a copy used")
            return None
        size = os.path.getsize(copy_path)
        if offset < 0 or offset + nbytes > size:
            self.notes.append(f"the kernel's map of {fact.get('file')} is longer than the file now: a copy used")
            return None
        with open(copy_path, "r+b") as f:
            mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        page = mmap.PAGESIZE
        private_set = {p for p in private if type(p) is int}
        expected = data.numpy().tobytes()
        for first in range(offset // page * page, offset + nbytes, page):  # the file's pages, one by one
            low, high = max(first, offset), min(first + page, offset + nbytes)
            if first // page not in private_set and mapped[low:high] != expected[low - offset : high - offset]:
                mapped.close()
                self.notes.append(
                    f"the kernel's numbers differ from {fact.get('file')} where its memory was that file's pages: "
                    "graded as a private copy"
                )
                return None
        for number_of_page in sorted(private_set):  # a private copy in the kernel: written again, copied on write
            low, high = max(number_of_page * page, offset), min((number_of_page + 1) * page, offset + nbytes)
            if low < high:
                mapped[low:high] = expected[low - offset : high - offset]
        self.maps.append(mapped)
        return torch.frombuffer(mapped, dtype=torch.uint8, count=nbytes, offset=offset)

    def _build_tensor(self, index: int, entry: dict) -> object:
        import torch

        dtype = getattr(torch, str(entry.get("dtype")), None)
        if not isinstance(dtype, torch.dtype):
            raise ExportError(f"a tensor of dtype {entry.get('dtype')!r}")
        shape, stride, offset = entry.get("shape"), entry.get("stride"), entry.get("offset")
        if not all(isinstance(x, list) and all(type(v) is int and v >= 0 for v in x) for x in (shape, stride)):
            raise ExportError("a tensor without a shape and stride")
        if len(shape) != len(stride) or type(offset) is not int or offset < 0:
            raise ExportError("a tensor whose shape, stride and offset do not fit")
        if math.prod(shape) * torch.empty(0, dtype=dtype).element_size() > MAX_TENSOR:
            raise ExportError(f"a tensor of more than {MAX_TENSOR // 2**30} GiB")
        if entry.get("storage") is None:  # on the meta device: no data
            tensor = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
        else:
            storage = self.storage(entry["storage"])
            try:
                tensor = torch.empty(0, dtype=dtype).set_(storage, offset, shape, stride)
            except RuntimeError as error:
                raise ExportError(f"a tensor that does not fit its storage ({error})"[:200]) from None
        kind = self.cls(entry.get("class"))
        if entry.get("answers_for_itself"):  # a Tensor subclass that defines how it reports its memory
            said = ", ".join(str(name) for name in entry["answers_for_itself"])[:200]
            note = f"a Tensor subclass in the answers defines {said}: read how its tensors were made"
            if note not in self.notes:
                self.notes.append(note)
        requires_grad = bool(entry.get("requires_grad")) and (tensor.is_floating_point() or tensor.is_complex())
        if kind is torch.nn.Parameter or (isinstance(kind, type) and issubclass(kind, torch.nn.Parameter)):
            made = torch.nn.Parameter(tensor, requires_grad=requires_grad)
            if kind is not torch.nn.Parameter:
                made = made.as_subclass(kind) if isinstance(kind, type) else made
        else:
            made = tensor.requires_grad_(requires_grad)
            if isinstance(kind, type) and issubclass(kind, torch.Tensor) and kind is not torch.Tensor:
                made = made.as_subclass(kind)
        self._done(index, made)
        attrs = self.node(entry["attrs"]) if "attrs" in entry else None
        if isinstance(attrs, dict):  # a subclass's attributes (a scale): plain values and tensors only
            for key, value in attrs.items():
                if str(key).isidentifier() and not str(key).startswith("_"):
                    if _plain_value(value, torch) or isinstance(value, torch.Tensor):
                        with contextlib.suppress(Exception):
                            setattr(made, str(key), value)
        return made

    # -- modules and optimizers -----------------------------------------------------------------------
    def _allowed_class(self, entry: dict, base: tuple[type, str], prefixes: tuple, what: str, allowed: str) -> type:
        """The entry's class: a subclass of ``base`` (the class, its name) from ``prefixes`` (or a stand-in for
        one); else ExportError."""
        kind = self.cls(entry.get("class"))
        if not (isinstance(kind, type) and issubclass(kind, base[0])):
            raise ExportError(f"{what} of a class that is no {base[1]}")
        if not _allowed(kind, prefixes) and _allowed_base(kind, prefixes) is None:
            raise ExportError(f"{what} of class {kind.__qualname__}, {allowed}")
        return kind

    def _build_module(self, index: int, entry: dict) -> object:
        import torch

        kind = self._allowed_class(
            entry, (torch.nn.Module, "nn.Module"), MODULE_CLASSES, "a module", "outside the allowed libraries"
        )
        self._behaviour(entry, "a model")
        made = kind.__new__(kind)
        torch.nn.Module.__init__(made)
        self._done(index, made)
        if not _allowed(kind, MODULE_CLASSES):
            self.plans.setdefault(kind, index)
        self._attributes(made, entry)
        made.__dict__["training"] = bool(entry.get("training"))
        for name, node in _pairs(entry.get("params")):
            made._parameters[name] = self.node(node)
        for name, node in _pairs(entry.get("buffers")):
            made._buffers[name] = self.node(node)
        made._non_persistent_buffers_set.update(str(n) for n in entry.get("nonpersistent", []))
        for name, node in _pairs(entry.get("children")):
            child = self.node(node)
            if child is not None and not isinstance(child, torch.nn.Module):
                raise ExportError(f"a child {name!r} that is no module")
            made._modules[name] = child
        record = entry.get("initialised")
        if isinstance(record, dict):
            from lesson_utils.exercises import initialisation

            initialisation._FIRST_WITH_DATA[made] = {str(k): bool(v) for k, v in record.items()}
        return made

    def _behaviour(self, entry: dict, what: str) -> None:
        """A note for the teacher when the notebook changed what a model or optimizer of the answers does
        (its own hooks, a method set on the object): the judge rebuilds the state, which the checkers
        judge, without them; only someone reading the notebook sees what they do."""
        said = entry.get("behaviour")
        if isinstance(said, list) and said:
            note = (f"{what} in the answers has {', '.join(str(x) for x in said)[:200]} from the notebook: "
                    "graded on its state; read what the notebook made it do")  # fmt: skip
            if note not in self.notes:
                self.notes.append(note)

    def _attributes(self, module: object, entry: dict) -> None:
        """A module's plain attributes (``in_features``, ``eps``): plain values only, and none of the names
        ``nn.Module`` keeps its own parts (hooks, parameters) under."""
        import torch

        attrs = entry.get("attrs") or {}
        if not isinstance(attrs, dict):
            raise ExportError("a module's attributes that are not a dict")
        for key, node in attrs.items():
            value = self.node(node)
            if str(key) not in module_own() and _plain_value(value, torch):
                module.__dict__[str(key)] = value

    def replay(self, module: object, index: int) -> None:
        """Build ``module`` (a stand-in) as the exported instance ``index`` was built: its children, from
        allowed classes, made in their order with their arguments (the same random numbers drawn), then
        the parameters that instance shares (tied weights) shared again."""
        import torch

        torch.nn.Module.__init__(module)
        entry = self._entry(index)
        if any(node is not None for _name, node in _pairs(entry.get("params"))) or any(
            node is not None for _name, node in _pairs(entry.get("buffers"))
        ):
            raise TypeError(f"the grader cannot build {type(module).__qualname__}: it makes tensors of its own")
        self._attributes(module, entry)
        made: dict[int, object] = {}
        for name, node in _pairs(entry.get("children")):
            setattr(module, name, None if node is None else self._construct(node["id"], made))
        self._tie(index, module, {})

    def _construct(self, index: int, made: dict) -> object:
        import torch

        entry = self._entry(index)
        kind = self.cls(entry.get("class"))
        if not _allowed(kind, MODULE_CLASSES):
            child = kind.__new__(kind)
            self.replay(child, index)
            return child
        children = [(name, None if node is None else self._construct(node["id"], made))
                    for name, node in _pairs(entry.get("children"))]  # fmt: skip
        if issubclass(kind, (torch.nn.Sequential, torch.nn.ModuleList)):
            return kind(*[c for _n, c in children]) if kind is torch.nn.Sequential else kind([c for _n, c in children])
        if issubclass(kind, torch.nn.ModuleDict):
            return kind(dict(children))
        import inspect

        attrs = {str(k): self.node(v) for k, v in (entry.get("attrs") or {}).items()}
        parts = _pairs(entry.get("params")) + _pairs(entry.get("buffers"))
        present = {name for name, node in parts if node is not None}
        arguments = {}
        for parameter in list(inspect.signature(kind.__init__).parameters.values())[1:]:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or parameter.name in (
                "device",
                "dtype",
            ):
                continue
            if parameter.name in attrs:
                arguments[parameter.name] = attrs[parameter.name]
            elif parameter.name in ("bias", "affine") and parameter.name not in attrs:
                arguments[parameter.name] = "bias" in present if parameter.name == "bias" else "weight" in present
            elif parameter.default is parameter.empty:
                raise TypeError(f"the grader cannot build a {kind.__qualname__} again: no {parameter.name}")
        child = kind(**arguments)
        for name, value in children:
            setattr(child, name, value)
        return child

    def _tie(self, index: int, module: object, seen: dict) -> None:
        """Share again, in ``module`` (built by :meth:`replay`), every parameter the exported instance shares."""
        entry = self._entry(index)
        for name, node in _pairs(entry.get("params")):
            if node is None:
                continue
            key = node.get("id")
            if key in seen:
                setattr(module, name, seen[key])
            else:
                seen[key] = getattr(module, name)
        for name, node in _pairs(entry.get("children")):
            if node is not None and getattr(module, name, None) is not None:
                self._tie(node["id"], getattr(module, name), seen)

    def _build_optimizer(self, index: int, entry: dict) -> object:
        import torch

        kind = self._allowed_class(
            entry,
            (torch.optim.Optimizer, "torch.optim.Optimizer"),
            OPTIMIZER_CLASSES,
            "an optimizer",
            "outside torch.optim",
        )
        self._behaviour(entry, "an optimizer")
        made = kind.__new__(kind)
        defaults = self.node(entry.get("defaults"))
        if not isinstance(defaults, dict):
            raise ExportError("an optimizer without defaults")
        # torch.optim.Optimizer's own set-up (hooks, the step's profiling wrapper), on a stand-in parameter...
        torch.optim.Optimizer.__init__(made, [torch.nn.Parameter(torch.zeros(1))], dict(defaults))
        self._done(index, made)
        groups = [self.node(node) for node in entry.get("groups", [])]  # ...then the exported groups and state
        if not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
            raise ExportError("an optimizer parameter group without its parameters")
        made.param_groups = groups
        made.defaults = defaults
        state = collections.defaultdict(dict)
        for pair in entry.get("state", []):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ExportError("an optimizer state entry that is not a pair")
            key, value = self.node(pair[0]), self.node(pair[1])
            state[key] = value
        made.state = state
        return made

    def close(self) -> None:
        self.built.clear()
        self.storage_cache.clear()
        self.keep.clear()
        for mapped in self.maps:
            with contextlib.suppress(BufferError):  # a tensor still uses it: closed when collected
                mapped.close()
        self.maps.clear()


def _pairs(value: object) -> list[tuple[str, object]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise ExportError("a list of named entries that is not one")
    for _name, node in value:
        if node is not None and not (isinstance(node, dict) and node.get("$") == "ref"):
            raise ExportError("a module part that is not a reference")
    return [(str(name), node) for name, node in value]


def _plain_value(value: object, torch: object, depth: int = 0) -> bool:
    if type(value) in PLAIN or isinstance(value, (torch.dtype, torch.device)):
        return True
    return type(value) in (tuple, list) and depth < 3 and all(_plain_value(v, torch, depth + 1) for v in value)


def _importable_class(kind: object) -> bool:
    return isinstance(kind, type) and importable(kind.__module__, kind.__qualname__) is kind


def _allowed(kind: type, prefixes: tuple[str, ...]) -> bool:
    module = getattr(kind, "__module__", "") or ""
    return (
        module != "__main__" and (module + ".").startswith(prefixes) and importable(module, kind.__qualname__) is kind
    )


def _allowed_base(kind: type, prefixes: tuple[str, ...]) -> type | None:
    return next((base for base in kind.__mro__[1:] if _allowed(base, prefixes)), None)


# -- judging -------------------------------------------------------------------------------------------
def lesson_questions(lesson: str) -> list:
    module = importlib.import_module(f"lesson_utils.exercises.{lesson}")
    questions = [v for v in vars(module).values() if hasattr(v, "qid") and hasattr(v, "evaluate")]
    return sorted(questions, key=lambda q: int(q.qid.rsplit(".q", 1)[1]))


_CACHED: set[str] = set()


def cache_references(lesson: str) -> None:
    """Keep what each reference function returns, per arguments, for the notebooks after this one.

    The functions are the lesson's module-level functions named ``_reference*`` or ``_setup*`` and
    the core's ``seed0_net_state``: each builds what the set-up cell made, from a seed, forking the
    random state, so its result depends on its arguments only. Each caller gets a deep copy.
    """
    if lesson in _CACHED:
        return
    _CACHED.add(lesson)
    from lesson_utils.exercises import core

    module = importlib.import_module(f"lesson_utils.exercises.{lesson}")
    for owner in (core, module):
        for name, function in list(vars(owner).items()):
            if not isinstance(function, types.FunctionType) or getattr(function, "_judge_cached", False):
                continue
            if not (name.startswith(CACHED_PREFIXES) or name in CACHED_NAMES):
                continue
            if function.__module__ != owner.__name__:
                continue
            cached = _cached(function)
            setattr(owner, name, cached)
            for other in (core, module):  # `from core import seed0_net_state` in the lesson
                if vars(other).get(name) is function:
                    setattr(other, name, cached)


def _plain(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_plain(item) for item in value)
    return value is None or type(value) in (bool, int, float, str)


def _cached(function: types.FunctionType) -> types.FunctionType:
    """``function``, remembering its results for arguments of plain values (an object, a model say, is
    passed through: its id could be another object's later)."""
    results: dict = {}

    @functools.wraps(function)
    def wrapper(*args: object, **kwargs: object) -> object:
        key = (args, tuple(sorted(kwargs.items())))
        if not _plain(key):
            return function(*args, **kwargs)
        if key not in results:
            results[key] = function(*args, **kwargs)
        return copy.deepcopy(results[key])

    wrapper._judge_cached = True
    return wrapper


class TimeLimit(BaseException):  # noqa: N818 - a BaseException: evaluate() must not catch it as the answer's error
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`TimeLimit` in this (main) thread after ``seconds``."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum: int, frame: object) -> None:
        raise TimeLimit()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def judge(lesson: str, folder: str | os.PathLike, limit: float = 60.0, only: list[str] | None = None) -> dict:
    """Grade one export folder: ``{"results": [{question, status, message}], "flags": [...]}``; ``only``: these
    question ids, not all of the lesson's. What it changes in this process (the language of messages, the
    session's safe globals, the working folder) is put back."""
    import torch

    from lesson_utils import i18n
    from lesson_utils.classroom.grade_probe import clean_state
    from lesson_utils.exercises.core import INCORRECT, NOT_ATTEMPTED

    questions = [q for q in lesson_questions(lesson) if only is None or q.qid in only]
    cache_references(lesson)
    folder = Path(folder)
    outside = _read_outside(folder)
    files_root = str(folder / FILES) if (folder / FILES).is_dir() else None
    flags: list[str] = []

    def everyone(status: str, message: str) -> dict:
        return {"results": [{"question": q.qid, "status": status, "message": message} for q in questions],
                "flags": flags}  # fmt: skip

    try:
        rebuilt = Rebuilt(folder, outside, files_root)
    except FileNotFoundError:
        return everyone(NOT_ATTEMPTED, NO_EXPORT)
    except ExportError as error:
        flags.append(f"the kernel's export is malformed: {error}")
        return everyone(INCORRECT, f"the grader could not read the notebook's answers ({error})")
    language = rebuilt.document.get("language")
    before = (i18n.language(), os.getcwd(), torch.serialization.get_safe_globals())
    language = i18n._choose(language if language in i18n.LANGUAGES else "en")
    kernel_cwd = rebuilt.document.get("cwd")
    results = []
    try:
        if files_root is not None and isinstance(kernel_cwd, str) and kernel_cwd.startswith("/"):
            here = under(files_root, kernel_cwd)
            if here is None:
                flags.append(f"the kernel's export is malformed: its working folder {kernel_cwd[:200]!r}")
                here = files_root
            os.makedirs(here, exist_ok=True)
            os.chdir(here)
        safe = []
        try:
            safe = [rebuilt.node(n) for n in rebuilt.document.get("safe_globals") or []]
        except ExportError as error:
            flags.append(f"the kernel's export is malformed: {error}")
        REFUSED.clear()
        for question in questions:
            results.append(_evaluate(question, rebuilt, safe, limit, clean_state, flags))
        if REFUSED:
            flags.append(f"a pickle in the answers' files names {', '.join(sorted(set(REFUSED))[:3])}, which the "
                         "judge does not unpickle (code hidden in a checkpoint?)")  # fmt: skip
            REFUSED.clear()
        hooked = rebuilt.document.get("global_hooks")
        if isinstance(hooked, list) and hooked:
            where = ", ".join(map(str, hooked))[:200]
            flags.append(f"the notebook left global hooks of its own in {where}, which run for every model or "
                         "optimizer: graded on their state; read what the notebook made them do")  # fmt: skip
        flags += [note for note in rebuilt.notes if note not in flags]
    finally:
        os.chdir(before[1])
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before[2])
        rebuilt.close()
        i18n._choose(before[0])
    if files_root is not None:  # the kernel's paths in the messages, not the copies'
        for result in results:
            result["message"] = result["message"].replace(files_root, "")
    return {"results": results, "flags": flags, "language": language}


def _evaluate(question: object, rebuilt: Rebuilt, safe: list, limit: float, clean_state: object, flags: list) -> dict:
    """One question on the rebuilt values, under a time limit, with the kernel's safe globals allowed."""
    import torch

    from lesson_utils.exercises.core import INCORRECT
    from lesson_utils.i18n import _  # the notebook's language, chosen by judge()

    paths, found = rebuilt.outside.get("paths") or {}, rebuilt.outside.get("files") or {}
    for name in question.names:
        what = found.get(paths.get(name)) if isinstance(paths.get(name), str) else None
        if isinstance(what, dict) and what.get("kind") == "link":
            message = _(
                "`{name}` leads through a symbolic link ({at}), which the grader does not follow: "
                "write the file itself where the question asks"
            ).format(name=name, at=what.get("at"))
            return {"question": question.qid, "status": INCORRECT, "message": message}
        kind = rebuilt.unsupported(name)
        if kind is not None:
            message = _(
                "`{name}` is a {kind}, which the grader cannot take out of the notebook to check: keep the "
                "question's kind of value (a model, an optimizer, a dict of tensors, a path...)"
            ).format(name=name, kind=kind)
            return {"question": question.qid, "status": INCORRECT, "message": message}
    try:
        namespace = {name: rebuilt.value(name) for name in [*question.names, *question.optional]}
    except (ExportError, TypeError, ValueError, RuntimeError) as error:
        message = _("the grader could not rebuild the notebook's answer: {error}").format(
            error=f"{type(error).__name__}: {error}"
        )[:500]
        if isinstance(error, ExportError) and f"the kernel's export is malformed: {error}" not in flags:
            flags.append(f"the kernel's export is malformed: {error}")
        return {"question": question.qid, "status": INCORRECT, "message": message}
    for name in question.optional:
        if rebuilt.unsupported(name) is not None:
            namespace[name] = None
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(safe)
    try:
        with clean_state(), time_limit(limit):
            result = question.evaluate(namespace)
        return {"question": result.question, "status": result.status, "message": result.message}
    except TimeLimit:
        message = _("the check took longer than {seconds} s (the grader's limit per question)")
        message = message.format(seconds=f"{limit:g}")
        return {"question": question.qid, "status": INCORRECT, "message": message}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # evaluate() catches Exception; some libraries raise BaseException (DCP does)
        first = (str(error).strip().splitlines() or [""])[0]
        message = _("checking your answer raised {error}").format(error=f"{type(error).__name__}: {first}")[:500]
        return {"question": question.qid, "status": INCORRECT, "message": message}
    finally:
        torch.serialization.clear_safe_globals()


def _read_outside(folder: Path) -> dict:
    path = folder / OUTSIDE
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text())
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


# -- the process ---------------------------------------------------------------------------------------
def make_undumpable() -> None:
    """No process of this user can read this one's memory or attach to it (Linux ``PR_SET_DUMPABLE``, 0)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)


def serve(stdin=sys.stdin, stdout=None) -> None:
    """Answer requests, one JSON line each (``{"lesson", "export", "limit"}``), with one JSON line each.

    The answers go to what was standard output when it started; from then on, anything else printed (by a
    checker, by a library: DCP prints its warnings) goes to standard error, so the answers stay readable.
    """
    if stdout is None:
        stdout = os.fdopen(os.dup(sys.stdout.fileno()), "w")
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # C code's prints too
        sys.stdout = sys.stderr
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            answer = judge(request["lesson"], request["export"], float(request.get("limit", 60)))
        except (Exception, TimeLimit) as error:  # the request is answered, whatever happened
            import traceback

            traceback.print_exc()
            answer = {"error": f"{type(error).__name__}: {error}"[:1000]}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


# What unpickling may create in the judge, besides what torch's weights-only loader allows: a DCP checkpoint's
# metadata (lesson 06's checker converts the student's checkpoint folder, and DCP reads it with pickle.load)
DCP_GLOBALS = {("pathlib", "PosixPath"), ("torch.serialization", "_get_layout"),
               ("torch.distributed.checkpoint.filesystem", "_StorageInfo")}  # fmt: skip
DCP_METADATA = "torch.distributed.checkpoint.metadata"
REFUSED: list[str] = []  # the globals unpickling refused since judge() last looked: a teacher should know


def restrict_pickle() -> None:
    """In this process, unpickling creates only what torch's weights-only loader allows and what a DCP
    checkpoint's metadata holds; anything else raises ``pickle.UnpicklingError``.

    A checker may unpickle a file the student wrote (DCP reads ``.metadata`` with ``pickle.load`` and byte
    entries with ``torch.load(weights_only=False)``): in the student's kernel that was the student's own
    risk, in the judge it would run the student's code outside any sandbox.
    """
    import io
    import pickle

    import torch._weights_only_unpickler as weights_only

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            refused = pickle.UnpicklingError(f"the grader's judge does not unpickle {module}.{name}")
            if isinstance(name, str) and name.isidentifier():  # not "os.system" in a module's namespace
                # (protocol 4 follows a dotted name attribute by attribute: anything would be reachable)
                if f"{module}.{name}" in weights_only._get_allowed_globals() or (module, name) in DCP_GLOBALS:
                    return super().find_class(module, name)
                if module == DCP_METADATA:  # only the classes that module defines, never what it imported
                    found = super().find_class(module, name)  # one attribute of that module
                    if isinstance(found, type) and found.__module__ == DCP_METADATA:
                        return found
            REFUSED.append(f"{module}.{name}"[:200])
            raise refused

    def load(file: object, **kwargs: object) -> object:
        return Restricted(file, **kwargs).load()

    def loads(data: bytes, /, **kwargs: object) -> object:
        return Restricted(io.BytesIO(data), **kwargs).load()

    pickle.Unpickler, pickle.load, pickle.loads = Restricted, load, loads


def start(memory: int | None = None) -> None:
    """What the judge process does before its first request: torch, one thread, restricted unpickling,
    memory no other process of its user can read, and, given ``memory`` (bytes), at most that much private
    memory (``RLIMIT_DATA``: what it allocates, not the files it maps). An export may describe a view that
    repeats a few bytes of storage for gigabytes (stride 0): a checker that copies it fails with an error
    (the question incorrect, as for any error) instead of taking the machine's memory."""
    from lesson_utils.numerics import numeric_environment

    os.environ.update(numeric_environment())
    sys.dont_write_bytecode = True
    import torch

    if memory is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    torch.set_num_threads(1)
    restrict_pickle()
    make_undumpable()


class Judges:
    """The grader's side: judge processes (``--serve``), started on first use, each judging one export at a time.

    A judge that does not answer in time (a checker stuck in C code, past its per-question alarm) or dies is
    killed, and the next request starts a new one; its export is answered with every question incorrect,
    flagged for review.
    """

    def __init__(self, size: int, log: Path | None = None, limit: float = 60.0, memory: int | None = None) -> None:
        import queue
        import threading

        self.size, self.log, self.limit, self.memory = max(1, size), log, limit, memory
        self.idle: queue.Queue = queue.Queue()
        self.started = 0
        self.lock = threading.Lock()
        self.processes: list = []

    def _start(self) -> object:
        import subprocess

        from lesson_utils.numerics import numeric_environment

        env = {**os.environ, **numeric_environment(), "PYTHONSAFEPATH": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("LESSON_LANGUAGE", None)
        stderr = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - the process's, closed below
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "lesson_utils.classroom.judge", "--serve"]
                + ([] if self.memory is None else ["--memory", str(self.memory)]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd="/",
            )
        finally:
            if self.log:
                stderr.close()
        with self.lock:
            self.processes.append(process)
        return process

    def warm(self) -> None:
        """Start every judge now (each imports torch), so that none is started while a kernel runs."""
        with self.lock:
            missing = self.size - self.started
            self.started = self.size
        for _ in range(missing):
            self.idle.put(self._start())

    def judge(self, lesson: str, export: str | None, questions: list[str]) -> dict:
        """``{"results": [...], "flags": [...]}`` for ``export`` (a folder), or for no export at all."""
        import select

        with self.lock:
            start = self.started < self.size and self.idle.empty()
            if start:
                self.started += 1
        process = self._start() if start else self.idle.get()
        request = json.dumps({"lesson": lesson, "export": export or "/nonexistent", "limit": self.limit})
        deadline = self.limit * max(1, len(questions)) + 120
        why = f"no answer within {deadline:g} s"
        try:
            process.stdin.write(request.encode() + b"\n")
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], deadline)
            line = process.stdout.readline() if ready else b""
            if ready and not line:
                why = f"it ended (exit code {process.poll()})"
            answer = json.loads(line) if line else None
        except (OSError, ValueError) as error:
            answer, why = None, f"{type(error).__name__}: {error}"[:300]
        if not isinstance(answer, dict) or "error" in answer or "results" not in answer:
            why = answer.get("error") if isinstance(answer, dict) else why
            process.kill()
            process.wait()
            with self.lock:
                self.started -= 1
            message = f"the grader's judge failed on this notebook ({why}): grade it by hand"
            return {"results": [{"question": q, "status": "incorrect", "message": message} for q in questions],
                    "flags": [message]}  # fmt: skip
        self.idle.put(process)
        return answer

    def close(self) -> None:
        with self.lock:
            processes, self.processes = self.processes, []
        for process in processes:
            with contextlib.suppress(OSError):
                process.stdin.close()
            try:
                process.wait(timeout=10)
            except Exception:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lesson_utils.classroom.judge", description=__doc__.split("\n")[0])
    parser.add_argument("export", nargs="?", help="an export folder (as the grading process assembles it)")
    parser.add_argument("--lesson", help="the lesson, e.g. 03")
    parser.add_argument("--limit", type=float, default=60, help="seconds per question (default: %(default)s)")
    parser.add_argument("--serve", action="store_true", help="answer JSON requests on stdin, one per line")
    parser.add_argument("--memory", type=int, help="bytes of private memory this process may allocate")
    args = parser.parse_args(argv)
    start(args.memory)
    if args.serve:
        serve()
        return
    if not args.export or not args.lesson:
        parser.error("give an export folder and --lesson, or --serve")
    lesson = f"lesson{int(args.lesson):02d}" if str(args.lesson).isdigit() else args.lesson
    print(json.dumps(judge(lesson, args.export, args.limit), indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
