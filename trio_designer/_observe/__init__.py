"""Observing a run: task traces, the trace file, its exports, and live progress.

Below the engine: the engine records into :class:`TraceRecorder` and emits scheduler events;
nothing here imports the engine (progress reads the run through a read-only protocol), so data
flows one way, engine → ``_observe`` → ``_sink`` (for file names and the atomic write).

One idea per module:

===================  ========================================================================
``_trace``           :class:`TaskTrace`, :class:`SchedulerEvent`, :class:`TraceRecorder`
``_events``          the scheduler events' names and fields (``limit_change`` shaping)
``_tracefile``       ``trace.json``: write at the end of a run, read back (validated)
``_runtrace``        :class:`RunTrace`: a recorded run as the exporters read it
``_perfetto``        Chrome trace-event JSON for Perfetto (:func:`export_chrome_trace`)
``_plot``            the matplotlib timeline picture (:func:`plot_timeline`; lazy import)
``_runview``         :class:`RunView`: the read-only view of a running run progress polls
``_progress_model``  progress snapshots, the tracker that measures them, shared formats
``_progress_plain``  the plain-text reporter
``_progress_rich``   the rich terminal reporter (imported only when chosen)
``_progress``        choosing a reporter (:func:`resolve_progress`, :func:`make_reporter`)
===================  ========================================================================
"""

from ._events import LIMIT_CHANGE_EVENT, limit_change_fields
from ._perfetto import export_chrome_trace
from ._plot import plot_timeline
from ._progress import make_reporter, resolve_progress
from ._runtrace import RunTrace, load_run_trace
from ._runview import RunView
from ._trace import SchedulerEvent, TaskStatus, TaskTrace, TraceRecorder
from ._tracefile import read_trace, write_trace

__all__ = [
    "LIMIT_CHANGE_EVENT",
    "RunTrace",
    "RunView",
    "SchedulerEvent",
    "TaskStatus",
    "TaskTrace",
    "TraceRecorder",
    "export_chrome_trace",
    "limit_change_fields",
    "load_run_trace",
    "make_reporter",
    "plot_timeline",
    "read_trace",
    "resolve_progress",
    "write_trace",
]
