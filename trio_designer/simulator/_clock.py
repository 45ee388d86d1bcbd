"""A clock for the simulator's own process whose timers fire on time, not up to 1 ms late.

Why: trio on Linux waits for I/O and timers with ``epoll_wait``, whose timeout is in whole
milliseconds, and CPython rounds the timeout *up* (``select.epoll.poll``). A simulated latency
of 200 ms ending 0.3 ms after a millisecond boundary is therefore served 0.7 ms late: on
average every answer left ~0.5 ms late, plus the wake-up (the small-runs chain diagnostic saw a
0.8–0.9 ms median overshoot per request). The simulator is the benches' measuring instrument,
so its latencies should be what they say.

How: :class:`PreciseClock` is trio's system clock (``perf_counter``) with a different
``deadline_to_sleep_time``, the one hook trio's run loop gives a clock to decide how long the
next I/O wait may last. Whenever trio is about to wait (no task runnable), the clock does the
waiting itself, with ``select`` on trio's epoll descriptor — ``select``'s timeout is in
microseconds, and it returns as soon as epoll has an event (a request arrived, a task was
woken from another thread), so I/O is not held back — and then tells trio to wait 0: trio's
``epoll_wait`` only collects the events. A timer therefore fires within the kernel's timer
slack (~50–100 µs here) of its deadline instead of up to 1 ms after it.

Cost: one more system call (the ``select``) per idle wait, no extra pass of the run loop, no
spinning. While tasks are runnable trio does not ask the clock (its wait is 0 anyway). If
trio's epoll descriptor cannot be found (another I/O backend, a trio version that moved it) or
is beyond ``select``'s reach, the clock is trio's system clock, rounding and all.

Only for the simulator *process* (``python -m trio_designer.simulator``): an in-process
simulator runs on its caller's clock (virtual time in the tests), as before.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Literal

import trio

#: The longest single wait (trio's own cap on an I/O wait is a day).
_LONGEST = 3600.0
#: ``select`` takes descriptors below this only.
_FD_SETSIZE = 1024


class PreciseClock(trio.abc.Clock):
    """trio's system clock, with timers that fire within microseconds of their deadline (see
    the module docstring)."""

    def __init__(self) -> None:
        # select on trio's epoll descriptor; None: not looked up yet; False: not available.
        self._wait: Callable[[float], object] | Literal[False] | None = None

    def start_clock(self) -> None:
        self._wait = None

    def current_time(self) -> float:
        return time.perf_counter()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return 0.0
        if self._wait is None:
            self._wait = _io_wait() or False
        if self._wait is False:
            return remaining  # trio's own wait, rounded up to the millisecond
        self._wait(min(remaining, _LONGEST))
        return 0.0


def _io_wait() -> Callable[[float], object] | None:
    """``select`` on the running trio's epoll descriptor, or ``None`` if it cannot be found
    (or is beyond ``select``'s reach)."""
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT

        fd = GLOBAL_RUN_CONTEXT.runner.io_manager._epoll.fileno()
    except Exception:
        return None
    if not 0 <= fd < _FD_SETSIZE:
        return None
    readers = [fd]
    empty: list[int] = []

    def wait(seconds: float) -> object:
        return select.select(readers, empty, empty, seconds)

    return wait
