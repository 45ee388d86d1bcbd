"""Where a custom column's code comes from: resolving ``function: module:name`` safely.

Configs travel (shared YAML, copied from issues, run from shared folders), so a config may
only name code the *user* put in place. The rules, each checked here:

* **The form.** ``module.path:name``: dotted identifiers before the colon, exactly one
  identifier after it. No attribute chains (``os:environ.__or__``), no dunder names
  (``__call__``), nothing from ``builtins``, the standard library or ``trio_designer`` itself.
  Checked when the config is built (:func:`function_path_problem`), before anything is
  imported.
* **The places.** The module is looked up, in order, in the directories the user named
  (``python_path:`` in the config, relative to the config file; ``--python-path`` on the
  command line) and in the installed environment (``sys.path`` and the import hooks of
  installed packages), **never** in the current directory or the config's directory
  implicitly: the ``''``/cwd entry that ``python -m`` puts first on ``sys.path`` is skipped
  (:func:`implicit_entries`). A module that is already imported is used as it is (importing
  it executes nothing new).
* **Defined there.** The name must be a plain Python function (``def`` / ``async def``) or a
  class, *defined in* that module (its ``__module__`` is the module): a name a module merely
  imported (``mymod:join`` after ``from os.path import join``) is refused.

:func:`locate_module` finds where a module would be loaded from without executing anything
(``validate`` prints it); :func:`resolve_function` imports it and checks the rules; both raise
:class:`~trio_designer.ConfigError` with a remedy. :func:`code_digest` identifies a function's
code for the resume fingerprint.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import marshal
import os
import re
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from .._core._suggest import did_you_mean
from .._exceptions import ConfigError

__all__ = [
    "CodeSearch",
    "ModuleLocation",
    "code_digest",
    "function_path_problem",
    "implicit_entries",
    "locate_module",
    "python_path_dirs",
    "resolve_function",
]

_IDENTIFIER: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH_FORM: Final = re.compile(rf"^(?P<module>{_IDENTIFIER}(?:\.{_IDENTIFIER})*):(?P<name>.*)$")
_NAME_FORM: Final = re.compile(rf"^{_IDENTIFIER}$")

#: Top-level modules a config may never name: the interpreter's own and ours.
_FORBIDDEN_TOP: Final = frozenset({"builtins", "trio_designer", "__main__"})


def _is_dunder(name: str) -> bool:
    return name.startswith("__")


def function_path_problem(path: str) -> str | None:
    """What is wrong with the form of an import path ``module:name``, or ``None``.

    Pure: imports nothing. The message says what to write instead.
    """
    match = _PATH_FORM.fullmatch(path)
    if match is None:
        return (
            "'function' must be an import path 'package.module:function' (a module, a colon, "
            "one name): " + _shown(path)
        )
    module, name = match.group("module"), match.group("name")
    parts = module.split(".")
    if any(_is_dunder(part) for part in parts):
        return f"'function' may not name a dunder module: {_shown(path)}"
    if "." in name or not name:
        return (
            f"'function' must name one function after the colon, not an attribute chain: "
            f"{_shown(path)}; define a function in your own module and name it as "
            "'module:function'"
        )
    if not _NAME_FORM.fullmatch(name):
        return f"'function' must name a Python identifier after the colon: {_shown(path)}"
    if _is_dunder(name):
        return f"'function' may not name a dunder attribute: {_shown(path)}"
    top = parts[0]
    if top in _FORBIDDEN_TOP or top in sys.stdlib_module_names:
        owner = "trio_designer itself" if top == "trio_designer" else "the standard library"
        return (
            f"'function' names {owner} ({top!r}): {_shown(path)}; a custom column may only "
            "call code of your own, from an installed package or a python_path directory"
        )
    return None


def _shown(text: str, limit: int = 80) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


# -- where modules are looked for --------------------------------------------------------------


@attrs.frozen
class CodeSearch:
    """Where a pipeline's custom code may come from.

    Attributes:
      python_path: directories named by the user (the config's ``python_path``, resolved
        against the config file's directory, then ``--python-path``), searched first.
      config_dir: the directory of the config file, when it was read from one; only used to
        say "a file of that name lies beside the config" in an error, never searched.
      config_name: how messages name the config file.
    """

    python_path: tuple[Path, ...] = ()
    config_dir: Path | None = None
    config_name: str | None = None


@attrs.frozen
class ModuleLocation:
    """Where a module is (or would be) loaded from.

    Attributes:
      module: the module's dotted name.
      file: its file (``None`` for namespace packages and modules without one).
      source: ``"python_path <dir>"``, ``"installed environment"`` or ``"already imported"``.
    """

    module: str
    file: str | None
    source: str

    def describe(self) -> str:
        """``mymod from /abs/mymod.py (python_path /abs)``."""
        where = f" from {self.file}" if self.file else ""
        return f"{self.module}{where} ({self.source})"


def implicit_entries() -> frozenset[str]:
    """The ``sys.path`` entries that stand for the current directory: ``''``, ``'.'``, and the
    working directory itself (where ``python -m`` puts it). Never searched for custom code."""
    entries = {"", "."}
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the working directory was removed
        return frozenset(entries)
    entries.update(entry for entry in sys.path if _real(entry) == cwd)
    return frozenset(entries)


def _real(entry: str) -> str:
    try:
        return os.path.realpath(entry or ".")
    except (OSError, ValueError):
        return entry


def _environment_path(search: CodeSearch) -> list[str]:
    """``sys.path`` without the implicit current-directory entries (python_path dirs kept)."""
    implicit = implicit_entries() - {str(d) for d in search.python_path}
    return [entry for entry in sys.path if isinstance(entry, str) and entry not in implicit]


def _under_implicit(spec: Any, search: CodeSearch) -> bool:
    """Whether a spec found by an import hook lies directly in the current directory (which is
    only searched when it is a python_path directory or a deliberate ``sys.path`` entry)."""
    origin = getattr(spec, "origin", None)
    if not origin or not getattr(spec, "has_location", False):
        return False
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:
        return False
    folder = os.path.dirname(os.path.realpath(origin))
    if spec.submodule_search_locations is not None:  # a package: its __init__ is one deeper
        folder = os.path.dirname(folder)
    if folder != cwd:
        return False
    allowed = {os.path.realpath(d) for d in search.python_path}
    allowed.update(_real(entry) for entry in _environment_path(search))
    return folder not in allowed


def _find_top_level(top: str, search: CodeSearch) -> tuple[Any, str] | None:
    """The spec of top-level module ``top`` from the allowed places, and where it was found.

    Nothing is executed: finders only look at the file system.
    """
    for folder in search.python_path:
        spec = importlib.machinery.PathFinder.find_spec(top, [str(folder)])
        if spec is not None:
            return spec, f"python_path {folder}"
    environment = _environment_path(search)
    for finder in sys.meta_path:
        try:
            if finder is importlib.machinery.PathFinder:
                spec = importlib.machinery.PathFinder.find_spec(top, environment)
            else:
                find_spec = getattr(finder, "find_spec", None)
                spec = find_spec(top, None) if callable(find_spec) else None
        except (ImportError, ValueError, OSError):  # a broken hook must not stop the search
            spec = None
        if spec is not None and not _under_implicit(spec, search):
            return spec, "installed environment"
    return None


def locate_module(module: str, search: CodeSearch, *, where: str) -> ModuleLocation:
    """Where ``module`` would be imported from, without executing anything.

    For a dotted name, only the top-level package is looked up (its ``__init__`` is not run),
    and the file shown is the one the submodule would be read from.

    Raises:
      ConfigError: the module is in none of the allowed places (the message says where a file
        of that name lies, if it lies beside the config, and how to allow it).
    """
    loaded = sys.modules.get(module)
    if loaded is not None:
        return ModuleLocation(module, getattr(loaded, "__file__", None), "already imported")
    top, _, rest = module.partition(".")
    if top in sys.modules:
        found = _find_below(sys.modules[top], module)
        return ModuleLocation(module, found, "installed with an imported package")
    located = _find_top_level(top, search)
    if located is None:
        raise ConfigError(_missing_module(module, top, search, where))
    spec, source = located
    file = spec.origin if spec.has_location else None
    if rest and spec.submodule_search_locations:
        below = _file_below(list(spec.submodule_search_locations), rest)
        file = below or file
    return ModuleLocation(module, file, source)


def _find_below(package: types.ModuleType, module: str) -> str | None:
    locations = getattr(package, "__path__", None)
    if not locations:
        return None
    return _file_below(list(locations), module.partition(".")[2])


def _file_below(locations: list[str], rest: str) -> str | None:
    """The file of submodule ``rest`` (dotted) below package ``locations``, if it is a plain
    file layout (as for nearly every package)."""
    *packages, leaf = rest.split(".")
    for location in locations:
        folder = Path(location, *packages)
        for candidate in (folder / f"{leaf}.py", folder / leaf / "__init__.py"):
            if candidate.is_file():
                return str(candidate)
    return None


def _missing_module(module: str, top: str, search: CodeSearch, where: str) -> str:
    places = ["the installed environment"]
    if search.python_path:
        places.insert(0, "python_path (" + ", ".join(str(d) for d in search.python_path) + ")")
    message = f"{where}: no module {module!r} in {' or '.join(places)}"
    beside = _beside_config(top, search.config_dir)
    if beside is not None and search.config_dir not in search.python_path:
        return (
            f"{message}; {beside} lies beside the config file, but modules are never imported "
            "from the config's directory implicitly: add 'python_path: .' to the config if "
            "you trust that code"
        )
    return f"{message}; install the package, or add the directory holding it to python_path"


def _beside_config(top: str, config_dir: Path | None) -> str | None:
    if config_dir is None:
        return None
    for candidate in (config_dir / f"{top}.py", config_dir / top / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(config_dir).as_posix()
    return None


# -- importing and checking --------------------------------------------------------------------


def _add_python_path(search: CodeSearch) -> None:
    """Put the user's python_path directories on ``sys.path`` (first, as ``PYTHONPATH``
    would), so modules found there can import their own siblings."""
    for folder in reversed(search.python_path):
        entry = str(folder)
        if entry not in sys.path:
            sys.path.insert(0, entry)


def _import(module: str, search: CodeSearch, where: str) -> types.ModuleType:
    """Import ``module`` from the allowed places only (the top-level package by its spec)."""
    _add_python_path(search)
    top = module.partition(".")[0]
    try:
        if top not in sys.modules:
            located = _find_top_level(top, search)
            if located is None:
                raise ConfigError(_missing_module(module, top, search, where))
            spec = located[0]
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[top] = loaded
            try:
                assert spec.loader is not None  # a spec with a location has a loader
                spec.loader.exec_module(loaded)
            except BaseException:
                sys.modules.pop(top, None)
                raise
        return importlib.import_module(module)
    except ConfigError:
        raise
    except Exception as exc:  # any import-time failure of user code is a config problem
        raise ConfigError(
            f"{where}: importing module {module!r} failed with {type(exc).__name__}: "
            f"{_first_line(exc)}; fix the module"
        ) from exc


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_function(path: str, search: CodeSearch, *, where: str) -> Any:
    """The plain function or class that ``path`` (``module:name``) names.

    Args:
      path: the import path.
      search: where the module may come from.
      where: how messages name the field (``"column 'clean'"``).

    Returns:
      A Python function (``def`` or ``async def``) or a class, defined in the named module.

    Raises:
      ConfigError: the path's form is refused (:func:`function_path_problem`), the module is
        in none of the allowed places or fails to import, it does not define the name, or the
        name is not a function or class defined there.
    """
    problem = function_path_problem(path)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    module_name, _, name = path.partition(":")
    module = _import(module_name, search, where)
    namespace = vars(module)  # not getattr: a module-level __getattr__ must not run
    if name not in namespace:
        defined = [key for key, value in namespace.items() if _defined_in(value, module_name)]
        hint = did_you_mean(name, defined, otherwise="check the name")
        raise ConfigError(f"{where}: module {module_name!r} defines no {name!r}; {hint}")
    target = namespace[name]
    if not (inspect.isfunction(target) or inspect.isclass(target)):
        raise ConfigError(
            f"{where}: {path!r} is a {type(target).__name__}, not a function or a class; name "
            "a function defined in that module"
        )
    owner = getattr(target, "__module__", None)
    if owner != module_name:
        raise ConfigError(
            f"{where}: {path!r} is defined in {owner!r}, not in {module_name!r} (it was only "
            "imported there); a custom column may only name a function defined in the module "
            "it names"
        )
    return target


def _defined_in(value: Any, module: str) -> bool:
    return (inspect.isfunction(value) or inspect.isclass(value)) and (
        getattr(value, "__module__", None) == module
    )


# -- code identity -----------------------------------------------------------------------------

_CONSTANT_TYPES: Final = (str, bytes, int, float, bool, complex, type(None))
_MAX_CONSTANT_REPR: Final = 10_000


def code_digest(target: Callable[..., Any] | type) -> str:
    """``"sha256:..."`` of a custom function's (or generator class's) code.

    Covers the source of the function (its bytecode when there is no source), and, followed by
    name, the module-level functions, classes and simple constants of the *same module* it
    uses, so editing a helper next to the function changes the digest too. Code in other
    modules is not covered (pin the versions of the packages you call).
    """
    digest = hashlib.sha256()
    for chunk in _code_chunks(target, set()):
        digest.update(chunk)
        digest.update(b"\x00")
    return "sha256:" + digest.hexdigest()


def _code_chunks(target: Any, seen: set[int]) -> Iterator[bytes]:
    if id(target) in seen:
        return
    seen.add(id(target))
    yield f"{getattr(target, '__module__', '')}:{getattr(target, '__qualname__', '')}".encode()
    yield _source_or_bytecode(target)
    module = getattr(target, "__module__", None)
    namespace = _globals_of(target)
    for name in sorted(_names_used(target)):
        if name not in namespace:
            continue
        value = namespace[name]
        if _defined_in(value, module) if isinstance(module, str) else False:
            yield f"uses {name}".encode()
            yield from _code_chunks(value, seen)
        elif _is_constant(value):
            text = repr(value)
            if len(text) <= _MAX_CONSTANT_REPR:
                yield f"constant {name} = {text}".encode()


def _source_or_bytecode(target: Any) -> bytes:
    try:
        return inspect.getsource(target).encode("utf-8")
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if isinstance(code, types.CodeType):
            return marshal.dumps(code)
        return repr(sorted(vars(target))).encode() if inspect.isclass(target) else b""


def _globals_of(target: Any) -> dict[str, Any]:
    if inspect.isfunction(target):
        return target.__globals__
    module = sys.modules.get(getattr(target, "__module__", "") or "")
    return vars(module) if module is not None else {}


def _names_used(target: Any) -> set[str]:
    """Global names the code of a function (or of a class's methods) refers to."""
    codes: list[types.CodeType] = []
    if inspect.isfunction(target):
        codes.append(target.__code__)
    elif inspect.isclass(target):
        for value in vars(target).values():
            function = getattr(value, "__func__", value)  # staticmethod / classmethod
            if inspect.isfunction(function):
                codes.append(function.__code__)
    names: set[str] = set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return names


def _is_constant(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _CONSTANT_TYPES):
        return True
    if depth > 3:
        return False
    if isinstance(value, tuple | list | frozenset | set):
        return len(value) <= 1000 and all(_is_constant(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return len(value) <= 1000 and all(
            _is_constant(k, depth + 1) and _is_constant(v, depth + 1) for k, v in value.items()
        )
    return False


def python_path_dirs(entries: Sequence[str], base: Path | None) -> tuple[Path, ...]:
    """The config's ``python_path`` entries as absolute directories (relative ones against
    ``base``, the config file's directory; the current directory for configs built in code)."""
    root = base if base is not None else Path.cwd()
    return tuple((root / Path(entry).expanduser()).resolve() for entry in entries)
