"""Per-model concurrency limiters: how many requests one model endpoint gets at a time.

Every model endpoint gets one limiter, shared by every column that calls it. A request holds a
*slot* for as long as it is on the wire and reports how it went::

    async with limiter.slot(tokens=estimate) as permit:   # parks until admitted
        try:
            response = await client.chat(...)
        except ModelRateLimitedError as exc:
            permit.rate_limited(exc.retry_after, rate_limits=exc.rate_limits)
            raise
        except RetryableGenerationError:
            permit.failure()
            raise
        permit.success(tokens=used, rate_limits=response.rate_limits)

Mental model: a ``trio.CapacityLimiter`` whose number of tokens changes with what the endpoint
says, in front of two token buckets (the endpoint's request and token budgets, see
:mod:`trio_designer._core._budget`). :class:`StaticLimiter` never changes its limit;
:class:`AdaptiveLimiter` runs the controller of :mod:`trio_designer._core._aimd` (429s that show
load cut it to what is in flight, sporadic ones change nothing; it grows back fast to levels that
worked and probes above them) with the latency signal of :mod:`trio_designer._core._latency`
(latency well above the unloaded baseline cuts it).

Semantics shared by both (and pinned by the contract tests in ``tests/test_limiter.py``):

* waiters are admitted **best request priority first**, FIFO among equal priorities (see
  "Priority admission" below); while anyone is parked, a newcomer never takes a slot directly:
  it joins the queue at its priority;
* a free slot is granted at the end of the scheduler batch in which it was requested, by a
  *grant round* (see "Grant rounds" below), so requests that arrive together are admitted by
  priority too; ``slot()`` therefore always checkpoints on entry; exiting never blocks;
* a cancelled waiter leaves no trace (``statistics().waiting`` drops back) and is never granted
  a slot;
* when the limit shrinks below the number of holders, the holders finish normally and new
  requests wait until enough of them have left;
* leaving ``slot()`` without a report (an exception, a cancellation) releases the slot with no
  signal; reporting twice raises ``RuntimeError``;
* **budgets**: a waiter is admitted only when the endpoint's budgets (configured ``rpm`` /
  ``tpm``, or read from its headers) can pay one request and its ``tokens``; the best waiter
  that cannot be paid holds back those behind it (priority is kept); answers' usage and
  headers correct the buckets, and a 429 whose headers say a budget is spent is refunded;
* a 429 closes admission of the **static** limiter until ``now + Retry-After`` (a missing or
  unusable ``Retry-After`` means its cooldown, 2 s); a later 429 extends the pause, never
  shortens it. The adaptive limiter never pauses: the rejected request waits on its own
  (``ModelHandle.chat``);
* the end of a pause or a budget's refill is not polled for: a sleeper task sleeps until the
  exact moment the best waiter may go and admits the waiters (a
  ``trio.lowlevel.spawn_system_task``, because a long-lived limiter owns no nursery; it exists
  only while someone waits for one).

Priority admission
------------------

The engine runs cells in critical-path order, but every cell that calls a model ends up parked
on that model's limiter, in whatever order trio happened to run the cell tasks (trio randomises
its run queue on purpose). With a FIFO queue the critical path is lost exactly where it matters:
cells of a short chain take slots that cells of the long chain needed first. So each request
carries a *priority key*, a tuple of ints, and parked requests are admitted smallest key first::

    set_request_priority((-column_priority, row_group, row))   # once, at the start of a cell task
    ...
    async with limiter.slot() as permit:                       # deep inside the model layer
        ...

*Why a context variable, not an argument of* ``slot()``: the request is made deep inside the
model layer (``ModelHandle.chat``, called from generator code that knows nothing about
scheduling), while only the engine knows the cell's priority. A :class:`contextvars.ContextVar`
carries it across those layers without widening every signature in between. trio runs every
task in its own copy of the context, taken from its spawner when it is spawned, so
:func:`set_request_priority` affects the current task and the tasks it spawns afterwards, never
its parent or siblings.

Rules: a smaller key is admitted sooner (tuples compare element by element, so ``(0, 5) <
(1, 0)``); equal keys keep their arrival order (a sequence number breaks ties); a request made
without a priority has the key ``()``, which sorts before every other key: a request from
outside the engine (a tool, a test) goes ahead of the cells rather than behind all of them.
(Tasks a cell task spawns inherit its key, so a custom column's own tasks keep the cell's
priority.) A newcomer never takes a free slot while anyone is parked, whatever its key: it
parks too, and the next grant goes to the best key in the queue, which may be the newcomer. (A
free slot with a queue exists only while a grant round is pending and in the instant between a
cooldown's end and the sleeper's run; the rule makes those grants follow key order like every
other grant.)

Grant rounds
------------

Parked waiters are only half of it. When the engine dispatches a burst of cells (the first 20
ready cells of a Deep row group, say) they reach ``slot()`` in the same scheduler batch, in
trio's random order, while slots are free: granting on the spot would hand the free slots to
whichever cells trio ran first. So a request that finds a free slot and an empty queue does
not take it: it parks like any other and schedules one *grant round*
(``TrioToken.run_sync_soon``), which runs after every task of the current batch has had its
turn and grants the free slots to the best keys in the queue. One round per batch, not per
request; the price is one scheduler round trip per uncontended request (microseconds; the
request itself takes milliseconds to minutes). Requests that arrive in later batches (say,
after a longer path through the LLM-wait handoff) compete in a later round: the order is exact
within a batch and best effort across batches.

Uncontended requests
--------------------

The grant round costs a scheduler round trip per request, and more than that for the first
request of a burst: it leaves only once every cell of the burst has built its request and
parked. When the caller can bound the number of tasks that may ask for a slot
(:meth:`~_LimiterBase.bound_contenders`; the async engine binds each endpoint's backlog, the
tasks dispatched to it and not finished) and that bound is within the limit, every contender
can hold a slot at once and the order of grants decides nothing: a request that finds a free
slot, an empty queue, no round pending and the budget able to pay takes the slot on the spot,
without a schedule point (it still raises if its scope was cancelled). A burst larger than the
limit — Deep's 20 ready cells for 16 slots, say, where the critical-path cells must go
first — goes through grant rounds as before. The async engine keeps a run's *first* wave
uncontended on purpose: until the first requests are out it dispatches to an endpoint no more
tasks than it has slots, best-ranked first, and only then the surplus, which parks and is
granted by rounds (``models/_backlog.py``, "The first wave"). Without that, the first request
of Dual-model's first wave left only after its 30 generator cells had built their requests.

Trade-offs. Strict priority can starve: a steady stream of better keys keeps a worse one parked.
That is the point for the engine's keys (the critical path first; every run dispatches a finite
number of cells, so everyone is admitted in the end), but a caller that needs fairness should
leave every request at the same key. Cost: every request parks, also when a slot is free (it
then waits for the grant round: one scheduler round trip, and ``statistics().waiting`` counts
it until the round runs); parking and granting are O(log n) heap operations on ``n`` parked
waiters; cancelling a waiter is O(1) (it is marked dead
and skipped when it reaches the top of the heap; dead entries are swept out when they outnumber
the live ones, so memory stays O(live waiters)).

Every limit change is logged at INFO on the ``trio_designer.models`` logger, e.g.
``model 'gen': limit 16 -> 10 (load: 3 429s in a row at 11 in flight)``, and passed to
``on_change``.
"""

