"""Seed columns: each row group reads its own rows of the seed, once, off the event loop.

Every seed column is a full-column generator (one task per row group). The columns of one
seed share a :class:`SeedReader`: the first of them to run for a row group reads the row
group's seed rows for *all* seed columns in one worker-thread call
(``trio.to_thread.run_sync``: parquet decoding and hub reads block), the others wait for that
read and take their column from it, and the entry is forgotten once every seed column has
taken its values. Which seed row a run row reads is
:meth:`SeedOrder.seed_row <trio_designer._core._seedorder.SeedOrder.seed_row>` of its global
row index, so row groups stay independent (any order, any resume) and the dataset does not
depend on the row-group size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, final

import attrs
import trio

from ._base import ColumnContext, ColumnGenerator, Strategy

if TYPE_CHECKING:
    from trio_designer._seed import OpenSeed

__all__ = ["SeedColumnGenerator", "SeedReader"]


@attrs.define(eq=False)
class _Read:
    done: trio.Event = attrs.field(factory=trio.Event)
    values: dict[str, list[Any]] | None = None
    waiting: set[str] = attrs.field(factory=set)


@final
class SeedReader:
    """The reads of one run's seed, shared by its seed columns (see the module docstring)."""

    def __init__(self, seed: OpenSeed) -> None:
        self.seed = seed
        self._reads: dict[tuple[int, int, int], _Read] = {}
        self._limiter = trio.CapacityLimiter(1)

    async def column(self, column: str, row_group: int, rows: Sequence[int]) -> list[Any]:
        """``column``'s values for the run rows ``rows`` (global indices) of ``row_group``."""
        key = (row_group, rows[0] if rows else 0, len(rows))
        while True:
            read = self._reads.get(key)
            if read is None:
                read = _Read(waiting=set(self.seed.columns))
                self._reads[key] = read
                try:
                    read.values = await trio.to_thread.run_sync(
                        self._read, list(rows), limiter=self._limiter
                    )
                finally:
                    read.done.set()
                    if read.values is None:
                        del self._reads[key]
            else:
                await read.done.wait()
            if read.values is not None:
                break
        read.waiting.discard(column)
        if not read.waiting:
            self._reads.pop(key, None)
        return read.values[column]

    def _read(self, rows: list[int]) -> dict[str, list[Any]]:
        """In a worker thread: map run rows to seed rows, read them, convert to Python."""
        seed_rows = self.seed.order.seed_rows(rows)
        table = self.seed.source.take(seed_rows, self.seed.columns)
        return {name: table.column(name).to_pylist() for name in self.seed.columns}


@final
class SeedColumnGenerator(ColumnGenerator):
    """One column of the seed, filled from the shared :class:`SeedReader`."""

    strategy: ClassVar[Strategy] = "full_column"

    def __init__(self, name: str, reader: SeedReader) -> None:
        self.name = name
        self._reader = reader

    async def agenerate_column(self, ctx: ColumnContext) -> list[Any]:
        return await self._reader.column(self.name, ctx.row_group, ctx.row_indices)

    def arrow_type(self) -> Any:
        return self._reader.seed.arrow_type(self.name)
