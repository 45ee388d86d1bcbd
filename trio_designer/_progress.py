"""Live progress of a run: what is measured, how it is chosen, and the plain-text reporter.

A reporter is one trio task started next to the engine. It never hooks into the engine: it
*polls* counters the engine keeps anyway (``RunState.counts``, the model registry's usage and
limiter statistics) a few times a second, so the engine's hot path pays nothing for it. Two
reporters exist:

* :class:`PlainProgress` prints a compact block every few seconds and a final one at the end —
  for CI logs, pipes and notebooks::

      [   4.0s] rows written 40/100, dropped 0
                topic         100/100  100%    25.0 rec/s  ETA 0:00  0 failed
                summary        62/100   62%    15.5 rec/s  ETA 0:02  0 failed
                model simulator:sim-gen  limit 16/16  in flight 16  waiting 0  429s 0  410 tok/s

* ``RichProgress`` (in ``_progress_rich``, imported only when used) draws sticky bars at the
  bottom of a terminal with :mod:`rich`, with log lines printed above them.

Both show the same numbers, taken from one :class:`ProgressSnapshot` built by
:class:`ProgressTracker`; the snapshot is plain data, so a frame can be rendered and tested
without a clock or a run. :func:`make_reporter` picks the reporter for
``TrioDesigner(progress=...)``.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import sys
from collections import deque
from typing import Any, Literal, Protocol, TextIO

import attrs
import trio

from ._engine._runtime import RunState
from ._exceptions import ConfigError
from .config._models import endpoint_name

#: Seconds between plain-text blocks for ``progress=True``/``"auto"`` off a terminal, and for
#: ``progress="plain"``.
PLAIN_INTERVAL = 5.0
#: Seconds of history behind a "recent" rate (records/s, tokens/s) and so behind the ETA.
RATE_WINDOW = 10.0
#: How to get the optional rich display.
INSTALL_HINT = "pip install 'trio_designer[progress]'"

ProgressMode = Literal["auto", "plain", "rich"]

logger = logging.getLogger("trio_designer.progress")


# -- what a frame shows -------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class ColumnProgress:
    """One column's line of a progress frame.

    Attributes:
      name: the column.
      done: cells settled successfully (generated or skipped; a full-column task counts one per
        row).
      total: cells this run generates (the same for every column; see
        :attr:`ProgressSnapshot.total`).
      failed: tasks that failed for good (each dropped its row, or its row group).
      rate: recent cells per second (``None`` until it can be measured).
      eta: seconds until the column is done at the recent rate (``None``: unknown, or the run
        ended before the column completed).
    """

    name: str
    done: int
    total: int
    failed: int
    rate: float | None
    eta: float | None

    @property
    def fraction(self) -> float:
        """``done / total`` in ``[0, 1]`` (1 when there is nothing to do)."""
        return min(1.0, self.done / self.total) if self.total else 1.0


@attrs.frozen(kw_only=True)
class EndpointProgress:
    """One model endpoint's line of a progress frame (from its limiter and usage).

    Attributes:
      name: the endpoint, ``"provider:model"``.
      limit: requests allowed in flight right now (the adaptive limit).
      ceiling: the largest limit (the model's ``max_parallel_requests``).
      in_flight: requests in flight.
      waiting: tasks parked waiting for a slot.
      rate_limited: 429 answers so far.
      tokens_per_s: recent output tokens per second, summed over the aliases of the endpoint.
      cooldown: seconds until admissions resume after a 429 (0 when not cooling down).
    """

    name: str
    limit: int
    ceiling: int
    in_flight: int
    waiting: int
    rate_limited: int
    tokens_per_s: float | None
    cooldown: float = 0.0


@attrs.frozen(kw_only=True)
class ProgressSnapshot:
    """Everything one progress frame shows; plain data, rendered by either reporter.

    Attributes:
      elapsed: seconds since the reporter started.
      total: rows this run generates: rows requested minus the rows of row groups a resumed
        run found already on disk.
      rows_written: rows written so far (surviving rows of checkpointed row groups).
      rows_dropped: rows dropped so far by failures (in checkpointed row groups).
      columns: one line per column, in execution order.
      endpoints: one line per model endpoint (empty without models).
      final: whether this is the last frame (the run ended, however it ended).
    """

    elapsed: float
    total: int
    rows_written: int
    rows_dropped: int
    columns: tuple[ColumnProgress, ...]
    endpoints: tuple[EndpointProgress, ...] = ()
    final: bool = False


# -- measuring ----------------------------------------------------------------------------------
class RateMeter:
    """The recent rate of a growing counter, over a sliding window of samples.

    Feed it ``(now, value)`` samples; :meth:`rate` is the slope between the newest sample and the
    last one taken at or before ``now - window`` (the oldest sample while the run is younger than
    the window). One sample per redraw, so memory is bounded by ``window`` × redraw rate.

    Example::

        meter = RateMeter(window=10.0)
        meter.add(0.0, 0)
        meter.add(2.0, 50)
        meter.rate()  # 25.0
    """

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self._window = window
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, value: float) -> None:
        """Record ``value`` observed at time ``now`` (times must not decrease)."""
        self._samples.append((now, value))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Units per second over the window, or ``None`` with less than two distinct times."""
        if len(self._samples) < 2:
            return None
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return (v1 - v0) / (t1 - t0)


def rows_to_generate(state: RunState) -> int:
    """Rows requested minus the rows of row groups skipped because a resumed run has them."""
    size: int = state.run.row_group_size
    resumed = sum(max(0, min(size, state.num_records - rg * size)) for rg in state.skip_row_groups)
    return max(0, state.num_records - resumed)


class ProgressTracker:
    """Turns a run's counters into :class:`ProgressSnapshot` frames.

    Only reads: ``state.counts``, ``state.rows_written``/``rows_dropped`` and, with models, the
    registry's ``limiters()`` statistics and ``usage()``. Keeps one :class:`RateMeter` per column
    and per endpoint. Trio-free: the caller passes the time.

    Rates: a column's rate is its recent cells/s; once a column is complete the rate shown is its
    average from the start until it completed (a finished column does not decay to 0/s). In the
    final frame every column shows its average over the run.

    Args:
      state: the run's state.
      start: the time progress is measured from (``trio.current_time()`` units).
    """

    def __init__(self, state: RunState, *, start: float, window: float = RATE_WINDOW) -> None:
        self._state = state
        self._start = start
        self._window = window
        self.total = rows_to_generate(state)
        self._column_rates: dict[str, RateMeter] = {}
        self._finished_rate: dict[str, float] = {}
        self._token_rates: dict[str, RateMeter] = {}
        for name, counts in state.counts.items():
            meter = RateMeter(window)
            meter.add(start, counts.ok + counts.skipped)
            self._column_rates[name] = meter

    def snapshot(self, now: float, *, final: bool = False) -> ProgressSnapshot:
        """The frame at time ``now``; ``final=True`` for the last one."""
        elapsed = max(now - self._start, 0.0)
        columns = tuple(
            self._column(name, counts.ok + counts.skipped, counts.failed, now, elapsed, final)
            for name, counts in self._state.counts.items()
        )
        return ProgressSnapshot(
            elapsed=elapsed,
            total=self.total,
            rows_written=self._state.rows_written,
            rows_dropped=self._state.rows_dropped,
            columns=columns,
            endpoints=self._endpoints(now),
            final=final,
        )

    def _column(
        self, name: str, done: int, failed: int, now: float, elapsed: float, final: bool
    ) -> ColumnProgress:
        meter = self._column_rates[name]
        meter.add(now, done)
        rate: float | None
        if name in self._finished_rate:
            rate = self._finished_rate[name]
        elif final or done >= self.total:
            rate = done / elapsed if elapsed > 0 else None
            if done >= self.total and rate is not None:
                self._finished_rate[name] = rate
        else:
            rate = meter.rate()
        remaining = max(self.total - done, 0)
        eta: float | None
        if remaining == 0:
            eta = 0.0
        elif rate and not final:
            eta = remaining / rate
        else:
            eta = None
        return ColumnProgress(
            name=name, done=done, total=self.total, failed=failed, rate=rate, eta=eta
        )

    def _endpoints(self, now: float) -> tuple[EndpointProgress, ...]:
        models: Any = self._state.models
        if models is None:
            return ()
        tokens: dict[str, int] = {}
        for alias, usage in models.usage().items():
            handle = models.model(alias)
            endpoint = endpoint_name(handle.provider, handle.model)
            tokens[endpoint] = tokens.get(endpoint, 0) + usage.output_tokens
        lines = []
        for name, limiter in models.limiters().items():
            stats = limiter.statistics()
            meter = self._token_rates.get(name)
            if meter is None:
                meter = self._token_rates[name] = RateMeter(self._window)
                meter.add(self._start, 0)
            meter.add(now, tokens.get(name, 0))
            lines.append(
                EndpointProgress(
                    name=name,
                    limit=stats.limit,
                    ceiling=stats.ceiling,
                    in_flight=stats.in_flight,
                    waiting=stats.waiting,
                    rate_limited=stats.rate_limited,
                    tokens_per_s=meter.rate(),
                    cooldown=stats.cooldown_remaining,
                )
            )
        return tuple(lines)


# -- formatting shared by both reporters --------------------------------------------------------
def format_eta(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss``); ``-:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_rate(rate: float | None) -> str:
    """A rate with one decimal below 100, none above; ``-`` when unknown."""
    if rate is None:
        return "-"
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.1f}"


