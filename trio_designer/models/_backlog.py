"""Layer 3, dispatch side: how many tasks of one model endpoint may be dispatched at once.

Layer 3 of the design is "how fast does each endpoint accept work". Its main part is the
per-endpoint limiter (:mod:`trio_designer.models._limiter`): it decides how many *requests* an
endpoint has in flight and parks the rest. This module is its second, smaller part: it decides
how many *tasks* calling an endpoint the dispatcher may have started and not yet finished (held
in a slot, parked on the endpoint's limiter, or waiting for its answer). The cap is
``BACKLOG_FACTOR x max_parallel_requests`` per endpoint: enough parked tasks to refill every
request slot the moment it frees, no more.

Why a second throttle: without it, the cells of the highest-priority model (a generator, say)
fill every submission and LLM-wait slot while parked on their own limiter, and a second model
(its judge) idles for lack of a slot although its endpoint has capacity. With the cap, the
dispatcher skips a saturated endpoint's columns and starts other work; when a task of that
endpoint ends, the dispatcher is woken to look again.

Which columns it applies to: LLM-bound columns that call exactly one model (every LLM column; a
custom ``llm_bound`` column with one entry in ``models``). A column calling several models (or
none we know) is never held back: there is no single endpoint to charge it to.

**Tasks resting after a 429 do not count.** A request answered 429 waits out its own delay
in its task (``ModelHandle.chat`` retries it in place) holding no slot and parked nowhere: it
cannot refill a slot, so it must not hold a place either. At 30 % sporadic 429s with a 1 s
``Retry-After`` and 200 ms answers, about as many tasks rest at any moment as the cap allows
in all (16 slots: ~34 resting against a cap of 32); counted, they starved the endpoint they
were waiting for (2.0x the 429-free run in virtual time instead of 1.5x). The registry keeps a
:class:`RestingTasks` ledger, the model handles note every rest in it, and the backlog counts
``dispatched - resting`` against the cap. The ledger reaches the backlog through a context
variable the registry sets while it is open (:func:`resting_tasks`), as the request priority
reaches the limiter: the engine builds the backlog inside the registry's ``async with``, so
no layer in between has to pass it along.

**The first wave: no more than can hold a slot.** A backlog built with ``first_wave=True``
(the async engine's, when the run has a model registry) starts *narrow*: each endpoint's cap is
what its requests can hold at once (``max_parallel_requests x tasks_per_request``, its
:attr:`BacklogStatistics.cap` until then), and :meth:`EndpointBacklog.widen` — called once the
first wave of requests is out and the run waits for answers
(``ModelRegistry.first_wave_out``) — restores the full cap and wakes the dispatchers, which
then start the cells the first wave had no slot for. Why: while more tasks are dispatched to an
endpoint than it has slots, its limiter runs *grant rounds* (``models/_limiter.py``), and the
first request of a burst leaves only once every dispatched cell built its request: Dual-model's
30 generator cells for 16 slots, Wide's 50, Deep's 20. Narrow, every dispatched task can hold a
slot at once, so the limiter is uncontended ("Uncontended requests" there: each request takes
its slot on the spot, the first one after one cell's work, not thirty), and the surplus
renders and builds its requests while the run is idle, waiting for the first answers, instead
of on the first wave's path; it then parks and is granted by priority as before.

Invariant (critical path first, kept): the dispatcher pops ready cells best first, so the
narrow first wave is the best ``limit`` ready cells of each row group, and every later cell
parks on the limiter and is admitted by its key as before. The one deviation: across row
groups in flight, the narrow places go to whichever dispatcher runs first (in practice the
oldest row group, which dispatches its burst before the next one is admitted), not strictly
by key. Checked by ``tests/test_backlog.py::test_the_first_wave_is_narrow_until_widened`` and
``tests/test_engine_first_wave.py``.

Pure bookkeeping (no trio, no I/O): the async engine calls :meth:`EndpointBacklog.eligible`
when it picks the next task, :meth:`~EndpointBacklog.enter` when it starts one and
:meth:`~EndpointBacklog.exit` when it ends.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import attrs

from ..config import ModelConfig
from ..config._models import endpoint_name

__all__ = [
    "BACKLOG_FACTOR",
    "BacklogStatistics",
    "EndpointBacklog",
    "RestingTasks",
    "resting_tasks",
    "use_resting_tasks",
]

#: Dispatched tasks allowed per unit of an endpoint's ``max_parallel_requests``.
BACKLOG_FACTOR = 2


@attrs.frozen
class BacklogStatistics:
    """One endpoint's backlog: tasks dispatched and not finished, against its cap."""

    dispatched: int
    """Tasks of this endpoint dispatched now (running, parked on the limiter, or waiting)."""
    cap: int
    """The most that may be dispatched at once (``BACKLOG_FACTOR x max_parallel_requests``;
    ``max_parallel_requests`` while a first-wave backlog is narrow)."""
    peak: int
    """The most ever dispatched at once, resting tasks left out; never above ``cap``."""
    resting: int = 0
    """Of ``dispatched``, tasks waiting out a 429 in place (they hold no place)."""


