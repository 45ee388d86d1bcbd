"""Row-group sinks: where finished row groups go, and the tables they are made of.

Design note
-----------
The engine finishes row groups out of order and hands each one, as a ``pyarrow.Table``, to a
*sink*. Two sinks share one contract (``tests/test_sink.py`` runs the same suite over both):

* :class:`ParquetSink` writes one parquet file per row group plus a ``metadata.json`` run
  record (layout and reading recipes: ``docs/output-layout.md``);
* :class:`MemorySink` keeps the tables in memory (``preview``, tests).

Mental model: **a row group is written when its entry is in the run record.** For the parquet
sink the record is ``metadata.json`` and a write goes

1. serialise the table into ``<out>/.tmp/<name>.<random>``, ``flush`` + ``os.fsync``;
2. last look at cancellation (``trio.from_thread.check_cancelled``), then ``os.replace`` into
   ``<out>/parquet-files/`` and ``fsync`` that directory — the point of no return;
3. under a ``trio.Lock``, rewrite ``metadata.json`` the same way (tmp + fsync + ``os.replace``
   + directory fsync) with the new entry.

All disk work runs in worker threads (``trio.to_thread.run_sync``), so the event loop never
waits on the disk. A reader only ever sees whole files, and ``metadata.json`` is always a
complete JSON document that lists only files that exist. Only a crash between steps 2 and 3
leaves a file without an entry; the next ``open`` deletes it. Prior art: NeMo Data Designer's
artifact storage (tmp + fsync + ``os.replace`` for its metadata, one ``batch_*.parquet`` per
row group); we add the directory fsyncs and make the metadata the commit record.

Cancellation keeps trio's rule "raised ``Cancelled`` ⇒ no effect" although a worker thread
cannot be stopped: see :class:`ParquetSink`.

Schema: every parquet file of a run must have the same schema, or ``pyarrow.dataset`` refuses
to read the directory. :func:`build_table` gives a column exactly its declared Arrow type, and
each sink holds every table to the schema of the first one it stored, which the run record
keeps for resuming (see :func:`build_table` and ``_SinkBase.write_row_group`` for the rules).

Trade-offs and open questions:

* ``metadata.json`` is rewritten (and fsynced) once per row group: O(row groups) bytes per
  write. Fine for thousands of row groups. XX: batch commits if runs with 10⁵ row groups
  appear (the reference moved to "first durable row group + final" in its #810).
* File names have five-digit ids; past ``row-group-99999`` the lexical order of file names no
  longer matches the id order (the dataset still reads, rows come in a different order).
* An all-null column without a declared type in the *first* row group is stored as strings;
  later row groups with real values of another type are then refused (``SinkError``). Declare
  the type. XX: could rewrite the earlier all-null column instead.
"""

from __future__ import annotations

import abc
import base64
import binascii
import contextlib
import datetime as dt
import json
import math
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, TypeVar, TypeVarTuple, Unpack, final

import attrs
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import trio

from ._exceptions import OUTPUT_DIR_ARGUMENT, RESUME_ARGUMENT, SinkError

__all__ = [
    "FINAL_STATUSES",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "PARQUET_DIR",
    "TMP_DIR",
    "MemorySink",
    "ParquetSink",
    "ParquetWriter",
    "RowGroupEntry",
    "RunMetadata",
    "SinkStatistics",
    "build_table",
    "row_group_file",
]

FORMAT_VERSION: Final = 1
"""Version of the ``metadata.json`` layout; bumped on any incompatible change."""

PARQUET_DIR: Final = "parquet-files"
"""Folder (relative to the output directory) holding one parquet file per row group."""

TMP_DIR: Final = ".tmp"
"""Folder (relative to the output directory) for files being written; empty between writes."""

METADATA_FILE: Final = "metadata.json"
"""Name of the run record in the output directory."""

FINAL_STATUSES: Final = frozenset({"complete", "interrupted", "early_shutdown"})
"""The statuses :meth:`ParquetSink.close` accepts. An open run has status ``"running"``."""

_FILE_PATTERN: Final = re.compile(r"^row-group-(\d{5,})\.parquet$")

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

ParquetWriter = Callable[["pa.Table", BinaryIO], None]
"""Serialises a table into an open binary file (default: ``pq.write_table(table, file)``)."""


def row_group_file(row_group: int) -> str:
    """The path of a row group's parquet file, relative to the output directory.

    >>> row_group_file(3)
    'parquet-files/row-group-00003.parquet'
    """
    return f"{PARQUET_DIR}/row-group-{row_group:05d}.parquet"


