"""Plugins: kinds that installed packages add through Python entry points, loaded lazily.

A distribution package registers entry points in groups named ``trio_designer.<what>``::

    # the plugin's pyproject.toml
    [project.entry-points."trio_designer.columns"]
    reverse_text = "td_example_plugin:ReverseText"

The entry point's *name* is the kind a config writes (``kind: reverse_text``); its *value*
names the object the group expects (for columns and samplers, a config class; see
:mod:`._plugin_columns`). This module is generic over groups: it finds entry points, imports
them and runs the group's check, and remembers what it found. A group's owner (the module that
keeps the registry of the group's built-in kinds) plugs in with one call::

    register_group(PluginGroup(COLUMNS, what="column kind", check=check_column_class,
                               builtin=lambda: BUILT_IN_KINDS))

and, where its converter meets a kind it does not know, one line::

    cls = BUILT_IN.get(kind) or find_plugin(COLUMNS, kind)   # None: no such plugin

Rules (docs/plugins.md, docs/security.md):

* **Lazy.** Nothing here runs until a config names a kind that is not built in, or plugins are
  listed (``trio-designer plugins``). Reading entry points only reads package metadata; a
  plugin's module is imported when its kind is first used, and only that plugin's.
* **Named places only.** Entry points are read from the distributions of ``sys.path`` minus
  the current directory (:func:`~._code.implicit_entries`), and a plugin's module is imported
  from the installed environment only (the same search as custom code, without
  ``python_path``): a ``*.dist-info`` folder or a module lying in the current directory is
  never picked up. Installing a package is the user naming it.
* **Broken plugins are contained.** An import error, a wrong object, a kind clashing with a
  built-in or with another package's plugin makes that one plugin broken: using it is a
  :class:`~trio_designer.plugins.PluginError` (a ``ConfigError``, exit 2) naming the plugin,
  its entry point and its package; configs that do not use it never see it.
* **Opt-out.** ``TRIO_DESIGNER_NO_PLUGINS=1`` in the environment (or ``--no-plugins``, or
  :func:`plugins_disabled` as a context manager) turns discovery off: every kind that is not
  built in is then unknown.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

import attrs

from .._exceptions import ConfigError, PluginError
from ._code import CodeSearch, _import, implicit_entries

__all__ = [
    "COLUMNS",
    "GROUPS",
    "NO_PLUGINS_ENV",
    "PROCESSORS",
    "SAMPLERS",
    "VALIDATORS",
    "PluginGroup",
    "PluginSource",
    "PluginStatus",
    "clear_plugin_cache",
    "discovery_enabled",
    "find_plugin",
    "group_statuses",
    "plugin_names",
    "plugins_disabled",
    "register_group",
    "source_of",
]

COLUMNS: Final = "trio_designer.columns"
SAMPLERS: Final = "trio_designer.samplers"
PROCESSORS: Final = "trio_designer.processors"
VALIDATORS: Final = "trio_designer.validators"
#: Every group trio_designer knows of, in the order ``trio-designer plugins`` lists them.
GROUPS: Final = (COLUMNS, SAMPLERS, PROCESSORS, VALIDATORS)

NO_PLUGINS_ENV: Final = "TRIO_DESIGNER_NO_PLUGINS"
"""Set to anything but ``""``/``0``/``false``/``no`` to turn plugin discovery off."""

_NAME_FORM: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- what a group is -----------------------------------------------------------------------------


@attrs.frozen
class PluginGroup:
    """One entry-point group and how to check what its entry points name.

    Attributes:
      name: the group (``"trio_designer.columns"``).
      what: what one entry point adds, for messages (``"column kind"``).
      check: ``check(obj, source)`` returns what the registry keeps (usually ``obj``) or
        raises ``ValueError``/``TypeError`` saying what is wrong with ``obj``.
      builtin: the built-in names of the group; a plugin may not take one of them.
    """

    name: str
    what: str
    check: Callable[[Any, PluginSource], Any]
    builtin: Callable[[], Collection[str]] = lambda: ()


_GROUPS: dict[str, PluginGroup] = {}


def register_group(group: PluginGroup) -> None:
    """Make ``group``'s entry points loadable (replaces an earlier registration of it)."""
    _GROUPS[group.name] = group
    _loaded.cache_clear()


# -- what was found ------------------------------------------------------------------------------


