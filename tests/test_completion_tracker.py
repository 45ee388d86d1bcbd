"""Example tests of the pure completion tracker (the state machine lives in property_tests/)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer import CustomColumn, PipelineConfig
from trio_designer._core._errorwindow import ErrorRateWindow
from trio_designer._core._retry import RetryPolicy
from trio_designer._core._tracker import CompletionTracker, Task
from trio_designer._plan import ExecutionGraph


def _never_called(row: Any) -> None:
    raise AssertionError("the tracker never runs generators")


def view(edges: dict[str, tuple[str, ...]], full: tuple[str, ...] = ()) -> ExecutionGraph:
    """The real execution graph of custom columns with these dependencies (declared in
    topological order); the ``full`` ones are full-column columns."""
    columns = [
        CustomColumn(
            name=name,
            function=_never_called,
            strategy="full_column" if name in full else "cell",
            depends_on=ups,
        )
        for name, ups in edges.items()
    ]
    return ExecutionGraph.from_config(PipelineConfig(columns=columns))


DEEP = view(
    {
        "topic": (),
        "summary": ("topic",),
        "trivia": ("topic",),
        "analysis": ("summary",),
        "conclusion": ("analysis",),
    },
    full=("topic",),
)


def drain_ready(tracker: CompletionTracker) -> list[Task]:
    tasks = []
    while (task := tracker.pop_ready()) is not None:
        tasks.append(task)
    return tasks


def test_full_column_root_is_the_only_ready_task_at_start() -> None:
    tracker = CompletionTracker(DEEP, 3)
    assert drain_ready(tracker) == [Task("topic", None)]


def test_critical_path_cells_come_first() -> None:
    """On the Deep shape, summary (3 columns to go) outranks trivia (1), row by row."""
    tracker = CompletionTracker(DEEP, 2)
    (topic,) = drain_ready(tracker)
    tracker.complete(topic)
    assert drain_ready(tracker) == [
        Task("summary", 0),
        Task("summary", 1),
        Task("trivia", 0),
        Task("trivia", 1),
    ]


def test_pop_ready_if_is_peek_then_pop_in_one_search() -> None:
    """``pop_ready_if`` takes exactly what ``peek_ready``/``pop_ready`` would, when ``accept``
    takes it; otherwise it changes nothing. ``eligible`` filters the same way."""
    first, second = CompletionTracker(DEEP, 3), CompletionTracker(DEEP, 3)
    for tracker in (first, second):
        tracker.complete(tracker.pop_ready() or Task("?", None))
    not_trivia = lambda column: column != "trivia"  # noqa: E731
    refused = first.pop_ready_if(None, lambda task: task.column == "trivia")
    assert refused is None
    assert first.ready_tasks() == second.ready_tasks()
    assert first.in_flight() == second.in_flight()
    taken = []
    while (task := first.pop_ready_if(not_trivia, lambda task: True)) is not None:
        assert task == second.peek_ready(not_trivia) == second.pop_ready(not_trivia)
        taken.append(task)
        for ready in (first.complete(task), second.complete(task)):
            assert all(r.column in ("analysis", "conclusion") for r in ready)
    assert second.pop_ready(not_trivia) is None
    assert [t.column for t in taken].count("summary") == 3
    assert first.ready_tasks() == second.ready_tasks() == {Task("trivia", r) for r in range(3)}


def test_a_cell_is_ready_when_its_own_row_is_done_not_the_column() -> None:
    tracker = CompletionTracker(DEEP, 3)
    tracker.complete(tracker.pop_ready() or Task("?", None))
    drain_ready(tracker)
    assert tracker.complete(Task("summary", 1)) == [Task("analysis", 1)]


def test_dropping_a_row_returns_its_in_flight_cells_and_hides_the_rest() -> None:
    tracker = CompletionTracker(DEEP, 2)
    tracker.complete(tracker.pop_ready() or Task("?", None))
    drain_ready(tracker)  # summary/trivia of both rows now in flight
    cancelled = tracker.drop_rows([0])
    assert sorted(cancelled) == [Task("summary", 0), Task("trivia", 0)]
    assert tracker.complete(Task("summary", 0)) == []  # a late result is ignored
    assert tracker.complete(Task("summary", 1)) == [Task("analysis", 1)]


def test_dropped_rows_are_excused_for_full_column_tasks() -> None:
    shape = view({"a": (), "b": ("a",)}, full=("b",))
    tracker = CompletionTracker(shape, 2)
    drain_ready(tracker)
    tracker.complete(Task("a", 0))
    assert not tracker.has_ready()
    tracker.fail(Task("a", 1))
    assert drain_ready(tracker) == [Task("b", None)]


def test_a_failing_full_column_task_drops_the_row_group() -> None:
    tracker = CompletionTracker(DEEP, 4)
    task = tracker.pop_ready()
    assert task == Task("topic", None)
    tracker.fail(task)
    assert tracker.dropped_rows == frozenset(range(4))
    assert tracker.is_finished()


def test_retryable_failures_wait_for_the_stall_then_the_backoff() -> None:
    shape = view({"a": ()})
    tracker = CompletionTracker(shape, 2, retry=RetryPolicy(max_retries=1))
    first, second = drain_ready(tracker)
    assert not tracker.defer(first, not_before=5.0).exhausted
    assert not tracker.is_stalled()  # row 1 still in flight
    tracker.complete(second)
    assert tracker.is_stalled()
    assert tracker.next_salvage_time() == 5.0
    assert tracker.salvage(4.0) == []
    assert tracker.salvage(5.0) == [first]
    assert tracker.pop_ready() == first
    outcome = tracker.defer(first, not_before=9.0)
    assert outcome.exhausted
    assert tracker.dropped_rows == frozenset({0})
    assert tracker.is_finished()


def test_rate_limited_failures_have_their_own_budget() -> None:
    tracker = CompletionTracker(
        view({"a": ()}), 1, retry=RetryPolicy(max_retries=0, max_rate_limited_retries=3)
    )
    task = tracker.pop_ready()
    assert task is not None
    for attempt in range(3):
        assert not tracker.defer(task, not_before=float(attempt), rate_limited=True).exhausted
        tracker.salvage(float(attempt))
        assert tracker.pop_ready() == task
    assert tracker.defer(task, not_before=9.0, rate_limited=True).exhausted


def test_statistics_count_everything() -> None:
    tracker = CompletionTracker(DEEP, 2)
    stats = tracker.statistics()
    assert (stats.size, stats.ready, stats.in_flight, stats.deferred) == (2, 1, 0, 0)


def test_an_empty_row_group_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^a row group needs at least one row, got 0$"):
        CompletionTracker(DEEP, 0)


class _Clock:
    """Start times for the window's outcomes: each call a later one."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_error_window_trips_only_when_full_and_above_threshold() -> None:
    window, at = ErrorRateWindow(4, 0.5), _Clock()
    assert not window.record(error=True, started=at())
    assert not window.record(error=True, started=at())
    assert not window.record(error=False, started=at())
    assert window.record(error=False, started=at())  # 2 of 4
    assert window.tripped
    for _ in range(8):
        assert window.record(error=False, started=at())  # stays tripped, whatever follows