from __future__ import annotations

import contextvars
import heapq
import logging
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Literal, Protocol, final

import attrs
import trio

from .._core._aimd import AimdController
from .._core._budget import EndpointBudget, RateLimits
from .._core._limits import DEFAULT_POLICY, Admission, LimitChange, LimiterPolicy

__all__ = [
    "AdaptiveLimiter",
    "LimiterStatistics",
    "ModelLimiter",
    "Permit",
    "StaticLimiter",
    "request_priority",
    "set_request_priority",
]

_logger = logging.getLogger("trio_designer.models")

_Outcome = Literal["success", "rate_limited", "failure", "abandoned"]

_request_priority: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar(
    "trio_designer_request_priority", default=()
)


def set_request_priority(key: tuple[int, ...]) -> None:
    """Set the priority of the current task's model requests: a smaller key is admitted sooner.

    Applies to every ``slot()`` the current task enters from now on, on every model limiter,
    and to the tasks it spawns afterwards (each trio task runs in its own copy of its spawner's
    context); never to its parent or siblings. Parked requests are admitted smallest key first,
    FIFO among equal keys; a task that never sets a priority has the key ``()``, which sorts
    first. The engine sets ``(-column_priority, row_group, row)`` at the start of each cell.

    Args:
      key: the priority key; tuples compare element by element.
    """
    _request_priority.set(key)