@attrs.frozen
class PluginSource:
    """Where a plugin comes from: one entry point of one distribution.

    Attributes:
      group: the entry-point group.
      name: the entry point's name (the kind).
      value: its target, ``"module:attribute"``.
      distribution: the distribution package's name (as its metadata spells it).
      version: the distribution's version.
      path: the folder holding the distribution's metadata (a ``sys.path`` entry).
    """

    group: str
    name: str
    value: str
    distribution: str
    version: str
    path: str = attrs.field(default="", eq=False)

    def error(self, reason: str) -> PluginError:
        """A :class:`PluginError` about this plugin."""
        return PluginError(
            group=self.group,
            name=self.name,
            value=self.value,
            distribution=self.distribution,
            version=self.version,
            reason=reason,
        )


@attrs.frozen
class PluginStatus:
    """What loading one plugin gave (``trio-designer plugins`` prints these).

    Attributes:
      source: the entry point.
      error: why it is broken (``None``: it loaded and passed its group's check).
      value: what the group's check returned (the config class); ``None`` when broken.
    """

    source: PluginSource
    error: PluginError | None = None
    value: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


# -- the opt-out ---------------------------------------------------------------------------------

_disabled: ContextVar[bool] = ContextVar("trio_designer_plugins_disabled", default=False)


@contextmanager
def plugins_disabled(disabled: bool = True) -> Iterator[None]:
    """Within the block, no plugin is discovered (``--no-plugins`` does this around a command)."""
    token = _disabled.set(disabled)
    try:
        yield
    finally:
        _disabled.reset(token)


def discovery_enabled() -> bool:
    """Whether plugins may be discovered (neither ``--no-plugins`` nor
    ``TRIO_DESIGNER_NO_PLUGINS``)."""
    if _disabled.get():
        return False
    flag = os.environ.get(NO_PLUGINS_ENV, "").strip().lower()
    return flag in ("", "0", "false", "no")


# -- discovery (metadata only: nothing is imported) ----------------------------------------------


def _search_path() -> tuple[str, ...]:
    """``sys.path`` without the entries that stand for the current directory."""
    implicit = implicit_entries()
    return tuple(entry for entry in sys.path if isinstance(entry, str) and entry not in implicit)


def _entry_points(group: str) -> tuple[PluginSource, ...]:
    return _discovered(group, _search_path())


@functools.cache
def _discovered(group: str, path: tuple[str, ...]) -> tuple[PluginSource, ...]:
    """Every entry point of ``group`` in the distributions found on ``path``.

    A distribution found twice (the same name in two ``sys.path`` entries) counts once, the
    first, as Python's import would pick its modules from the first entry.
    """
    found: list[PluginSource] = []
    seen: set[str] = set()
    for folder in path:
        try:
            distributions = list(importlib.metadata.distributions(path=[folder]))
        except (OSError, ValueError):  # an unreadable sys.path entry hides nothing else
            continue
        for distribution in distributions:
            try:
                # The folder name gives the distribution's name without parsing METADATA
                # (an email parser: most of the cost of a scan); only distributions that
                # register something in ``group`` are read further.
                key = getattr(distribution, "_normalized_name", None) or _normalized(
                    distribution.metadata["Name"] or ""
                )
                if not key or key in seen:
                    continue
                seen.add(key)
                text = distribution.read_text("entry_points.txt") or ""
                if f"[{group}]" not in text:
                    continue
                points = distribution.entry_points.select(group=group)
                name = distribution.metadata["Name"] or key
                version = distribution.version or "?"
            except Exception:  # broken metadata of an unrelated package hides only it
                continue
            found.extend(
                PluginSource(
                    group=group,
                    name=point.name,
                    value=point.value,
                    distribution=name,
                    version=version,
                    path=folder,
                )
                for point in points
            )
    return tuple(found)


