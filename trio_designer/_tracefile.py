"""Run artifacts next to the dataset: ``trace.json`` (task traces and scheduler events, when
tracing is on) and ``failures.jsonl`` (one line per dropped row or row group).

Both are written atomically at the end of a run (tmp file, fsync, ``os.replace``); neither ever
contains a secret (failure messages come from our own exceptions, which redact API keys).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from ._engine._state import FailureRecord
from ._engine._trace import TraceRecorder

TRACE_FILE = "trace.json"
FAILURES_FILE = "failures.jsonl"
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
    _atomic_write(path, json.dumps(trace_document(recorder, engine=engine), default=str))
    return path


def read_trace(output_dir: Path) -> dict[str, Any]:
    """Read back a ``trace.json`` written by :func:`write_trace`."""
    data: dict[str, Any] = json.loads((output_dir / TRACE_FILE).read_text())
    return data


def append_failures(output_dir: Path, failures: Sequence[FailureRecord]) -> Path:
    """Add this run's failures to ``failures.jsonl`` (a resumed run appends to the file)."""
    path = output_dir / FAILURES_FILE
    old = path.read_text() if path.exists() else ""
    lines = "".join(json.dumps(attrs.asdict(f)) + "\n" for f in failures)
    _atomic_write(path, old + lines)
    return path


def read_failures(output_dir: Path) -> list[dict[str, Any]]:
    """Every failure recorded in ``failures.jsonl`` (empty if there is none)."""
    path = output_dir / FAILURES_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in _lines(path.read_text())]


def _lines(text: str) -> Iterable[str]:
    return (line for line in text.splitlines() if line.strip())


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
