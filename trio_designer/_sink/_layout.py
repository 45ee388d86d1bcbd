"""Where everything lives in an output directory: every file and folder name, defined once.

A run's output directory (details and reading recipes in ``docs/output-layout.md``)::

    <output_dir>/
      metadata.json                           METADATA_FILE: the run record (the commit record)
      parquet-files/                          DATASET_DIR: what ``pyarrow.dataset`` reads
        row-group-00000.parquet               row_group_file(0): one per non-empty row group
      provenance/                             PROVENANCE_DIR: per-cell records
        row-group-00000.parquet               cells_file(0): one per row group (docs/cost.md)
      failures.jsonl                          FAILURES_FILE: one line per dropped row
      trace.json                              TRACE_FILE: task traces, when tracing is on
      trace.chrome.json                       CHROME_TRACE_FILE: ``trio-designer trace`` export
      timeline.png                            TIMELINE_FILE: ``trio-designer trace --plot``
      README.md                               CARD_FILE: the dataset card of a finished run
      .tmp/                                   TMP_DIR: files being written; removed by close()
      processed/                              PROCESSED_DIR: the dataset after whole-dataset
        parquet-files/row-group-00000.parquet   processors (dedup), written after the run
        _SUCCESS.json                         PROCESSED_MARKER: written last; its inputs
      filtered/<processor>/row-group-00000.parquet   FILTERED_DIR: rows a processor removed
      <name>/                                 an extra dataset (to_chat, schema_transform):
        parquet-files/row-group-00000.parquet   one parquet and one JSON Lines file per
        jsonl-files/row-group-00000.jsonl       row group (EXTRA_JSONL_DIR), and all of them
        data.jsonl                              in one file after a complete run (EXTRA_JSONL_FILE)

Every module that reads or writes one of these (the sinks, the trace and failures files, the
exporters, the CLI) takes the name from here, so renaming a file is a one-line change.
"""

from __future__ import annotations

import re
import secrets
from typing import Final

__all__ = [
    "CARD_FILE",
    "CHROME_TRACE_FILE",
    "COMPACT_DIR",
    "DATASET_DIR",
    "EXTRA_JSONL_DIR",
    "EXTRA_JSONL_FILE",
    "FAILURES_FILE",
    "FILTERED_DIR",
    "METADATA_FILE",
    "PROCESSED_DIR",
    "PROCESSED_MARKER",
    "PROVENANCE_DIR",
    "SHARDS_DIR",
    "SHARD_FILE",
    "TIMELINE_FILE",
    "TMP_DIR",
    "TRACE_FILE",
    "cells_file",
    "is_row_group_file",
    "row_group_file",
    "shard_dir",
    "tmp_file_name",
]

METADATA_FILE: Final = "metadata.json"
"""The run record: which row groups are written, the schema, the status, the summary."""

DATASET_DIR: Final = "parquet-files"
"""Folder holding one parquet file per non-empty row group; hand it to ``pyarrow.dataset``."""

PROVENANCE_DIR: Final = "provenance"
"""Folder holding one parquet file per row group with a record of every cell (status,
attempts, error, model, tokens, latency, cost); written with the row group's data file."""

TMP_DIR: Final = ".tmp"
"""Folder for row-group and metadata files being written; empty between writes, gone after
``close()``. Stale files in it (a crash mid-write) are deleted when the run is opened again."""

FAILURES_FILE: Final = "failures.jsonl"
"""One JSON line per dropped row or row group; a resumed run appends to it."""

TRACE_FILE: Final = "trace.json"
"""Task traces and scheduler events of a run recorded with ``trace=True``."""

CHROME_TRACE_FILE: Final = "trace.chrome.json"
"""Default destination of the Chrome trace-event export (for https://ui.perfetto.dev)."""

TIMELINE_FILE: Final = "timeline.png"
"""Default destination of the timeline picture drawn by ``trio-designer trace --plot``."""

CARD_FILE: Final = "README.md"
"""The dataset card (``_card.py``): schema, counts, usage, profile, config; written at the end
of every finished run."""

PROCESSED_DIR: Final = "processed"
"""The dataset after the processors that need the whole dataset (``dedup``); its own
``parquet-files/`` folder. ``parquet-files/`` at the top then holds the rows before them."""

PROCESSED_MARKER: Final = "_SUCCESS.json"
"""In :data:`PROCESSED_DIR`, written last: which row groups it was made from, and the reports."""

FILTERED_DIR: Final = "filtered"
"""Rows removed by a processor with ``keep_filtered: true``, one folder per processor."""

EXTRA_JSONL_DIR: Final = "jsonl-files"
"""In an extra dataset's folder: one JSON Lines file per row group."""

EXTRA_JSONL_FILE: Final = "data.jsonl"
"""In an extra dataset's folder: every record, in row-group order, after a complete run."""

_ROW_GROUP_FILE: Final = re.compile(r"^row-group-(\d{5,})\.parquet$")


def row_group_file(row_group: int) -> str:
    """The path of a row group's parquet file, relative to the output directory.

    Ids have at least five digits; past ``row-group-99999`` the lexical order of file names no
    longer matches the id order (the dataset still reads, rows come in a different order).

    >>> row_group_file(3)
    'parquet-files/row-group-00003.parquet'
    """
    return f"{DATASET_DIR}/row-group-{row_group:05d}.parquet"


def cells_file(row_group: int) -> str:
    """The path of a row group's provenance file, relative to the output directory.

    >>> cells_file(3)
    'provenance/row-group-00003.parquet'
    """
    return f"{PROVENANCE_DIR}/row-group-{row_group:05d}.parquet"


def is_row_group_file(name: str) -> bool:
    """Whether a file name in :data:`DATASET_DIR` is one of ours (``row-group-NNNNN.parquet``).

    >>> is_row_group_file("row-group-00042.parquet"), is_row_group_file("README.txt")
    (True, False)
    """
    return _ROW_GROUP_FILE.match(name) is not None


def tmp_file_name(final_name: str) -> str:
    """A fresh name for the temporary file of a write that will become ``final_name``.

    ``<final_name>.<16 hex digits>.tmp``: unique per write (concurrent writes of one name never
    share a tmp file), recognisable as ours, and never an artifact name itself.
    """
    return f"{final_name}.{secrets.token_hex(8)}.tmp"


# -- sharded runs (trio_designer._scaleout) ------------------------------------------------------

SHARDS_DIR: Final = "shards"
"""Folder of a sharded run's shards: ``shards/<i>/`` is shard ``i``'s own output directory
(``metadata.json``, ``parquet-files/``, with global row-group ids), merged by ``merge``."""

SHARD_FILE: Final = "shard.json"
"""In a shard's directory: which shard of how many, of which run (``ShardManifest``)."""

COMPACT_DIR: Final = "compacted"
"""``merge --compact``: the dataset rewritten as a few large parquet files."""


def shard_dir(shard: int) -> str:
    """The directory of shard ``shard``, relative to the run's output directory.

    >>> shard_dir(3)
    'shards/3'
    """
    return f"{SHARDS_DIR}/{shard}"
