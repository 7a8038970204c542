"""The import graph of a package tree, read with `ast` (nothing is imported), and its
cycles (Tarjan's strongly connected components).

An edge A -> B means module A's code imports module B when it runs: `import B`,
`from B import name`, `from B import submodule` (an edge to the submodule) and relative
imports, wherever they stand (a function-level import runs too, later). Imports under
`if TYPE_CHECKING:` never run and are left out. The implicit import of the parent
packages (`import a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`) is not an edge:
the packages' `__init__` files import nothing of their own, and counting them would tie
every module to its package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

Graph = Mapping[str, Iterable[str]]


def module_name(path: Path, root: Path) -> str:
    """`services/gateway/app.py` -> `services.gateway.app`; a package's `__init__.py` is
    the package itself. `root` is the folder the top-level package lies in."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    """`TYPE_CHECKING` or `typing.TYPE_CHECKING` (or any `x.TYPE_CHECKING`)."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of `tree` except those in the body of `if TYPE_CHECKING:`
    (its `else:` branch runs, so it is kept)."""
    if isinstance(tree, ast.Import | ast.ImportFrom):
        yield tree
        return
    if isinstance(tree, ast.If) and _is_type_checking(tree.test):
        children: list[ast.AST] = [tree.test, *tree.orelse]
    else:
        children = list(ast.iter_child_nodes(tree))
    for child in children:
        yield from _runtime_imports(child)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from ... import` names (`from ..x import y` in a.b.c ->
    `a.x`)."""
    if node.level == 0:
        return node.module or ""
    # The package a relative import starts from: the module's own if it is a package's
    # __init__, else the one it lies in; each further dot goes one package up.
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(source: str, module: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """The modules of `known` that `source` (the code of `module`) imports at run time."""
    known = set(known)
    targets: set[str] = set()
    for node in _runtime_imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            base = _absolute(node, module, is_package)
            # `from pkg import sub` imports the submodule; `from mod import name` the module.
            candidates = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for name in candidates:
            # `import a.b.c` where only a.b is ours (c an attribute): the deepest known one.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """The import graph of every module under `package_dir` (edges only between them)."""
    root = package_dir.parent
    files = {module_name(path, root): path for path in sorted(package_dir.rglob("*.py"))}
    return {
        module: imported_modules(
            path.read_text(encoding="utf-8"), module, path.name == "__init__.py", files
        )
        for module, path in files.items()
    }


def find_cycles(graph: Graph) -> list[list[str]]:
    """Every import circle of `graph`: its strongly connected components of more than one
    module, and modules that import themselves; each sorted, the list sorted too."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    nodes = set(graph) | {target for targets in graph.values() for target in targets}

    def connect(node: str) -> None:
        # Recursive Tarjan: the graphs here are a few hundred modules, far from the limit.
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                lowlink[node] = min(lowlink[node], lowlink[target])
            elif target in on_stack:
                lowlink[node] = min(lowlink[node], index[target])
        if lowlink[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            connect(node)
    return sorted(cycles)


def describe(cycles: list[list[str]]) -> str:
    """One line per cycle: its modules joined by ' <-> '."""
    return "\n".join(" <-> ".join(cycle) for cycle in cycles)
