"""Row-group sinks: where finished row groups go, and every file of an output directory.

The engine finishes row groups out of order and hands each one, as a ``pyarrow.Table``, to a
sink. Two sinks share one contract (``tests/test_sink.py`` runs the same suite over both):
:class:`ParquetSink` writes one parquet file per row group plus the ``metadata.json`` run
record; :class:`MemorySink` keeps the tables in memory (``preview``, tests).

One idea per module:

=================  ==========================================================================
``_layout``        every file and folder name of an output directory, defined once
``_atomic``        the one atomic write: tmp file, fsync, ``os.replace``, fsync the directory
``_table``         :func:`build_table` (values → table) and the schema every row group keeps
``_nested``        JSON schema → Arrow type (struct columns of structured and judge values)
``_metadata``      the run record (:class:`RunMetadata`) and its JSON form
``_resume``        when a stored run may be continued (fingerprint, row group size, growth)
``_base``          the lifecycle and commit protocol both sinks share
``_parquet``       :class:`ParquetSink`
``_memory``        :class:`MemorySink`
``_failures``      ``failures.jsonl``: append at the end of a run, read for ``inspect``
``_stored``        a finished output directory read back: run record, files in order
``_card``          the dataset card, ``README.md``: schema, counts, usage, profile, config
``_export``        :func:`export_dataset`: jsonl / csv / parquet / hf, streamed
=================  ==========================================================================

Mental model: **a row group is written when its entry is in the run record**; a write that
returned is durable and recorded, a write that raised left nothing (see :mod:`._base`).
"""

from ._atomic import write_atomically
from ._base import FINAL_STATUSES, SinkStatistics
from ._card import dataset_card, write_dataset_card
from ._failures import append_failures, read_failures
from ._layout import (
    CARD_FILE,
    CHROME_TRACE_FILE,
    DATASET_DIR,
    FAILURES_FILE,
    METADATA_FILE,
    TIMELINE_FILE,
    TMP_DIR,
    TRACE_FILE,
    row_group_file,
)
from ._memory import MemorySink
from ._metadata import FORMAT_VERSION, SUMMARY_ROW_GROUPS_FOUND, RowGroupEntry, RunMetadata
from ._parquet import ParquetSink, ParquetWriter
from ._table import build_table

__all__ = [
    "CARD_FILE",
    "CHROME_TRACE_FILE",
    "DATASET_DIR",
    "FAILURES_FILE",
    "FINAL_STATUSES",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "SUMMARY_ROW_GROUPS_FOUND",
    "TIMELINE_FILE",
    "TMP_DIR",
    "TRACE_FILE",
    "MemorySink",
    "ParquetSink",
    "ParquetWriter",
    "RowGroupEntry",
    "RunMetadata",
    "SinkStatistics",
    "append_failures",
    "build_table",
    "dataset_card",
    "read_failures",
    "row_group_file",
    "write_atomically",
    "write_dataset_card",
]
