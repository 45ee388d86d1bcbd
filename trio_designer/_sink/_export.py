"""Exports: an output directory's dataset as one JSONL, CSV or parquet file, or a Hugging Face
``datasets`` directory; streamed, one row group at a time.

=========  =================================================================================
format     what is written
=========  =================================================================================
jsonl      one JSON object per row; struct and list columns as nested JSON; timestamps and
           dates as ISO 8601 text; NaN and infinities as ``null`` (JSON has no spelling)
csv        a header line, then one line per row (``pyarrow.csv``); struct and list columns
           as JSON text in their cell (CSV has no nesting)
parquet    one parquet file, one parquet row group per stored row group, the exact schema
hf         a directory that ``datasets.load_from_disk`` opens (needs the ``hf`` extra):
           ``datasets`` reads the parquet files into its cache and saves them there
=========  =================================================================================

Memory: one row group (JSONL and CSV convert it in batches of :data:`BATCH_ROWS` rows); the
``hf`` export goes through the ``datasets`` library's own on-disk cache. A file destination is
written atomically (a temporary file renamed into place); an existing destination is refused
unless ``overwrite``.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, get_args

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .._exceptions import MissingDependencyError, SinkError
from ._atomic import write_atomically
from ._stored import dataset_files, iter_row_groups, read_metadata

__all__ = ["BATCH_ROWS", "EXPORT_FORMATS", "ExportFormat", "export_dataset"]

ExportFormat = Literal["jsonl", "csv", "parquet", "hf"]
EXPORT_FORMATS: Final[tuple[str, ...]] = get_args(ExportFormat)

BATCH_ROWS: Final = 4096
"""Rows converted to Python values at a time (JSONL, CSV's JSON text)."""


def default_destination(output_dir: Path, format: str) -> Path:
    """Next to the output directory, never inside it: ``out/topics`` → ``out/topics.jsonl``
    (``out/topics-hf/`` for ``hf``)."""
    resolved = output_dir.resolve()
    name = resolved.name or "dataset"
    suffix = "-hf" if format == "hf" else f".{format}"
    return resolved.parent / f"{name}{suffix}"


def export_dataset(
    output_dir: str | Path,
    format: ExportFormat,
    destination: str | Path | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write the dataset of ``output_dir`` in ``format`` to ``destination``.

    Args:
      output_dir: a run's output directory.
      format: ``jsonl``, ``csv``, ``parquet`` or ``hf`` (see the module docstring).
      destination: the file (the directory, for ``hf``) to write; default
        :func:`default_destination`.
      overwrite: replace an existing destination.

    Returns:
      The destination.

    Raises:
      SinkError: no run in ``output_dir``, an unknown format, an existing destination without
        ``overwrite``, or a write that failed.
      MissingDependencyError: ``hf`` without the ``datasets`` library.
    """
    root = Path(output_dir)
    if format not in EXPORT_FORMATS:
        raise SinkError(f"unknown export format {format!r}; use one of {', '.join(EXPORT_FORMATS)}")
    meta = read_metadata(root)
    target = Path(destination) if destination is not None else default_destination(root, format)
    if target.exists() and not overwrite:
        raise SinkError(f"{target} exists already; choose another destination or overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    if format == "hf":
        _export_hf(root, dataset_files(root, meta), target)
        return target
    tables = iter_row_groups(root, meta)
    writers = {"jsonl": _write_jsonl, "csv": _write_csv, "parquet": _write_parquet}
    write = writers[format]
    try:
        write_atomically(target, lambda stream: write(stream, tables, meta.schema))
    except OSError as exc:
        if isinstance(exc, SinkError):
            raise
        raise SinkError(f"cannot write {target}: {exc}") from exc
    return target


# -- jsonl ------------------------------------------------------------------------------------


def _write_jsonl(stream: BinaryIO, tables: Iterator[pa.Table], schema: pa.Schema | None) -> None:
    for table in tables:
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            lines = [
                json.dumps(row, ensure_ascii=False, allow_nan=False, default=_json_default)
                for row in (_finite(r) for r in batch.to_pylist())
            ]
            if lines:
                stream.write(("\n".join(lines) + "\n").encode("utf-8"))


def _finite(value: Any) -> Any:
    """NaN and infinities as ``None`` (JSON cannot hold them), all the way down."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- csv --------------------------------------------------------------------------------------


def _write_csv(stream: BinaryIO, tables: Iterator[pa.Table], schema: pa.Schema | None) -> None:
    writer: pcsv.CSVWriter | None = None
    for table in tables:
        flat = _nested_as_json_text(table)
        if writer is None:
            writer = pcsv.CSVWriter(stream, flat.schema)
        for batch in flat.to_batches(max_chunksize=BATCH_ROWS):
            writer.write_batch(batch)
    if writer is None:  # no row at all: the header alone
        empty = schema.empty_table() if schema is not None else pa.table({})
        writer = pcsv.CSVWriter(stream, _nested_as_json_text(empty).schema)
    writer.close()


def _nested_as_json_text(table: pa.Table) -> pa.Table:
    """Struct and list columns replaced by JSON text columns (CSV cells are flat)."""
    for index, field in enumerate(table.schema):
        if _nested(field.type):
            values = [
                None
                if value is None
                else json.dumps(
                    _finite(value), ensure_ascii=False, allow_nan=False, default=_json_default
                )
                for value in table.column(index).to_pylist()
            ]
            table = table.set_column(
                index, pa.field(field.name, pa.string()), pa.array(values, pa.string())
            )
    return table


def _nested(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_struct(data_type)
        or pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
        or pa.types.is_map(data_type)
    )


# -- parquet ----------------------------------------------------------------------------------


def _write_parquet(stream: BinaryIO, tables: Iterator[pa.Table], schema: pa.Schema | None) -> None:
    writer: pq.ParquetWriter | None = None
    for table in tables:
        if writer is None:
            writer = pq.ParquetWriter(stream, table.schema)
        writer.write_table(table)
    if writer is None:
        writer = pq.ParquetWriter(stream, schema if schema is not None else pa.schema([]))
    writer.close()


# -- hf ---------------------------------------------------------------------------------------


def _export_hf(root: Path, files: list[Path], target: Path) -> None:
    datasets = _datasets()
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        if files:
            dataset = datasets.Dataset.from_parquet(
                [str(f) for f in files], cache_dir=str(staging / "cache"), keep_in_memory=False
            )
        else:
            dataset = datasets.Dataset.from_dict({})
        built = staging / "dataset"
        dataset.save_to_disk(str(built))
        if target.exists():
            shutil.rmtree(target)
        built.rename(target)
    except OSError as exc:
        raise SinkError(f"cannot write {target}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependencyError(
            "the hf export format", package="datasets", extra="hf"
        ) from exc
    return datasets


def load_for_push(target: Path) -> Any:
    """The exported ``hf`` directory as a ``datasets.Dataset`` (to push it to the Hub)."""
    return _datasets().load_from_disk(str(target))
