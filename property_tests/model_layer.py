"""The model layer inside the scenarios: real limiters against the real simulator, with 429s.

A :class:`ModelScenario` is a random DAG whose cell columns call one of one or two simulated
endpoints (``llm_text`` columns) and whose other columns are local custom columns. Each
endpoint is a hosted :class:`~trio_designer.simulator.SimulatedModel` that answers 429 beyond
its capacity (often below the model's ``max_parallel_requests``) and injects 429s and 500s at
random; its ``Retry-After`` varies, and ``0`` means "unusable" (the limiter's default cooldown).
The engine, the per-endpoint limiters (:class:`~trio_designer.models.AdaptiveLimiter` or
:class:`~trio_designer.models.StaticLimiter`), the HTTP client and the simulator all run in one
``trio.run`` under an autojumping clock, over real HTTP on 127.0.0.1.

What is recorded, and from where — only the limiter's documented contract
(``trio_designer/models/_limiter.py`` module docstring, ``LimiterStatistics``,
``AdaptiveLimiter``'s ``on_change``, ``Permit.admitted_at``) and the simulator's request log,
never the limiter's internals, so that the checks hold for any limiter that keeps the contract:

* :class:`LimiterProbe` wraps each real limiter (a ``limiter_factory`` that builds the real one
  and hands the probe to the registry). It takes a ``statistics()`` snapshot when a request
  parks in ``slot()``, when it is admitted, and after each report, and it receives every
  ``LimitChange`` through ``on_change`` — called, by contract, inside the report that caused it,
  so the probe knows which request's 429 cut the limit;
* the simulator's request log says when each request reached the endpoint.

Every event gets a sequence number: the order in which the probe saw it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import attrs
import trio
from hypothesis import strategies as st

from trio_designer import (
    CustomColumn,
    LLMTextColumn,
    ModelConfig,
    ModelProvider,
    NonRetryableGenerationError,
    PipelineConfig,
    RunConfig,
)
from trio_designer._core._retry import RetryPolicy
from trio_designer.models import AdaptiveLimiter, LimitChange, LimiterStatistics, StaticLimiter
from trio_designer.simulator import Faults, Latency, SimulatedModel

from .strategies import Dag, dags

LimiterKind = Literal["adaptive", "static"]
PROVIDER = "sim"
DEFAULT_COOLDOWN = 2.0
"""The static limiter's pause after a 429 without a usable ``Retry-After`` (its documented
default; the adaptive limiter never pauses); it bounds the run's length in
:func:`work_bound`."""


# -- the scenario ------------------------------------------------------------------------------


@attrs.frozen
class Endpoint:
    """One simulated model endpoint and the ceiling our config gives it."""

    model: SimulatedModel
    ceiling: int


@attrs.frozen
class ModelScenario:
    dag: Dag
    endpoint_of: Mapping[str, int | None]
    """Column -> the index of the endpoint it calls (an ``llm_text`` column), or ``None`` for a
    local custom column."""
    endpoints: tuple[Endpoint, ...]
    limiter: LimiterKind
    rows: int
    row_group_size: int
    max_row_groups_in_flight: int
    max_submitted: int
    max_llm_wait: int
    salvage_max_rounds: int
    local_latency: float
    local_fatal_rows: frozenset[int]
    """Rows whose local cell columns fail for good: the row is dropped, and its model requests
    still in flight are cancelled (their slots are left without a report)."""
    seed: int

    def config(self, base_url: str) -> PipelineConfig:
        columns: list[Any] = []
        for c in self.dag.order:
            ups = tuple(sorted(self.dag.upstream[c]))
            index = self.endpoint_of[c]
            if index is None:
                columns.append(
                    CustomColumn(
                        name=c,
                        function=local_function(
                            c, self.dag.strategy[c], self.local_latency, self.local_fatal_rows
                        ),
                        strategy=self.dag.strategy[c],
                        depends_on=ups,
                        dtype="str",
                    )
                )
                continue
            prompt = " ".join([f"Write {c} from", *(f"{{{{ {u} }}}}" for u in ups)])
            columns.append(LLMTextColumn(name=c, model=f"alias{index}", prompt=prompt))
        models = tuple(
            ModelConfig(
                alias=f"alias{i}",
                model=e.model.name,
                provider=PROVIDER,
                max_parallel_requests=e.ceiling,
            )
            for i, e in enumerate(self.endpoints)
        )
        run = RunConfig(
            row_group_size=self.row_group_size,
            max_row_groups_in_flight=self.max_row_groups_in_flight,
            max_submitted_tasks=self.max_submitted,
            max_llm_wait_tasks=self.max_llm_wait,
            salvage_max_rounds=self.salvage_max_rounds,
            shutdown_error_rate=1.0,
            seed=self.seed,
        )
        return PipelineConfig(
            columns=tuple(columns),
            models=models,
            providers=(ModelProvider(name=PROVIDER, base_url=base_url),),
            run=run,
        )


def local_function(column: str, strategy: str, latency: float, fatal: frozenset[int]) -> Any:
    """A local (non-model) column: sleeps ``latency`` virtual seconds; a cell of a row in
    ``fatal`` then fails for good (full-column tasks never fail)."""
    if strategy == "cell":

        async def cell(row: Mapping[str, Any], ctx: Any) -> str:
            await trio.sleep(latency)
            if ctx.row_index in fatal:
                raise NonRetryableGenerationError(f"{column}[{ctx.row_index}] fails on purpose")
            return f"{column}-{ctx.row_index}"

        return cell

    async def full(rows: Sequence[Mapping[str, Any]], ctx: Any) -> list[str]:
        await trio.sleep(latency)
        return [f"{column}-{index}" for index in ctx.row_indices]

    return full


@st.composite
def endpoints(draw: st.DrawFn, index: int) -> Endpoint:
    """A hosted endpoint that 429s: beyond its capacity, and at random."""
    model = SimulatedModel(
        name=f"m{index}",
        mode="hosted",
        capacity=draw(st.integers(1, 6)),
        retry_after=draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])),
        latency=Latency(median=draw(st.sampled_from([0.1, 0.25, 0.5, 1.0]))),
        faults=Faults(
            rate_429=draw(st.sampled_from([0.0, 0.05, 0.2, 0.4])),
            rate_500=draw(st.sampled_from([0.0, 0.05, 0.2])),
        ),
        seed=draw(st.integers(0, 2**16)),
    )
    return Endpoint(model=model, ceiling=draw(st.integers(1, 8)))


@st.composite
def model_scenarios(draw: st.DrawFn) -> ModelScenario:
    dag = draw(dags(max_columns=6))
    count = draw(st.integers(1, 2))
    # Some cell columns call an endpoint; at least one does, when there is a cell column.
    cells = [c for c in dag.order if dag.strategy[c] == "cell"]
    calling = set(draw(st.sets(st.sampled_from(cells), min_size=1))) if cells else set()
    endpoint_of = {
        c: draw(st.integers(0, count - 1)) if c in calling else None for c in dag.order
    }
    rows = draw(st.integers(1, 24))
    return ModelScenario(
        dag=dag,
        endpoint_of=endpoint_of,
        endpoints=tuple(draw(endpoints(i)) for i in range(count)),
        limiter=draw(st.sampled_from(["adaptive", "static"])),
        rows=rows,
        row_group_size=draw(st.integers(1, rows)),
        max_row_groups_in_flight=draw(st.integers(1, 3)),
        max_submitted=draw(st.integers(1, 8)),
        max_llm_wait=draw(st.integers(1, 16)),
        salvage_max_rounds=draw(st.integers(0, 2)),
        local_latency=draw(st.sampled_from([0.0, 0.25, 1.0])),
        local_fatal_rows=frozenset(draw(st.sets(st.integers(0, rows - 1), max_size=rows // 3))),
        seed=draw(st.integers(0, 2**16)),
    )


def hidden_limit(limiter: LimiterKind) -> ModelScenario:
    """An explicit example: a chain of two model columns against an endpoint that serves 2
    at once while the config allows 6, with 20 % injected 429s. Every start-up burst
    draws a 429 cut and a 1 s cooldown while others are in flight and waiting, so each
    limiter invariant is exercised in the first second (and a broken one fails without
    Hypothesis having to find, then shrink, a failing case)."""
    dag = Dag(
        order=("c0", "c1"),
        upstream={"c0": frozenset(), "c1": frozenset({"c0"})},
        strategy={"c0": "cell", "c1": "cell"},
    )
    model = SimulatedModel(
        name="m0", capacity=2, retry_after=1.0, latency=Latency(median=0.25),
        faults=Faults(rate_429=0.2), seed=1,
    )
    return ModelScenario(
        dag=dag, endpoint_of={"c0": 0, "c1": 0}, endpoints=(Endpoint(model, ceiling=6),),
        limiter=limiter, rows=12, row_group_size=12, max_row_groups_in_flight=1,
        max_submitted=8, max_llm_wait=16, salvage_max_rounds=1, local_latency=0.0,
        local_fatal_rows=frozenset(), seed=1,
    )


def dropped_rows(limiter: LimiterKind) -> ModelScenario:
    """An explicit example: a local column fails for good on four rows while the model
    column of the same rows is in flight, so those requests are cancelled and leave their
    slots without a report (which must release them)."""
    dag = Dag(
        order=("c0", "c1"),
        upstream={"c0": frozenset(), "c1": frozenset()},
        strategy={"c0": "cell", "c1": "cell"},
    )
    model = SimulatedModel(name="m0", capacity=8, latency=Latency(median=1.0), seed=2)
    return ModelScenario(
        dag=dag, endpoint_of={"c0": None, "c1": 0}, endpoints=(Endpoint(model, ceiling=2),),
        limiter=limiter, rows=8, row_group_size=8, max_row_groups_in_flight=1,
        max_submitted=8, max_llm_wait=8, salvage_max_rounds=0, local_latency=0.25,
        local_fatal_rows=frozenset({0, 1, 2, 3}), seed=2,
    )


def work_bound(sc: ModelScenario) -> float:
    """An upper bound of the run's virtual makespan: every attempt of every task one after
    another. A model cell may be tried ``max(salvage_max_rounds, 20) + 1`` times (429s have
    the larger budget, ``RetryPolicy``); each try costs at most its latency, a limiter
    cooldown and the pause before the next try: the longest ``Retry-After`` (or the default
    cooldown when that is unusable) or the longest salvage backoff."""
    groups = -(-sc.rows // sc.row_group_size)
    pause = max([DEFAULT_COOLDOWN, *(e.model.retry_after for e in sc.endpoints)])
    latency = max([sc.local_latency, *(e.model.latency.median for e in sc.endpoints)])
    tries = max(sc.salvage_max_rounds, 20) + 1
    total = 0.0
    per_try = latency + pause + max(pause, *RetryPolicy().backoff)
    for c in sc.dag.order:
        tasks = groups if sc.dag.strategy[c] == "full_column" else sc.rows
        total += tasks * tries * per_try
    return total


# -- the probe ---------------------------------------------------------------------------------


@attrs.frozen
class Snapshot:
    """What the probe saw at one moment, on one endpoint's limiter."""

    seq: int
    time: float
    stats: LimiterStatistics
    held: int
    """Slots the probe has seen admitted and not yet released, on this endpoint."""


