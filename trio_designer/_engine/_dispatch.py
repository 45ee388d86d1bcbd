"""Layer 1: dependency dispatch, and the one-way submission -> LLM-wait handoff.

Each admitted row group gets a :class:`RowGroupWorker`. It loops "take a submission slot, then
pop the best ready task" — slot first, so the task chosen is the best one *at the moment a slot
frees* (never a stale snapshot: reference bug #504). Ready tasks come from the pure
:class:`~trio_designer._core._tracker.CompletionTracker`; "best" is the tracker's order
(critical path first, then row). The worker skips columns whose model endpoint already has its
full backlog (:class:`~trio_designer.models._backlog.EndpointBacklog`, layer 3's dispatch side);
until a run's first wave of requests is out that backlog is *narrow* (no more tasks per endpoint
than it has slots, so the first wave's requests take their slots on the spot, best-ranked cells
first), then the engine widens it (``AsyncEngine._widen_after_first_wave``).

Task slots (:class:`TaskSlots`): the dispatcher takes a *submission* slot for every task it
starts, so at most ``max_submitted_tasks`` tasks run at once. A task that is about to wait on a
model endpoint moves to the (larger) *LLM-wait* pool: it acquires an LLM-wait slot and then
gives its submission slot back, so the dispatcher can start more work while it waits — tasks
parked on a slow or rate-limited model never stall dispatch. The move is one way: a task never
goes back to the submission pool. Non-LLM tasks keep their submission slot to the end.

A task does not always end with its cell (``RowGroupWorker._continuation``): one holding a
submission slot may go on with the next ready non-LLM cell, and one that just finished an LLM
cell may *pass its LLM-wait slot on* to the next ready LLM cell — the one the dispatcher would
pick at that moment — when that changes no decision of either pool (nobody parked for either,
a submission slot free): the row's next request then leaves without the dispatcher's rounds
(wake, spawn, handoff) in between.

The handoff has one owner. The worker builds it for each task (``RowGroupWorker._run_task``)
and passes it to :class:`~trio_designer._engine._cells.CellRunner`, which awaits it right
before each LLM-bound generator is called: the first moves the slot, later ones (a cell the
slot was passed on to) find it held and return at once. Generators never see it.

Both pools are ``trio.CapacityLimiter``; the borrower is the task's own :class:`SlotToken`
(``acquire_on_behalf_of`` / ``release_on_behalf_of``), because the dispatcher acquires the
submission slot on the task's behalf before the task exists, and the task releases it.

Failure semantics:

* a retryable error defers the task (the run's :class:`~trio_designer._core._retry.RetryPolicy`
  says for how long, and how often); when the row group stalls (only deferred work left) a
  salvage round re-offers it after its backoff; a task that exhausts its budget drops its row;
* a non-retryable error drops the row: every in-flight sibling cell of the row is cancelled
  through its cancel scope, and no downstream cell of the row ever starts (the tracker never
  offers it); a failing full-column task drops its whole row group;
* a sustained error rate cancels ``RunState.run_scope``: dispatch stops, in-flight cells are
  cancelled, row groups that already finished are written (checkpoints are shielded).

Invariants (each a named check in ``property_tests/test_engine_scenarios.py``):

* a cell starts only after its row's upstream cells completed (``check_upstream_before_start``);
* after a row is dropped none of its cells starts and its in-flight cells end cancelled
  (``check_dropped_rows_stop``); no cell succeeds twice (``check_no_double_success``); once
  early shutdown is declared no cell starts (``check_nothing_starts_after_shutdown``);
* slots: a token holds at most one slot at any time, and while it waits for an LLM-wait slot it
  still holds its submission slot (acquire, then release: never zero, never two for long), so
  occupancy never exceeds either pool (``check_limits_respected``); ``TaskSlots.release``
  returns whatever the token holds, exactly once, so after a run — also a cancelled one — both
  pools have every token back (``check_tokens_returned``);
* the pass-on: a running LLM cell holds an LLM-wait slot and a running non-LLM cell a
  submission slot, a task that ran an LLM cell runs no non-LLM cell after it
  (``check_slots_held_by_running_cells``); an LLM-wait slot is passed on only while nobody is
  parked for either pool and a submission slot is free (``check_passed_on_only_when_free``).
"""

