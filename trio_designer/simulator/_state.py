"""Per-model runtime state: admission (capacity, RPM/TPM budgets), faults, service slots, stats.

One :class:`ModelRuntime` per simulated model, owned by the ASGI app. Everything here runs on
the event loop between checkpoints, so plain counters are safe: a request's admission check and
its ``in_flight`` increment happen with no checkpoint in between, so two requests can never both
take the last hosted slot.

Time is ``trio.current_time()`` throughout, so the same code runs in real time (the CLI) and in
virtual time (tests under ``MockClock``).
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Literal, final

import attrs
import trio

from ._content import seeded_rng
from ._models import FAULT_KINDS, ModelStats, SimulatedModel

WINDOW_SECONDS = 60.0
"""The sliding window of the hosted RPM/TPM budgets."""

Header = tuple[bytes, bytes]
RejectReason = Literal["capacity", "rpm", "tpm", "fault"]


@attrs.frozen(kw_only=True)
class Rejection:
    """Why a hosted model answered 429 (``reason``), in words (``message``)."""

    reason: RejectReason
    message: str


@final
class ModelRuntime:
    """The live state of one simulated model.

    Invariants:
      * ``0 <= queued <= in_flight``; ``in_service == in_flight - queued``;
      * hosted mode: ``in_flight <= capacity`` (admission refuses the request that would break
        it); gpu mode: ``in_service <= capacity`` (the ``CapacityLimiter``);
      * ``window_tokens == sum(tokens for _, tokens in window)``, and the window only holds
        admissions from the last ``WINDOW_SECONDS`` after :meth:`_expire`.
    """

    def __init__(self, config: SimulatedModel) -> None:
        self.config = config
        key = f"{config.seed}\x00{config.name}"
        self._latency_rng = seeded_rng(f"latency\x00{key}")
        self._fault_rng = seeded_rng(f"faults\x00{key}")
        self._limiter = trio.CapacityLimiter(config.capacity) if config.mode == "gpu" else None
        self._window: collections.deque[tuple[float, int]] = collections.deque()
        self._window_tokens = 0
        self.in_flight = 0
        self.queued = 0
        self._in_service = 0
        self._busy_mark = trio.current_time()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.requests = 0
        self.peak = self.in_flight
        self.rate_limited = 0
        self.faults_sent = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.completed = 0
        self._busy_accum = 0.0
        self._busy_mark = trio.current_time()

    # ----------------------------------------------------------------- admission

    def check_admission(self, now: float, tokens: int) -> Rejection | None:
        """The reason a hosted model refuses a request of ``tokens`` tokens now, or None."""
        if self.config.mode == "gpu":
            return None
        self._expire(now)
        limit, name = self.config.capacity, self.config.name
        if self.in_flight >= limit:
            return Rejection(
                reason="capacity",
                message=f"Model '{name}' is at capacity ({limit} concurrent requests).",
            )
        if self.config.rpm is not None and len(self._window) >= self.config.rpm:
            return Rejection(
                reason="rpm", message=f"Rate limit reached for '{name}': {self.config.rpm} RPM."
            )
        if self.config.tpm is not None and self._window_tokens + tokens > self.config.tpm:
            return Rejection(
                reason="tpm",
                message=f"Rate limit reached for '{name}': {self.config.tpm} TPM "
                f"(this request needs {tokens} tokens).",
            )
        return None

    def record_admission(self, now: float, tokens: int) -> None:
        """Count an admitted request against the RPM/TPM window."""
        self._window.append((now, tokens))
        self._window_tokens += tokens

    def _expire(self, now: float) -> None:
        while self._window and self._window[0][0] <= now - WINDOW_SECONDS:
            _, tokens = self._window.popleft()
            self._window_tokens -= tokens

    def ratelimit_headers(self, now: float, *, rejected: bool = False) -> list[Header]:
        """OpenAI's ``x-ratelimit-*`` headers (plus ``retry-after`` when ``rejected``)."""
        self._expire(now)
        config = self.config
        oldest_expiry = self._window[0][0] + WINDOW_SECONDS - now if self._window else 0.0
        if config.rpm is not None:
            limit, remaining, reset = config.rpm, config.rpm - len(self._window), oldest_expiry
        else:
            limit, remaining = config.capacity, config.capacity - self.in_flight
            reset = config.retry_after if remaining <= 0 else 0.0
        headers = [
            (b"x-ratelimit-limit-requests", str(limit).encode()),
            (b"x-ratelimit-remaining-requests", str(max(0, remaining)).encode()),
            (b"x-ratelimit-reset-requests", format_duration(reset).encode()),
        ]
        if config.tpm is not None:
            headers += [
                (b"x-ratelimit-limit-tokens", str(config.tpm).encode()),
                (
                    b"x-ratelimit-remaining-tokens",
                    str(max(0, config.tpm - self._window_tokens)).encode(),
                ),
                (b"x-ratelimit-reset-tokens", format_duration(oldest_expiry).encode()),
            ]
        if rejected:
            headers += [
                (b"retry-after", f"{config.retry_after:g}".encode()),
                (b"retry-after-ms", str(round(config.retry_after * 1000)).encode()),
            ]
        return headers

    # ----------------------------------------------------------------- randomness

    def draw_fault(self) -> str | None:
        """One fault kind (from :data:`FAULT_KINDS`) or None, from the seeded fault RNG."""
        u = self._fault_rng.random()
        for kind in FAULT_KINDS:
            u -= self.config.faults.rate(kind)
            if u < 0:
                return kind
        return None

    def draw_service_time(self, output_tokens: int) -> float:
        """A service time: lognormal(median, sigma) + per-token time (exactly median if sigma=0)."""
        latency = self.config.latency
        base = latency.median
        if latency.sigma > 0 and latency.median > 0:
            base = self._latency_rng.lognormvariate(math.log(latency.median), latency.sigma)
        if latency.per_output_token:
            base += latency.per_output_token * output_tokens
        return base

    # ----------------------------------------------------------------- lifecycle

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Count the request in ``in_flight`` while the block runs."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1

    @asynccontextmanager
    async def in_service(self) -> AsyncIterator[float]:
        """Hold a service slot for the block (gpu: wait for one first); yields the queueing time."""
        queued_for = 0.0
        if self._limiter is not None:
            queued_for = await self._wait_for_slot(self._limiter)
        self._change_in_service(+1)
        try:
            yield queued_for
        finally:
            self._change_in_service(-1)
            if self._limiter is not None:
                self._limiter.release()

    async def _wait_for_slot(self, limiter: trio.CapacityLimiter) -> float:
        start = trio.current_time()
        self.queued += 1
        try:
            await limiter.acquire()
        finally:
            self.queued -= 1
        return trio.current_time() - start

    def _change_in_service(self, delta: int) -> None:
        now = trio.current_time()
        self._busy_accum += self._in_service * (now - self._busy_mark) / self.config.capacity
        self._busy_mark = now
        self._in_service += delta

    def record_completion(self, input_tokens: int, output_tokens: int) -> None:
        self.completed += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    # ----------------------------------------------------------------- stats

    def statistics(self) -> ModelStats:
        now = trio.current_time()
        live = self._in_service * (now - self._busy_mark) / self.config.capacity
        return ModelStats(
            requests=self.requests,
            in_flight=self.in_flight,
            queued=self.queued,
            peak_concurrency=self.peak,
            rate_limited=self.rate_limited,
            faults_sent=self.faults_sent,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            busy_time=self._busy_accum + live,
            completed=self.completed,
        )

    def reset(self) -> None:
        """Zero the counters; live gauges (``in_flight``, ``queued``) and budgets are kept."""
        self._reset_counters()


def format_duration(seconds: float) -> str:
    """OpenAI's reset-header style: ``"250ms"``, ``"1s"``, ``"1.5s"``, ``"59.9s"``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    return f"{round(seconds, 3):g}s"
