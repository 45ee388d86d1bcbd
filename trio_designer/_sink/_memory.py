"""The memory sink: the parquet sink's contract without a disk (``preview`` and tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final

import pyarrow as pa
import trio

from ._base import SinkBase
from ._metadata import RunMetadata
from ._provenance import CELLS_SCHEMA, CellLog, cells_table
from ._resume import opened_metadata

__all__ = ["MemorySink"]


@final
class MemorySink(SinkBase):
    """Keeps row groups in memory: the :class:`~._parquet.ParquetSink` contract without a disk.

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
        self._cells: dict[str, CellLog] = {}  # provenance file -> its log (built on demand)

    def table(self) -> pa.Table:
        """Every stored row group concatenated in row group id order.

        Returns an empty table without columns when no row was stored.
        """
        tables = [self._tables[rg] for rg in sorted(self._tables)]
        return pa.concat_tables(tables) if tables else pa.table({})

    def cells_table(self) -> pa.Table:
        """The provenance of every stored row group, in row group id order (what the parquet
        sink's ``provenance/`` files hold); built when asked for, not while the run goes."""
        meta = self._meta
        entries = [] if meta is None else [meta.row_groups[rg] for rg in sorted(meta.row_groups)]
        entries += [self._staged[rg] for rg in sorted(self._staged)]
        tables = [cells_table(self._cells[e.cells]) for e in entries if e.cells in self._cells]
        return pa.concat_tables(tables) if tables else CELLS_SCHEMA.empty_table()

    def _stored(self, row_group: int, table: pa.Table) -> None:
        if table.num_rows:
            self._tables[row_group] = table
        else:  # a partial row group generated again with no surviving row
            self._tables.pop(row_group, None)

    async def _check_storage(
        self,
        *,
        fingerprint: str,
        config: Mapping[str, Any],
        num_records: int,
        row_group_size: int,
        resume: bool,
        fingerprint_basis: Mapping[str, Any] | None = None,
        force_resume: bool = False,
    ) -> RunMetadata:
        await trio.lowlevel.checkpoint()
        meta = opened_metadata(
            self._meta,
            fingerprint=fingerprint,
            config=config,
            num_records=num_records,
            row_group_size=row_group_size,
            resume=resume,
            fingerprint_basis=fingerprint_basis,
            force_resume=force_resume,
            where="this MemorySink",
            remedy="use a new MemorySink",
        )
        return meta

    async def _prepare_storage(self, meta: RunMetadata) -> RunMetadata:
        await trio.lowlevel.cancel_shielded_checkpoint()
        return meta

    async def _publish(self, file: str, table: pa.Table) -> None:
        await trio.lowlevel.checkpoint()  # the table is kept by _stored() on commit

    async def _publish_cells(self, file: str, cells: CellLog) -> None:
        await trio.lowlevel.checkpoint()
        self._cells[file] = cells

    async def _unpublish(self, file: str) -> None:
        self._cells.pop(file, None)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _persist(self, meta: RunMetadata) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _finish(self) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()