@attrs.define
class Request:
    """One ``slot()`` call through the probe."""

    endpoint: str
    parked: Snapshot
    admitted: Snapshot | None = None
    admitted_at: float | None = None
    """``Permit.admitted_at``: when the limiter granted the slot."""
    outcome: str | None = None
    before_report: Snapshot | None = None
    """Taken just before the report is passed on (nothing else runs in between)."""
    reported: Snapshot | None = None


@attrs.frozen
class Change:
    """One ``LimitChange`` an adaptive limiter reported through ``on_change``."""

    endpoint: str
    seq: int
    change: LimitChange
    during: Request | None
    """The request whose report caused it (``on_change`` runs inside the report)."""


@attrs.define
class ModelLayerLog:
    """Everything the probes saw, across endpoints, in order."""

    requests: list[Request] = attrs.field(factory=list)
    changes: list[Change] = attrs.field(factory=list)
    snapshots: list[tuple[str, Snapshot]] = attrs.field(factory=list)
    probes: dict[str, LimiterProbe] = attrs.field(factory=dict)
    _seq: int = 0
    _reporting: Request | None = None

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def factory(self, kind: LimiterKind) -> Any:
        """A ``limiter_factory``: the real limiter of ``kind``, behind a probe."""

        def build(name: str, ceiling: int) -> LimiterProbe:
            probe = LimiterProbe(self, name)
            if kind == "adaptive":
                probe.inner = AdaptiveLimiter(name, ceiling, on_change=probe.on_change)
            else:
                probe.inner = StaticLimiter(name, ceiling)
            self.probes[name] = probe
            return probe

        return build


