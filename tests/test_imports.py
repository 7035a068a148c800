"""The import graph of our packages: no cycle, and ``pipelines/`` at most 5 levels deep.

Every import counts, the lazy ones inside functions too (a cycle through a lazy import still means that neither
module can be read without the other). Read from the source with ``ast``: nothing is imported."""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("im_data", "pipelines", "trl_plugin")
MAX_PIPELINES_DEPTH = 5


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that ``name`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    found: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).rstrip(".") \
                if node.level else node.module
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in modules and m != name}


@lru_cache(maxsize=1)
def graph() -> dict[str, frozenset[str]]:
    modules = _modules()
    return {name: frozenset(_imports(name, path, modules)) for name, path in modules.items()}


def find_cycle(g: dict[str, frozenset[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for dep in sorted(g[m]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_graph_sees_lazy_and_relative_imports():
    g = graph()
    assert "pipelines.read_beam" in g["pipelines.build"]          # from .read_beam import ReadExamples
    assert "pipelines.build" in g["pipelines.prepare"]            # a lazy import inside execute()
    assert "im_data.storage" in g["im_data.dataset"]              # from . import storage


def test_find_cycle_finds_one():
    assert find_cycle({"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"})}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": frozenset({"b"}), "b": frozenset()}) is None


def test_no_import_cycle_among_our_modules():
    assert find_cycle(graph()) is None


@pytest.mark.parametrize("package, limit", [("pipelines", MAX_PIPELINES_DEPTH)])
def test_import_depth(package, limit):
    g = graph()

    @lru_cache(maxsize=None)
    def chain(m: str) -> tuple[str, ...]:
        deps = [d for d in g[m] if d.startswith(f"{package}.")]
        return (m,) + max((chain(d) for d in deps), key=len, default=())

    longest = max((chain(m) for m in g if m.startswith(f"{package}.")), key=len)
    assert len(longest) <= limit, " -> ".join(longest)
