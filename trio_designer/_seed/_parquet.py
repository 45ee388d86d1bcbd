"""A parquet seed (one file or a folder of files), never read whole.

Opening reads only metadata: the files (a folder's files at any depth, in path order,
skipping names that start with ``.`` or ``_`` as ``pyarrow.dataset`` does) and, from each
file's footer, the row count of every parquet row group. That gives a prefix-sum index, so
``take`` finds the row groups that hold the wanted rows (bisect), decodes just those, just
the wanted columns, and keeps the rows asked for. A small cache of recently decoded row
groups serves the common case of consecutive run row groups reading the same parquet row
group (ordered sampling).

Why ``pyarrow.parquet`` and not ``pyarrow.dataset``: importing ``pyarrow.dataset`` (its
Acero and compute libraries) costs 48 MiB of resident memory, measured — a third of the
whole budget of ``benches/seed_memory.py`` (a seed-driven run within 1.5x the peak RSS of the
same run without one); ``pyarrow.parquet`` is loaded anyway (the sink writes parquet). The
cost: hive partition folders are read as plain files (their keys do not become columns).
"""

from __future__ import annotations

import bisect
import collections
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["ParquetSource"]

#: Decoded row groups kept for reuse (each holds only the columns a run reads).
_CACHED_PIECES: Final = 4


class ParquetSource:
    """Rows of a parquet file or folder (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        files = _parquet_files(path)
        if not files:
            raise ValueError(f"no .parquet file in the folder {path}")
        self._files = files
        self._schema = pq.read_schema(files[0])
        self._pieces: list[tuple[Path, int]] = []
        starts: list[int] = []
        total = 0
        for file in files:
            metadata = pq.read_metadata(file)
            schema = metadata.schema.to_arrow_schema()
            if not schema.remove_metadata().equals(self._schema.remove_metadata()):
                raise ValueError(
                    f"{file.name} has another schema than {files[0].name}; every file of a "
                    "seed folder needs the same columns and types"
                )
            for index in range(metadata.num_row_groups):
                rows = metadata.row_group(index).num_rows
                if rows == 0:
                    continue
                self._pieces.append((file, index))
                starts.append(total)
                total += rows
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
        return self._schema

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
            return self._schema.empty_table().select(list(names))
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
        file, row_group = self._pieces[piece]
        table = pq.ParquetFile(file).read_row_group(row_group, columns=list(columns))
        with self._lock:
            self._cache[key] = table
            while len(self._cache) > _CACHED_PIECES:
                self._cache.popitem(last=False)
        return table


def _parquet_files(path: Path) -> list[Path]:
    """The file itself, or a folder's parquet files (see the module docstring)."""
    if not path.is_dir():
        return [path]
    return [
        file
        for file in sorted(path.rglob("*"))
        if file.is_file()
        and not any(part.startswith((".", "_")) for part in file.relative_to(path).parts)
    ]
