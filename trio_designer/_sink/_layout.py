"""Where everything lives in an output directory: every file and folder name, defined once.

A run's output directory (details and reading recipes in ``docs/output-layout.md``)::

    <output_dir>/
      metadata.json                           METADATA_FILE: the run record (the commit record)
      parquet-files/                          DATASET_DIR: what ``pyarrow.dataset`` reads
        row-group-00000.parquet               row_group_file(0): one per non-empty row group
      failures.jsonl                          FAILURES_FILE: one line per dropped row
      trace.json                              TRACE_FILE: task traces, when tracing is on
      trace.chrome.json                       CHROME_TRACE_FILE: ``trio-designer trace`` export
      timeline.png                            TIMELINE_FILE: ``trio-designer trace --plot``
      README.md                               CARD_FILE: the dataset card of a finished run
      .tmp/                                   TMP_DIR: files being written; removed by close()

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
    "DATASET_DIR",
    "FAILURES_FILE",
    "METADATA_FILE",
    "TIMELINE_FILE",
    "TMP_DIR",
    "TRACE_FILE",
    "is_row_group_file",
    "row_group_file",
    "tmp_file_name",
]

METADATA_FILE: Final = "metadata.json"
"""The run record: which row groups are written, the schema, the status, the summary."""

DATASET_DIR: Final = "parquet-files"
"""Folder holding one parquet file per non-empty row group; hand it to ``pyarrow.dataset``."""

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

_ROW_GROUP_FILE: Final = re.compile(r"^row-group-(\d{5,})\.parquet$")


def row_group_file(row_group: int) -> str:
    """The path of a row group's parquet file, relative to the output directory.

    Ids have at least five digits; past ``row-group-99999`` the lexical order of file names no
    longer matches the id order (the dataset still reads, rows come in a different order).

    >>> row_group_file(3)
    'parquet-files/row-group-00003.parquet'
    """
    return f"{DATASET_DIR}/row-group-{row_group:05d}.parquet"


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
