"""Look at a recorded run: Chrome trace-event JSON for Perfetto, and a timeline picture.

A run recorded with ``RunConfig(trace=True)`` (CLI: ``--trace``) leaves ``trace.json`` next to
its dataset: one record per task attempt (when it was dispatched, started and finished, and how
it ended) and the scheduler's point events. This module turns that file into two things a person
can look at:

* :func:`export_chrome_trace` writes the `Trace Event Format`_ ("JSON Object Format") that
  https://ui.perfetto.dev and ``chrome://tracing`` open. Each column is a track group (a trace
  "process") holding a counter of its running tasks and one slice per task attempt (args: row,
  row group, attempt, status, error class); a ``models`` group holds, per endpoint, counters of
  its running tasks and of its adaptive limit; scheduler events (row group admitted /
  checkpointed, salvage rounds, limit changes, early shutdown) are instant events.
* :func:`plot_timeline` draws a Gantt-like picture with matplotlib (an optional extra): one row
  per column, a bar wherever at least one of its tasks was running. Given two runs of the same
  config (say the sync and the async engine) it stacks them on a shared time axis.

Why a column's slices sit on *several* thread tracks: slices on one thread must nest (Perfetto
drops slices that partly overlap another, as the format's spec says: "duration events ... must
be nested"), but the async engine runs many cells of one column at once. So each column's task
attempts are packed into *lanes* (greedy interval partitioning: as few lanes as the column's
peak concurrency), and every lane is a thread named after the column: ``summary``,
``summary (2)``... What the user sees is documented in ``docs/traces.md``.

.. _Trace Event Format:
   https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._engine._trace import SchedulerEvent, TaskTrace
from ._exceptions import TrioDesignerError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ._core._limits import LimitChange

__all__ = [
    "CHROME_TRACE_FILE",
    "PLOT_INSTALL_HINT",
    "RunTrace",
    "TraceExportError",
    "active_intervals",
    "assign_lanes",
    "chrome_trace_document",
    "export_chrome_trace",
    "limit_change_fields",
    "load_run_trace",
    "plot_timeline",
]

TRACE_FILE: Final = "trace.json"
METADATA_FILE: Final = "metadata.json"
CHROME_TRACE_FILE: Final = "trace.chrome.json"
"""Where :func:`export_chrome_trace` writes when no destination is given (in the output dir)."""
SUPPORTED_TRACE_VERSIONS: Final = (1,)
PLOT_INSTALL_HINT: Final = "pip install 'trio_designer[plot]'"
PLOT_SUFFIXES: Final = (".png", ".svg")

WAIT_SLICE_MIN: Final = 0.001
"""A task's wait (dispatched → started) becomes its own ``wait`` slice when at least this long,
in seconds; shorter waits only show in the slice's args."""

RUN_PID: Final = 1
MODELS_PID: Final = 2
FIRST_COLUMN_PID: Final = 100
LIMIT_CHANGE_EVENT: Final = "limit_change"


class TraceExportError(TrioDesignerError, ValueError):
    """A trace cannot be exported or plotted: no ``trace.json``, an unreadable one, an output
    format we cannot write, or matplotlib missing (the message says what to do)."""


# ---------------------------------------------------------------------------------------------
# Reading a recorded run
# ---------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RunTrace:
    """A recorded run, as the exporters read it from an output directory.

    ``endpoints`` and ``ceilings`` are dicts, so instances compare by value but are not
    hashable.

    Attributes:
      source: the output directory.
      engine: ``"async"`` or ``"sync"``.
      tasks: every task attempt, in recording order.
      events: the scheduler events, in time order.
      columns: display order: the config's declaration order when ``metadata.json`` is there
        (columns without any task left out), else the order of first dispatch.
      endpoints: column -> the model endpoints (``"provider:model"``) it calls; empty without
        ``metadata.json`` or without models.
      ceilings: endpoint -> its ceiling (the smallest ``max_parallel_requests`` of its
        aliases): the adaptive limit starts there.
    """

    source: Path
    engine: str
    tasks: tuple[TaskTrace, ...]
    events: tuple[SchedulerEvent, ...]
    columns: tuple[str, ...]
    endpoints: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    ceilings: Mapping[str, int] = attrs.field(factory=dict)

    @property
    def end(self) -> float:
        """When the last task finished or the last event happened (seconds since the start)."""
        times = [t.finished for t in self.tasks] + [e.time for e in self.events]
        return max(times, default=0.0)

    def endpoint_names(self) -> tuple[str, ...]:
        """Every endpoint some column calls, in order of first use."""
        return tuple(dict.fromkeys(e for c in self.columns for e in self.endpoints.get(c, ())))


