"""A finished output directory, read back: its run record and its parquet files in order.

What the dataset card, ``export`` and ``RunResult.to_arrow()`` read. Nothing here writes; a
directory being written by a live run may be read, and shows the row groups recorded so far
(the record only lists files that exist).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .._exceptions import SinkError
from ._layout import METADATA_FILE
from ._metadata import RunMetadata

__all__ = ["dataset_files", "iter_row_groups", "read_metadata", "read_record"]


def read_metadata(output_dir: Path) -> RunMetadata:
    """The run record of ``output_dir``.

    Raises:
      SinkError: no such directory, no ``metadata.json``, or not a run record.
    """
    if not output_dir.is_dir():
        raise SinkError(f"{output_dir} is not a directory; give the output directory of a run")
    return read_record(output_dir)[1]


def read_record(output_dir: Path) -> tuple[dict[str, Any], RunMetadata]:
    """``metadata.json`` of ``output_dir`` as read (a JSON object) and as checked.

    Raises:
      SinkError: no ``metadata.json``, or not a run record.
    """
    path = output_dir / METADATA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SinkError(
            f"{output_dir} has no {METADATA_FILE}, so it is not the output directory of a run"
        ) from None
    except (OSError, ValueError) as exc:
        raise SinkError(f"cannot read {path}: {exc}") from None
    return data, RunMetadata.from_json_dict(data, where=str(path))


def dataset_files(output_dir: Path, meta: RunMetadata) -> list[Path]:
    """The parquet files of the dataset, in row-group order (empty row groups have none)."""
    return [
        output_dir / meta.row_groups[rg].file  # type: ignore[operator]
        for rg in sorted(meta.row_groups)
        if meta.row_groups[rg].file is not None
    ]


def iter_row_groups(output_dir: Path, meta: RunMetadata | None = None) -> Iterator[pa.Table]:
    """Each stored row group as a table, in order, one at a time (memory: one row group),
    with the run's exact Arrow schema (``metadata.json`` keeps it: parquet alone turns
    ``timestamp[s]`` into ``timestamp[ms]``, say).

    Raises:
      SinkError: the run record, or a file it lists, cannot be read.
    """
    meta = read_metadata(output_dir) if meta is None else meta
    for path in dataset_files(output_dir, meta):
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise SinkError(f"cannot read {path}: {exc}") from None
        if meta.schema is not None and table.schema.remove_metadata() != meta.schema:
            with contextlib.suppress(pa.ArrowException, ValueError):  # else: as stored
                table = table.cast(meta.schema)
        yield table