class RestingTasks:
    """How many tasks of each endpoint are waiting out a 429 in place, right now.

    Owned by the model registry (one per run); :meth:`rest` is entered by ``ModelHandle.chat``
    around each wait. Listeners (the backlogs of the run) are called with the endpoint's name
    whenever a task starts resting, since that may free a place at a saturated endpoint.
    """

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._listeners: set[Callable[[str], None]] = set()

    def count(self, endpoint: str) -> int:
        """Tasks of ``endpoint`` resting now."""
        return self._count.get(endpoint, 0)

    @contextmanager
    def rest(self, endpoint: str) -> Iterator[None]:
        """Count the current task as resting at ``endpoint`` for the block."""
        self._count[endpoint] = self._count.get(endpoint, 0) + 1
        for listener in list(self._listeners):
            listener(endpoint)
        try:
            yield
        finally:
            self._count[endpoint] -= 1

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(endpoint)`` whenever a task of ``endpoint`` starts resting."""
        self._listeners.add(listener)

    def unsubscribe(self, listener: Callable[[str], None]) -> None:
        """Stop calling ``listener`` (no-op if it was not subscribed)."""
        self._listeners.discard(listener)


_resting: contextvars.ContextVar[RestingTasks | None] = contextvars.ContextVar(
    "trio_designer_resting_tasks", default=None
)


def resting_tasks() -> RestingTasks | None:
    """The ledger of the model registry open in this task (or the task that spawned it)."""
    return _resting.get()


@contextmanager
def use_resting_tasks(ledger: RestingTasks) -> Iterator[None]:
    """Make ``ledger`` the current task's :func:`resting_tasks` for the block."""
    token = _resting.set(ledger)
    try:
        yield
    finally:
        _resting.reset(token)