def test_error_window_slides() -> None:
    window, at = ErrorRateWindow(3, 0.67), _Clock()
    for error in (True, False, False, True, False):
        assert not window.record(error=error, started=at())
    assert window.error_rate == pytest.approx(1 / 3)


def test_error_window_threshold_one_disables_the_gate() -> None:
    window, at = ErrorRateWindow(2, 1.0), _Clock()
    assert not window.record(error=True, started=at())
    assert not window.record(error=True, started=at())


def test_error_window_judges_start_order() -> None:
    # Slow failures finish after the fast successes that started with them and after: by
    # finish order the window would be all failures at the end of a healthy run (hostile21
    # row 26); by start order they count among the tasks they started with.
    window = ErrorRateWindow(4, 0.5)
    for started in range(1, 11):  # tasks 1..10 start; 3, 6, 9 fail slowly
        if started % 3:
            assert not window.record(error=False, started=float(started))
    for started in (3.0, 6.0, 9.0):
        assert not window.record(error=True, started=started)
    assert window.error_rate == pytest.approx(1 / 4)  # 7, 8, 9, 10: one failure
    assert window.cumulative_error_rate == pytest.approx(3 / 10)
    # A run that turns bad: tasks started from now on fail. It trips once half of the
    # window's latest-started tasks failed, not after its 7 successes are caught up with.
    assert window.record(error=True, started=11.0)  # 8, 9, 10, 11: 2 of 4
    assert window.cumulative_error_rate == pytest.approx(4 / 11)  # far from 0.5