def format_endpoint(endpoint: EndpointProgress) -> str:
    """The endpoint line shared by both reporters (without the leading ``model``)."""
    text = (
        f"{endpoint.name}  limit {endpoint.limit}/{endpoint.ceiling}  in flight "
        f"{endpoint.in_flight}  waiting {endpoint.waiting}  429s {endpoint.rate_limited}  "
        f"{format_rate(endpoint.tokens_per_s)} tok/s"
    )
    if endpoint.cooldown > 0:
        text += f"  cooling down {endpoint.cooldown:.1f}s"
    return text


def format_plain(snapshot: ProgressSnapshot) -> str:
    """A snapshot as the plain-text block :class:`PlainProgress` prints (no escape codes)."""
    head = f"[{snapshot.elapsed:7.1f}s] "
    lines = [
        f"rows written {snapshot.rows_written}/{snapshot.total}, dropped {snapshot.rows_dropped}"
    ]
    width = max((len(c.name) for c in snapshot.columns), default=0)
    digits = len(str(snapshot.total))
    for c in snapshot.columns:
        lines.append(
            f"{c.name:<{width}}  {c.done:>{digits}}/{c.total:<{digits}} "
            f"{100 * c.fraction:4.0f}%  {format_rate(c.rate):>7} rec/s  "
            f"ETA {format_eta(c.eta)}  {c.failed} failed"
        )
    lines.extend(f"model {format_endpoint(e)}" for e in snapshot.endpoints)
    return head + ("\n" + " " * len(head)).join(lines)


