"""The adaptive limit's 429 rule (``trio_designer._core._aimd``) in closed loop with a simulated
hosted API, without trio: a hidden concurrency limit (fixed or moving), sporadic 429s that our
load does not cause, or both. Rejected requests are retried in place (``_core/_rate_retry.py``:
their own ``Retry-After``, or a short jittered backoff), as ``ModelHandle.chat`` does.
Event-driven and seeded: minutes of virtual time take milliseconds, and every run is exact.

The scenarios are the ones of ``benches/endpoints.py`` (which runs them over real HTTP against
the simulator in its own process), at the same sizes: Wide's requests are independent once
their row is admitted, so ``cells`` requests with ``ready`` of them waiting at a time stand for
its rows."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections.abc import Callable

import attrs
import pytest

from trio_designer._core._aimd import AimdController
from trio_designer._core._limits import DEFAULT_POLICY, Admission, LimitChange, LimiterPolicy
from trio_designer._core._rate_retry import DEFAULT_RATE_LIMIT_RETRY, RateLimitRetry
from trio_designer._scaleout._shard import SHARD_POLICY

Capacity = Callable[[float], int]


@attrs.frozen
class Run:
    """What one simulated run did."""

    makespan: float
    rejected: int
    limits: list[tuple[float, int]]  # (time, limit) at every change, from (0, ceiling)
    changes: list[LimitChange]
    last_admitted: float
    final: int
    """The limit when the last request went out: afterwards demand falls away, and a probe
    passes because the server has room, not because its capacity rose."""

    def limit_at(self, t: float) -> int:
        return [limit for at, limit in self.limits if at <= t][-1]

    def lowest_after(self, t: float) -> int:
        return min([self.limit_at(t)] + [limit for at, limit in self.limits if at > t])


def simulate(
    *,
    cells: int,
    ceiling: int,
    capacity: int | Capacity,
    noise: float = 0.0,
    latency: float = 0.2,
    sigma: float = 0.0,
    retry_after: float | None = 1.0,
    ready: int | None = None,
    seed: int = 1,
    policy: LimiterPolicy = DEFAULT_POLICY,
    retry: RateLimitRetry = DEFAULT_RATE_LIMIT_RETRY,
    round_trip: float = 0.001,
    spread: float = 0.0,
) -> Run:
    """``cells`` requests through one :class:`AimdController` to a hosted API.

    The API holds at most ``capacity`` requests (a function of time, for a moving limit) and
    answers 429 at once to any request that arrives while it is full, and to a ``noise`` share
    of all requests whatever the load; the others take ``latency`` seconds (lognormal with
    ``sigma``). 429s carry ``Retry-After: retry_after`` (``None``: no header). A rejected
    request waits its :meth:`RateLimitRetry.delay` and asks again at its own priority (the
    engine's salvage takes over after ``retry.max_attempts``: here, a 1 s wait). At most
    ``ready`` requests wait for a slot at a time (all when ``None``), lowest index first.
    ``spread``: each request's way to the server takes up to that much longer (uniform), as
    the client's own work does over real HTTP: requests sent in one wave drift apart, and
    after a few round trips they go out spread over the whole latency, not in waves.
    """
    rng = random.Random(seed)
    capacity_at: Capacity = capacity if callable(capacity) else (lambda _t, c=capacity: c)
    ctl = AimdController(ceiling, policy)
    events: list[tuple[float, int, str, object]] = []
    tie = itertools.count()
    waiting: list[tuple[int, int]] = []  # heap of (cell, tie)
    attempts = [0] * cells
    waited = [0.0] * cells
    now, held, done, finished, released, last_admitted = 0.0, 0, 0, 0.0, 0, 0.0
    limits = [(0.0, ceiling)]
    changes: list[LimitChange] = []
    rejected = 0

    def at(t: float, kind: str, what: object) -> None:
        heapq.heappush(events, (t, next(tie), kind, what))

    def release_ready() -> None:
        nonlocal released
        top = cells if ready is None else min(cells, done + ready)
        while released < top:
            heapq.heappush(waiting, (released, next(tie)))
            released += 1

    def admit() -> None:
        nonlocal last_admitted
        while waiting and ctl.can_admit(now):
            last_admitted = now
            cell, _ = heapq.heappop(waiting)
            way = round_trip / 2 + (rng.uniform(0.0, spread) if spread else 0.0)
            at(now + way, "arrive", (cell, ctl.admit(now)))
        if waiting and ctl.cooldown_until > now:
            at(ctl.cooldown_until, "wake", None)

    def note(change: LimitChange | None) -> None:
        if change is not None:
            changes.append(change)
            limits.append((now, change.new))

    release_ready()
    admit()
    while events:
        now, _, kind, what = heapq.heappop(events)
        if kind == "arrive":
            cell, admission = what  # type: ignore[misc]
            if held >= capacity_at(now) or rng.random() < noise:
                at(now + round_trip / 2, "429", what)
            else:
                held += 1
                service = latency * (rng.lognormvariate(0.0, sigma) if sigma else 1.0)
                at(now + service, "served", what)
        elif kind == "served":
            held -= 1
            at(now + round_trip / 2, "answer", what)
        elif kind == "answer":
            cell, admission = what  # type: ignore[misc]
            note(ctl.record_success(admission, now))
            done += 1
            finished = now
            release_ready()
        elif kind == "429":
            cell, admission = what  # type: ignore[misc]
            rejected += 1
            note(ctl.record_rate_limited(admission, now))
            attempts[cell] += 1
            delay = retry.delay(retry_after, attempts[cell], rng.random())
            if not retry.retries(attempts[cell], waited[cell], delay):
                attempts[cell], waited[cell], delay = 0, 0.0, 1.0  # the engine's salvage
            waited[cell] += delay
            at(now + delay, "retry", cell)
        elif kind == "retry":
            heapq.heappush(waiting, (what, next(tie)))  # type: ignore[arg-type]
        admit()
    final = [limit for t, limit in limits if t <= last_admitted][-1]
    return Run(
        makespan=finished,
        rejected=rejected,
        limits=limits,
        changes=changes,
        last_admitted=last_admitted,
        final=final,
    )


def moving_8_to_32(t: float) -> int:
    """A hidden limit of 32 that drops to 8 for ten seconds (another tenant), then recovers."""
    return 8 if 10.0 <= t < 20.0 else 32


# -- a hidden concurrency limit ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hidden", "ceiling", "cells", "ready"),
    [(8, 32, 1000, None), (8, 32, 1000, 48), (32, 64, 5000, None), (32, 64, 5000, 96)],
)
@pytest.mark.parametrize("retry_after", [1.0, None])
def test_a_hidden_limit_is_found_at_once_and_held_within_one(
    hidden: int, ceiling: int, cells: int, ready: int | None, retry_after: float | None
) -> None:
    """The start-up burst at the ceiling is cut to what the server holds as soon as more
    requests wait than it holds: within milliseconds when every request waits; when the
    application keeps only a few rows' worth waiting, once the rejected ones come back after
    their Retry-After. Afterwards the limit stays within one of the hidden limit (probes one
    above it fail and are cut back) and the run takes at most 1.11x the ideal (cells / hidden
    x latency)."""
    run = simulate(
        cells=cells, ceiling=ceiling, capacity=hidden, ready=ready, retry_after=retry_after
    )
    settled = 0.1 if ready is None else 2.5
    held = [limit for t, limit in run.limits if settled <= t < run.last_admitted]
    assert run.limit_at(settled) <= hidden + 1
    assert min(held) >= hidden - 1
    assert max(held) <= hidden + 1
    assert abs(run.final - hidden) <= 1
    assert run.makespan <= 1.11 * cells / hidden * 0.2
    assert {c.reason for c in run.changes} == {"rate_limited", "increase"}


def test_a_noisy_latency_does_not_hide_the_limit() -> None:
    """Lognormal service (σ 0.3) against a hidden limit of 8: still within one, still fast."""
    run = simulate(cells=1000, ceiling=32, capacity=8, sigma=0.3)
    assert hidden_held(run, 8)
    assert run.makespan <= 1.11 * 1000 / 8 * 0.2 * 1.05  # the mean service is 1.046 x 0.2 s


def hidden_held(run: Run, hidden: int) -> bool:
    return hidden - 1 <= run.lowest_after(0.1) and abs(run.final - hidden) <= 1


def test_the_limit_follows_a_moving_capacity_both_ways() -> None:
    """32 -> 8 at 10 s -> 32 at 20 s (ceiling 64): the drop is followed within a tenth of a
    second (each load 429 cuts to what is in flight), the rise within a second (the next probe
    passes, then the limit doubles per round trip, overshoots and is cut back to 32)."""
    run = simulate(cells=4000, ceiling=64, capacity=moving_8_to_32)
    assert abs(run.limit_at(9.9) - 32) <= 1
    assert run.limit_at(10.1) <= 9
    assert run.lowest_after(10.1) >= 7
    assert abs(run.limit_at(19.9) - 8) <= 1
    assert 31 <= run.limit_at(21.0) <= 33
    assert run.lowest_after(21.0) >= 31


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_rise_is_followed_within_two_seconds_when_requests_drift_apart(seed: int) -> None:
    """The moving limit again, with each request's way to the server up to 20 ms longer (as
    over real HTTP): the requests the limit holds no longer go out in waves but spread over
    the latency, so only about half of those sent before one are still served when it arrives,
    and the cliff was seldom cleared by ``_served_together`` alone: the rise took 5-24 s (the
    hostile review's real run: 8.3 s). Round trips at the cliff without a 429 clear it too:
    back at 32 within 2 s of the rise, and the drop is still held within one."""
    run = simulate(cells=4000, ceiling=64, capacity=moving_8_to_32, spread=0.02, seed=seed)
    up = next(t for t, limit in run.limits if t >= 20.0 and limit >= 31)
    assert up - 20.0 <= 2.0
    held = [limit for t, limit in run.limits if 10.5 <= t < 20.0]
    assert min(held) >= 7
    assert max(held) <= 9
    steady = simulate(cells=2000, ceiling=32, capacity=8, spread=0.02, seed=seed, sigma=0.1)
    assert hidden_held(steady, 8)
    assert max(limit for t, limit in steady.limits if 0.5 <= t < steady.last_admitted) <= 9


# -- sporadic 429s that our load does not cause -------------------------------------------------


def ratio_to_clean_runs(noise: float, retry_after: float | None, seeds: range) -> list[float]:
    """Makespan with ``noise`` over the same run without 429s, per seed (Wide at 100 records:
    500 requests, ceiling 16, capacity 64, 200 ms)."""
    kwargs = {"cells": 500, "ceiling": 16, "capacity": 64, "ready": 48}
    ratios = []
    for seed in seeds:
        clean = simulate(seed=seed, **kwargs).makespan  # type: ignore[arg-type]
        noisy = simulate(seed=seed, noise=noise, retry_after=retry_after, **kwargs)  # type: ignore[arg-type]
        ratios.append(noisy.makespan / clean)
    return ratios


@pytest.mark.parametrize(("noise", "target"), [(0.1, 1.3), (0.3, 1.6)])
@pytest.mark.parametrize("retry_after", [1.0, None])
def test_sporadic_429s_cost_about_what_waiting_them_out_costs(
    noise: float, target: float, retry_after: float | None
) -> None:
    """10 % / 30 % of requests answered 429 whatever the load: over 15 seeded runs the median
    makespan is within the issue's targets of the 429-free run (a scheduler that waits out each
    429 for its request only lands at 1.16x / 1.48x in the median with Retry-After: 1)."""
    ratios = ratio_to_clean_runs(noise, retry_after, range(15))
    assert statistics.median(ratios) <= target


@pytest.mark.parametrize("noise", [0.1, 0.3])
def test_sporadic_429s_never_collapse_the_limit(noise: float) -> None:
    """The limit may lose a level or two to an unlucky run of 429s, and comes back; it never
    collapses (the reference limiter fell to 1 within 13 s at 10 %). 5,000 requests."""
    for seed in range(3):
        run = simulate(cells=5000, ceiling=16, capacity=64, noise=noise, ready=48, seed=seed)
        early = [limit for t, limit in run.limits if t < run.makespan - 2.0]
        assert min(early) >= 12
        time_below = sum(
            (t1 - t0) for (t0, limit), (t1, _) in itertools.pairwise(run.limits) if limit < 15
        )
        assert time_below <= 0.05 * run.makespan


def test_load_is_still_seen_through_noise() -> None:
    """A hidden limit of 8 behind 10 % sporadic 429s: the runs are longer (4 in a row at 10 %),
    but the limit still settles within one of 8."""
    run = simulate(cells=1000, ceiling=32, capacity=8, noise=0.1)
    assert hidden_held(run, 8)


# -- what a 429 costs the endpoint ---------------------------------------------------------------


def test_no_429_pauses_the_endpoint_without_a_budget() -> None:
    """Only a spent budget pauses: sporadic 429s and load 429s alike leave admission open."""
    ctl = AimdController(4)
    admissions: list[Admission] = [ctl.admit(0.0) for _ in range(4)]
    for a in admissions:
        ctl.record_rate_limited(a, 0.1)
    assert ctl.cooldown_until == float("-inf")
    assert ctl.can_admit(0.1)


# -- several clients on one endpoint ---------------------------------------------------------------


@attrs.frozen
class Shared:
    """What the clients of one endpoint did over the second half of a run."""

    rates: list[float]
    """Each client's answers per second."""
    limit_sum: float
    """The sum of the clients' limits, averaged over time."""
    in_flight_sum: float
    """The sum of their requests in flight (429s on their way back included), averaged."""