# ---------------------------------------------------------------------------------------------
# Building tables
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The run record
# ---------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RowGroupEntry:
    """One written row group in the run record.

    Attributes:
      file: path of its parquet file relative to the output directory, or ``None`` when every
        row of the row group was dropped (no file is written for an empty row group).
      rows: rows stored (the row group's surviving rows).
      requested_rows: rows the row group was asked to produce; ``requested_rows - rows`` were
        dropped.
    """

    file: str | None
    rows: int
    requested_rows: int


@attrs.frozen(kw_only=True)
class RunMetadata:
    """The run record: the content of ``metadata.json`` (field by field in
    ``docs/output-layout.md``).

    ``config`` and ``summary`` hold dicts, so instances compare by value but are not hashable.
    """

    fingerprint: str
    config: Mapping[str, Any]
    num_records: int
    row_group_size: int
    status: str
    started_at: str
    updated_at: str
    finished_at: str | None = None
    schema: pa.Schema | None = None
    row_groups: Mapping[int, RowGroupEntry] = attrs.field(factory=dict)
    summary: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def rows_written(self) -> int:
        """Rows stored over every written row group."""
        return sum(entry.rows for entry in self.row_groups.values())

    @property
    def num_row_groups(self) -> int:
        """How many row groups the run has in total (the last one may be short)."""
        return -(-self.num_records // self.row_group_size)

    def with_entry(
        self, row_group: int, entry: RowGroupEntry, *, schema: pa.Schema | None, now: str
    ) -> RunMetadata:
        """A copy with one more written row group (and the run's schema, once known)."""
        row_groups = {**self.row_groups, row_group: entry}
        return attrs.evolve(self, row_groups=row_groups, schema=schema, updated_at=now)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON document (derived counts included, big ``config`` last)."""
        return {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "num_records": self.num_records,
            "row_group_size": self.row_group_size,
            "num_row_groups": self.num_row_groups,
            "rows_written": self.rows_written,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "schema": None if self.schema is None else _schema_to_json(self.schema),
            "row_groups": {
                str(rg): attrs.asdict(self.row_groups[rg]) for rg in sorted(self.row_groups)
            },
            "summary": _json_value(self.summary, "summary"),
            "config": _json_value(self.config, "config"),
        }

    @classmethod
    def from_json_dict(cls, data: Any, *, where: str) -> RunMetadata:
        """Parse a ``metadata.json`` document.

        Raises:
          SinkError: the document is not a run record of this format version; ``where`` names
            the file in the message.
        """
        try:
            return _parse_metadata(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise SinkError(
                f"{where} is not a trio_designer run record ({exc}); pass another "
                f"{OUTPUT_DIR_ARGUMENT} or remove the directory."
            ) from exc


def _parse_metadata(data: Any) -> RunMetadata:
    if not isinstance(data, dict):
        raise TypeError("the document is not a JSON object")
    version = data["format_version"]
    if version != FORMAT_VERSION:
        raise ValueError(f"format_version is {version!r}, this version reads {FORMAT_VERSION}")
    finished_at = data.get("finished_at")
    return RunMetadata(
        fingerprint=_typed(data, "fingerprint", str),
        config=_typed(data, "config", dict),
        num_records=_typed(data, "num_records", int),
        row_group_size=_typed(data, "row_group_size", int),
        status=_typed(data, "status", str),
        started_at=_typed(data, "started_at", str),
        updated_at=_typed(data, "updated_at", str),
        finished_at=None if finished_at is None else str(finished_at),
        schema=None if data["schema"] is None else _schema_from_json(data["schema"]),
        row_groups={
            int(rg): RowGroupEntry(
                file=_optional_str(entry, "file"),
                rows=_typed(entry, "rows", int),
                requested_rows=_typed(entry, "requested_rows", int),
            )
            for rg, entry in _typed(data, "row_groups", dict).items()
        },
        summary=_typed(data, "summary", dict),
    )


def _schema_to_json(schema: pa.Schema) -> dict[str, Any]:
    """The run's Arrow schema: readable column types, and the exact schema for resuming.

    Parquet cannot store every Arrow type as is (``timestamp[s]`` comes back as
    ``timestamp[ms]``), so the exact schema is kept here rather than re-read from a file.
    """
    return {
        "columns": [{"name": field.name, "type": str(field.type)} for field in schema],
        "arrow_ipc": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii"),
    }


def _schema_from_json(data: Any) -> pa.Schema:
    if not isinstance(data, dict):
        raise TypeError(f"field 'schema' should be an object, not {data!r}")
    encoded = _typed(data, "arrow_ipc", str)
    try:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded, validate=True)))
    except (pa.ArrowException, binascii.Error) as exc:
        raise ValueError(f"field 'schema.arrow_ipc' does not hold an Arrow schema ({exc})") from exc


def _typed(data: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"field {key!r} should be a {kind.__name__}, not {value!r}")
    return value


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data[key]
    if value is not None and not isinstance(value, str):
        raise TypeError(f"field {key!r} should be a string or null, not {value!r}")
    return value


def _json_value(value: Any, where: str) -> Any:
    """A JSON-compatible copy of ``value``.

    Tuples become lists, ``datetime``/``date`` become ISO strings, and non-finite floats
    (NaN, ±inf, which JSON cannot spell) become ``None``; anything else non-JSON is refused.

    Raises:
      TypeError: a value of another type; the message gives its path (``summary['x'][2]``).
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, Mapping):
        return {_json_key(k, where): _json_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be stored in metadata.json; use JSON types "
        f"(dict, list, str, int, float, bool, None)."
    )