def _normalized(name: str) -> str:
    """A distribution name as ``importlib.metadata`` compares them (PEP 503, underscores)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def plugin_names(group: str) -> list[str]:
    """The kinds that installed plugins register in ``group`` (sorted; nothing is imported).

    Empty when discovery is off.
    """
    if not discovery_enabled():
        return []
    return sorted({source.name for source in _entry_points(group)})


# -- loading -------------------------------------------------------------------------------------


def find_plugin(group: str, name: str) -> Any:
    """What the plugin registering ``name`` in ``group`` provides, or ``None`` if none does.

    Imports the plugin's module the first time (only that plugin's), runs the group's check,
    and remembers the outcome (a broken plugin stays broken until :func:`clear_plugin_cache`).

    Raises:
      PluginError: a plugin registers ``name`` but is broken (see :func:`group_statuses` for
        the reasons), or two packages register it.
    """
    if not discovery_enabled():
        return None
    sources = tuple(source for source in _entry_points(group) if source.name == name)
    if not sources:
        return None
    status = _loaded(sources)
    if status.error is not None:
        raise status.error
    return status.value


def group_statuses(group: str) -> list[PluginStatus]:
    """Load every plugin of ``group`` and say which work (for ``trio-designer plugins``).

    Sorted by name, then package. Empty when discovery is off.
    """
    if not discovery_enabled():
        return []
    by_name: dict[str, list[PluginSource]] = {}
    for source in _entry_points(group):
        by_name.setdefault(source.name, []).append(source)
    statuses: list[PluginStatus] = []
    for name in sorted(by_name):
        sources = tuple(by_name[name])
        status = _loaded(sources)
        statuses.extend(attrs.evolve(status, source=source) for source in sources)
    return statuses


def clear_plugin_cache() -> None:
    """Forget what was discovered and loaded (after installing a package in a running process;
    tests)."""
    _discovered.cache_clear()
    _loaded.cache_clear()
    _sources.clear()


_sources: dict[Any, PluginSource] = {}
"""A loaded plugin's object (a config class) -> the entry point it came from."""


def source_of(obj: Any) -> PluginSource | None:
    """The entry point a loaded plugin object (a config class) came from, if it came from one."""
    try:
        return _sources.get(obj)
    except TypeError:  # unhashable: never a loaded plugin object
        return None


@functools.cache
def _loaded(sources: tuple[PluginSource, ...]) -> PluginStatus:
    """Import and check the plugin that ``sources`` (one name, one group) register."""
    source = sources[0]
    if len(sources) > 1:
        others = ", ".join(f"{s.distribution} {s.version} ({s.value})" for s in sources)
        return PluginStatus(
            source,
            source.error(
                f"{len(sources)} packages register {source.name!r} in {source.group!r}: "
                f"{others}; uninstall all but one"
            ),
        )
    group = _GROUPS.get(source.group)
    if group is None:
        return PluginStatus(
            source,
            source.error(
                f"this version of trio_designer cannot load plugins of group {source.group!r} "
                "yet (no registry of that group is installed)"
            ),
        )
    if not _NAME_FORM.fullmatch(source.name):
        return PluginStatus(
            source,
            source.error(f"{source.name!r} is not a valid {group.what} name (an identifier)"),
        )
    if source.name in group.builtin():
        return PluginStatus(
            source,
            source.error(
                f"{source.name!r} is a built-in {group.what} of trio_designer; a plugin cannot "
                "replace it (rename the entry point)"
            ),
        )
    try:
        obj = _load_object(source)
        value = group.check(obj, source)
    except PluginError as exc:
        return PluginStatus(source, exc)
    except (ConfigError, ValueError, TypeError, AttributeError) as exc:
        return PluginStatus(source, source.error(_reason(exc)))
    with contextlib.suppress(TypeError):  # an unhashable value: nothing to look up later
        _sources[value] = source
    return PluginStatus(source, None, value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        return "; ".join(exc.problems)
    return str(exc) or type(exc).__name__


def _load_object(source: PluginSource) -> Any:
    """Import the entry point's module from the installed environment and walk to its object.

    Raises:
      ValueError: the value is malformed, the module cannot be imported (any exception its
        top-level code raises), or it has no such attribute.
    """
    module_name, _, attribute = source.value.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module_name) or (
        attribute and not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", attribute)
    ):
        raise ValueError(f"its entry point value {source.value!r} is not 'module:attribute'")
    where = f"plugin {source.name!r}"
    try:
        module = _import(module_name, CodeSearch(), where)
    except ConfigError as exc:
        cause = exc.__cause__
        if cause is not None:
            raise ValueError(
                f"importing its module {module_name!r} failed with {type(cause).__name__}: "
                f"{str(cause).splitlines()[0] if str(cause) else ''}"
            ) from None
        raise ValueError(
            f"its module {module_name!r} is not in the installed environment"
        ) from None
    obj: Any = module
    for part in attribute.split(".") if attribute else ():
        if part.startswith("__") or not hasattr(obj, part):
            raise ValueError(f"module {module_name!r} has no {attribute!r}")
        obj = getattr(obj, part)
    return obj
