"""Scenario tests: the whole engine on random DAGs, latencies and failure schedules.

Each example runs in its own ``trio.run`` with a fresh ``MockClock`` (style.md §8.2). The checks
are the invariants written in ``trio_designer/_engine/_dispatch.py`` (layer 1) and
``_admission.py`` (layer 2):

1. ``check_upstream_before_start`` — a cell starts only after its row's upstream cells completed;
2. ``check_surviving_rows_complete`` — a checkpointed row is complete in every column, with values
   computed from its own row's inputs;
3. ``check_no_double_success`` — no cell succeeds twice;
4. ``check_dropped_rows_stop`` — after a row is dropped none of its cells starts, and its
   in-flight cells end cancelled;
5. ``check_limits_respected`` — submission / LLM-wait occupancy never exceeds its bound;
   ``check_admission_respected`` — row groups in memory (admitted, not yet checkpointed) never
   exceed ``max_row_groups_in_flight``, and every admission is released;
   ``check_slots_held_by_running_cells`` — every running LLM cell holds an LLM-wait slot, every
   running local cell a submission slot, and a task that ran an LLM cell runs no local cell
   after it; ``check_passed_on_only_when_free`` — a task passes its LLM-wait slot on to a next
   LLM cell only while nobody is parked for either pool and a submission slot is free;
6. ``check_tokens_returned`` — every slot token is back at the end, also after cancellation and
   early shutdown; ``check_nothing_starts_after_shutdown`` — once early shutdown is declared,
   no cell starts;
7. termination — every run ends (``fail_after`` turns a deadlock into a failure);
8. ``check_rows_on_disk`` — rows on disk equal rows reported;
9. ``check_engines_agree`` — the sync and async engines write identical datasets;
10. ``check_makespan_is_critical_path`` — with unlimited slots, the async makespan in virtual
    time equals the critical path of the cell DAG exactly.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer import TrioDesigner
from trio_designer._designer import _prepare
from trio_designer._engine._async import AsyncEngine
from trio_designer._engine._state import RunState
from trio_designer._sink import MemorySink

from ._budget import scaled
from .scenario import (
    Recorder,
    Scenario,
    deadline_for,
    expected_value,
    run_in_virtual_time,
    scenarios,
)

# -- the checks -------------------------------------------------------------------------------


def _rows_of_group(sc: Scenario, rg: int) -> range:
    start = rg * sc.row_group_size
    return range(start, min(start + sc.row_group_size, sc.rows))


def _drops(sc: Scenario, rec: Recorder) -> dict[int, int]:
    """Row -> event sequence number at which a failure dropped it."""
    dropped: dict[int, int] = {}
    for a in rec.attempts:
        exhausted = a.outcome == "retry" and a.attempt > sc.salvage_max_rounds
        if a.outcome == "fatal" or exhausted:
            assert a.end_seq is not None
            full = sc.dag.strategy[a.column] == "full_column"
            for row in _rows_of_group(sc, a.key) if full else a.rows:
                dropped[row] = min(dropped.get(row, a.end_seq), a.end_seq)
    return dropped


def check_upstream_before_start(sc: Scenario, rec: Recorder) -> None:
    done_at: dict[tuple[str, int], float] = {}
    for a in rec.attempts:
        if a.outcome == "ok":
            assert a.end is not None
            for row in a.rows:
                done_at[(a.column, row)] = a.end
    for a in rec.attempts:
        for row in a.rows:
            for up in sc.dag.upstream[a.column]:
                if sc.inline[up]:
                    continue  # inline cells record no attempt; their values are checked
                finished = done_at.get((up, row))
                assert finished is not None, f"{a.column}[{row}] ran without {up}[{row}]"
                assert finished <= a.start, (
                    f"{a.column}[{row}] started at {a.start}, before {up}[{row}] ended"
                )
    assert not rec.input_violations, rec.input_violations[:5]


def check_no_double_success(rec: Recorder) -> None:
    successes: dict[tuple[str, int], int] = defaultdict(int)
    for a in rec.attempts:
        if a.outcome == "ok":
            for row in a.rows:
                successes[(a.column, row)] += 1
    assert all(n == 1 for n in successes.values()), successes


def check_dropped_rows_stop(sc: Scenario, rec: Recorder) -> None:
    drops = _drops(sc, rec)
    for a in rec.attempts:
        for row in a.rows:
            if row not in drops:
                continue
            if a.start_seq > drops[row]:
                raise AssertionError(f"{a.column}[{row}] started after row {row} was dropped")
            running = a.end_seq is None or a.end_seq > drops[row]
            if sc.dag.strategy[a.column] == "cell" and running and a.outcome != "cancelled":
                raise AssertionError(f"{a.column}[{row}] kept running after its row was dropped")


def check_nothing_starts_after_shutdown(rec: Recorder) -> None:
    if rec.shutdown_seq is None:
        return
    late = [a for a in rec.attempts if a.start_seq > rec.shutdown_seq]
    assert not late, f"{late[0].column}{list(late[0].rows)} started after early shutdown"


def check_limits_respected(sc: Scenario, rec: Recorder, slots: Any) -> None:
    assert rec.peak_local <= sc.max_submitted, (rec.peak_local, sc.max_submitted)
    assert rec.peak_llm <= sc.max_llm_wait, (rec.peak_llm, sc.max_llm_wait)
    stats = slots.statistics() if hasattr(slots, "statistics") else slots
    assert stats.peak_submission <= stats.submission_total
    assert stats.peak_llm_wait <= stats.llm_wait_total


def check_slots_held_by_running_cells(rec: Recorder) -> None:
    """Counted by the recorder at every attempt's start (``Recorder._check_slots``)."""
    assert rec.slots is not None, "the recorder was not given the engine's slots"
    assert not rec.slot_violations, rec.slot_violations[:5]


