"""The pure adaptive-limit controller (``trio_designer._core._aimd`` with ``_latency``):
examples, closed-loop simulations of a GPU server without trio, and a state machine over its
documented invariants."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trio_designer._core._aimd import AimdController, runs_that_mean_load
from trio_designer._core._latency import summarize_latencies
from trio_designer._core._limits import Admission, LimitChange, LimiterPolicy

NO_LATENCY = LimiterPolicy(latency_signal=False)


def fill(ctl: AimdController, now: float) -> list[Admission]:
    """Admit until the controller says no."""
    admitted = []
    while ctl.can_admit(now):
        admitted.append(ctl.admit(now))
    return admitted


# -- LimiterPolicy ---------------------------------------------------------------------------------


def test_Policy_defaults_match_the_documented_values() -> None:
    p = LimiterPolicy()
    assert (p.successes_per_increase, p.cliff_probe_backoff, p.noise_false_alarm) == (25, 4, 1e-3)
    assert p.cooldown == 2.0
    assert (p.latency_tolerance, p.latency_hold, p.latency_samples) == (1.5, 1.2, 32)
    assert (p.latency_confidence, p.latency_decrease_floor, p.probe_interval) == (2.0, 0.5, 100)
    assert p.latency_signal


def test_Policy_rejects_a_false_alarm_rate_outside_0_1() -> None:
    with pytest.raises(
        ValueError,
        match=r"^LimiterPolicy.noise_false_alarm must be between 0 and 1 \(exclusive\), got 1.0.$",
    ):
        LimiterPolicy(noise_false_alarm=1.0)


def test_Policy_rejects_a_tolerance_below_the_hold_threshold() -> None:
    with pytest.raises(
        ValueError, match=r"^LimiterPolicy.latency_tolerance \(1.1\) must be at least"
    ):
        LimiterPolicy(latency_tolerance=1.1, latency_hold=1.2)


def test_AimdController_rejects_a_ceiling_below_1() -> None:
    with pytest.raises(
        ValueError, match=r"^an adaptive limit needs a ceiling of at least 1, got 0$"
    ):
        AimdController(0)


# -- admission and the 429 rule ----------------------------------------------------------------


def test_AimdController_starts_at_the_ceiling_and_admits_up_to_it() -> None:
    ctl = AimdController(4)
    assert ctl.limit == 4
    admitted = fill(ctl, 0.0)
    assert [a.level for a in admitted] == [1, 2, 3, 4]
    assert not ctl.can_admit(0.0)
    with pytest.raises(RuntimeError, match=r"admission is closed"):
        ctl.admit(0.0)


@pytest.mark.parametrize(
    ("rate", "runs"), [(0.0, 1), (0.01, 2), (0.05, 3), (0.1, 3), (0.3, 6), (0.5, 10), (1.0, 10**9)]
)
def test_runs_that_mean_load(rate: float, runs: int) -> None:
    """The shortest run of 429s on one slot that sporadic 429s at ``rate`` make with
    probability at most 0.1 %."""
    assert runs_that_mean_load(rate, 1e-3) == runs
    if 0 < rate < 1:
        assert rate**runs <= 1e-3 * (1 + 1e-9) < rate ** (runs - 1)


def refill(ctl: AimdController, now: float) -> Admission:
    """Admit one request into the slot just given back."""
    assert ctl.can_admit(now)
    return ctl.admit(now)


def test_one_429_is_not_load_and_pauses_nothing() -> None:
    """A single 429, nothing known: it may be sporadic. The limit stays, nothing pauses, and
    the slot is free for the next request at once."""
    ctl = AimdController(16, NO_LATENCY)
    held = fill(ctl, 0.0)
    assert ctl.record_rate_limited(held[0], 0.01) is None
    assert (ctl.limit, ctl.cooldown_until, ctl.rate_limited) == (16, -math.inf, 1)
    assert refill(ctl, 0.01).chain == 2  # the next request inherits the slot's run


def test_three_429s_in_a_row_on_a_slot_cut_to_what_is_in_flight() -> None:
    """A hidden limit of 10 behind a ceiling of 16: the six requests beyond it come back 429,
    and so do the requests that take their slots. With nothing known (sporadic 429s assumed at
    5 %), the third 429 in a row on a slot is load: the limit goes to what is still in flight,
    and the level above it is the cliff."""
    ctl = AimdController(16, NO_LATENCY)
    held = fill(ctl, 0.0)
    rejected, served = held[10:], held[:10]
    for a in rejected:
        assert ctl.record_rate_limited(a, 0.001) is None  # one in a row
    second = [refill(ctl, 0.001) for _ in rejected]
    assert {a.chain for a in second} == {2}
    for a in second:
        assert ctl.record_rate_limited(a, 0.002) is None  # two in a row
    third = refill(ctl, 0.002)
    change = ctl.record_rate_limited(third, 0.003)
    assert change == LimitChange(
        old=16, new=10, reason="rate_limited", at=0.003, rejections=3, concurrency=11
    )
    assert change.describe() == "load: 3 429s in a row at 11 in flight"
    assert (ctl.limit, ctl.cliff, ctl.rate_epoch) == (10, 11, 1)
    assert ctl.cooldown_until == -math.inf  # a measured cut needs no pause
    assert not ctl.can_admit(0.003)  # the next request goes out when one of the ten is done
    ctl.record_success(served[0], 0.2)
    assert ctl.can_admit(0.2)


def test_a_load_cut_at_most_halves_the_limit() -> None:
    """Three in a row with only 2 of 16 in flight: cut to 8, not 2 (a false alarm seen with
    few requests in flight must not throw the limit away); more load cuts it again."""
    ctl = AimdController(16, NO_LATENCY)
    held = fill(ctl, 0.0)
    for a in held[2:]:
        ctl.record_rate_limited(a, 0.001)
    for a in [refill(ctl, 0.001) for _ in held[2:]]:
        ctl.record_rate_limited(a, 0.001)
    change = ctl.record_rate_limited(refill(ctl, 0.001), 0.001)
    assert change is not None
    assert (change.old, change.new) == (16, 8)
    while ctl.can_admit(0.002):  # 3 in a row per slot: 8 -> 4 -> 2, then full
        ctl.record_rate_limited(ctl.admit(0.002), 0.002)
    assert ctl.limit == 2  # never below what is in flight


def test_repeated_load_floors_the_limit_at_1() -> None:
    ctl = AimdController(4, NO_LATENCY)
    for _ in range(30):
        ctl.record_rate_limited(ctl.admit(0.0), 0.0)
    assert ctl.limit == 1
    assert ctl.can_admit(0.0)


def test_sporadic_429s_between_successes_cost_at_most_a_level_now_and_then() -> None:
    """30 % of requests rejected at random, 20,000 of them at a limit of 16: the 429 rate is
    learnt (runs of 7 mean load there, counting its uncertainty). A run that long happens to
    noise about once per 1,000 runs on a slot: it costs one level, until the next probe."""
    rng = random.Random(3)
    ctl = AimdController(16, NO_LATENCY)
    now, changes = 0.0, []
    held = fill(ctl, now)
    for _ in range(20_000):
        now += 0.001
        a = held.pop(rng.randrange(len(held)))
        record = ctl.record_rate_limited if rng.random() < 0.3 else ctl.record_success
        changes.append(record(a, now))
        held += fill(ctl, now)
    cuts = [c for c in changes if c is not None and c.reason == "rate_limited"]
    assert len(cuts) <= 5
    assert all(c.new == c.old - 1 for c in cuts)
    assert ctl.rejection_rate == pytest.approx(0.3, abs=0.05)
    assert ctl.load_run == 7


def test_a_cliff_by_level_cuts_a_probe_that_fails_once() -> None:
    """Held at 8 below a cliff at 9 (hidden limit 8): the probe of 9 is rejected. One 429 in a
    row is no run, but at level 9 every request was rejected and below it none was: load, cut
    back to 8 at once."""
    ctl = AimdController(16, NO_LATENCY)
    at_limit(ctl, 8)  # the requests at level 9 and above were turned away
    now = 1.0
    held = fill(ctl, now)
    for _ in range(24):  # successes at level 8, the limit in use
        now += 0.01
        ctl.record_success(held.pop(0), now)
        held.append(refill(ctl, now))
    ctl.record_success(held.pop(0), now)  # the 25th: probe the cliff
    assert ctl.limit == 9
    held.append(refill(ctl, now))
    probe = ctl.admit(now)
    assert (probe.level, probe.chain) == (9, 1)
    change = ctl.record_rate_limited(probe, now)
    assert change is not None
    assert (change.old, change.new, change.rejections) == (9, 8, 1)


def at_limit(ctl: AimdController, limit: int) -> None:
    """Drive ``ctl`` to ``limit`` with runs of load 429s above it (at time 0)."""
    at_limit_after(ctl, 0.0, limit)


def at_limit_after(ctl: AimdController, now: float, limit: int) -> None:
    """Drive ``ctl`` from a full admission at ``now`` to ``limit``: the requests beyond it are
    rejected, and so is every request that takes their slots, until load cuts the limit; the
    others are abandoned (no signal)."""
    held = fill(ctl, now)
    for a in held[limit:]:
        ctl.record_rate_limited(a, now)
    while ctl.limit > limit:
        ctl.record_rate_limited(refill(ctl, now), now)
    for a in held[:limit]:
        ctl.record_abandoned(a, now + 0.5)
    assert (ctl.limit, ctl.cliff, ctl.in_flight) == (limit, limit + 1, 0)


def test_a_cliff_is_probed_after_25_successes_then_less_often() -> None:
    """At the edge of a cliff the limit probes it after 25 successes; every probe that fails
    doubles the wait, up to 4x (100 successes)."""
    ctl = AimdController(32, NO_LATENCY)
    at_limit(ctl, 8)
    now, waits = 1.0, []
    for _ in range(5):
        successes = 0
        while ctl.limit == 8:
            now += 0.01
            ctl.record_success(ctl.admit(now), now)
            successes += 1
        waits.append(successes)
        # The probe fails: three in a row on the ninth slot.
        held = fill(ctl, now)
        probe = held.pop()
        while ctl.limit == 9:
            ctl.record_rate_limited(probe, now)
            if ctl.limit == 9:
                probe = refill(ctl, now)
        for a in held:
            ctl.record_abandoned(a, now + 0.2)
        now += 0.2
    assert waits == [25, 50, 100, 100, 100]
    assert ctl.cliff == 9


def test_a_success_at_the_cliff_clears_it_and_the_limit_regrows_fast() -> None:
    """The capacity rose: the probe of the cliff succeeds, twice. From then on every success
    with the limit in use adds one (about doubling per round trip) until 429s show a new
    cliff."""
    ctl = AimdController(64, LimiterPolicy(latency_signal=False, successes_per_increase=1))
    at_limit(ctl, 8)
    now, _, changes = round_trips(ctl, 1.0, 0.2, 1)  # the first of 8 successes probes 9
    assert ctl.limit == 9
    now, caps, changes = round_trips(ctl, now, 0.2, 5)
    assert ctl.cliff is None
    assert caps == [9, 9, 10, 17, 29]  # two round trips at the cliff, then x1.7 per round trip
    assert all(c.reason == "increase" for c in changes)


def test_successes_admitted_before_a_cut_do_not_clear_the_cliff() -> None:
    """After a cut from 32 to 8, the requests admitted at levels up to 32 before it still
    finish: they reported on the old regime, and leave the cliff in place."""
    ctl = AimdController(32, NO_LATENCY)
    held = fill(ctl, 0.0)
    early = held[:20]
    for a in held[20:]:
        ctl.record_rate_limited(a, 0.0)
    while ctl.limit > 20:
        ctl.record_rate_limited(refill(ctl, 0.0), 0.0)
    assert (ctl.limit, ctl.cliff) == (20, 21)
    for a in early:
        ctl.record_success(a, 0.5)
    assert ctl.cliff == 21


def test_a_429_of_a_spent_budget_is_neither_load_nor_noise() -> None:
    """Budget 429s (the headers say the budget cannot pay) leave the limit, the slot's run and
    the estimate of sporadic 429s alone: the budget holds admissions back instead."""
    ctl = AimdController(4, NO_LATENCY)
    rate = ctl.rejection_rate
    for _ in range(10):
        assert ctl.record_rate_limited(ctl.admit(0.0), 0.0, spent_budget=True) is None
    assert (ctl.limit, ctl.rate_limited, ctl.cooldown_until) == (4, 10, -math.inf)
    assert ctl.admit(0.0).chain == 1
    assert ctl.rejection_rate == rate


def test_growth_after_a_latency_cut_keeps_the_reference_rule() -> None:
    """With the latency signal off the limit starts at the ceiling and only 429s move it; an
    endpoint that never says no keeps it there (no growth beyond the ceiling)."""
    ctl = AimdController(20, NO_LATENCY)
    for _ in range(100):
        assert ctl.record_success(ctl.admit(0.0), 0.1) is None
    assert ctl.limit == 20


def test_reporting_an_admission_twice_raises() -> None:
    ctl = AimdController(2)
    a = ctl.admit(0.0)
    ctl.record_success(a, 1.0)
    with pytest.raises(RuntimeError, match=r"^admission #0 was already released"):
        ctl.record_failure(a, 1.0)


def test_failures_and_abandoned_requests_release_without_a_signal() -> None:
    ctl = AimdController(2)
    a, b = fill(ctl, 0.0)
    assert ctl.record_failure(a, 1.0) is None
    assert ctl.record_abandoned(b, 1.0) is None
    assert (ctl.limit, ctl.in_flight, ctl.failures, ctl.successes) == (2, 0, 1, 0)
    assert ctl.admit(1.0).chain == 1  # a failure is not a 429: the slot starts afresh


def test_LimitChange_describe() -> None:
    assert (
        LimitChange(
            old=20, new=15, reason="rate_limited", at=0.0, rejections=4, concurrency=16
        ).describe()
        == "load: 4 429s in a row at 16 in flight"
    )
    assert (
        LimitChange(
            old=64,
            new=32,
            reason="latency",
            at=0.0,
            recent_latency=0.4,
            baseline_latency=0.1,
            concurrency=64,
        ).describe()
        == "latency 0.4 s at 64 in flight is 4.0x the 0.1 s baseline"
    )
    assert (
        LimitChange(old=15, new=16, reason="increase", at=0.0, successes=25).describe()
        == "25 successes"
    )


# -- latency statistics --------------------------------------------------------------------------


def test_summarize_latencies_trims_an_eighth_on_each_side() -> None:
    summary = summarize_latencies([0.1] * 14 + [30.0, 60.0])  # 16 samples: 2 trimmed per side
    assert summary.mean == pytest.approx(0.1)
    assert summary.samples == 16
    assert summary.rel_se == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"^summarize_latencies needs at least one latency$"):
        summarize_latencies([])


def test_summarize_latencies_mean_sees_a_partial_queue() -> None:
    """20 requests on a 16-slot server: the median does not move, the mean does."""
    summary = summarize_latencies([0.1] * 12 + [0.2] * 4)
    assert summary.mean > 0.1


# -- latency signal, closed loop without trio ----------------------------------------------------


def closed_loop(
    ctl: AimdController,
    *,
    server: Literal["fifo", "ps"],
    capacity: int,
    service: float,
    clients: int,
    duration: float,
) -> list[tuple[float, float]]:
    """Simulate ``clients`` tasks sending requests back to back through ``ctl`` to a server that
    runs ``capacity`` requests at once: ``fifo`` serves the first ``capacity`` requests, the rest
    queue; ``ps`` (processor sharing) slows every request down when overloaded, so even the
    first requests queue. Returns (admitted_at, done_at) per request."""
    jobs: list[list[float]] = []  # [remaining work]
    admissions: list[Admission] = []
    done: list[tuple[float, float]] = []
    now = 0.0
    while now < duration:
        while len(jobs) < clients and ctl.can_admit(now):
            admissions.append(ctl.admit(now))
            jobs.append([service])
        n = len(jobs)
        rates = (
            [1.0 if i < capacity else 0.0 for i in range(n)]
            if server == "fifo"
            else [min(1.0, capacity / n)] * n
        )
        dt = min(job[0] / r for job, r in zip(jobs, rates, strict=True) if r > 0)
        now += dt
        for job, r in zip(jobs, rates, strict=True):
            job[0] -= dt * r
        finished = [i for i, job in enumerate(jobs) if job[0] <= 1e-12]
        for i in reversed(finished):
            adm = admissions.pop(i)
            jobs.pop(i)
            ctl.record_success(adm, now)
            done.append((adm.admitted_at, now))
    return done


@pytest.mark.parametrize("server", ["fifo", "ps"])
def test_latency_signal_keeps_a_gpu_server_at_its_knee(server: Literal["fifo", "ps"]) -> None:
    """Ceiling 256, 64 clients, a server of 16 slots × 0.1 s: the limit comes down to the knee;
    in the second half throughput is >= 90 % of 160/s and latency <= 1.5 × 0.1 s."""
    ctl = AimdController(256)
    done = closed_loop(ctl, server=server, capacity=16, service=0.1, clients=64, duration=60.0)
    late = [(a, b) for a, b in done if b >= 30.0]
    throughput = len(late) / 30.0
    latency = sum(b - a for a, b in late) / len(late)
    assert throughput >= 0.9 * 160
    assert latency <= 1.5 * 0.1
    assert 12 <= ctl.limit <= 24
    assert ctl.baseline_latency == pytest.approx(0.1)


def test_without_the_latency_signal_the_queue_stays_deep() -> None:
    """The reference's blind spot: a server that never 429s gives AIMD nothing to act on."""
    ctl = AimdController(256, NO_LATENCY)
    done = closed_loop(ctl, server="fifo", capacity=16, service=0.1, clients=64, duration=10.0)
    late = [b - a for a, b in done if b >= 5.0]
    assert ctl.limit == 256
    assert sum(late) / len(late) == pytest.approx(0.4)


