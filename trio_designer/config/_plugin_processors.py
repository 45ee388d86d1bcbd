"""Processors and validators from plugins: the ``trio_designer.processors`` and
``trio_designer.validators`` entry-point groups.

A processor entry point names a config class, a frozen attrs subclass of
:class:`~._processors.ProcessorBase` whose ``kind`` is the entry point's name and whose
``processor_class`` runs it (called as the processors registry calls a builder,
``processor_class(config, label, search)``, see :mod:`trio_designer.processors._registry`)::

    [project.entry-points."trio_designer.processors"]
    uppercase_columns = "td_example_plugin:UppercaseColumns"   # processors: [{kind: ...}]
    [project.entry-points."trio_designer.validators"]
    max_length = "td_example_plugin:MaxLength"                 # validator: max_length

A validator entry point names what :data:`trio_designer.generators._validators.VALIDATORS`
holds: a builder ``build(config, search) -> Validator``, usually a class with a ``batched``
attribute and an ``async def validate(rows, ctx)`` method.

Both checks run without importing the engine; the converter asks :func:`processor_plugin`
only for a processor kind that is not built in, the validation column's generator asks
:func:`validator_plugin` only for a validator it does not know.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

import attrs

from ._plugins import PROCESSORS, VALIDATORS, PluginGroup, PluginSource, find_plugin, register_group
from ._processors import PROCESSOR_CONFIGS, ProcessorBase

__all__ = [
    "BUILT_IN_VALIDATORS",
    "check_processor_class",
    "check_validator",
    "processor_plugin",
    "validator_plugin",
]

#: The validators trio_designer has (``VALIDATORS`` of :mod:`trio_designer.generators`).
BUILT_IN_VALIDATORS: Final = frozenset({"code", "callable", "remote"})

_BUILT_IN_PROCESSORS: Final = frozenset(PROCESSOR_CONFIGS)


def _name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def check_processor_class(obj: Any, source: PluginSource) -> type[ProcessorBase]:
    """``obj`` if it is a valid config class for processor kind ``source.name``.

    Raises:
      ValueError: what is wrong with it.
    """
    if not isinstance(obj, type):
        raise ValueError(f"its entry point names a {type(obj).__name__}, not a config class")
    if not issubclass(obj, ProcessorBase):
        raise ValueError(
            f"{_name(obj)} does not subclass trio_designer.config.ProcessorBase"
        )
    if "__attrs_attrs__" not in vars(obj):
        raise ValueError(
            f"{_name(obj)} is not an attrs class of its own; decorate it with "
            "@attrs.frozen(kw_only=True)"
        )
    kind = getattr(obj, "kind", None)
    if kind != source.name:
        raise ValueError(
            f"{_name(obj)}.kind is {kind!r}, not the entry point's name {source.name!r}; "
            f"set kind: ClassVar[str] = {source.name!r}"
        )
    try:
        attrs.resolve_types(obj)
    except Exception as exc:  # NameError, TypeError: annotations that do not evaluate
        raise ValueError(
            f"the annotations of {_name(obj)} do not resolve: {type(exc).__name__}: {exc}"
        ) from None
    if any(field.name == "kind" for field in attrs.fields(obj)):
        raise ValueError(f"{_name(obj)} has a field named 'kind', which configs use as the tag")
    runner = getattr(obj, "processor_class", None)
    if not isinstance(runner, type):
        raise ValueError(
            f"{_name(obj)}.processor_class must be a class, called as "
            f"processor_class(config, label, search); got {runner!r}"
        )
    missing = [name for name in ("check", "process") if not callable(getattr(runner, name, None))]
    if missing:
        raise ValueError(
            f"{_name(runner)} has no {' or '.join(missing)} method (the processor protocol: "
            "check(columns) -> columns, process(batch) -> pyarrow.Table)"
        )
    return obj


def check_validator(obj: Any, source: PluginSource) -> Any:
    """``obj`` if it can build validators: ``obj(config, search) -> Validator``.

    Raises:
      ValueError: what is wrong with it.
    """
    if not callable(obj):
        raise ValueError(
            f"its entry point names a {type(obj).__name__}, not a validator class or builder"
        )
    if isinstance(obj, type):
        if not inspect.iscoroutinefunction(getattr(obj, "validate", None)):
            raise ValueError(
                f"{_name(obj)} has no 'async def validate(self, rows, ctx)' method"
            )
        if not isinstance(getattr(obj, "batched", None), bool):
            raise ValueError(f"{_name(obj)}.batched must be True or False")
    return obj


def processor_plugin(kind: str) -> type[ProcessorBase] | None:
    """The config class a plugin registers for processor ``kind`` (``None``: no plugin does).

    Raises:
      PluginError: the plugin is broken.
    """
    cls: type[ProcessorBase] | None = find_plugin(PROCESSORS, kind)
    return cls


def validator_plugin(name: str) -> Any:
    """The validator builder a plugin registers as ``name`` (``None``: no plugin does).

    Raises:
      PluginError: the plugin is broken.
    """
    if name in BUILT_IN_VALIDATORS:
        return None
    return find_plugin(VALIDATORS, name)


register_group(
    PluginGroup(
        PROCESSORS,
        what="processor kind",
        check=check_processor_class,
        builtin=lambda: _BUILT_IN_PROCESSORS,
    )
)
register_group(
    PluginGroup(
        VALIDATORS, what="validator", check=check_validator, builtin=lambda: BUILT_IN_VALIDATORS
    )
)
