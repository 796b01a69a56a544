"""The import arrows of docs/architecture.md, checked on the source of ``edged/``.

Every ``import`` and ``from … import`` of every module counts, those made only for type
checking and those made inside functions included: a circle through a type-only import
is still two modules that cannot be read apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edged"

FORBIDDEN = {
    ("media", "engine"),
    ("media", "daemon"),
    ("media", "server"),
    ("engine", "daemon"),
    ("engine", "server"),
    ("server", "engine"),
    ("server", "media"),
    ("server", "daemon"),
}
"""(from, to) layers: media knows nothing of rooms or the daemon, the engine nothing of the
daemon, the room server never touches media (docs/architecture.md)."""

LEAVES = {"edged.model", "edged.errors", "edged.backoff", "edged.tasks"}
"""Modules that import nothing of edged, so that every layer may use them."""

KNOWN_CIRCLES: list[set[str]] = []
"""Circles still to be taken apart: none is left. The test fails when a listed one is gone
too, so that the list only ever shrinks."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                targets |= {base} | {f"{base}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


GRAPH = import_graph()


def test_the_walk_sees_the_imports() -> None:
    # The walk itself: a known arrow of each kind (plain, relative, parent package).
    assert "edged.engine.room" in GRAPH["edged.engine.engine"]
    assert "edged.media.h264" in GRAPH["edged.media.sinks.snapshot"]
    assert "edged.errors" in GRAPH["edged.media.sinks.snapshot"]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_forbidden_arrow(module: str) -> None:
    wrong = sorted(t for t in GRAPH[module] if (layer(module), layer(t)) in FORBIDDEN)
    assert wrong == [], f"{module} must not import {wrong}"


def test_leaves_import_nothing_of_edged() -> None:
    assert {leaf: GRAPH[leaf] for leaf in LEAVES} == {leaf: set() for leaf in LEAVES}


def test_no_import_circle_but_the_known_ones() -> None:
    assert sorted(map(sorted, circles(GRAPH))) == sorted(map(sorted, KNOWN_CIRCLES))


def test_a_circle_is_found() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