def test_an_endpoint_that_gets_slower_everywhere_is_rebaselined_not_throttled() -> None:
    """Every request becomes 3x slower (longer outputs) with no queue: one probe re-measures
    the baseline; the limit is not cut."""
    ctl = AimdController(8, LimiterPolicy(latency_samples=8))
    now = 0.0

    def round_trip(latency: float) -> None:
        nonlocal now
        batch = fill(ctl, now)
        now += latency
        for a in batch:
            ctl.record_success(a, now)

    for _ in range(10):
        round_trip(0.1)
    assert ctl.baseline_latency == pytest.approx(0.1)
    for _ in range(40):
        round_trip(0.3)
    assert ctl.baseline_latency == pytest.approx(0.3)
    assert ctl.limit == 8


def round_trips(
    ctl: AimdController, now: float, latency: float | Callable[[int], float], count: int
) -> tuple[float, list[int], list[LimitChange]]:
    """``count`` lock-step round trips: admit all that may go, answer them all ``latency``
    later (a function of how many went). Returns the new ``now``, the admission cap before
    each round trip, and the limit changes."""
    caps: list[int] = []
    changes: list[LimitChange] = []
    for _ in range(count):
        caps.append(ctl.admission_cap)
        batch = fill(ctl, now)
        now += latency(len(batch)) if callable(latency) else latency
        for a in batch:
            change = ctl.record_success(a, now)
            if change is not None:
                changes.append(change)
    return now, caps, changes


