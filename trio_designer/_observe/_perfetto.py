"""Chrome trace-event JSON of a recorded run, for https://ui.perfetto.dev and chrome://tracing.

:func:`export_chrome_trace` writes the `Trace Event Format`_ ("JSON Object Format"). Each
column is a track group (a trace "process") holding a counter of its running tasks and one
slice per task attempt (args: row, row group, attempt, status, error class); a ``models`` group
holds, per endpoint, counters of its running tasks and of its adaptive limit; scheduler events
(row group admitted / checkpointed, salvage rounds, limit changes, early shutdown) are instant
events. What the user sees is documented in ``docs/traces.md``.

Why a column's slices sit on *several* thread tracks: slices on one thread must nest (Perfetto
drops slices that partly overlap another, as the format's spec says: "duration events ... must
be nested"), but the async engine runs many cells of one column at once. So each column's task
attempts are packed into *lanes* (:func:`assign_lanes`: greedy interval partitioning, as few
lanes as the column's peak concurrency), and every lane is a thread named after the column:
``summary``, ``summary (2)``...

.. _Trace Event Format:
   https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from .._sink import CHROME_TRACE_FILE
from ._events import EARLY_SHUTDOWN_EVENT, LIMIT_CHANGE_EVENT, int_field, jsonable_fields
from ._runtrace import RunTrace, load_run_trace
from ._trace import TaskTrace

__all__ = ["assign_lanes", "chrome_trace_document", "export_chrome_trace"]

WAIT_SLICE_MIN: Final = 0.001
"""A task's wait (dispatched → started) becomes its own ``wait`` slice when at least this long,
in seconds; shorter waits only show in the slice's args."""

RUN_PID: Final = 1
MODELS_PID: Final = 2
FIRST_COLUMN_PID: Final = 100


