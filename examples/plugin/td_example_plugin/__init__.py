"""An example trio_designer plugin (docs/plugins.md).

Three column kinds, one per way a generator can be written, a processor and a validator:

* ``reverse_text``: a sync generator, one call per cell, cheap enough to run on the event loop
  (``inline = True``). Its ``text`` field is a Jinja template over the row
  (``template_fields``), so the columns it reads become its upstream columns.
* ``slugify``: an ``async`` generator, one call per cell; it could await a network call or a
  subprocess here (it awaits nothing external; a checkpoint stands for it).
* ``sampler: dice``: a sampler, one call per row group (``strategy = "full_column"``), drawing
  from the per-cell seeded random generator so that runs are reproducible.
* ``processors: [{kind: uppercase_columns, columns: [...]}]``: a processor, run over each row
  group before its checkpoint.
* ``kind: validation, validator: max_length``: a validator, checking batches of rows in a
  worker thread.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, ClassVar

import attrs
import trio

from trio_designer.config import ProcessorBase
from trio_designer.generators import CellContext, ColumnContext
from trio_designer.plugins import ColumnGenerator, PluginColumn, PluginSampler, render_template
from trio_designer.processors import Batch, ColumnSet

__all__ = ["Dice", "MaxLength", "ReverseText", "Slugify", "UppercaseColumns"]


class ReverseTextGenerator(ColumnGenerator):
    """Renders ``text`` over the row and reverses it."""

    inline = True

    def __init__(self, config: ReverseText) -> None:
        self.config = config

    def generate(self, ctx: CellContext) -> Any:
        text = render_template(
            self.config.text, ctx.row, column=ctx.column, field="text", row_index=ctx.row_index
        )
        reversed_text = text[::-1]
        return reversed_text.upper() if self.config.upper else reversed_text


@attrs.frozen(kw_only=True)
class ReverseText(PluginColumn):
    """``kind: reverse_text``: the ``text`` template, rendered and reversed.

    Attributes:
      text: a Jinja template over the row (``"{{ topic }}"``).
      upper: upper-case the result.
    """

    kind: ClassVar[str] = "reverse_text"
    generator_class: ClassVar[type[ColumnGenerator]] = ReverseTextGenerator
    template_fields: ClassVar[tuple[str, ...]] = ("text",)

    text: str = attrs.field(validator=attrs.validators.min_len(1))
    upper: bool = False


def slug(text: str, separator: str) -> str:
    """``"Café au lait!"`` -> ``"cafe-au-lait"``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", separator, ascii_text.lower()).strip(separator)


class SlugifyGenerator(ColumnGenerator):
    """An async generator: ``agenerate`` per cell."""

    def __init__(self, config: Slugify) -> None:
        self.config = config

    async def agenerate(self, ctx: CellContext) -> Any:
        await trio.lowlevel.checkpoint()  # where a real plugin would await I/O
        return slug(str(ctx.row[self.config.source]), self.config.separator)


@attrs.frozen(kw_only=True)
class Slugify(PluginColumn):
    """``kind: slugify``: a URL slug of another column's value.

    Attributes:
      source: the column to slugify. Listed in ``column_fields``, so it is an upstream column
        of this one, and a name that is not a column is a config error.
      separator: what joins the words (default ``-``).
    """

    kind: ClassVar[str] = "slugify"
    generator_class: ClassVar[type[ColumnGenerator]] = SlugifyGenerator
    column_fields: ClassVar[tuple[str, ...]] = ("source",)

    source: str
    separator: str = attrs.field(default="-", validator=attrs.validators.in_(("-", "_", ".")))


class DiceGenerator(ColumnGenerator):
    """A sampler: one call per row group, one value per row."""

    strategy = "full_column"
    inline = True

    def __init__(self, config: Dice) -> None:
        self.sides = config.sides

    def generate_column(self, ctx: ColumnContext) -> list[Any]:
        return [ctx.rng_for(row).randint(1, self.sides) for row in ctx.row_indices]

    def arrow_type(self) -> Any:
        import pyarrow as pa

        return pa.int64()


@attrs.frozen(kw_only=True)
class Dice(PluginSampler):
    """``kind: sampler, sampler: dice``: a fair die with ``sides`` faces.

    Attributes:
      sides: the number of faces, at least 2 (default 6).
    """

    sampler: ClassVar[str] = "dice"
    generator_class: ClassVar[type[ColumnGenerator]] = DiceGenerator

    sides: int = attrs.field(default=6, validator=attrs.validators.ge(2))


class UppercaseProcessor:
    """Runs ``uppercase_columns``: built once per run as ``UppercaseProcessor(config, label,
    search)``, then ``check`` at validate time and ``process`` once per row group."""

    def __init__(self, config: UppercaseColumns, label: str, search: Any) -> None:
        self.label = label
        self.columns = config.columns

    def check(self, columns: ColumnSet) -> ColumnSet:
        missing = columns.missing(self.columns)
        if missing:
            from trio_designer import ConfigError

            raise ConfigError(f"processor {self.label!r}: no column {missing[0]!r} to upper-case")
        return columns  # the same columns leave it

    def process(self, batch: Batch) -> Any:
        import pyarrow.compute as pc

        table = batch.table
        for name in self.columns:
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, pc.utf8_upper(table.column(name)))
        return table


@attrs.frozen(kw_only=True)
class UppercaseColumns(ProcessorBase):
    """``kind: uppercase_columns``: upper-case the text of some columns.

    Attributes:
      columns: the (text) columns to upper-case, at least one.
    """

    kind: ClassVar[str] = "uppercase_columns"
    processor_class: ClassVar[type] = UppercaseProcessor

    columns: tuple[str, ...] = attrs.field(
        converter=tuple, validator=attrs.validators.min_len(1)
    )


class MaxLength:
    """``validator: max_length``: each target value is at most ``options.max`` characters
    (default 80). Built as ``MaxLength(column_config, search)``; batched: it gets many rows at
    once and checks them in a worker thread (a real validator might do CPU-heavy work)."""

    batched = True

    def __init__(self, config: Any, search: Any) -> None:
        self.limit = int(config.options.get("max", 80))

    async def validate(self, rows: list[dict[str, Any]], ctx: CellContext) -> list[Any]:
        return await trio.to_thread.run_sync(self._check, rows)

    def _check(self, rows: list[dict[str, Any]]) -> list[Any]:
        results = []
        for row in rows:
            messages = [
                f"{target}: {len(str(value))} characters, more than {self.limit}"
                for target, value in row.items()
                if len(str(value)) > self.limit
            ]
            results.append({"is_valid": not messages, "messages": messages})
        return results