def test_flat_latency_at_the_ceiling_never_probes_at_start() -> None:
    """An endpoint that serves the whole ceiling at one latency: the first requests give a
    provisional baseline, later windows match it, and admission is never held below the
    ceiling (the verification probe comes only after ``probe_interval / 4`` windows)."""
    ctl = AimdController(16)
    _, caps, changes = round_trips(ctl, 0.0, 0.2, 40)  # 20 windows of 32
    assert set(caps) == {16}
    assert changes == []
    assert ctl.baseline_latency == pytest.approx(0.2)
    assert not ctl.baseline_probed


def test_a_provisional_baseline_is_verified_by_one_short_probe_window() -> None:
    """After ``probe_interval / 4`` windows a provisional baseline is verified: one probe
    window at half concurrency, sized by its cap (8 samples at cap 4: two round trips, not
    eight). Halving did not lower latency, so the probe ends there; afterwards, with latency
    flat at the probed baseline, no routine probe is run."""
    ctl = AimdController(8, LimiterPolicy(probe_interval=8))
    _, caps, changes = round_trips(ctl, 0.0, 0.1, 200)
    assert caps[:12] == [8] * 8 + [4] * 2 + [8] * 2  # two windows of 32, then the probe
    assert caps[12:] == [8] * 188
    assert changes == []
    assert ctl.baseline_probed
    assert ctl.baseline_latency == pytest.approx(0.1)