def request_priority() -> tuple[int, ...]:
    """The current task's request priority key (``()`` unless :func:`set_request_priority` set
    one in this task or in the task that spawned it)."""
    return _request_priority.get()


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
    """Seconds until the best waiting request may go, as far as pauses (the static limiter's,
    after a 429) and budgets go: 0 when nothing holds admission back but full slots."""
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
    requests_left: float | None = None
    """Requests the endpoint's request budget holds now, as far as we know (``None``: no
    budget known, from the config's ``rpm`` or the endpoint's headers)."""
    tokens_left: float | None = None
    """Tokens the endpoint's token budget holds now (``None``: no budget known)."""


class ModelLimiter(Protocol):
    """What the model layer needs from a limiter (both limiters here implement it)."""

    def slot(self, tokens: int = 0) -> AbstractAsyncContextManager[Permit]:
        """An async context manager that parks until a slot is free (and the endpoint's
        budgets can pay a request of about ``tokens`` tokens) and yields its permit."""
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

    __slots__ = ("_admission", "_limiter", "_released", "_ticket", "_tokens")

    def __init__(
        self, limiter: _LimiterBase, admission: Admission, tokens: int, ticket: int
    ) -> None:
        self._limiter = limiter
        self._admission = admission
        self._tokens = tokens  # the estimate the budget was charged
        self._ticket = ticket  # the budget's ticket of this request
        self._released = False

    @property
    def released(self) -> bool:
        """Whether the outcome was reported (or the slot was left without a report)."""
        return self._released

    @property
    def admitted_at(self) -> float:
        """The ``trio.current_time()`` at which the slot was granted."""
        return self._admission.admitted_at

    def success(
        self, *, tokens: int | None = None, rate_limits: RateLimits | None = None
    ) -> None:
        """The request succeeded.

        Args:
          tokens: the tokens its answer's usage reports (prompt + completion), which correct
            the token budget's charge; ``None`` when not reported.
          rate_limits: what the answer's headers said about the endpoint's budgets.

        Raises:
          RuntimeError: if this permit was already released.
        """
        self._settle(_Report("success", tokens_used=tokens, rate_limits=rate_limits))

    def rate_limited(
        self, retry_after: float | None, *, rate_limits: RateLimits | None = None
    ) -> None:
        """The endpoint answered 429.

        Args:
          retry_after: its ``Retry-After`` in seconds, if any (the static limiter pauses that
            long; the adaptive one leaves the wait to the request itself).
          rate_limits: what the 429's headers said about the endpoint's budgets: when they say
            a budget cannot pay this request, the 429 is the budget's (it is refunded, and the
            budget holds admissions back until it can pay), not load or noise.

        Raises:
          RuntimeError: if this permit was already released.
        """
        self._settle(_Report("rate_limited", retry_after=retry_after, rate_limits=rate_limits))

    def failure(self, *, rate_limits: RateLimits | None = None) -> None:
        """Another error (timeout, 5xx, connection error): release, no change to the limit.

        Raises:
          RuntimeError: if this permit was already released.
        """
        self._settle(_Report("failure", rate_limits=rate_limits))

    def _abandon(self) -> None:
        if not self._released:
            self._settle(_Report("abandoned"))

    def _settle(self, report: _Report) -> None:
        if self._released:
            raise RuntimeError(
                f"this permit of model limiter {self._limiter.name!r} was already released; "
                "report each request's outcome exactly once."
            )
        self._released = True
        self._limiter._settle(self, report)

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Permit of {self._limiter.name!r} admitted at {self.admitted_at}, {state}>"


