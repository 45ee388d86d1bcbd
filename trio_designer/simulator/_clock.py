"""The standalone simulator's clock: trio's real clock, woken on time.

trio sleeps in ``epoll_wait``, whose timeout is whole milliseconds, and Python rounds a
timeout *up* to the next one: a task due in 7.3 ms is woken after 8, up to a millisecond
late. For the simulator that lateness is not its latency model but an error of the
instrument: an answer due 200 ms after its request's arrival left 0.7–1.0 ms late in the
median (up to 4–5 ms), on every wave of a small run's critical path.

:class:`PunctualClock` asks the kernel to wake it on the last whole millisecond *before* the
deadline and polls (a zero timeout) for the remainder, so a due answer is woken within the
kernel's timer slack (~50 µs) of its moment. The cost is at most a millisecond of polling per
wake-up, on the simulator's own process: it is only for ``python -m trio_designer.simulator``,
never for a simulator that shares a process (and its CPU) with an engine.
"""

from __future__ import annotations

import math
import random
import time

import trio

_SPIN: float = 1e-3
"""Below this, the rest of a wait is polled instead of slept (epoll's resolution)."""
_LONG: float = 3600.0
"""Beyond this a wait is left as it is (trio caps it; ``inf`` when nothing is due)."""


class PunctualClock(trio.abc.Clock):
    """trio's system clock (``perf_counter`` plus a random offset, like trio's own), with
    sleeps that end on time instead of up to a millisecond late."""

    def __init__(self) -> None:
        self._offset = random.uniform(10_000.0, 200_000.0)

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self._offset + time.perf_counter()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        left = deadline - self.current_time()
        if left < _SPIN:
            return 0.0
        if left > _LONG:  # no deadline (inf), or one too far for the millisecond to matter
            return left
        # whole milliseconds, a hair under, so that the ceiling to milliseconds keeps it whole
        return math.floor(left / _SPIN) * _SPIN - 1e-7
