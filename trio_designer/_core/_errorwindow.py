"""The early-shutdown gate: a sliding window of task outcomes.

Every successful task records a success; every failure that drops a row records an error (a
non-retryable error, or a retryable one that exhausted its retries). A retryable failure that is
merely deferred records nothing (a flaky or rate-limiting endpoint is the adaptive limiter's and
the salvage rounds' business, not a reason to give up: reference bug #575). When the window is
full and the error fraction reaches the threshold, the run should shut down early.
"""

from __future__ import annotations

from collections import deque


class ErrorRateWindow:
    """Sliding window of the last ``window`` outcomes.

    Args:
      window: how many outcomes the window holds (``RunConfig.shutdown_error_window``).
      threshold: error fraction that trips the gate (``RunConfig.shutdown_error_rate``);
        ``1.0`` or more disables the gate.

    Invariant: ``0 <= errors <= len(outcomes) <= window``, and once tripped the gate stays
    tripped. Checked by ``tests/test_completion_tracker.py::
    test_error_window_trips_only_when_full_and_above_threshold``.
    """

    def __init__(self, window: int, threshold: float) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._window = window
        self._threshold = threshold
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._errors = 0
        self._tripped = False

    @property
    def tripped(self) -> bool:
        """Whether the gate has tripped (it stays tripped)."""
        return self._tripped

    @property
    def error_rate(self) -> float:
        return self._errors / len(self._outcomes) if self._outcomes else 0.0

    def record(self, *, error: bool) -> bool:
        """Record one outcome; returns whether the gate is (now) tripped."""
        if len(self._outcomes) == self._window and self._outcomes[0]:
            self._errors -= 1
        self._outcomes.append(error)
        if error:
            self._errors += 1
        if (
            self._threshold < 1.0
            and len(self._outcomes) == self._window
            and self._errors >= self._threshold * self._window
        ):
            self._tripped = True
        return self._tripped
