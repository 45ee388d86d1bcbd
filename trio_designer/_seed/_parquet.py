"""A parquet seed (one file or a folder), read as a ``pyarrow.dataset`` and never whole.

Opening reads only metadata: the files of the dataset and, from each file's footer, the row
count of every parquet row group. That gives a prefix-sum index, so ``take`` finds the row
groups that hold the wanted rows (bisect), decodes just those, just the wanted columns, and
keeps the rows asked for. A small cache of recently decoded row groups serves the common case
of consecutive run row groups reading the same parquet row group (ordered sampling).
"""

from __future__ import annotations

import bisect
import collections
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.dataset as pads

__all__ = ["ParquetSource"]

#: Decoded row groups kept for reuse (each holds only the columns a run reads).
_CACHED_PIECES: Final = 4


class ParquetSource:
    """Rows of a parquet file or folder (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._dataset = pads.dataset(str(path), format="parquet")
        self._pieces: list[Any] = []
        starts: list[int] = []
        total = 0
        for fragment in self._dataset.get_fragments():
            fragment.ensure_complete_metadata()
            for row_group in fragment.row_groups:
                if row_group.num_rows == 0:
                    continue
                self._pieces.append((fragment, row_group.id))
                starts.append(total)
                total += row_group.num_rows
        self._starts = starts
        self._num_rows = total
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[tuple[int, tuple[str, ...]], Any] = (
            collections.OrderedDict()
        )

    @property
    def num_rows(self) -> int:
        return self._num_rows

    @property
    def schema(self) -> Any:
        return self._dataset.schema

    def take(self, rows: Sequence[int], columns: Sequence[str]) -> Any:
        by_piece: dict[int, list[tuple[int, int]]] = {}
        for position, row in enumerate(rows):
            piece = bisect.bisect_right(self._starts, row) - 1
            by_piece.setdefault(piece, []).append((position, row - self._starts[piece]))
        names = tuple(columns)
        parts: list[Any] = []
        order: list[int] = []
        for piece, wanted in sorted(by_piece.items()):
            table = self._decoded(piece, names)
            parts.append(table.take(pa.array([local for _, local in wanted], pa.int64())))
            order.extend(position for position, _ in wanted)
        if not parts:
            return self._dataset.schema.empty_table().select(list(names))
        gathered = pa.concat_tables(parts)
        inverse = [0] * len(order)
        for index, position in enumerate(order):
            inverse[position] = index
        return gathered.take(pa.array(inverse, pa.int64()))

    def identity(self) -> Mapping[str, str]:
        return {}

    def _decoded(self, piece: int, columns: tuple[str, ...]) -> Any:
        key = (piece, columns)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        fragment, row_group = self._pieces[piece]
        table = fragment.subset(row_group_ids=[row_group]).to_table(
            columns=list(columns), schema=self._dataset.schema
        )
        with self._lock:
            self._cache[key] = table
            while len(self._cache) > _CACHED_PIECES:
                self._cache.popitem(last=False)
        return table
