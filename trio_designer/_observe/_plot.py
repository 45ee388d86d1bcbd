"""The timeline picture of one or more recorded runs: when each column was busy (matplotlib).

:func:`plot_timeline` draws a Gantt-like picture: one row per column, a bar wherever at least
one of its tasks was running, failed attempts in red, row-group checkpoints as dotted lines,
and below the columns one row per model endpoint. Given two runs of the same config (say the
sync and the async engine) it stacks them on a shared time axis, which is how the seed's
sync-vs-async figure reads.

matplotlib is an optional extra (``pip install 'trio_designer[plot]'``): this module imports it
only inside :func:`plot_timeline`, so importing the module never needs it, and a missing
matplotlib is one :class:`~trio_designer.TraceExportError` with the install hint.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import TraceExportError
from ._events import ROW_GROUP_CHECKPOINTED_EVENT
from ._runtrace import RunTrace, load_run_trace
from ._trace import TaskTrace

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["PLOT_INSTALL_HINT", "PLOT_SUFFIXES", "active_intervals", "plot_timeline"]

PLOT_INSTALL_HINT: Final = "pip install 'trio_designer[plot]'"
"""How to get matplotlib, which drawing needs."""
PLOT_SUFFIXES: Final = (".png", ".svg")
"""The picture formats :func:`plot_timeline` writes, by file extension."""

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
        if event.name == ROW_GROUP_CHECKPOINTED_EVENT:
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
