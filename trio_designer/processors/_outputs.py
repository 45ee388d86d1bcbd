"""The files processors write beside the dataset (names in :mod:`trio_designer._sink._layout`).

Every file is written atomically under a name fixed by its row group, so writing it again (a
row group generated again after a crash, the post-run stage run again) replaces it; a row group
that now has nothing to write removes its old file. A resumed run therefore never finds a
processor's output twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .._sink._atomic import write_atomically
from .._sink._layout import (
    DATASET_DIR,
    EXTRA_JSONL_DIR,
    EXTRA_JSONL_FILE,
    FILTERED_DIR,
    row_group_file,
)

__all__ = [
    "combine_jsonl",
    "extra_dataset_files",
    "write_extra_records",
    "write_filtered",
    "write_table",
]

REASON_COLUMN = "_filtered_reason"


def _group_name(row_group: int) -> str:
    return Path(row_group_file(row_group)).name


def write_table(path: Path, table: pa.Table | None) -> None:
    """Write ``table`` to ``path`` as parquet, atomically; ``None`` or no rows: remove it."""
    if table is None or table.num_rows == 0:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: pq.write_table(table, f))


def write_filtered(
    output_dir: Path, label: str, row_group: int, removed: Sequence[tuple[pa.Table, str]]
) -> None:
    """The rows ``label`` removed from ``row_group``, with a ``_filtered_reason`` column."""
    tables = [
        rows.append_column(REASON_COLUMN, pa.array([reason] * rows.num_rows, pa.string()))
        for rows, reason in removed
    ]
    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    write_table(output_dir / FILTERED_DIR / label / _group_name(row_group), table)


def write_extra_records(
    output_dir: Path, dataset: str, row_group: int, records: Sequence[Mapping[str, Any]]
) -> None:
    """One row group's records of an extra dataset, as JSON Lines and as parquet."""
    folder = output_dir / dataset
    jsonl = folder / EXTRA_JSONL_DIR / f"{Path(_group_name(row_group)).stem}.jsonl"
    parquet = folder / DATASET_DIR / _group_name(row_group)
    if not records:
        jsonl.unlink(missing_ok=True)
        parquet.unlink(missing_ok=True)
        return
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    write_atomically(jsonl, text.encode("utf-8"))
    write_table(parquet, pa.Table.from_pylist(list(records)))


def extra_dataset_files(output_dir: Path, dataset: str) -> list[Path]:
    """The per-row-group JSON Lines files of an extra dataset, in row-group order."""
    folder = output_dir / dataset / EXTRA_JSONL_DIR
    return sorted(folder.glob("row-group-*.jsonl")) if folder.is_dir() else []


def combine_jsonl(output_dir: Path, dataset: str, row_groups: Sequence[int]) -> Path:
    """Write ``<dataset>/data.jsonl``: the records of ``row_groups``, in order, atomically."""
    folder = output_dir / dataset
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / EXTRA_JSONL_FILE

    def copy(stream: Any) -> None:
        for row_group in row_groups:
            part = folder / EXTRA_JSONL_DIR / f"{Path(_group_name(row_group)).stem}.jsonl"
            if part.is_file():
                stream.write(part.read_bytes())

    write_atomically(target, copy)
    return target
