"""Sticky progress bars at the bottom of a terminal, drawn with :mod:`rich` from a trio task.

Imported only when a rich display is chosen (``rich`` is the optional ``progress`` extra). The
display is a :class:`rich.live.Live` with ``auto_refresh=False`` — no refresh thread: the
reporter's own trio task takes a :class:`~._progress_model.ProgressSnapshot` and redraws
about ten times a second. A frame looks like (colours aside; 80 columns)::

      12.3s  rows written 400/1000  dropped 2
    topic   ━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 100% 1000/1000  812 rec/s ETA 0:00 0 failed
    summary ━━━━━━━━━━━                   41%  410/1000 33.0 rec/s ETA 0:18 2 failed
    model simulator:sim-gen  limit 12/16  in flight 12  waiting 30  429s 3  410 tok/s

While the display is up, everything that would write over it is routed above it through the
console: ``sys.stdout``/``sys.stderr`` (rich's own redirection), logging handlers that write to
a terminal (their stream is swapped for a proxy), and, when logging is not configured at all,
``trio_designer`` log records (a :class:`rich.logging.RichHandler` is added for the run). All of
it is undone when the display stops.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import trio
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.file_proxy import FileProxy
from rich.live import Live
from rich.logging import RichHandler
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ._progress_model import (
    ColumnProgress,
    EndpointProgress,
    ProgressSnapshot,
    ProgressTracker,
    display_failed,
    format_budget,
    format_eta,
    format_rate,
    format_spend,
)
from ._runview import RunView

#: Seconds between redraws (about 10 Hz).
REFRESH_INTERVAL = 0.1
#: Largest share of the event loop's time drawing may take: when a frame costs more than this
#: share of the interval (many columns, a slow terminal), redraws slow down to keep to it.
MAX_OVERHEAD = 0.05
#: Widest a bar gets; narrower terminals shrink it.
MAX_BAR_WIDTH = 40
#: Lines of a frame that are not column bars, besides one per endpoint (header + margin).
_CHROME_LINES = 2


def render_frame(
    snapshot: ProgressSnapshot, *, max_column_rows: int | None = None
) -> RenderableType:
    """The renderable for one frame: a header, one bar per column, one line per endpoint.

    Pure: the same snapshot renders the same text at the same console width. Bars are at most
    :data:`MAX_BAR_WIDTH` wide and shrink to fit narrow terminals.

    Args:
      snapshot: what to show.
      max_column_rows: at most this many column lines (a live display can only redraw what
        fits the terminal's height); when there are more, finished columns are hidden first and
        a ``… N more columns`` line summarises the rest. ``None``: no limit.
    """
    return _Frame(snapshot, max_column_rows)


class _Frame:
    """A frame that sizes its bars to the width it is rendered at."""

    def __init__(self, snapshot: ProgressSnapshot, max_column_rows: int | None) -> None:
        self._snapshot = snapshot
        self._max_column_rows = max_column_rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        snapshot = self._snapshot
        yield _header(snapshot)
        columns, hidden = _visible_columns(snapshot.columns, self._max_column_rows)
        if columns:
            yield _column_table(columns, options.max_width)
        if hidden:
            finished = sum(1 for c in hidden if c.done >= c.total)
            yield Text(f"… {len(hidden)} more columns ({finished} complete)", style="dim")
        for endpoint in snapshot.endpoints:
            yield _endpoint_line(endpoint)
        if snapshot.spend:
            yield Text(format_spend(snapshot.spend), style="cyan")
        if snapshot.budget:
            yield Text(format_budget(snapshot.budget), style="cyan")


def _header(snapshot: ProgressSnapshot) -> Text:
    text = Text()
    text.append(f"{snapshot.elapsed:6.1f}s", style="bold")
    text.append(f"  rows written {snapshot.rows_written}/{snapshot.total}")
    text.append(f"  dropped {snapshot.rows_dropped}", style="red" if snapshot.rows_dropped else "")
    if snapshot.final and snapshot.outcome:
        style = "dim" if snapshot.outcome == "complete" else "bold yellow"
        text.append(f"  ({snapshot.outcome})", style=style)
    return text


def _visible_columns(
    columns: tuple[ColumnProgress, ...], limit: int | None
) -> tuple[list[ColumnProgress], list[ColumnProgress]]:
    if limit is None or len(columns) <= limit:
        return list(columns), []
    limit = max(limit - 1, 0)  # keep a line for the summary
    running = [c for c in columns if c.done < c.total]
    shown = {c.name for c in running[:limit]}
    for c in columns:  # room left: fill with finished ones, in order
        if len(shown) >= limit:
            break
        shown.add(c.name)
    visible = [c for c in columns if c.name in shown]
    return visible, [c for c in columns if c.name not in shown]


def _column_table(columns: list[ColumnProgress], width: int) -> Table:
    digits = len(str(max(c.total for c in columns)))
    cells = [
        (
            f"{100 * c.fraction:3.0f}%",
            f"{c.done:>{digits}}/{c.total}",
            f"{format_rate(c.rate)} rec/s",
            f"ETA {format_eta(c.eta)}",
            f"{c.failed} failed",
        )
        for c in columns
    ]
    # Everything but the bar has a fixed width; the bar gets what is left, up to the maximum.
    fixed = max(len(c.name) for c in columns) + sum(
        max(len(row[i]) for row in cells) for i in range(5)
    )
    bar_width = max(min(MAX_BAR_WIDTH, width - fixed - 6), 5)
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, style="bold cyan")
    table.add_column(no_wrap=True, width=bar_width)
    for _ in range(5):
        table.add_column(justify="right", no_wrap=True)
    for c, (percent, count, rate, eta, failed) in zip(columns, cells, strict=True):
        table.add_row(
            c.name,
            ProgressBar(total=1.0, completed=c.fraction, width=bar_width),
            percent,
            count,
            rate,
            eta,
            Text(failed, style="bold red" if c.failed else "dim"),
        )
    return table


def _endpoint_line(e: EndpointProgress) -> Text:
    text = Text()
    text.append(f"model {e.name}", style="bold magenta")
    text.append(f"  limit {e.limit}/{e.ceiling}  in flight {e.in_flight}  waiting {e.waiting}  ")
    text.append(f"429s {e.rate_limited}", style="bold yellow" if e.rate_limited else "")
    text.append(f"  {format_rate(e.tokens_per_s)} tok/s")
    if e.cooldown > 0:
        text.append(f"  cooling down {e.cooldown:.1f}s", style="yellow")
    return text


class LogRouting:
    """Routes log output above a live display while it is up; :meth:`restore` undoes it.

    * every ``logging.StreamHandler`` (not a file handler) reachable from the
      ``trio_designer`` logger whose stream is a terminal gets a proxy stream that prints
      through ``console`` (formatting and levels stay the user's);
    * when no handler is reachable at all (logging not configured, so Python's last-resort
      handler would print warnings raw), a :class:`~rich.logging.RichHandler` is added to the
      ``trio_designer`` logger for the duration.
    """

    def __init__(self, console: Console, logger_name: str = "trio_designer") -> None:
        self._console = console
        self._logger = logging.getLogger(logger_name)
        self._swapped: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
        self._added: logging.Handler | None = None

    def install(self) -> None:
        """Start routing (idempotent only through :meth:`restore`; call once)."""
        for handler in _reachable_handlers(self._logger):
            if (
                isinstance(handler, logging.StreamHandler)
                and not isinstance(handler, logging.FileHandler)
                and not isinstance(handler.stream, FileProxy)
                and _is_tty(handler.stream)
            ):
                original = handler.stream
                handler.setStream(FileProxy(self._console, original))
                self._swapped.append((handler, original))
        if not self._logger.hasHandlers():
            self._added = RichHandler(console=self._console, show_path=False)
            self._logger.addHandler(self._added)

    def restore(self) -> None:
        """Put every handler back as it was."""
        for handler, original in reversed(self._swapped):
            handler.setStream(original)
        self._swapped.clear()
        if self._added is not None:
            self._logger.removeHandler(self._added)
            self._added = None


def _reachable_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record logged on ``logger`` reaches (walking up while propagating)."""
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers.extend(current.handlers)
        current = current.parent if current.propagate else None
    return handlers


def _is_tty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


class _Console(Console):
    """A console that, when its terminal goes away, stops writing and tells the display.

    Rich's default reaction to a broken pipe suits a command-line tool, not a library running
    inside someone's program: it points the *process's stdout* at ``/dev/null`` and raises
    ``SystemExit``. Here the console goes quiet and raises ``BrokenPipeError``, which the
    reporter turns into "stop the display, keep the run going".
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError("the terminal of the live progress display was closed")


class RichProgress:
    """Sticky rich progress bars for one run, redrawn about ten times a second.

    Lifecycle (see :class:`~._progress.Reporter`): :meth:`run` starts the live
    display and the log routing, then redraws every :data:`REFRESH_INTERVAL` seconds until
    cancelled; :meth:`final` draws the final frame, stops the display (the last frame stays on
    screen) and restores logging and ``sys.stdout``/``sys.stderr``. Either order is safe, and a
    run so short that :meth:`run` never started still gets its final frame printed.

    Args:
      state: the run's state; create inside its ``trio.run``.
      stream: the terminal to draw on (default ``sys.stderr``).
      console: a ready console instead (tests render to a string this way).
      refresh_interval: seconds between redraws.
      max_overhead: largest share of wall time spent drawing; redraws are spaced by at least
        ``frame cost / max_overhead`` (so a 5 ms frame is drawn at most every 0.1 s at 5 %).
    """

    def __init__(
        self,
        state: RunView,
        *,
        stream: TextIO | None = None,
        console: Console | None = None,
        refresh_interval: float = REFRESH_INTERVAL,
        max_overhead: float = MAX_OVERHEAD,
    ) -> None:
        self._tracker = ProgressTracker(state, start=trio.current_time())
        self.console = (
            console
            if console is not None
            else _Console(file=stream if stream is not None else sys.stderr)
        )
        self._interval = refresh_interval
        self._max_overhead = max_overhead
        self._live = Live(console=self.console, auto_refresh=False, transient=False)
        self._logs = LogRouting(self.console)
        self._live_up = False
        self._closed = False
        self._outcome: str | None = None

    async def run(self) -> None:
        """Show the display and redraw it until cancelled.

        A display that cannot be drawn (the terminal went away) stops with a warning; the run
        goes on.
        """
        if self._closed:
            return
        self._logs.install()
        self._live_up = True
        try:
            self._live.start()
            while True:
                began = time.perf_counter()
                self._draw()
                cost = time.perf_counter() - began
                await trio.sleep(max(self._interval, cost / self._max_overhead))
        except Exception as exc:
            self._close(failure=exc)
        finally:
            self._close()

    def final(self, outcome: str | None = None) -> None:
        """Draw the final frame, its header naming the run's ``outcome`` (``complete``,
        ``early_shutdown``, ``interrupted``), and give the terminal back (never raises for the
        display)."""
        if self._closed:
            return
        self._outcome = outcome
        if self._live_up:
            self._close()
            return
        self._closed = True
        try:
            self.console.print(self._frame(final=True))
        except Exception as exc:
            display_failed(exc)

    def _close(self, failure: Exception | None = None) -> None:
        """Stop the display with the final frame; restore logging; report a display failure."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                if failure is None:
                    self._live.update(self._frame(final=True))  # drawn by stop()
            finally:
                self._live.stop()  # puts sys.stdout/sys.stderr back even if drawing fails
            if failure is None and not self.console.is_terminal:
                self.console.line()  # off a terminal rich leaves the last line open
        except Exception as exc:
            failure = failure or exc
        finally:
            self._logs.restore()
        if failure is not None:
            display_failed(failure)

    def _draw(self) -> None:
        self._live.update(self._frame(final=False), refresh=True)

    def _frame(self, *, final: bool) -> RenderableType:
        snapshot = self._tracker.snapshot(trio.current_time(), final=final, outcome=self._outcome)
        rows = (
            self.console.size.height
            - _CHROME_LINES
            - len(snapshot.endpoints)
            - (1 if snapshot.spend else 0)
            - (1 if snapshot.budget else 0)
        )
        return render_frame(snapshot, max_column_rows=max(rows, 3))
