"""The early-shutdown gate: a sliding window of task outcomes.

Every successful task records a success; every failure that drops a row records an error (a
non-retryable error, or a retryable one that exhausted its retries). A retryable failure that is
merely deferred records nothing (a flaky or rate-limiting endpoint is the adaptive limiter's and
the salvage rounds' business, not a reason to give up: reference bug #575). The run should shut
down early when the window is full and its error fraction reaches the threshold, *and* the
error fraction over every outcome recorded so far reaches it too.

Why both: the window judges finish order. Failures slower than successes (an oversize answer
read to its limit, a timeout) finish after the successes they started with, so an otherwise
healthy run whose 10 % of rows fail slowly ends with a window of failures
(``docs/benchmarks.md``, branch ``hostile21``, row 26). The cumulative condition keeps such a
tail from stopping the run (the reference's sync engine judges the cumulative rate too). A run
that fails from the start trips as soon as the window is full, as before; a run that turns bad
after N good tasks trips once its failures catch up with its successes (about N more failed
tasks). Failures no row is to blame for (a dead endpoint, a bad key, a silent provider) do not
wait for either: they stop the run at once (``ProviderError``).
"""

from __future__ import annotations

from collections import deque


class ErrorRateWindow:
    """Sliding window of the last ``window`` outcomes.

    Args:
      window: how many outcomes the window holds (``RunConfig.shutdown_error_window``).
      threshold: error fraction that trips the gate (``RunConfig.shutdown_error_rate``);
        ``1.0`` or more disables the gate.

    Invariant: ``0 <= errors <= len(outcomes) <= window``, ``0 <= total_errors <= total``,
    and once tripped the gate stays tripped. Checked by ``tests/test_completion_tracker.py::
    test_error_window_trips_only_when_full_and_above_threshold`` and
    ``test_error_window_ignores_a_tail_of_failures_after_a_healthy_run``.
    """

    def __init__(self, window: int, threshold: float) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._window = window
        self._threshold = threshold
        self._outcomes: deque[bool] = deque(maxlen=window)
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

    def record(self, *, error: bool) -> bool:
        """Record one outcome; returns whether the gate is (now) tripped."""
        if len(self._outcomes) == self._window and self._outcomes[0]:
            self._errors -= 1
        self._outcomes.append(error)
        self._total += 1
        if error:
            self._errors += 1
            self._total_errors += 1
        if (
            self._threshold < 1.0
            and len(self._outcomes) == self._window
            and self._errors >= self._threshold * self._window
            and self._total_errors >= self._threshold * self._total
        ):
            self._tripped = True
        return self._tripped