class LimiterProbe:
    """A ``ModelLimiter`` that forwards to a real limiter and records what it saw."""

    inner: Any

    def __init__(self, log: ModelLayerLog, name: str) -> None:
        self.log = log
        self.name = name
        self.held = 0

    def statistics(self) -> LimiterStatistics:
        stats: LimiterStatistics = self.inner.statistics()
        return stats

    def snapshot(self) -> Snapshot:
        snap = Snapshot(self.log.next_seq(), trio.current_time(), self.statistics(), self.held)
        self.log.snapshots.append((self.name, snap))
        return snap

    def on_change(self, change: LimitChange) -> None:
        log = self.log
        log.changes.append(Change(self.name, log.next_seq(), change, log._reporting))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[ProbePermit]:
        request = Request(self.name, parked=self.snapshot())
        self.log.requests.append(request)
        try:
            async with self.inner.slot() as permit:
                self.held += 1
                request.admitted = self.snapshot()
                request.admitted_at = permit.admitted_at
                yield ProbePermit(self, request, permit)
        finally:
            if request.admitted is not None and request.outcome is None:
                self.held -= 1
                request.outcome = "abandoned"  # left without a report (released on exit)
                request.reported = self.snapshot()


class ProbePermit:
    """Forwards each report to the real permit; notes what it was and what followed."""

    def __init__(self, probe: LimiterProbe, request: Request, permit: Any) -> None:
        self._probe, self._request, self._permit = probe, request, permit

    @property
    def admitted_at(self) -> float:
        value: float = self._permit.admitted_at
        return value

    @property
    def released(self) -> bool:
        value: bool = self._permit.released
        return value

    def _report(self, outcome: str, call: Any, *args: Any) -> None:
        log = self._probe.log
        self._request.before_report = self._probe.snapshot()
        log._reporting = self._request
        try:
            call(*args)
        finally:
            log._reporting = None
        self._request.outcome = outcome
        self._probe.held -= 1
        self._request.reported = self._probe.snapshot()

    def success(self) -> None:
        self._report("success", self._permit.success)

    def failure(self) -> None:
        self._report("failure", self._permit.failure)

    def rate_limited(self, retry_after: float | None) -> None:
        self._report("rate_limited", self._permit.rate_limited, retry_after)