def _json_key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"{where}: the key {key!r} is not a string; metadata.json keys are strings.")


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _opened_metadata(
    previous: RunMetadata | None,
    *,
    fingerprint: str,
    config: Mapping[str, Any],
    num_records: int,
    row_group_size: int,
    resume: bool,
    where: str,
    remedy: str,
) -> RunMetadata:
    """The run record of a run being opened: fresh, or continuing ``previous``.

    Raises:
      SinkError: ``previous`` is a different run (another fingerprint or row group size), or
        it has written row groups and ``resume`` is false.
    """
    now = _utc_now()
    fresh = RunMetadata(
        fingerprint=fingerprint,
        config=config,
        num_records=num_records,
        row_group_size=row_group_size,
        status="running",
        started_at=now,
        updated_at=now,
    )
    if previous is None:
        return fresh
    if previous.fingerprint != fingerprint:
        raise SinkError(
            f"{where} holds a different run (fingerprint {previous.fingerprint}, this run "
            f"{fingerprint}); {remedy}."
        )
    if previous.row_group_size != row_group_size:
        raise SinkError(
            f"{where} holds a run with row_group_size {previous.row_group_size}, but this run "
            f"uses {row_group_size}; {remedy}."
        )
    if previous.row_groups and not resume:
        raise SinkError(
            f"{where} already holds {len(previous.row_groups)} written row group(s) of this "
            f"run; pass {RESUME_ARGUMENT} to continue it, or {remedy}."
        )
    if previous.row_groups and not _plan_extends(previous, num_records):
        # The row groups already on disk must keep their plan: a run may grow by whole new
        # row groups, but not shrink, and not grow past a short last group (it would stay
        # short and the dataset would come out short of the new count).
        raise SinkError(
            f"{where} holds a run of {previous.num_records} records in row groups of "
            f"{previous.row_group_size}; it can be resumed with the same number of records"
            f"{_growth_hint(previous)}, not {num_records}; or {remedy}."
        )
    return attrs.evolve(
        fresh,
        started_at=previous.started_at,
        schema=previous.schema,
        row_groups=previous.row_groups,
    )


def _plan_extends(previous: RunMetadata, num_records: int) -> bool:
    """Whether ``num_records`` keeps every row group of ``previous`` as planned."""
    if num_records == previous.num_records:
        return True
    return num_records > previous.num_records and (
        previous.num_records % previous.row_group_size == 0
    )


def _growth_hint(previous: RunMetadata) -> str:
    if previous.num_records % previous.row_group_size == 0:
        return " or more"
    return ""


# ---------------------------------------------------------------------------------------------
# Shared sink machinery
# ---------------------------------------------------------------------------------------------

SinkState = Literal["new", "open", "closing", "closed"]


@attrs.frozen(kw_only=True)
class SinkStatistics:
    """A snapshot of a sink, for tests and progress displays.

    Attributes:
      state: ``"new"`` (never opened), ``"open"``, ``"closing"`` (waiting for writes in flight
        before the final record) or ``"closed"``.
      row_groups_written: row groups in the run record (including those of an earlier session
        of the same run, and empty ones).
      rows_written: rows stored over those row groups.
      writes_in_flight: ``write_row_group`` calls that have started and not yet returned.
    """

    state: SinkState
    row_groups_written: int
    rows_written: int
    writes_in_flight: int


class _SchemaGuard:
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
        raise SinkError(
            f"row group {row_group}: column {field.name!r} holds {column.type} values, but "
            f"earlier row groups stored it as {field.type}; every row group file needs the same "
            f"schema, so declare the column's type (dtype) or make its generator return one type."
        )


