"""The standalone simulator's clock (``simulator/_clock.py``): woken on time, never early."""

from __future__ import annotations

import math

import trio

from trio_designer.simulator._clock import PunctualClock


def test_a_wait_is_slept_in_whole_milliseconds_and_the_rest_polled() -> None:
    """epoll's timeout is whole milliseconds, rounded up by Python: the clock asks for the
    whole milliseconds left (a hair under, so the rounding keeps them), and for the last
    fraction of one polls (0). Nothing due: the wait is left as it is."""
    clock = PunctualClock()
    now = clock.current_time()
    asked = clock.deadline_to_sleep_time(now + 0.0073)
    assert 0.0069 < asked < 0.007
    assert math.ceil(asked * 1000) == 7  # epoll wakes at 7 ms, 0.3 ms before the deadline
    assert clock.deadline_to_sleep_time(now + 0.0005) == 0.0
    assert clock.deadline_to_sleep_time(now - 1.0) == 0.0
    assert clock.deadline_to_sleep_time(math.inf) == math.inf
    assert clock.deadline_to_sleep_time(now + 7200.0) > 7199.0


def test_a_sleep_under_the_clock_never_ends_early() -> None:
    """The run loop still wakes a task only once its deadline has passed (here, a few short
    sleeps run for real; the test checks the order of moments, never a duration's bound)."""
    clock = PunctualClock()

    async def sleeps() -> list[tuple[float, float]]:
        with trio.fail_after(10):
            moments = []
            for delay in (0.0004, 0.0013, 0.003):
                deadline = trio.current_time() + delay
                await trio.sleep_until(deadline)
                moments.append((deadline, trio.current_time()))
            return moments

    for deadline, woken in trio.run(sleeps, clock=clock):
        assert woken >= deadline
