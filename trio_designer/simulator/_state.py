"""Per-model runtime state: admission (capacity, budgets, outages), faults, service slots, stats.

One :class:`ModelRuntime` per simulated model, owned by the ASGI app. Everything here runs on
the event loop between checkpoints, so plain counters are safe: a request's admission check and
its ``in_flight`` increment happen with no checkpoint in between, so two requests can never both
take the last hosted slot.

Time is ``trio.current_time()`` throughout, so the same code runs in real time (the CLI) and in
virtual time (tests under ``MockClock``). Schedules (``capacity_schedule``, ``outages``) count
from ``epoch``, the moment the simulator started.
"""

from __future__ import annotations

import bisect
import collections
import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import final

import attrs
import trio

from ._budget import (
    Header,
    TokenBucket,
    ietf_headers,
    ietf_policy,
    openai_headers,
    retry_after_headers,
)
from ._content import seeded_rng
from ._models import FAULT_KINDS, LimitedBy, ModelStats, SimulatedModel


@attrs.frozen(kw_only=True)
class Rejection:
    """Why a model answered 429 (``limited_by``), in words, and when to come back (seconds)."""

    limited_by: LimitedBy
    message: str
    retry_after: float


_ENDS_KEPT = 2.0
"""Seconds of ends a model keeps for :meth:`ModelRuntime.arrival` (the server trusts no stamp
more than a second back)."""


