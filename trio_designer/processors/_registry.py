"""Which code runs each processor kind: a dict keyed by kind name, open to plugins.

:data:`PROCESSORS` maps a kind (``"filter"``) to a builder
``build(config, label, search) -> Processor`` (:class:`~._base.Processor`: ``label``,
``check(columns) -> columns``, ``process(batch) -> table``). The config class of each kind is
in :data:`trio_designer.config._processors.PROCESSOR_CONFIGS`, which the converter reads.

A plugin adds a kind with one call, before the config is loaded::

    from trio_designer.processors import register_processor

    @attrs.frozen(kw_only=True)
    class Upper(ProcessorBase):              # trio_designer.config._processors.ProcessorBase
        kind: ClassVar[str] = "upper"
        column: str = attrs.field()

    class UpperProcessor:
        def __init__(self, config, label, search): ...
        def check(self, columns): return columns
        def process(self, batch): ...          # returns a pyarrow.Table

    register_processor("upper", Upper, UpperProcessor)

A config class that sets ``whole_dataset_kind = True`` (or overrides ``needs_whole_dataset``)
runs after the run, streaming over the written row groups, as ``dedup`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._exceptions import ConfigError
from ..config._code import CodeSearch
from ..config._processors import (
    PROCESSOR_CONFIGS,
    CustomProcessor,
    DedupProcessor,
    DropColumns,
    FilterRows,
    ProcessorBase,
    RenameColumns,
    SchemaTransform,
    SelectColumns,
    ToChat,
)
from ._base import Processor
from ._columns import DropColumnsProcessor, RenameColumnsProcessor, SelectColumnsProcessor
from ._custom import CustomTableProcessor
from ._dedup import DedupRows
from ._filter import FilterProcessor
from ._reshape import SchemaTransformProcessor, ToChatProcessor

__all__ = ["PROCESSORS", "Builder", "build_processor", "register_processor"]

#: ``build(config, label, search)``: the processor for one config.
Builder = Callable[[Any, str, CodeSearch], Processor]


def _plain(cls: Callable[[Any, str], Processor]) -> Builder:
    return lambda config, label, search: cls(config, label)


PROCESSORS: dict[str, Builder] = {
    DropColumns.kind: _plain(DropColumnsProcessor),
    RenameColumns.kind: _plain(RenameColumnsProcessor),
    SelectColumns.kind: _plain(SelectColumnsProcessor),
    FilterRows.kind: _plain(FilterProcessor),
    DedupProcessor.kind: _plain(DedupRows),
    ToChat.kind: _plain(ToChatProcessor),
    SchemaTransform.kind: _plain(SchemaTransformProcessor),
    CustomProcessor.kind: CustomTableProcessor,
}


def register_processor(kind: str, config_class: type[ProcessorBase], builder: Builder) -> None:
    """Make ``kind`` usable in ``processors:`` (config class) and runnable (builder).

    Raises:
      ConfigError: ``kind`` is already taken by another class.
    """
    taken = PROCESSOR_CONFIGS.get(kind)
    if taken is not None and taken is not config_class:
        raise ConfigError(
            f"processor kind {kind!r} is already registered ({taken.__module__}."
            f"{taken.__qualname__}); choose another kind name"
        )
    PROCESSOR_CONFIGS[kind] = config_class
    PROCESSORS[kind] = builder


def build_processor(config: ProcessorBase, label: str, search: CodeSearch) -> Processor:
    """The processor of ``config``.

    Raises:
      ConfigError: no code is registered for its kind, or building it failed.
    """
    builder = PROCESSORS.get(config.kind)
    if builder is None:  # a plugin's config class carries its processor (docs/plugins.md)
        builder = getattr(type(config), "processor_class", None)
    if builder is None:
        raise ConfigError(
            f"processor {label!r}: no processor is registered for kind {config.kind!r}"
        )
    return builder(config, label, search)
