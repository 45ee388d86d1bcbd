"""What both engines share: the run state, row-group buffers, task execution, checkpointing.

The async (cell-level) engine and the sync (column-at-a-time) baseline differ only in *when* they
run a task. *How* a task runs — skip evaluation, building the generator's context, calling the
generator, classifying its error, recording counters, traces and failures, writing a finished row
group — lives here once, so that for the same seed and deterministic generators both engines write
identical datasets (``property_tests/test_engine_scenarios.py::check_engines_agree``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import attrs
import trio

from .._core._errorwindow import ErrorRateWindow
from .._core._tracker import GraphView
from .._exceptions import (
    GenerationError,
    ModelRateLimitedError,
    NonRetryableGenerationError,
    RetryableGenerationError,
)
from .._sink import build_table
from ..config._models import endpoint_name
from ..generators._base import CellContext, CellOutput, ColumnContext, ColumnGenerator
from ..generators._templates import evaluate_condition
from ._trace import TaskStatus, TaskTrace, TraceRecorder

logger = logging.getLogger("trio_designer.engine")

#: Pause before a salvage round re-runs an ordinary retryable failure, by attempt (seconds);
#: the last value repeats.
SALVAGE_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
#: How many tasks per unit of ``max_parallel_requests`` one endpoint may have dispatched.
BACKLOG_FACTOR = 2
#: Pause after a 429 that carried no Retry-After.
DEFAULT_RATE_LIMIT_PAUSE = 2.0


@attrs.frozen
class RowGroupPlan:
    """One row group: its id, the global index of its first row, and its size."""

    id: int
    start: int
    size: int


def plan_row_groups(
    num_records: int, row_group_size: int, *, skip: frozenset[int] = frozenset()
) -> Iterator[RowGroupPlan]:
    """Yield the row groups of a run lazily (memory O(1) in the number of groups)."""
    for rg_id, start in enumerate(range(0, num_records, row_group_size)):
        if rg_id not in skip:
            yield RowGroupPlan(rg_id, start, min(row_group_size, num_records - start))


@attrs.define(eq=False)
class ColumnCounts:
    """Per-column outcome counters of a run."""

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0


@attrs.frozen(kw_only=True)
class FailureRecord:
    """Why a row (or a whole row group) was dropped. Never contains a secret."""

    row_group: int
    row: int | None
    column: str
    error_class: str
    message: str
    attempts: int


class RowGroupBuffer:
    """The values of one row group while it is being generated.

    ``values[column][local_row]`` holds a cell's value once generated; ``skipped[column]`` the
    local rows whose cell was skipped. Cells are written only by the task that generated them.
    """

    def __init__(
        self, plan: RowGroupPlan, columns: Sequence[str], extra_columns: Sequence[str] = ()
    ) -> None:
        self.plan = plan
        self.values: dict[str, list[Any]] = {
            c: [None] * plan.size for c in (*columns, *extra_columns)
        }
        self.skipped: dict[str, set[int]] = {c: set() for c in columns}

    def row_view(self, columns: Sequence[str], row: int) -> dict[str, Any]:
        return {c: self.values[c][row] for c in columns}


TaskKind = Literal["cell", "full_column"]


class RunState:
    """Everything one run shares across row groups: configuration, generators, counters, sink.

    Args:
      graph: the execution graph (``trio_designer._graph.ExecutionGraph``).
      generators: one generator per column.
      sink: where finished row groups go (``ParquetSink`` or ``MemorySink``).
      run: the ``RunConfig``.
      num_records: rows requested.
      models: the model registry passed to generator contexts (``None`` without models).
      skip_row_groups: row groups already on disk (resume).
    """

    def __init__(
        self,
        *,
        graph: Any,
        generators: Mapping[str, ColumnGenerator],
        sink: Any,
        run: Any,
        num_records: int,
        models: Any = None,
        skip_row_groups: frozenset[int] = frozenset(),
        on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
        model_configs: Sequence[Any] = (),
    ) -> None:
        self.graph = graph
        self.view = GraphView(
            order=tuple(graph.order),
            upstream=graph.upstream,
            downstream=graph.downstream,
            strategy=graph.strategy,
            priority=graph.priority,
        )
        self.generators = generators
        self.sink = sink
        self.run = run
        self.num_records = num_records
        self.models = models
        self.model_configs = tuple(model_configs)
        self.skip_row_groups = skip_row_groups
        self.on_event = on_event
        self.ancestors = _ancestors(graph)
        self.counts = {c: ColumnCounts() for c in graph.order}
        self.failures: list[FailureRecord] = []
        self.error_window = ErrorRateWindow(run.shutdown_error_window, run.shutdown_error_rate)
        self.trace = TraceRecorder(enabled=bool(run.trace))
        self.run_scope = trio.CancelScope()
        self.early_shutdown = False
        self.rows_written = 0
        self.rows_dropped = 0
        self.row_groups_written: list[tuple[int, str, int]] = []
        self._init_backlogs()
        self._inline_columns = frozenset(
            c
            for c, g in generators.items()
            if g.strategy == "cell" and g.inline and not g.llm_bound and g._overrides("generate")
        )
        self._continuable_columns = frozenset(
            c
            for c, g in generators.items()
            if g.strategy == "cell" and not g.llm_bound and c not in self._inline_columns
        )
        # row group -> (column, error class) -> rows dropped; reported once at checkpoint.
        self._drop_causes: dict[int, dict[tuple[str, str], int]] = {}
        self.extra_columns = {c: tuple(generators[c].extra_columns()) for c in graph.order}
        self.output_columns: list[str] = []
        self.output_types: dict[str, Any] = {}
        for column in graph.order:
            if graph.configs[column].drop:
                continue
            self.output_columns.append(column)
            self.output_types[column] = generators[column].arrow_type()
            for extra in self.extra_columns[column]:
                self.output_columns.append(extra)
                self.output_types[extra] = _string_type()

    # -- per-endpoint backlog ---------------------------------------------------------------
    def _init_backlogs(self) -> None:
        """Which endpoint each LLM column calls, and how many of its tasks may be dispatched.

        Invariant: ``backlog[e] <= backlog_cap[e]`` at dispatch time: at most
        ``BACKLOG_FACTOR x max_parallel_requests`` tasks of one endpoint are dispatched and not
        finished (running or parked on its limiter). Without the cap, the cells of the
        highest-priority model (say, a generator) fill every submission and LLM-wait slot
        while parked on their own limiter, and a second model (its judge) idles for lack of a
        slot; with it, the dispatcher skips a saturated endpoint's columns and starts other
        work. Checked by ``tests/test_adaptive_e2e.py::
        test_a_saturated_model_never_starves_another``.
        """
        by_alias = {m.alias: m for m in self.model_configs}
        self.endpoint_of: dict[str, str | None] = {}
        self.backlog_cap: dict[str, int] = {}
        #: LLM-bound column -> the smallest ``max_parallel_requests`` of the models it calls
        #: (the sync engine's concurrency for that column).
        self.model_parallelism: dict[str, int] = {}
        for column in self.graph.order:
            config = self.graph.configs[column]
            aliases = [getattr(config, "model", None), *getattr(config, "models", ())]
            models = [by_alias[a] for a in aliases if a in by_alias]
            if self.graph.llm_bound[column] and models:
                self.model_parallelism[column] = min(m.max_parallel_requests for m in models)
            if not self.graph.llm_bound[column] or len(models) != 1:
                self.endpoint_of[column] = None
                continue
            model = models[0]
            endpoint = endpoint_name(model.provider, model.model)
            self.endpoint_of[column] = endpoint
            cap = BACKLOG_FACTOR * model.max_parallel_requests
            self.backlog_cap[endpoint] = min(self.backlog_cap.get(endpoint, cap), cap)
        self.backlog = dict.fromkeys(self.backlog_cap, 0)
        self.backlog_listeners: set[Callable[[], None]] = set()

    def eligible(self, column: str) -> bool:
        """Whether a task of ``column`` may be dispatched now (its endpoint is not saturated)."""
        endpoint = self.endpoint_of[column]
        return endpoint is None or self.backlog[endpoint] < self.backlog_cap[endpoint]

    def backlog_enter(self, column: str) -> None:
        endpoint = self.endpoint_of[column]
        if endpoint is not None:
            self.backlog[endpoint] += 1

    def backlog_exit(self, column: str) -> None:
        endpoint = self.endpoint_of[column]
        if endpoint is None:
            return
        self.backlog[endpoint] -= 1
        if self.backlog[endpoint] == self.backlog_cap[endpoint] - 1:
            for wake in list(self.backlog_listeners):
                wake()

    def new_buffer(self, plan: RowGroupPlan) -> RowGroupBuffer:
        extras = [e for c in self.view.order for e in self.extra_columns[c]]
        return RowGroupBuffer(plan, self.view.order, extras)

    # -- planning -------------------------------------------------------------------------
    def plans(self) -> Iterator[RowGroupPlan]:
        return plan_row_groups(self.num_records, self.run.row_group_size, skip=self.skip_row_groups)

    def emit(self, event: str, **fields: Any) -> None:
        """Record a scheduler event (in the trace) and pass it to the ``on_event`` hook."""
        self.trace.event(trio.current_time(), event, fields)
        if self.on_event is not None:
            self.on_event(event, fields)

    # -- executing one task ---------------------------------------------------------------
    def is_skipped(self, buf: RowGroupBuffer, column: str, row: int) -> bool:
        """A cell is skipped if any upstream cell of its row was, or its condition holds."""
        for up in self.graph.upstream[column]:
            if row in buf.skipped[up]:
                return True
        condition = self.graph.configs[column].skip_when
        if condition is None:
            return False
        try:
            return bool(evaluate_condition(condition, buf.row_view(self.ancestors[column], row)))
        except GenerationError:
            raise
        except Exception as exc:
            raise NonRetryableGenerationError(
                f"column '{column}': skip_when could not be evaluated for row "
                f"{buf.plan.start + row}: {exc}",
                column=column,
                row=buf.plan.start + row,
            ) from exc

    def mark_skipped(self, buf: RowGroupBuffer, column: str, row: int) -> None:
        buf.values[column][row] = self.graph.configs[column].skip_value
        buf.skipped[column].add(row)

    async def run_cell(
        self,
        buf: RowGroupBuffer,
        column: str,
        row: int,
        before_model_call: Callable[[], Awaitable[None]],
        started: list[float],
    ) -> TaskStatus:
        """Generate cell (``row``, ``column``) into ``buf``; ``skipped`` or ``ok``.

        Raises whatever the generator raises (classified by the caller).
        """
        if self.is_skipped(buf, column, row):
            self.mark_skipped(buf, column, row)
            await trio.lowlevel.checkpoint()
            started.append(trio.current_time())
            return "skipped"
        generator = self.generators[column]
        ctx = CellContext(
            column=column,
            row_index=buf.plan.start + row,
            row=buf.row_view(self.ancestors[column], row),
            seed=self.run.seed,
            before_model_call=before_model_call,
            models=self.models,
        )
        if generator.llm_bound:
            await before_model_call()
            # A drop may have cancelled us while the LLM-wait slot was being handed over; make
            # sure the generator never starts for a dropped row.
            await trio.lowlevel.checkpoint_if_cancelled()
        started.append(trio.current_time())
        _store(buf, column, row, await generator.agenerate(ctx))
        return "ok"

    def runs_inline(self, column: str) -> bool:
        """Whether cells of ``column`` run synchronously in the dispatcher: cheap, non-blocking,
        not LLM-bound cell generators (Jinja expressions). Skips the per-task machinery (slot,
        task, cancel scope), which dominates the cost of such cells."""
        return column in self._inline_columns

    def continues_in_task(self, column: str) -> bool:
        """Whether a cell of ``column`` may run in a task that just finished another cell (see
        ``_RowGroupWorker._run_task``): cell strategy, not LLM-bound, not inline — exactly the
        cells that would otherwise get a task of their own and keep their submission slot."""
        return column in self._continuable_columns

    def run_cell_inline(self, buf: RowGroupBuffer, column: str, row: int) -> TaskStatus:
        """:meth:`run_cell` for an inline column, synchronously (no checkpoint)."""
        if self.is_skipped(buf, column, row):
            self.mark_skipped(buf, column, row)
            return "skipped"
        ctx = CellContext(
            column=column,
            row_index=buf.plan.start + row,
            row=buf.row_view(self.ancestors[column], row),
            seed=self.run.seed,
            models=self.models,
        )
        _store(buf, column, row, self.generators[column].generate(ctx))
        return "ok"

    async def run_full_column(
        self,
        buf: RowGroupBuffer,
        column: str,
        live_rows: Callable[[], Sequence[int]],
        before_model_call: Callable[[], Awaitable[None]],
        started: list[float],
    ) -> TaskStatus:
        """Generate ``column`` for the surviving rows of a row group into ``buf``.

        ``live_rows`` is asked *after* the LLM-wait handoff (which may park), so rows dropped
        meanwhile are not handed to the generator.
        """
        if self.generators[column].llm_bound:
            await before_model_call()
            # As in run_cell: the handoff ends in a shielded checkpoint, so a drop or an early
            # shutdown during it is seen only here; never start the generator after one.
            await trio.lowlevel.checkpoint_if_cancelled()
        active = []
        for row in live_rows():
            if self.is_skipped(buf, column, row):
                self.mark_skipped(buf, column, row)
            else:
                active.append(row)
        if not active:
            await trio.lowlevel.checkpoint()
            started.append(trio.current_time())
            return "skipped"
        generator = self.generators[column]
        ctx = ColumnContext(
            column=column,
            row_group=buf.plan.id,
            row_indices=[buf.plan.start + r for r in active],
            rows=[buf.row_view(self.ancestors[column], r) for r in active],
            seed=self.run.seed,
            before_model_call=before_model_call,
            models=self.models,
        )
        started.append(trio.current_time())
        values = await generator.agenerate_column(ctx)
        if not isinstance(values, list) or len(values) != len(active):
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise NonRetryableGenerationError(
                f"column '{column}': a full-column generator must return a list of "
                f"{len(active)} values (one per row), got {got}",
                column=column,
            )
        for row, value in zip(active, values, strict=True):
            buf.values[column][row] = value
        return "ok"

    # -- outcomes -------------------------------------------------------------------------
    def record_success(self, column: str, status: TaskStatus, cells: int) -> None:
        counts = self.counts[column]
        if status == "skipped":
            counts.skipped += cells
        else:
            counts.ok += cells
        self._record_outcome(error=False)

    def record_failure(
        self, plan: RowGroupPlan, column: str, row: int | None, exc: BaseException, attempts: int
    ) -> None:
        self.counts[column].failed += 1
        causes = self._drop_causes.setdefault(plan.id, {})
        key = (column, type(exc).__name__)
        causes[key] = causes.get(key, 0) + 1
        self.failures.append(
            FailureRecord(
                row_group=plan.id,
                row=None if row is None else plan.start + row,
                column=column,
                error_class=type(exc).__name__,
                message=str(exc)[:500],
                attempts=attempts,
            )
        )
        logger.debug(
            "column '%s' row %s dropped after %s: %s",
            column,
            "(all rows)" if row is None else plan.start + row,
            type(exc).__name__,
            str(exc)[:200],
        )
        self._record_outcome(error=True)

    def _record_outcome(self, *, error: bool) -> None:
        if self.error_window.record(error=error) and not self.early_shutdown:
            self.early_shutdown = True
            logger.error(
                "shutting down early: %.0f%% of the last %d tasks failed; finished row groups "
                "are kept",
                100 * self.error_window.error_rate,
                self.run.shutdown_error_window,
            )
            self.emit("early_shutdown", error_rate=self.error_window.error_rate)
            self.run_scope.cancel()

    def _log_drops(self, plan: RowGroupPlan, count: int) -> None:
        """One warning per row group with drops (not one per row: a failing endpoint would
        flood the terminal), naming the causes."""
        causes = self._drop_causes.pop(plan.id, {})
        listed = ", ".join(f"{col}: {cls} x{n}" for (col, cls), n in sorted(causes.items()))
        logger.warning(
            "row group %d: %d of %d rows dropped (%s); details in failures.jsonl",
            plan.id,
            count,
            plan.size,
            listed,
        )

    def add_trace(
        self,
        *,
        plan: RowGroupPlan,
        column: str,
        row: int | None,
        dispatched: float,
        slot_acquired: float,
        started: float | None,
        status: TaskStatus,
        attempt: int,
        error: BaseException | None = None,
    ) -> None:
        """Record one attempt (``started=None``: it never reached its generator)."""
        if not self.trace.enabled:
            return
        now = trio.current_time()
        origin = self.trace.origin
        self.trace.add(
            TaskTrace(
                column=column,
                row_group=plan.id,
                row=None if row is None else plan.start + row,
                kind="full_column" if row is None else "cell",
                dispatched=dispatched - origin,
                slot_acquired=slot_acquired - origin,
                started=(now if started is None else started) - origin,
                finished=now - origin,
                status=status,
                attempt=attempt,
                error_class=None if error is None else type(error).__name__,
            )
        )

    # -- checkpoint -----------------------------------------------------------------------
    async def checkpoint(self, buf: RowGroupBuffer, dropped: frozenset[int]) -> None:
        """Write a finished row group (surviving rows, non-dropped columns) and free it.

        Shielded: a row group that finished is written even if the run is being cancelled.
        """
        live = [r for r in range(buf.plan.size) if r not in dropped]
        self.rows_dropped += len(dropped)
        if dropped:
            self._log_drops(buf.plan, len(dropped))
        with trio.CancelScope(shield=True):
            if live:
                columns = {c: [buf.values[c][r] for r in live] for c in self.output_columns}
                table = build_table(columns, self.output_types)
                path = await self.sink.write_row_group(
                    buf.plan.id, table, requested_rows=buf.plan.size
                )
                if path is not None:
                    self.row_groups_written.append((buf.plan.id, path, len(live)))
            else:
                # Recorded (rows: 0) so that a resumed run does not generate it again.
                await self.sink.write_row_group(
                    buf.plan.id,
                    _empty_table(self.output_columns, self.output_types),
                    requested_rows=buf.plan.size,
                )
                logger.warning("row group %d has no surviving rows; nothing written", buf.plan.id)
        self.rows_written += len(live)
        self.emit("row_group_checkpointed", row_group=buf.plan.id, rows=len(live))
        buf.values.clear()


def _store(buf: RowGroupBuffer, column: str, row: int, result: Any) -> None:
    if isinstance(result, CellOutput):
        buf.values[column][row] = result.value
        for extra, value in result.extras.items():
            buf.values[extra][row] = value
    else:
        buf.values[column][row] = result


def retry_delay(exc: RetryableGenerationError, attempt: int) -> float:
    """How long a deferred task waits before a salvage round may re-run it."""
    if isinstance(exc, ModelRateLimitedError):
        return exc.retry_after if exc.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
    return SALVAGE_BACKOFF[min(attempt, len(SALVAGE_BACKOFF)) - 1]


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RetryableGenerationError)


def _empty_table(columns: Sequence[str], types: Mapping[str, Any]) -> Any:
    return build_table({c: [] for c in columns}, types)


def _string_type() -> Any:
    import pyarrow as pa

    return pa.string()


def _ancestors(graph: Any) -> dict[str, tuple[str, ...]]:
    """Every column's transitive upstream columns, in topological order."""
    result: dict[str, tuple[str, ...]] = {}
    position = {c: i for i, c in enumerate(graph.order)}
    for column in graph.order:
        seen: set[str] = set()
        for up in graph.upstream[column]:
            seen.add(up)
            seen.update(result[up])
        result[column] = tuple(sorted(seen, key=position.__getitem__))
    return result