@attrs.frozen
class _Report:
    """One outcome as a permit reports it to its limiter."""

    outcome: _Outcome
    retry_after: float | None = None
    tokens_used: int | None = None
    rate_limits: RateLimits | None = None


@final
class _Slot(AbstractAsyncContextManager[Permit]):
    """The context manager returned by ``slot()``: acquire on entry, abandon on exit."""

    def __init__(self, limiter: _LimiterBase, tokens: int) -> None:
        self._limiter = limiter
        self._tokens = tokens
        self._permit: Permit | None = None

    async def __aenter__(self) -> Permit:
        if self._permit is not None:
            raise RuntimeError(
                "a slot() context manager cannot be entered twice; call slot() again"
            )
        self._permit = await self._limiter._acquire(self._tokens)
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
    def can_admit(self, now: float) -> bool: ...
    def admit(self, now: float) -> Admission: ...
    def record_success(self, admission: Admission, now: float) -> LimitChange | None: ...
    def record_rate_limited(
        self, admission: Admission, now: float, *, spent_budget: bool = False
    ) -> LimitChange | None: ...
    def record_failure(self, admission: Admission, now: float) -> LimitChange | None: ...
    def record_abandoned(self, admission: Admission, now: float) -> LimitChange | None: ...


class _FixedLimit:
    """The static limiter's decision core: a fixed limit, pauses, counters."""

    def __init__(self, limit: int) -> None:
        self.limit = self.ceiling = limit
        self.in_flight = self.successes = self.failures = self.rate_limited = 0
        # Invariant: nothing is admitted while now < cooldown_until; it never moves backwards.
        self.cooldown_until = -math.inf
        self.baseline_latency: float | None = None
        self.recent_latency: float | None = None
        self.probing = False
        self._next_serial = 0

    def can_admit(self, now: float) -> bool:
        return self.in_flight < self.limit and now >= self.cooldown_until

    def admit(self, now: float) -> Admission:
        self.in_flight += 1
        self._next_serial += 1
        return Admission(serial=self._next_serial, admitted_at=now, rate_epoch=0, window=None)

    def record_success(self, admission: Admission, now: float) -> None:
        self.in_flight -= 1
        self.successes += 1

    def record_rate_limited(
        self, admission: Admission, now: float, *, spent_budget: bool = False
    ) -> None:
        self.in_flight -= 1
        self.rate_limited += 1

    def pause(self, seconds: float, now: float) -> None:
        """No admission for ``seconds`` from ``now`` (a later end wins; never shortened)."""
        self.cooldown_until = max(self.cooldown_until, now + seconds)

    def record_failure(self, admission: Admission, now: float) -> None:
        self.in_flight -= 1
        self.failures += 1

    def record_abandoned(self, admission: Admission, now: float) -> None:
        self.in_flight -= 1


@final
class _Waiter:
    """One parked ``slot()`` call: its task, then the admission it was granted."""

    __slots__ = ("grant", "task", "tokens")

    def __init__(self, task: trio.lowlevel.Task, tokens: int) -> None:
        self.task: trio.lowlevel.Task | None = task
        """The parked task; ``None`` once it was cancelled (the heap entry is then dead)."""
        self.tokens = tokens
        """The tokens its request will probably cost (what the token budget must hold)."""
        self.grant: tuple[Admission, int] | None = None
        """The admission and the budget's ticket, set together with the reschedule that
        grants the slot, never before."""


def _usable(seconds: float | None) -> float | None:
    """``seconds`` if it is a finite positive number, else ``None``."""
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


_COMPACT_AT_LEAST = 64
"""Dead heap entries are swept out only when there are more than this many (and more dead
entries than live ones), so sweeping is rare and amortised O(1) per cancellation."""