@final
class ModelRuntime:
    """The live state of one simulated model.

    Invariants (each checked by the test named after it):
      * ``0 <= queued <= in_flight``; ``in_service == in_flight - queued``
        (``test_client_leaving_the_gpu_queue_frees_its_place``);
      * hosted mode: a request is admitted only while ``in_flight < capacity`` (a capacity
        that drops below ``in_flight`` evicts nobody); gpu mode: ``in_service <= capacity``
        except just after the capacity dropped, when holders finish first
        (``test_hosted_capacity_follows_its_schedule``,
        ``test_gpu_mode_never_serves_more_than_capacity_at_once``,
        ``test_gpu_capacity_falling_lets_running_requests_finish``);
      * one fault draw per request, at arrival, before any admission check, so injected faults
        do not depend on load (``test_injected_429s_do_not_depend_on_load``);
      * the budgets are charged exactly once per admitted request, at admission, never
        refunded (``test_hosted_tpm_budget_charges_prompt_plus_max_tokens_at_admission``).
    """

    def __init__(self, config: SimulatedModel, *, epoch: float) -> None:
        self.config = config
        self.epoch = epoch
        key = f"{config.seed}\x00{config.name}"
        self._latency_rng = seeded_rng(f"latency\x00{key}")
        self._fault_rng = seeded_rng(f"faults\x00{key}")
        self._fault_rates = [(kind, config.faults.rate(kind)) for kind in FAULT_KINDS]
        self._any_fault = any(rate > 0 for _, rate in self._fault_rates)
        self._step_times = [epoch + at for at, _ in config.capacity_schedule]
        self._step_capacities = [capacity for _, capacity in config.capacity_schedule]
        self._outage_starts = [epoch + start for start, _ in config.outages]
        self._outage_ends = [epoch + end for _, end in config.outages]
        self.capacity = self.capacity_at(epoch)
        gpu = config.mode == "gpu"
        self._limiter = trio.CapacityLimiter(self.capacity) if gpu else None
        self._rpm = TokenBucket(config.rpm, epoch) if config.rpm and not gpu else None
        self._tpm = TokenBucket(config.tpm, epoch) if config.tpm and not gpu else None
        self._policy = ietf_policy(self._rpm, self._tpm)
        self.in_flight = 0
        self.queued = 0
        self._in_service = 0
        self._busy_mark = epoch
        # The latest moment this model's state was decided at (see arrival): the last request
        # that ended (settle) and, for a model with budgets or a capacity schedule, the last
        # arrival it took; for the others, the recent ends, oldest first.
        self._settled = epoch
        self._ordered = bool(self._rpm or self._tpm or self._step_times)
        self._ends: collections.deque[float] = collections.deque()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.requests = 0
        self.peak = self.in_flight
        self.limited_by: collections.Counter[str] = collections.Counter()
        self.faults_sent = 0
        self.unavailable = 0
        self.admitted = 0
        self.charged_tokens = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.completed = 0
        self._busy_accum = 0.0
        self._busy_mark = trio.current_time()

    # ----------------------------------------------------------------- schedules

    def capacity_at(self, now: float) -> int:
        """The capacity in force at ``now`` (``capacity_schedule``, else ``capacity``)."""
        step = bisect.bisect_right(self._step_times, now) - 1
        return self._step_capacities[step] if step >= 0 else self.config.capacity

    def schedule_times(self) -> list[float]:
        """The moments the capacity changes (for the app's schedule task)."""
        return list(self._step_times)

    def follow_schedule(self, now: float) -> None:
        """Apply the capacity in force at ``now`` (gpu: resize the slot limiter)."""
        capacity = self.capacity_at(now)
        if capacity != self.capacity:
            self._change_in_service(0)  # close the busy_time segment at the old capacity
            self.capacity = capacity
            if self._limiter is not None:
                self._limiter.total_tokens = capacity

    def in_outage(self, now: float) -> bool:
        """Whether an outage window is open at ``now``."""
        i = bisect.bisect_right(self._outage_starts, now) - 1
        return i >= 0 and now < self._outage_ends[i]

    def next_outage(self, now: float) -> float:
        """When the next outage window opens after ``now`` (``inf`` if none)."""
        i = bisect.bisect_right(self._outage_starts, now)
        return self._outage_starts[i] if i < len(self._outage_starts) else math.inf

    # ----------------------------------------------------------------- admission

    def arrive(self, now: float) -> str | None:
        """Count a request and draw its fault (one draw per request, whatever the load)."""
        self.requests += 1
        if self._step_times:
            self.follow_schedule(now)
        return self._draw_fault() if self._any_fault else None

    def check_admission(self, now: float, tokens: int) -> Rejection | None:
        """Why a hosted model refuses a request charged ``tokens`` tokens now, or None."""
        if self._limiter is not None:
            return None
        config, name = self.config, self.config.name
        if self.in_flight >= self.capacity:
            return Rejection(
                limited_by="capacity",
                message=f"Model '{name}' is at capacity; too many concurrent requests.",
                retry_after=config.retry_after,
            )
        rpm_wait = self._rpm.wait_for(1, now) if self._rpm is not None else 0.0
        tpm_wait = self._tpm.wait_for(tokens, now) if self._tpm is not None else 0.0
        if tpm_wait == math.inf:
            return Rejection(
                limited_by="tpm",
                message=f"Request too large for '{name}': it needs {tokens} tokens "
                f"(prompt + max_tokens) but the limit is {config.tpm} TPM; "
                "shorten the prompt or lower max_tokens.",
                retry_after=config.retry_after,
            )
        if rpm_wait > 0:
            return Rejection(
                limited_by="rpm",
                message=f"Rate limit reached for '{name}': {config.rpm} RPM.",
                retry_after=max(rpm_wait, tpm_wait),
            )
        if tpm_wait > 0:
            return Rejection(
                limited_by="tpm",
                message=f"Rate limit reached for '{name}': {config.tpm} TPM "
                f"(this request is charged {tokens} tokens).",
                retry_after=tpm_wait,
            )
        return None

    def admit(self, now: float, tokens: int) -> None:
        """Charge an admitted request to the budgets."""
        self.admitted += 1
        self.charged_tokens += tokens
        if self._rpm is not None:
            self._rpm.take(1, now)
        if self._tpm is not None:
            self._tpm.take(tokens, now)

    def reject(self, limited_by: LimitedBy) -> None:
        """Count a 429."""
        self.limited_by[limited_by] += 1
        if limited_by == "injected":
            self.faults_sent += 1

    def has_budgets(self) -> bool:
        """Whether the model has an RPM or TPM budget (else :meth:`ratelimit_headers` is
        always empty)."""
        return self._rpm is not None or self._tpm is not None

    def ratelimit_headers(self, now: float) -> list[Header]:
        """The budget headers in the model's style (none without budgets or in gpu mode)."""
        if self._rpm is None and self._tpm is None:
            return []
        style = self.config.ratelimit_headers
        if style == "openai":
            return openai_headers(self._rpm, self._tpm, now)
        if style == "ietf":
            return ietf_headers(self._rpm, self._tpm, self._policy, now)
        return []

    def rejection_headers(self, now: float, retry_after: float) -> list[Header]:
        """The budget headers plus the ``Retry-After`` family, for a 429."""
        style = self.config.retry_after_header
        return self.ratelimit_headers(now) + retry_after_headers(style, retry_after, time.time())

    # ----------------------------------------------------------------- randomness

    def _draw_fault(self) -> str | None:
        """One fault kind (from :data:`FAULT_KINDS`) or None, from the seeded fault RNG."""
        u = self._fault_rng.random()
        for kind, rate in self._fault_rates:
            u -= rate
            if u < 0:
                return kind
        return None

    def draw_service_time(self, output_tokens: int) -> float:
        """A service time: lognormal(median, sigma) + per-token time (exactly median if sigma=0).

        Drawn at admission, so the i-th admitted request gets the i-th draw whatever the
        queueing (the gpu queue is FIFO, so this is also the order of service).
        """
        latency = self.config.latency
        base = latency.median
        if latency.sigma > 0 and latency.median > 0:
            base = self._latency_rng.lognormvariate(math.log(latency.median), latency.sigma)
        if latency.per_output_token:
            base += latency.per_output_token * output_tokens
        return base

    # ----------------------------------------------------------------- lifecycle

    @contextmanager
    def admitted_request(self) -> Iterator[None]:
        """Count the request in ``in_flight`` while the block runs."""
        self.enter_flight()
        try:
            yield
        finally:
            self.leave_flight()

    def enter_flight(self) -> None:
        """Count a request in ``in_flight``; pair every call with one :meth:`leave_flight`
        (``admitted_request`` does; the app's hot path calls the two itself, without a
        generator-based context manager per request)."""
        self.in_flight += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight

    def leave_flight(self) -> None:
        """The request counted by :meth:`enter_flight` is done."""
        self.in_flight -= 1

    def settle(self, now: float) -> None:
        """A request of this model ended (was logged) at ``now``: see :meth:`arrival`."""
        if now > self._settled:
            self._settled = now
        if not self._ordered:
            ends = self._ends
            ends.append(now)
            while ends[0] < now - _ENDS_KEPT:
                ends.popleft()

    def arrival(self, received: float) -> float:
        """The moment a request that ``received`` (its last byte's arrival, which the server
        may have read later) is served from: ``received``, unless the model's state changed
        between the two moments in a way its admission could have seen — then the moment of
        that change.

        Why: the server stamps a request when its bytes reached the host (the kernel's stamp)
        but admits it when it reads it. A request read after another one's end is admitted
        by the state at its read; had that freed slot decided its admission, served from its
        stamp it would appear to have run before the slot was free — over capacity. So:

        * a model with budgets or a capacity schedule takes its decisions in time order: an
          arrival is never before an earlier arrival or a logged end (the buckets and the
          schedule are charged and followed at the arrival);
        * any other model keeps the stamp when a slot was free at it anyway — fewer requests
          in flight now, plus those that ended since the stamp, than its capacity — and else
          arrives at the last end. Arrivals are not clamped to each other: the server reads a
          burst of connections in whatever order trio wakes their readers (often the newest
          first), and clamping each to the latest stamp read so far pushed the older requests
          of a burst to the newest one's arrival, and a burst read while answers went out to
          those answers' ends — up to 4 ms late in a small run's waves
          (``benches/small_runs.py``), an error of the instrument on the critical path. A
          request read after a later-stamped one sees that one counted in flight already,
          which only errs on the strict side.

        Under a virtual clock the server stamps by the read, and this is the identity."""
        settled = self._settled
        if self._ordered:
            start = received if received > settled else settled
            self._settled = start
            return start
        if received >= settled:
            return received
        ended = 0
        for end in reversed(self._ends):
            if end <= received:
                break
            ended += 1
        return received if self.in_flight + ended < self.capacity else settled

    def may_queue(self) -> bool:
        """Whether :meth:`enter_service` can wait for a slot (gpu mode); hosted never does."""
        return self._limiter is not None

    def has_free_slot(self) -> bool:
        """Whether a request entering service now would get a slot without waiting."""
        return self._limiter is None or self._limiter.available_tokens > 0

    @asynccontextmanager
    async def in_service(self) -> AsyncIterator[float]:
        """Hold a service slot for the block (gpu: wait for one first); yields the queueing time."""
        queued_for = await self.enter_service()
        try:
            yield queued_for
        finally:
            self.leave_service()

    async def enter_service(self) -> float:
        """Take a service slot (gpu: wait for one first); returns the time queued. Every call
        that returns must be paired with one :meth:`leave_service` (``in_service`` does it;
        the app's hot path calls the two itself, without an async generator per request)."""
        queued_for = 0.0
        if self._limiter is not None:
            queued_for = await self._wait_for_slot(self._limiter)
        self._change_in_service(+1)
        return queued_for

    def leave_service(self) -> None:
        """Give back the slot :meth:`enter_service` took."""
        self._change_in_service(-1)
        if self._limiter is not None:
            self._limiter.release()

    async def _wait_for_slot(self, limiter: trio.CapacityLimiter) -> float:
        """Take a slot of ``limiter``; returns the time queued for it: exactly 0 when one was
        free (the acquire's checkpoint is not queueing)."""
        free = limiter.available_tokens > 0 and not limiter.statistics().tasks_waiting
        start = trio.current_time()
        self.queued += 1
        try:
            await limiter.acquire()
        finally:
            self.queued -= 1
        return 0.0 if free else trio.current_time() - start

    def _change_in_service(self, delta: int) -> None:
        now = trio.current_time()
        self._busy_accum += self._in_service * (now - self._busy_mark) / self.capacity
        self._busy_mark = now
        self._in_service += delta

    def record_completion(self, input_tokens: int, output_tokens: int) -> None:
        self.completed += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    # ----------------------------------------------------------------- stats

    def statistics(self) -> ModelStats:
        now = trio.current_time()
        live = self._in_service * (now - self._busy_mark) / self.capacity
        return ModelStats(
            requests=self.requests,
            in_flight=self.in_flight,
            queued=self.queued,
            peak_concurrency=self.peak,
            capacity=self.capacity_at(now),
            rate_limited=sum(self.limited_by.values()),
            limited_by_capacity=self.limited_by["capacity"],
            limited_by_rpm=self.limited_by["rpm"],
            limited_by_tpm=self.limited_by["tpm"],
            limited_by_injected=self.limited_by["injected"],
            faults_sent=self.faults_sent,
            unavailable=self.unavailable,
            admitted=self.admitted,
            charged_tokens=self.charged_tokens,
            rpm_remaining=self._rpm.remaining(now) if self._rpm is not None else None,
            tpm_remaining=self._tpm.remaining(now) if self._tpm is not None else None,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            busy_time=self._busy_accum + live,
            completed=self.completed,
        )

    def reset(self) -> None:
        """Zero the counters; live gauges, budgets, schedules and RNGs are kept."""
        self._reset_counters()