# -- the plain reporter -------------------------------------------------------------------------
class PlainProgress:
    """Prints progress of ``state`` (and its models) to ``stream`` every ``interval`` seconds.

    Plain text only (no escape codes), so it reads well in CI logs and files. Must be created
    inside the run's ``trio.run`` (it reads the clock).

    Args:
      state: the run's state.
      interval: seconds between blocks.
      stream: where to print (default ``sys.stderr``, looked up when created).
    """

    def __init__(
        self, state: RunState, *, interval: float = PLAIN_INTERVAL, stream: TextIO | None = None
    ) -> None:
        self._state = state
        self.interval = interval
        self._stream = stream if stream is not None else sys.stderr
        self._tracker = ProgressTracker(state, start=trio.current_time())
        self._broken = False

    async def run(self) -> None:
        """Print a block every ``interval`` seconds until cancelled."""
        while not self._broken:
            await trio.sleep(self.interval)
            self.print_block()

    def final(self) -> None:
        """Print the last block (the run ended, however it ended)."""
        self.print_block(final=True)

    def print_block(self, *, final: bool = False) -> None:
        """Print one block now (nothing once the stream has failed: the run goes on)."""
        if self._broken:
            return
        snapshot = self._tracker.snapshot(trio.current_time(), final=final)
        try:
            print(format_plain(snapshot), file=self._stream, flush=True)
        except (OSError, ValueError) as exc:  # a closed pipe or file
            self._broken = True
            display_failed(exc)


