"""The house rules of ``src/jacnet``, checked on the syntax tree of every module.

Three rules (issue 19, "One clear house"):

- no import cycle among jacnet modules: every ``import`` and ``from ... import`` that names
  a jacnet module counts, relative or absolute, at module level or inside a function;
  imports under ``if TYPE_CHECKING:`` do not run and are left out of this one check;
- no module imports a name beginning with ``_`` from another jacnet module, nor a module
  whose name begins with ``_``, nor reads ``module._name`` through a name bound to an
  imported jacnet module (dunders such as ``__version__`` are public);
- no function or method has more than 60 lines of code (blank lines, comment lines and
  docstrings not counted) unless its docstring says why it ``must be one piece``.

Each check returns every offender as ``path:line what (detail)``, and a failure lists them
all. ``KNOWN_OFFENDERS`` holds the offenders of the code before the redesign that the other
branches remove; it may only shrink (an entry that no longer offends fails the test), and
it must end empty. The last tests run each check on a small synthetic package, so that a
check that can never fail cannot pass unnoticed.
"""

from __future__ import annotations

import ast
import os
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "jacnet"
MAX_LINES = 60
ONE_PIECE = "must be one piece"

# Offenders tolerated for now, each as key() writes it (no line number, no detail, so that
# an edit elsewhere in the file does not make an entry stale). The offenders of the code
# before the redesign (fec22d8) are all gone and the set is empty; it stays empty. Should an
# entry ever be needed, test_known_offenders_still_offend fails once it no longer offends,
# so the set can only shrink.
KNOWN_OFFENDERS: set[str] = set()


def key(offender: str) -> str:
    """``path:line what (detail)`` -> ``path what``: the part that names the offence."""
    return re.sub(r" \(.*\)$", "", re.sub(r"^(\S+?):\d+ ", r"\1 ", offender))


# --------------------------------------------------------------------------- the package


@dataclass
class Module:
    name: str  # dotted: jacnet.cli.train
    path: str  # as reported: src/jacnet/cli/train.py
    tree: ast.Module
    is_package: bool
    lines: list[str]


@dataclass
class Import:
    """One imported jacnet module or name, where it was imported."""

    module: Module
    line: int
    target: str  # the jacnet module the statement loads
    name: str | None  # the name taken from it (``from target import name``), else None
    bound: tuple[str, str] | None  # (local name, the jacnet module it is bound to)
    type_checking: bool


@dataclass
class Package:
    modules: dict[str, Module] = field(default_factory=dict)

    def resolve(self, module: Module, level: int, name: str | None) -> str:
        """The absolute dotted name of ``from <level dots><name> import ...`` in ``module``."""
        if level == 0:
            return name or ""
        parts = module.name.split(".")
        base = parts if module.is_package else parts[:-1]
        base = base[: len(base) - (level - 1)]
        return ".".join([*base, name] if name else base)

    def longest_module(self, dotted: str) -> str | None:
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in self.modules:
                return ".".join(parts[:n])
        return None


