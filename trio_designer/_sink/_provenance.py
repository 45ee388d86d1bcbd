"""Per-cell provenance: what happened to every cell of a row group, as one Arrow table.

The engine notes only the exceptions while a row group runs (:class:`CellLog`: failures,
retries, skips, the model calls of LLM-bound cells); every other cell is ``ok``. The sink turns
the log into a table (:func:`cells_table`, in its worker thread for the parquet sink) and
stores it next to the row group: ``provenance/row-group-NNNNN.parquet``, published with the row
group's data file and recorded in the same run-record entry, so a resumed run never sees one
without the other. ``docs/cost.md`` documents the columns and how to query them.

Statuses (:data:`CELL_STATUSES`):

=====================  ======================================================================
``ok``                 generated; its value is in the dataset
``cached``             generated from answers the response cache served (no request paid)
``skipped``            ``skip_when`` held (or an upstream cell was skipped): ``skip_value``
``failed``             its generation failed for good and dropped its row (or, for a
                       full-column task, its row group)
``dropped_upstream``   its row was dropped by another cell's failure; its value is not in the
                       dataset (tokens and cost still say what it spent, if it ran)
``filtered``           its row was removed after generation by a per-row-group processor
                       (``filter``, ``dedup``, a custom one): it is not in the dataset
=====================  ======================================================================

One row per (row, column) of the pipeline (dropped columns included: they were generated),
plus, for a full-column task that called a model, one row with ``row_id`` null carrying that
task's usage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from .._core._cellusage import CellUsage
from .._exceptions import SinkError
from ._layout import METADATA_FILE
from ._metadata import RunMetadata

__all__ = [
    "CELLS_SCHEMA",
    "CELL_STATUSES",
    "ROW_ID",
    "CellLog",
    "cells_table",
    "read_cells",
    "recorded_spend",
]

ROW_ID: Final = "_row_id"
"""The dataset's row id column: the global row index (0-based over the whole run). The
provenance sidecar's ``row_id`` joins on it. A reserved name: no user column may use it."""

CELL_STATUSES: Final = ("ok", "cached", "skipped", "failed", "dropped_upstream", "filtered")
"""Every status a cell can have, in the order of the status dictionary."""

_STATUS_INDEX: Final = {status: index for index, status in enumerate(CELL_STATUSES)}
_STATUS_TYPE: Final = pa.dictionary(pa.int8(), pa.string())