class _WritesInFlight:
    """Row groups being written, and a way to wait until there are none."""

    def __init__(self) -> None:
        self.row_groups: set[int] = set()
        self._lot = trio.lowlevel.ParkingLot()

    def add(self, row_group: int) -> None:
        self.row_groups.add(row_group)

    def discard(self, row_group: int) -> None:
        self.row_groups.discard(row_group)
        if not self.row_groups:
            self._lot.unpark_all()

    async def wait_idle(self) -> None:
        while self.row_groups:
            await self._lot.park()


class _SinkBase(abc.ABC):
    """Lifecycle, validation and the commit protocol shared by both sinks.

    Subclasses supply storage: ``_open_storage`` (read a previous record, prepare storage,
    store the opened record), ``_publish`` (make a table durable and visible; cancellable until
    its point of no return), ``_unpublish`` (undo a publish whose commit failed), ``_persist``
    (store a record) and ``_finish`` (clean up after the final record).

    Invariant: ``_meta`` is what storage holds; it is replaced only after ``_persist``
    succeeded, under ``_lock``, so concurrent commits never lose each other's entries
    (``test_concurrent_writes_are_all_recorded``).
    """

    def __init__(self) -> None:
        self._state: SinkState = "new"
        self._meta: RunMetadata | None = None
        self._lock = trio.Lock()  # serialises record updates: each one sees the previous
        self._in_flight = _WritesInFlight()
        self._guard = _SchemaGuard()

    async def open(
        self,
        *,
        fingerprint: str,
        config: Mapping[str, Any],
        num_records: int,
        row_group_size: int,
        resume: bool = True,
    ) -> None:
        """Prepare storage and record the run as ``"running"``.

        * Nothing stored yet (for the parquet sink: a missing or empty directory): a new run.
        * A record of the same run (same fingerprint and row group size; finished or not):
          with ``resume`` (the default) the run continues; without it, a record that has
          written row groups is refused (an empty one is simply reused). A continued run
          keeps its written row groups (:meth:`completed_row_groups`) and ``started_at``;
          ``summary`` is reset, ``num_records`` and ``config`` take the new values. The
          parquet sink also forgets entries whose file is gone and deletes orphan parquet
          files and stale tmp files left by a crash.
        * Anything else is refused.

        Re-opening after :meth:`close` is allowed and behaves the same. A cancelled ``open``
        of the parquet sink may have prepared the directory; opening again is safe.

        Args:
          fingerprint: the config fingerprint (``config_fingerprint(config)``).
          config: the pipeline config as a JSON-compatible dict, stored in the record.
          num_records: rows requested for the whole run.
          row_group_size: rows per row group (the last one may be short).
          resume: whether row groups already written for this run may be kept; pass
            ``False`` for a run that will write every row group (else a second write of a
            row group fails late, with ``ValueError``).

        Raises:
          SinkError: storage holds a different run (another fingerprint or row group size),
            or written row groups of this run and ``resume`` is false.
            Parquet sink only: the path is a file, the directory is not empty but has no
            ``metadata.json``, its ``metadata.json`` is unreadable, or the disk failed.
          RuntimeError: the sink is already open.
          ValueError: ``num_records < 0`` or ``row_group_size < 1``.
          TypeError: ``config`` holds a value JSON cannot store.
        """
        if self._state in ("open", "closing"):
            raise RuntimeError("the sink is already open; close() it before opening it again.")
        if num_records < 0 or row_group_size <= 0:
            raise ValueError(
                f"num_records must be >= 0 and row_group_size > 0, got {num_records} and "
                f"{row_group_size}."
            )
        config = _json_value(config, "config")
        meta = await self._open_storage(
            fingerprint=fingerprint,
            config=config,
            num_records=num_records,
            row_group_size=row_group_size,
            resume=resume,
        )
        self._meta, self._state = meta, "open"
        self._guard = _SchemaGuard()
        self._guard.reference = meta.schema

    async def write_row_group(
        self, row_group: int, table: pa.Table, *, requested_rows: int
    ) -> str | None:
        """Store one row group durably and add it to the run record.

        Safe to call from many tasks at once; record updates are serialised by a lock. An
        empty table (every row dropped) stores nothing; its entry is recorded with
        ``file: null`` and the call returns ``None``.

        Schema rule: the first non-empty table written (or, when continuing a run, the first
        stored one) fixes the schema. A later table must have the same column names in the
        same order; a column whose type differs is re-typed when it is all null, and refused
        otherwise (nothing is stored).

        Cancellation: returned ⇒ stored and recorded; raised ``Cancelled`` ⇒ nothing stored,
        nothing recorded (see :class:`ParquetSink` for the thread behind this).

        Args:
          row_group: the row group id, ``0 <= row_group < ceil(num_records/row_group_size)``.
          table: the surviving rows (dropped rows already removed), e.g. from
            :func:`build_table`.
          requested_rows: the rows the row group was asked for
            (``table.num_rows <= requested_rows <= row_group_size``).

        Returns:
          The file's path relative to the output directory
          (``"parquet-files/row-group-00003.parquet"``), or ``None`` for an empty table.

        Raises:
          SinkError: the disk failed, or the schema differs from earlier row groups; nothing
            was stored.
          ValueError: the row group id is out of range or already written, or
            ``requested_rows`` is out of range.
          RuntimeError: the sink is not open.
          trio.Cancelled: cancelled before the row group was published; nothing was stored.
        """
        self._check_write(row_group, table, requested_rows)
        await trio.lowlevel.checkpoint_if_cancelled()
        table = self._guard.conform(row_group, table)
        rows = int(table.num_rows)
        file = row_group_file(row_group) if rows else None
        entry = RowGroupEntry(file=file, rows=rows, requested_rows=requested_rows)
        self._in_flight.add(row_group)
        try:
            if file is not None:
                await self._publish(file, table)  # Cancelled here: nothing was stored
            # Past the point of no return: the commit must happen whatever the caller's scope
            # does, or a visible file would be missing from the record. It is short (one small
            # JSON write), and a thread cannot be interrupted anyway, hence no timeout.
            with trio.CancelScope(shield=True):
                await self._commit(row_group, entry, table)
        finally:
            self._in_flight.discard(row_group)
        return file

    async def close(self, *, status: str, summary: Mapping[str, Any]) -> None:
        """Wait for writes in flight, then store the final record (and clean up).

        Like ``trio.abc.AsyncResource.aclose``, a cancelled ``close`` still finishes (it is
        shielded: waiting for in-flight writes and one JSON write are both short) and then
        raises ``Cancelled``. Writes started after ``close`` began are refused.

        Args:
          status: ``"complete"``, ``"interrupted"`` or ``"early_shutdown"``.
          summary: JSON-compatible run summary (counts, per-column stats, usage), stored as
            given except that tuples become lists, datetimes ISO strings and NaN/inf ``null``.

        Raises:
          SinkError: the disk failed (the sink stays open; ``close`` may be retried).
          ValueError: unknown ``status``.
          TypeError: ``summary`` holds a value JSON cannot store.
          RuntimeError: the sink is not open.
        """
        if self._state != "open":
            raise RuntimeError(f"close() needs an open sink, but the sink is {self._state}.")
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(FINAL_STATUSES)}, got {status!r}.")
        summary = _json_value(summary, "summary")
        self._state = "closing"
        try:
            with trio.CancelScope(shield=True):
                await self._in_flight.wait_idle()
                await self._commit_final(status, summary)
                await self._finish()
        except BaseException:
            self._state = "open"  # the final record was not stored: close() may be retried
            raise
        self._state = "closed"
        await trio.lowlevel.checkpoint_if_cancelled()

    def completed_row_groups(self) -> dict[int, int]:
        """Row group id → rows stored, for every row group in the run record (for resume)."""
        meta = self._require_meta("completed_row_groups()")
        return {rg: meta.row_groups[rg].rows for rg in sorted(meta.row_groups)}

    def metadata(self) -> dict[str, Any]:
        """The run record as a JSON-compatible dict (for the parquet sink: ``metadata.json``)."""
        return self._require_meta("metadata()").to_json_dict()

    def statistics(self) -> SinkStatistics:
        """A snapshot of the sink's state and counts."""
        meta = self._meta
        return SinkStatistics(
            state=self._state,
            row_groups_written=0 if meta is None else len(meta.row_groups),
            rows_written=0 if meta is None else meta.rows_written,
            writes_in_flight=len(self._in_flight.row_groups),
        )

    # -- internals ----------------------------------------------------------------------------

    def _require_meta(self, what: str) -> RunMetadata:
        if self._meta is None:
            raise RuntimeError(f"{what} needs a sink that was opened; call open() first.")
        return self._meta

    def _check_write(self, row_group: int, table: pa.Table, requested_rows: int) -> None:
        if self._state != "open":
            raise RuntimeError(
                f"write_row_group() needs an open sink, but the sink is {self._state}; call "
                f"open() first, and write every row group before close()."
            )
        meta = self._require_meta("write_row_group()")
        if not 0 <= row_group < meta.num_row_groups:
            raise ValueError(
                f"row group {row_group} does not exist: this run has {meta.num_row_groups} row "
                f"groups (ids 0 to {meta.num_row_groups - 1})."
            )
        if row_group in meta.row_groups or row_group in self._in_flight.row_groups:
            raise ValueError(f"row group {row_group} was already written; write it only once.")
        if not table.num_rows <= requested_rows <= meta.row_group_size:
            raise ValueError(
                f"row group {row_group}: requested_rows must be between the table's "
                f"{table.num_rows} rows and row_group_size {meta.row_group_size}, got "
                f"{requested_rows}."
            )

    async def _commit(self, row_group: int, entry: RowGroupEntry, table: pa.Table) -> None:
        async with self._lock:
            meta = self._require_meta("write_row_group()")
            updated = meta.with_entry(
                row_group, entry, schema=self._guard.reference, now=_utc_now()
            )
            try:
                await self._persist(updated)
            except BaseException:
                if entry.file is not None:
                    await self._unpublish(entry.file)
                raise
            self._meta = updated
            self._stored(row_group, table)

    async def _commit_final(self, status: str, summary: Mapping[str, Any]) -> None:
        async with self._lock:
            now = _utc_now()
            final_meta = attrs.evolve(
                self._require_meta("close()"),
                status=status,
                summary=summary,
                updated_at=now,
                finished_at=now,
            )
            await self._persist(final_meta)
            self._meta = final_meta

    @abc.abstractmethod
    def _stored(self, row_group: int, table: pa.Table) -> None:
        """A row group was committed (the memory sink keeps its table)."""

    @abc.abstractmethod
    async def _open_storage(
        self,
        *,
        fingerprint: str,
        config: Mapping[str, Any],
        num_records: int,
        row_group_size: int,
        resume: bool,
    ) -> RunMetadata: ...

    @abc.abstractmethod
    async def _publish(self, file: str, table: pa.Table) -> None: ...

    @abc.abstractmethod
    async def _unpublish(self, file: str) -> None: ...

    @abc.abstractmethod
    async def _persist(self, meta: RunMetadata) -> None: ...

    @abc.abstractmethod
    async def _finish(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Parquet sink
# ---------------------------------------------------------------------------------------------


def _default_parquet_writer(table: pa.Table, file: BinaryIO) -> None:
    pq.write_table(table, file)


@final
class ParquetSink(_SinkBase):
    """Writes each row group to its own parquet file, with a ``metadata.json`` run record.

    Layout (details and reading recipes in ``docs/output-layout.md``)::

        <output_dir>/
          metadata.json                         # the run record, replaced atomically
          parquet-files/row-group-00000.parquet # one file per non-empty row group
          .tmp/                                 # files being written; removed by close()

    ``pyarrow.dataset.dataset(output_dir / "parquet-files")`` reads the run as one dataset.

    Usage::

        sink = ParquetSink("out")
        await sink.open(fingerprint=fp, config=config.to_dict(), num_records=n,
                        row_group_size=size)
        for rg in sink.completed_row_groups(): ...   # skip these when resuming
        path = await sink.write_row_group(rg, build_table(values, types), requested_rows=k)
        await sink.close(status="complete", summary={...})

    Invariants:

    * Every file in ``parquet-files/`` is complete: bytes are written to ``.tmp/`` and fsynced
      before ``os.replace`` moves them into place.
    * ``metadata.json`` is always one complete JSON document, and every file its
      ``row_groups`` name exists with the rows it says. (A file is renamed into place before
      its entry is committed, so a *crash* between the two leaves a file without an entry;
      the next :meth:`open` deletes such orphans and stale tmp files.)
    * Every file has the same schema (the first non-empty table's; see
      :meth:`write_row_group`).
    * After :meth:`close`, ``.tmp/`` is gone.

    Cancellation: ``trio.to_thread.run_sync`` does not abandon its thread when the calling
    task is cancelled — it waits for the thread to finish, and then *returns normally*;
    ``Cancelled`` arrives at the caller's next checkpoint. So a write, once its thread has
    started, would always complete and be committed. We keep trio's rule "if it raised
    ``Cancelled``, it had no effect" instead: the thread asks
    ``trio.from_thread.check_cancelled()`` right before ``os.replace``; when cancellation was
    requested it deletes its tmp file and raises ``Cancelled`` (nothing visible, nothing
    recorded). After the rename the write is past its point of no return: the metadata
    commit runs shielded, :meth:`write_row_group` returns the path, and the caller sees
    ``Cancelled`` at its next checkpoint. Hence: **returned ⇒ durable and recorded; raised ⇒
    no file, no entry, no tmp file.** A cancelled caller still waits for the serialisation to
    finish (a thread cannot be stopped); the engine should shield the checkpoint of a finished
    row group it wants to keep when the run is cancelled.

    Not for several processes writing one directory at once (there is no file lock).
    """

    def __init__(
        self, output_dir: str | os.PathLike[str], *, parquet_writer: ParquetWriter | None = None
    ) -> None:
        """Create a sink for ``output_dir`` (nothing touches the disk before :meth:`open`).

        Args:
          output_dir: the run's output directory; created by :meth:`open` if missing.
          parquet_writer: how a table is serialised into the open tmp file, for example
            ``lambda t, f: pq.write_table(t, f, compression="zstd")``; the default is
            ``pq.write_table(table, file)``. It runs in a worker thread.
        """
        super().__init__()
        self._root = Path(output_dir)
        self._write_parquet = parquet_writer or _default_parquet_writer

    @property
    def output_dir(self) -> Path:
        """The output directory."""
        return self._root

    @property
    def dataset_dir(self) -> Path:
        """The folder to hand to ``pyarrow.dataset.dataset`` (``<output_dir>/parquet-files``)."""
        return self._root / PARQUET_DIR

    # -- storage --------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"output directory '{self._root}'"

    async def _open_storage(
        self,
        *,
        fingerprint: str,
        config: Mapping[str, Any],
        num_records: int,
        row_group_size: int,
        resume: bool,
    ) -> RunMetadata:
        def open_sync() -> RunMetadata:
            previous = self._read_previous()
            meta = _opened_metadata(
                previous,
                fingerprint=fingerprint,
                config=config,
                num_records=num_records,
                row_group_size=row_group_size,
                resume=resume,
                where=self._where(),
                remedy=f"pass another {OUTPUT_DIR_ARGUMENT} or remove the directory",
            )
            meta = self._prepare_directories(meta)
            self._persist_sync(meta)
            return meta

        return await self._run_sync(open_sync)

    def _read_previous(self) -> RunMetadata | None:
        root = self._root
        if root.exists() and not root.is_dir():
            raise SinkError(f"{self._where()} is a file; pass another {OUTPUT_DIR_ARGUMENT}.")
        meta_path = root / METADATA_FILE
        if not meta_path.exists():
            if root.exists() and not _is_scaffolding_only(root):
                raise SinkError(
                    f"{self._where()} is not empty and has no {METADATA_FILE}, so it holds no "
                    f"trio_designer run; pass another {OUTPUT_DIR_ARGUMENT} or empty the "
                    "directory."
                )
            return None
        try:
            data = json.loads(meta_path.read_bytes())
        except ValueError as exc:
            raise SinkError(
                f"{meta_path} is not valid JSON ({exc}); pass another {OUTPUT_DIR_ARGUMENT} "
                "or remove the directory."
            ) from exc
        return RunMetadata.from_json_dict(data, where=str(meta_path))

    def _prepare_directories(self, meta: RunMetadata) -> RunMetadata:
        """Create the folders, clear stale tmp files and orphans, forget missing files."""
        root = self._root
        (root / PARQUET_DIR).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(root / TMP_DIR, ignore_errors=True)  # stale tmp files of a crash
        (root / TMP_DIR).mkdir(exist_ok=True)
        recorded = {entry.file for entry in meta.row_groups.values() if entry.file}
        for path in (root / PARQUET_DIR).iterdir():
            relative = f"{PARQUET_DIR}/{path.name}"
            if _FILE_PATTERN.match(path.name) and relative not in recorded:
                path.unlink()  # an orphan: renamed into place, but never committed
        kept = {
            rg: entry
            for rg, entry in meta.row_groups.items()
            if entry.file is None or (root / entry.file).is_file()
        }
        _fsync_dir(root / PARQUET_DIR)
        return attrs.evolve(meta, row_groups=kept)

    async def _publish(self, file: str, table: pa.Table) -> None:
        await self._run_sync(self._publish_sync, file, table)

    def _publish_sync(self, file: str, table: pa.Table) -> None:
        final_path = self._root / file
        tmp_path = self._tmp_path(final_path.name)
        try:
            with tmp_path.open("xb") as stream:
                self._write_parquet(table, stream)
                stream.flush()
                os.fsync(stream.fileno())
            trio.from_thread.check_cancelled()  # last chance to give up with no effect
            os.replace(tmp_path, final_path)
        finally:
            tmp_path.unlink(missing_ok=True)
        try:
            _fsync_dir(final_path.parent)
        except BaseException:
            final_path.unlink(missing_ok=True)
            raise

    async def _unpublish(self, file: str) -> None:
        def unpublish_sync() -> None:
            (self._root / file).unlink(missing_ok=True)
            _fsync_dir(self._root / PARQUET_DIR)

        with contextlib.suppress(SinkError):  # best effort: the next open() deletes the orphan
            await self._run_sync(unpublish_sync)

    async def _persist(self, meta: RunMetadata) -> None:
        await self._run_sync(self._persist_sync, meta)

    def _persist_sync(self, meta: RunMetadata) -> None:
        data = json.dumps(meta.to_json_dict(), indent=2, allow_nan=False).encode() + b"\n"
        final_path = self._root / METADATA_FILE
        tmp_path = self._tmp_path(METADATA_FILE)
        try:
            with tmp_path.open("xb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp_path, final_path)
        finally:
            tmp_path.unlink(missing_ok=True)
        _fsync_dir(self._root)

    async def _finish(self) -> None:
        await self._run_sync(shutil.rmtree, self._root / TMP_DIR, True)

    def _stored(self, row_group: int, table: pa.Table) -> None:
        pass  # the file is the storage

    def _tmp_path(self, name: str) -> Path:
        return self._root / TMP_DIR / f"{name}.{secrets.token_hex(8)}"

    async def _run_sync(self, fn: Callable[[Unpack[_Ts]], _T], *args: *_Ts) -> _T:
        """Run ``fn`` in a worker thread; map ``OSError``/Arrow errors to ``SinkError``."""
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except SinkError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise SinkError(
                f"writing to {self._where()} failed: {exc}; check the disk (space, "
                f"permissions) and run again."
            ) from exc


def _is_scaffolding_only(root: Path) -> bool:
    """True if ``root`` holds nothing but our own empty ``.tmp``/``parquet-files`` folders."""
    for entry in root.iterdir():
        if entry.name not in (TMP_DIR, PARQUET_DIR) or not entry.is_dir():
            return False
        if any(entry.iterdir()):
            return False
    return True


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, an unlink) durable. A no-op on Windows."""
    if sys.platform == "win32":  # pragma: no cover - directories cannot be opened there
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Memory sink
# ---------------------------------------------------------------------------------------------


@final
class MemorySink(_SinkBase):
    """Keeps row groups in memory: the :class:`ParquetSink` contract without a disk.

    For ``preview`` and tests. The same calls, rules, errors and run record as the parquet
    sink (``metadata()`` returns what ``metadata.json`` would hold); ``write_row_group``
    returns the same relative path the parquet sink would use, though nothing is on disk.
    Re-opening the same instance continues its run exactly as the parquet sink continues a
    directory. Writes never block, but every async method is still a checkpoint, and a
    write that raises ``Cancelled`` stored nothing.

    Usage::

        sink = MemorySink()
        await sink.open(fingerprint=fp, config={}, num_records=10, row_group_size=10)
        await sink.write_row_group(0, table, requested_rows=10)
        await sink.close(status="complete", summary={})
        sink.table()   # every row group, in row group id order
    """

    def __init__(self) -> None:
        super().__init__()
        self._tables: dict[int, pa.Table] = {}

    def table(self) -> pa.Table:
        """Every stored row group concatenated in row group id order.

        Returns an empty table without columns when no row was stored.
        """
        tables = [self._tables[rg] for rg in sorted(self._tables)]
        return pa.concat_tables(tables) if tables else pa.table({})

    def _stored(self, row_group: int, table: pa.Table) -> None:
        if table.num_rows:
            self._tables[row_group] = table

    async def _open_storage(
        self,
        *,
        fingerprint: str,
        config: Mapping[str, Any],
        num_records: int,
        row_group_size: int,
        resume: bool,
    ) -> RunMetadata:
        await trio.lowlevel.checkpoint()
        meta = _opened_metadata(
            self._meta,
            fingerprint=fingerprint,
            config=config,
            num_records=num_records,
            row_group_size=row_group_size,
            resume=resume,
            where="this MemorySink",
            remedy="use a new MemorySink",
        )
        return meta

    async def _publish(self, file: str, table: pa.Table) -> None:
        await trio.lowlevel.checkpoint()  # the table is kept by _stored() on commit

    async def _unpublish(self, file: str) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _persist(self, meta: RunMetadata) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _finish(self) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()
