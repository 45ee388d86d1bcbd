"""Column kinds and samplers from plugins: the ``trio_designer.columns`` and
``trio_designer.samplers`` entry-point groups.

An entry point of these groups names a config class, a frozen attrs subclass of
:class:`~._columns.PluginColumn` (columns) or :class:`~._columns.PluginSampler` (samplers),
whose ``generator_class`` fills the column::

    [project.entry-points."trio_designer.columns"]
    reverse_text = "td_example_plugin:ReverseText"     # kind: reverse_text
    [project.entry-points."trio_designer.samplers"]
    dice = "td_example_plugin:Dice"                    # kind: sampler, sampler: dice

:func:`check_column_class` / :func:`check_sampler_class` check what can be checked of the
config class without importing the engine (the class's shape, its tag, its generator class's
scheduling attributes); the generator's protocol is checked when it is built
(:mod:`trio_designer.generators._plugin`). The converter asks :func:`column_plugin` /
:func:`sampler_plugin` only for kinds that are not built in.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._columns import (
    COLUMN_CLASSES,
    SAMPLER_CLASSES,
    STRATEGIES,
    PluginColumn,
    PluginSampler,
)
from ._plugins import COLUMNS, SAMPLERS, PluginGroup, PluginSource, find_plugin, register_group

__all__ = ["check_column_class", "check_sampler_class", "column_plugin", "sampler_plugin"]

_RESERVED_FIELDS = ("kind", "sampler")


def builtin_kinds() -> frozenset[str]:
    """The ``kind`` of every built-in column (``"sampler"`` included)."""
    return frozenset(cls.kind for cls in COLUMN_CLASSES)


def builtin_samplers() -> frozenset[str]:
    """The ``sampler`` of every built-in sampler."""
    return frozenset(cls.sampler for cls in SAMPLER_CLASSES)


def check_column_class(obj: Any, source: PluginSource) -> type[PluginColumn]:
    """``obj`` if it is a valid config class for column kind ``source.name``.

    Raises:
      ValueError: what is wrong with it.
    """
    cls = _config_class(obj, PluginColumn, "trio_designer.plugins.PluginColumn")
    if issubclass(cls, PluginSampler):
        raise ValueError(
            f"{_name(cls)} is a PluginSampler; register it in 'trio_designer.samplers', or "
            "subclass PluginColumn"
        )
    kind = getattr(cls, "kind", None)
    if kind != source.name:
        raise ValueError(
            f"{_name(cls)}.kind is {kind!r}, not the entry point's name {source.name!r}; "
            f"set kind: ClassVar[str] = {source.name!r}"
        )
    _check_rest(cls)
    return cls


def check_sampler_class(obj: Any, source: PluginSource) -> type[PluginSampler]:
    """``obj`` if it is a valid config class for sampler ``source.name``.

    Raises:
      ValueError: what is wrong with it.
    """
    cls = _config_class(obj, PluginSampler, "trio_designer.plugins.PluginSampler")
    sampler = getattr(cls, "sampler", None)
    if cls.kind != "sampler" or sampler != source.name:
        raise ValueError(
            f"{_name(cls)}.sampler is {sampler!r} (kind {cls.kind!r}), not the entry point's "
            f"name {source.name!r}; set sampler: ClassVar[str] = {source.name!r} and leave "
            "kind alone"
        )
    _check_rest(cls)
    return cls


def _name(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _config_class(obj: Any, base: type[Any], base_name: str) -> type[Any]:
    if not isinstance(obj, type):
        raise ValueError(f"its entry point names a {type(obj).__name__}, not a config class")
    if not issubclass(obj, base):
        raise ValueError(f"{_name(obj)} does not subclass {base_name}")
    if "__attrs_attrs__" not in vars(obj):
        raise ValueError(
            f"{_name(obj)} is not an attrs class of its own; decorate it with "
            "@attrs.frozen(kw_only=True)"
        )
    return obj


def _check_rest(cls: type[PluginColumn]) -> None:
    """Fields, template fields and the generator class's scheduling attributes."""
    try:
        attrs.resolve_types(cls)
    except Exception as exc:  # NameError, TypeError: annotations that do not evaluate
        raise ValueError(
            f"the annotations of {_name(cls)} do not resolve: {type(exc).__name__}: {exc}"
        ) from None
    names = [field.name for field in attrs.fields(cls)]
    reserved = [name for name in names if name in _RESERVED_FIELDS]
    if reserved:
        raise ValueError(
            f"{_name(cls)} has a field named {reserved[0]!r}, which configs use as the tag; "
            "rename the field"
        )
    for attribute in ("template_fields", "column_fields"):
        listed = getattr(cls, attribute, ())
        if not isinstance(listed, tuple) or not all(name in names for name in listed):
            raise ValueError(
                f"{_name(cls)}.{attribute} must be a tuple of its field names: {listed!r}"
            )
    generator = getattr(cls, "generator_class", None)
    if not isinstance(generator, type):
        raise ValueError(
            f"{_name(cls)}.generator_class must be a ColumnGenerator subclass, got "
            f"{generator!r}"
        )
    strategy = getattr(generator, "strategy", None)
    if strategy not in STRATEGIES:
        raise ValueError(
            f"{_name(generator)}.strategy must be 'cell' or 'full_column', got {strategy!r}"
        )
    for flag in ("llm_bound", "inline"):
        if not isinstance(getattr(generator, flag, False), bool):
            raise ValueError(f"{_name(generator)}.{flag} must be True or False")


def column_plugin(kind: str) -> type[PluginColumn] | None:
    """The config class a plugin registers for column ``kind`` (``None``: no plugin does).

    Raises:
      PluginError: the plugin is broken.
    """
    cls: type[PluginColumn] | None = find_plugin(COLUMNS, kind)
    return cls


def sampler_plugin(sampler: str) -> type[PluginSampler] | None:
    """The config class a plugin registers for ``sampler`` (``None``: no plugin does).

    Raises:
      PluginError: the plugin is broken.
    """
    cls: type[PluginSampler] | None = find_plugin(SAMPLERS, sampler)
    return cls


register_group(
    PluginGroup(COLUMNS, what="column kind", check=check_column_class, builtin=builtin_kinds)
)
register_group(
    PluginGroup(SAMPLERS, what="sampler", check=check_sampler_class, builtin=builtin_samplers)
)
