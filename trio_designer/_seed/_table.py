"""A CSV or JSON Lines seed, parsed by pyarrow into one in-memory Arrow table.

Text formats have no row index to seek by, so the file is parsed once, when the run opens
it (multi-threaded, by pyarrow; Arrow memory is about the size of the data). For seeds larger
than memory, convert to parquet, which is streamed (:mod:`._parquet`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["TableSource", "read_text_table"]


def read_text_table(path: Path, fmt: str) -> Any:
    """Parse ``path`` as ``csv`` or ``jsonl`` (newline-delimited JSON objects).

    Raises:
      pyarrow.ArrowInvalid: the file does not parse (the caller words it for the user).
    """
    if fmt == "csv":
        import pyarrow.csv as pacsv

        return pacsv.read_csv(str(path))
    import pyarrow.json as pajson

    return pajson.read_json(str(path))


class TableSource:
    """Rows of an in-memory ``pyarrow.Table``."""

    def __init__(self, table: Any, identity: Mapping[str, str] | None = None) -> None:
        self._table = table
        self._identity = dict(identity or {})

    @property
    def num_rows(self) -> int:
        return int(self._table.num_rows)

    @property
    def schema(self) -> Any:
        return self._table.schema

    def take(self, rows: Sequence[int], columns: Sequence[str]) -> Any:
        return self._table.select(list(columns)).take(pa.array(list(rows), pa.int64()))

    def identity(self) -> Mapping[str, str]:
        return self._identity
