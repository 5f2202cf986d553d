"""Which cells of a notebook a part of it needs, by Python's own scoping: the browser tests run only
the cells a widget needs (tests/ui/browser_run.py), the opt-in test only the cells an opt-in switch
reaches and what they need (tests/test_opt_in.py). Each of those cells ran top to bottom under nbval."""

from __future__ import annotations

import ast
import functools
import symtable
from dataclasses import dataclass, field

from IPython.core.inputtransformer2 import TransformerManager


@dataclass
class CellNames:
    """The notebook-level names one code cell binds, changes and reads."""

    bound: set[str] = field(default_factory=set)  # (re)bound at the notebook's top level, imports included
    replaced: set[str] = field(default_factory=set)  # bound by a statement that always runs (x = ..., def x)
    imported: set[str] = field(default_factory=set)  # bound by an import
    changed: set[str] = field(default_factory=set)  # a call may change their object: x.append(...), f(x)
    stored: set[str] = field(default_factory=set)  # an attribute or item set: x.a = ..., x[k] = ..., del x[k]
    read: set[str] = field(default_factory=set)  # read when the cell runs
    read_later: set[str] = field(default_factory=set)  # read, as globals, by its functions when they are called


COMPREHENSIONS = {"listcomp", "setcomp", "dictcomp", "genexpr"}  # scopes that run where they stand


def root_name(node: ast.AST) -> str | None:
    """``x`` for ``x``, ``x.a.b``, ``x[0]``, ``x.f(...)``; None for anything else."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call, ast.Starred)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


@functools.lru_cache(maxsize=4096)  # parsed once per source: callers only read it
def cell_names(source: str) -> CellNames:
    """What one cell's code (IPython syntax allowed) binds, changes and reads, by Python's own scoping."""
    code = TransformerManager().transform_cell(source)
    names = CellNames()
    table = symtable.symtable(code, "<cell>", "exec")
    for symbol in table.get_symbols():
        if symbol.is_imported():
            names.imported.add(symbol.get_name())
        if symbol.is_assigned() or symbol.is_imported():
            names.bound.add(symbol.get_name())
        if symbol.is_referenced():
            names.read.add(symbol.get_name())
    scopes = [(scope, False) for scope in table.get_children()]
    while scopes:  # functions, classes, lambdas, comprehensions: the notebook names they read or rebind
        scope, deferred = scopes.pop()
        deferred = deferred or (scope.get_type() == "function" and scope.get_name() not in COMPREHENSIONS)
        scopes += [(child, deferred) for child in scope.get_children()]
        for symbol in scope.get_symbols():
            if symbol.is_global() and symbol.is_referenced():
                (names.read_later if deferred else names.read).add(symbol.get_name())
            if symbol.is_declared_global() and symbol.is_assigned():
                names.bound.add(symbol.get_name())  # rebound when called: counted where it is defined

    tree = ast.parse(code)
    for statement in tree.body:  # the statements that always run, and what they bind for good
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.replaced.add(statement.name)
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            names.replaced |= {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
                names.replaced |= {e.id for e in elements if isinstance(e, ast.Name)}

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return  # the body runs when it is called, from a cell that reads the function's name
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            if name := root_name(node):
                names.stored.add(name)
        elif isinstance(node, ast.Call):
            receiver = [node.func] if isinstance(node.func, ast.Attribute) else []  # x.append(...): x
            for argument in [*receiver, *node.args, *(keyword.value for keyword in node.keywords)]:
                if name := root_name(argument):
                    names.changed.add(name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def cells_the_widget_needs(sources: list[str], widget: int) -> list[int]:
    """The code cells (positions in ``sources``, in order) to run so that cell ``widget`` works.

    The preamble (the leading cells that bind nothing but imports: the numeric profile, the
    Chinese edition's ``set_language``), the widget's cell, and, to a fixed point, for each name a
    chosen cell reads: the cell that last bound it before the read, and every cell in between
    that may change it in place (sets an attribute or item of it, or passes it to a call:
    ``train(model)``, ``folder.mkdir()``, ``results.append(...)``). A name a function reads is
    read when the function is called: at the latest, in the widget's cell. A call on an imported
    module (``torch.manual_seed``) is not followed, so the random state may differ from a full
    run: the widget's numbers are nbval's to check, its round trip is this test's. A name the
    slice misses fails loudly (a NameError or a missing file in a cell), never silently.
    """
    cells = [cell_names(source) for source in sources]
    imported = set().union(*(cell.imported for cell in cells))
    notebook = set().union(*(cell.bound for cell in cells))  # builtins (print, len) are nobody's state
    chosen: set[int] = set()
    reads: list[tuple[str, int]] = []  # (name, the position of the cell that reads it)

    def choose(position: int) -> None:
        if position not in chosen:
            chosen.add(position)
            reads.extend((name, position) for name in cells[position].read & notebook)
            reads.extend((name, widget) for name in cells[position].read_later & notebook)

    for position, cell in enumerate(cells[:widget]):
        if cell.bound - cell.imported:
            break
        choose(position)
    choose(widget)
    seen: set[tuple[str, int]] = set()
    while reads:
        name, reader = reads.pop()
        if (name, reader) in seen:
            continue
        seen.add((name, reader))
        for position in range(reader - 1, -1, -1):
            cell = cells[position]
            if name in cell.bound | cell.stored | (cell.changed - imported):
                choose(position)
            if name in cell.replaced and name not in cell.read:  # x = ... (not x = f(x)): what it was before is gone
                break
    return sorted(chosen)


def cells_reached_from(sources: list[str], names: set[str]) -> list[int]:
    """The code cells (positions in ``sources``, in order) whose work depends on ``names`` (functions
    that read a switch, say), and every cell those need.

    A cell is reached if it reads one of ``names``, or a name that a reached cell before it binds or may
    change (as :func:`cells_the_widget_needs` counts them; an imported module is nobody's state), also
    through a function it defines, which reads that name when it is called. The cells they need are
    found by :func:`cells_the_widget_needs` for each of them. A cell left out neither reads what a
    reached cell made nor is needed by one: it computes what it computes with or without ``names``.
    The last cell is always run, with what it needs: a lesson ends by removing the files it wrote.
    """
    cells = [cell_names(source) for source in sources]
    imported = set().union(*(cell.imported for cell in cells))
    reached: list[int] = []
    made: set[str] = set()  # the names the reached cells bound or may have changed
    for position, cell in enumerate(cells):
        reads = cell.read | cell.read_later
        if reads & names or reads & made:
            reached.append(position)
            made |= cell.bound | ((cell.stored | cell.changed) - imported)
    reached.append(len(cells) - 1)
    needed = set(reached)
    for position in reached:
        needed.update(cells_the_widget_needs(sources, position))
    return sorted(needed)
