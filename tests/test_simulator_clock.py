"""The simulator process's clock (``simulator/_clock.py``): timers fire at (never before) their
deadline, and I/O still wakes the run loop at once while a timer is pending.

These run on the real clock (the clock under test *is* the real clock); each has a deadline of
a few seconds, and no test asserts a speed (how much closer to the deadline timers fire is
measured in ``docs/benchmarks.md``, branch ``smallhop``).
"""

from __future__ import annotations

import socket
import threading
import time

import trio

from trio_designer.simulator._clock import PreciseClock


def test_outside_a_run_it_is_the_system_clock() -> None:
    clock = PreciseClock()
    now = clock.current_time()
    assert abs(now - time.perf_counter()) < 1.0
    assert clock.deadline_to_sleep_time(now - 1) == 0.0
    # No trio run: no epoll to wait on, so it answers like trio's own clock.
    assert 0.5 < clock.deadline_to_sleep_time(clock.current_time() + 1) <= 1.0


def test_timers_fire_at_their_deadline_never_before() -> None:
    late: list[float] = []

    async def main() -> None:
        with trio.fail_after(5):
            for i in range(20):
                deadline = trio.current_time() + 0.001 + i * 0.00037
                await trio.sleep_until(deadline)
                late.append(trio.current_time() - deadline)

    trio.run(main, clock=PreciseClock())
    assert len(late) == 20
    assert min(late) >= 0


def test_io_wakes_the_loop_while_a_timer_is_pending() -> None:
    """The clock waits in ``select`` on trio's epoll descriptor: data arriving from another
    thread while the only deadline is an hour away is read at once (a wait that ignored I/O
    would hit the 5 s deadline)."""

    async def main() -> bytes:
        a, b_std = socket.socketpair()
        b = trio.socket.from_stdlib_socket(b_std)
        with a, b, trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep, 3600)  # the next deadline: an hour away
                timer = threading.Timer(0.05, a.send, (b"x",))
                timer.start()
                try:
                    data = await b.recv(1)
                finally:
                    timer.cancel()
                nursery.cancel_scope.cancel()
        return data

    assert trio.run(main, clock=PreciseClock()) == b"x"


def test_a_run_on_it_can_be_woken_from_another_thread() -> None:
    """``run_sync_soon`` (trio's wake-up socket is registered with its epoll) reaches a run
    that waits in the clock's ``select``."""

    async def main() -> str:
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        timer = threading.Timer(0.05, token.run_sync_soon, (done.set,))
        with trio.fail_after(5):
            timer.start()
            try:
                await done.wait()
            finally:
                timer.cancel()
        return "woken"

    assert trio.run(main, clock=PreciseClock()) == "woken"