CELLS_SCHEMA: Final = pa.schema(
    [
        pa.field("row_id", pa.int64()),
        pa.field("row_group", pa.int32()),
        pa.field("column", pa.string()),
        pa.field("status", _STATUS_TYPE),
        pa.field("attempts", pa.int32()),
        pa.field("error_class", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("model_alias", pa.string()),
        pa.field("model", pa.string()),
        pa.field("finish_reason", pa.string()),
        pa.field("requests", pa.int32()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("reasoning_tokens", pa.int64()),
        pa.field("cached_input_tokens", pa.int64()),
        pa.field("latency_s", pa.float64()),
        pa.field("cost", pa.float64()),
    ]
)
"""The sidecar's schema (the same in every file)."""

CellKey = tuple[str, int | None]
"""(column, local row) of a cell; row ``None``: a full-column task."""


class CellLog:
    """What the engine noted about one row group's cells: only the exceptions.

    Filled by the engine while the row group runs; read by the sink (in a worker thread) once
    the row group is finished, when nobody writes it any more.

    Args:
      row_group: the row group id.
      start: the global index of its first row.
      size: its rows.
      columns: the pipeline's columns, in order.
      skipped: column -> local rows whose cell was skipped (the buffer's sets, shared).
    """

    __slots__ = (
        "attempts",
        "columns",
        "dropped",
        "errors",
        "failed",
        "filtered",
        "row_group",
        "size",
        "skipped",
        "start",
        "usage",
    )

    def __init__(
        self,
        row_group: int,
        start: int,
        size: int,
        columns: Sequence[str],
        skipped: Mapping[str, set[int]] | None = None,
    ) -> None:
        self.row_group = row_group
        self.start = start
        self.size = size
        self.columns = tuple(columns)
        self.skipped: Mapping[str, set[int]] = skipped if skipped is not None else {}
        #: cell -> its model calls (LLM-bound cells only).
        self.usage: dict[CellKey, CellUsage] = {}
        #: cell -> (error class, message) of its last failure, retried or final.
        self.errors: dict[CellKey, tuple[str, str]] = {}
        #: cell -> how many of its attempts failed, for cells that failed at least once.
        self.attempts: dict[CellKey, int] = {}
        #: cells whose failure dropped their row (or, row ``None``, the row group).
        self.failed: set[CellKey] = set()
        #: local rows dropped (set by the engine at the checkpoint).
        self.dropped: frozenset[int] = frozenset()
        #: local rows removed by a processor after generation (set by the engine at the checkpoint).
        self.filtered: frozenset[int] = frozenset()

    def usage_for(self, column: str, row: int | None) -> CellUsage:
        """The tally of a cell's model calls, created on first use (kept across attempts)."""
        key = (column, row)
        usage = self.usage.get(key)
        if usage is None:
            usage = self.usage[key] = CellUsage()
        return usage

    def spend(self) -> tuple[float, int, int]:
        """What the row group's cells paid: (cost, input + output tokens, requests), answers
        served by the response cache left out; a model without a price adds no cost."""
        cost, tokens, requests = 0.0, 0, 0
        for usage in self.usage.values():
            cost += usage.cost or 0.0
            tokens += usage.paid_tokens
            requests += usage.paid_requests
        return cost, tokens, requests

    def note_failure(
        self, column: str, row: int | None, error: BaseException, attempts: int, *, final: bool
    ) -> None:
        """A cell failed (``final``: for good, its row is dropped; else it will be retried)."""
        key = (column, row)
        self.errors[key] = (type(error).__name__, str(error)[:500])
        self.attempts[key] = attempts
        if final:
            self.failed.add(key)


def cells_table(log: CellLog) -> pa.Table:
    """The provenance table of a row group (:data:`CELLS_SCHEMA`), built from its log.

    Cost is linear in rows x columns with small constants (lists multiplied, then patched at
    the noted cells); meant to run off the event loop. Every column's records go into one set
    of Python lists and each table column is converted to Arrow once: for a small row group
    the per-array fixed cost of Arrow is most of the work (one table per column, then
    ``concat_tables``, cost ~3x as much for 10 rows x 6 columns), and this runs on the path
    from a run's last answer to ``create()`` returning.
    """
    n = log.size
    full_failed = {c for c, r in log.failed if r is None}
    row_ids: list[int | None] = []
    columns: list[str] = []
    statuses: list[int] = []
    attempts: list[int | None] = []
    nullable: dict[str, list[Any]] = {name: [] for name in _NULLABLE}
    noted_rows = _noted_rows(log)
    for column in log.columns:
        column_statuses = [_STATUS_INDEX["ok"]] * n
        column_attempts: list[int | None] = [1] * n
        for local in log.skipped.get(column, ()):
            column_statuses[local] = _STATUS_INDEX["skipped"]
            column_attempts[local] = 0
        for local in _rows_of(column, log.usage):
            if log.usage[(column, local)].all_cached:
                column_statuses[local] = _STATUS_INDEX["cached"]
        for local in log.filtered:
            column_statuses[local] = _STATUS_INDEX["filtered"]
        for local in log.dropped:
            column_statuses[local] = _STATUS_INDEX["dropped_upstream"]
            column_attempts[local] = None
        for local in _rows_of(column, log.attempts):
            # ``count`` attempts failed; a cell that went on to succeed made one more.
            count = log.attempts[(column, local)]
            ended = (column, local) in log.failed or local in log.dropped
            column_attempts[local] = count if ended else count + 1
        failed = _STATUS_INDEX["failed"]
        if column in full_failed:
            column_statuses = [failed] * n
            column_attempts = [log.attempts.get((column, None))] * n
        for local in _rows_of(column, log.failed):
            column_statuses[local] = failed
        row_ids.extend(range(log.start, log.start + n))
        columns.extend([column] * n)
        statuses.extend(column_statuses)
        attempts.extend(column_attempts)
        _extend_noted(nullable, log, column, n, noted_rows.get(column, ()))
        full = log.usage.get((column, None))
        if full is not None:
            fields: dict[str, list[Any] | None] = {name: [None] for name in _NULLABLE}
            _fill(fields, 0, full, log.errors.get((column, None)))
            for name in _NULLABLE:
                nullable[name].extend(fields[name] or ())
            row_ids.append(None)
            columns.append(column)
            statuses.append(_STATUS_INDEX["failed" if column in full_failed else "ok"])
            attempts.append(log.attempts.get((column, None), 1))
    if not columns:
        return CELLS_SCHEMA.empty_table()
    arrays: list[pa.Array] = [
        pa.array(row_ids, pa.int64()),
        pa.repeat(pa.scalar(log.row_group, pa.int32()), len(columns)),
        pa.array(columns, pa.string()),
        pa.DictionaryArray.from_arrays(
            pa.array(statuses, pa.int8()), pa.array(CELL_STATUSES, pa.string())
        ),
        pa.array(attempts, pa.int32()),
    ]
    for name in _NULLABLE:
        arrays.append(pa.array(nullable[name], CELLS_SCHEMA.field(name).type))
    return pa.Table.from_arrays(arrays, schema=CELLS_SCHEMA)


def _rows_of(column: str, keys: Iterable[CellKey]) -> list[int]:
    """The local rows of ``column``'s cells among ``keys`` (full-column keys left out)."""
    return [row for col, row in keys if col == column and row is not None]


def _noted_rows(log: CellLog) -> dict[str, list[tuple[int, CellKey]]]:
    """Column -> its cells with a usage or an error noted, (local row, key) in row order."""
    noted: dict[str, list[tuple[int, CellKey]]] = {}
    for key in {*log.usage, *log.errors}:
        column, row = key
        if row is not None:
            noted.setdefault(column, []).append((row, key))
    for cells in noted.values():
        cells.sort()
    return noted


def _extend_noted(
    nullable: dict[str, list[Any]],
    log: CellLog,
    column: str,
    n: int,
    noted: Sequence[tuple[int, CellKey]],
) -> None:
    """Append ``column``'s ``n`` rows of the nullable fields (its noted cells filled in)."""
    fields: dict[str, list[Any] | None] = {name: None for name in _NULLABLE}
    if noted:
        for name in _NULLABLE:
            fields[name] = [None] * n
        for row, key in noted:
            _fill(fields, row, log.usage.get(key), log.errors.get(key))
    for name in _NULLABLE:
        values = fields[name]
        nullable[name].extend([None] * n if values is None else values)


_NULLABLE: Final = tuple(f.name for f in CELLS_SCHEMA)[5:]


def _fill(
    fields: dict[str, list[Any] | None],
    row: int,
    usage: CellUsage | None,
    error: tuple[str, str] | None,
) -> None:
    def put(name: str, value: Any) -> None:
        values = fields[name]
        assert values is not None
        values[row] = value

    if error is not None:
        put("error_class", error[0])
        put("error_message", error[1])
    if usage is None:
        return
    put("model_alias", usage.alias)
    put("model", usage.model)
    put("finish_reason", usage.finish_reason)
    put("requests", usage.requests + usage.failed_requests)
    put("input_tokens", usage.input_tokens)
    put("output_tokens", usage.output_tokens)
    put("reasoning_tokens", usage.reasoning_tokens)
    put("cached_input_tokens", usage.cached_input_tokens)
    put("latency_s", usage.latency)
    put("cost", usage.cost)


def read_cells(output_dir: str | os.PathLike[str]) -> pa.Table:
    """Every provenance record of an output directory, in row group order: the files its run
    record names (a crash's orphans and files of unrecorded row groups are left out).

    Raises:
      SinkError: ``metadata.json`` is missing or unreadable.
    """
    root = Path(output_dir)
    meta_path = root / METADATA_FILE
    try:
        data = json.loads(meta_path.read_bytes())
        meta = RunMetadata.from_json_dict(data, where=str(meta_path))
    except (OSError, ValueError) as exc:
        raise SinkError(
            f"{meta_path} cannot be read ({exc}); pass the output directory of a run"
        ) from exc
    files = [meta.row_groups[rg].cells for rg in sorted(meta.row_groups)]
    paths = [str(root / f) for f in files if f is not None]
    if not paths:
        return CELLS_SCHEMA.empty_table()
    import pyarrow.dataset as pads  # not at import time: it may import pandas

    return pads.dataset(paths, format="parquet", schema=CELLS_SCHEMA).to_table()


def recorded_spend(
    output_dir: str | os.PathLike[str], entries: Mapping[int, Mapping[str, Any]]
) -> tuple[float, int, int, int]:
    """What the written row groups ``entries`` (run-record entries, by row group) spent, from
    their provenance files: (cost, input + output tokens, requests, requested rows). Cells
    served by the response cache are left out; entries without a provenance file count their
    rows only. Blocking: call it from a worker thread."""
    import pyarrow.parquet as pq

    root = Path(output_dir)
    cost, tokens, requests, rows = 0.0, 0, 0, 0
    for entry in entries.values():
        rows += int(entry.get("requested_rows", 0))
        file = entry.get("cells")
        if not isinstance(file, str):
            continue
        table = pq.read_table(
            root / file,
            columns=["status", "requests", "input_tokens", "output_tokens", "cost"],
        )
        paid = table.filter(pc.not_equal(table["status"].cast(pa.string()), "cached"))
        cost += pc.sum(paid["cost"]).as_py() or 0.0
        tokens += (pc.sum(paid["input_tokens"]).as_py() or 0) + (
            pc.sum(paid["output_tokens"]).as_py() or 0
        )
        requests += pc.sum(paid["requests"]).as_py() or 0
    return cost, tokens, requests, rows
