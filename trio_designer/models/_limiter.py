"""Per-model concurrency limiters: how many requests one model endpoint gets at a time.

Every model endpoint gets one limiter, shared by every column that calls it. A request holds a
*slot* for as long as it is on the wire and reports how it went::

    async with limiter.slot() as permit:        # parks until admitted
        try:
            response = await client.chat(...)
        except ModelRateLimitedError as exc:
            permit.rate_limited(exc.retry_after)
            raise
        except RetryableGenerationError:
            permit.failure()
            raise
        permit.success()

Mental model: a ``trio.CapacityLimiter`` whose number of tokens changes with what the endpoint
says. :class:`StaticLimiter` never changes it; :class:`AdaptiveLimiter` runs the AIMD
controller of :mod:`trio_designer._core._aimd` (429s cut it, latency well above the unloaded
baseline cuts it, streaks of successes grow it back to the ceiling) and closes admission during
a 429 cooldown.

Semantics shared by both (and pinned by the contract tests in ``tests/test_limiter.py``):

* waiters are parked in a ``trio.lowlevel.ParkingLot`` and admitted in FIFO order; a newcomer
  never overtakes a parked waiter;
* ``slot()`` always checkpoints on entry, also when a slot is free; exiting never blocks;
* a cancelled waiter leaves no trace (``statistics().waiting`` drops back);
* when the limit shrinks below the number of holders, the holders finish normally and new
  requests wait until enough of them have left;
* leaving ``slot()`` without a report (an exception, a cancellation) releases the slot with no
  signal; reporting twice raises ``RuntimeError``;
* the end of a cooldown is not polled for: a sleeper task sleeps until the exact end and admits
  the waiters (a ``trio.lowlevel.spawn_system_task``, because a long-lived limiter owns no
  nursery; it exists only while someone waits out a cooldown).

Every limit change is logged at INFO on the ``trio_designer.models`` logger, e.g.
``model 'gen': limit 20 -> 15 (rate limited; cooling down 2.0 s)``, and passed to ``on_change``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Literal, Protocol, final

import attrs
import trio

from .._core._aimd import DEFAULT_POLICY, Admission, AimdController, LimitChange, Policy

__all__ = [
    "AdaptiveLimiter",
    "LimiterStatistics",
    "ModelLimiter",
    "Permit",
    "StaticLimiter",
]

_logger = logging.getLogger("trio_designer.models")

_Outcome = Literal["success", "rate_limited", "failure", "abandoned"]


@attrs.frozen(kw_only=True)
class LimiterStatistics:
    """A snapshot of one model limiter."""

    name: str
    """The limiter's name (the model endpoint it guards)."""
    limit: int
    """How many requests may be in flight at once right now."""
    ceiling: int
    """The largest limit (the model's ``max_parallel_requests``); an adaptive limit starts here."""
    in_flight: int
    """Slots held right now (may exceed ``limit`` for a while after a cut)."""
    waiting: int
    """Tasks parked in ``slot()``, waiting to be admitted."""
    cooldown_remaining: float
    """Seconds until admissions resume after a 429 (0 when not cooling down)."""
    rate_limited: int
    """Requests reported with ``Permit.rate_limited`` so far."""
    successes: int
    """Requests reported with ``Permit.success`` so far."""
    failures: int
    """Requests reported with ``Permit.failure`` so far (releases without a report are not
    counted anywhere)."""
    baseline_latency: float | None
    """The endpoint's unloaded latency in seconds, as last measured (``None``: not yet, or a
    static limiter)."""
    recent_latency: float | None
    """The mean latency of the last completed measurement window at the current load, in
    seconds (``None``: not yet, or a static limiter)."""
    probing: bool = False
    """Whether a baseline probe is holding admissions below ``limit`` for one measurement
    window (adaptive limiters only; see ``docs/adaptive-limits.md``)."""


class ModelLimiter(Protocol):
    """What the model layer needs from a limiter (both limiters here implement it)."""

    def slot(self) -> AbstractAsyncContextManager[Permit]:
        """An async context manager that parks until a slot is free and yields its permit."""
        ...

    def statistics(self) -> LimiterStatistics:
        """A snapshot of the limiter's state."""
        ...