def load_run_trace(output_dir: Path) -> RunTrace:
    """Read ``trace.json`` (and, for column order and models, ``metadata.json``).

    Raises:
      TraceExportError: no ``trace.json`` (the run was not traced), or it is not a
        trio_designer trace of a version this module reads.
    """
    output_dir = Path(output_dir)
    document = _read_trace_document(output_dir)
    where = output_dir / TRACE_FILE
    try:
        tasks = tuple(TaskTrace(**t) for t in document["tasks"])
        events = tuple(
            sorted(
                (SchedulerEvent(**e) for e in document["events"]),
                key=lambda e: e.time,
            )
        )
        engine = str(document["engine"])
    except (KeyError, TypeError) as exc:
        raise TraceExportError(
            f"{where} is not a trio_designer trace ({exc!r}); record it again with --trace."
        ) from exc
    config = _read_config(output_dir)
    endpoints, ceilings = _model_endpoints(config)
    return RunTrace(
        source=output_dir,
        engine=engine,
        tasks=tasks,
        events=events,
        columns=_column_order(tasks, config),
        endpoints=endpoints,
        ceilings=ceilings,
    )


def _read_trace_document(output_dir: Path) -> Mapping[str, Any]:
    path = output_dir / TRACE_FILE
    if not path.is_file():
        raise TraceExportError(
            f"{output_dir} has no {TRACE_FILE}; tracing is off by default: run again with "
            "--trace (or RunConfig(trace=True), run: {trace: true} in YAML)."
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


def _read_config(output_dir: Path) -> Mapping[str, Any]:
    """The run's config as stored in ``metadata.json``, or ``{}`` if it cannot be read (the
    trace alone still exports, without model tracks)."""
    try:
        metadata = json.loads((output_dir / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    config = metadata.get("config") if isinstance(metadata, dict) else None
    return config if isinstance(config, dict) else {}


def _model_defaults() -> tuple[str, int]:
    """The default provider and ``max_parallel_requests`` (the stored config leaves defaults
    out)."""
    from .config import ModelConfig

    fields = attrs.fields(ModelConfig)
    return str(fields.provider.default), _int(fields.max_parallel_requests.default)


def _model_endpoints(
    config: Mapping[str, Any],
) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]:
    """Column -> endpoints it calls, and endpoint -> ceiling, from a stored config dict."""
    default_provider, default_parallel = _model_defaults()
    alias_endpoint: dict[str, str] = {}
    ceilings: dict[str, int] = {}
    for model in _dicts(config.get("models")):
        name = f"{model.get('provider', default_provider)}:{model.get('model')}"
        alias_endpoint[str(model.get("alias"))] = name
        parallel = int(model.get("max_parallel_requests", default_parallel))
        ceilings[name] = min(ceilings.get(name, parallel), parallel)
    endpoints: dict[str, tuple[str, ...]] = {}
    for column in _dicts(config.get("columns")):
        aliases = [column["model"]] if "model" in column else list(column.get("models", ()))
        called = tuple(dict.fromkeys(alias_endpoint[a] for a in aliases if a in alias_endpoint))
        if called:
            endpoints[str(column.get("name"))] = called
    return endpoints, ceilings


def _column_order(tasks: Sequence[TaskTrace], config: Mapping[str, Any]) -> tuple[str, ...]:
    traced = {t.column for t in tasks}
    declared = [str(c.get("name")) for c in _dicts(config.get("columns"))]
    by_dispatch = [t.column for t in sorted(tasks, key=lambda t: t.dispatched)]
    ordered = [c for c in declared if c in traced] + by_dispatch
    return tuple(dict.fromkeys(ordered))


def _dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def limit_change_fields(endpoint: str, change: LimitChange) -> dict[str, object]:
    """The fields of a ``limit_change`` scheduler event, as this module reads them.

    Record one per adaptive-limit change (``open_model_registry(on_limit_change=...)`` calls
    back with the endpoint name and the change)::

        state.emit("limit_change", **limit_change_fields(endpoint, change))
    """
    return {
        "endpoint": endpoint,
        "old": change.old,
        "new": change.new,
        "reason": change.reason,
        "detail": change.describe(),
    }


# ---------------------------------------------------------------------------------------------
# Chrome trace-event JSON
# ---------------------------------------------------------------------------------------------


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
                (_us(e.time), _int(e.fields.get("new")))
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
            elif event.name == "early_shutdown":
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
                    "args": _jsonable(event.fields),
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


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float | str) else 0


def _jsonable(fields: Mapping[str, object]) -> dict[str, Any]:
    return {
        str(k): v if isinstance(v, str | int | float | bool | None) else str(v)
        for k, v in fields.items()
    }


# ---------------------------------------------------------------------------------------------
# Timeline picture
# ---------------------------------------------------------------------------------------------

MERGE_GAP_FRACTION: Final = 0.002
"""Gaps between a column's tasks shorter than this fraction of the time axis are closed."""
MIN_BAR_FRACTION: Final = 0.002
"""Bars are drawn at least this fraction of the time axis wide, so instant tasks (samplers,
expressions) still show as a sliver."""


COLUMN_HUES: Final = (0, 1, 2, 4, 5, 6, 8, 9)
"""Columns take tab10 colours, cycling; red (3) is kept for failures and grey (7) for models."""
FAILED_COLOR: Final = "#d62728"
MODEL_COLOR: Final = "0.35"


def active_intervals(
    spans: Iterable[tuple[float, float]], *, gap: float = 0.0
) -> list[tuple[float, float]]:
    """Merge ``(start, end)`` spans into the disjoint intervals during which one was running.

    Spans overlapping, touching, or closer than ``gap`` are merged.
    """
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        end = max(start, end)
        if merged and start <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def plot_timeline(output_dirs: Sequence[Path], dest: Path, *, title: str | None = None) -> Path:
    """Draw when each column was busy, as a Gantt-like picture (PNG or SVG by extension).

    One row per column, a bar wherever at least one of its tasks was running (from the
    generator's start to the end of the attempt), failed attempts marked in red, row-group
    checkpoints as dotted lines; below the columns, one row per model endpoint (busy while any
    of its columns' tasks runs). Several output directories give stacked panels in the given
    order on a shared time axis, each labelled with its engine and makespan: pass the sync run
    first to read it like the seed's sync-vs-async figure.

    Needs matplotlib (``pip install 'trio_designer[plot]'``); it is imported here, on first
    use, with the non-interactive Agg renderer, and with ``MPLCONFIGDIR`` pointed at a
    writable temporary folder when unset.

    Args:
      output_dirs: output directories of runs recorded with ``trace=True`` (one or more).
      dest: the picture's path; ``.png`` or ``.svg``.
      title: the figure's title (default: "Column activity", naming the engines compared).

    Returns:
      ``dest``.

    Raises:
      TraceExportError: no output directory, an unsupported extension, a run without a
        readable ``trace.json``, or matplotlib missing (with the install hint).
    """
    dest = Path(dest)
    suffix = dest.suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        raise TraceExportError(
            f"{dest}: the timeline can be written as {' or '.join(PLOT_SUFFIXES)}; "
            "choose a file name ending in one of them."
        )
    if not output_dirs:
        raise TraceExportError("plot_timeline needs at least one output directory.")
    runs = [load_run_trace(Path(d)) for d in output_dirs]
    figure = _draw(runs, title or _default_title(runs))
    dest.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "trio_designer"}):
        figure.savefig(dest, format=suffix[1:], dpi=150, metadata=_file_metadata(suffix))
    return dest