def check_passed_on_only_when_free(rec: Recorder) -> None:
    """The pass-on (``RowGroupWorker._continuation``) changes no decision of either pool; the
    recorder's count of passed-on attempts agrees with the engine's."""
    assert not rec.pass_on_violations, rec.pass_on_violations[:5]
    assert rec.passed_on <= rec.slots.statistics().passed_on


def check_admission_respected(sc: Scenario, rec: Recorder, admission: Any) -> None:
    """Counted from the outside (the engine's events), so that a mutant admitting one group
    too many fails even if it also miscounts its own statistics."""
    assert rec.peak_groups_open <= sc.max_row_groups_in_flight, (
        rec.peak_groups_open,
        sc.max_row_groups_in_flight,
    )
    stats = admission.statistics()
    assert stats.in_flight == 0, stats
    assert stats.peak_in_flight <= stats.limit == sc.max_row_groups_in_flight, stats


def check_tokens_returned(slots: Any) -> None:
    stats = slots.statistics() if hasattr(slots, "statistics") else slots
    assert stats.submission_borrowed == 0, stats
    assert stats.llm_wait_borrowed == 0, stats


def check_surviving_rows_complete(
    sc: Scenario, rec: Recorder, rows: list[dict[str, Any]], early: bool
) -> None:
    for row in rows:
        first = row[sc.dag.order[0]]
        index = int(first.split("-")[1])
        for column in sc.dag.order:
            ups = {u: row[u] for u in sc.dag.upstream[column]}
            assert row[column] == expected_value(sc, column, index, ups), (column, index, row)
    written = sorted(int(r[sc.dag.order[0]].split("-")[1]) for r in rows)
    if not early:
        drops = _drops(sc, rec)
        assert written == [r for r in range(sc.rows) if r not in drops]


def check_rows_on_disk(result: Any) -> list[dict[str, Any]]:
    if not result.files:
        assert result.num_records_written == 0
        return []
    table = ds.dataset(Path(result.output_dir) / "parquet-files", format="parquet").to_table()
    assert table.num_rows == result.num_records_written
    return table.to_pylist()  # type: ignore[no-any-return]


# -- the tests ---------------------------------------------------------------------------------


async def _run_internal(
    sc: Scenario, rec: Recorder, stop_after: float | None
) -> tuple[RunState, AsyncEngine, Any]:
    config = sc.config(rec)
    graph, generators, _, _ = _prepare(config, sc.rows, None)
    sink = MemorySink()
    await sink.open(
        fingerprint="t", config={}, num_records=sc.rows, row_group_size=sc.row_group_size
    )
    state = RunState(
        graph=graph,
        generators=generators,
        sink=sink,
        run=config.run,
        num_records=sc.rows,
        on_event=rec.on_event,
    )
    engine = AsyncEngine.for_run(state)
    rec.slots = engine.slots
    with trio.move_on_after(stop_after if stop_after is not None else float("inf")):
        await engine.run()
    return state, engine, sink