@final
class Permit:
    """One admitted request's slot; report the outcome exactly once.

    ``success()`` measures the latency as ``trio.current_time()`` now minus the time the slot was
    granted, so report as soon as the response is in (before parsing it). Each report releases
    the slot at once, before ``slot()`` exits. Not built by users: ``slot()`` yields it.
    """

    __slots__ = ("_admission", "_limiter", "_released")

    def __init__(self, limiter: _LimiterBase, admission: Admission) -> None:
        self._limiter = limiter
        self._admission = admission
        self._released = False

    @property
    def released(self) -> bool:
        """Whether the outcome was reported (or the slot was left without a report)."""
        return self._released

    @property
    def admitted_at(self) -> float:
        """The ``trio.current_time()`` at which the slot was granted."""
        return self._admission.admitted_at

    def success(self) -> None:
        """The request succeeded.

        Raises:
          RuntimeError: if this permit was already released.
        """
        self._settle("success", None)

    def rate_limited(self, retry_after: float | None) -> None:
        """The endpoint answered 429; ``retry_after`` is its ``Retry-After`` in seconds, if any.

        Raises:
          RuntimeError: if this permit was already released.
        """
        self._settle("rate_limited", retry_after)

    def failure(self) -> None:
        """Another error (timeout, 5xx, connection error): release, no change to the limit.

        Raises:
          RuntimeError: if this permit was already released.
        """
        self._settle("failure", None)

    def _abandon(self) -> None:
        if not self._released:
            self._settle("abandoned", None)

    def _settle(self, outcome: _Outcome, retry_after: float | None) -> None:
        if self._released:
            raise RuntimeError(
                f"this permit of model limiter {self._limiter.name!r} was already released; "
                "report each request's outcome exactly once."
            )
        self._released = True
        self._limiter._settle(self._admission, outcome, retry_after)

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Permit of {self._limiter.name!r} admitted at {self.admitted_at}, {state}>"


@final
class _Slot(AbstractAsyncContextManager[Permit]):
    """The context manager returned by ``slot()``: acquire on entry, abandon on exit."""

    def __init__(self, limiter: _LimiterBase) -> None:
        self._limiter = limiter
        self._permit: Permit | None = None

    async def __aenter__(self) -> Permit:
        if self._permit is not None:
            raise RuntimeError(
                "a slot() context manager cannot be entered twice; call slot() again"
            )
        self._permit = await self._limiter._acquire()
        return self._permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._permit is not None:
            self._permit._abandon()


