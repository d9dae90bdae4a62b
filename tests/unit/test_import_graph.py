"""atomml's own import graph has no cycles.

Every ``import`` of an atomml module counts, at module level and inside functions alike (a
function-level import only postpones a cycle to the first call), and so do package
``__init__`` re-exports. Imports under ``if TYPE_CHECKING:`` never run and do not count.
Importing ``atomml.a.b`` from outside ``atomml.a`` also runs ``atomml/a/__init__.py``: an edge
to that package too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import atomml

PACKAGE_ROOT = Path(atomml.__file__).parent


def _module_names(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Dotted name -> file of every module in the package's source tree."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: all but those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node):
            children = node.orelse
        stack.extend(children)
    return found


def _targets(name: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The atomml modules that one import statement in module ``name`` imports."""

    def known(dotted: str) -> str | None:  # the module itself, or the package it is an attribute of
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found: set[str | None] = set()
    if isinstance(node, ast.Import):
        found = {known(alias.name) for alias in node.names}
    else:
        if node.level:
            package = name if is_package else name.rpartition(".")[0]
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - (node.level - 1)])
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
        for alias in node.names:
            found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else known(base))
    targets = set()
    for target in found - {None}:
        assert target is not None
        # the packages that importing ``target`` initialises, unless already being imported
        # because they contain ``name``
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            dotted = ".".join(parts[:i])
            if dotted != name and not name.startswith(dotted + ".") and dotted in modules:
                targets.add(dotted)
    return targets


def import_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """Module -> the atomml modules it imports (anywhere in its code)."""
    modules = _module_names(root)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges: set[str] = set()
        for node in _imports(tree):
            edges |= _targets(name, path.name == "__init__.py", node, modules)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) through each strongly
    connected group of modules (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(group)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected group (breadth-first)."""
    start = min(group)
    previous = {start: start}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in the strongly connected group {group}")


def test_the_graph_sees_relative_function_level_and_reexport_imports():
    graph = import_graph()
    assert "atomml.models.tensornet" in graph["atomml.models"]  # __init__ re-export
    assert "atomml.potential" in graph["atomml.models"]  # ``from ..potential import ...``
    assert "atomml.errors" in graph["atomml"]  # atomml's own __init__ (its public names load lazily)
    assert "atomml.keys" in graph["atomml.interfaces.ase"]  # ``from .. import keys``
    assert "atomml.interfaces.openmm" in graph["atomml.interfaces.openmm_plugin"]  # in a function
    assert "atomml" not in graph["atomml.interfaces.ase"]  # its own package is already importing


def test_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c", "a"], ["e", "e2", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles in atomml (break each, e.g. move the shared part to a module both import):\n" + "\n".join(
        " -> ".join(cycle) for cycle in found
    )
