"""The early-shutdown gate: a window of task outcomes, in the order the tasks *started*.

Every successful task records a success; every failure that drops a row records an error (a
non-retryable error, or a retryable one that exhausted its retries). A retryable failure that is
merely deferred records nothing (a flaky or rate-limiting endpoint is the adaptive limiter's and
the salvage rounds' business, not a reason to give up: reference bug #575). The run should shut
down early when the window is full and its error fraction reaches the threshold.

Why start order: a window of the last outcomes to *finish* judges finish order. Failures slower
than successes (an oversize answer read to its limit, a timeout) finish after the successes
that started with them, so an otherwise healthy run whose 10 % of rows fail slowly ends with a
window of failures (``docs/benchmarks.md``, branch ``hostile21``, row 26: 0 of 100 rows
written). The window here holds the outcomes of the ``window`` *latest-started* tasks among
those that have finished (ties in start time broken by finish order): a slow failure counts
among the tasks it started with, and one that started before everything in the window changes
only the run's totals. A run that fails from the start trips as soon as the window is full; a
run that turns bad after N good tasks trips once ``threshold × window`` of the tasks started
since have failed — not after N more failures, as a gate on the run's cumulative rate would.
Failures no row is to blame for (a dead endpoint, a bad key, a silent provider) do not wait
for the gate: they stop the run at once (``ProviderError``).
"""

from __future__ import annotations

import bisect


class ErrorRateWindow:
    """The outcomes of the last ``window`` tasks to start, among those that have finished.

    Args:
      window: how many outcomes the window holds (``RunConfig.shutdown_error_window``).
      threshold: error fraction that trips the gate (``RunConfig.shutdown_error_rate``);
        ``1.0`` or more disables the gate.

    Invariant: ``0 <= errors <= len(window) <= window size``, the window holds the outcomes
    with the greatest ``(started, finish order)`` recorded so far, ``0 <= total_errors <=
    total``, and once tripped the gate stays tripped. Checked by
    ``tests/test_completion_tracker.py::test_error_window_trips_only_when_full_and_above_threshold``,
    ``test_error_window_judges_start_order`` and
    ``test_error_window_matches_a_plain_sort`` (against sorting every outcome).
    """

    def __init__(self, window: int, threshold: float) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._window = window
        self._threshold = threshold
        # (started, finish order, error), ascending; at most ``window`` of them.
        self._outcomes: list[tuple[float, int, bool]] = []
        self._errors = 0
        self._total = 0
        self._total_errors = 0
        self._tripped = False

    @property
    def tripped(self) -> bool:
        """Whether the gate has tripped (it stays tripped)."""
        return self._tripped

    @property
    def error_rate(self) -> float:
        """The error fraction of the window."""
        return self._errors / len(self._outcomes) if self._outcomes else 0.0

    @property
    def cumulative_error_rate(self) -> float:
        """The error fraction over every outcome recorded."""
        return self._total_errors / self._total if self._total else 0.0

    def successes_to_trip(self) -> int | None:
        """How many successes in a row, from now, would trip the gate: ``None`` if no run of
        successes can.

        A success never adds an error, so it trips the gate only by filling the window — the
        success that makes it full, when the window's errors already reach the threshold.
        The engine's batched replay (``_engine/_replay.py``) records a batch's successes
        together, and stops a batch there, so no cell starts after the gate trips."""
        outcomes = len(self._outcomes)
        if (
            self._tripped
            or self._threshold >= 1.0
            or outcomes >= self._window
            or self._errors < self._threshold * self._window
        ):
            return None
        return self._window - outcomes

    def record_successes(self, count: int, *, started: float) -> bool:
        """:meth:`record` of ``count`` successes that all started at ``started``, one after
        the other (the batched replay's served cells), in one step; returns whether the gate
        is (now) tripped.

        The window after them is the one after ``count`` calls of :meth:`record`: the
        ``window`` greatest outcomes among those it held and the new ones (what each call
        keeps: a call that finds the window full puts its outcome in place of the least, or
        drops it if it is the least). The gate trips as it would in one of those calls: a
        success adds no error, so only the call that fills the window can trip it, with the
        errors the window held before (none of them evicted yet); once full, successes only
        push errors out. ``tests/test_completion_tracker.py`` compares the two."""
        if count <= 0:
            return self._tripped
        outcomes = self._outcomes
        held, window, total = len(outcomes), self._window, self._total
        if (
            held < window <= held + count
            and self._threshold < 1.0
            and self._errors >= self._threshold * window
        ):
            self._tripped = True
        self._total = total + count
        outcomes.extend([(started, order, False) for order in range(total, total + count)])
        outcomes.sort()
        excess = len(outcomes) - window
        if excess > 0:
            self._errors -= sum(outcome[2] for outcome in outcomes[:excess])
            del outcomes[:excess]
        return self._tripped

    def record(self, *, error: bool, started: float) -> bool:
        """Record the outcome of a task that started at ``started`` (any clock that orders
        the run's tasks); returns whether the gate is (now) tripped."""
        outcome = (started, self._total, error)
        self._total += 1
        self._total_errors += error
        outcomes = self._outcomes
        if len(outcomes) < self._window:
            bisect.insort(outcomes, outcome)
            self._errors += error
        elif outcome > outcomes[0]:
            self._errors -= outcomes.pop(0)[2]
            bisect.insort(outcomes, outcome)
            self._errors += error
        # else: it started before every outcome in the window; only the totals count it.
        if (
            self._threshold < 1.0
            and len(outcomes) == self._window
            and self._errors >= self._threshold * self._window
        ):
            self._tripped = True
        return self._tripped