from __future__ import annotations

from typing import Literal

import attrs
import trio

from .._core._tracker import CompletionTracker, Task
from .._observe import TaskStatus
from ..models._backlog import EndpointBacklog
from ..models._limiter import set_request_priority
from . import _replay
from ._cells import CellRunner, Handoff
from ._replay import replay_column
from ._state import RowGroupPlan, RunState

#: At most this many inline cells run back to back before the dispatcher checkpoints.
INLINE_BATCH = 128
#: At most this many cells run one after the other in one task (see ``RowGroupWorker._run_task``).
CELLS_PER_TASK = 64
#: The dispatcher checkpoints after this many task spawns in a row (slots free at once do not
#: checkpoint, see ``TaskSlots.acquire_submission``).
SPAWNS_PER_CHECKPOINT = 64


@attrs.define(eq=False)
class SlotToken:
    """The borrower identity of one task, and which pool it currently holds a slot of."""

    holds: Literal["none", "submission", "llm_wait"] = "none"


@attrs.frozen
class SlotStatistics:
    """Occupancy of the two pools."""

    submission_borrowed: int
    """Submission slots held now."""
    submission_total: int
    """Size of the submission pool."""
    llm_wait_borrowed: int
    """LLM-wait slots held now."""
    llm_wait_total: int
    """Size of the LLM-wait pool."""
    peak_submission: int
    """Most submission slots ever held at once."""
    peak_llm_wait: int
    """Most LLM-wait slots ever held at once."""
    handoffs: int
    """Tasks that moved from the submission pool to the LLM-wait pool."""
    passed_on: int = 0
    """LLM-wait slots passed on by a task from the LLM cell it finished to the next one
    (:meth:`TaskSlots.may_pass_on_llm_wait`), instead of being released and taken again."""
    submission_waiting: int = 0
    """Tasks parked for a submission slot now."""
    llm_wait_waiting: int = 0
    """Tasks parked for an LLM-wait slot now (holding their submission slot)."""


