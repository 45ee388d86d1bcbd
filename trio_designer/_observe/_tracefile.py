"""``trace.json``: a traced run's task records and scheduler events, written and read back.

The file is one JSON object ``{"format_version", "engine", "tasks", "events"}``: ``tasks`` holds
one :class:`~._trace.TaskTrace` per task attempt and ``events`` the
:class:`~._trace.SchedulerEvent` s, each as a plain object of its fields. It is written once, at
the end of a run recorded with ``trace=True``, atomically (tmp file, fsync, ``os.replace``,
fsync the directory), and never contains a secret (no prompts, no keys: only columns, rows,
times, statuses and error class names).

:func:`read_trace` is the one reader; the exporters (:mod:`._runtrace`) build on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import attrs

from .._exceptions import TRACE_SETTING, TraceExportError
from .._sink import TRACE_FILE, write_atomically
from ._trace import TraceRecorder

__all__ = [
    "SUPPORTED_TRACE_VERSIONS",
    "TRACE_FORMAT_VERSION",
    "read_trace",
    "trace_document",
    "write_trace",
]

TRACE_FORMAT_VERSION: Final = 1
"""Version of the ``trace.json`` layout written now; bumped on any incompatible change."""

SUPPORTED_TRACE_VERSIONS: Final = (1,)
"""The ``trace.json`` versions :func:`read_trace` accepts."""


def trace_document(recorder: TraceRecorder, *, engine: str) -> dict[str, Any]:
    """The JSON document of a run's trace: ``{"format_version", "engine", "tasks", "events"}``."""
    return {
        "format_version": TRACE_FORMAT_VERSION,
        "engine": engine,
        "tasks": [attrs.asdict(t) for t in recorder.records],
        "events": [attrs.asdict(e) for e in recorder.events],
    }


def write_trace(output_dir: Path, recorder: TraceRecorder, *, engine: str) -> Path:
    """Write ``trace.json`` into ``output_dir`` (atomically); returns its path."""
    path = output_dir / TRACE_FILE
    text = json.dumps(trace_document(recorder, engine=engine), default=str)
    write_atomically(path, text.encode("utf-8"))
    return path


def read_trace(output_dir: Path) -> dict[str, Any]:
    """Read the ``trace.json`` of ``output_dir``, checked to be a trace this version reads.

    Returns:
      The document as written by :func:`write_trace` (its ``tasks`` and ``events`` unchecked).

    Raises:
      TraceExportError: no ``trace.json`` (the run was not traced: the message says how to
        turn tracing on), not JSON, not a JSON object, or a ``format_version`` this version
        does not read.
    """
    path = output_dir / TRACE_FILE
    if not path.is_file():
        raise TraceExportError(
            f"{output_dir} has no {TRACE_FILE}; tracing is off by default: run again with "
            f"{TRACE_SETTING} (in YAML: run: {{trace: true}})."
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceExportError(f"{path} cannot be read as JSON ({exc}).") from exc
    if not isinstance(document, dict):
        raise TraceExportError(f"{path} is not a trio_designer trace (not a JSON object).")
    version = document.get("format_version")
    if version not in SUPPORTED_TRACE_VERSIONS:
        raise TraceExportError(
            f"{path} has format_version {version!r}; this trio_designer reads version "
            f"{', '.join(map(str, SUPPORTED_TRACE_VERSIONS))}. Use the trio_designer that "
            "recorded it, or record the run again."
        )
    return document