# -- the checks --------------------------------------------------------------------------------


def limits_at_admission(log: ModelLayerLog, request: Request) -> list[int]:
    """The limits the request's endpoint may have had at the instant its slot was granted.

    The grant time is ``Permit.admitted_at``; a change's time is ``LimitChange.at``. The limit
    just before that instant is the one the last earlier change set (or, with none, the one
    in force when the request parked); changes made in that very instant (before the probe
    saw the admission) may have moved it either way, so their limits count too."""
    assert request.admitted is not None
    granted = request.admitted_at
    changes = [
        c.change
        for c in log.changes
        if c.endpoint == request.endpoint and c.seq < request.admitted.seq
    ]
    earlier = [c for c in changes if c.at < granted]
    if earlier:
        limits = [earlier[-1].new]
    else:
        limits = [changes[0].old if changes else request.parked.stats.limit]
    return limits + [c.new for c in changes if c.at == granted]


def check_in_flight_within_limit(log: ModelLayerLog) -> None:
    """In flight <= the current limit at every admission.

    A grant (at ``Permit.admitted_at``) and the granted task's first step happen in the same
    virtual instant, but other tasks may run in between: report a 429 and cut the limit, or
    be granted too. So the number in flight the probe reads at the admission is checked
    against the highest limit the endpoint had in the instant of the grant. And the limiter
    never counts fewer requests in flight than the probe sees holding a slot."""
    for name, snap in log.snapshots:
        assert snap.held <= snap.stats.in_flight, (name, snap)
    for r in log.requests:
        if r.admitted is None:
            continue
        highest = max(limits_at_admission(log, r))
        assert r.admitted.stats.in_flight <= highest, (
            f"{r.endpoint}: admitted at {r.admitted_at} with {r.admitted.stats.in_flight} in "
            f"flight; the limit in that instant was at most {highest}"
        )


def check_limit_within_bounds(log: ModelLayerLog, ceilings: Mapping[str, int]) -> None:
    """1 <= limit <= ceiling, in every snapshot and every change; the ceiling is the model's
    ``max_parallel_requests``."""
    for name, snap in log.snapshots:
        assert snap.stats.ceiling == ceilings[name], (name, snap.stats)
        assert 1 <= snap.stats.limit <= snap.stats.ceiling, (name, snap.stats)
    for c in log.changes:
        ceiling = ceilings[c.endpoint]
        assert 1 <= c.change.new <= ceiling, c
        assert 1 <= c.change.old <= ceiling, c