def _file_metadata(suffix: str) -> dict[str, Any]:
    """No creation date in the file (the same trace gives the same picture)."""
    return {"Date": None} if suffix == ".svg" else {}


def _default_title(runs: Sequence[RunTrace]) -> str:
    if len(runs) == 1:
        return f"Column activity ({runs[0].engine} engine)"
    return "Column activity: " + " vs ".join(r.engine for r in runs)


def _import_matplotlib() -> None:
    """Import matplotlib for drawing off-screen, or say how to install it."""
    if "MPLCONFIGDIR" not in os.environ:
        user = os.getuid() if hasattr(os, "getuid") else os.getpid()
        folder = Path(tempfile.gettempdir()) / f"trio_designer-matplotlib-{user}"
        folder.mkdir(mode=0o700, exist_ok=True)
        os.environ["MPLCONFIGDIR"] = str(folder)
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        raise TraceExportError(
            f"drawing a timeline needs matplotlib, an optional extra: {PLOT_INSTALL_HINT}"
        ) from exc
    del matplotlib


def _draw(runs: Sequence[RunTrace], title: str) -> Figure:
    _import_matplotlib()
    from matplotlib.figure import Figure

    columns = tuple(dict.fromkeys(c for r in runs for c in r.columns))
    endpoints = tuple(dict.fromkeys(e for r in runs for e in r.endpoint_names()))
    labels = [*columns, *(f"model {e}" for e in endpoints)]
    horizon = max(max((r.end for r in runs), default=0.0), 1e-6)
    height = 0.9 + len(runs) * (0.55 + 0.3 * len(labels))
    figure = Figure(figsize=(10, height), layout="constrained")
    axes = figure.subplots(len(runs), 1, sharex=True, squeeze=False)[:, 0]
    colors = _colors(columns)
    for ax, run in zip(axes, runs, strict=True):
        _draw_panel(ax, run, columns, endpoints, colors, horizon, same_engine=_same_engine(runs))
    axes[-1].set_xlabel("seconds since the start of the run")
    axes[-1].set_xlim(0, horizon * 1.02)
    figure.suptitle(title, fontsize=12)
    legend: dict[str, Any] = {}
    for ax in axes:
        handles, names = ax.get_legend_handles_labels()
        legend.update((n, h) for n, h in zip(names, handles, strict=True) if n not in legend)
    if legend:
        figure.legend(
            list(legend.values()),
            list(legend),
            loc="outside lower right",
            ncols=len(legend),
            fontsize=8,
            frameon=False,
        )
    return figure


