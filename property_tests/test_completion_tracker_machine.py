"""State-machine test of the pure ``CompletionTracker`` (style.md §8.1).

Rules are the events the engine feeds in; invariants are the ones written in
``trio_designer/_core/_tracker.py``'s docstring; teardown drives the tracker to the end and
checks liveness.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trio_designer._core._retry import RetryPolicy
from trio_designer._core._tracker import CompletionTracker, Task

from ._budget import scaled
from .strategies import Dag, dags


class CompletionTrackerMachine(RuleBasedStateMachine):
    @initialize(dag=dags(), size=st.integers(1, 5), retries=st.integers(0, 2))
    def setup(self, dag: Dag, size: int, retries: int) -> None:
        self.dag = dag
        self.size = size
        self.graph = dag.graph()
        self.max_retries, self.max_rate_limited_retries = retries, 3
        self.tracker = CompletionTracker(
            self.graph,
            size,
            retry=RetryPolicy(
                max_retries=self.max_retries,
                max_rate_limited_retries=self.max_rate_limited_retries,
            ),
        )
        self.deferrals: dict[Task, int] = {}
        self.in_flight: list[Task] = []
        self.done: set[Task] = set()
        self.dropped: set[int] = set()
        self.completions: dict[Task, int] = {}
        self.orphans: list[Task] = []
        self.now = 0.0

    # -- model helpers ----------------------------------------------------------------------
    def _model_drop(self, task: Task) -> set[Task]:
        """Drop ``task``'s row (every row, for a full-column task); returns the in-flight tasks
        this orphans, which the tracker must hand back for cancellation."""
        rows = range(self.size) if task.row is None else [task.row]
        self.dropped.update(rows)
        if len(self.dropped) == self.size:
            keep: list[Task] = []
        else:
            keep = [t for t in self.in_flight if t.row is None or t.row not in self.dropped]
        orphaned = [t for t in self.in_flight if t not in keep]
        self.orphans.extend(orphaned)
        self.in_flight = keep
        return set(orphaned)

    def _satisfied(self, task: Task) -> bool:
        for up in self.dag.upstream[task.column]:
            if self.dag.strategy[up] == "full_column":
                if Task(up, None) not in self.done:
                    return False
            elif task.row is not None:
                if Task(up, task.row) not in self.done:
                    return False
            elif any(
                Task(up, r) not in self.done for r in range(self.size) if r not in self.dropped
            ):
                return False
        return True

    # -- rules ------------------------------------------------------------------------------
    @precondition(lambda self: self.tracker.has_ready())
    @rule()
    def dispatch(self) -> None:
        order = list(self.graph.order)
        best = min(
            self.tracker.ready_tasks(),
            key=lambda t: (
                -self.graph.priority[t.column],
                -1 if t.row is None else t.row,
                order.index(t.column),
            ),
        )
        task = self.tracker.pop_ready()
        assert task == best, f"popped {task}, but {best} ranks first"
        assert self._satisfied(task), f"{task} dispatched before its inputs were done"
        assert task.row is None or task.row not in self.dropped
        self.in_flight.append(task)

    @precondition(lambda self: self.tracker.has_ready())
    @rule(take=st.booleans())
    def dispatch_if(self, take: bool) -> None:
        """The dispatcher's inline batch: take the best task only if ``accept`` says so."""
        best = self.tracker.peek_ready()
        task = self.tracker.pop_ready_if(None, lambda candidate: take)
        if not take:
            assert task is None
            assert self.tracker.peek_ready() == best  # nothing changed
            return
        assert task == best
        assert task is not None
        assert self._satisfied(task)
        self.in_flight.append(task)

    @precondition(lambda self: self.tracker.has_ready())
    @rule(data=st.data(), limit=st.integers(0, 6), odd_rows=st.booleans())
    def dispatch_column(self, data: st.DataObject, limit: int, odd_rows: bool) -> None:
        """The batched replay: take up to ``limit`` ready cells of one column, lowest rows
        first, those ``accept`` takes (here: every row, or the odd rows only)."""
        column = data.draw(st.sampled_from(sorted({t.column for t in self.tracker.ready_tasks()})))
        before = self.tracker.ready_tasks()

        def accept(task: Task) -> bool:
            return not odd_rows or (task.row is not None and task.row % 2 == 1)

        candidates = sorted(
            (t for t in before if t.column == column and t.row is not None and accept(t)),
            key=lambda t: t.row if t.row is not None else -1,
        )
        taken = self.tracker.pop_ready_column(column, limit, accept)
        assert taken == candidates[:limit], (taken, candidates, limit)
        assert self.tracker.ready_tasks() == before - set(taken)
        for task in taken:
            assert self._satisfied(task)
            assert task.row not in self.dropped
        self.in_flight.extend(taken)

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def unpop(self, data: st.DataObject) -> None:
        """A taken task that did not start goes back to the ready ones (a cache miss of the
        batched replay, or the rest of a batch at shutdown)."""
        task = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        self.tracker.unpop(task)
        assert task in self.tracker.ready_tasks()
        assert self.tracker.attempts(task) == self.deferrals.get(task, 0)

    @precondition(lambda self: self.orphans)
    @rule()
    def unpop_of_a_dropped_row(self) -> None:
        """A batch's task whose row was dropped meanwhile is not revived by ``unpop``."""
        task = self.orphans[-1]
        self.tracker.unpop(task)
        assert task not in self.tracker.ready_tasks()
        assert not self.tracker.is_in_flight(task)

    @precondition(lambda self: len(self.in_flight) >= 1)
    @rule(data=st.data())
    def complete_many(self, data: st.DataObject) -> None:
        """The batched replay's completions: several in-flight tasks in one call."""
        count = data.draw(st.integers(1, len(self.in_flight)))
        picked = data.draw(st.permutations(self.in_flight))[:count]
        for task in picked:
            self.in_flight.remove(task)
        became = self.tracker.complete_many(picked)
        assert set(became) <= self.tracker.ready_tasks()  # and nothing popped them since
        for task in picked:
            self.done.add(task)
            self.completions[task] = self.completions.get(task, 0) + 1

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        task = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        self.tracker.complete(task)
        self.done.add(task)
        self.completions[task] = self.completions.get(task, 0) + 1

    @precondition(lambda self: self.orphans)
    @rule()
    def late_result_of_dropped_row(self) -> None:
        """A cell of a dropped row finishes anyway (it raced its cancellation)."""
        task = self.orphans.pop()
        assert self.tracker.complete(task) == []

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), rate_limited=st.booleans(), delay=st.sampled_from([0.0, 1.0, 5.0]))
    def defer(self, data: st.DataObject, rate_limited: bool, delay: float) -> None:
        task = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        outcome = self.tracker.defer(task, not_before=self.now + delay, rate_limited=rate_limited)
        self.deferrals[task] = self.deferrals.get(task, 0) + 1
        budget = self.max_rate_limited_retries if rate_limited else self.max_retries
        assert outcome.exhausted == (self.deferrals[task] > budget), (task, self.deferrals[task])
        if outcome.exhausted:
            assert set(outcome.to_cancel) == self._model_drop(task)
        else:
            assert outcome.to_cancel == []

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        task = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        cancelled = self.tracker.fail(task)
        assert set(cancelled) == self._model_drop(task)

    @rule(row=st.integers(0, 4))
    def drop_row(self, row: int) -> None:
        if row >= self.size:
            return
        cancelled = self.tracker.drop_rows([row])
        assert set(cancelled) == self._model_drop(Task("x", row))

    @rule(step=st.sampled_from([0.5, 2.0, 10.0]))
    def advance_and_salvage(self, step: float) -> None:
        self.now += step
        if self.tracker.is_stalled():
            for task in self.tracker.salvage(self.now):
                assert task.row is None or task.row not in self.dropped

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def states_are_disjoint(self) -> None:
        ready = self.tracker.ready_tasks()
        flying = self.tracker.in_flight()
        deferred = self.tracker.deferred_tasks()
        assert not (ready & flying)
        assert not (ready & deferred)
        assert not (flying & deferred)
        assert not ((ready | flying | deferred) & self.done)

    @invariant()
    def ready_tasks_have_inputs(self) -> None:
        for task in self.tracker.ready_tasks() | self.tracker.in_flight():
            assert self._satisfied(task), task

    @invariant()
    def dropped_rows_never_become_ready(self) -> None:
        for task in self.tracker.ready_tasks() | self.tracker.deferred_tasks():
            assert task.row is None or task.row not in self.dropped
        assert set(self.tracker.dropped_rows) == self.dropped

    @invariant()
    def ready_counts_match_the_ready_set(self) -> None:
        """The counts the tracker keeps to skip empty columns and groups (its docstring's
        invariant): per column, per priority group, and the list of groups with work."""
        t = self.tracker
        ready = t.ready_tasks()
        for column in self.graph.order:
            assert t._ready_count[column] == sum(1 for r in ready if r.column == column)
        for index, group in enumerate(t._priority_groups):
            assert t._group_ready[index] == sum(t._ready_count[c] for c in group)
        assert t._live_groups == [g for g, n in enumerate(t._group_ready) if n]

    @invariant()
    def the_next_task_is_the_best_ready_one(self) -> None:
        """What a pop would take, against a scan of every ready task: highest priority first,
        then the lowest row (a full-column task before any row), then column order."""
        ready = self.tracker.ready_tasks()
        order = {column: i for i, column in enumerate(self.graph.order)}

        def key(task: Task) -> tuple[int, int, int]:
            row = -1 if task.row is None else task.row
            return (-self.graph.priority[task.column], row, order[task.column])

        expected = min(ready, key=key) if ready else None
        assert self.tracker.peek_ready() == expected

    @invariant()
    def no_task_completes_twice(self) -> None:
        assert all(n == 1 for n in self.completions.values())

    @invariant()
    def model_in_flight_matches(self) -> None:
        assert set(self.in_flight) == set(self.tracker.in_flight())

    def teardown(self) -> None:
        """Liveness: drive everything to the end; finished means every live row is complete."""
        if not hasattr(self, "tracker"):
            return
        for _ in range(10_000):
            if self.tracker.is_finished():
                break
            if self.in_flight:
                task = self.in_flight.pop()
                self.tracker.complete(task)
                self.done.add(task)
            elif self.tracker.has_ready():
                self.dispatch()
            else:
                assert self.tracker.is_stalled(), "idle but not finished: a lost task"
                self.now += 1_000
                assert self.tracker.salvage(self.now)
        assert self.tracker.is_finished()
        self.finished_means_complete()

    def finished_means_complete(self) -> None:
        live = [r for r in range(self.size) if r not in self.dropped]
        if not live:
            return
        for column in self.dag.order:
            if self.dag.strategy[column] == "full_column":
                assert Task(column, None) in self.done, column
            else:
                for row in live:
                    assert Task(column, row) in self.done, (column, row)


TestCompletionTracker = CompletionTrackerMachine.TestCase
TestCompletionTracker.settings = settings(max_examples=scaled(400), stateful_step_count=40)