class _Decisions(Protocol):
    """The decision core a driver runs: :class:`AimdController` or :class:`_FixedLimit`."""

    @property
    def limit(self) -> int: ...
    @property
    def ceiling(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def cooldown_until(self) -> float: ...
    @property
    def successes(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def rate_limited(self) -> int: ...
    @property
    def baseline_latency(self) -> float | None: ...
    @property
    def recent_latency(self) -> float | None: ...
    @property
    def probing(self) -> bool: ...
    def cooldown_remaining(self, now: float) -> float: ...
    def can_admit(self, now: float) -> bool: ...
    def admit(self, now: float) -> Admission: ...
    def record_success(self, admission: Admission, now: float) -> LimitChange | None: ...
    def record_rate_limited(
        self, admission: Admission, now: float, retry_after: float | None
    ) -> LimitChange | None: ...
    def record_failure(self, admission: Admission, now: float) -> LimitChange | None: ...
    def record_abandoned(self, admission: Admission, now: float) -> LimitChange | None: ...


class _FixedLimit:
    """The static limiter's decision core: a fixed limit, counters, nothing else."""

    def __init__(self, limit: int) -> None:
        self.limit = self.ceiling = limit
        self.in_flight = self.successes = self.failures = self.rate_limited = 0
        self.cooldown_until = -math.inf
        self.baseline_latency: float | None = None
        self.recent_latency: float | None = None
        self.probing = False
        self._next_serial = 0

    def cooldown_remaining(self, now: float) -> float:
        return 0.0

    def can_admit(self, now: float) -> bool:
        return self.in_flight < self.limit

    def admit(self, now: float) -> Admission:
        self.in_flight += 1
        self._next_serial += 1
        return Admission(serial=self._next_serial, admitted_at=now, rate_epoch=0, window=None)

    def record_success(self, admission: Admission, now: float) -> None:
        self.in_flight -= 1
        self.successes += 1

    def record_rate_limited(
        self, admission: Admission, now: float, retry_after: float | None
    ) -> None:
        self.in_flight -= 1
        self.rate_limited += 1

    def record_failure(self, admission: Admission, now: float) -> None:
        self.in_flight -= 1
        self.failures += 1

    def record_abandoned(self, admission: Admission, now: float) -> None:
        self.in_flight -= 1


class _LimiterBase:
    """The trio driver shared by both limiters: parking, FIFO handoff, cooldown sleeper."""

    def __init__(
        self,
        name: str,
        decisions: _Decisions,
        on_change: Callable[[LimitChange], None] | None = None,
    ) -> None:
        self._name = name
        self._decisions = decisions
        self._on_change = on_change
        # Invariant: after every event, bool(_lot) implies not _decisions.can_admit(now) — a
        # task parks only when no slot can be granted, and every release or cooldown end grants
        # slots to the parked tasks in FIFO order before anyone else can take them.
        self._lot = trio.lowlevel.ParkingLot()
        # Grants made to parked tasks that have not resumed yet; each is popped by its task.
        self._grants: dict[trio.lowlevel.Task, Admission] = {}
        # Invariant: at most one cooldown sleeper task exists; while it sleeps, _cooldown_scope
        # is its cancel scope and the scope's deadline is the cooldown's current end.
        self._sleeper_running = False
        self._cooldown_scope: trio.CancelScope | None = None

    @property
    def name(self) -> str:
        """The limiter's name, used in logs and statistics."""
        return self._name

    def slot(self) -> AbstractAsyncContextManager[Permit]:
        """Hold one of the endpoint's slots for one request.

        Entering parks (FIFO) until a slot is free and no cooldown runs, and is always a
        checkpoint. Exiting releases the slot if no outcome was reported. Cancellation-safe: a
        waiter cancelled while parked leaves nothing behind.
        """
        return _Slot(self)

    def statistics(self) -> LimiterStatistics:
        """A snapshot; outside a trio run ``cooldown_remaining`` is reported as 0."""
        d = self._decisions
        try:
            cooldown = d.cooldown_remaining(trio.current_time())
        except RuntimeError:  # not inside trio.run
            cooldown = 0.0
        return LimiterStatistics(
            name=self._name,
            limit=d.limit,
            ceiling=d.ceiling,
            in_flight=d.in_flight,
            waiting=len(self._lot),
            cooldown_remaining=cooldown,
            rate_limited=d.rate_limited,
            successes=d.successes,
            failures=d.failures,
            baseline_latency=d.baseline_latency,
            recent_latency=d.recent_latency,
            probing=d.probing,
        )

    async def _acquire(self) -> Permit:
        await trio.lowlevel.checkpoint_if_cancelled()
        now = trio.current_time()
        if not self._lot and self._decisions.can_admit(now):
            admission = self._decisions.admit(now)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return Permit(self, admission)
        task = trio.lowlevel.current_task()
        self._ensure_sleeper(now)  # we are about to park: someone must end the cooldown
        # Nothing is recorded before parking: if the park is cancelled, the lot forgets us and
        # no grant exists. A grant is recorded only together with the unpark that wakes us, and
        # an unparked task can no longer be cancelled out of park().
        await self._lot.park()
        return Permit(self, self._grants.pop(task))

    def _settle(self, admission: Admission, outcome: _Outcome, retry_after: float | None) -> None:
        now = trio.current_time()
        d = self._decisions
        change: LimitChange | None
        if outcome == "success":
            change = d.record_success(admission, now)
        elif outcome == "rate_limited":
            change = d.record_rate_limited(admission, now, retry_after)
        elif outcome == "failure":
            change = d.record_failure(admission, now)
        else:
            change = d.record_abandoned(admission, now)
        self._wake_waiters()
        if change is not None:
            self._report(change)

    def _wake_waiters(self) -> None:
        now = trio.current_time()
        while self._lot and self._decisions.can_admit(now):
            [task] = self._lot.unpark()
            self._grants[task] = self._decisions.admit(now)
        if self._lot:
            self._ensure_sleeper(now)

    def _ensure_sleeper(self, now: float) -> None:
        """Make sure someone admits the parked waiters when the cooldown ends."""
        until = self._decisions.cooldown_until
        if until <= now:
            return
        if self._cooldown_scope is not None:
            self._cooldown_scope.deadline = until  # a later 429 may have extended the cooldown
        elif not self._sleeper_running:
            self._sleeper_running = True
            trio.lowlevel.spawn_system_task(
                self._sleep_through_cooldown, name=f"cooldown of model limiter {self._name!r}"
            )

    async def _sleep_through_cooldown(self) -> None:
        try:
            # One sleep until the cooldown's end; _ensure_sleeper moves the deadline when a 429
            # extends the cooldown meanwhile, so nothing polls.
            with trio.CancelScope(deadline=self._decisions.cooldown_until) as scope:
                self._cooldown_scope = scope
                await trio.sleep_forever()
        finally:
            self._cooldown_scope = None
            self._sleeper_running = False
        self._wake_waiters()

    def _report(self, change: LimitChange) -> None:
        _logger.info(
            "model '%s': limit %d -> %d (%s)", self._name, change.old, change.new, change.describe()
        )
        if self._on_change is not None:
            self._on_change(change)

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<{type(self).__name__} {self._name!r}: {s.in_flight}/{s.limit} in flight "
            f"(ceiling {s.ceiling}), {s.waiting} waiting>"
        )


@final
class StaticLimiter(_LimiterBase):
    """A fixed limit: at most ``ceiling`` requests in flight, whatever the endpoint says.

    429s are counted but change nothing (no cut, no cooldown); use it where the limit is known
    and the scheduler's deferral is enough, and as the baseline the adaptive limiter is compared
    with.

    Args:
      name: the endpoint's name, for logs and statistics.
      ceiling: the fixed limit.

    Raises:
      ValueError: if ``ceiling < 1``.
    """

    def __init__(self, name: str, ceiling: int) -> None:
        if ceiling < 1:
            raise ValueError(f"model limiter {name!r} needs a ceiling of at least 1, got {ceiling}")
        super().__init__(name, _FixedLimit(ceiling))


@final
class AdaptiveLimiter(_LimiterBase):
    """A limit that adapts to what the endpoint says (AIMD on 429s and on latency).

    Starts at ``ceiling``. A 429 cuts the limit to ×0.75 once per burst and closes admission for
    ``Retry-After`` seconds (2 s by default); latency well above the endpoint's unloaded
    baseline cuts it to the concurrency the endpoint really serves; every 25 successes grow it
    by one, up to the ceiling, unless latency says a queue is building. See
    ``docs/adaptive-limits.md`` and :mod:`trio_designer._core._aimd` for the algorithm.

    Args:
      name: the endpoint's name, for logs and statistics.
      ceiling: the largest limit, and the first (``max_parallel_requests``).
      policy: the tunables.
      on_change: called with every :class:`LimitChange`, after it is logged, in the task that
        reported the outcome; an exception from it propagates out of that report (the change
        itself has already been applied).

    Raises:
      ValueError: if ``ceiling < 1``.
    """

    def __init__(
        self,
        name: str,
        ceiling: int,
        *,
        policy: Policy = DEFAULT_POLICY,
        on_change: Callable[[LimitChange], None] | None = None,
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"model limiter {name!r} needs a ceiling of at least 1, got {ceiling}")
        self._controller = AimdController(ceiling, policy)
        super().__init__(name, self._controller, on_change)

    @property
    def policy(self) -> Policy:
        return self._controller.policy
