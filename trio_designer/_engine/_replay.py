"""The batched replay of cached cells: a column of a row group served by the response cache in
one go, inside the dispatcher's inline batch.

A warm run's LLM cells are all answered by the cache (``docs/cache.md``). Served one at a time
(``CellRunner.run_cached_inline``, one per ``RowGroupWorker._run_inline``), each paid the
engine's per-cell bookkeeping: a pop from the tracker's frontier, a completion, the run's
counters and early-shutdown gate, a look at the clock, the cache-only flag set and reset. Here,
when the inline batch meets a cell that may be served by the cache, it takes the other ready
cells of that column too (``CompletionTracker.pop_ready_column``: lowest rows first, at most the
batch's remaining budget), runs their cache-only passes back to back
(``CellRunner.replay_cached_cells``) and records the served ones together
(``CompletionTracker.complete_many``, ``RunState.record_successes``). Each cell's own work —
skip decision, context, generator (prompt, random draws, cache key, lookup, parsing), tally
and stored value — is exactly the per-cell path's, so the dataset, the provenance sidecar
(status ``cached``, tokens, cost, finish reason) and the metadata are byte-identical to it
(``tests/test_cache_replay.py``).

The generator's part is column-wise too (``CellRunner.prepare_cached``, before the loop): the
column's generator is asked for every taken row that is surely not skipped at once
(``ColumnGenerator.replay_cached``; the LLM columns: the prompts rendered in one loop, each
cell's first draw, the bodies, keys and look-ups, then the parsing, each a loop over the
rows). It answers, per row, the value and tally the cell's cache-only pass would have
produced, ``MISSED`` (the first request is not cached: the pass would raise ``CacheMiss``), or
nothing: then that cell's pass runs as before, through ``agenerate`` (a re-ask, an error, a
stored value that does not read — whatever is not the plain case is the per-cell code's). It
computes and counts nothing that outlives it but the answers it hands over: the cells the loop
then stores from it are counted as cache hits there, one each, as their passes would have
counted them; the cells the batch does not reach (shutdown) are not counted.

Cells that are not served fall back to the normal path: a miss is put back among the ready
tasks (``CompletionTracker.unpop``: it never started) and marked, so the dispatcher gives it a
task of its own that goes straight to the handoff (the first miss of a batch takes the
dispatcher's slot at once, as a miss of the per-cell path does); a cell that raises is handled
as an inline cell that raises (``RowGroupWorker._on_error``: deferred or its row dropped).

Invariants (the dispatcher's, ``_dispatch.py``'s module docstring; checked by
``property_tests/test_engine_scenarios.py`` and ``tests/test_cache_replay.py``):

* a cell starts only after its row's upstream cells completed: every cell taken was ready
  (the tracker offers only those), and a batch takes cells of one column only, so no cell of
  the batch is upstream of another;
* no cell of a dropped row starts: the batch is synchronous, so only its own cells' errors can
  drop a row, and a cell's error drops that cell's row alone (its other cells are of other
  rows: one cell a row in a column);
* once early shutdown is declared no cell starts: the gate is fed after every stretch of
  served cells and after every error, and the batch stops as soon as the run scope is
  cancelled, putting the cells it took and did not start back (``unpop``). A stretch of
  successes never runs past the one that would trip the gate
  (``RunState.successes_to_trip``), so no cell starts after a success tripped it either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .._core._tracker import Task
from .._observe import TaskStatus

if TYPE_CHECKING:
    from ._dispatch import RowGroupWorker

ENABLED = True
"""Whether the inline batch replays cached cells column-wise. ``False``: one cell at a time
(``CellRunner.run_cached_inline``), the path before the batched replay — kept for
``tests/test_cache_replay.py``, which compares the two byte for byte."""

COLUMNWISE = True
"""Whether a batch's cells are first served by their generator together
(``CellRunner.prepare_cached``, ``ColumnGenerator.replay_cached``: one render loop, one key
loop, one look-up loop, one parse loop). ``False``: each cell of the batch through its
generator's ``agenerate`` (``CellRunner.replay_cached_cells`` alone) — kept for
``tests/test_cache_replay.py``, which compares the three paths byte for byte."""


def replay_column(worker: RowGroupWorker, first: Task, budget: int) -> tuple[int, Task | None]:
    """Serve ``first`` — a taken cell of a column the cache may answer — and up to
    ``budget - 1`` more ready cells of its column from the cache (see the module docstring).

    Returns how many cells ran (served, skipped or failed: the batch's budget spent) and the
    first cell that was not served, if any: the caller runs it in a task of its own at once
    (it is in flight, taken). The other cells not served are back among the ready ones,
    marked for a task of their own.
    """
    tracker, state, cells = worker.tracker, worker.state, worker.cells
    buf, column = worker.buffer, first.column
    tasks = [first]
    if budget > 1:
        tasks += tracker.pop_ready_column(column, budget - 1, worker.replayable)
    rows: list[int] = []
    for task in tasks:
        assert task.row is not None
        rows.append(task.row)
    now = trio.current_time()
    prepared = cells.prepare_cached(buf, column, rows) if COLUMNWISE else None
    tracing = state.trace.enabled
    missed: list[Task] = []
    ran = position = 0
    while position < len(tasks):
        room = state.successes_to_trip()
        stop = len(tasks) if room is None else min(len(tasks), position + room)
        statuses: list[TaskStatus] = []
        error: Exception | None = None
        try:
            cells.replay_cached_cells(buf, column, rows[position:stop], statuses, prepared)
        except Exception as exc:
            error = exc
        if statuses:
            served = tasks[position : position + len(statuses)]
            tracker.complete_many(served)
            skipped = statuses.count("skipped")
            state.record_successes(column, len(statuses) - skipped, skipped, started=now)
            if tracing:
                for task, status in zip(served, statuses, strict=True):
                    worker.trace_inline(task, status, tracker.attempts(task) + 1, now)
            position += len(statuses)
            ran += len(statuses)
        if position < stop:  # stopped at a cell: a miss, or an error
            task = tasks[position]
            position += 1
            if error is None:
                missed.append(task)
            else:
                ran += 1
                attempt = tracker.attempts(task) + 1  # before _on_error counts a deferral
                status = worker._on_error(task, error, attempt, now)
                worker.trace_inline(task, status, attempt, now, error)
        if state.run_scope.cancel_called:
            # Early shutdown (a cell of this batch may have tripped the gate): nothing new
            # starts; the cells taken and not run go back, as if never taken.
            for task in tasks[position:]:
                tracker.unpop(task)
            break
    if not missed:
        return ran, None
    for task in missed[1:]:
        tracker.unpop(task)
        worker.mark_cache_missed(task)
    return ran, missed[0]