class TaskSlots:
    """The submission pool, the LLM-wait pool, and the one-way handoff between them (see the
    module docstring for the why and the invariants).

    Args:
      max_submitted: size of the submission pool (``RunConfig.max_submitted_tasks``).
      max_llm_wait: size of the LLM-wait pool (``RunConfig.max_llm_wait_tasks``).
    """

    def __init__(self, max_submitted: int, max_llm_wait: int) -> None:
        self._submission = trio.CapacityLimiter(max_submitted)
        self._llm_wait = trio.CapacityLimiter(max_llm_wait)
        self._peak_submission = 0
        self._peak_llm_wait = 0
        self._handoffs = 0
        # Tasks parked in acquire_submission right now (the slow path only).
        self._submission_waiters = 0
        # Tasks parked in handoff_to_llm_wait right now (the slow path only).
        self._llm_wait_waiters = 0
        self._passed_on = 0

    @property
    def submission_contended(self) -> bool:
        """Whether someone is parked waiting for a submission slot (a dispatcher, usually)."""
        return self._submission_waiters > 0

    async def acquire_submission(self, token: SlotToken) -> None:
        """Take a submission slot on behalf of ``token``, parking until one is free.

        Unlike trio's own primitives this does *not* checkpoint when a slot is free at once:
        the dispatcher calls it in a loop and yields when it runs out of ready work (or slots),
        so a burst of ready cells is dispatched in one go instead of one scheduler round trip
        per cell.
        """
        assert token.holds == "none", token
        try:
            self._submission.acquire_on_behalf_of_nowait(token)
        except trio.WouldBlock:
            self._submission_waiters += 1
            try:
                await self._submission.acquire_on_behalf_of(token)
            finally:
                self._submission_waiters -= 1
        token.holds = "submission"
        self._peak_submission = max(self._peak_submission, self._submission.borrowed_tokens)

    async def handoff_to_llm_wait(self, token: SlotToken) -> None:
        """Move ``token`` from the submission pool to the LLM-wait pool. Idempotent.

        Parks (still holding the submission slot) until an LLM-wait slot is free; if cancelled
        while parked, the token keeps its submission slot and ``release`` returns it.

        Like :meth:`acquire_submission`, this does *not* yield to the scheduler when an LLM-wait
        slot is free at once (it still raises if the task's scope was cancelled): the handoff
        sits on the path from a cell's dispatch to its request, and a scheduler round trip
        there made every request of a wave wait behind the whole wave's work of that batch
        (``benches/small_runs_chain.py``: "dispatched -> generator called"). The request that
        follows checkpoints anyway (the model limiter's ``slot()`` always does).
        """
        if token.holds != "submission":
            await trio.lowlevel.checkpoint()
            return
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._llm_wait.acquire_on_behalf_of_nowait(token)
        except trio.WouldBlock:
            self._llm_wait_waiters += 1
            try:
                await self._llm_wait.acquire_on_behalf_of(token)
            finally:
                self._llm_wait_waiters -= 1
        self._submission.release_on_behalf_of(token)
        token.holds = "llm_wait"
        self._handoffs += 1
        self._peak_llm_wait = max(self._peak_llm_wait, self._llm_wait.borrowed_tokens)

    def may_pass_on_llm_wait(self, token: SlotToken) -> bool:
        """Whether ``token``, which holds an LLM-wait slot and just finished its LLM cell, may
        keep that slot for a next LLM cell instead of returning it (the *pass-on*, see
        ``RowGroupWorker._continuation``).

        Only when doing so changes no decision of either pool: nobody is parked for an LLM-wait
        slot (the slot returned now would be theirs: trio's limiter is FIFO), and a submission
        slot is free with nobody parked for one (the dispatcher would take it at once, start
        the same cell and hand it off to the LLM-wait slot this token would have returned).
        The caller counts a pass-on it makes with :meth:`note_passed_on`.
        """
        return (
            token.holds == "llm_wait"
            and not self._llm_wait_waiters
            and not self._submission_waiters
            and self._submission.borrowed_tokens < self._submission.total_tokens
        )

    def note_passed_on(self) -> None:
        """Count one LLM-wait slot passed on to a next LLM cell (``SlotStatistics.passed_on``)."""
        self._passed_on += 1

    def release(self, token: SlotToken) -> None:
        """Return whatever slot ``token`` holds (no-op if none)."""
        if token.holds == "submission":
            self._submission.release_on_behalf_of(token)
        elif token.holds == "llm_wait":
            self._llm_wait.release_on_behalf_of(token)
        token.holds = "none"

    def statistics(self) -> SlotStatistics:
        return SlotStatistics(
            submission_borrowed=self._submission.borrowed_tokens,
            submission_total=int(self._submission.total_tokens),
            llm_wait_borrowed=self._llm_wait.borrowed_tokens,
            llm_wait_total=int(self._llm_wait.total_tokens),
            peak_submission=self._peak_submission,
            peak_llm_wait=self._peak_llm_wait,
            handoffs=self._handoffs,
            passed_on=self._passed_on,
            submission_waiting=self._submission_waiters,
            llm_wait_waiting=self._llm_wait_waiters,
        )


class _CellRun:
    """One attempt at one cell inside a task: what its trace record needs."""

    __slots__ = ("attempt", "dispatched", "slot_acquired", "started", "task")

    def __init__(self, task: Task, dispatched: float, attempt: int) -> None:
        self.task = task
        self.dispatched = dispatched
        self.slot_acquired = dispatched
        self.started: list[float] = []
        self.attempt = attempt