@final
class _WaiterQueue:
    """The parked waiters, best ``(key, seq)`` first; cancelled ones are deleted lazily.

    A heap of ``(key, seq, waiter)`` tuples: tuples compare in C, ``seq`` is unique so the
    waiter itself is never compared, and equal keys come out in arrival order.
    """

    __slots__ = ("_dead", "_heap", "_next_seq", "live")

    def __init__(self) -> None:
        # Invariants: ``live`` entries of _heap have a task, ``_dead`` have none (cancelled);
        # live + _dead == len(_heap); when live drops to 0 the heap is emptied.
        self._heap: list[tuple[tuple[int, ...], int, _Waiter]] = []
        self._next_seq = 0
        self._dead = 0
        self.live = 0

    @property
    def stored(self) -> int:
        """Heap entries, live or dead (for tests: dead entries must not pile up)."""
        return len(self._heap)

    def push(self, key: tuple[int, ...], waiter: _Waiter) -> None:
        self._next_seq += 1
        heapq.heappush(self._heap, (key, self._next_seq, waiter))
        self.live += 1

    def discard(self, waiter: _Waiter) -> None:
        """Forget a parked waiter (it was cancelled); its entry stays in the heap, dead."""
        waiter.task = None
        self.live -= 1
        self._dead += 1
        if not self.live:
            self._clear()
        elif self._dead > _COMPACT_AT_LEAST and self._dead > self.live:
            self._heap = [entry for entry in self._heap if entry[2].task is not None]
            heapq.heapify(self._heap)
            self._dead = 0

    def peek(self) -> _Waiter:
        """The best live waiter, left in place (dead entries on top are swept). Needs
        ``live > 0``."""
        while True:
            waiter = self._heap[0][2]
            if waiter.task is not None:
                return waiter
            heapq.heappop(self._heap)
            self._dead -= 1

    def pop(self) -> tuple[_Waiter, trio.lowlevel.Task]:
        """Remove and return the best live waiter and its task. Needs ``live > 0``."""
        while True:
            waiter = heapq.heappop(self._heap)[2]
            task = waiter.task
            if task is not None:
                self.live -= 1
                if not self.live:
                    self._clear()
                return waiter, task
            self._dead -= 1

    def _clear(self) -> None:
        self._heap.clear()
        self._dead = 0


