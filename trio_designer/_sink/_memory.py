"""The memory sink: the parquet sink's contract without a disk (``preview`` and tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final

import pyarrow as pa
import trio

from ._base import SinkBase
from ._metadata import RunMetadata
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

    def table(self) -> pa.Table:
        """Every stored row group concatenated in row group id order.

        Returns an empty table without columns when no row was stored.
        """
        tables = [self._tables[rg] for rg in sorted(self._tables)]
        return pa.concat_tables(tables) if tables else pa.table({})

    def _stored(self, row_group: int, table: pa.Table) -> None:
        if table.num_rows:
            self._tables[row_group] = table

    async def _check_storage(
        self,
        *,
        fingerprint: str,
        config: Mapping[str, Any],
        num_records: int,
        row_group_size: int,
        resume: bool,
    ) -> RunMetadata:
        await trio.lowlevel.checkpoint()
        meta = opened_metadata(
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

    async def _prepare_storage(self, meta: RunMetadata) -> RunMetadata:
        await trio.lowlevel.cancel_shielded_checkpoint()
        return meta

    async def _publish(self, file: str, table: pa.Table) -> None:
        await trio.lowlevel.checkpoint()  # the table is kept by _stored() on commit

    async def _unpublish(self, file: str) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _persist(self, meta: RunMetadata) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _finish(self) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()
