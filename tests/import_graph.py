"""The import graph of ``trio_designer``, and the cycles in it (a helper, not a test yet).

Every ``import`` counts wherever it is — at module level or inside a function (a function-local
import hides a cycle, it does not remove it) — except those under ``if TYPE_CHECKING:``, which
never run. ``from package import name`` points at the submodule ``package.name`` when there is
one, else at ``package`` (its ``__init__``).

Two views:

* **modules**: an edge per import between two modules of the tree;
* **packages**: the same edges with each module folded into its top-level part of the tree
  (``trio_designer._sink._parquet`` → ``_sink``, ``trio_designer._designer`` → ``_designer``);
  ``trio_designer/__init__`` (the public face, which imports everything) is left out.

Run ``python tests/import_graph.py [path/to/trio_designer]`` to list the cycles of both views
(exit status 1 if any).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "trio_designer"
PACKAGE = "trio_designer"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name → file, for every ``.py`` file of the tree."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (skips ``if TYPE_CHECKING:`` bodies)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the tree that ``module`` imports when it (or any of its functions) runs."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = module.split(".")
            if not is_package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            found.add(submodule if submodule in known else target)
    # Importing ``a.b.c`` first runs ``a/__init__`` and ``a/b/__init__``: those count too,
    # except the importer's own enclosing packages (already running) and the root package.
    enclosing = {module.rsplit(".", n)[0] for n in range(1, module.count(".") + 1)}
    for target in list(found):
        parts = target.split(".")
        found.update(".".join(parts[:n]) for n in range(2, len(parts)))
    found -= enclosing | {PACKAGE}
    return {m for m in found if m in known and m != module}


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = module_files(root)
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in modules.items():
        if module == PACKAGE:
            continue
        source = package_of(module)
        graph.setdefault(source, set())
        for target in targets:
            if target != PACKAGE and package_of(target) != source:
                graph[source].add(package_of(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def main(argv: list[str]) -> int:
    modules = module_graph(Path(argv[0]) if argv else ROOT)
    module_cycles = cycles(modules)
    package_cycles = cycles(package_graph(modules))
    for title, found in (("module", module_cycles), ("package", package_cycles)):
        print(f"{title} cycles: {len(found)}")
        for component in found:
            print("  " + " <-> ".join(component))
    return 1 if module_cycles or package_cycles else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
