"""Data flows one way: no import cycles, function-local imports included.

The graph is read from the source with :mod:`ast` (every ``import`` statement, at module level
or inside a function; ``if TYPE_CHECKING:`` blocks are left out because they never run).
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

PACKAGE = pathlib.Path(__file__).parents[1] / "trio_designer"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (i for child in node.orelse for i in _imports_in(child))
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    """Module -> the trio_designer modules it imports (resolved to modules, not names)."""
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module or ""
            stem = f"{base}.{module}".strip(".") if node.level else module
            for alias in node.names:
                candidate = f"{stem}.{alias.name}"
                targets.add(candidate if candidate in files else stem)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]], within: str) -> list[list[str]]:
    """Every strongly connected group of more than one module under ``within`` (Tarjan)."""
    nodes = sorted(n for n in graph if n == within or n.startswith(within + "."))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node] & set(nodes)):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in nodes:
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_function_local_imports() -> None:
    """The reader is not blind: a function-local import shows up as an edge."""
    graph = import_graph()
    assert "trio_designer._sink" in graph["trio_designer._designer"]  # imported inside create()


def test_config_package_has_no_import_cycle() -> None:
    """The converter knows the parts; the pipeline imports the converter, never the reverse."""
    graph = import_graph()
    assert cycles(graph, "trio_designer.config") == []
    assert "trio_designer.config._pipeline" not in graph["trio_designer.config._converter"]


def test_config_imports_nothing_above_it() -> None:
    """``config/`` is the bottom layer: it may use only ``_core``, ``_exceptions`` and the
    ``_public`` helper (which imports nothing of ours)."""
    graph = import_graph()
    assert graph["trio_designer._public"] == set()
    allowed = (
        "trio_designer.config",
        "trio_designer._core",
        "trio_designer._exceptions",
        "trio_designer._public",
    )
    outside = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith("trio_designer.config")
        for target in targets
        if not target.startswith(allowed)
    }
    assert outside == set()