class RowGroupWorker:
    """Dispatches the tasks of one row group and reacts to their outcomes.

    Args:
      state: the run's shared state (counters, failures, trace, retry policy, run scope).
      cells: runs one task (skips, contexts, the generator call, storing values).
      slots: the run's submission and LLM-wait pools (shared by every row group).
      backlog: the run's per-endpoint dispatch caps (shared by every row group).
      plan: the row group.
    """

    def __init__(
        self,
        state: RunState,
        cells: CellRunner,
        slots: TaskSlots,
        backlog: EndpointBacklog,
        plan: RowGroupPlan,
    ) -> None:
        self.state = state
        self.cells = cells
        self.slots = slots
        self.backlog = backlog
        self.plan = plan
        self.buffer = state.new_buffer(plan)
        self.tracker = CompletionTracker(state.graph, plan.size, retry=state.retry)
        # The cancel scope of each running task, by the cell it runs (see _run_task).
        self._scopes: dict[Task, trio.CancelScope] = {}
        self._changed = trio.Event()
        self._spawned = 0
        # The response cache has answers for this row group (read once: loaded before the
        # worker starts), and the LLM cells found not to be all cached at dispatch.
        self._may_hit = state.cache is not None and state.cache.may_hit(plan.id)
        self._cache_missed: set[Task] = set()

    async def run(self) -> None:
        """Dispatch until every task of the row group is done or dropped."""
        self.backlog.subscribe(self._wake)
        try:
            async with trio.open_nursery() as cells:
                while not self.tracker.is_finished():
                    if self.tracker.has_eligible(self.backlog.eligible):
                        await self._dispatch_one(cells)
                    elif not self.tracker.has_ready() and self.tracker.is_stalled():
                        await self._salvage()
                    else:
                        # Nothing to start: wait for one of our tasks to end, or for a saturated
                        # endpoint to free a place. Invariant: no checkpoint between the checks
                        # above and this wait, so no wake-up is lost (a lost one deadlocks:
                        # the scenarios' fail_after turns that into a failure of
                        # test_async_engine_invariants).
                        self._changed = trio.Event()
                        await self._changed.wait()
        finally:
            self.backlog.unsubscribe(self._wake)

    def _wake(self) -> None:
        self._changed.set()

    async def _dispatch_one(self, cells: trio.Nursery) -> None:
        token = SlotToken()
        await self.slots.acquire_submission(token)
        task = self.tracker.pop_ready(self.backlog.eligible)
        if task is None:  # a drop emptied the frontier while we waited for the slot
            self.slots.release(token)
            return
        if (
            task.row is not None
            and task not in self._cache_missed
            and self._runs_inline(task.column)
        ):
            missed = None
            try:
                missed = self._run_inline_batch(task)
            finally:
                if missed is None:
                    self.slots.release(token)
            if missed is None:
                await trio.lowlevel.checkpoint()  # let the rest of the run breathe
                return
            # An LLM cell whose answers are not all cached: it gets a task of its own (with
            # the slot still held), which goes straight to the handoff.
            task = missed
            self._cache_missed.add(task)
        # (A cell in _cache_missed popped here — a miss the batched replay put back — is
        # given its task directly too.)
        # The scope is registered before the task starts, so a drop that happens between
        # dispatch and start still reaches it (the task then never calls its generator).
        scope = trio.CancelScope()
        self._scopes[task] = scope
        self.backlog.enter(task.column)
        cells.start_soon(self._run_task, task, token, scope, trio.current_time())
        self._spawned += 1
        if self._spawned % SPAWNS_PER_CHECKPOINT == 0:
            await trio.lowlevel.checkpoint()

    def _runs_inline(self, column: str) -> bool:
        """Cheap synchronous cells (Jinja expressions), and LLM cells of a row group the
        response cache has answers for: those are first tried against the cache right here,
        synchronously (``CellRunner.run_cached_inline``)."""
        return self.cells.runs_inline(column) or (
            self._may_hit and self.cells.replays_from_cache(column)
        )

    def _run_inline_batch(self, task: Task) -> Task | None:
        """Run ``task`` and the inline tasks that follow it in priority order, synchronously,
        under the one submission slot the dispatcher holds. Bounded, so the dispatcher
        checkpoints (at its next slot acquisition) at least every ``INLINE_BATCH`` cells.

        An LLM cell the cache may serve takes the other ready cells of its column with it
        (``_replay.replay_column``: column-wise, the dispatcher's invariants kept as its module
        docstring says); they count against the same bound.

        Returns the LLM cell whose answer was not in the cache, if one was taken (the batch
        ends there: a taken task must run, in a task of its own), else ``None``."""
        remaining = INLINE_BATCH
        while True:
            if _replay.ENABLED and not self.cells.runs_inline(task.column):
                # A cell the cache may serve: it and the other ready cells of its column,
                # column-wise (``_replay.py``); the cells it ran count against the batch.
                ran, missed = replay_column(self, task, remaining)
                if missed is not None:
                    return missed
                remaining -= ran
            elif not self._run_inline(task):
                return task
            else:
                remaining -= 1
            if remaining <= 0 or self.state.run_scope.cancel_called:
                # Checked *before* taking the next task: a taken task must run; and once the
                # run is shutting down (a cell of this batch may have tripped the error-rate
                # gate), nothing new starts.
                return None
            following = self.tracker.pop_ready_if(self.backlog.eligible, self._takes_inline)
            if following is None:
                return None
            task = following

    def _takes_inline(self, task: Task) -> bool:
        """Whether the inline batch takes ``task`` next (a cell that runs inline, and not a
        cached cell found not cached: that one gets a task of its own)."""
        return (
            task.row is not None
            and task not in self._cache_missed
            and self._runs_inline(task.column)
        )

    def replayable(self, task: Task) -> bool:
        """Whether the batched replay may take ``task`` (not a cell already found not all
        cached, which gets a task of its own)."""
        return task not in self._cache_missed

    def mark_cache_missed(self, task: Task) -> None:
        """``task`` (put back among the ready ones) was found not all cached: when popped it
        gets a task of its own, which skips the cache-only pass."""
        self._cache_missed.add(task)

    def _run_inline(self, task: Task) -> bool:
        """Run one inline cell; ``False`` (and nothing recorded) for an LLM cell whose
        answers are not all in the cache."""
        assert task.row is not None
        now = trio.current_time()
        attempt = self.tracker.attempts(task) + 1
        error: BaseException | None = None
        status: TaskStatus
        try:
            if self.cells.runs_inline(task.column):
                status = self.cells.run_cell_inline(self.buffer, task.column, task.row)
            else:
                cached = self.cells.run_cached_inline(self.buffer, task.column, task.row)
                if cached is None:
                    return False
                status = cached
        except Exception as exc:
            error = exc
            status = self._on_error(task, exc, attempt, now)
        else:
            self.tracker.complete(task)
            self.state.record_success(task.column, status, 1, started=now)
        self.trace_inline(task, status, attempt, now, error)
        return True

    def trace_inline(
        self,
        task: Task,
        status: TaskStatus,
        attempt: int,
        now: float,
        error: BaseException | None = None,
    ) -> None:
        """The trace record of a cell run inline (no task of its own: dispatched, given its
        slot and started at ``now``); also the batched replay's (``_engine/_replay.py``)."""
        self.state.add_trace(
            plan=self.plan,
            column=task.column,
            row=task.row,
            dispatched=now,
            slot_acquired=now,
            started=now,
            status=status,
            attempt=attempt,
            error=error,
        )

    async def _salvage(self) -> None:
        due = self.tracker.next_salvage_time()
        if due is not None and due > trio.current_time():
            await trio.sleep_until(due)
        offered = self.tracker.salvage(trio.current_time())
        if offered:
            self.state.emit("salvage_round", row_group=self.plan.id, tasks=len(offered))

    async def _run_task(
        self, task: Task, token: SlotToken, scope: trio.CancelScope, dispatched: float
    ) -> None:
        """Run ``task`` in this trio task, then go on with further ready cells of this row
        group that would otherwise each get a task of their own (see :meth:`_continuation`),
        reusing the task, its cancel scope and its slot.

        Invariant: ``self._scopes`` holds exactly the cancel scopes of this row group's
        running tasks, and ``self._scopes[cell]`` is ``scope`` exactly while ``cell`` is the
        cell this task is running — so a drop of a row cancels that row's running cells and
        nothing else. Checked by ``check_dropped_rows_stop`` (the dropped row's cells end
        cancelled) and ``check_surviving_rows_complete`` (a wrongly cancelled cell would
        leave its surviving row incomplete) in ``property_tests/test_engine_scenarios.py``.

        Invariant (the backlog): this task holds exactly one place in ``self.backlog``, of the
        column in ``held``, or none (``held is None``); every place it takes (the dispatcher's
        ``enter`` for the first cell, :meth:`_continuation`'s for an LLM cell it passes its
        slot on to) is given back exactly once — when the task moves on, or in ``finally``.
        """
        cell = _CellRun(task, dispatched, self.tracker.attempts(task) + 1)
        held: str | None = task.column  # the dispatcher's backlog.enter(task.column)
        status: TaskStatus = "cancelled"
        error: BaseException | None = None

        async def handoff() -> None:
            """This task's submission -> LLM-wait handoff. ``CellRunner`` awaits it right
            before an LLM-bound generator. A task whose token already holds an LLM-wait slot
            (an LLM cell it was passed on to, see :meth:`_continuation`) has nothing to do:
            no schedule point here (``_hand_off`` checks for cancellation after it, and the
            request's limiter checkpoints)."""
            if token.holds != "submission":  # already handed over (idempotent)
                return
            await self.slots.handoff_to_llm_wait(token)
            cell.slot_acquired = trio.current_time()

        try:
            with scope:
                await trio.lowlevel.checkpoint_if_cancelled()
                for remaining in range(CELLS_PER_TASK - 1, -1, -1):
                    self._set_priority(cell.task)
                    status = await self._execute(cell.task, handoff, cell.started)
                    self._succeeded(cell.task, status, cell.dispatched)
                    if remaining == 0:
                        break
                    # Checked *before* taking the next cell: a taken cell must run. The
                    # backlog place of the finished cell is given back first, as it would be
                    # if the task ended here (the next LLM cell is chosen against it).
                    if held is not None and token.holds == "llm_wait":
                        self.backlog.exit(held)
                        held = None
                    following = self._continuation(token, scope)
                    if following is None:
                        break
                    if held is not None:  # an LLM cell that was skipped: its endpoint is free
                        self.backlog.exit(held)
                        held = None
                    if token.holds == "llm_wait":  # an LLM cell: its endpoint's place
                        self.backlog.enter(following.column)
                        held = following.column
                    self._trace(cell, status)
                    del self._scopes[cell.task]
                    self._scopes[following] = scope
                    now = trio.current_time()
                    cell = _CellRun(following, now, self.tracker.attempts(following) + 1)
                    status = "cancelled"
            if scope.cancelled_caught:
                status = "cancelled"
                self.state.counts[cell.task.column].cancelled += 1
                self.tracker.cancelled(cell.task)
        except Exception as exc:
            error = exc
            status = self._on_error(cell.task, exc, cell.attempt, cell.dispatched)
        finally:
            del self._scopes[cell.task]
            self.slots.release(token)
            if held is not None:
                self.backlog.exit(held)
            self._changed.set()
            self._trace(cell, status, error)

    def _set_priority(self, task: Task) -> None:
        """Carry the cell's dispatch rank to the model limiter it may park on: critical path
        first, then older row groups, then lower rows (the tracker's own order)."""
        set_request_priority(
            (
                -self.state.graph.priority[task.column],
                self.plan.id,
                -1 if task.row is None else task.row,
            )
        )

    def _succeeded(self, task: Task, status: TaskStatus, started: float) -> None:
        self.tracker.complete(task)
        cells = 1 if task.row is not None else self.tracker.size
        self.state.record_success(task.column, status, cells, started=started)
        self._changed.set()  # the dispatcher may start what this made ready

    def _continuation(self, token: SlotToken, scope: trio.CancelScope) -> Task | None:
        """The next cell this task should run itself, or ``None`` to end the task.

        Never once the task's scope was cancelled or the run is shutting down (start nothing
        new), and only a cell the dispatcher would start in its own task at this moment, so
        that taking it here changes no priority decision; it only saves what the dispatcher's
        way costs. Two cases, by the slot the task holds:

        * a **submission** slot (it ran a non-LLM cell, or an LLM cell that was skipped): while
          nobody is parked waiting for a submission slot, the best ready cell among the columns
          that :meth:`CellRunner.continues_in_task` (non-LLM). Saves a task spawn and a cancel
          scope (about half the engine's cost of a cheap cell).
        * an **LLM-wait** slot (it just finished an LLM cell): when
          :meth:`TaskSlots.may_pass_on_llm_wait` (nobody parked for either pool, a submission
          slot free), the best *eligible* ready cell — the one the dispatcher's
          ``pop_ready(backlog.eligible)`` would take — if it is an LLM cell that runs as a task
          (:meth:`_takes_llm_slot`). The task keeps its LLM-wait slot for it (the *pass-on*):
          the dispatcher would have taken a free submission slot, spawned a task and handed
          it off to the very LLM-wait slot released here, over several scheduler rounds, each
          behind whatever else of the wave is runnable; passed on, the next request of the row
          leaves in the same round as the answer before it was read.

        Invariant (the pools, with the pass-on): a task holds at most one slot; a task holding
        an LLM-wait slot runs only LLM cells (a task never goes back to the submission pool);
        an LLM-wait slot is passed on only while no task is parked for one and a submission
        slot is free with no task parked for it, so occupancy never exceeds either pool and
        the pools grant in the order they would without it. Checked by
        ``check_slots_held_by_running_cells`` and ``check_passed_on_only_when_free`` in
        ``property_tests/test_engine_scenarios.py``.
        """
        if scope.cancel_called or self.state.run_scope.cancel_called:
            return None
        if token.holds == "submission":
            if self.slots.submission_contended:
                return None
            return self.tracker.pop_ready(self.cells.continues_in_task)
        if not self.slots.may_pass_on_llm_wait(token):
            return None
        following = self.tracker.pop_ready_if(self.backlog.eligible, self._takes_llm_slot)
        if following is not None:
            self.slots.note_passed_on()
        return following

    def _takes_llm_slot(self, task: Task) -> bool:
        """Whether a task that holds an LLM-wait slot may run ``task`` next: an LLM cell (of
        the cell strategy) the dispatcher would give a task of its own (not one it would try
        against the response cache inline)."""
        return (
            task.row is not None
            and self.cells.takes_llm_slot(task.column)
            and not self._runs_inline(task.column)
        )

    def _trace(
        self, cell: _CellRun, status: TaskStatus, error: BaseException | None = None
    ) -> None:
        if not self.state.trace.enabled:
            return
        self.state.add_trace(
            plan=self.plan,
            column=cell.task.column,
            row=cell.task.row,
            dispatched=cell.dispatched,
            slot_acquired=cell.slot_acquired,
            started=cell.started[0] if cell.started else None,
            status=status,
            attempt=cell.attempt,
            error=error,
        )

    async def _execute(self, task: Task, handoff: Handoff, started: list[float]) -> TaskStatus:
        if task.row is None:
            return await self.cells.run_full_column(
                self.buffer, task.column, self.tracker.live_rows, started, handoff
            )
        if task in self._cache_missed:  # the dispatcher already looked in the cache
            self._cache_missed.discard(task)
            return await self.cells.run_cell(
                self.buffer, task.column, task.row, started, handoff, try_cache=False
            )
        return await self.cells.run_cell(self.buffer, task.column, task.row, started, handoff)

    def _on_error(self, task: Task, exc: Exception, attempt: int, started: float) -> TaskStatus:
        if self.state.stops_the_run(exc):  # no row to blame: the whole run stops
            self.state.stop_for(exc)
            return "failed"
        retry = self.state.retry
        if retry.is_retryable(exc):
            outcome = self.tracker.defer(
                task,
                not_before=trio.current_time() + retry.delay(attempt, exc),
                rate_limited=retry.is_rate_limited(exc),
            )
            if not outcome.exhausted:
                self.state.counts[task.column].retried += 1
                self.state.record_retry(self.plan, task.column, task.row, exc, attempt)
                return "retryable"
            self._drop(task, exc, attempt, outcome.to_cancel, started)
            return "failed"
        self._drop(task, exc, attempt, self.tracker.fail(task), started)
        return "failed"

    def _drop(
        self,
        task: Task,
        exc: BaseException,
        attempt: int,
        to_cancel: list[Task],
        started: float,
    ) -> None:
        for sibling in to_cancel:
            scope = self._scopes.get(sibling)
            if scope is not None:
                scope.cancel()
        self.state.record_failure(
            self.plan, task.column, task.row, exc, attempt, started=started
        )