def display_failed(exc: Exception) -> None:
    """Say (once, as a warning) that progress output stopped because its stream failed."""
    logger.warning(
        "live progress stopped: its output could not be written (%s: %s); the run goes on",
        type(exc).__name__,
        exc,
    )


# -- choosing a reporter ------------------------------------------------------------------------
class Reporter(Protocol):
    """What the designer runs next to the engine: ``run`` until cancelled, then ``final``.

    ``final`` is called once, after the run's nursery was cancelled but possibly *before*
    ``run`` has noticed; it must leave the terminal clean either way.
    """

    async def run(self) -> None: ...

    def final(self) -> None: ...


def resolve_progress(progress: object) -> tuple[ProgressMode | None, float]:
    """Validate a ``TrioDesigner(progress=...)`` value: ``(mode, plain interval)``.

    ``False``/``0`` → ``(None, ...)`` (no progress); ``True``/``"auto"`` → ``"auto"``;
    ``"plain"``/``"rich"`` as named; a positive number → ``"plain"`` every that many seconds.
    Also checks that ``"rich"`` can be honoured (``rich`` is installed).

    Raises:
      ConfigError: anything else, or ``"rich"`` without ``rich`` installed.
    """
    if progress is True:
        return "auto", PLAIN_INTERVAL
    if progress is False:
        return None, PLAIN_INTERVAL
    if isinstance(progress, numbers.Real) and not isinstance(progress, bool):
        seconds = float(progress)
        if seconds == 0:
            return None, PLAIN_INTERVAL
        if math.isfinite(seconds) and seconds > 0:
            return "plain", seconds
        raise ConfigError(
            f"progress: a number means 'print a plain-text block every that many seconds' and "
            f"must be positive and finite, got {progress!r}"
        )
    if progress == "auto" or progress == "plain":
        return progress, PLAIN_INTERVAL
    if progress == "rich":
        if not rich_available():
            raise ConfigError(
                "progress='rich': the live display needs the optional 'rich' package, which is "
                f"not installed; install it with {INSTALL_HINT}, or use progress='plain' "
                "(or 'auto', which falls back to plain text)"
            )
        return "rich", PLAIN_INTERVAL
    raise ConfigError(
        f"progress: expected True/False, a number of seconds, or one of 'auto', 'plain', "
        f"'rich'; got {progress!r}"
    )


def make_reporter(
    progress: object, state: RunState, *, stream: TextIO | None = None
) -> Reporter | None:
    """The progress reporter for ``TrioDesigner(progress=...)`` (``None`` for no progress).

    * ``True``/``"auto"``: rich bars when ``stream`` is a terminal (and ``TERM`` is not
      ``dumb``) and ``rich`` is installed; otherwise a plain block every
      :data:`PLAIN_INTERVAL` seconds.
    * ``"plain"``: plain blocks every :data:`PLAIN_INTERVAL` seconds; a number: every that
      many seconds.
    * ``"rich"``: always rich (off a terminal rich prints only the final frame).

    Args:
      progress: the ``progress`` value (validated by :func:`resolve_progress`).
      state: the run's state; call inside its ``trio.run``.
      stream: where to draw (default ``sys.stderr``).

    Raises:
      ConfigError: an invalid ``progress`` value, or ``"rich"`` without ``rich`` installed.
    """
    mode, interval = resolve_progress(progress)
    if mode is None:
        return None
    out = stream if stream is not None else sys.stderr
    if mode == "rich" or (mode == "auto" and is_interactive(out) and rich_available()):
        from ._progress_rich import RichProgress

        return RichProgress(state, stream=out)
    return PlainProgress(state, interval=interval, stream=out)


def is_interactive(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal that can redraw in place (a TTY, ``TERM`` not dumb)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return tty and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


def rich_available() -> bool:
    """Whether the optional ``rich`` package can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
