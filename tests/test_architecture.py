"""The layering holds and no module imports in a circle, lazy (inside a function) or not.

The contracts themselves live in pyproject.toml ([tool.importlinter]) and run as `lint-imports`
in scripts/test; this test adds what those contracts do not say: not one module-level circle
anywhere in the package, counting imports inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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
    return found


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_in_a_circle() -> None:
    graph = grimp.build_graph("mamori", include_external_packages=False)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(edges) == []


def test_the_model_imports_nothing_of_mamori() -> None:
    graph = grimp.build_graph("mamori", include_external_packages=False)
    model = {m for m in graph.modules if m == "mamori.model" or m.startswith("mamori.model.")}
    outside = {
        imported
        for m in model
        for imported in graph.find_modules_directly_imported_by(m)
        if imported not in model
    }
    assert outside == set()


def test_the_import_contracts_hold() -> None:
    """pyproject.toml's contracts, as scripts/test runs them (here so pytest alone sees it)."""
    done = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert "Contracts:" in done.stdout, done.stderr[-2000:]
    assert done.returncode == 0, done.stdout[-3000:]