def check_429_cuts_are_measured(log: ModelLayerLog) -> None:
    """A 429 cut is made in the report of a 429 and lands on what is in flight: it goes down,
    and by at most half in one step (``_core/_aimd.py``: load 429s cut to the requests still
    in flight, no lower than half the limit; a blind cut to 1, or one that overshoots by
    more, breaks this)."""
    for c in log.changes:
        if c.change.reason != "rate_limited":
            continue
        request = c.during
        assert request is not None, f"{c.endpoint}: a 429 cut outside any report: {c}"
        assert request.endpoint == c.endpoint, c
        assert request.outcome == "rate_limited", c
        assert request.admitted is not None
        old, new = c.change.old, c.change.new
        assert (old + 1) // 2 <= new < old, f"{c.endpoint}: a 429 cut of {old} to {new}"


EPSILON = 1e-9
"""A cooldown's end is read back as ``now + cooldown_remaining``, which float rounding may
put a hair past the true end (0.45 + (3.35 - 0.45) > 3.35): ends are compared this loosely."""


def cooldown_windows(log: ModelLayerLog) -> dict[str, list[tuple[float, float]]]:
    """Per endpoint, the intervals ``(start, end)`` in which its limiter said it was cooling
    down (``statistics().cooldown_remaining`` after a report), ends less :data:`EPSILON`."""
    windows: dict[str, list[tuple[float, float]]] = {}
    for r in log.requests:
        snap = r.reported
        if snap is not None and snap.stats.cooldown_remaining > 0:
            windows.setdefault(r.endpoint, []).append(
                (snap.time, snap.time + snap.stats.cooldown_remaining - EPSILON)
            )
    return windows


def check_nothing_sent_during_a_cooldown(
    log: ModelLayerLog, request_log: Sequence[Any], model_of: Mapping[str, str]
) -> None:
    """No slot is granted, and no request reaches the endpoint, while the limiter says it is
    cooling down (``statistics().cooldown_remaining > 0``).

    Three views, because a grant is not seen when it is made: (1) no ``Permit.admitted_at``
    and (2) no request start in the simulator's log falls strictly inside a cooldown (loopback
    HTTP takes no virtual time, so a request admitted before a 429 reaches the endpoint at its
    admission time, never later); (3) a grant in the very instant a cooldown starts, which
    no clock can tell from one made just before it, shows in the counts: while cooling down,
    the slots granted but not yet taken up by their task (``in_flight`` minus the slots the
    probe sees held) can only go down, also across the report that starts the cooldown."""
    windows = cooldown_windows(log)
    for r in log.requests:
        if r.admitted_at is None:
            continue
        for start, end in windows.get(r.endpoint, ()):
            assert not start < r.admitted_at < end, (
                f"{r.endpoint}: a slot granted at {r.admitted_at} inside the cooldown "
                f"({start}, {end})"
            )
    for endpoint, spans in windows.items():
        model = model_of[endpoint]
        for record in request_log:
            if record.model != model:
                continue
            for start, end in spans:
                assert not start < record.start < end, (
                    f"{endpoint}: a request reached {model} at {record.start}, inside the "
                    f"cooldown ({start}, {end})"
                )
    for r in log.requests:
        before, after = r.before_report, r.reported
        if before is None or after is None or after.stats.cooldown_remaining <= 0:
            continue
        assert after.stats.in_flight - after.held <= before.stats.in_flight - before.held, (
            f"{r.endpoint}: the report of a {r.outcome} at {after.time} granted a slot, "
            f"while cooling down until {after.time + after.stats.cooldown_remaining}"
        )
    last: dict[str, Snapshot] = {}
    for name, snap in log.snapshots:
        before = last.get(name)
        last[name] = snap
        if before is None or before.stats.cooldown_remaining <= 0:
            continue
        if snap.time >= before.time + before.stats.cooldown_remaining - EPSILON:
            continue  # the cooldown may have ended in between
        granted_before = before.stats.in_flight - before.held
        granted_now = snap.stats.in_flight - snap.held
        assert granted_now <= granted_before, (
            f"{name}: a slot was granted at {snap.time}, while cooling down until "
            f"{before.time + before.stats.cooldown_remaining}"
        )


def check_every_slot_returned(log: ModelLayerLog) -> None:
    """After the run, no endpoint holds a slot or has a waiter, and every request ended."""
    for name, probe in log.probes.items():
        stats = probe.statistics()
        assert (stats.in_flight, stats.waiting) == (0, 0), (name, stats)
    assert all(r.reported is not None for r in log.requests if r.admitted is not None)