def export_chrome_trace(output_dir: Path, dest: Path | None = None) -> Path:
    """Write a run's trace as Chrome trace-event JSON, for https://ui.perfetto.dev.

    Open the file in Perfetto ("Open trace file") or ``chrome://tracing`` ("Load"). What is in
    it is described in ``docs/traces.md``.

    Args:
      output_dir: the output directory of a run recorded with ``trace=True``.
      dest: where to write; default ``output_dir / "trace.chrome.json"``.

    Returns:
      The path written.

    Raises:
      TraceExportError: the run has no readable ``trace.json``.
    """
    output_dir = Path(output_dir)
    run = load_run_trace(output_dir)
    path = Path(dest) if dest is not None else output_dir / CHROME_TRACE_FILE
    text = json.dumps(chrome_trace_document(run), separators=(",", ":"), allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def chrome_trace_document(run: RunTrace) -> dict[str, Any]:
    """The trace-event "JSON Object Format" document of ``run``.

    Times are microseconds since the start of the run, as integers (the traces are recorded
    with ``trio.current_time()``; a microsecond is far below anything worth seeing).
    """
    builder = _ChromeBuilder(run)
    builder.add_run()
    builder.add_columns()
    builder.add_models()
    builder.add_scheduler_events()
    return {
        "traceEvents": builder.events(),
        "displayTimeUnit": "ms",
        "otherData": {
            "producer": "trio_designer",
            "engine": run.engine,
            "source": str(run.source),
        },
    }


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


def assign_lanes(spans: Sequence[tuple[int, int]]) -> list[int]:
    """Pack spans ``(start, end)`` into lanes so that no two spans of a lane overlap.

    Greedy interval partitioning: spans are taken by start time and each goes to the
    lowest-numbered lane that is free (whose last span ended at or before its start). That uses
    exactly as many lanes as the largest number of spans overlapping at one instant.

    Returns:
      The lane of each span, in input order.
    """
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    busy: list[tuple[int, int]] = []  # (end, lane) of the last span of every busy lane
    free: list[int] = []
    lanes = [0] * len(spans)
    count = 0
    for i in order:
        start, end = spans[i]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, count = count, count + 1
        lanes[i] = lane
        heapq.heappush(busy, (max(start, end), lane))
    return lanes


def _running_counts(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(time, how many spans are running)`` at every time the number changes, from 0."""
    deltas: dict[int, int] = {}
    for start, end in spans:
        if end > start:
            deltas[start] = deltas.get(start, 0) + 1
            deltas[end] = deltas.get(end, 0) - 1
    points = [(0, 0)]
    running = 0
    for time in sorted(deltas):
        if deltas[time]:
            running += deltas[time]
            points.append((time, running))
    return points


class _ChromeBuilder:
    """Accumulates the events of one trace-event document (metadata events first).

    Processes (track groups), top to bottom: ``run`` (the scheduler's instant events), one per
    column (a counter of its running tasks, then its lanes), ``models`` (per endpoint: running
    tasks and the adaptive limit).
    """

    def __init__(self, run: RunTrace) -> None:
        self.run = run
        self.metadata: list[dict[str, Any]] = []
        self.timed: list[dict[str, Any]] = []
        self.next_tid = 1
        self.next_sort_index = 0

    def events(self) -> list[dict[str, Any]]:
        return self.metadata + sorted(self.timed, key=lambda e: e["ts"])

    def _process(self, pid: int, name: str) -> None:
        self.metadata.append(_meta("process_name", pid, None, {"name": name}))
        sort_index = {"sort_index": self.next_sort_index}
        self.metadata.append(_meta("process_sort_index", pid, None, sort_index))
        self.next_sort_index += 1

    def _thread(self, pid: int, name: str) -> int:
        tid = self.next_tid
        self.next_tid += 1
        self.metadata.append(_meta("thread_name", pid, tid, {"name": name}))
        self.metadata.append(_meta("thread_sort_index", pid, tid, {"sort_index": tid}))
        return tid

    def _counter(self, pid: int, name: str, key: str, points: Sequence[tuple[int, int]]) -> None:
        for ts, value in points:
            self.timed.append(
                {
                    "ph": "C",
                    "name": name,
                    "cat": "counter",
                    "pid": pid,
                    "ts": ts,
                    "args": {key: value},
                }
            )

    def add_run(self) -> None:
        self._process(RUN_PID, f"run ({self.run.engine} engine)")

    def add_columns(self) -> None:
        for index, column in enumerate(self.run.columns):
            pid = FIRST_COLUMN_PID + index
            self._process(pid, f"column {column}")
            tasks = [t for t in self.run.tasks if t.column == column]
            running = [(_us(t.started), _us(t.finished)) for t in tasks]
            self._counter(pid, f"{column} running", "tasks", _running_counts(running))
            lanes = assign_lanes([(_us(t.dispatched), _us(t.finished)) for t in tasks])
            tids = [
                self._thread(pid, column if lane == 0 else f"{column} ({lane + 1})")
                for lane in range(max(lanes, default=-1) + 1)
            ]
            for task, lane in zip(tasks, lanes, strict=True):
                self.timed.extend(_task_slices(task, pid, tids[lane]))

    def add_models(self) -> None:
        run = self.run
        names = run.endpoint_names()
        if not names:
            return
        self._process(MODELS_PID, "models")
        for endpoint in names:
            calls = [
                (_us(t.started), _us(t.finished))
                for t in run.tasks
                if endpoint in run.endpoints.get(t.column, ()) and t.status != "skipped"
            ]
            self._counter(MODELS_PID, f"{endpoint} running", "tasks", _running_counts(calls))
            limit = [(0, run.ceilings.get(endpoint, 0))] + [
                (_us(e.time), int_field(e.fields, "new"))
                for e in run.events
                if e.name == LIMIT_CHANGE_EVENT and e.fields.get("endpoint") == endpoint
            ]
            self._counter(MODELS_PID, f"{endpoint} limit", "limit", limit)

    def add_scheduler_events(self) -> None:
        has_models = bool(self.run.endpoint_names())
        for event in self.run.events:
            pid, scope = RUN_PID, "p"
            if event.name == LIMIT_CHANGE_EVENT and has_models:
                pid = MODELS_PID
            elif event.name == EARLY_SHUTDOWN_EVENT:
                scope = "g"
            self.timed.append(
                {
                    "ph": "i",
                    "s": scope,
                    "name": event.name,
                    "cat": "scheduler",
                    "pid": pid,
                    "tid": pid,
                    "ts": _us(event.time),
                    "args": jsonable_fields(event.fields),
                }
            )


def _meta(name: str, pid: int, tid: int | None, args: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = {"ph": "M", "name": name, "pid": pid, "args": args}
    if tid is not None:
        event["tid"] = tid
    return event


def _task_slices(task: TaskTrace, pid: int, tid: int) -> list[dict[str, Any]]:
    """A task attempt's complete event, preceded by a ``wait`` slice when it waited long."""
    args = {
        "row": task.row,
        "row_group": task.row_group,
        "attempt": task.attempt,
        "status": task.status,
        "error_class": task.error_class,
        "kind": task.kind,
        "waited_ms": round((task.started - task.dispatched) * 1000, 3),
    }
    started, finished = _us(task.started), _us(task.finished)
    name = task.column if task.status == "ok" else f"{task.column} ({task.status})"
    slices: list[dict[str, Any]] = []
    if task.started - task.dispatched >= WAIT_SLICE_MIN:
        dispatched = _us(task.dispatched)
        slices.append(
            {
                "ph": "X",
                "name": "wait",
                "cat": "wait",
                "pid": pid,
                "tid": tid,
                "ts": dispatched,
                "dur": max(0, started - dispatched),
                "args": {"row": task.row, "column": task.column},
            }
        )
    slices.append(
        {
            "ph": "X",
            "name": name,
            "cat": "task",
            "pid": pid,
            "tid": tid,
            "ts": started,
            "dur": max(0, finished - started),
            "args": args,
        }
    )
    return slices
