"""Completion tracking and the ready frontier of one row group: the scheduler's decisions, no I/O.

Design note
-----------
A row group is a grid of cells (row, column). A *cell* column has one task per row; a
*full-column* column has one task for the whole row group. The tracker answers one question the
moment anything changes: which tasks are ready now? A cell task (c, r) is ready when, for every
upstream column u of c, u's cell in row r is done (cell upstream) or u's whole-group task is done
(full-column upstream). A full-column task c is ready when every upstream is satisfied for every
*surviving* row: dropped rows are excused.

The engine feeds events in (``pop_ready``, ``complete``, ``defer``, ``fail``, ``cancelled``,
``salvage``) and acts on what comes back (tasks to cancel, tasks now ready). Nothing here imports
trio; time is an argument. This is what the ``property_tests/test_tracker_machine.py`` state
machine exercises.

Priorities: the ready set is a heap ordered by (longest remaining downstream chain, row, column
order), so cells on the critical path go first: on the seed's Deep shape (topic → summary →
analysis → conclusion, topic → trivia) ``summary`` cells dispatch before ``trivia`` cells when
slots are scarce. Complexity: O(log n) per event, plus O(downstream) readiness checks.

Retryable failures are *deferred*: they leave the frontier until the row group *stalls* (nothing
ready, nothing in flight, only deferred work left). Then a salvage round re-offers every deferred
task whose backoff has elapsed (the engine sleeps until the earliest one). A task deferred more
often than the run's :class:`~trio_designer._core._retry.RetryPolicy` allows is exhausted and
its row is dropped; rate-limited deferrals have their own, larger budget.

The graph comes in through :class:`TaskGraph`, the part of
:class:`~trio_designer._plan.ExecutionGraph` the tracker reads: ``_core`` is the bottom layer
and imports nothing above it, so it declares what it needs and the one graph type provides it.

Invariants (checked by ``property_tests/test_completion_tracker_machine.py``, rule or invariant
of ``CompletionTrackerMachine`` named in brackets):

* every task is in at most one of: ready, in flight, deferred, done
  (``states_are_disjoint``);
* a ready or in-flight cell task's upstream cells are done (``ready_tasks_have_inputs``);
* no task of a dropped row is ever ready, and none is dispatched again
  (``dropped_rows_never_become_ready``); a completion arriving for a dropped row is ignored
  (``late_result_of_dropped_row``); a drop returns exactly the in-flight tasks it orphans,
  for the engine to cancel (``defer``, ``fail``, ``drop_row``);
* a task is completed at most once (``no_task_completes_twice``);
* the task popped is the best ready one by (longest chain, row, column order) (``dispatch``);
* liveness: when nothing is ready, in flight or deferred, every surviving row is complete in
  every column (``finished_means_complete``).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal, NamedTuple, Protocol

import attrs

from ._retry import RetryPolicy

Strategy = Literal["cell", "full_column"]

_DEFAULT_RETRY = RetryPolicy()


class Task(NamedTuple):
    """One unit of scheduling: a cell (``row`` is a local row index) or a full-column task
    (``row is None``)."""

    column: str
    row: int | None


_Offer = tuple[str, set[int] | None, tuple[tuple[str, set[int] | None], ...]]
"""A downstream column as :meth:`CompletionTracker.complete_many` offers its cells: its name,
its done set (``None``: a full-column task), and its upstream columns with theirs."""


class TaskGraph(Protocol):
    """What the tracker reads of the execution graph.

    :class:`trio_designer._plan.ExecutionGraph` is the one implementation; this protocol exists
    so that the pure ``_core`` layer does not import the ``_plan`` package above it.
    """

    @property
    def order(self) -> Sequence[str]:
        """Columns in topological order."""
        ...

    @property
    def upstream(self) -> Mapping[str, frozenset[str]]:
        """Column -> the columns it reads directly."""
        ...

    @property
    def downstream(self) -> Mapping[str, frozenset[str]]:
        """Column -> the columns that read it directly."""
        ...

    @property
    def strategy(self) -> Mapping[str, Strategy]:
        """Column -> ``"cell"`` or ``"full_column"``."""
        ...

    @property
    def priority(self) -> Mapping[str, int]:
        """Column -> the longest chain from it to a sink, counting itself."""
        ...


@attrs.frozen
class TrackerStatistics:
    """A snapshot of one row group's scheduling state."""

    size: int
    """Rows in the row group."""
    ready: int
    """Tasks ready to dispatch."""
    in_flight: int
    """Tasks dispatched and not yet reported back."""
    deferred: int
    """Tasks waiting for a salvage round after a retryable failure."""
    done_tasks: int
    """Tasks completed (cells and full-column tasks)."""
    dropped_rows: int
    """Rows dropped after a non-retryable failure or exhausted retries."""
    salvage_rounds: int
    """Salvage rounds run so far."""


