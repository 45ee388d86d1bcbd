"""Processor configs: what happens to the generated table before (and after) it is written.

A pipeline's ``processors:`` list runs in order over each finished row group, before its
checkpoint; a processor that needs the whole dataset (``dedup``, a ``custom`` processor with
``whole_dataset: true``) and every processor after it run once the run is complete, streaming
over the written row groups (``docs/configuration.md#processors``)::

    processors:
      - {kind: filter, condition: "{{ judge.quality.score >= 3 }}", keep_filtered: true}
      - {kind: drop_columns, columns: [judge]}
      - {kind: dedup, near_duplicate: answer, threshold: 0.8}
      - kind: to_chat
        name: chat
        messages:
          - {role: user, content: "{{ question }}"}
          - {role: assistant, content: "{{ answer }}"}

Each class is a frozen attrs value tagged by ``kind`` (a class attribute, written first by the
converter), like the column classes.

Plugins: :data:`PROCESSOR_CONFIGS` maps each kind to its config class; the converter looks a
``kind`` up there, so a package that adds an entry (a subclass of :class:`ProcessorBase` with
its own ``kind``) makes that kind loadable from YAML. The code that runs it is registered
beside it in :mod:`trio_designer.processors._registry` (``register_processor`` does both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import attrs
from attrs import validators as v

from .._core._names import MAX_NAME_LENGTH
from ._bounded import MAX_TEMPLATE_CHARS
from ._code import function_path_problem
from ._validators import (
    checked,
    finite,
    identifier,
    is_bool,
    is_int,
    is_json_object,
    is_str,
    is_tuple_of,
    non_blank,
    non_empty,
    optional,
    short_repr,
    to_tuple,
)

__all__ = [
    "PROCESSOR_CONFIGS",
    "ChatMessage",
    "CustomProcessor",
    "DedupProcessor",
    "DropColumns",
    "FilterRows",
    "ProcessorBase",
    "RenameColumns",
    "SchemaTransform",
    "SelectColumns",
    "ToChat",
    "processor_templates",
]


def _template(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'{attribute.name}' must be a non-empty template string")
    if len(value) > MAX_TEMPLATE_CHARS:
        raise ValueError(
            f"'{attribute.name}' is a template of {len(value):,} characters, more than the limit "
            f"of {MAX_TEMPLATE_CHARS:,}"
        )


_names = checked(is_tuple_of(is_str, "a column name"), non_empty)


@attrs.frozen(kw_only=True)
class ProcessorBase:
    """Fields every processor has.

    Attributes:
      name: a label for reports (``inspect``, ``metadata.json``); default: ``<kind>`` and its
        position (``filter_0``).
    """

    kind: ClassVar[str]
    #: Needs every row of the dataset at once (runs after the run, streaming).
    whole_dataset_kind: ClassVar[bool] = False

    name: str | None = attrs.field(default=None, validator=optional(checked(identifier)))

    def needs_whole_dataset(self) -> bool:
        """Whether this processor runs after the run over the whole dataset."""
        return self.whole_dataset_kind


@attrs.frozen(kw_only=True)
class DropColumns(ProcessorBase):
    """Remove columns from the table.

    Attributes:
      columns: the columns to remove, at least one.
    """

    kind: ClassVar[Literal["drop_columns"]] = "drop_columns"

    columns: tuple[str, ...] = attrs.field(converter=to_tuple, validator=_names)


def _renames(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for old, new in value.items():
        if not isinstance(new, str) or not new.isidentifier():
            raise ValueError(f"'columns' maps {old!r} to {short_repr(new)}; give an identifier")
        if len(new) > MAX_NAME_LENGTH:
            raise ValueError(
                f"'columns' maps {old!r} to a name of {len(new):,} characters; a name may have "
                f"at most {MAX_NAME_LENGTH}"
            )
    targets = list(value.values())
    duplicates = sorted({name for name in targets if targets.count(name) > 1})
    if duplicates:
        raise ValueError(f"'columns' renames two columns to {', '.join(map(repr, duplicates))}")


@attrs.frozen(kw_only=True)
class RenameColumns(ProcessorBase):
    """Rename columns.

    Attributes:
      columns: old name -> new name. Not hashed.
    """

    kind: ClassVar[Literal["rename_columns"]] = "rename_columns"

    columns: dict[str, str] = attrs.field(
        validator=checked(is_json_object, non_empty, _renames), hash=False
    )


@attrs.frozen(kw_only=True)
class SelectColumns(ProcessorBase):
    """Keep only the named columns, in that order.

    Attributes:
      columns: the columns to keep, at least one.
    """

    kind: ClassVar[Literal["select_columns"]] = "select_columns"

    columns: tuple[str, ...] = attrs.field(converter=to_tuple, validator=_names)


@attrs.frozen(kw_only=True)
class FilterRows(ProcessorBase):
    """Keep the rows where a Jinja condition holds.

    Attributes:
      condition: a template over the row, true unless it renders to ``""``, ``false``, ``0``,
        ``none`` or ``no`` (as ``skip_when``), e.g. ``"{{ judge.quality.score >= 3 }}"``.
      reason: what the filtered rows are recorded with (default: the condition).
      keep_filtered: also write the removed rows to ``filtered/<name>/`` beside the dataset.
    """

    kind: ClassVar[Literal["filter"]] = "filter"

    condition: str = attrs.field(validator=checked(_template))
    reason: str | None = attrs.field(default=None, validator=optional(checked(non_blank)))
    keep_filtered: bool = attrs.field(default=False, validator=checked(is_bool))


def _threshold(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"'threshold' must be in (0, 1]: {value}")


def _something_to_compare(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not instance.columns and value is None:
        raise ValueError(
            "give 'columns' (exact duplicates), 'near_duplicate' (a text column), or both"
        )


@attrs.frozen(kw_only=True)
class DedupProcessor(ProcessorBase):
    """Remove duplicate rows across the whole dataset (the first occurrence is kept).

    Attributes:
      columns: rows whose values in these columns are equal (hashed) are duplicates.
      near_duplicate: a text column: rows whose texts' estimated Jaccard similarity (MinHash
        over word ``ngram``-shingles, LSH index; needs the ``dedup`` extra, ``datasketch``)
        reaches ``threshold`` are duplicates.
      threshold: the similarity from which two texts are near-duplicates, in ``(0, 1]``.
      num_perm: MinHash permutations (more: finer estimates, slower).
      ngram: words per shingle.
      keep_filtered: also write the removed rows to ``filtered/<name>/``.
    """

    kind: ClassVar[Literal["dedup"]] = "dedup"
    whole_dataset_kind: ClassVar[bool] = True

    columns: tuple[str, ...] = attrs.field(
        default=(), converter=to_tuple, validator=checked(is_tuple_of(is_str, "a column name"))
    )
    near_duplicate: str | None = attrs.field(
        default=None, validator=[optional(checked(non_blank)), checked(_something_to_compare)]
    )
    threshold: float = attrs.field(default=0.9, validator=checked(finite, _threshold))
    num_perm: int = attrs.field(default=128, validator=checked(is_int, v.ge(16), v.le(1024)))
    ngram: int = attrs.field(default=3, validator=checked(is_int, v.ge(1), v.le(16)))
    keep_filtered: bool = attrs.field(default=False, validator=checked(is_bool))


@attrs.frozen(kw_only=True)
class ChatMessage:
    """One message of a :class:`ToChat` record.

    Attributes:
      role: ``system``, ``user``, ``assistant`` or ``tool`` (any non-empty string).
      content: a Jinja template over the row.
    """

    role: str = attrs.field(validator=checked(non_blank))
    content: str = attrs.field(validator=checked(_template))


@attrs.frozen(kw_only=True)
class ToChat(ProcessorBase):
    """Write each row as a chat record ``{"messages": [{"role", "content"}, ...]}`` to an
    extra dataset ``<name>/`` (JSON Lines and parquet); the table passes through unchanged.

    Attributes:
      name: the extra dataset's folder name (required here).
      messages: the messages, each a role and a content template.
    """

    kind: ClassVar[Literal["to_chat"]] = "to_chat"

    name: str | None = attrs.field(validator=checked(identifier))
    messages: tuple[ChatMessage, ...] = attrs.field(
        converter=to_tuple,
        validator=checked(
            is_tuple_of(lambda m: isinstance(m, ChatMessage), "a message"), non_empty
        ),
    )


@attrs.frozen(kw_only=True)
class SchemaTransform(ProcessorBase):
    """Write each row as a new record to an extra dataset ``<name>/`` (JSON Lines and
    parquet); the table passes through unchanged.

    Attributes:
      name: the extra dataset's folder name (required here).
      template: a Jinja template rendering one JSON object per row, e.g.
        ``'{"prompt": {{ question | tojson }}, "completion": {{ answer | tojson }}}'``.
    """

    kind: ClassVar[Literal["schema_transform"]] = "schema_transform"

    name: str | None = attrs.field(validator=checked(identifier))
    template: str = attrs.field(validator=checked(_template))


def _function(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, str):
        problem = function_path_problem(value)
        if problem is not None:
            raise ValueError(problem)
    elif not callable(value):
        raise ValueError(f"'function' must be a callable or an import path: {short_repr(value)}")


@attrs.frozen(kw_only=True)
class CustomProcessor(ProcessorBase):
    """A user function ``fn(table) -> table`` over a ``pyarrow.Table``.

    Attributes:
      function: the function, or its import path ``"package.module:function"`` (the same
        rules as a custom column's, ``docs/security.md``). Not hashed.
      whole_dataset: call it once over the whole dataset after the run (it gets the table of
        every row) rather than once per row group.
    """

    kind: ClassVar[Literal["custom"]] = "custom"

    function: Callable[..., Any] | str = attrs.field(validator=checked(_function), hash=False)
    whole_dataset: bool = attrs.field(default=False, validator=checked(is_bool))

    def needs_whole_dataset(self) -> bool:
        return self.whole_dataset


#: kind -> config class: the converter reads ``kind:`` here (plugins add entries).
PROCESSOR_CONFIGS: dict[str, type[ProcessorBase]] = {
    cls.kind: cls
    for cls in (
        DropColumns,
        RenameColumns,
        SelectColumns,
        FilterRows,
        DedupProcessor,
        ToChat,
        SchemaTransform,
        CustomProcessor,
    )
}


def processor_templates(processor: ProcessorBase) -> dict[str, str]:
    """Field path -> Jinja source, for every template a processor holds."""
    if isinstance(processor, FilterRows):
        return {"condition": processor.condition}
    if isinstance(processor, SchemaTransform):
        return {"template": processor.template}
    if isinstance(processor, ToChat):
        return {f"messages[{i}].content": m.content for i, m in enumerate(processor.messages)}
    return {}


def processor_label(processor: ProcessorBase, index: int) -> str:
    """The name reports use: ``name``, else ``<kind>_<index>``."""
    return processor.name or f"{processor.kind}_{index}"


# ``trio_designer.config`` presents ProcessorBase under its own name; that namespace lacks the
# typing names of its (string) annotations, which ``typing.get_type_hints`` of a plugin's
# subclass (``attrs.resolve_types``, cattrs) evaluates there (as for ``PluginColumn``).
# Evaluated annotations need no namespace.
ProcessorBase.__annotations__ = {
    "kind": ClassVar[str],
    "whole_dataset_kind": ClassVar[bool],
    "name": str | None,
}
