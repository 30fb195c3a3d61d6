"""No import circles between the modules of `bot` and `handlers`.

A circle means neither module can be understood, tested or moved without the other, and an
import inside a function is only a circle put off until the call (grimp counts it, and so do
we). Imports under `if TYPE_CHECKING:` are left out: they never run, and they are how a module
names another's type in its annotations.

The graph is grimp's (the engine of import-linter). KNOWN_CYCLE_EDGES are circles that other
work is breaking; each names who owns it, and the last test fails once one is gone, so that
the exception goes with it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable

import grimp
import pytest

pytestmark = pytest.mark.timeout(60)

Edge = tuple[str, str]

#: Imports left out of the graph, each closing a circle that is being broken elsewhere.
KNOWN_CYCLE_EDGES: frozenset[Edge] = frozenset(
    {
        # The verb grammar's UsageError reads the whole grammar from the package that imports
        # every verb (bot/domain/verbs, owned by the verbs work).
        ("bot.domain.verbs.grammar", "bot.domain.verbs"),
    }
)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("bot", "handlers", exclude_type_checking_imports=True)


def imports_of(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Each module's direct imports of our modules, without the known circles' edges."""
    return {
        module: {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if (module, imported) not in KNOWN_CYCLE_EDGES
        }
        for module in graph.modules
    }


def strongly_connected(imports: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that each reach one another (Tarjan's algorithm, without
    recursion): every group of more than one module holds a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(imports):
        if root in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(root, iter(sorted(imports[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, pending = work[-1]
            for imported in pending:
                if imported not in index:
                    index[imported] = low[imported] = len(index)
                    stack.append(imported)
                    on_stack.add(imported)
                    work.append((imported, iter(sorted(imports[imported]))))
                    break
                if imported in on_stack:
                    low[module] = min(low[module], index[imported])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == module:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return groups


def shortest_circle(imports: dict[str, set[str]], start: str) -> list[str]:
    """The shortest path of imports from `start` back to itself (breadth first)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        for imported in sorted(imports[module]):
            if imported == start:
                path = [start, module]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return path[::-1]
            if imported not in came_from:
                came_from[imported] = module
                queue.append(imported)
    return []


def described(graph: grimp.ImportGraph, circle: list[str]) -> str:
    """`a -> b (a l.12) -> a (b l.40)`: each import with the line it is written on."""
    parts = [circle[0]]
    for importer, imported in itertools.pairwise(circle):
        details = graph.get_import_details(importer=importer, imported=imported)
        lines = ", ".join(f"l.{d['line_number']}" for d in details)
        parts.append(f"{imported} ({importer} {lines})")
    return " -> ".join(parts)


def test_no_module_imports_itself_back(graph: grimp.ImportGraph) -> None:
    imports = imports_of(graph)
    circles = [
        described(graph, shortest_circle(imports, group[0]))
        for group in strongly_connected(imports)
    ]
    assert not circles, "import circles (break each, or see KNOWN_CYCLE_EDGES):\n" + "\n".join(
        circles
    )


def test_the_circle_finder_finds_a_circle() -> None:
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(imports) == [["a", "b", "c"]]
    assert shortest_circle(imports, "a") == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_known_exceptions_are_still_needed(graph: grimp.ImportGraph) -> None:
    gone = sorted(
        edge
        for edge in KNOWN_CYCLE_EDGES
        if edge[0] not in graph.modules
        or edge[1] not in graph.find_modules_directly_imported_by(edge[0])
    )
    assert not gone, f"these imports are gone: remove them from KNOWN_CYCLE_EDGES: {gone}"