@settings(max_examples=300, deadline=None)
@given(
    outcomes=st.lists(st.tuples(st.integers(0, 20), st.booleans()), max_size=60),
    size=st.integers(1, 8),
    threshold=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
)
def test_error_window_matches_a_plain_sort(
    outcomes: list[tuple[int, bool]], size: int, threshold: float
) -> None:
    """After every outcome the window is the ``size`` greatest (start, finish order) of all
    outcomes so far, and the gate trips exactly when such a full window first reaches the
    threshold (and stays tripped)."""
    window = ErrorRateWindow(size, threshold)
    seen: list[tuple[int, int, bool]] = []
    tripped = False
    for order, (started, error) in enumerate(outcomes):
        seen.append((started, order, error))
        latest = sorted(seen)[-size:]
        errors = sum(e for _, _, e in latest)
        tripped = tripped or (
            threshold < 1.0 and len(latest) == size and errors >= threshold * size
        )
        assert window.record(error=error, started=float(started)) is tripped
        assert window.error_rate == pytest.approx(errors / len(latest))


@given(
    window=st.integers(1, 8),
    threshold=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    outcomes=st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=12),
)
@settings(max_examples=300, deadline=None)
def test_error_window_successes_to_trip_is_where_successes_trip_it(
    window: int, threshold: float, outcomes: list[tuple[bool, int]]
) -> None:
    """``successes_to_trip`` (the batched replay's bound on a stretch of served cells) says
    exactly how many successes in a row, from now, trip the gate: recorded one by one, the
    gate trips at that success and not before; ``None``: no run of successes trips it."""
    import copy

    gate = ErrorRateWindow(window, threshold)
    for error, started in outcomes:
        gate.record(error=error, started=float(started))
    predicted = gate.successes_to_trip()
    if gate.tripped:
        assert predicted is None
        return
    trial = copy.deepcopy(gate)
    tripped_at = None
    for count in range(1, window + 2):
        if trial.record(error=False, started=10.0):
            tripped_at = count
            break
    assert predicted == tripped_at


@given(
    window=st.integers(1, 8),
    threshold=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    outcomes=st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=12),
    batches=st.lists(st.tuples(st.integers(0, 10), st.integers(0, 6)), max_size=4),
)
@settings(max_examples=300, deadline=None)
def test_error_window_record_successes_is_record_one_by_one(
    window: int,
    threshold: float,
    outcomes: list[tuple[bool, int]],
    batches: list[tuple[int, int]],
) -> None:
    """``record_successes`` (the batched replay's stretches of served cells, in one step)
    leaves the window, its counts and the gate as ``count`` calls of ``record`` do, whatever
    the window held before (errors, later or earlier starts, full or not)."""
    import copy

    bulk = ErrorRateWindow(window, threshold)
    for error, started in outcomes:
        bulk.record(error=error, started=float(started))
    single = copy.deepcopy(bulk)
    for count, started in batches:
        tripped = False
        for _ in range(count):
            tripped = single.record(error=False, started=float(started))
        assert bulk.record_successes(count, started=float(started)) == (
            tripped or single.tripped
        )
        assert vars(bulk) == vars(single)