def shared_endpoint(
    starts: list[float],
    *,
    capacity: int = 16,
    ceiling: int = 32,
    duration: float = 120.0,
    policy: LimiterPolicy | None = None,
    seed: int = 1,
    demand: int | None = None,
) -> Shared:
    """Clients (one controller each) that start at ``starts`` share a hosted API of
    ``capacity`` (200 ms answers, 429 beyond it, ``Retry-After: 1``, retried in place).
    Each client always has a request waiting, or, with ``demand``, holds at most that many
    requests at a time (waiting, in flight, or waiting out a 429: an engine's window of row
    groups). Returns their answers per second, sum of limits and of requests in flight over
    the second half."""
    rng = random.Random(seed)
    clients = [AimdController(ceiling, policy or LimiterPolicy()) for _ in starts]
    events: list[tuple[float, int, str, object]] = []
    tie = itertools.count()
    waiting = [0 for _ in starts]
    answered: list[list[float]] = [[] for _ in starts]
    held, now = 0, 0.0
    half = duration / 2
    limit_area = flight_area = 0.0
    last = half

    def at(t: float, kind: str, what: object) -> None:
        heapq.heappush(events, (t, next(tie), kind, what))

    for i, start in enumerate(starts):
        at(start, "start", i)
    while events:
        now, _, kind, what = heapq.heappop(events)
        if now > duration:
            break
        if now > last:
            limit_area += (now - last) * sum(c.limit for c in clients)
            flight_area += (now - last) * sum(c.in_flight for c in clients)
            last = now
        if kind == "start":
            waiting[what] = 10**9 if demand is None else demand  # type: ignore[index]
        elif kind == "arrive":
            i, admission = what  # type: ignore[misc]
            if held >= capacity:
                at(now + 0.0005, "429", what)
            else:
                held += 1
                at(now + 0.2 * rng.lognormvariate(0.0, 0.2), "served", what)
        elif kind == "served":
            held -= 1
            at(now + 0.0005, "answer", what)
        elif kind == "answer":
            i, admission = what  # type: ignore[misc]
            clients[i].record_success(admission, now)
            answered[i].append(now)
            waiting[i] += 1
        elif kind == "429":
            i, admission = what  # type: ignore[misc]
            clients[i].record_rate_limited(admission, now)
            at(now + 1.0, "retry", i)
        elif kind == "retry":
            waiting[what] += 1  # type: ignore[index]
        for i, ctl in enumerate(clients):
            while waiting[i] and ctl.can_admit(now):
                waiting[i] -= 1
                at(now + 0.0005 + 0.0005 * rng.random(), "arrive", (i, ctl.admit(now)))
    span = max(last - half, 1e-9)
    return Shared(
        rates=[sum(1 for t in a if t >= half) / half for a in answered],
        limit_sum=limit_area / span,
        in_flight_sum=flight_area / span,
    )


