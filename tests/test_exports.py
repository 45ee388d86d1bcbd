"""The public face is pinned (style.md §9 rule 1) against the API reference, docs/api.md.

For every public module: ``__all__`` (kept sorted by ruff's RUF022) equals the names its
section of docs/api.md lists, and is exactly the module's public (non-underscore, non-module)
attributes; no object is exported twice, in one module or across modules, except the config
classes that ``trio_designer`` re-exports from ``trio_designer.config`` under the same names.
"""

from __future__ import annotations
import __future__

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

import trio_designer

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"

PUBLIC_MODULES = (
    "trio_designer",
    "trio_designer.aio",
    "trio_designer.config",
    "trio_designer.generators",
    "trio_designer.models",
    "trio_designer.simulator",
    "trio_designer.plugins",
)
#: Modules whose exported classes and functions present themselves under the public module
#: (``__module__`` rewritten by ``trio_designer._public.present_as``).
PRESENTED = (
    "trio_designer",
    "trio_designer.aio",
    "trio_designer.config",
    "trio_designer.generators",
    "trio_designer.models",
    "trio_designer.plugins",
)
#: Sub-modules that may show up as attributes of the package without being part of its API:
#: the command line (imported by the console script and its tests).
NOT_API = {"cli"}

_SECTION = re.compile(r"^## `(?P<module>trio_designer[\w.]*)`\s*$")
_ROW = re.compile(r"^\|\s*`(?P<name>\w+)`\s*\|")


def documented() -> dict[str, list[str]]:
    """Module -> the names its section of docs/api.md lists in table rows, in order."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in API_DOC.read_text(encoding="utf-8").splitlines():
        heading = _SECTION.match(line)
        if heading:
            current = sections.setdefault(heading["module"], [])
        elif line.startswith("## "):
            current = None
        elif current is not None and (row := _ROW.match(line)):
            current.append(row["name"])
    return sections


def public_attributes(module: ModuleType) -> set[str]:
    """Names a reader of ``dir(module)`` would take for API: not private, not a sub-module,
    not the ``annotations`` feature of ``from __future__ import annotations``."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and not isinstance(value, __future__._Feature)
    }


def test_docs_have_one_section_per_public_module() -> None:
    assert list(documented()) == list(PUBLIC_MODULES)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_equals_the_documented_names(name: str) -> None:
    module = importlib.import_module(name)
    listed = documented()[name]
    assert len(listed) == len(set(listed)), f"docs/api.md lists a name twice under {name}"
    assert set(module.__all__) == set(listed)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_every_public_attribute(name: str) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == public_attributes(module)


def test_the_package_exposes_exactly_the_public_submodules() -> None:
    submodules = {
        name
        for name, value in vars(trio_designer).items()
        if isinstance(value, ModuleType) and not name.startswith("_")
    }
    public = {name.removeprefix("trio_designer.") for name in PUBLIC_MODULES[1:]}
    assert public <= submodules
    assert submodules - public <= NOT_API


def test_each_object_has_one_public_name() -> None:
    names: dict[int, set[str]] = {}
    modules: dict[int, set[str]] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, str | int | float):  # constants compare by value, not identity
                continue
            names.setdefault(id(obj), set()).add(name)
            modules.setdefault(id(obj), set()).add(module_name)
    aliased = {frozenset(n) for n in names.values() if len(n) > 1}
    assert aliased == set(), "one object exported under several names"
    shared = {next(iter(names[key])) for key, where in modules.items() if len(where) > 1}
    config_classes = set(trio_designer.config.__all__) & set(trio_designer.__all__)
    assert shared == config_classes
    for key in (k for k, where in modules.items() if len(where) > 1):
        assert modules[key] == {"trio_designer", "trio_designer.config"}


@pytest.mark.parametrize("name", PRESENTED)
def test_exports_present_themselves_under_a_public_module(name: str) -> None:
    """``repr`` and tracebacks show an importable name (``trio_designer.ConfigError``)."""
    module = importlib.import_module(name)
    for export in module.__all__:
        obj = getattr(module, export)
        own = getattr(obj, "__module__", None)
        if isinstance(obj, type) or (callable(obj) and own.startswith("trio_designer")):
            assert own in PUBLIC_MODULES, f"{name}.{export} presents itself as {own}"
            assert getattr(importlib.import_module(own), export) is obj


def test_exceptions_share_one_root() -> None:
    for name in trio_designer.__all__:
        obj = getattr(trio_designer, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, trio_designer.TrioDesignerError), name


def test_every_exception_of_the_tree_is_exported() -> None:
    from trio_designer import _exceptions

    tree = {
        name
        for name, obj in vars(_exceptions).items()
        if isinstance(obj, type) and issubclass(obj, trio_designer.TrioDesignerError)
    }
    assert tree <= set(trio_designer.__all__)
