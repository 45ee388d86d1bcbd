"""The state one run shares across its row groups: counters, failures, traces, checkpoints.

Both engines keep their run's bookkeeping in one :class:`RunState`: per-column outcome counts
(read by progress displays while the run goes on), the failure records, the early-shutdown
gate, the trace, and the writing of finished row groups to the sink. *When* tasks run is the
engines' business (:mod:`._async`, :mod:`._sync`); *how* one task runs is :mod:`._cells`'.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, get_args

import attrs
import trio

from .._core._errorwindow import ErrorRateWindow
from .._core._retry import RetryPolicy
from .._core._runbudget import RunBudget, Spend
from .._core._tracker import CompletionTracker, Task
from .._exceptions import GenerationError, ProcessorError, ProviderError, ValidationFailedError
from .._observe import TaskStatus, TaskTrace, TraceRecorder
from .._plan import ExecutionGraph
from .._sink import build_table
from .._sink._provenance import ROW_ID, CellLog
from ..config import (
    CustomColumn,
    LLMColumnConfig,
    LLMEmbeddingColumn,
    ModelConfig,
    RunConfig,
    ValidationColumn,
)
from ..generators._base import ColumnGenerator
from ._admission import BudgetGate

if TYPE_CHECKING:
    from ..models._registry import ModelRegistry

logger = logging.getLogger("trio_designer.engine")

_LLM_COLUMNS: tuple[type[LLMColumnConfig], ...] = get_args(LLMColumnConfig)

#: ``on_event(name, fields)``: the scheduler-event hook of ``TrioDesigner``.
EventHook = Callable[[str, Mapping[str, Any]], None]

#: ``await processing(row_group, table)``: the table to write instead (the pipeline's
#: per-row-group processors, ``trio_designer.processors``); called inside the shielded
#: checkpoint, so a row group is processed and written, or neither.
ProcessingHook = Callable[[int, Any], Awaitable[Any]]


class RowGroupSink(Protocol):
    """Where finished row groups go (``ParquetSink``, ``MemorySink``): the one call the engine
    makes; opening and closing the sink is the designer's."""

    async def write_row_group(
        self,
        row_group: int,
        table: Any,
        *,
        requested_rows: int,
        commit_later: bool = False,
        cells: CellLog | None = None,
        partial: bool = False,
    ) -> str | None: ...


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
    """Per-column outcome counters of a run.

    ``truncated`` counts written cells whose value is an answer cut off at ``max_tokens`` that
    the column kept (``on_truncated: keep``); it is counted when the row group is written, so
    rows dropped for another reason do not count.
    """

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    truncated: int = 0


