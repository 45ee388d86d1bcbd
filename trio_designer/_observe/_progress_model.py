"""What a progress frame shows, and how it is measured: the model both reporters render.

A reporter never hooks into the engine: it *polls* counters the engine keeps anyway (the
column counts, rows written and dropped, the model registry's usage and limiter statistics,
all through the read-only :class:`~._runview.RunView`) a few times a second, so the engine's
hot path pays nothing for it. :class:`ProgressTracker` turns those counters into a
:class:`ProgressSnapshot` — plain data, so a frame can be rendered and tested without a clock
or a run. The ``format_*`` helpers are the number formats both reporters share, and
:func:`display_failed` the one warning either gives when its output breaks.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence

import attrs

from ..config._models import endpoint_name
from ._runview import RunView

__all__ = [
    "RATE_WINDOW",
    "ColumnProgress",
    "EndpointProgress",
    "ProgressSnapshot",
    "ProgressTracker",
    "RateMeter",
    "display_failed",
    "format_endpoint",
    "format_eta",
    "format_rate",
    "rows_to_generate",
]

#: Seconds of history behind a "recent" rate (records/s, tokens/s) and so behind the ETA.
RATE_WINDOW = 10.0

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
class ModelSpend:
    """What one model alias spent so far.

    Attributes:
      alias: the model alias.
      input_tokens, output_tokens: tokens of its answers so far.
      cost: their cost at the alias's price; ``None`` when it has no price.
    """

    alias: str
    input_tokens: int
    output_tokens: int
    cost: float | None


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
      outcome: on the last frame, how the run ended, in the words of ``metadata.json``'s
        ``status`` (``complete``, ``early_shutdown``, ``interrupted``); ``None`` while the run
        goes on, or when the reporter was not told.
      spend: tokens and cost per model alias so far (empty without models).
      budget: ``(name, spent, limit)`` per budget the run has (``cost``, ``tokens``,
        ``requests``), spent over the whole run; empty without budgets.
    """

    elapsed: float
    total: int
    rows_written: int
    rows_dropped: int
    columns: tuple[ColumnProgress, ...]
    endpoints: tuple[EndpointProgress, ...] = ()
    final: bool = False
    outcome: str | None = None
    spend: tuple[ModelSpend, ...] = ()
    budget: tuple[tuple[str, float, float], ...] = ()


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


def rows_to_generate(state: RunView) -> int:
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
    average from the start to the first frame that saw it complete, and stays so (a finished
    column does not decay to 0/s), in the final frame too. In the final frame a column that
    never completed (an interrupted or early-stopped run) shows its average over the run.

    Args:
      state: the run's state.
      start: the time progress is measured from (``trio.current_time()`` units).
    """

    def __init__(self, state: RunView, *, start: float, window: float = RATE_WINDOW) -> None:
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

    def snapshot(
        self, now: float, *, final: bool = False, outcome: str | None = None
    ) -> ProgressSnapshot:
        """The frame at time ``now``; ``final=True`` for the last one, with the run's
        ``outcome`` when known."""
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
            outcome=outcome if final else None,
            spend=self._spend(),
            budget=self._budget(),
        )

    def _budget(self) -> tuple[tuple[str, float, float], ...]:
        # Optional on a RunView (the engine's RunState has it): fakes without budgets work.
        gate = getattr(self._state, "budget_gate", None)
        if gate is None:
            return ()
        spent = gate.spent().to_dict()
        return tuple(
            (name, float(spent[name]), float(limit))
            for name, limit in gate.budget.to_dict().items()
            if limit is not None
        )

    def _spend(self) -> tuple[ModelSpend, ...]:
        models = self._state.models
        if models is None:
            return ()
        return tuple(
            ModelSpend(
                alias=alias,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost=usage.cost if models.model(alias).priced else None,
            )
            for alias, usage in models.usage().items()
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
        models = self._state.models
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


def format_spend(spend: Sequence[ModelSpend]) -> str:
    """The spend line shared by both reporters: tokens and cost per model alias, and the total
    cost when every alias has a price (empty without models)."""
    if not spend:
        return ""
    parts = []
    for s in spend:
        cost = "" if s.cost is None else f" {format_cost(s.cost)}"
        parts.append(f"{s.alias} {s.input_tokens}+{s.output_tokens} tok{cost}")
    costs = [s.cost for s in spend if s.cost is not None]
    total = f"  total {format_cost(sum(costs))}" if len(costs) == len(spend) > 1 else ""
    return "spent " + ", ".join(parts) + total


def format_budget(budget: Sequence[tuple[str, float, float]]) -> str:
    """The budget line shared by both reporters: spent / limit per budget (empty without)."""
    if not budget:
        return ""
    parts = [
        f"{name} {format_cost(spent)}/{limit:g}" if name == "cost" else
        f"{name} {int(spent)}/{int(limit)}"
        for name, spent, limit in budget
    ]  # fmt: skip
    return "budget " + ", ".join(parts)


def format_cost(cost: float) -> str:
    """A cost with four decimals below 1, two above (the currency of the prices)."""
    return f"{cost:.4f}" if abs(cost) < 1 else f"{cost:,.2f}"


def display_failed(exc: Exception) -> None:
    """Say (once, as a warning) that progress output stopped because its stream failed."""
    logger.warning(
        "live progress stopped: its output could not be written (%s: %s); the run goes on",
        type(exc).__name__,
        exc,
    )