def test_one_halving_that_does_not_help_ends_the_probe() -> None:
    """The endpoint becomes 3x slower at every concurrency: the window that shows it starts a
    probe, the first probe window is just as slow, and the probe ends after that one window
    with a new baseline and no cut."""
    ctl = AimdController(8, LimiterPolicy(latency_samples=8, probe_interval=4))
    now, _, _ = round_trips(ctl, 0.0, 0.1, 6)
    assert ctl.baseline_probed  # verified after probe_interval / 4 = 1 window
    now, caps, changes = round_trips(ctl, now, 0.3, 40)
    probe_caps = [c for c in caps if c < 8]
    assert probe_caps
    assert len(set(probe_caps)) == 1  # one probe window, one cap
    assert changes == []
    assert ctl.baseline_latency == pytest.approx(0.3)
    assert ctl.limit == 8


def test_a_lower_baseline_is_adopted_from_pooled_windows_not_from_one_lucky_one() -> None:
    """The endpoint gets faster: the baseline follows without a probe, once the windows at
    this limit pooled are below it by more than ``latency_hold``; a single fast window is not
    enough (selected for being low, it would make ordinary windows look overloaded)."""
    ctl = AimdController(8, LimiterPolicy(latency_samples=8))
    now, _, _ = round_trips(ctl, 0.0, 0.1, 4)  # baseline 0.1, two windows at this limit
    assert ctl.baseline_latency == pytest.approx(0.1)
    now, _, _ = round_trips(ctl, now, 0.06, 1)  # one lucky window: 3 of 4 pooled at 0.1
    now, _, _ = round_trips(ctl, now, 0.1, 1)
    assert ctl.baseline_latency == pytest.approx(0.1)
    now, caps, changes = round_trips(ctl, now, 0.06, 8)
    assert ctl.baseline_latency == pytest.approx(0.06)
    assert not ctl.baseline_probed
    assert set(caps) == {8}  # adopted passively: no probe
    assert changes == []


