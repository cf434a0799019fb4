"""The import graph of `inspection`, read from the source (every import, also those inside functions):
no cycles, the runtime never reaches the offline tools, and nothing in the runtime imports `synthetic`."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.sources import parse_python

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "inspection"
# The offline layer and the entry point over both layers; everything else in `inspection` is the runtime.
OFFLINE = ("inspection.tools", "inspection.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts}


def imports_of(name: str, path: Path, known: dict[str, Path] | None = None) -> set[str]:
    """Absolute names a module imports anywhere in it (relative imports resolved; `from a import b` gives a.b
    too, and not `a` itself when every b is a module of `known`: `from . import queries` needs the submodule only)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(parse_python(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            names = {f"{module}.{alias.name}" for alias in node.names}
            found.update(names)
            if known is None or not names <= known.keys():
                found.add(module)
    return found


def graph() -> dict[str, set[str]]:
    """module -> the `inspection` modules it imports (a package counts as its __init__)."""
    known = modules()
    return {name: {n for n in imports_of(name, path, known) if n in known and n != name} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def is_offline(name: str) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in OFFLINE)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_inspection() -> None:
    assert cycles(graph()) == []


def test_the_runtime_never_imports_the_offline_tools_or_the_cli() -> None:
    edges = graph()
    assert "inspection.tools" in edges, "the offline layer inspection/tools/ is missing"
    wrong = {name: sorted(n for n in targets if is_offline(n)) for name, targets in edges.items() if not is_offline(name)}
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_the_runtime_never_imports_synthetic() -> None:
    """`synthetic` is test and demo data: only the offline tools and the CLI's simulate/eval commands use it."""
    known = modules()
    wrong = {
        name: sorted(n for n in imports_of(name, path) if n.split(".")[0] == "synthetic")
        for name, path in known.items()
        if not is_offline(name)
    }
    assert {name: targets for name, targets in wrong.items() if targets} == {}
