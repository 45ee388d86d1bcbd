"""``drop_columns``, ``rename_columns``, ``select_columns``: the table's columns, reshaped.

Each checks at validate time that every column it names exists at its point of the chain
(after the processors before it), with a did-you-mean hint.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from .._core._suggest import did_you_mean
from .._exceptions import ConfigError
from ..config._processors import DropColumns, RenameColumns, SelectColumns
from ._base import Batch, ColumnSet

__all__ = ["DropColumnsProcessor", "RenameColumnsProcessor", "SelectColumnsProcessor"]


def require_columns(label: str, field: str, wanted: Sequence[str], columns: ColumnSet) -> None:
    """Raise :class:`ConfigError` naming each of ``wanted`` that is not a column."""
    problems = [
        f"processor {label!r}: {field} names {name!r}, which is not a column of the table at "
        f"this point; "
        + did_you_mean(name, columns.names, otherwise="check the spelling")
        + f" (columns: {', '.join(columns.names) or 'none'})"
        for name in columns.missing(wanted)
    ]
    if problems:
        raise ConfigError(problems)


class DropColumnsProcessor:
    def __init__(self, config: DropColumns, label: str) -> None:
        self.label = label
        self.columns = config.columns

    def check(self, columns: ColumnSet) -> ColumnSet:
        require_columns(self.label, "columns", self.columns, columns)
        kept = tuple(name for name in columns.names if name not in self.columns)
        if not kept:
            raise ConfigError(f"processor {self.label!r}: drops every column; keep at least one")
        return ColumnSet(kept, columns.json_columns & set(kept))

    def process(self, batch: Batch) -> pa.Table:
        return batch.table.drop_columns(list(self.columns))


class RenameColumnsProcessor:
    def __init__(self, config: RenameColumns, label: str) -> None:
        self.label = label
        self.mapping = dict(config.columns)

    def check(self, columns: ColumnSet) -> ColumnSet:
        require_columns(self.label, "columns", list(self.mapping), columns)
        names = tuple(self.mapping.get(name, name) for name in columns.names)
        clashes = sorted({name for name in names if names.count(name) > 1})
        if clashes:
            raise ConfigError(
                f"processor {self.label!r}: renaming would give two columns the name "
                f"{', '.join(map(repr, clashes))}; choose another name"
            )
        json_columns = frozenset(self.mapping.get(name, name) for name in columns.json_columns)
        return ColumnSet(names, json_columns)

    def process(self, batch: Batch) -> pa.Table:
        return batch.table.rename_columns(
            [self.mapping.get(name, name) for name in batch.table.column_names]
        )


class SelectColumnsProcessor:
    def __init__(self, config: SelectColumns, label: str) -> None:
        self.label = label
        self.columns = config.columns

    def check(self, columns: ColumnSet) -> ColumnSet:
        require_columns(self.label, "columns", self.columns, columns)
        return ColumnSet(tuple(self.columns), columns.json_columns & set(self.columns))

    def process(self, batch: Batch) -> pa.Table:
        return batch.table.select(list(self.columns))
