"""The sync baseline: column at a time, the way the reference's old engine worked.

Row groups run one after another; within a row group each column runs to completion before the
next one starts (in topological order), its cells with bounded concurrency: the model's
``max_parallel_requests`` for LLM columns, ``RunConfig.non_llm_concurrency`` otherwise. Retryable
failures are retried after the column's pass, up to the same budgets as the async engine's
salvage rounds; non-retryable ones drop the row. Same generators, same seeds, same sink: for
deterministic generators the dataset is identical to the async engine's — that is what makes it
a fair baseline for the benchmarks and a parity oracle for the property suite.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from .._observe import TaskStatus
from ._cells import CellRunner
from ._state import RowGroupPlan, RunState


async def run_sync(state: RunState) -> None:
    """Run every row group of ``state`` column by column."""
    cells = CellRunner(state.graph, state.generators, seed=state.run.seed, models=state.models)
    with state.run_scope:
        gate = state.budget_gate
        for plan in state.plans():
            if gate is not None and not await gate.wait_for_room(plan.size):
                state.stop_admitting_for_budget()
                break
            state.emit("row_group_admitted", row_group=plan.id, rows=plan.size)
            try:
                await state.load_cached(plan)
                group = _SyncRowGroup(state, cells, plan)
                await group.run()
                await state.checkpoint(group.buffer, frozenset(group.dropped))
            finally:
                state.forget_cached(plan)


class _SyncRowGroup:
    def __init__(self, state: RunState, cells: CellRunner, plan: RowGroupPlan) -> None:
        self.state = state
        self.cells = cells
        self.plan = plan
        self.buffer = state.new_buffer(plan)
        self.dropped: set[int] = set()

    async def run(self) -> None:
        for column in self.state.graph.order:
            live = [r for r in range(self.plan.size) if r not in self.dropped]
            if not live:
                return
            if self.state.graph.strategy[column] == "full_column":
                await self._run_with_retries(column, [None])
            else:
                await self._run_with_retries(column, live)

    async def _run_with_retries(self, column: str, rows: Sequence[int | None]) -> None:
        attempts: dict[int | None, int] = {}
        pending: list[int | None] = list(rows)
        while pending:
            failures = await self._pass(column, pending, attempts)
            pending = []
            pause = 0.0
            retry = self.state.retry
            for row, exc in failures:
                attempts[row] = attempts.get(row, 0) + 1
                if attempts[row] > retry.budget(rate_limited=retry.is_rate_limited(exc)):
                    self._drop(column, row, exc, attempts[row])
                else:
                    self.state.counts[column].retried += 1
                    self.state.record_retry(self.plan, column, row, exc, attempts[row])
                    pending.append(row)
                    pause = max(pause, retry.delay(attempts[row], exc))
            if pending:
                await trio.sleep(pause)

    async def _pass(
        self, column: str, rows: list[int | None], attempts: dict[int | None, int]
    ) -> list[tuple[int | None, Exception]]:
        failures: list[tuple[int | None, Exception]] = []
        if self.cells.runs_inline(column):
            await trio.lowlevel.checkpoint()
            for row in rows:
                if row is not None and row not in self.dropped:
                    self._one_inline(column, row, attempts.get(row, 0) + 1, failures)
            return failures
        limiter = trio.CapacityLimiter(self._concurrency(column))
        async with trio.open_nursery() as nursery:
            for row in rows:
                if row is not None and row in self.dropped:
                    continue
                nursery.start_soon(
                    self._one, column, row, limiter, attempts.get(row, 0) + 1, failures
                )
        return failures

    async def _one(
        self,
        column: str,
        row: int | None,
        limiter: trio.CapacityLimiter,
        attempt: int,
        failures: list[tuple[int | None, Exception]],
    ) -> None:
        async with limiter:
            dispatched = trio.current_time()
            started: list[float] = []
            status: TaskStatus = "cancelled"
            error: BaseException | None = None
            try:
                status = await self._execute(column, row, started)
                cells = 1 if row is not None else self.plan.size - len(self.dropped)
                self.state.record_success(column, status, cells)
            except Exception as exc:
                error, status = exc, self._failed(column, row, attempt, exc, failures)
            finally:
                first = started[0] if started else None
                self._trace(column, row, dispatched, first, status, attempt, error)

    def _one_inline(
        self,
        column: str,
        row: int,
        attempt: int,
        failures: list[tuple[int | None, Exception]],
    ) -> None:
        now = trio.current_time()
        status: TaskStatus
        error: BaseException | None = None
        try:
            status = self.cells.run_cell_inline(self.buffer, column, row)
            self.state.record_success(column, status, 1)
        except Exception as exc:
            error, status = exc, self._failed(column, row, attempt, exc, failures)
        self._trace(column, row, now, now, status, attempt, error)

    def _failed(
        self,
        column: str,
        row: int | None,
        attempt: int,
        exc: Exception,
        failures: list[tuple[int | None, Exception]],
    ) -> TaskStatus:
        """Classify a failed attempt: retryable ones are retried after the pass."""
        if self.state.stops_the_run(exc):
            self.state.stop_for(exc)
            return "failed"
        if self.state.retry.is_retryable(exc):
            failures.append((row, exc))
            return "retryable"
        self._drop(column, row, exc, attempt)
        return "failed"

    def _trace(
        self,
        column: str,
        row: int | None,
        dispatched: float,
        started: float | None,
        status: TaskStatus,
        attempt: int,
        error: BaseException | None,
    ) -> None:
        self.state.add_trace(
            plan=self.plan,
            column=column,
            row=row,
            dispatched=dispatched,
            slot_acquired=dispatched,
            started=started,
            status=status,
            attempt=attempt,
            error=error,
        )

    async def _execute(self, column: str, row: int | None, started: list[float]) -> TaskStatus:
        if row is None:
            return await self.cells.run_full_column(self.buffer, column, self._live_rows, started)
        return await self.cells.run_cell(self.buffer, column, row, started)

    def _live_rows(self) -> list[int]:
        return [r for r in range(self.plan.size) if r not in self.dropped]

    def _drop(self, column: str, row: int | None, exc: BaseException, attempts: int) -> None:
        if row is None:
            self.dropped.update(range(self.plan.size))
        else:
            self.dropped.add(row)
        self.state.record_failure(self.plan, column, row, exc, attempts)

    def _concurrency(self, column: str) -> int:
        if self.state.graph.strategy[column] != "cell":
            return 1
        models = self.state.column_models[column]
        if models:  # an LLM column: as many at once as its (narrowest) model allows
            return min(m.max_parallel_requests for m in models)
        return self.state.run.non_llm_concurrency
