"""The pure adaptive-limit controller (``trio_designer._core._aimd`` with ``_latency``):
examples, closed-loop simulations of a GPU server without trio, and a state machine over its
documented invariants."""

from __future__ import annotations

import math
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

from trio_designer._core._aimd import AimdController
from trio_designer._core._latency import summarize_latencies
from trio_designer._core._limits import Admission, LimitChange, Policy

NO_LATENCY = Policy(latency_signal=False)


def fill(ctl: AimdController, now: float) -> list[Admission]:
    """Admit until the controller says no."""
    admitted = []
    while ctl.can_admit(now):
        admitted.append(ctl.admit(now))
    return admitted


# -- Policy ------------------------------------------------------------------------------------


def test_Policy_defaults_match_the_documented_values() -> None:
    p = Policy()
    assert (p.decrease_factor, p.successes_per_increase, p.cooldown) == (0.75, 25, 2.0)
    assert (p.latency_tolerance, p.latency_hold, p.latency_samples) == (1.5, 1.2, 32)
    assert (p.latency_confidence, p.latency_decrease_floor, p.probe_interval) == (2.0, 0.5, 100)
    assert p.latency_signal


def test_Policy_rejects_a_decrease_factor_outside_0_1() -> None:
    with pytest.raises(
        ValueError,
        match=r"^Policy.decrease_factor must be between 0 and 1 \(exclusive\), got 1.0.$",
    ):
        Policy(decrease_factor=1.0)


def test_Policy_rejects_a_tolerance_below_the_hold_threshold() -> None:
    with pytest.raises(ValueError, match=r"^Policy.latency_tolerance \(1.1\) must be at least"):
        Policy(latency_tolerance=1.1, latency_hold=1.2)


def test_AimdController_rejects_a_ceiling_below_1() -> None:
    with pytest.raises(
        ValueError, match=r"^an adaptive limit needs a ceiling of at least 1, got 0$"
    ):
        AimdController(0)


# -- admission and the 429 rule ----------------------------------------------------------------


def test_AimdController_starts_at_the_ceiling_and_admits_up_to_it() -> None:
    ctl = AimdController(4)
    assert ctl.limit == 4
    assert len(fill(ctl, 0.0)) == 4
    assert not ctl.can_admit(0.0)
    with pytest.raises(RuntimeError, match=r"admission is closed"):
        ctl.admit(0.0)


def test_429_cuts_once_per_burst() -> None:
    ctl = AimdController(20)
    burst = fill(ctl, 0.0)
    changes = [ctl.record_rate_limited(a, 1.0, None) for a in burst]
    assert [c for c in changes if c is not None] == [
        LimitChange(old=20, new=15, reason="rate_limited", at=1.0, cooldown=2.0)
    ]
    assert ctl.limit == 15
    assert ctl.rate_limited == 20


def test_429_cut_from_the_concurrency_actually_used() -> None:
    """Limit 256, 64 in flight: the cut is 0.75 × 64 (flight size), not 0.75 × 256."""
    ctl = AimdController(256, NO_LATENCY)
    held = [ctl.admit(0.0) for _ in range(64)]
    change = ctl.record_rate_limited(held[0], 0.5, None)
    assert change is not None
    assert (change.old, change.new) == (256, 48)


def test_a_request_admitted_after_the_cut_cuts_again() -> None:
    ctl = AimdController(20, NO_LATENCY)
    first = fill(ctl, 0.0)
    ctl.record_rate_limited(first[0], 0.0, None)  # 20 -> 15, cooldown until 2.0
    for a in first[1:]:
        ctl.record_success(a, 0.1)
    second = ctl.admit(2.0)
    change = ctl.record_rate_limited(second, 2.1, None)
    assert change is not None
    assert (change.old, change.new) == (15, 11)


def test_cooldown_blocks_admission_until_exactly_its_end() -> None:
    ctl = AimdController(4)
    a, b, c, d = fill(ctl, 0.0)
    ctl.record_success(c, 0.5)
    ctl.record_success(d, 0.5)
    ctl.record_rate_limited(a, 1.0, None)
    assert ctl.cooldown_until == 3.0
    assert not ctl.can_admit(2.999)
    assert ctl.cooldown_remaining(2.5) == 0.5
    assert ctl.can_admit(3.0)
    # An older 429 of the same burst does not cut again, but a longer Retry-After extends the
    # cooldown (it never shortens it).
    assert ctl.record_rate_limited(b, 1.5, 5.0) is None
    assert ctl.limit == 3
    assert ctl.cooldown_until == 6.5


@pytest.mark.parametrize("retry_after", [None, 0.0, -1.0, math.inf, math.nan])
def test_unusable_retry_after_falls_back_to_the_policy_cooldown(retry_after: float | None) -> None:
    ctl = AimdController(2, Policy(cooldown=1.25))
    ctl.record_rate_limited(ctl.admit(0.0), 10.0, retry_after)
    assert ctl.cooldown_until == 11.25


def test_repeated_bursts_floor_the_limit_at_1() -> None:
    ctl = AimdController(4, NO_LATENCY)
    limits = []
    now = 0.0
    for _ in range(5):
        burst = fill(ctl, now)
        for a in burst:
            ctl.record_rate_limited(a, now, None)
        limits.append(ctl.limit)
        now += 2.0
    assert limits == [3, 2, 1, 1, 1]
    assert ctl.can_admit(now)


