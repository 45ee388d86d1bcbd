"""When a simulated request's service time starts: at its arrival (its body read), not after
the simulator parsed it and drew its answer (``SimulatorApp._serve``). The app is driven
directly with in-memory ASGI ``receive``/``send``, in virtual time."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from trio_designer.simulator import Latency, SimulatedModel
from trio_designer.simulator._app import SimulatorApp

BODY = json.dumps(
    {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 20}
).encode()


def _model(**extra: Any) -> SimulatedModel:
    return SimulatedModel(name="m", latency=Latency(median=0.2, sigma=0.0), **extra)


async def _call(app: SimulatorApp, *, body_after: float) -> list[dict[str, Any]]:
    """One chat completion whose body arrives ``body_after`` seconds after the call."""
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            await trio.sleep(body_after)
            return {"type": "http.request", "body": BODY, "more_body": False}
        await trio.sleep_forever()  # the client stays: no disconnect
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await app(scope, receive, send)
    return sent


async def test_the_log_starts_a_request_when_its_body_was_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = SimulatorApp([_model()])
    called = trio.current_time()
    sent = await _call(app, body_after=0.05)
    assert sent[0]["status"] == 200
    [record] = app.log
    assert record.start == pytest.approx(called + 0.05)
    assert record.end == pytest.approx(record.start + 0.2)


async def test_service_time_counts_from_the_arrival(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Work done between the arrival and the wait (parsing, drawing the answer) is inside the
    latency: a request that arrived 50 ms ago waits 150 ms more, not 200."""
    app = SimulatorApp([_model()])
    runtime = app.runtimes["m"]
    now = trio.current_time()
    queued_for = await app._service(runtime, 0.2, now - 0.05)
    assert queued_for == 0
    assert trio.current_time() == pytest.approx(now + 0.15)


async def test_time_queued_for_a_slot_is_added(autojump_clock: trio.testing.MockClock) -> None:
    """gpu mode: a request that waited for a slot is served for its whole service time once it
    has one (arrival + queued + service)."""
    app = SimulatorApp([_model(mode="gpu", capacity=1)])
    runtime = app.runtimes["m"]
    start = trio.current_time()
    ends: list[tuple[float, float | None]] = []

    async def one() -> None:
        queued = await app._service(runtime, 0.2, start)
        ends.append((trio.current_time() - start, queued))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
    assert sorted(ends) == [pytest.approx((0.2, 0.0)), pytest.approx((0.4, 0.2))]


async def test_an_arrival_keeps_its_stamp_unless_a_slot_freed_since_may_have_admitted_it() -> None:
    """The server stamps a request when its bytes reached the host but the model admits it
    when it is read; in between, another request of the model may have ended (its slot
    free). Where that slot could have decided the admission (the model was full at the
    stamp), the late-read request arrives at that end instead, or it would look as if it ran
    over capacity; where a slot was free anyway it keeps its stamp. Arrivals read out of
    order keep their own stamps (a burst read newest first must not push the older ones)."""
    from trio_designer.simulator._state import ModelRuntime

    runtime = ModelRuntime(SimulatedModel(name="m", capacity=2), epoch=0.0)
    assert runtime.arrival(1.0) == 1.0
    runtime.enter_flight()
    runtime.settle(2.0)  # a request ended at 2.0: with it, two were in flight at 1.5
    assert runtime.arrival(1.5) == 2.0  # full at its stamp: it arrives at that end
    assert runtime.arrival(2.5) == 2.5
    assert runtime.arrival(2.4) == 2.4  # read after a later stamp: its own, not 2.5
    runtime.leave_flight()
    assert runtime.arrival(1.5) == 1.5  # a slot was free at 1.5 even with that end
    runtime.settle(3.0)
    runtime.settle(3.1)
    assert runtime.arrival(2.9) == 3.1  # two ended since: the model may have been full


async def test_a_model_with_budgets_takes_its_arrivals_in_time_order() -> None:
    """Budgets (and capacity schedules) are charged and followed at the arrival, so such a
    model never serves a request from before a decision it already took."""
    from trio_designer.simulator._state import ModelRuntime

    runtime = ModelRuntime(SimulatedModel(name="m", rpm=600), epoch=0.0)
    assert runtime.arrival(1.0) == 1.0
    runtime.settle(2.0)
    assert runtime.arrival(1.5) == 2.0
    assert runtime.arrival(1.8) == 2.0  # nor before an arrival already taken
    runtime.settle(1.9)
    assert runtime.arrival(2.5) == 2.5
    assert runtime.arrival(2.4) == 2.5