@attrs.define(eq=False)
class _Deferred:
    not_before: float
    rate_limited: bool


class DeferOutcome(NamedTuple):
    """What ``defer`` decided: the task waits for salvage, or it was exhausted and its row (or,
    for a full-column task, every row) was dropped; ``to_cancel`` lists in-flight tasks of the
    dropped rows, which the engine must cancel."""

    exhausted: bool
    to_cancel: list[Task]


class CompletionTracker:
    """Completion state and ready frontier of one row group (see the module docstring).

    Args:
      graph: the run's execution graph.
      size: rows in the row group.
      retry: the run's retry budgets (the default is ``RunConfig``'s default).
    """

    def __init__(self, graph: TaskGraph, size: int, *, retry: RetryPolicy = _DEFAULT_RETRY) -> None:
        if size < 1:
            raise ValueError(f"a row group needs at least one row, got {size}")
        self._graph = graph
        self._size = size
        self._retry = retry
        # Columns grouped by priority, best group first, each in column order: a pop scans the
        # groups in order and stops at the first one with a ready task (the best key's priority
        # part decides before its row part, so no later group can beat it).
        by_priority: dict[int, list[str]] = {}
        for column in graph.order:
            by_priority.setdefault(graph.priority[column], []).append(column)
        self._priority_groups = tuple(
            tuple(by_priority[p]) for p in sorted(by_priority, reverse=True)
        )
        self._group_of: dict[str, int] = {
            column: index for index, group in enumerate(self._priority_groups) for column in group
        }
        # Invariant: _live_done[c] == len(_cell_done[c] - _dropped) for every cell column c.
        self._cell_done: dict[str, set[int]] = {
            c: set() for c in graph.order if graph.strategy[c] == "cell"
        }
        self._live_done: dict[str, int] = dict.fromkeys(self._cell_done, 0)
        self._column_done: set[str] = set()
        self._dropped: set[int] = set()
        # Invariant: _ready_set, _in_flight and _deferred are pairwise disjoint, and none holds a
        # done task or a task of a dropped row. Each column's heap may hold stale entries (lazy
        # deletion); an entry is live iff its task is in _ready_set. One heap per column (not
        # one global heap) so that a pop can skip whole columns — those whose model endpoint is
        # saturated — in O(columns), see pop_ready(eligible=...).
        self._heaps: dict[str, list[tuple[int, Task]]] = {c: [] for c in graph.order}
        self._ready_set: set[Task] = set()
        # Invariant: _ready_count[c] == number of tasks of column c in _ready_set (lets a pop
        # skip empty columns without touching their heaps); _group_ready[g] is the sum of
        # _ready_count over the columns of _priority_groups[g], and _live_groups lists, in
        # ascending order, exactly the g with _group_ready[g] > 0 (lets a pop skip empty groups
        # without visiting them: a long chain has one group per column).
        self._ready_count: dict[str, int] = dict.fromkeys(graph.order, 0)
        self._group_ready: list[int] = [0] * len(self._priority_groups)
        self._live_groups: list[int] = []
        self._in_flight: set[Task] = set()
        self._deferred: dict[Task, _Deferred] = {}
        self._attempts: dict[Task, int] = {}
        self._done_tasks = 0
        self._salvage_rounds = 0
        self._seed_roots()

    # -- queries --------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._size

    @property
    def dropped_rows(self) -> frozenset[int]:
        return frozenset(self._dropped)

    def is_dropped(self, row: int) -> bool:
        return row in self._dropped

    def has_ready(self) -> bool:
        return bool(self._ready_set)

    def in_flight(self) -> frozenset[Task]:
        return frozenset(self._in_flight)

    def ready_tasks(self) -> frozenset[Task]:
        return frozenset(self._ready_set)

    def deferred_tasks(self) -> frozenset[Task]:
        return frozenset(self._deferred)

    def is_stalled(self) -> bool:
        """Only deferred work is left: time for a salvage round."""
        return not self._ready_set and not self._in_flight and bool(self._deferred)

    def is_finished(self) -> bool:
        """Nothing ready, in flight or deferred: every surviving row is complete."""
        return not self._ready_set and not self._in_flight and not self._deferred

    def live_rows(self) -> list[int]:
        return [r for r in range(self._size) if r not in self._dropped]

    def is_done(self, task: Task) -> bool:
        if task.row is None:
            return task.column in self._column_done
        if self._graph.strategy[task.column] == "full_column":
            return task.column in self._column_done
        return task.row in self._cell_done[task.column]

    def next_salvage_time(self) -> float | None:
        """The earliest time a deferred task may run again, or ``None`` if none is deferred."""
        if not self._deferred:
            return None
        return min(d.not_before for d in self._deferred.values())

    def attempts(self, task: Task) -> int:
        """How many times ``task`` has been deferred so far."""
        return self._attempts.get(task, 0)

    def statistics(self) -> TrackerStatistics:
        return TrackerStatistics(
            size=self._size,
            ready=len(self._ready_set),
            in_flight=len(self._in_flight),
            deferred=len(self._deferred),
            done_tasks=self._done_tasks,
            dropped_rows=len(self._dropped),
            salvage_rounds=self._salvage_rounds,
        )

    # -- events ---------------------------------------------------------------------------
    def pop_ready(self, eligible: Callable[[str], bool] | None = None) -> Task | None:
        """Take the highest-priority ready task and mark it in flight; ``None`` if none.

        With ``eligible``, only tasks of columns for which it returns true are considered (the
        engine skips columns whose model endpoint already has its full backlog).
        """
        column = self._best_column(eligible)
        if column is None:
            return None
        return self._take(column)

    def has_eligible(self, eligible: Callable[[str], bool]) -> bool:
        """Whether some ready task belongs to a column ``eligible`` accepts."""
        return self._best_column(eligible) is not None

    def _head(self, column: str) -> tuple[int, Task] | None:
        heap = self._heaps[column]
        while heap and heap[0][1] not in self._ready_set:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _best_column(self, eligible: Callable[[str], bool] | None) -> str | None:
        """The column whose head task ranks first by (longest chain, row, column order)."""
        groups = self._priority_groups
        for index in self._live_groups:
            group = groups[index]
            best_row = 0
            chosen: str | None = None
            for column in group:  # column order: on equal rows the first column wins
                if not self._ready_count[column]:
                    continue
                head = self._head(column)
                if head is None:
                    continue
                # ``eligible`` is asked only of a column that would win (it is a query, and
                # an ineligible column does not move ``best_row``): fewer calls, same choice.
                if (chosen is None or head[0] < best_row) and (
                    eligible is None or eligible(column)
                ):
                    best_row, chosen = head[0], column
            if chosen is not None:
                return chosen
        return None

    def pop_ready_if(
        self, eligible: Callable[[str], bool] | None, accept: Callable[[Task], bool]
    ) -> Task | None:
        """``pop_ready(eligible)`` if ``accept`` takes the task it would return, else ``None``
        (and nothing changes): :meth:`peek_ready` and :meth:`pop_ready` in one search."""
        column = self._best_column(eligible)
        if column is None:
            return None
        head = self._head(column)
        assert head is not None
        if not accept(head[1]):
            return None
        return self._take(column)

    def _take(self, column: str) -> Task:
        """Move the head task of ``column`` (live: _best_column chose it) into flight."""
        _, task = heapq.heappop(self._heaps[column])
        self._ready_set.remove(task)
        self._ready_count[column] -= 1
        group = self._group_of[column]
        self._group_ready[group] -= 1
        if not self._group_ready[group]:
            del self._live_groups[bisect.bisect_left(self._live_groups, group)]
        self._in_flight.add(task)
        return task

    def peek_ready(self, eligible: Callable[[str], bool] | None = None) -> Task | None:
        """The task ``pop_ready`` would return next, without taking it."""
        column = self._best_column(eligible)
        if column is None:
            return None
        head = self._head(column)
        assert head is not None
        return head[1]

    def pop_ready_column(
        self, column: str, limit: int, accept: Callable[[Task], bool] | None = None
    ) -> list[Task]:
        """Take up to ``limit`` ready cell tasks of ``column`` that ``accept`` takes (every
        one without it), lowest rows first, and mark them in flight; the others stay ready.

        For the engine's batched replay of cached cells (``_engine/_replay.py``): one call
        instead of one :meth:`pop_ready_if` a cell. Unlike :meth:`pop_ready` this does not
        choose among columns: the caller names the column (one it just popped by priority).
        """
        if limit <= 0 or not self._ready_count.get(column):
            return []
        ready_set = self._ready_set
        heap = self._heaps[column]
        taken: list[Task] = []
        passed: list[tuple[int, Task]] = []  # ready, but refused by ``accept``: put back
        while heap and len(taken) < limit:
            entry = heapq.heappop(heap)
            task = entry[1]
            if task not in ready_set:
                continue  # a stale entry (lazy deletion)
            if task.row is not None and (accept is None or accept(task)):
                taken.append(task)
            else:
                passed.append(entry)
        for entry in passed:
            heapq.heappush(heap, entry)
        if not taken:
            return []
        ready_set.difference_update(taken)
        self._in_flight.update(taken)
        self._ready_count[column] -= len(taken)
        group = self._group_of[column]
        self._group_ready[group] -= len(taken)
        if not self._group_ready[group]:
            del self._live_groups[bisect.bisect_left(self._live_groups, group)]
        return taken

    def unpop(self, task: Task) -> None:
        """Put an in-flight task back among the ready ones, as if it had never been taken (no
        attempt counted). For a task the engine took but did not start: a cached cell whose
        answer turned out not to be cached, or the rest of a batch once the run is shutting
        down. A task no longer in flight (its row was dropped meanwhile) is left alone."""
        if task not in self._in_flight:
            return
        self._in_flight.remove(task)
        self._push(task)

    def complete_many(self, tasks: Iterable[Task]) -> list[Task]:
        """:meth:`complete` for each of ``tasks``, in order; returns every task that became
        ready (the batched replay's completions of one column, in one call).

        A cell task's completion and the offers of its downstream cells are
        :meth:`complete`'s (:meth:`_after_cell_done`, :meth:`_offer_cell`) written out in one
        loop, with what depends only on the column — its downstream columns, their strategy,
        their upstream columns' done sets — looked up once per column rather than per cell.
        The checks, their order and the pushes are the same, so the tracker ends in the state
        :meth:`complete` one by one leaves (the state machine,
        ``property_tests/test_completion_tracker_machine.py``, checks every invariant after
        it). A full-column task goes through :meth:`complete` itself."""
        ready: list[Task] = []
        in_flight, dropped = self._in_flight, self._dropped
        ready_set, deferred, column_done = self._ready_set, self._deferred, self._column_done
        cell_done, live_done, push = self._cell_done, self._live_done, self._push
        column: str | None = None
        done: set[int] = set()
        offers: list[_Offer] = []
        for task in tasks:
            row = task.row
            if row is None or task not in in_flight:
                ready.extend(self.complete(task))
                continue
            if task.column != column:
                column = task.column
                done = cell_done[column]
                offers = self._offers_after(column)
            in_flight.remove(task)
            self._done_tasks += 1
            done.add(row)
            live_done[column] += 1
            for down, down_done, ups in offers:
                if down_done is None:  # a full-column task downstream
                    self._offer_full_column(down, ready)
                    continue
                if row in dropped or row in down_done:
                    continue
                offer = Task(down, row)
                if offer in ready_set or offer in in_flight or offer in deferred:
                    continue
                for up, up_done in ups:
                    if (row not in up_done) if up_done is not None else (up not in column_done):
                        break
                else:
                    push(offer)
                    ready.append(offer)
        return ready

    def _offers_after(self, column: str) -> list[_Offer]:
        """For :meth:`complete_many`: each downstream column of ``column``, with its done set
        (``None``: a full-column task) and its upstream columns with theirs (``None``: a
        full-column one, done when in ``_column_done``), in :meth:`_after_cell_done`'s and
        :meth:`_upstream_ready_for_row`'s order."""
        graph, cell_done = self._graph, self._cell_done
        offers: list[_Offer] = []
        for down in graph.downstream[column]:
            if graph.strategy[down] != "cell":
                offers.append((down, None, ()))
                continue
            ups = tuple(
                (up, None if graph.strategy[up] == "full_column" else cell_done[up])
                for up in graph.upstream[down]
            )
            offers.append((down, cell_done[down], ups))
        return offers

    def is_in_flight(self, task: Task) -> bool:
        """Whether ``task`` is in flight (taken and not yet reported back)."""
        return task in self._in_flight

    def complete(self, task: Task) -> list[Task]:
        """Mark an in-flight task done; returns the tasks that became ready.

        A completion for a task no longer in flight (its row was dropped meanwhile) is ignored:
        a late result never revives a dropped row.
        """
        if task not in self._in_flight:
            return []
        self._in_flight.remove(task)
        self._done_tasks += 1
        if task.row is None:
            self._column_done.add(task.column)
            return self._after_column_done(task.column)
        self._cell_done[task.column].add(task.row)
        self._live_done[task.column] += 1
        return self._after_cell_done(task.column, task.row)

    def cancelled(self, task: Task) -> None:
        """An in-flight task was cancelled (its row was dropped, or the run is stopping)."""
        self._in_flight.discard(task)

    def defer(self, task: Task, *, not_before: float, rate_limited: bool = False) -> DeferOutcome:
        """An in-flight task failed with a retryable error.

        The task waits for a salvage round no earlier than ``not_before``. If it has exhausted
        its retry budget instead, its row (every row, for a full-column task) is dropped.
        """
        if task not in self._in_flight:
            return DeferOutcome(False, [])
        attempts = self._attempts.get(task, 0) + 1
        self._attempts[task] = attempts
        if attempts > self._retry.budget(rate_limited=rate_limited):
            return DeferOutcome(True, self.fail(task))
        self._in_flight.remove(task)
        self._deferred[task] = _Deferred(not_before, rate_limited)
        return DeferOutcome(False, [])

    def fail(self, task: Task) -> list[Task]:
        """A task failed for good: drop its row (a full-column task drops every row).

        Returns the in-flight tasks of the dropped rows, which the engine must cancel.
        """
        self._in_flight.discard(task)
        if task.row is None:
            return self.drop_rows(range(self._size))
        return self.drop_rows([task.row])

    def drop_rows(self, rows: Iterable[int]) -> list[Task]:
        """Drop rows: their ready and deferred tasks vanish; their in-flight cells are returned
        for cancellation. Full-column tasks waiting on those rows may become ready."""
        new = [r for r in rows if r not in self._dropped]
        if not new:
            return []
        newset = set(new)
        self._dropped.update(newset)
        for column, done in self._cell_done.items():
            self._live_done[column] -= len(done & newset)
        self._ready_set = {t for t in self._ready_set if t.row not in newset}
        self._recount_ready()
        for task in [t for t in self._deferred if t.row in newset]:
            del self._deferred[task]
        everything = len(self._dropped) == self._size
        to_cancel = [t for t in self._in_flight if everything or t.row in newset]
        for task in to_cancel:
            self._in_flight.remove(task)
        if everything:
            self._clear_pending()
        else:
            self._offer_full_columns(self._graph.order)
        return to_cancel

    def salvage(self, now: float) -> list[Task]:
        """Run a salvage round: re-offer every deferred task whose backoff has elapsed.

        Returns the re-offered tasks (empty if none is due yet; the engine then sleeps until
        :meth:`next_salvage_time`).
        """
        due = [t for t, d in self._deferred.items() if d.not_before <= now]
        if due:
            self._salvage_rounds += 1
        for task in due:
            del self._deferred[task]
            self._push(task)
        return due

    # -- internals ------------------------------------------------------------------------
    def _recount_ready(self) -> None:
        """Rebuild the ready counts from _ready_set (after many tasks left it at once)."""
        self._ready_count = dict.fromkeys(self._graph.order, 0)
        self._group_ready = [0] * len(self._priority_groups)
        for task in self._ready_set:
            self._ready_count[task.column] += 1
            self._group_ready[self._group_of[task.column]] += 1
        self._live_groups = [g for g, count in enumerate(self._group_ready) if count]

    def _push(self, task: Task) -> None:
        self._ready_set.add(task)
        self._ready_count[task.column] += 1
        group = self._group_of[task.column]
        self._group_ready[group] += 1
        if self._group_ready[group] == 1:
            bisect.insort(self._live_groups, group)
        row_key = -1 if task.row is None else task.row
        heapq.heappush(self._heaps[task.column], (row_key, task))

    def _is_scheduled(self, task: Task) -> bool:
        return task in self._ready_set or task in self._in_flight or task in self._deferred

    def _seed_roots(self) -> None:
        for column in self._graph.order:
            if self._graph.upstream[column]:
                continue
            if self._graph.strategy[column] == "full_column":
                self._push(Task(column, None))
            else:
                for row in range(self._size):
                    self._push(Task(column, row))

    def _upstream_ready_for_row(self, column: str, row: int) -> bool:
        for up in self._graph.upstream[column]:
            if self._graph.strategy[up] == "full_column":
                if up not in self._column_done:
                    return False
            elif row not in self._cell_done[up]:
                return False
        return True

    def _upstream_ready_for_column(self, column: str) -> bool:
        live = self._size - len(self._dropped)
        for up in self._graph.upstream[column]:
            if self._graph.strategy[up] == "full_column":
                if up not in self._column_done:
                    return False
            elif self._live_done[up] != live:
                return False
        return True

    def _offer_cell(self, column: str, row: int, ready: list[Task]) -> None:
        task = Task(column, row)
        if (
            row not in self._dropped
            and row not in self._cell_done[column]
            and not self._is_scheduled(task)
            and self._upstream_ready_for_row(column, row)
        ):
            self._push(task)
            ready.append(task)

    def _offer_full_column(self, column: str, ready: list[Task]) -> None:
        task = Task(column, None)
        if (
            column not in self._column_done
            and len(self._dropped) < self._size
            and not self._is_scheduled(task)
            and self._upstream_ready_for_column(column)
        ):
            self._push(task)
            ready.append(task)

    def _offer_full_columns(self, columns: Sequence[str]) -> list[Task]:
        ready: list[Task] = []
        for column in columns:
            if self._graph.strategy[column] == "full_column" and self._graph.upstream[column]:
                self._offer_full_column(column, ready)
        return ready

    def _after_cell_done(self, column: str, row: int) -> list[Task]:
        ready: list[Task] = []
        for down in self._graph.downstream[column]:
            if self._graph.strategy[down] == "cell":
                self._offer_cell(down, row, ready)
            else:
                self._offer_full_column(down, ready)
        return ready

    def _after_column_done(self, column: str) -> list[Task]:
        ready: list[Task] = []
        for down in self._graph.downstream[column]:
            if self._graph.strategy[down] == "cell":
                self._offer_column_cells(down, ready)
            else:
                self._offer_full_column(down, ready)
        return ready

    def _offer_column_cells(self, column: str, ready: list[Task]) -> None:
        """:meth:`_offer_cell` of every row of cell column ``column``, in row order, with the
        look-ups that depend only on the column (its done set, its upstream columns' done
        sets) made once: the same checks in the same order, the same pushes."""
        dropped, ready_set = self._dropped, self._ready_set
        in_flight, deferred, column_done = self._in_flight, self._deferred, self._column_done
        done, push, graph = self._cell_done[column], self._push, self._graph
        ups = tuple(
            (up, None if graph.strategy[up] == "full_column" else self._cell_done[up])
            for up in graph.upstream[column]
        )
        for row in range(self._size):
            if row in dropped or row in done:
                continue
            offer = Task(column, row)
            if offer in ready_set or offer in in_flight or offer in deferred:
                continue
            for up, up_done in ups:
                if (row not in up_done) if up_done is not None else (up not in column_done):
                    break
            else:
                push(offer)
                ready.append(offer)

    def _clear_pending(self) -> None:
        self._ready_set.clear()
        self._recount_ready()
        for heap in self._heaps.values():
            heap.clear()
        self._deferred.clear()