class UnfinishedAtShutdown(GenerationError):
    """Why a row was dropped when the run shut down early (the error-rate gate) before the
    row was complete in every column. Never raised: it names the reason in the failure records
    and the provenance sidecar (``error_class: UnfinishedAtShutdown``), on the first column the
    row had not finished."""


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
    local rows whose cell was skipped; ``truncated[column]`` the local rows whose value is a kept
    cut-off answer; ``cells`` what the provenance sidecar needs beyond that (failures, retries,
    model calls). Cells are written only by the task that generated them.
    """

    def __init__(
        self, plan: RowGroupPlan, columns: Sequence[str], extra_columns: Sequence[str] = ()
    ) -> None:
        self.plan = plan
        self.values: dict[str, list[Any]] = {
            c: [None] * plan.size for c in (*columns, *extra_columns)
        }
        self.skipped: dict[str, set[int]] = {c: set() for c in columns}
        self.truncated: dict[str, set[int]] = {}
        self.cells = CellLog(plan.id, plan.start, plan.size, columns, self.skipped)

    def row_view(self, columns: Sequence[str], row: int) -> dict[str, Any]:
        return {c: self.values[c][row] for c in columns}


class RunState:
    """Everything one run shares across row groups: configuration, counters, sink, trace.

    Args:
      graph: the execution graph.
      generators: one generator per column.
      sink: where finished row groups go.
      run: the run settings.
      num_records: rows requested.
      models: the model registry passed to generator contexts (``None`` without models).
      model_configs: the pipeline's model aliases (``PipelineConfig.models``).
      skip_row_groups: row groups already on disk (resume).
      on_event: called with every scheduler event (``TrioDesigner(on_event=...)``).
      prior_spend: what the row groups written by earlier sessions spent (a resume), and
      prior_rows: their requested rows; the budgets (``RunConfig.max_cost``...) count them.
      processing: applied to each finished row group's table before it is written
        (:data:`ProcessingHook`); ``None``: written as generated.
    """

    def __init__(
        self,
        *,
        graph: ExecutionGraph,
        generators: Mapping[str, ColumnGenerator],
        sink: RowGroupSink,
        run: RunConfig,
        num_records: int,
        models: ModelRegistry | None = None,
        model_configs: Sequence[ModelConfig] = (),
        skip_row_groups: frozenset[int] = frozenset(),
        on_event: EventHook | None = None,
        prior_spend: Spend | None = None,
        prior_rows: int = 0,
        processing: ProcessingHook | None = None,
    ) -> None:
        self.graph = graph
        self.processing = processing
        self.generators = generators
        self.sink = sink
        self.run = run
        self.num_records = num_records
        self.models = models
        self.skip_row_groups = skip_row_groups
        self.on_event = on_event
        #: The run's one retry policy, read by both engines.
        self.retry = RetryPolicy.from_salvage_max_rounds(run.salvage_max_rounds)
        #: Column -> the models its tasks wait on (empty unless the column is LLM-bound).
        self.column_models = _column_models(graph, model_configs)
        #: Column -> how many of its tasks share one request (an embedding column's
        #: ``batch_size``); columns not listed send one request per task.
        self.tasks_per_request = {
            column: config.batch_size
            for column, config in graph.configs.items()
            if isinstance(config, LLMEmbeddingColumn)
        }
        self.counts = {c: ColumnCounts() for c in graph.order}
        self.failures: list[FailureRecord] = []
        self.error_window = ErrorRateWindow(run.shutdown_error_window, run.shutdown_error_rate)
        self.trace = TraceRecorder(enabled=bool(run.trace))
        #: Cancelled on early shutdown and by :meth:`stop_for`: dispatch stops, in-flight tasks
        #: are cancelled.
        self.run_scope = trio.CancelScope()
        self.early_shutdown = False
        #: Row groups written partially after an early shutdown (:meth:`checkpoint_salvaged`).
        self.partial_row_groups: list[int] = []
        #: The error that stopped the whole run (:meth:`stop_for`), raised by the designer.
        self.fatal_error: BaseException | None = None
        self.rows_written = 0
        self.rows_dropped = 0
        self.prior_spend = prior_spend or Spend()
        budget = RunBudget(run.max_cost, run.max_tokens, run.max_requests)
        #: Row-group admission's budget check (``None`` without budgets).
        self.budget_gate = (
            BudgetGate(budget, self.spent, finished=self.prior_spend, finished_rows=prior_rows)
            if budget.is_set
            else None
        )
        # Row groups this run still has to write; the last one's record entry is committed by
        # the sink's close() (commit_later), one record write fewer at the end of every run.
        self._unwritten = sum(1 for _ in self.plans())
        # row group -> (column, error class) -> rows dropped; reported once at checkpoint.
        self._drop_causes: dict[int, dict[tuple[str, str], int]] = {}
        # row group -> its cell log (provenance), from new_buffer() to checkpoint().
        self._cell_logs: dict[int, CellLog] = {}
        self._extra_columns = [e for c in graph.order for e in generators[c].extra_columns()]
        #: The response cache the models consult (``None``: no cache), and the columns whose
        #: answers it may hold.
        self.cache = getattr(models, "cache", None)  # registry look-alikes may have none
        self._cached_columns = tuple(
            c for c in graph.order if generators[c].replays_from_cache and self.cache is not None
        )
        self._output_columns: list[str] = []
        self._output_types: dict[str, Any] = {ROW_ID: _int64_type()}
        for column in graph.order:
            if graph.configs[column].drop:
                continue
            self._output_columns.append(column)
            self._output_types[column] = generators[column].arrow_type()
            extra_types = generators[column].extra_arrow_types()
            for extra in generators[column].extra_columns():
                self._output_columns.append(extra)
                self._output_types[extra] = extra_types.get(extra) or _string_type()

    # -- planning -------------------------------------------------------------------------
    def plans(self) -> Iterator[RowGroupPlan]:
        """The row groups this run generates, in order (those on disk already skipped)."""
        return plan_row_groups(self.num_records, self.run.row_group_size, skip=self.skip_row_groups)

    async def load_cached(self, plan: RowGroupPlan) -> None:
        """Load the response cache's answers for ``plan``'s rows (one query in a worker
        thread), before its cells are dispatched: their lookups are then in memory."""
        if self.cache is not None and self._cached_columns:
            stop = plan.start + plan.size
            await self.cache.prefetch(
                plan.id, self.run.seed, plan.start, stop, self._cached_columns
            )

    def forget_cached(self, plan: RowGroupPlan) -> None:
        """Let go of ``plan``'s cached answers (a row group that ends, written or not)."""
        if self.cache is not None:
            self.cache.forget_group(plan.id)

    def new_buffer(self, plan: RowGroupPlan) -> RowGroupBuffer:
        buf = RowGroupBuffer(plan, self.graph.order, self._extra_columns)
        self._cell_logs[plan.id] = buf.cells
        return buf

    def emit(self, event: str, **fields: Any) -> None:
        """Record a scheduler event (in the trace) and pass it to the ``on_event`` hook."""
        self.trace.event(trio.current_time(), event, fields)
        if self.on_event is not None:
            self.on_event(event, fields)

    # -- outcomes -------------------------------------------------------------------------
    def record_success(
        self, column: str, status: TaskStatus, cells: int, *, started: float | None = None
    ) -> None:
        counts = self.counts[column]
        if status == "skipped":
            counts.skipped += cells
        else:
            counts.ok += cells
        self._record_outcome(error=False, started=started)

    def record_successes(
        self, column: str, ok: int, skipped: int, *, started: float
    ) -> None:
        """:meth:`record_success` for ``ok`` cells and ``skipped`` cells of ``column`` that
        all started at ``started`` (the batched replay, ``_engine/_replay.py``); the caller
        keeps a batch within :meth:`successes_to_trip`, so the gate trips, if at all, at the
        batch's last cell."""
        counts = self.counts[column]
        counts.ok += ok
        counts.skipped += skipped
        if self.error_window.record_successes(ok + skipped, started=started):
            self._trip()

    def successes_to_trip(self) -> int | None:
        """How many successes in a row would shut the run down early (``None``: no run of
        successes would; see ``ErrorRateWindow.successes_to_trip``)."""
        if self.early_shutdown:
            return None
        return self.error_window.successes_to_trip()

    def record_failure(
        self,
        plan: RowGroupPlan,
        column: str,
        row: int | None,
        exc: BaseException,
        attempts: int,
        *,
        started: float | None = None,
    ) -> None:
        self.counts[column].failed += 1
        self._note_drop(plan, column, row, exc, attempts)
        causes = self._drop_causes.setdefault(plan.id, {})
        key = (column, type(exc).__name__)
        causes[key] = causes.get(key, 0) + 1
        logger.debug(
            "column '%s' row %s dropped after %s: %s",
            column,
            "(all rows)" if row is None else plan.start + row,
            type(exc).__name__,
            str(exc)[:200],
        )
        # A row a validation column rejected (drop_invalid) is a decision, not an error.
        self._record_outcome(error=not isinstance(exc, ValidationFailedError), started=started)

    def _note_drop(
        self, plan: RowGroupPlan, column: str, row: int | None, exc: BaseException, attempts: int
    ) -> None:
        """Record why ``row`` (``None``: every row) of ``plan`` was dropped at ``column``: in
        the provenance sidecar and in ``failures``."""
        log = self._cell_logs.get(plan.id)
        if log is not None:
            log.note_failure(column, row, exc, attempts, final=True)
        self.failures.append(
            FailureRecord(
                row_group=plan.id,
                row=None if row is None else plan.start + row,
                column=column,
                error_class=type(exc).__name__,
                message=final_failure_message(exc, attempts)[:500],
                attempts=attempts,
            )
        )

    def record_retry(
        self, plan: RowGroupPlan, column: str, row: int | None, exc: BaseException, attempts: int
    ) -> None:
        """A cell's attempt failed with a retryable error and will be tried again (for the
        provenance sidecar: the last failure and the attempts)."""
        log = self._cell_logs.get(plan.id)
        if log is not None:
            log.note_failure(column, row, exc, attempts, final=False)

    def spent(self) -> Spend:
        """The run's spend so far: earlier sessions' written row groups, and every request of
        this session (the model registry's usage)."""
        if self.models is None:
            return self.prior_spend
        cost, tokens, requests = 0.0, 0, 0
        for usage in self.models.usage().values():
            cost += usage.cost
            tokens += usage.input_tokens + usage.output_tokens
            requests += usage.requests
        return self.prior_spend + Spend(cost, tokens, requests)

    @property
    def budget_exhausted(self) -> bool:
        """Whether a budget stopped admission (the run ends ``budget_exhausted``)."""
        return self.budget_gate is not None and self.budget_gate.stopped

    def stop_admitting_for_budget(self) -> None:
        """Admission stopped for a budget: say so once (the groups in flight go on)."""
        gate = self.budget_gate
        assert gate is not None
        spent = self.spent()
        logger.info(
            "budget: no more row groups (%s would go past the budget); spent %s",
            " and ".join(gate.stopped_by),
            spent.to_dict(),
        )
        self.emit("budget_exhausted", budgets=list(gate.stopped_by), **spent.to_dict())

    def stop_for(self, exc: BaseException) -> None:
        """Stop the run for an error no row is to blame for (a
        :class:`~trio_designer.ProviderError`: a provider that cannot work at all).

        Cancels :attr:`run_scope` like early shutdown, so finished row groups are kept and
        in-flight ones are not written; the first such error is kept in :attr:`fatal_error`
        (for the designer to raise and record) and logged once, whichever of the requests in
        flight to the same dead provider reports it first
        (``tests/test_fail_fast.py::test_a_dead_base_url_stops_the_run_with_one_message``).
        """
        if self.fatal_error is None:
            self.fatal_error = exc
            # Info, not error: the caller gets the exception, and its message is the one a
            # user should read (the command line prints it once).
            logger.info("stopping the run: %s", exc)
            self.emit("run_failed", error_class=type(exc).__name__)
        self.run_scope.cancel()

    @staticmethod
    def stops_the_run(exc: BaseException) -> bool:
        """Whether ``exc`` fails the whole run rather than a cell (:meth:`stop_for`)."""
        return isinstance(exc, ProviderError)

    def _record_outcome(self, *, error: bool, started: float | None) -> None:
        """Feed the early-shutdown gate; when it trips, cancel :attr:`run_scope` (once).

        From then on nothing new starts (``check_nothing_starts_after_shutdown`` in
        ``property_tests/test_engine_scenarios.py``) and finished row groups are kept
        (``tests/test_engine.py::test_early_shutdown_keeps_finished_row_groups``).
        """
        # The gate orders outcomes by when their tasks started (``started``: the dispatch
        # time; ``None``, as the sync engine reports: now).
        at = trio.current_time() if started is None else started
        if self.error_window.record(error=error, started=at):
            self._trip()

    def _trip(self) -> None:
        """The gate is tripped: declare early shutdown and cancel :attr:`run_scope` (once)."""
        if not self.early_shutdown:
            self.early_shutdown = True
            logger.error(
                "shutting down early: %.0f%% of the last %d tasks to start failed (%.0f%% of "
                "the run's); finished row groups are kept, and the rows of those in flight "
                "that are complete in every column",
                100 * self.error_window.error_rate,
                self.run.shutdown_error_window,
                100 * self.error_window.cumulative_error_rate,
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
    def salvages(self) -> bool:
        """Whether a row group whose dispatch was cut short is to be written partially: the
        run shut down early (the error-rate gate cancelled :attr:`run_scope`), and not for a
        provider that stopped the run (:meth:`stop_for`). An interrupt (Ctrl-C, SIGTERM,
        ``TrioDesigner.interrupt``, an outer cancel) cancels an outer scope and leaves
        ``early_shutdown`` false: its unfinished row groups are not written."""
        return self.early_shutdown and self.fatal_error is None

    async def checkpoint_salvaged(self, buf: RowGroupBuffer, tracker: CompletionTracker) -> None:
        """Write what an early shutdown left of a row group in flight: its rows complete in
        every column; the others are dropped, each with an :class:`UnfinishedAtShutdown`
        failure record (and provenance) on the first column it had not finished. The sink's
        entry is marked partial, so a resume generates the row group again whole
        (``tests/test_early_shutdown.py``).

        Called after the row group's dispatch ended (its cell nursery is closed: no task of
        the group runs any more, so the tracker and the buffer no longer change).
        """
        plan = buf.plan
        order = self.graph.order
        unfinished: dict[int, str] = {}
        for row in tracker.live_rows():
            column = next((c for c in order if not tracker.is_done(Task(c, row))), None)
            if column is not None:
                unfinished[row] = column
        reason = UnfinishedAtShutdown(
            "not finished when the run shut down early (the error-rate gate: "
            "run.shutdown_error_rate); a resume generates this row group again"
        )
        for row, column in sorted(unfinished.items()):
            self._note_drop(plan, column, row, reason, 0)
        if unfinished:
            causes = self._drop_causes.setdefault(plan.id, {})
            key = ("(unfinished)", type(reason).__name__)
            causes[key] = causes.get(key, 0) + len(unfinished)
        dropped = tracker.dropped_rows | frozenset(unfinished)
        logger.warning(
            "row group %d: salvaging %d of %d rows after early shutdown",
            plan.id,
            plan.size - len(dropped),
            plan.size,
        )
        self.partial_row_groups.append(plan.id)
        await self.checkpoint(buf, dropped, partial=True)

    async def checkpoint(
        self, buf: RowGroupBuffer, dropped: frozenset[int], *, partial: bool = False
    ) -> None:
        """Write a finished row group (surviving rows, non-dropped columns) and free it.

        Shielded: a row group that finished is written even if the run is being cancelled
        (``tests/test_engine.py::test_cancel_keeps_finished_row_groups_and_resume_completes``).
        The run's last row group is written with ``commit_later``: the sink's ``close``, which
        the designer calls right after the engine, records it.
        """
        live = [r for r in range(buf.plan.size) if r not in dropped]
        self.rows_dropped += len(dropped)
        for column, rows in buf.truncated.items():
            self.counts[column].truncated += len(rows - dropped)
        if dropped:
            self._log_drops(buf.plan, len(dropped))
        self._unwritten -= 1
        last = self._unwritten == 0  # the sink's close() follows: it records this one
        cells = self._cell_logs.pop(buf.plan.id, buf.cells)
        cells.dropped = dropped
        start = buf.plan.start
        with trio.CancelScope(shield=True):
            if self.cache is not None:  # the answers this group paid for, stored
                await self.cache.finish_group(buf.plan.id)
            # An empty table is recorded too (rows: 0), so that a resumed run does not
            # generate the row group again.
            columns = {ROW_ID: [start + r for r in live]}
            columns.update((c, [buf.values[c][r] for r in live]) for c in self._output_columns)
            table = build_table(columns, self._output_types)
            if self.processing is not None:
                try:
                    table = await self.processing(buf.plan.id, table)
                except ProcessorError as exc:
                    self.stop_for(exc)  # the run stops; the finished row groups are kept
                    return
                cells.filtered = _filtered_rows(start, live, table)
            await self.sink.write_row_group(
                buf.plan.id,
                table,
                requested_rows=buf.plan.size,
                commit_later=last,
                cells=cells,
                partial=partial,
            )
            if not live:
                logger.warning("row group %d has no surviving rows; nothing written", buf.plan.id)
        written = table.num_rows
        self.rows_written += written
        if self.budget_gate is not None:
            self.budget_gate.finished_group(buf.plan.size, Spend(*cells.spend()))
        self.emit("row_group_checkpointed", row_group=buf.plan.id, rows=written)
        buf.values.clear()


def _filtered_rows(start: int, live: Sequence[int], table: Any) -> frozenset[int]:
    """The local rows among ``live`` that the processors removed: those whose row id is no
    longer in the processed ``table`` (provenance status ``filtered``). A processor that
    drops the row-id column leaves nothing to compare: no row is marked."""
    if ROW_ID not in table.column_names or table.num_rows == len(live):
        return frozenset()
    kept = set(table.column(ROW_ID).to_pylist())
    return frozenset(r for r in live if start + r not in kept)


def _column_models(
    graph: ExecutionGraph, model_configs: Sequence[ModelConfig]
) -> dict[str, tuple[ModelConfig, ...]]:
    """Column -> the configs of the models its tasks wait on: the models an LLM-bound column
    names (an LLM column's ``model``, a custom column's ``models``); nothing for the rest."""
    by_alias = {m.alias: m for m in model_configs}
    result: dict[str, tuple[ModelConfig, ...]] = {}
    for column in graph.order:
        config = graph.configs[column]
        aliases: tuple[str, ...] = ()
        if isinstance(config, CustomColumn):
            aliases = config.models
        elif isinstance(config, (_LLM_COLUMNS, LLMEmbeddingColumn)):
            aliases = (config.model,)
        elif isinstance(config, ValidationColumn) and config.model is not None:
            aliases = (config.model,)  # a remote validator's endpoint
        known = tuple(by_alias[a] for a in aliases if a in by_alias)
        result[column] = known if graph.llm_bound[column] else ()
    return result


def _int64_type() -> Any:
    import pyarrow as pa

    return pa.int64()


def _string_type() -> Any:
    import pyarrow as pa

    return pa.string()


def final_failure_message(exc: BaseException, attempts: int) -> str:
    """What a failure record says of the failure that dropped a row: the error's own message,
    after "gave up after N attempts" when the error was a retryable one whose retries ran out.
    Model errors never promise a retry themselves; only the engine knows the last one
    (``tests/test_engine.py::test_the_last_failure_of_a_cell_says_it_gave_up``)."""
    if RetryPolicy.is_retryable(exc):
        plural = "" if attempts == 1 else "s"
        return f"gave up after {attempts} attempt{plural}: {exc}"
    return str(exc)