class _LimiterBase:
    """The trio driver shared by both limiters: parking, priority handoff, budgets, the
    sleeper that admits when a pause ends or a budget can pay again."""

    def __init__(
        self,
        name: str,
        decisions: _Decisions,
        on_change: Callable[[LimitChange], None] | None = None,
        budget: EndpointBudget | None = None,
    ) -> None:
        self._name = name
        self._decisions = decisions
        self._on_change = on_change
        # The endpoint's request and token budgets: configured, or learnt from its headers.
        self._budget = budget if budget is not None else EndpointBudget()
        # Invariants: after every event, _queue.live > 0 implies that the best waiter cannot be
        # granted (not _decisions.can_admit(now), or the budget cannot pay its tokens yet),
        # except in the instant between a pause's end and the sleeper's run, and while a
        # grant round is pending (see _acquire) — a task parks only when no slot can be
        # granted, when others are parked already, or to wait for a grant round; every release,
        # every pause end and every budget refill grants free slots to parked tasks, best
        # (key, seq) first (a waiter the budget cannot pay yet holds back those behind it),
        # before anyone else can take them. A grant is made only by _wake_waiters, in one step
        # with the reschedule that wakes the task (waiter.grant, then reschedule), so a
        # granted task can no longer be cancelled out of its grant, and a cancelled waiter
        # (removed by its abort function) can never be granted.
        self._queue = _WaiterQueue()
        # Invariant: at most one sleeper task exists; while it sleeps, _cooldown_scope is its
        # cancel scope and the scope's deadline is when the best waiter may be admitted next
        # (a pause's end, or when the budget can pay it).
        self._sleeper_running = False
        self._cooldown_scope: trio.CancelScope | None = None
        # Whether a grant round (_grant_round) is scheduled with run_sync_soon and has not run.
        self._round_pending = False
        # An upper bound on the tasks that may ask this limiter for a slot, if a caller gave one
        # (bound_contenders); None: unknown, every request goes through a grant round.
        self._contenders: Callable[[], int] | None = None
        # Whether the "one request costs more than the whole token budget" warning was logged.
        self._warned_oversized = False

    @property
    def name(self) -> str:
        """The limiter's name, used in logs and statistics."""
        return self._name

    @property
    def budget(self) -> EndpointBudget:
        """The endpoint's request and token budgets (shared with the model handles, which
        estimate tokens with it)."""
        return self._budget

    def slot(self, tokens: int = 0) -> AbstractAsyncContextManager[Permit]:
        """Hold one of the endpoint's slots for one request of about ``tokens`` tokens.

        Entering parks until a slot is free, no pause runs and the endpoint's budgets can pay
        the request (one request, ``tokens`` tokens), and is always a checkpoint — but for an
        uncontended request (:meth:`bound_contenders`), which only checks for cancellation. Parked
        requests are admitted by the current task's request priority (see
        :func:`set_request_priority`), smallest key first, FIFO among equal keys. Exiting
        releases the slot if no outcome was reported. Cancellation-safe: a waiter cancelled
        while parked leaves nothing behind.
        """
        return _Slot(self, tokens)

    def statistics(self) -> LimiterStatistics:
        """A snapshot; outside a trio run ``cooldown_remaining`` is reported as 0."""
        d = self._decisions
        budget = self._budget
        try:
            now = trio.current_time()
        except RuntimeError:  # not inside trio.run
            now = None
        cooldown = 0.0 if now is None else max(0.0, self._resume_at(now) - now)
        at = 0.0 if now is None else now
        return LimiterStatistics(
            name=self._name,
            limit=d.limit,
            ceiling=d.ceiling,
            in_flight=d.in_flight,
            waiting=self._queue.live,
            cooldown_remaining=cooldown,
            rate_limited=d.rate_limited,
            successes=d.successes,
            failures=d.failures,
            baseline_latency=d.baseline_latency,
            recent_latency=d.recent_latency,
            probing=d.probing,
            requests_left=None if budget.requests is None else budget.requests.level(at),
            tokens_left=None if budget.tokens is None else budget.tokens.level(at),
        )

    async def _acquire(self, tokens: int) -> Permit:
        await trio.lowlevel.checkpoint_if_cancelled()
        now = trio.current_time()
        bucket = self._budget.tokens
        if bucket is not None and tokens > bucket.limit and not self._warned_oversized:
            self._warned_oversized = True
            _logger.warning(
                "model '%s': one request is estimated at %d tokens, more than the whole token "
                "budget of %d per %g s (tpm, or the x-ratelimit headers): each such request "
                "waits for the budget to refill completely and goes alone, so the run crawls "
                "(an endpoint that enforces the budget may refuse it outright). Raise tpm, or "
                "lower max_tokens or the prompt's length",
                self._name,
                tokens,
                bucket.limit,
                bucket.window,
            )
        if not self._queue.live and not self._round_pending and self._uncontended(now, tokens):
            # Nobody to lose a slot to (see "Uncontended requests"): granted on the spot.
            return Permit(self, self._decisions.admit(now), tokens, self._budget.take(tokens, now))
        if not self._queue.live and self._decisions.can_admit(now) and not self._round_pending:
            # A free slot is not granted on the spot: requests that become runnable together
            # (a burst of cells dispatched in one go) reach this point in the order trio happens
            # to run them, which is random. They all park, and one grant round, run once every
            # task of this scheduler batch has had its turn, admits them by key.
            self._round_pending = True
            trio.lowlevel.current_trio_token().run_sync_soon(self._grant_round)
        admission, ticket = await self._park(now, tokens)
        return Permit(self, admission, tokens, ticket)

    def bound_contenders(self, count: Callable[[], int] | None) -> None:
        """Tell the limiter how many tasks, at most, may be asking it for a slot or holding
        one right now (``count()``, read at each request), or forget it (``None``).

        While that bound is within the limit, every contender can hold a slot at once, so the
        order of grants decides nothing: a request then takes its slot on the spot instead of
        waiting for a grant round (see "Uncontended requests" in the module docstring). The
        bound must never be too small — a task missing from it could lose a slot to a worse
        key — and may be too large (it only costs the grant round). The async engine binds each
        endpoint's backlog (tasks dispatched to it and not finished) for the length of a run.
        """
        self._contenders = count

    def _uncontended(self, now: float, tokens: int) -> bool:
        """Whether a request may be granted on the spot: every possible contender fits within
        the limit (no baseline probe holding admissions lower), a slot is free and the budget
        can pay it now."""
        count = self._contenders
        d = self._decisions
        return (
            count is not None
            and not d.probing
            and count() <= d.limit
            and d.can_admit(now)
            and self._budget.wait(tokens, now) <= 0
        )

    def _grant_round(self) -> None:
        self._round_pending = False
        self._wake_waiters()

    async def _park(self, now: float, tokens: int) -> tuple[Admission, int]:
        """Wait in the queue at the current task's priority until _wake_waiters grants a slot."""
        self._ensure_sleeper(now)  # first: nothing may fail once we are in the queue
        waiter = _Waiter(trio.lowlevel.current_task(), tokens)
        queue = self._queue
        queue.push(_request_priority.get(), waiter)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            # Called only while we are still parked, i.e. not granted: forget us entirely.
            queue.discard(waiter)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        grant = waiter.grant
        assert grant is not None, "a waiter is rescheduled only with its grant"
        return grant

    def _after_429(self, retry_after: float | None, now: float) -> None:
        """What else a 429 does to admission (the static limiter pauses; see there)."""

    def _settle(self, permit: Permit, report: _Report) -> None:
        now = trio.current_time()
        d, budget = self._decisions, self._budget
        admission, outcome = permit._admission, report.outcome
        change: LimitChange | None
        ticket = permit._ticket
        # Our own bookkeeping first (settle, refund, release), then the server's reading.
        if outcome == "success":
            budget.settle(ticket, report.tokens_used, now)
            change = d.record_success(admission, now)
        elif outcome == "rate_limited":
            spent = budget.spent(report.rate_limits, permit._tokens)
            if spent:
                budget.refund(ticket, now)  # a refused request costs nothing
            else:
                budget.release(ticket)
            change = d.record_rate_limited(admission, now, spent_budget=spent)
            self._after_429(report.retry_after, now)
        elif outcome == "failure":
            budget.release(ticket)
            change = d.record_failure(admission, now)
        else:
            budget.release(ticket)
            change = d.record_abandoned(admission, now)
        budget.observe(report.rate_limits, now, ticket)
        self._wake_waiters()
        if change is not None:
            self._report(change)

    def _wake_waiters(self) -> None:
        queue = self._queue
        if not queue.live:
            return
        now = trio.current_time()
        decisions, budget = self._decisions, self._budget
        while queue.live and decisions.can_admit(now):
            if budget.wait(queue.peek().tokens, now) > 0:
                break  # the best waiter waits for the budget, and those behind it too
            waiter, task = queue.pop()
            admission = decisions.admit(now)
            waiter.grant = (admission, budget.take(waiter.tokens, now))
            trio.lowlevel.reschedule(task)
        if queue.live:
            self._ensure_sleeper(now)

    def _resume_at(self, now: float) -> float:
        """When the best parked waiter may be admitted, as far as pauses and budgets go (a
        free slot is another matter: a release wakes the waiters)."""
        until = self._decisions.cooldown_until
        if self._queue.live:
            wait = self._budget.wait(self._queue.peek().tokens, now)
            if wait > 0:
                # Never "now" itself: a positive wait must leave a deadline to wake up at.
                until = max(until, now + wait, math.nextafter(now, math.inf))
        return until

    def _ensure_sleeper(self, now: float) -> None:
        """Make sure someone admits the parked waiters when a pause ends or the budget can pay
        the best of them."""
        until = self._resume_at(now)
        if until <= now:
            return
        if self._cooldown_scope is not None:
            self._cooldown_scope.deadline = until  # a later 429 or another waiter moved it
        elif not self._sleeper_running:
            self._sleeper_running = True
            trio.lowlevel.spawn_system_task(
                self._sleep_through_cooldown, name=f"cooldown of model limiter {self._name!r}"
            )

    async def _sleep_through_cooldown(self) -> None:
        try:
            # One sleep until then; _ensure_sleeper moves the deadline when a 429 extends a
            # pause or the best waiter changes meanwhile, so nothing polls.
            with trio.CancelScope(deadline=self._resume_at(trio.current_time())) as scope:
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
    """A fixed limit: at most ``ceiling`` requests in flight, and a pause after each 429.

    The limit never changes. A 429 closes admission until ``Retry-After`` seconds later
    (``cooldown`` seconds when the endpoint sent none, or an unusable one); a later 429 extends
    the pause, never shortens it. Without the pause, a static limit above an endpoint's real
    capacity turns into a 429 storm. (The adaptive limiter pauses nothing: it tells load from
    noise instead, see ``docs/adaptive-limits.md``.) Budgets (``rpm``/``tpm``, or the endpoint's
    headers) hold admissions back exactly as in the adaptive limiter. Use it where the limit
    is known and as the baseline the adaptive limiter is compared with.

    Args:
      name: the endpoint's name, for logs and statistics.
      ceiling: the fixed limit.
      cooldown: seconds without admissions after a 429 that carried no usable ``Retry-After``
        (2 s by default).
      budget: the endpoint's request and token budgets (by default, learnt from its headers).

    Raises:
      ValueError: if ``ceiling < 1``, or ``cooldown`` is negative or not finite.
    """

    def __init__(
        self,
        name: str,
        ceiling: int,
        *,
        cooldown: float = DEFAULT_POLICY.cooldown,
        budget: EndpointBudget | None = None,
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"model limiter {name!r} needs a ceiling of at least 1, got {ceiling}")
        if not (math.isfinite(cooldown) and cooldown >= 0):
            raise ValueError(
                f"model limiter {name!r} needs a finite cooldown of at least 0 seconds, "
                f"got {cooldown}"
            )
        self._cooldown = cooldown
        self._fixed = _FixedLimit(ceiling)
        super().__init__(name, self._fixed, budget=budget)

    def _after_429(self, retry_after: float | None, now: float) -> None:
        """Every 429 pauses the endpoint for its ``Retry-After`` (``cooldown`` when unusable)."""
        wait = _usable(retry_after)
        self._fixed.pause(self._cooldown if wait is None else wait, now)