class EndpointBacklog:
    """Per-endpoint caps on dispatched tasks (see the module docstring).

    Invariant: for every endpoint ``e``, ``0 <= dispatched[e]`` and, at every dispatch,
    ``dispatched[e] - resting[e] <= cap[e]``: :meth:`enter` is called only for a column
    :meth:`eligible` accepted, with no checkpoint in between, and every :meth:`enter` is matched
    by exactly one :meth:`exit`. (Tasks that stop resting may take ``dispatched - resting``
    above the cap for a while; nothing more is dispatched then.) Checked by
    ``tests/test_backlog.py::test_the_cap_holds_and_every_place_comes_back`` and
    ``::test_resting_tasks_hold_no_place``; what it is for by
    ``tests/test_adaptive_e2e.py::test_a_saturated_model_never_starves_another``.

    Args:
      endpoint_of: every column -> the endpoint its tasks are charged to, or ``None``.
      caps: endpoint -> the most tasks it may have dispatched at once (``>= 1``).
      resting: the ledger of tasks resting after a 429, if any.
      narrow: endpoint -> its cap until :meth:`widen` (at most its cap; an endpoint not
        listed has its cap from the start).

    Raises:
      ValueError: a cap below 1, or a column charged to an endpoint without a cap.
    """

    def __init__(
        self,
        endpoint_of: Mapping[str, str | None],
        caps: Mapping[str, int],
        *,
        resting: RestingTasks | None = None,
        uncounted: frozenset[str] = frozenset(),
        narrow: Mapping[str, int] | None = None,
    ) -> None:
        for endpoint, cap in (*caps.items(), *(narrow or {}).items()):
            if cap < 1:
                raise ValueError(f"endpoint {endpoint!r}: a backlog cap must be >= 1, got {cap}")
        unknown = {e for e in endpoint_of.values() if e is not None and e not in caps}
        if unknown:
            raise ValueError(f"endpoints without a backlog cap: {sorted(unknown)}")
        self._endpoint_of = dict(endpoint_of)
        self._uncounted = uncounted
        self._full_cap = dict(caps)
        self._cap = dict(caps)
        if narrow:
            self._cap.update({e: min(cap, caps[e]) for e, cap in narrow.items() if e in caps})
        self._narrowed = self._cap != self._full_cap
        self._on_dispatch: Callable[[], None] | None = None
        self._dispatched = dict.fromkeys(caps, 0)
        self._peak = dict.fromkeys(caps, 0)
        self._listeners: set[Callable[[], None]] = set()
        self._resting = resting if resting is not None else RestingTasks()
        self._resting_count = self._resting._count  # what RestingTasks.count reads
        self._resting.subscribe(self._started_resting)

    @classmethod
    def for_columns(
        cls,
        column_models: Mapping[str, Sequence[ModelConfig]],
        tasks_per_request: Mapping[str, int] | None = None,
        *,
        first_wave: bool = False,
    ) -> EndpointBacklog:
        """The backlog of a run, counting the resting tasks of the registry open here
        (:func:`resting_tasks`).

        Args:
          column_models: every column -> the models its tasks wait on (empty for a column that
            waits on no model: samplers, expressions, custom columns without ``llm_bound``).
          tasks_per_request: column -> how many of its tasks share one request (an embedding
            column's ``batch_size``); 1 for a column not listed.

        A column that waits on exactly one model is charged to that model's endpoint; the cap
        of an endpoint is ``BACKLOG_FACTOR x`` the smallest ``max_parallel_requests x
        tasks_per_request`` among the columns charged to it: enough parked tasks to fill every
        request slot with full batches. (An endpoint that also serves a column of single
        requests keeps the smaller cap, so its batches fill less.) With ``first_wave``, each
        endpoint starts narrow, at ``1 / BACKLOG_FACTOR`` of that (what its requests can hold
        at once), until :meth:`widen` (see the module docstring).
        """
        shares = tasks_per_request or {}
        endpoint_of: dict[str, str | None] = {}
        caps: dict[str, int] = {}
        uncounted: set[str] = set()
        for column, models in column_models.items():
            if len(models) != 1:
                endpoint_of[column] = None
                uncounted.update(endpoint_name(m.provider, m.model) for m in models)
                continue
            (model,) = models
            endpoint = endpoint_name(model.provider, model.model)
            endpoint_of[column] = endpoint
            cap = BACKLOG_FACTOR * model.max_parallel_requests * max(1, shares.get(column, 1))
            caps[endpoint] = min(caps.get(endpoint, cap), cap)
        narrow = {e: cap // BACKLOG_FACTOR for e, cap in caps.items()} if first_wave else None
        return cls(
            endpoint_of,
            caps,
            resting=resting_tasks(),
            uncounted=frozenset(uncounted),
            narrow=narrow,
        )

    @property
    def narrowed(self) -> bool:
        """Whether some endpoint's cap is still its first wave's (until :meth:`widen`)."""
        return self._narrowed

    def when_dispatched(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once, at the next :meth:`enter` of a task charged to an endpoint."""
        self._on_dispatch = fn

    def widen(self) -> None:
        """Give every endpoint its full cap (the first wave is out, see the module
        docstring) and wake the dispatchers, which may now start more. Idempotent."""
        if not self._narrowed:
            return
        self._narrowed = False
        self._cap = dict(self._full_cap)
        self._wake()

    def counts_every_task_of(self, endpoint: str) -> bool:
        """Whether every task that may call ``endpoint`` is one this backlog counts (no column
        calling several models, one of them this endpoint's, is dispatched uncounted)."""
        return endpoint in self._cap and endpoint not in self._uncounted

    def tasks_of(self, endpoint: str) -> int:
        """Tasks of ``endpoint`` dispatched and not finished, resting ones included: an upper
        bound on the tasks that may ask its limiter for a slot (see
        ``models/_limiter.py``, "Uncontended requests")."""
        return self._dispatched[endpoint]

    def eligible(self, column: str) -> bool:
        """Whether a task of ``column`` may be dispatched now (its endpoint is not saturated).

        Called for every candidate column each time the dispatcher picks a task: keep it cheap.
        """
        endpoint = self._endpoint_of[column]
        if endpoint is None:
            return True
        # self._holding(endpoint), inlined: asked several times per dispatched task.
        held = self._dispatched[endpoint] - self._resting_count.get(endpoint, 0)
        return held < self._cap[endpoint]

    def _holding(self, endpoint: str) -> int:
        """Dispatched tasks of ``endpoint`` that hold a place (resting ones do not)."""
        return self._dispatched[endpoint] - self._resting.count(endpoint)

    def enter(self, column: str) -> None:
        """A task of ``column`` was dispatched (``eligible(column)`` was true just before)."""
        endpoint = self._endpoint_of[column]
        if endpoint is None:
            return
        assert self._holding(endpoint) < self._cap[endpoint], f"{endpoint}: backlog above its cap"
        self._dispatched[endpoint] += 1
        if self._on_dispatch is not None:
            fn, self._on_dispatch = self._on_dispatch, None
            fn()
        holding = self._holding(endpoint)
        if holding > self._peak[endpoint]:
            self._peak[endpoint] = holding

    def exit(self, column: str) -> None:
        """A task of ``column`` ended (or moved on to a column of no endpoint). When this frees
        a place at a saturated endpoint, every listener is called."""
        endpoint = self._endpoint_of[column]
        if endpoint is None:
            return
        self._dispatched[endpoint] -= 1
        if self._holding(endpoint) == self._cap[endpoint] - 1:
            self._wake()

    def _started_resting(self, endpoint: str) -> None:
        """A task of ``endpoint`` started waiting out a 429: a place frees if it was full."""
        if endpoint in self._cap and self._holding(endpoint) == self._cap[endpoint] - 1:
            self._wake()

    def _wake(self) -> None:
        for wake in list(self._listeners):
            wake()

    def subscribe(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` whenever a saturated endpoint frees a place (a dispatcher that
        skipped that endpoint's columns may now start one)."""
        self._listeners.add(wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        """Stop calling ``wake`` (no-op if it was not subscribed)."""
        self._listeners.discard(wake)

    def statistics(self) -> dict[str, BacklogStatistics]:
        """Endpoint -> its backlog now."""
        return {
            endpoint: BacklogStatistics(
                dispatched=self._dispatched[endpoint],
                cap=self._cap[endpoint],
                peak=self._peak[endpoint],
                resting=self._resting.count(endpoint),
            )
            for endpoint in self._cap
        }