def _same_engine(runs: Sequence[RunTrace]) -> bool:
    return len({r.engine for r in runs}) < len(runs)


def _colors(columns: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    hues = [palette(i) for i in COLUMN_HUES]
    return {c: hues[i % len(hues)] for i, c in enumerate(columns)}


def _draw_panel(
    ax: Axes,
    run: RunTrace,
    columns: Sequence[str],
    endpoints: Sequence[str],
    colors: Mapping[str, Any],
    horizon: float,
    *,
    same_engine: bool,
) -> None:
    gap, min_width = horizon * MERGE_GAP_FRACTION, horizon * MIN_BAR_FRACTION
    rows: list[tuple[str, list[TaskTrace], Any]] = [
        (c, [t for t in run.tasks if t.column == c], colors[c]) for c in columns
    ]
    for endpoint in endpoints:
        calls = [
            t
            for t in run.tasks
            if endpoint in run.endpoints.get(t.column, ()) and t.status != "skipped"
        ]
        rows.append((f"model {endpoint}", calls, MODEL_COLOR))
    failed_label = "failed attempt"
    for y, (_, tasks, color) in enumerate(rows):
        intervals = active_intervals(((t.started, t.finished) for t in tasks), gap=gap)
        bars = [(start, max(end - start, min_width)) for start, end in intervals]
        ax.broken_barh(bars, (y - 0.38, 0.76), facecolors=color, linewidth=0)
        failed = [
            (t.started, max(t.finished - t.started, min_width))
            for t in tasks
            if t.status in ("failed", "retryable")
        ]
        if failed:
            ax.broken_barh(failed, (y - 0.38, 0.76), facecolors=FAILED_COLOR, label=failed_label)
            failed_label = "_nolegend_"
    checkpoint_label = "row group written"
    for event in run.events:
        if event.name == "row_group_checkpointed":
            ax.axvline(
                event.time, color="0.3", linestyle=":", linewidth=0.9, label=checkpoint_label
            )
            checkpoint_label = "_nolegend_"
    if endpoints:
        ax.axhline(len(columns) - 0.5, color="0.75", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)
    name = f"{run.engine} engine" + (f" ({run.source.name})" if same_engine else "")
    ax.set_title(f"{name}: {run.end:.2f} s", loc="left", fontsize=10)