@pytest.mark.parametrize("starts", [[0.0, 0.0], [0.0, 20.0], [0.0, 0.0, 0.0, 0.0]])
def test_clients_sharing_a_hidden_limit_keep_it_busy_but_not_evenly(starts: list[float]) -> None:
    """Shards of one run on one endpoint: between them they keep a hidden limit of 16 at
    least 95 % busy, but nothing evens out their shares (a 429 reaches only the client whose
    request finds the server full, and each cut keeps what it holds): the figures of
    docs/adaptive-limits.md, question 5."""
    rates = shared_endpoint(starts).rates
    capacity_rate = 16 / (0.2 * math.exp(0.2**2 / 2))
    assert sum(rates) >= 0.95 * capacity_rate
    shares = sorted(r / sum(rates) for r in rates)
    # Uneven: the smallest share is well under its due (two starting together: 61 / 39, 79 /
    # 21 before quiet round trips at a cliff cleared it too; four: 34 / 33 / 20 / 13 %).
    assert shares[0] < 0.9 / len(starts)


@pytest.mark.parametrize(
    ("starts", "ceiling"),
    [
        ([0.0, 0.0], 32),
        ([0.0, 0.0], 16),
        ([0.0, 20.0], 16),
        ([0.0] * 4, 8),
        ([0.0] * 4, 32),
        ([0.0, 10.0, 20.0, 30.0], 8),
    ],
)
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("demand", [None, 24])
def test_shards_probing_by_share_split_a_hidden_limit_evenly(
    starts: list[float], ceiling: int, seed: int, demand: int | None
) -> None:
    """The policy sharded runs use (``SHARD_POLICY``: ``probe_by_share``, ``max_noise_rate=0.1``,
    ``follow_use``): the same utilisation, no client below 60 % of its due share (without it:
    21 %, 6 %: the test above), and the sum of the limits within 10 % of the hidden capacity
    — also when each client holds at most 24 requests (an engine's window: some of them wait
    out their 429s, so a limit may be more than the client fills). Ceilings of 16 and 8 are
    the shares of a run-wide ``max_parallel_requests`` of 32; 16 is the capacity itself."""
    run = shared_endpoint(starts, ceiling=ceiling, policy=SHARD_POLICY, seed=seed, demand=demand)
    capacity_rate = 16 / (0.2 * math.exp(0.2**2 / 2))
    assert sum(run.rates) >= 0.95 * capacity_rate
    shares = [r / sum(run.rates) for r in run.rates]
    assert min(shares) >= 0.6 / len(starts)
    assert 0.9 * 16 <= run.limit_sum <= 1.1 * 16