@settings(max_examples=scaled(700))
@given(sc=scenarios())
def test_async_engine_invariants(sc: Scenario) -> None:
    """Invariants 1-7 on random DAGs, limits and failure schedules."""
    rec = Recorder(sc)
    state, engine, sink = run_in_virtual_time(
        _run_internal, sc, rec, None, deadline=deadline_for(sc)
    )
    check_upstream_before_start(sc, rec)
    check_no_double_success(rec)
    check_dropped_rows_stop(sc, rec)
    check_nothing_starts_after_shutdown(rec)
    check_limits_respected(sc, rec, engine.slots)
    check_slots_held_by_running_cells(rec)
    check_passed_on_only_when_free(rec)
    check_admission_respected(sc, rec, engine.admission)
    check_tokens_returned(engine.slots)
    rows = sink.table().to_pylist() if state.rows_written else []
    assert len(rows) == state.rows_written
    check_surviving_rows_complete(sc, rec, rows, state.early_shutdown)


@settings(max_examples=scaled(300))
@given(sc=scenarios(), stop_after=st.floats(0, 20))
def test_cancellation_returns_every_token(sc: Scenario, stop_after: float) -> None:
    """An outer cancel scope stops the run cleanly: tokens back, finished groups complete."""
    rec = Recorder(sc)
    state, engine, sink = run_in_virtual_time(
        _run_internal, sc, rec, stop_after, deadline=deadline_for(sc)
    )
    check_tokens_returned(engine.slots)
    check_slots_held_by_running_cells(rec)
    check_passed_on_only_when_free(rec)
    check_admission_respected(sc, rec, engine.admission)
    check_upstream_before_start(sc, rec)
    check_dropped_rows_stop(sc, rec)
    assert all(a.end is not None for a in rec.attempts), "a task outlived the run"
    rows = sink.table().to_pylist() if state.rows_written else []
    check_surviving_rows_complete(sc, rec, rows, early=True)


@settings(max_examples=scaled(300))
@given(sc=scenarios(failures=True))
def test_engines_agree(sc: Scenario) -> None:
    """Invariant 9: sync and async engines write identical datasets (failures included)."""
    import attrs

    sc = attrs.evolve(sc, early_shutdown=False)

    async def both() -> tuple[Any, Any]:
        results = []
        for engine in ("async", "sync"):
            rec = Recorder(sc)
            results.append(
                await TrioDesigner(engine=engine).preview(sc.config(rec), num_records=sc.rows)
            )
        return results[0], results[1]

    fast, slow = run_in_virtual_time(both, deadline=deadline_for(sc, sc))
    assert fast.table.equals(slow.table), (fast.table.to_pylist()[:3], slow.table.to_pylist()[:3])
    assert fast.num_records_written == slow.num_records_written


def _critical_path(sc: Scenario) -> float:
    def lat(column: str, key: int) -> float:
        return 0.0 if sc.inline[column] else sc.schedule.latency(column, key)

    cell_end: dict[tuple[str, int], float] = {}
    full_end: dict[str, float] = {}
    for column in sc.dag.order:
        ups = sc.dag.upstream[column]

        def ready(row: int, ups: Any = ups) -> float:
            return max(
                [
                    full_end[u] if sc.dag.strategy[u] == "full_column" else cell_end[(u, row)]
                    for u in ups
                ],
                default=0.0,
            )

        if sc.dag.strategy[column] == "full_column":
            full_end[column] = max(ready(r) for r in range(sc.rows)) + lat(column, 0)
        else:
            for row in range(sc.rows):
                cell_end[(column, row)] = ready(row) + lat(column, row)
    return max([*cell_end.values(), *full_end.values()])


@settings(max_examples=scaled(300))
@given(sc=scenarios(failures=False, unlimited=True))
def test_makespan_is_critical_path(sc: Scenario) -> None:
    """Invariant 10: with unlimited slots the async makespan equals the critical path exactly."""
    rec = Recorder(sc)

    async def go() -> Any:
        return await TrioDesigner().preview(sc.config(rec), num_records=sc.rows)

    result = run_in_virtual_time(go, deadline=deadline_for(sc))
    makespan = max(t.finished for t in result.traces)
    assert makespan == _critical_path(sc)


@settings(max_examples=scaled(60))
@given(sc=scenarios())
def test_rows_on_disk_equal_rows_reported(sc: Scenario) -> None:
    """Invariant 8, through the public API and the parquet sink."""
    rec = Recorder(sc)
    with tempfile.TemporaryDirectory() as tmp:

        async def go() -> Any:
            return await TrioDesigner().create(sc.config(rec), num_records=sc.rows, output_dir=tmp)

        result = run_in_virtual_time(go, deadline=deadline_for(sc), threads=True)
        rows = check_rows_on_disk(result)
        check_surviving_rows_complete(sc, rec, rows, result.status == "early_shutdown")
        check_tokens_returned(result.slots)
