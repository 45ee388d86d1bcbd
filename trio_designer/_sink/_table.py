"""Tables of row groups: column values in, one ``pyarrow.Table`` with a stable schema out.

``pyarrow.dataset`` reads a directory of parquet files only if every file has the same schema,
and the engine builds each row group's table separately. Two pieces keep the schemas equal:

* :func:`build_table` gives every column with a declared type exactly that type (and infers
  the rest from the values, with the rules in its docstring);
* :class:`SchemaGuard` holds every later table of a sink to the schema of the first non-empty
  one: an all-null column is re-typed, a nested (struct/list) column stored earlier as JSON
  text is turned into JSON text (a run from before nested columns, resumed), any other
  difference is refused with a :class:`~trio_designer.SinkError` that says to declare the
  column's type.

Known limit: an all-null column without a declared type in the *first* row group is stored as
strings; later row groups with real values of another type are then refused. Declare the type.
XX: could rewrite the earlier all-null column instead.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from .._exceptions import SinkError

__all__ = ["SchemaGuard", "build_table"]


def build_table(
    columns: Mapping[str, Sequence[Any]], types: Mapping[str, pa.DataType | None]
) -> pa.Table:
    """Build one row group's table from column values.

    The rules keep every row group's schema identical whenever a column has a declared type,
    because ``pyarrow.dataset`` can read a directory only if all its files agree:

    * Columns appear in the order of ``columns``. A column missing from ``types`` counts as
      untyped; keys of ``types`` that are not columns are ignored (dropped columns, say).
    * **Declared type** (``types[name]`` is a ``pa.DataType``): the column gets exactly that
      type, also when every value is ``None`` and when there are no rows. Conveniences:
      ``dict``/``list``/``tuple`` values for a string type are stored as JSON text
      (``json.dumps(value, sort_keys=True, ensure_ascii=False)``); ``str`` values for a
      timestamp or date type are parsed with ``fromisoformat``. Datetimes finer than the
      declared unit are truncated by Arrow.
    * **No type** (``None``): Arrow infers it from the values (``int`` → int64, ``float`` or a
      mix of ints and floats → double, ``str`` → string, ``bool`` → bool, ``datetime`` →
      timestamp[us] (with its time zone, if aware), ``date`` → date32, ``dict`` → struct,
      ``list`` → list). A column that is all ``None`` (or has no rows) becomes string-typed
      nulls. Inference looks only at this row group, so it can disagree between row groups:
      an int column that is all ``None`` in one group, ``dict`` values whose keys differ
      between groups (the struct gets the union of the keys *seen in that group*). The sinks
      refuse a row group whose schema differs from the first one written (``SinkError``) —
      declare a type for anything that may vary, e.g. ``pa.string()`` to keep structured LLM
      output as JSON text.

    ``float('nan')`` stays NaN (it is not turned into null).

    Args:
      columns: column name → values, one per row; all of the same length.
      types: column name → declared Arrow type, or ``None`` to infer.

    Returns:
      A ``pa.Table`` with one nullable field per column.

    Raises:
      ValueError: the columns have different lengths.
      SinkError: a value cannot be stored with its column's (declared or inferred) type; the
        message names the column, the value and its position.
    """
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name!r} has {n}" for name, n in lengths.items())
        raise ValueError(f"every column of a row group needs the same number of values: {listed}.")
    if not columns:
        return pa.table({})
    fields: list[pa.Field] = []
    arrays: list[pa.Array] = []
    for name, values in columns.items():
        array = _column_array(name, values, types.get(name))
        fields.append(pa.field(name, array.type))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _column_array(name: str, values: Sequence[Any], declared: pa.DataType | None) -> pa.Array:
    if declared is None:
        return _inferred_array(name, values)
    prepared = [_prepare_value(name, value, declared) for value in values]
    try:
        return pa.array(prepared, type=declared)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise _unstorable_value_error(name, prepared, declared) from exc


def _prepare_value(name: str, value: Any, declared: pa.DataType) -> Any:
    """Apply the documented conveniences (JSON text, ISO timestamps) to one value."""
    if isinstance(value, dict | list | tuple) and _is_string_type(declared):
        try:
            return json.dumps(value, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise SinkError(
                f"column {name!r}: a {type(value).__name__} value cannot be stored as JSON text "
                f"({exc}); make the generator return JSON-compatible values."
            ) from exc
    if isinstance(value, str) and pa.types.is_timestamp(declared):
        return _parse_iso(name, value, dt.datetime.fromisoformat)
    if isinstance(value, str) and pa.types.is_date(declared):
        return _parse_iso(name, value, dt.date.fromisoformat)
    return value


def _parse_iso(name: str, value: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise SinkError(
            f"column {name!r}: {value!r} is not an ISO 8601 date/time, so it cannot be stored "
            f"in a timestamp or date column; fix the generator or declare the column a string."
        ) from exc


def _is_string_type(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_string(data_type) or pa.types.is_large_string(data_type))


def _inferred_array(name: str, values: Sequence[Any]) -> pa.Array:
    try:
        array = pa.array(list(values))
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        raise SinkError(
            f"column {name!r}: its values ({', '.join(kinds)}) do not form one Arrow column "
            f"({exc}); declare the column's type, or make its generator return one type."
        ) from exc
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.string())
    return array


def _unstorable_value_error(name: str, values: Sequence[Any], declared: pa.DataType) -> SinkError:
    """Find the first value that does not convert, and say so."""
    for position, value in enumerate(values):
        try:
            pa.array([value], type=declared)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return SinkError(
                f"column {name!r}: the value {_short_repr(value)} ({type(value).__name__}) at "
                f"position {position} of the row group cannot be stored as {declared}; fix the "
                f"generator or declare a type that fits its values."
            )
    return SinkError(  # pragma: no cover - each value converts alone but not together
        f"column {name!r}: its values cannot be stored together as {declared}; declare a "
        f"type that fits its values."
    )


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_nested(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_struct(data_type)
        or pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
    )


def _as_json_text(column: pa.ChunkedArray) -> pa.Array:
    """Nested values as the JSON text :func:`build_table` stores for a string column."""
    return pa.array(
        [
            None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)
            for value in column.to_pylist()
        ],
        type=pa.string(),
    )


class SchemaGuard:
    """Keeps every stored table on the schema of the first non-empty one.

    Invariant: after ``reference`` is set, every table that ``conform`` returns has exactly
    ``reference``'s column names and types (``test_every_file_has_the_same_schema``).
    """

    def __init__(self) -> None:
        self.reference: pa.Schema | None = None

    def conform(self, row_group: int, table: pa.Table) -> pa.Table:
        """The table on the reference schema (all-null columns re-typed), or SinkError."""
        if self.reference is None:
            if table.num_rows:
                self.reference = table.schema.remove_metadata()
            return table
        if table.schema.names != self.reference.names:
            raise SinkError(
                f"row group {row_group} has the columns {table.schema.names}, but earlier row "
                f"groups have {self.reference.names}; every row group needs the same columns "
                f"in the same order."
            )
        for index, field in enumerate(self.reference):
            table = self._conform_column(row_group, table, index, field)
        return table

    @staticmethod
    def _conform_column(row_group: int, table: pa.Table, index: int, field: pa.Field) -> pa.Table:
        column = table.column(index)
        if column.type == field.type:
            return table
        if column.null_count == len(column):
            return table.set_column(index, field, pa.nulls(len(column), field.type))
        if _is_string_type(field.type) and _is_nested(column.type):
            # A run stored before structured columns were nested (issue 14), resumed: its
            # later row groups keep the stored JSON text, so the files still agree.
            return table.set_column(index, field, _as_json_text(column))
        raise SinkError(
            f"row group {row_group}: column {field.name!r} holds {column.type} values, but "
            f"earlier row groups stored it as {field.type}; every row group file needs the same "
            f"schema, so declare the column's type (dtype) or make its generator return one type."
        )
