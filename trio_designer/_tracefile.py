"""Run artifacts next to the dataset: ``trace.json`` (task traces and scheduler events, when
tracing is on).

Written atomically at the end of a run (``write_atomically``); it never contains a secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from ._engine._trace import TraceRecorder
from ._sink import TRACE_FILE, write_atomically

TRACE_FORMAT_VERSION = 1


def trace_document(recorder: TraceRecorder, *, engine: str) -> dict[str, Any]:
    """The JSON document of a run's trace: ``{"format_version", "engine", "tasks", "events"}``."""
    return {
        "format_version": TRACE_FORMAT_VERSION,
        "engine": engine,
        "tasks": [attrs.asdict(t) for t in recorder.records],
        "events": [attrs.asdict(e) for e in recorder.events],
    }


def write_trace(output_dir: Path, recorder: TraceRecorder, *, engine: str) -> Path:
    """Write ``trace.json`` into ``output_dir``; returns its path."""
    path = output_dir / TRACE_FILE
    write_atomically(
        path, json.dumps(trace_document(recorder, engine=engine), default=str).encode()
    )
    return path


def read_trace(output_dir: Path) -> dict[str, Any]:
    """Read back a ``trace.json`` written by :func:`write_trace`."""
    data: dict[str, Any] = json.loads((output_dir / TRACE_FILE).read_text())
    return data