def load_package(root: Path, report_from: Path) -> Package:
    """Every ``.py`` file under ``root`` (the package folder), parsed."""
    package = Package()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [root.name, *rel.parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        text = path.read_text(encoding="utf-8")
        package.modules[".".join(parts)] = Module(
            ".".join(parts), path.relative_to(report_from).as_posix(),
            ast.parse(text, str(path)), is_package, text.splitlines())
    return package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below ``node``, with whether it sits under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, type_checking
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_checking
                yield from _walk(stmt, type_checking)
        else:
            yield child, type_checking
            yield from _walk(child, type_checking)


def imports(package: Package) -> Iterator[Import]:
    """Every import of a jacnet module or of a name from one, in every module."""
    for module in package.modules.values():
        for node, tc in _walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = package.longest_module(alias.name)
                    if target is None:
                        continue
                    # `import a.b.c as m` binds m to a.b.c; `import a.b.c` binds a to a
                    top = alias.name.split(".")[0]
                    bound = (alias.asname, target) if alias.asname else (top, top)
                    yield Import(module, node.lineno, target, None, bound, tc)
            elif isinstance(node, ast.ImportFrom):
                base = package.resolve(module, node.level, node.module)
                if base not in package.modules:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in package.modules:  # `from . import module`
                        yield Import(module, node.lineno, sub, None,
                                     (alias.asname or alias.name, sub), tc)
                    else:
                        yield Import(module, node.lineno, base, alias.name, None, tc)


# --------------------------------------------------------------------------- the checks


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def import_cycles(package: Package) -> list[str]:
    """For every import that lies on a cycle, the shortest cycle through it (each cycle
    once, from its first module by name), with the file:line of each import on it."""
    edges: dict[str, dict[str, str]] = {name: {} for name in package.modules}
    for imp in imports(package):
        if imp.type_checking or imp.target == imp.module.name:
            continue
        edges[imp.module.name].setdefault(imp.target, f"{imp.module.path}:{imp.line}")
    cycles = set()
    for group in _strongly_connected(edges):
        for u in group:
            for v in edges[u]:
                if v in group:
                    back = _shortest_path(edges, v, u, group)
                    cycle = [u, *back]
                    first = cycle.index(min(cycle))
                    cycles.add(tuple(cycle[first:] + cycle[:first]))
    offenders = []
    for cycle in sorted(cycles):
        path = [*cycle, cycle[0]]
        where = [edges[a][b] for a, b in zip(path[:-1], path[1:], strict=True)]
        offenders.append(f"{where[0]} import cycle {' -> '.join(path)} ({', '.join(where)})")
    return offenders


def _strongly_connected(edges: dict[str, dict[str, str]]) -> list[set[str]]:
    """Tarjan's algorithm; the groups that hold a cycle (two modules or more, or a loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges[v]:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def _shortest_path(edges: dict[str, dict[str, str]], start: str, goal: str,
                   group: set[str]) -> list[str]:
    """The modules from ``start`` to ``goal`` (``goal`` left out) by the fewest imports."""
    paths = {start: [start]}
    frontier = [start]
    while goal not in paths:
        reached = []
        for v in frontier:
            for w in sorted(edges[v]):
                if w in group and w not in paths:
                    paths[w] = [*paths[v], w]
                    reached.append(w)
        frontier = reached
    return paths[goal][:-1]


def private_reaches(package: Package) -> list[str]:
    """``from m import _x``, ``import jacnet._m`` / ``from ._m import x``, and ``m._x`` where
    ``m`` is a name bound to an imported jacnet module."""
    offenders = []
    bound: dict[str, dict[str, str]] = {name: {} for name in package.modules}
    for imp in imports(package):
        mod = imp.module
        if imp.target == mod.name:
            continue  # a package's __init__ reading its own names
        target = imp.target.split(".")
        shared = len(os.path.commonprefix([target, mod.name.split(".")]))
        if any(_private(part) for part in target[shared:]):  # its own package's are its own
            offenders.append(f"{mod.path}:{imp.line} imports the private module {imp.target}")
        if imp.name is not None and _private(imp.name):
            offenders.append(f"{mod.path}:{imp.line} imports {imp.name} from {imp.target}")
        if imp.bound is not None:
            bound[mod.name][imp.bound[0]] = imp.bound[1]
    for mod in package.modules.values():
        own = _private_names_defined(mod.tree)
        imported = _imported_names(mod.tree)
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = _module_of(node.value, bound[mod.name], package)
                if owner is not None and owner != mod.name:
                    offenders.append(f"{mod.path}:{node.lineno} reads {node.attr} of {owner}")
                elif (owner is None and node.attr not in own
                      and not _own_object(node.value, imported)):
                    offenders.append(f"{mod.path}:{node.lineno} reads {node.attr} of an object "
                                     "whose class is defined in another module")
    return sorted(set(offenders), key=_by_place)


def _private_names_defined(tree: ast.AST) -> set[str]:
    """The private names a module defines: its functions, methods and classes, names it
    assigns, and attributes it assigns on any object (``self._x = ...``, ``est._y = ...``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if _private(n)}


def _imported_names(tree: ast.AST) -> set[str]:
    """Every name an import binds in the module (a module or a name of another package)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
    return names


def _own_object(node: ast.expr, imported: set[str]) -> bool:
    """Whether ``node._x`` reads the module's own object (``self``, ``cls``, ``super()``)
    or an object of another package (a name that an import bound, such as ``np``): the
    private-name rule is about jacnet's own modules reading each other's internals."""
    while isinstance(node, ast.Attribute):
        node = node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id == "super"
    return isinstance(node, ast.Name) and (node.id in ("self", "cls") or node.id in imported)


def _by_place(offender: str) -> tuple[str, int, str]:
    path, line, what = re.match(r"(\S+?):(\d+) (.*)", offender).groups()  # type: ignore[union-attr]
    return path, int(line), what


def _module_of(node: ast.expr, names: dict[str, str], package: Package) -> str | None:
    """The jacnet module an expression names (``m``, ``jacnet.cli``), or None."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _module_of(node.value, names, package)
        if owner is not None and f"{owner}.{node.attr}" in package.modules:
            return f"{owner}.{node.attr}"
    return None


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(
                    body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
    return lines


def long_functions(package: Package, limit: int = MAX_LINES) -> list[str]:
    """Functions and methods with more than ``limit`` lines of code from the first statement
    after the docstring to the end, blank, comment and docstring lines not counted."""
    offenders = []
    for mod in package.modules.values():
        source = mod.lines
        docs = _docstring_lines(mod.tree)
        for qualname, node in _functions(mod.tree):
            doc = ast.get_docstring(node) or ""
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            if not body or ONE_PIECE in " ".join(doc.split()).lower():
                continue
            count = sum(1 for n in range(body[0].lineno, (node.end_lineno or 0) + 1)
                        if n not in docs and source[n - 1].strip()
                        and not source[n - 1].strip().startswith("#"))
            if count > limit:
                offenders.append(f"{mod.path}:{node.lineno} {qualname} ({count} lines of code)")
    return sorted(offenders, key=_by_place)


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[
        tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


CHECKS = {"import cycles": import_cycles, "private names": private_reaches,
          "long functions": long_functions}


# --------------------------------------------------------------------------- jacnet


@pytest.fixture(scope="module")
def jacnet_package() -> Package:
    return load_package(SRC, ROOT)


@pytest.mark.parametrize("check", CHECKS)
def test_architecture_rule_holds(jacnet_package, check):
    """Every offender is listed (``path:line what``), less the known ones of the old code."""
    found = CHECKS[check](jacnet_package)
    new = [offender for offender in found if key(offender) not in KNOWN_OFFENDERS]
    assert not new, f"{check}: {len(new)} offender(s):\n" + "\n".join(new)


def test_known_offenders_still_offend(jacnet_package):
    """KNOWN_OFFENDERS can only shrink: an entry that no longer offends must be removed."""
    found = {key(o) for check in CHECKS.values() for o in check(jacnet_package)}
    stale = sorted(KNOWN_OFFENDERS - found)
    assert not stale, "no longer offending, remove from KNOWN_OFFENDERS:\n" + "\n".join(stale)


# --------------------------------------------------------------------------- the checks fail


def _write(root: Path, files: dict[str, str]) -> Package:
    for name, text in files.items():
        path = root / "fake" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return load_package(root / "fake", root)


def _function(name: str, lines: int, doc: str = "") -> str:
    body = "".join(f"    x{i} = {i}\n" for i in range(lines))
    docstring = f'    """{doc}"""\n' if doc else ""
    return f"def {name}():\n{docstring}    # a comment\n\n{body}"


def test_architecture_checks_can_fail(tmp_path):
    """A synthetic package with one offence of each kind, and their harmless look-alikes."""
    package = _write(tmp_path, {
        "__init__.py": "__version__ = '0'\n",
        "a.py": "from . import b\n\ndef f():\n    from .c import g\n    return g\n",
        "b.py": "from . import __version__\nimport os\n",
        "c.py": ("import typing\nif typing.TYPE_CHECKING:\n    from .a import _hidden\n"
                 "from . import a as alias\nimport fake._secret\nfrom .sub import _x, y\n"
                 "from ._secret import z\n\ndef g(obj, mine):\n    return alias._y, alias.__doc__, "
                 "fake.sub._z, typing._alias, obj._w, mine._own, self._v\n"
                 "def h(o):\n    o._own = 1\n"),
        "_secret.py": "z = 1\n",
        "sub/__init__.py": "from .. import c\n_x = y = _z = 1\n",
        "long.py": (_function("too_long", 61) + _function("just_fits", 60)
                    + _function("whole", 70, "Seven steps that\n    must be one piece: ...")
                    + "class K:\n" + textwrap.indent(_function("method", 61), "    ")),
    })
    assert import_cycles(package) == [
        "fake/a.py:4 import cycle fake.a -> fake.c -> fake.a (fake/a.py:4, fake/c.py:4)",
        "fake/c.py:6 import cycle fake.c -> fake.sub -> fake.c"
        " (fake/c.py:6, fake/sub/__init__.py:1)",
    ]
    assert private_reaches(package) == [
        "fake/c.py:3 imports _hidden from fake.a",  # under TYPE_CHECKING: still a reach
        "fake/c.py:5 imports the private module fake._secret",
        "fake/c.py:6 imports _x from fake.sub",
        "fake/c.py:7 imports the private module fake._secret",
        "fake/c.py:10 reads _w of an object whose class is defined in another module",
        "fake/c.py:10 reads _y of fake.a",
        "fake/c.py:10 reads _z of fake.sub",
    ]
    assert long_functions(package) == [
        "fake/long.py:1 too_long (61 lines of code)",
        "fake/long.py:204 K.method (61 lines of code)",
    ]
    assert key(long_functions(package)[0]) == "fake/long.py too_long"


def test_import_cycle_through_a_package_init_is_found(tmp_path):
    """The package's ``__init__`` is a module like the others: importing it back from a
    module it imports closes a cycle (``a`` would read ``VALUE`` before it exists). An
    import under TYPE_CHECKING never runs and closes none."""
    package = _write(tmp_path, {
        "__init__.py": "from .a import f\nVALUE = 1\n",
        "a.py": "from . import VALUE\nfrom .b import g\nf = VALUE\n",
        "b.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                 "    from .a import f\ng = 1\n"),
    })
    assert import_cycles(package) == [
        "fake/__init__.py:1 import cycle fake -> fake.a -> fake (fake/__init__.py:1, fake/a.py:1)"]


def test_architecture_md_layer_table_lists_every_module_in_import_order(jacnet_package):
    """docs/architecture.md's layer table names every module of src/jacnet, and a module
    imports (at any depth, lazily or not) only modules of its own row or the rows above:
    the table is the package's layering, not a wish."""
    rows = [line for line in (ROOT / "docs" / "architecture.md").read_text(
        encoding="utf-8").splitlines() if line.startswith("| `")]
    row_of = {name: i for i, line in enumerate(rows)
              for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    modules = {name.split(".")[1] for name in jacnet_package.modules if name.count(".") >= 1}
    assert modules - set(row_of) == set(), "modules missing from the layer table"
    upward = sorted(
        f"{imp.module.path}:{imp.line} imports {imp.target}"
        for imp in imports(jacnet_package)
        if imp.module.name.count(".") >= 1 and imp.target.count(".") >= 1
        and row_of[imp.target.split(".")[1]] > row_of[imp.module.name.split(".")[1]])
    assert not upward, "imports of a lower row:\n" + "\n".join(upward)