def test_one_lucky_window_does_not_let_the_limit_creep() -> None:
    """Growth is judged on the last windows at this limit pooled: three windows at 1.3x and
    one at 1.1x average 1.25x, above the 1.2x hold level, so the limit stays put. (The
    endpoint queues: alone it answers in 0.1 s, which is what a probe finds.)"""
    ctl = AimdController(8, LimiterPolicy(latency_samples=4, successes_per_increase=1))
    now = 0.0
    while ctl.baseline_latency is None:
        now, _, _ = round_trips(ctl, now, 0.1, 1)
    # A latency cut first (100x above 4 in flight): the probe finds 0.1 s at 2, cut to 2.
    changes: list[LimitChange] = []
    while not changes:
        now, _, changes = round_trips(ctl, now, lambda n: 10.0 if n > 4 else 0.1, 1)
    assert [(c.reason, c.new) for c in changes] == [("latency", 2)]
    for i in range(80):  # a window of 4 is two round trips at 2 in flight
        queued = 0.11 if (i // 2) % 4 == 3 else 0.13
        now, _, _ = round_trips(ctl, now, lambda n, q=queued: q if n > 1 else 0.1, 1)
    assert ctl.limit == 2


def test_a_latency_cut_never_goes_below_what_the_probe_measured() -> None:
    """Latency explodes 100x above 16 in flight (a cliff, and with it the throughput): the
    probe goes down to a quarter of the concurrency at most (8, where the collapsed throughput
    would put the knee far lower), finds the baseline there, and the cut keeps at least that
    concurrency."""
    ctl = AimdController(32, LimiterPolicy(latency_samples=4))
    now, _, _ = round_trips(ctl, 0.0, 0.1, 1)  # a provisional baseline of 0.1 s at 32
    assert ctl.baseline_latency == pytest.approx(0.1)
    _, _, changes = round_trips(ctl, now, lambda n: 10.0 if n > 16 else 0.1, 3)
    (cut,) = [c for c in changes if c.reason == "latency"]
    assert (cut.old, cut.concurrency, cut.probed_concurrency) == (32, 32, 8)
    assert cut.new == 9  # 1.2 x the knee of 8 that the probe windows measured


# -- state machine -------------------------------------------------------------------------------


class AimdMachine(RuleBasedStateMachine):
    """Random admissions, outcomes and time steps against the invariants in the module
    docstrings of ``trio_designer._core._aimd`` and ``_latency``."""

    @initialize(
        ceiling=st.integers(1, 24),
        latency_signal=st.booleans(),
        successes=st.integers(1, 8),
        backoff=st.sampled_from([1, 2, 4]),
        false_alarm=st.sampled_from([0.01, 5e-4]),
        samples=st.integers(4, 8),
        shards=st.booleans(),
    )
    def setup(
        self,
        ceiling: int,
        latency_signal: bool,
        successes: int,
        backoff: int,
        false_alarm: float,
        samples: int,
        shards: bool,
    ) -> None:
        # shards: the policy of sharded runs (SHARD_POLICY's switches).
        self.policy = LimiterPolicy(
            latency_signal=latency_signal,
            successes_per_increase=successes,
            cliff_probe_backoff=backoff,
            noise_false_alarm=false_alarm,
            latency_samples=samples,
            probe_by_share=shards,
            max_noise_rate=0.1 if shards else 1.0,
            follow_use=shards,
        )
        self.ctl = AimdController(ceiling, self.policy)
        self.now = 0.0
        self.held: list[Admission] = []

    # rules ------------------------------------------------------------------------------------
    @precondition(lambda self: self.ctl.can_admit(self.now))
    @rule()
    def admit(self) -> None:
        assert self.ctl.in_flight < self.ctl.limit
        self.held.append(self.ctl.admit(self.now))

    @precondition(lambda self: not self.ctl.can_admit(self.now))
    @rule()
    def admit_when_closed_raises(self) -> None:
        with pytest.raises(RuntimeError):
            self.ctl.admit(self.now)

    @rule(dt=st.sampled_from([0.0, 0.05, 0.1, 0.5, 1.0, 3.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def succeed(self, data: st.DataObject) -> None:
        admission = self.take(data)
        limit, probing = self.ctl.limit, self.ctl.probing
        self.check_change(self.ctl.record_success(admission, self.now), limit, probing)

    @rule(latency=st.sampled_from([0.1, 0.3, 1.0, 3.0]))
    def round_trip(self, latency: float) -> None:
        """Admit all that may go, then answer everything held ``latency`` later: moves the
        latency windows along quickly enough for probes and latency cuts to happen."""
        while self.ctl.can_admit(self.now):
            self.admit()
        self.now += latency
        while self.held:
            admission = self.held.pop(0)
            limit, probing = self.ctl.limit, self.ctl.probing
            self.check_change(self.ctl.record_success(admission, self.now), limit, probing)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), spent_budget=st.sampled_from([False, False, False, True]))
    def rate_limited(self, data: st.DataObject, spent_budget: bool) -> None:
        self.reject(self.take(data), spent_budget)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), length=st.integers(1, 12))
    def storm(self, data: st.DataObject, length: int) -> None:
        """A 429, then its slot taken and turned away again, ``length`` times: a run of load
        (or of very bad luck)."""
        admission = self.take(data)
        for _ in range(length):
            self.reject(admission, False)
            if not self.ctl.can_admit(self.now):
                return
            admission = self.ctl.admit(self.now)
        self.held.append(admission)

    def reject(self, admission: Admission, spent_budget: bool) -> None:
        limit, probing, run = self.ctl.limit, self.ctl.probing, self.ctl.load_run
        change = self.ctl.record_rate_limited(admission, self.now, spent_budget=spent_budget)
        if spent_budget:
            assert change is None or change.reason == "latency"  # the budget's, not load
        elif change is not None and change.reason == "rate_limited":
            held = self.ctl.in_flight
            if self.policy.probe_by_share:
                held -= int(held * 0.35 * limit / self.ctl.ceiling)
            target = max(1, min(limit, max(held, (limit + 1) // 2)))
            assert change.new == target < limit
            assert change.rejections == admission.chain
        elif admission.chain >= run:
            # A run that long is load: the limit is at the cut's target already.
            assert self.ctl.limit <= max(1, max(self.ctl.in_flight, (limit + 1) // 2))
        self.check_change(change, limit, probing)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), abandon=st.booleans())
    def fail(self, data: st.DataObject, abandon: bool) -> None:
        admission = self.take(data)
        limit, probing = self.ctl.limit, self.ctl.probing
        record = self.ctl.record_abandoned if abandon else self.ctl.record_failure
        self.check_change(record(admission, self.now), limit, probing)

    def take(self, data: st.DataObject) -> Admission:
        return self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))

    def check_change(
        self, change: LimitChange | None, limit_before: int, probing_before: bool
    ) -> None:
        if change is None:
            return
        assert change.old == limit_before != change.new == self.ctl.limit
        if change.reason == "rate_limited":
            assert change.new < change.old  # a 429 never raises the limit
            assert self.ctl.cliff == change.new + 1
        elif change.reason == "latency":
            # Every latency cut ends a probe, and keeps at least the highest probe cap that
            # measured the baseline (at most half the concurrency the cut started from). The
            # old floor, `latency_decrease_floor` x concurrency, no longer holds: a cut may go
            # lower when a probe measured the baseline lower.
            assert self.policy.latency_signal
            assert probing_before
            assert not self.ctl.probing
            assert change.concurrency <= change.old
            assert 1 <= change.probed_concurrency <= max(1, change.concurrency // 2)
            assert change.probed_concurrency <= change.new < change.old
        elif change.reason == "unused":
            assert self.policy.follow_use
            assert 1 <= change.new == change.concurrency < change.old
        elif change.reason == "yield":
            assert self.policy.probe_by_share
            assert change.new == change.old - 1 == self.ctl.ceiling - 1
            assert self.ctl.cliff == change.old
        else:
            assert change.new == change.old + 1

    # invariants -------------------------------------------------------------------------------
    @invariant()
    def limit_within_bounds(self) -> None:
        assert 1 <= self.ctl.limit <= self.ctl.ceiling
        assert 1 <= self.ctl.admission_cap <= self.ctl.limit

    @invariant()
    def in_flight_is_what_we_hold(self) -> None:
        assert self.ctl.in_flight == len(self.held)

    @invariant()
    def admissions_respect_the_cap(self) -> None:
        if self.ctl.in_flight >= self.ctl.admission_cap:
            assert not self.ctl.can_admit(self.now)

    @invariant()
    def never_paused(self) -> None:
        assert self.ctl.cooldown_until == -math.inf

    def teardown(self) -> None:
        """Liveness: release everything, wait out the cooldown, then send requests with one
        constant latency: the limit must climb back to the ceiling."""
        for admission in self.held:
            self.ctl.record_success(admission, self.now)
        self.held.clear()
        self.now = max(self.now, self.ctl.cooldown_until)
        for _ in range(3000):
            if self.ctl.limit == self.ctl.ceiling:
                break
            batch = fill(self.ctl, self.now)
            self.now += 1.0
            for admission in batch:
                self.ctl.record_success(admission, self.now)
        assert self.ctl.limit == self.ctl.ceiling


TestAimdMachine = AimdMachine.TestCase
TestAimdMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


@settings(max_examples=100, deadline=None)
@given(ceiling=st.integers(1, 64), bursts=st.integers(1, 12))
def test_latency_and_429_cuts_never_go_below_1(ceiling: int, bursts: int) -> None:
    """Back-to-back 429 bursts and exploding latencies drive the limit down to 1, never 0."""
    ctl = AimdController(ceiling, LimiterPolicy(latency_samples=4))
    now = 0.0
    latency = 0.1
    for i in range(bursts * 10):
        batch = fill(ctl, now)
        now += latency
        latency *= 2
        for j, a in enumerate(batch):
            if i % 10 == 0 and j == 0:
                ctl.record_rate_limited(a, now)
            else:
                ctl.record_success(a, now)
        assert ctl.limit >= 1
        now = max(now, ctl.cooldown_until)
    assert ctl.limit >= 1