def test_recovery_adds_one_per_streak_up_to_the_ceiling() -> None:
    ctl = AimdController(20, NO_LATENCY)
    burst = fill(ctl, 0.0)
    ctl.record_rate_limited(burst.pop(), 0.0, None)
    assert ctl.limit == 15
    for a in burst:  # successes during the cooldown do not count
        assert ctl.record_success(a, 1.0) is None
    now, successes, changes = 2.0, 0, []
    while ctl.limit < 20:
        change = ctl.record_success(ctl.admit(now), now + 0.1)
        successes += 1
        if change is not None:
            changes.append((change.old, change.new, change.reason))
    assert successes == 5 * 25
    assert changes == [(n, n + 1, "increase") for n in range(15, 20)]
    for _ in range(100):  # at the ceiling, streaks change nothing
        assert ctl.record_success(ctl.admit(now), now) is None
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


def test_LimitChange_describe() -> None:
    assert (
        LimitChange(old=20, new=15, reason="rate_limited", at=0.0, cooldown=2.0).describe()
        == "rate limited; cooling down 2.0 s"
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
    ctl = AimdController(8, Policy(latency_samples=8))
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
    ctl = AimdController(8, Policy(probe_interval=8))
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
    ctl = AimdController(8, Policy(latency_samples=8, probe_interval=4))
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
    ctl = AimdController(8, Policy(latency_samples=8))
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
    endpoint queues: at 3 in flight or fewer it answers in 0.1 s, which is what a probe
    finds.)"""
    ctl = AimdController(8, Policy(latency_samples=4, successes_per_increase=1))
    now = 0.0
    while ctl.baseline_latency is None:
        now, _, _ = round_trips(ctl, now, 0.1, 1)
    held = fill(ctl, now)
    ctl.record_rate_limited(held.pop(), now, None)  # 8 -> 6: room to grow again
    for a in held:
        ctl.record_failure(a, now)
    now = ctl.cooldown_until
    for i in range(40):
        queued = 0.11 if i % 4 == 3 else 0.13
        now, _, _ = round_trips(ctl, now, lambda n, q=queued: q if n > 3 else 0.1, 1)
    assert ctl.limit == 6


def test_a_latency_cut_never_goes_below_what_the_probe_measured() -> None:
    """Latency explodes 100x above 16 in flight (a cliff, and with it the throughput): the
    probe goes down to a quarter of the concurrency at most (8, where the collapsed throughput
    would put the knee far lower), finds the baseline there, and the cut keeps at least that
    concurrency."""
    ctl = AimdController(32, Policy(latency_samples=4))
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
        factor=st.sampled_from([0.5, 0.75, 0.9]),
        cooldown=st.sampled_from([0.0, 0.5, 2.0]),
        samples=st.integers(4, 8),
    )
    def setup(
        self,
        ceiling: int,
        latency_signal: bool,
        successes: int,
        factor: float,
        cooldown: float,
        samples: int,
    ) -> None:
        self.policy = Policy(
            latency_signal=latency_signal,
            successes_per_increase=successes,
            decrease_factor=factor,
            cooldown=cooldown,
            latency_samples=samples,
        )
        self.ctl = AimdController(ceiling, self.policy)
        self.now = 0.0
        self.held: list[Admission] = []
        self.cuts_per_epoch: dict[int, int] = {}
        self.peak = 0  # model of "most in flight since the limit last changed"
        self.last_cooldown_until = -math.inf

    # rules ------------------------------------------------------------------------------------
    @precondition(lambda self: self.ctl.can_admit(self.now))
    @rule()
    def admit(self) -> None:
        assert self.now >= self.ctl.cooldown_until
        assert self.ctl.in_flight < self.ctl.limit
        self.held.append(self.ctl.admit(self.now))
        self.peak = max(self.peak, self.ctl.in_flight)

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
    @rule(data=st.data(), retry_after=st.sampled_from([None, 0.0, 1.0, 4.0]))
    def rate_limited(self, data: st.DataObject, retry_after: float | None) -> None:
        admission = self.take(data)
        limit, epoch, peak = self.ctl.limit, self.ctl.rate_epoch, self.peak
        probing = self.ctl.probing
        change = self.ctl.record_rate_limited(admission, self.now, retry_after)
        wanted = retry_after if retry_after else self.policy.cooldown
        assert self.ctl.cooldown_until >= self.now + wanted
        if admission.rate_epoch == epoch:
            assert self.ctl.rate_epoch == epoch + 1
            expected = max(1, math.floor(min(limit, peak) * self.policy.decrease_factor))
            assert self.ctl.limit == expected
            self.peak = self.ctl.in_flight
        else:
            assert self.ctl.rate_epoch == epoch
            assert change is None or change.reason == "latency"
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
            epoch = self.ctl.rate_epoch - 1
            self.cuts_per_epoch[epoch] = self.cuts_per_epoch.get(epoch, 0) + 1
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
        else:
            assert change.new == change.old + 1
        self.peak = self.ctl.in_flight

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
        if self.now < self.ctl.cooldown_until or self.ctl.in_flight >= self.ctl.admission_cap:
            assert not self.ctl.can_admit(self.now)

    @invariant()
    def cooldown_never_moves_backwards(self) -> None:
        assert self.ctl.cooldown_until >= self.last_cooldown_until
        self.last_cooldown_until = self.ctl.cooldown_until

    @invariant()
    def one_cut_per_burst(self) -> None:
        assert all(n <= 1 for n in self.cuts_per_epoch.values())

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
    ctl = AimdController(ceiling, Policy(latency_samples=4))
    now = 0.0
    latency = 0.1
    for i in range(bursts * 10):
        batch = fill(ctl, now)
        now += latency
        latency *= 2
        for j, a in enumerate(batch):
            if i % 10 == 0 and j == 0:
                ctl.record_rate_limited(a, now, None)
            else:
                ctl.record_success(a, now)
        assert ctl.limit >= 1
        now = max(now, ctl.cooldown_until)
    assert ctl.limit >= 1
