"""Data flows one way: the import graph of ``trio_designer`` has no cycle, and keeps its layers.

The graph is read from the source with :mod:`ast`: every ``import`` that can run counts, at
module level or inside a function (a function-local import hides a cycle, it does not remove
it); imports under ``if TYPE_CHECKING:`` never run and are left out. ``from package import
name`` points at the submodule ``package.name`` when there is one, else at ``package`` (its
``__init__``); importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, so those
count too.

Two views of the same edges:

* **modules**: one node per module of the tree;
* **packages**: each module folded into its top-level part of the tree
  (``trio_designer._sink._parquet`` -> ``_sink``, ``trio_designer._designer`` ->
  ``_designer``); ``trio_designer/__init__`` (the public face, which imports everything) is
  left out.

Run ``python tests/test_imports.py [path/to/trio_designer]`` to print the cycles of both views
and the layering problems (exit status 1 if any).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "trio_designer"

_CORE_MAY_IMPORT = frozenset({"attrs"})
"""Third-party packages ``_core`` may import (besides the standard library): pure decisions
only — never trio, httpx or anything that does I/O."""


# -- reading the graph ---------------------------------------------------------------------------


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of the tree."""
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
    """The modules of the tree that ``module`` imports when it (or any of its functions)
    runs."""
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
    found -= enclosing | {module.split(".")[0]}
    return {m for m in found if m in known and m != module}


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = module_files(root)
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the packages outside the tree that ``path`` imports at run time."""
    names: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif not node.level and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != ROOT.name}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in modules.items():
        if "." not in module:
            continue  # the root package: the public face imports everything
        source = package_of(module)
        graph.setdefault(source, set())
        for target in targets:
            if "." in target and package_of(target) != source:
                graph[source].add(package_of(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
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


# -- the layering rules ------------------------------------------------------------------------


def layering_problems(root: Path = ROOT) -> list[str]:
    """Every import that breaks a layering rule, as a sentence."""
    name = root.name
    modules = module_graph(root)
    files = module_files(root)
    problems = []
    core, cli = f"{name}._core", f"{name}.cli"
    for module, targets in sorted(modules.items()):
        if module == core or module.startswith(core + "."):
            above = sorted(
                t for t in targets if not t.startswith(core) and t != f"{name}._exceptions"
            )
            problems += [f"{module} (in _core) imports {t}, above it" for t in above]
            outside = sorted(third_party_imports(files[module]) - _CORE_MAY_IMPORT)
            problems += [f"{module} (in _core) imports {t}; _core is pure" for t in outside]
        if not (module == cli or module.startswith(cli + ".")) and module != f"{name}.__main__":
            inward = sorted(t for t in targets if t == cli or t.startswith(cli + "."))
            problems += [f"{module} imports {t}: nothing imports the CLI inward" for t in inward]
    for module, targets in sorted(modules.items()):
        if module.startswith(f"{name}.config"):
            allowed = tuple(f"{name}.{p}" for p in ("config", "_core", "_exceptions", "_public"))
            problems += [
                f"{module} (in config, the bottom layer) imports {t}"
                for t in sorted(targets)
                if not t.startswith(allowed)
            ]
    return problems


# -- the tests ---------------------------------------------------------------------------------


def test_no_module_imports_another_in_a_cycle() -> None:
    assert cycles(module_graph()) == []


def test_no_subpackage_imports_another_in_a_cycle() -> None:
    """Folded to ``config``, ``_plan``, ``_engine``, ``_core``, ``models``, ``_sink``, ... the
    edges still go one way."""
    graph = package_graph(module_graph())
    assert {"config", "_plan", "_engine", "_core", "models", "_sink", "_observe"} <= set(graph)
    assert cycles(graph) == []


def test_the_layers_hold() -> None:
    """``_core`` imports neither trio nor httpx nor anything above it (only the exception
    tree); nothing outside ``cli/`` imports it (``__main__`` runs it); ``config/`` uses only
    ``_core``, ``_exceptions`` and ``_public``."""
    assert layering_problems() == []


def test_the_graph_sees_function_local_imports_and_skips_type_checking(tmp_path: Path) -> None:
    """The reader is not blind, and not fooled: on a small tree, a function-local import is
    an edge (and closes a cycle), an ``if TYPE_CHECKING:`` import is not, ``from . import x``
    names the submodule, and importing a submodule also runs its package."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import c\n"
        "def f():\n    from .b import g\n"
    )
    (package / "b.py").write_text("from . import a\nfrom .sub.d import x\ng = 1\n")
    (package / "c.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "d.py").write_text("import trio\nx = 1\n")
    graph = module_graph(package)
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.a", "pkg.sub", "pkg.sub.d"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
    assert cycles(package_graph(graph)) == [["a", "b"]]
    assert third_party_imports(package / "sub" / "d.py") == {"trio"}


def test_a_core_module_importing_trio_is_a_layering_problem(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "_core").mkdir(parents=True)
    (package / "cli").mkdir()
    for init in (package, package / "_core", package / "cli"):
        (init / "__init__.py").write_text("")
    (package / "_core" / "_x.py").write_text("def f():\n    import trio\n    from .. import cli\n")
    assert layering_problems(package) == [
        "pkg._core._x (in _core) imports pkg.cli, above it",
        "pkg._core._x (in _core) imports trio; _core is pure",
        "pkg._core._x imports pkg.cli: nothing imports the CLI inward",
    ]


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else ROOT
    modules = module_graph(root)
    found = {"module": cycles(modules), "package": cycles(package_graph(modules))}
    for title, components in found.items():
        print(f"{title} cycles: {len(components)}")
        for component in components:
            print("  " + " <-> ".join(component))
    problems = layering_problems(root)
    print(f"layering problems: {len(problems)}")
    for problem in problems:
        print("  " + problem)
    return 1 if any(found.values()) or problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
