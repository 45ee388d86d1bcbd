"""The adaptive limit's latency signal (``trio_designer._core._latency``, through the controller
of ``_core/_aimd.py``) in closed loop with a simulated self-hosted GPU server (service slots and
a FIFO queue, never a 429), without trio. Event-driven, so a run of minutes of virtual time
takes milliseconds, and deterministic (seeded service times). The 429 rule has its own
simulations in ``tests/test_rate_sim.py``."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from typing import Literal

import attrs
import pytest

from trio_designer._core._aimd import AimdController
from trio_designer._core._limits import Admission, LimitChange


@attrs.define
class Trace:
    """What one simulated run did."""

    done: list[tuple[float, float]] = attrs.Factory(list)  # (admitted_at, answered_at)
    changes: list[LimitChange] = attrs.Factory(list)
    # For each change: whether the report that returned it also ended a probe.
    ended_a_probe: list[bool] = attrs.Factory(list)
    probe_starts: list[float] = attrs.Factory(list)

    def latency_cuts(self) -> list[LimitChange]:
        return [c for c in self.changes if c.reason == "latency"]

    def after(self, t: float) -> tuple[float, float]:
        """Throughput (answers per second) and mean latency of the answers from ``t`` on."""
        late = [(a, b) for a, b in self.done if b >= t]
        end = max(b for _, b in late)
        return len(late) / (end - t), math.fsum(b - a for a, b in late) / len(late)


def simulate(
    ctl: AimdController,
    *,
    capacity: int,
    clients: int,
    duration: float,
    median: float = 1.0,
    sigma: float = 0.0,
    burst: Literal["in_order", "reversed"] = "in_order",
    seed: int = 1,
) -> Trace:
    """``clients`` tasks send requests back to back through ``ctl`` to a GPU server:
    ``capacity`` requests in service at once, the rest wait in a FIFO queue.
    ``reversed`` makes the start-up burst reach the server in reverse admission order (as a
    connection pool may reorder it): the first cohort the controller samples is served last.
    Service times are lognormal (``median``, ``sigma``), seeded.
    """
    rng = random.Random(seed)
    trace = Trace()
    now = 0.0
    queue: deque[Admission] = deque()
    running: list[tuple[float, int, Admission]] = []  # heap of (done_at, tie, admission)
    tie = itertools.count()

    def report(record: Admission) -> None:
        probing = ctl.probing
        change = ctl.record_success(record, now)
        if not probing and ctl.probing:
            trace.probe_starts.append(now)
        if change is not None:
            trace.changes.append(change)
            trace.ended_a_probe.append(probing and not ctl.probing)

    def send() -> None:
        batch: list[Admission] = []
        while len(queue) + len(running) + len(batch) < clients and ctl.can_admit(now):
            batch.append(ctl.admit(now))
        if burst == "reversed" and now == 0.0:
            batch.reverse()
        for admission in batch:
            queue.append(admission)
            start_service()

    def start_service() -> None:
        while queue and len(running) < capacity:
            service = median * rng.lognormvariate(0.0, sigma) if sigma else median
            heapq.heappush(running, (now + service, next(tie), queue.popleft()))

    send()
    while now < duration:
        if running:
            now, _, admission = heapq.heappop(running)
            trace.done.append((admission.admitted_at, now))
            report(admission)
            start_service()
        send()
    return trace


# -- self-hosted GPU: finding the knee -----------------------------------------------------------


@pytest.mark.parametrize("clients", [64, 256])
def test_after_an_overloaded_probe_the_limit_is_cut_at_once_to_the_knee(clients: int) -> None:
    """32 slots x 1 s, ceiling 256. The start-up burst is caught, the probe finds 1 s, and the
    report that ends the probe cuts straight to where Little's law puts latency at the hold
    level (1.2 x the knee the probe windows saw: 38 for 32, less when the probe went no higher
    than the knee): one cut, no confirmation window. Then the endpoint stays full at latency
    well under 1.5x its service time."""
    ctl = AimdController(256)
    trace = simulate(ctl, capacity=32, clients=clients, duration=120.0)
    (cut,) = trace.latency_cuts()
    assert trace.ended_a_probe[trace.changes.index(cut)]
    assert cut.old == 256
    assert 30 <= cut.new <= 40
    assert 16 <= cut.probed_concurrency <= cut.new
    assert cut.at < 20.0
    assert ctl.baseline_latency == pytest.approx(1.0)
    throughput, latency = trace.after(60.0)
    assert throughput >= 0.97 * 32
    assert latency <= 1.35


def test_a_start_up_burst_whose_first_cohort_queued_is_caught_by_the_first_answers() -> None:
    """256 requests at once, the first 32 admitted (the first cohort) served last: that cohort
    says 8 s. The provisional baseline comes from the first answers instead (the requests
    served without queueing), and the burst is seen to be overloaded from the ages of the
    requests still in flight, before the first cohort has even finished."""
    ctl = AimdController(256)
    trace = simulate(ctl, capacity=32, clients=256, duration=120.0, burst="reversed")
    assert trace.probe_starts[0] < 2.5  # the first cohort finishes at 8 s
    (cut,) = trace.latency_cuts()
    assert cut.new <= 40
    assert ctl.baseline_latency == pytest.approx(1.0)
    _, latency = trace.after(60.0)
    assert latency <= 1.35


def test_a_noisy_gpu_endpoint_is_held_near_its_knee() -> None:
    """Lognormal service (σ 0.3, as in the adaptivity bench), 32 slots, ceiling 256: the
    second half keeps the endpoint >= 95 % busy at a mean latency under 1.5x service."""
    ctl = AimdController(256)
    trace = simulate(ctl, capacity=32, clients=256, duration=200.0, sigma=0.3, seed=5)
    mean_service = math.exp(0.3**2 / 2)
    throughput, latency = trace.after(100.0)
    assert throughput >= 0.95 * 32 / mean_service
    assert latency <= 1.5 * mean_service
    assert 32 <= ctl.limit <= 48


# -- endpoints with spare capacity: no probe without evidence -------------------------------------


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_an_endpoint_with_spare_capacity_is_never_probed(sigma: float) -> None:
    """16 clients, ceiling 16, an endpoint that could serve 1,000 at once: latency does not
    depend on our concurrency, so admission is never held below 16 (20 windows: the
    verification probe of the provisional baseline comes only after 25)."""
    ctl = AimdController(16)
    trace = simulate(ctl, capacity=1000, clients=16, duration=40.0, median=1.0, sigma=sigma)
    assert len(trace.done) >= 500
    assert trace.probe_starts == []
    assert trace.changes == []
    assert not ctl.baseline_probed