@final
class AdaptiveLimiter(_LimiterBase):
    """A limit that adapts to what the endpoint says (AIMD on 429s and on latency).

    Starts at ``ceiling``. 429s that show load (runs of them on a slot, or a cliff in their
    rate by concurrency) cut the limit to what is in flight; sporadic ones change nothing (the
    request waits out its own delay); latency well above the endpoint's unloaded baseline cuts
    it to the concurrency the endpoint really serves; it grows back fast to levels that worked
    and probes slowly above them. Budgets (``rpm``/``tpm``, or the endpoint's headers) hold
    admissions back until they can pay. See ``docs/adaptive-limits.md``,
    :mod:`trio_designer._core._aimd` and :mod:`trio_designer._core._latency`.

    Args:
      name: the endpoint's name, for logs and statistics.
      ceiling: the largest limit, and the first (``max_parallel_requests``).
      policy: the tunables.
      on_change: called with every :class:`LimitChange`, after it is logged, in the task that
        reported the outcome; an exception from it propagates out of that report (the change
        itself has already been applied).
      budget: the endpoint's request and token budgets (by default, learnt from its headers).

    Raises:
      ValueError: if ``ceiling < 1``.
    """

    def __init__(
        self,
        name: str,
        ceiling: int,
        *,
        policy: LimiterPolicy = DEFAULT_POLICY,
        on_change: Callable[[LimitChange], None] | None = None,
        budget: EndpointBudget | None = None,
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"model limiter {name!r} needs a ceiling of at least 1, got {ceiling}")
        self._controller = AimdController(ceiling, policy)
        super().__init__(name, self._controller, on_change, budget)

    @property
    def policy(self) -> LimiterPolicy:
        return self._controller.policy
