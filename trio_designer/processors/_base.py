"""The processor protocol, the batch a processor works on, and what a run reports of it.

A processor is built once per stage from its config (:mod:`._registry`) and then called with
one :class:`Batch` per row group, in row-group order::

    class Processor(Protocol):
        label: str                                  # "filter_0", or the config's name
        def check(self, columns: ColumnSet) -> ColumnSet: ...   # validate time
        def process(self, batch: Batch) -> pa.Table: ...        # once per row group

``check`` gets the columns of the table the processor will see and returns those it leaves;
it raises :class:`~trio_designer.ConfigError` naming what is wrong (an unknown column, a bad
template) before any request is sent. ``process`` returns the new table; it records the rows
it removes with :meth:`Batch.remove` (with their reason) and writes extra records with
:meth:`Batch.emit`. It runs in a worker thread, never on the event loop, so it may take its
time; it must not keep the tables it is given (memory stays one row group).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs
import pyarrow as pa

__all__ = ["Batch", "ColumnSet", "Processor", "ProcessorReport"]


@attrs.frozen
class ColumnSet:
    """The columns of a table at one point of the chain.

    Attributes:
      names: the column names, in order.
      json_columns: those holding JSON text (structured and judge columns), which templates
        see decoded (``{{ judge.quality.score }}``).
    """

    names: tuple[str, ...]
    json_columns: frozenset[str] = frozenset()

    def missing(self, wanted: Sequence[str]) -> list[str]:
        """The names of ``wanted`` that are not columns, in order."""
        return [name for name in wanted if name not in self.names]


@attrs.define(eq=False)
class Batch:
    """One row group's table as one processor sees it, and what the processor did with it.

    Attributes:
      row_group: the row group's id.
      table: the table the processor receives.
      removed: ``(rows, reason)`` for each :meth:`remove` call.
      records: extra dataset name -> records, from :meth:`emit`.
      not_emitted: reason -> rows left out of an extra dataset (their template failed).
    """

    row_group: int
    table: pa.Table
    removed: list[tuple[pa.Table, str]] = attrs.field(factory=list)
    records: dict[str, list[Mapping[str, Any]]] = attrs.field(factory=dict)
    not_emitted: dict[str, int] = attrs.field(factory=dict)

    def remove(self, rows: pa.Table, reason: str) -> None:
        """Record that ``rows`` (a table of the removed rows) were removed for ``reason``."""
        if rows.num_rows:
            self.removed.append((rows, reason))

    def emit(self, dataset: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Add ``records`` to the extra dataset ``dataset`` (JSON-serialisable mappings)."""
        self.records.setdefault(dataset, []).extend(records)

    def skip(self, reason: str) -> None:
        """Record that one row was left out of an extra dataset for ``reason``."""
        self.not_emitted[reason] = self.not_emitted.get(reason, 0) + 1


class Processor(Protocol):
    """What the chain calls (see the module docstring)."""

    label: str

    def check(self, columns: ColumnSet) -> ColumnSet: ...

    def process(self, batch: Batch) -> pa.Table: ...


@attrs.define(eq=False)
class ProcessorReport:
    """Rows in, rows out and why, for one processor over a run (``metadata.json``,
    ``inspect``)."""

    name: str
    kind: str
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    removed: dict[str, int] = attrs.field(factory=dict)
    not_emitted: dict[str, int] = attrs.field(factory=dict)

    def add(self, rows_in: int, rows_out: int, batch: Batch) -> None:
        self.rows_in += rows_in
        self.rows_out += rows_out
        for rows, reason in batch.removed:
            self.removed[reason] = self.removed.get(reason, 0) + rows.num_rows
        for reason, count in batch.not_emitted.items():
            self.not_emitted[reason] = self.not_emitted.get(reason, 0) + count

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def merge(self, earlier: Mapping[str, Any]) -> None:
        """Add the counts of an earlier run's report of the same processor (resume)."""
        self.rows_in += int(earlier.get("rows_in", 0))
        self.rows_out += int(earlier.get("rows_out", 0))
        for reason, count in dict(earlier.get("removed") or {}).items():
            self.removed[reason] = self.removed.get(reason, 0) + int(count)
        for reason, count in dict(earlier.get("not_emitted") or {}).items():
            self.not_emitted[reason] = self.not_emitted.get(reason, 0) + int(count)
