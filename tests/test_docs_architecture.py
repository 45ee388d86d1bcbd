"""docs/architecture.md stays true of the tree.

* every path it names exists (``trio_designer/models/_backlog.py``; a path written from inside
  the package, ``_core/_aimd.py``, is looked up under ``trio_designer/``; a bare file name in
  the picture, ``_dispatch.py``, must exist somewhere in ``trio_designer/``);
* its table of import levels places every top-level package and module of ``trio_designer``,
  and each one imports only lower levels (function-local imports included), as read by
  ``tests/test_imports.py``;
* ``_core/`` imports neither trio nor httpx, and nothing but ``__main__`` imports ``cli/``.

The checkers are plain functions, also run on edited copies of the page so that they are seen
to fail.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import test_imports as import_graph

from trio_designer._sink import DATASET_DIR, FAILURES_FILE, METADATA_FILE, TMP_DIR, TRACE_FILE

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "trio_designer"
DOC = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")

_TOP_FOLDERS = ("trio_designer/", "tests/", "property_tests/", "benches/", "docs/", "examples/")
_PATHLIKE = re.compile(r"^[\w.-]+(?:/[\w.-]*)*$")


def named_paths(text: str) -> set[str]:
    """Backticked tokens that look like paths: with a ``/`` or ending in ``.py``/``.md``."""
    tokens = set(re.findall(r"`([^`\s]+)`", text))
    return {t for t in tokens if _PATHLIKE.match(t) and ("/" in t or t.endswith((".py", ".md")))}


def pictured_files(text: str) -> set[str]:
    """File names drawn in the ```text pictures (``_dispatch.py``)."""
    pictures = re.findall(r"^```text\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    return {name for picture in pictures for name in re.findall(r"\b[\w]+\.py\b", picture)}


#: Names inside an output directory (``_sink/_layout.py``): not paths of the repository.
_OUTPUT_NAMES = {
    name.rstrip("/") for name in (DATASET_DIR, TMP_DIR, METADATA_FILE, FAILURES_FILE, TRACE_FILE)
}


def missing_paths(text: str) -> list[str]:
    """Paths of ``text`` that do not exist in the repository.

    A path from the repository root is looked up there; one written from inside the package
    (``_core/_aimd.py``) under ``trio_designer/``; a bare module name (``_layout.py``, in a
    package's own table, or drawn in a picture) anywhere in ``trio_designer/``.
    """
    missing = []
    names = sorted(named_paths(text) - {f"{n}/" for n in _OUTPUT_NAMES} - _OUTPUT_NAMES)
    for token in names:
        if token.startswith(_TOP_FOLDERS) or token in ("README.md", "Makefile"):
            found = (REPO / token).exists()
        elif "/" in token:
            found = (PACKAGE_DIR / token).exists()
        elif token.endswith(".md"):
            found = (REPO / "docs" / token).exists()
        else:
            found = any(PACKAGE_DIR.rglob(token))
        if not found:
            missing.append(token)
    for name in sorted(pictured_files(text)):
        if not any(PACKAGE_DIR.rglob(name)):
            missing.append(name)
    return missing


def levels(text: str) -> dict[str, int]:
    """Package -> level, from the table whose header starts ``| level | packages``."""
    found: dict[str, int] = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("| level | packages"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        match = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line) if in_table else None
        if match:
            for name in re.findall(r"`([\w]+)`", match[2]):
                found[name] = int(match[1])
    return found


def level_problems(graph: dict[str, set[str]], placed: dict[str, int]) -> list[str]:
    """Packages the table does not place, and imports that do not go to a lower level."""
    problems = [f"{name} has no level in the table" for name in sorted(set(graph) - set(placed))]
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if source in placed and target in placed and placed[target] >= placed[source]:
                problems.append(
                    f"{source} (level {placed[source]}) imports {target} (level {placed[target]})"
                )
    return problems


PACKAGES = import_graph.package_graph(import_graph.module_graph())


def test_every_named_path_exists() -> None:
    assert len(named_paths(DOC)) >= 30  # the page names the tree
    assert missing_paths(DOC) == []


def test_the_path_check_catches_a_stale_path() -> None:
    edited = DOC + "\nSee `_engine/_runtime.py`, `trio_designer/_graph.py` and `docs/x.md`.\n"
    edited += "```text\n  _handoff.py\n```\n"
    assert missing_paths(edited) == [
        "_engine/_runtime.py",
        "docs/x.md",
        "trio_designer/_graph.py",
        "_handoff.py",
    ]


def test_imports_go_down_the_levels_of_the_table() -> None:
    placed = levels(DOC)
    assert placed["_exceptions"] == 0
    assert placed["_engine"] > placed["models"] > placed["config"] > placed["_core"]
    assert level_problems(PACKAGES, placed) == []


def test_the_level_check_catches_an_upward_import_and_an_unplaced_package() -> None:
    placed = levels(DOC)
    graph = {name: set(targets) for name, targets in PACKAGES.items()}
    graph["_core"].add("_engine")
    graph["_newthing"] = set()
    assert (
        level_problems(graph, placed)
        == [
            f"_core (level {placed['_core']}) imports _engine (level {placed['_engine']})",
            "_newthing has no level in the table",
        ][::-1]
    )


def _external_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_neither_trio_nor_httpx() -> None:
    files = sorted((PACKAGE_DIR / "_core").glob("*.py"))
    assert len(files) >= 5
    offenders = {f.name: _external_imports(f) & {"trio", "httpx"} for f in files}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_nothing_but_main_imports_the_command_line() -> None:
    modules = import_graph.module_graph()
    importers = {
        source
        for source, targets in modules.items()
        if not source.startswith("trio_designer.cli")
        and any(t.startswith("trio_designer.cli") for t in targets)
    }
    assert importers == {"trio_designer.__main__"}
