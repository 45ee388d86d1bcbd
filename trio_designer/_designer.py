"""The public entry point: ``TrioDesigner`` and the ``RunResult`` it returns.

Async-native: ``await TrioDesigner().create(config, num_records=..., output_dir=...)`` runs inside
the caller's own ``trio.run`` (and nursery, if they like); ``create_sync`` / ``preview_sync`` wrap
it in a private ``trio.run`` for scripts without an event loop; asyncio code and Jupyter cells
await ``trio_designer.aio.create`` / ``preview``. Each entry point checks its caller first
(:mod:`._eventloop`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import trio

from ._core._runbudget import Spend
from ._engine._async import AsyncEngine
from ._engine._collector import collector_tuned
from ._engine._dispatch import SlotStatistics
from ._engine._state import ColumnCounts, FailureRecord, RunState
from ._engine._sync import run_sync
from ._eventloop import check_sync_caller, check_trio_caller
from ._exceptions import ConfigError, MissingDependencyError, RunInterrupted
from ._interrupt import RecordedStatus, RunControl, stop_record
from ._observe import TaskTrace, make_reporter, resolve_progress
from ._plan import ExecutionGraph
from ._seed import OpenSeed, open_seed
from ._sink import SUMMARY_ROW_GROUPS_FOUND
from .config import PipelineConfig
from .config._columns import template_fields
from .generators._base import ColumnGenerator
from .generators._registry import build_generator
from .generators._seed import SeedReader
from .generators._templates import precompile
from .processors._chain import ProcessorChain, finish_dataset, processed_files
from .processors._run import RowGroupProcessing, earlier_reports, output_columns

if TYPE_CHECKING:
    from .models._registry import ModelRegistry

_logger = logging.getLogger("trio_designer")

EngineName = Literal["async", "sync"]
#: How a run that returned a result ended. A run that is interrupted returns nothing: after
#: the finished row groups and ``metadata.json`` (``status: "interrupted"``) are written,
#: :meth:`TrioDesigner.interrupt` makes ``create`` raise :class:`RunInterrupted`, and a
#: cancellation from outside (an outer cancel scope, Ctrl-C) propagates, as trio requires.
#: A run that an exception ended records ``status: "failed"`` and re-raises it.
RunStatus = Literal["complete", "early_shutdown", "budget_exhausted"]


@attrs.frozen(kw_only=True)
class ColumnSummary:
    """Outcome counts of one column over a run."""

    ok: int
    """Cells generated (a full-column task counts one per row)."""
    skipped: int
    """Cells skipped by ``skip_when`` or because an upstream cell was skipped."""
    failed: int
    """Tasks that failed for good (each dropped a row, or a whole row group)."""
    retried: int
    """Retryable failures that were deferred and retried."""
    cancelled: int
    """Cells cancelled because a sibling cell of their row failed, or the run stopped."""
    truncated: int = 0
    """Written cells whose value is an answer cut off at ``max_tokens``, kept because the
    column says ``on_truncated: keep`` (the side column ``<name>__truncated`` marks which)."""


@attrs.frozen(kw_only=True)
class RunResult:
    """What a run produced.

    Attributes:
      status: ``complete``, ``early_shutdown`` (the error-rate gate tripped), or
        ``budget_exhausted`` (a budget stopped admitting row groups: what was written is kept,
        and a resume with a larger budget continues). An interrupted run returns no result
        (see :data:`RunStatus`).
      engine: ``async`` or ``sync``.
      num_records_requested: rows asked for.
      num_records_written: rows written by this run (surviving rows of the row groups it
        finished; ``table`` holds the whole dataset, earlier runs' rows included).
      num_rows_dropped: rows dropped by failures in finished row groups (and, after an early
        shutdown, the rows of the row groups in flight that were not complete in every column).
      columns: per-column outcome counts.
      failures: why each dropped row was dropped.
      output_dir: the output directory (``None`` for a preview).
      files: every parquet file of the dataset, relative to ``output_dir``, in row-group order
        (a resumed run lists the earlier runs' files too).
      traces: per-task traces (empty unless ``RunConfig.trace``).
      elapsed: wall time of the run in seconds (``trio.current_time`` units).
      usage: token and request usage per model alias.
      model_limits: final statistics of each endpoint's adaptive limiter, by
        ``"provider:model"``.
      slots: occupancy statistics of the submission / LLM-wait pools (async engine).
      cache: what the response cache did (``directory``, ``key_version``, ``hits``,
        ``misses``, ``stored``, ``loaded``, ``corrupt``, ``write_errors``); empty when the run
        had no cache.
      budget: with budgets (``RunConfig.max_cost``...): ``{"limits", "spent", "stopped_by"}``
        (spent over the whole run, earlier sessions' written row groups included); ``None``
        without.
      processors: rows in, rows out and why, per processor (by its label), with its
        ``stage`` (``row_group`` or ``after_run``).
      processed_files: the files of ``processed/`` (relative to ``output_dir``) when the
        pipeline has a processor that needs the whole dataset (``dedup``): then ``table``
        reads them; ``None`` otherwise.
      partial_row_groups: after an early shutdown, the row groups that were in flight and were
        written with only their rows complete in every column (a resume generates them again
        whole); empty otherwise.
    """

    status: RunStatus
    engine: EngineName
    num_records_requested: int
    num_records_written: int
    num_rows_dropped: int
    columns: Mapping[str, ColumnSummary]
    failures: tuple[FailureRecord, ...]
    output_dir: Path | None
    files: tuple[str, ...]
    traces: tuple[TaskTrace, ...]
    elapsed: float
    usage: Mapping[str, Any] = attrs.field(factory=dict)
    model_limits: Mapping[str, Any] = attrs.field(factory=dict)
    slots: SlotStatistics | None = None
    budget: Mapping[str, Any] | None = None
    _memory_table: Any = attrs.field(default=None, repr=False, alias="memory_table")
    cache: Mapping[str, Any] = attrs.field(factory=dict)
    _memory_cells: Any = attrs.field(default=None, repr=False, alias="memory_cells")
    processors: Mapping[str, Any] = attrs.field(factory=dict)
    processed_files: tuple[str, ...] | None = None
    partial_row_groups: tuple[int, ...] = ()

    @property
    def table(self) -> Any:
        """The dataset as a ``pyarrow.Table`` (read from disk for ``create`` runs)."""
        if self._memory_table is not None:
            return self._memory_table
        import pyarrow as pa
        import pyarrow.dataset as ds

        files = self.files if self.processed_files is None else self.processed_files
        if self.output_dir is None or not files:
            return pa.table({})
        paths = [str(self.output_dir / f) for f in files]
        return ds.dataset(paths, format="parquet").to_table()

    def to_arrow(self) -> Any:
        """The dataset as a ``pyarrow.Table`` (the same as :attr:`table`). Struct columns
        (structured and judge values) stay structs, embeddings lists of float32."""
        return self.table

    def to_pandas(self) -> Any:
        """The dataset as a pandas ``DataFrame``; struct values become dicts, lists arrays.

        Raises:
          MissingDependencyError: pandas is not installed (``pip install
            'trio_designer[pandas]'``).
        """
        _optional("pandas", "RunResult.to_pandas()")
        return self.table.to_pandas()

    def to_polars(self) -> Any:
        """The dataset as a polars ``DataFrame``; struct columns stay structs
        (``df["product"].struct.field("price")``).

        Raises:
          MissingDependencyError: polars is not installed (``pip install
            'trio_designer[polars]'``).
        """
        polars = _optional("polars", "RunResult.to_polars()")
        return polars.from_arrow(self.table)

    @property
    def cells(self) -> Any:
        """Per-cell provenance as a ``pyarrow.Table``: one record per (row, column) with its
        status, attempts, last error, model, tokens, latency and cost; joins the dataset on
        ``row_id`` = ``_row_id`` (columns in [cost.md](../docs/cost.md)). Read from the
        ``provenance/`` files for ``create`` runs (earlier sessions' row groups included)."""
        if self._memory_cells is not None:
            return self._memory_cells()  # built when asked: a preview never pays for it
        from ._sink import read_cells

        if self.output_dir is None:
            from ._sink import CELLS_SCHEMA

            return CELLS_SCHEMA.empty_table()
        return read_cells(self.output_dir)


def _optional(package: str, what: str) -> Any:
    """Import an optional extra (its extra has the package's name), or say how to install it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingDependencyError(what, package=package, extra=package) from exc


class TrioDesigner:
    """Runs pipelines.

    Args:
      engine: ``"async"`` (cell-level scheduling, the default) or ``"sync"`` (column at a time,
        the baseline kept for benchmarks and parity checks).
      on_event: called with ``(event_name, fields)`` for scheduler events (row group admitted /
        checkpointed, salvage rounds, early shutdown); used by progress displays.
      simulator_models: how the built-in simulated endpoint behaves for each model id of the
        ``simulator`` provider (latency, capacity, faults); ids not listed get the defaults.
      progress: live progress on stderr: ``False`` (default, none), ``True`` or ``"auto"``
        (sticky bars on a terminal, a plain-text block every few seconds otherwise),
        ``"plain"``, ``"rich"``, or a number (plain text every that many seconds).
      limiter_factory: builds each model endpoint's concurrency limiter from
        ``(endpoint_name, max_parallel_requests)``. ``None`` (the default) is an
        :class:`AdaptiveLimiter` with the default policy; ``StaticLimiter`` keeps a fixed limit
        (a known capacity, or benchmarks); ``functools.partial(AdaptiveLimiter, policy=...)``
        tunes the adaptive one. Limit changes reach ``on_event`` and traces only from
        ``AdaptiveLimiter`` (or a partial of it).
      cache: keep every paid model answer in the response cache and serve it again to the
        same request of the same cell (see ``docs/cache.md``). ``None`` (the default): on,
        unless the environment variable ``TRIO_DESIGNER_CACHE`` is ``off`` (then on only when
        ``cache_dir`` is given); ``False``: off.
      cache_dir: the cache's directory, instead of the config's ``run.cache_dir`` or the
        default ``$XDG_CACHE_HOME/trio_designer`` (``~/.cache/trio_designer``).

    Example::

        async def main():
            result = await TrioDesigner().create(config, num_records=100, output_dir="out")
            print(result.num_records_written)

        trio.run(main)
    """

    def __init__(
        self,
        *,
        engine: EngineName = "async",
        on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
        simulator_models: Sequence[Any] | None = None,
        progress: bool | float | str = False,
        limiter_factory: Callable[[str, int], Any] | None = None,
        cache: bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if engine not in ("async", "sync"):
            raise ConfigError(f"engine: unknown engine {engine!r}; use 'async' or 'sync'")
        self.engine: EngineName = engine
        self.on_event = on_event
        self.simulator_models = simulator_models
        resolve_progress(progress)  # a bad value fails here, before anything runs
        self.progress = progress
        self.limiter_factory = limiter_factory
        self.cache = cache
        self.cache_dir = cache_dir
        self._runs: set[RunControl] = set()

    def interrupt(self, reason: str = "interrupted", *, resume_hint: str | None = None) -> int:
        """Stop every run of this designer in progress, cleanly, as Ctrl-C stops a CLI run.

        Each run drains: in-flight row groups are cancelled and not written, finished ones stay
        on disk, ``metadata.json`` records ``status: "interrupted"`` with ``reason`` and
        ``resume_hint`` under ``summary.stopped``, and then ``create`` / ``preview`` raise
        :class:`RunInterrupted` (``resume=True`` continues a ``create`` run). Call it from a
        task of the same ``trio.run`` (a signal watcher, a deadline, a UI button).

        Args:
          reason: why, recorded and shown (the command line passes ``"SIGTERM"``/``"SIGINT"``).
          resume_hint: how to continue, recorded (default: call ``create`` again with
            ``resume=True``).

        Returns:
          How many runs were stopped (``0``: none was in progress; nothing happens).
        """
        for control in self._runs:
            control.stop(reason, resume_hint)
        return len(self._runs)

    async def create(
        self,
        config: PipelineConfig,
        *,
        num_records: int,
        output_dir: str | os.PathLike[str],
        resume: bool = False,
        force_resume: bool = False,
    ) -> RunResult:
        """Generate ``num_records`` rows and write them under ``output_dir`` as parquet.

        Args:
          config: the pipeline.
          num_records: rows to generate in total.
          output_dir: where the dataset and its run record go.
          resume: continue the run already in ``output_dir`` (same fingerprint: same config,
            same custom code); its finished row groups are kept.
          force_resume: continue it even though the config or the custom code changed (the
            refusal lists what changed). The rows already written keep their old values; the
            forced resume is recorded in ``metadata.json``. Implies ``resume``.

        Raises:
          ConfigError: the configuration is invalid (raised before any request is sent).
          SinkError: the output directory holds a different run, or writing failed.
          RunInterrupted: :meth:`interrupt` stopped the run; finished row groups are on disk.
          EventLoopError: not awaited by a Trio task (under asyncio, use
            ``trio_designer.aio.create``).
        """
        check_trio_caller("create")
        return await self._create(
            config,
            num_records=num_records,
            output_dir=output_dir,
            resume=resume,
            force_resume=force_resume,
        )

    async def _create(
        self,
        config: PipelineConfig,
        *,
        num_records: int,
        output_dir: str | os.PathLike[str],
        resume: bool = False,
        force_resume: bool = False,
        row_groups: range | None = None,
        identity: PipelineConfig | None = None,
    ) -> RunResult:
        """:meth:`create`, for a shard too (``trio_designer._scaleout``): only the row groups
        in ``row_groups`` (global ids; ``None``: all of them) are generated, and ``identity``
        (default ``config``) is the config the fingerprint and the record are made of — a
        shard runs with its share of each model's limits, but is the same run."""
        from ._sink import ParquetSink
        from .config._fingerprint import fingerprint_basis, fingerprint_of

        identity = config if identity is None else identity
        graph, generators, seed, chain = _prepare(config, num_records, await _open_seed(config))
        try:
            # The record's copy of the config; the fingerprint's basis is made from it (one
            # conversion instead of two, before the first request).
            described = identity.to_dict(lenient=True)
            basis_of = partial(fingerprint_basis, identity, config_dict=described)
            # Hashing a seed's files reads them: off the trio thread (without a seed, inline).
            basis = basis_of() if seed is None else await trio.to_thread.run_sync(basis_of)
        except ConfigError as exc:
            raise config.located(exc) from exc.__cause__
        if seed is not None:
            basis["files"].update(seed.identity())
        resume = resume or force_resume
        if resume and chain.row_group_steps:
            chain.merge_earlier(earlier_reports(Path(output_dir)))
        changes = _LimitChanges()
        with self._controlled(Path(output_dir)) as control, _single_error(), collector_tuned():
            async with (
                self._open_cache(config) as cache,
                self._open_models(config, changes, cache) as models,
                _beside_the_run(models) as beside,
            ):
                # The dataset card (README.md) is written with the final record (a run that
                # ended without an error), built while the row groups are written.
                sink = ParquetSink(output_dir, card=True)
                # Refusals (another run in the directory...) are raised here, before any
                # request; the folders and the first record are written once the first
                # requests are out (writes and close wait for them).
                await sink.open(
                    fingerprint=fingerprint_of(basis),
                    config=described,
                    num_records=num_records,
                    row_group_size=config.run.row_group_size,
                    resume=resume,
                    background=beside.nursery,
                    fingerprint_basis=basis,
                    force_resume=force_resume,
                    defer_preparation=True,
                )
                beside.when_first_wave_out(sink.start_preparing)
                # The generators' once-per-run work (a judge's instructions and validator),
                # done while the first requests wait for their answers, not by the first cell
                # of each column in the middle of a wave.
                beside.when_first_wave_out(partial(_prepare_generators, generators))
                done = frozenset(sink.completed_row_groups()) if resume else frozenset()
                prior = await _prior_spend(Path(output_dir), sink, done, config)
                found = len(done)
                if row_groups is not None:
                    found = len(done & frozenset(row_groups))
                    done |= _outside(row_groups, num_records, config.run.row_group_size)
                result = await self._execute(
                    config,
                    graph,
                    generators,
                    sink,
                    num_records,
                    Path(output_dir),
                    done,
                    models,
                    changes,
                    control,
                    chain,
                    prior,
                    found=found,
                )
            return result
        raise AssertionError("unreachable: _controlled raises when the run was stopped")

    async def preview(self, config: PipelineConfig, *, num_records: int = 5) -> RunResult:
        """Generate ``num_records`` rows in memory (nothing written); for a quick look.

        Raises:
          ConfigError: the configuration is invalid (raised before any request is sent).
          RunInterrupted: :meth:`interrupt` stopped the preview (nothing is kept).
          EventLoopError: not awaited by a Trio task (under asyncio, use
            ``trio_designer.aio.preview``).
        """
        check_trio_caller("preview")
        from ._sink import MemorySink

        graph, generators, _, chain = _prepare(config, num_records, await _open_seed(config))
        changes = _LimitChanges()
        with self._controlled(None) as control, _single_error(), collector_tuned():
            async with (
                self._open_cache(config) as cache,
                self._open_models(config, changes, cache) as models,
                _beside_the_run(models),
            ):
                sink = MemorySink()
                await sink.open(
                    fingerprint="preview",
                    config={},
                    num_records=num_records,
                    row_group_size=config.run.row_group_size,
                )
                result = await self._execute(
                    config,
                    graph,
                    generators,
                    sink,
                    num_records,
                    None,
                    frozenset(),
                    models,
                    changes,
                    control,
                    chain,
                )
        table = sink.table()
        reports = dict(result.processors)
        if chain.has_after_run_stage:
            table, after = _preview_after_run(chain, table)
            reports.update(after)
        return attrs.evolve(
            result, memory_table=table, memory_cells=sink.cells_table, processors=reports
        )

    def create_sync(
        self,
        config: PipelineConfig,
        *,
        num_records: int,
        output_dir: str | os.PathLike[str],
        resume: bool = False,
        force_resume: bool = False,
    ) -> RunResult:
        """``create`` for code outside an event loop (runs its own ``trio.run``).

        Raises:
          EventLoopError: called inside ``trio.run`` or while an asyncio loop runs in this
            thread (a Jupyter cell): it would block that loop; the message says what to await.
          ConfigError, SinkError: as :meth:`create`.
        """
        check_sync_caller("create")
        return trio.run(
            partial(
                self.create,
                config,
                num_records=num_records,
                output_dir=output_dir,
                resume=resume,
                force_resume=force_resume,
            )
        )

    def preview_sync(self, config: PipelineConfig, *, num_records: int = 5) -> RunResult:
        """``preview`` for code outside an event loop.

        Raises:
          EventLoopError: called inside ``trio.run`` or while an asyncio loop runs in this
            thread; the message says what to await instead.
          ConfigError: as :meth:`preview`.
        """
        check_sync_caller("preview")
        return trio.run(partial(self.preview, config, num_records=num_records))

    @contextmanager
    def _controlled(self, output_dir: Path | None) -> Iterator[RunControl]:
        """Run the body under a :class:`RunControl` that :meth:`interrupt` can stop; raise
        :class:`RunInterrupted` when it did."""
        control = RunControl()
        self._runs.add(control)
        try:
            with control.scope:
                yield control
        finally:
            self._runs.discard(control)
        if control.stopped:
            raise RunInterrupted(
                reason=control.reason or "interrupted",
                output_dir=output_dir,
                rows_written=control.rows_written,
            )

    def _open_cache(self, config: PipelineConfig) -> AbstractAsyncContextManager[Any]:
        """The response cache (``models/_cached.py``), or nothing: off, or no model to call."""
        from ._cache import resolve_cache_dir
        from ._cache._location import cache_on_by_default

        if self.cache is not None:
            enabled = self.cache
        else:  # an explicit directory asks for the cache
            enabled = self.cache_dir is not None or cache_on_by_default()
        if not enabled or not config.models:
            return nullcontext(None)
        from .models._cached import ResponseCache

        explicit = self.cache_dir if self.cache_dir is not None else config.run.cache_dir
        return ResponseCache.open(resolve_cache_dir(explicit))

    def _open_models(
        self, config: PipelineConfig, changes: _LimitChanges, cache: Any = None
    ) -> AbstractAsyncContextManager[Any]:
        """The model registry (clients, limiters, embedded simulator), or nothing without
        models."""
        if not config.models:
            return nullcontext(None)
        from .models._limiter import AdaptiveLimiter
        from .models._registry import open_model_registry, reports_limit_changes

        factory = self.limiter_factory or AdaptiveLimiter
        return open_model_registry(
            config,
            simulator_models=self.simulator_models,
            limiter_factory=factory,
            on_limit_change=changes if reports_limit_changes(factory) else None,
            cache=cache,
        )

    async def _execute(
        self,
        config: PipelineConfig,
        graph: ExecutionGraph,
        generators: Mapping[str, ColumnGenerator],
        sink: Any,
        num_records: int,
        output_dir: Path | None,
        done: frozenset[int],
        models: ModelRegistry | None,
        changes: _LimitChanges,
        control: RunControl,
        chain: ProcessorChain,
        prior: tuple[Spend, int] | None = None,
        found: int | None = None,
    ) -> RunResult:
        prior_spend, prior_rows = prior or (Spend(), 0)
        state = RunState(
            graph=graph,
            generators=generators,
            sink=sink,
            run=config.run,
            num_records=num_records,
            skip_row_groups=done,
            on_event=self.on_event,
            model_configs=config.models,
            models=models,
            prior_spend=prior_spend,
            prior_rows=prior_rows,
            processing=RowGroupProcessing(chain, output_dir) if chain.row_group_steps else None,
        )
        changes.state = state
        engine = AsyncEngine.for_run(state) if self.engine == "async" else None
        start = trio.current_time()
        state.trace.origin = start
        status: RecordedStatus = "interrupted"
        stopped: dict[str, Any] | None = None
        try:
            await self._run_engine(state, engine)
            if state.fatal_error is not None:
                raise state.fatal_error
            status = _outcome(state)
        except BaseException as exc:
            status, stopped = stop_record(control, exc) or (status, None)
            raise
        finally:
            control.rows_written = state.rows_written
            with trio.CancelScope(shield=True):
                if (
                    output_dir is not None
                    and (state.failures or state.trace.enabled)
                    # The folders exist (a deferred preparation may not have started yet).
                    and await sink.wait_prepared()
                ):
                    await trio.to_thread.run_sync(
                        partial(_write_artifacts, output_dir, state, self.engine)
                    )
                summary = _summary(state, status, stopped)
                if chain.row_group_steps:
                    summary["processors"] = chain.report()
                if found is not None:
                    summary[SUMMARY_ROW_GROUPS_FOUND] = found
                await sink.close(status=status, summary=summary)
        reports: dict[str, Any] = chain.report()
        processed: tuple[str, ...] | None = None
        if output_dir is not None and status == "complete" and chain:
            after = await trio.to_thread.run_sync(
                partial(finish_dataset, chain, output_dir, _dataset_files(sink))
            )
            reports.update(after)
            if chain.has_after_run_stage:
                processed = processed_files(output_dir)
        return RunResult(
            status=_outcome(state),
            engine=self.engine,
            num_records_requested=num_records,
            num_records_written=state.rows_written,
            num_rows_dropped=state.rows_dropped,
            columns={c: _column_summary(n) for c, n in state.counts.items()},
            failures=tuple(state.failures),
            output_dir=output_dir,
            files=_dataset_files(sink),
            traces=tuple(state.trace.records),
            elapsed=trio.current_time() - start,
            slots=None if engine is None else engine.slots.statistics(),
            budget=budget_record(state),
            usage=usage_dicts(models),
            model_limits={}
            if models is None
            else {name: lim.statistics() for name, lim in models.limiters().items()},
            cache={} if state.cache is None else state.cache.statistics().to_dict(),
            processors=reports,
            processed_files=processed,
            partial_row_groups=tuple(sorted(state.partial_row_groups)),
        )

    async def _run_engine(self, state: RunState, engine: AsyncEngine | None) -> None:
        """Run ``engine`` (the async one), or the sync baseline when it is ``None``."""
        reporter = make_reporter(self.progress, state)
        async with trio.open_nursery() as nursery:
            if reporter is not None:
                nursery.start_soon(reporter.run)
            outcome: RecordedStatus = "interrupted"  # what metadata.json records, too
            try:
                if engine is not None:
                    await engine.run()
                else:
                    await run_sync(state)
                outcome = _outcome(state)
            finally:
                nursery.cancel_scope.cancel()
                if reporter is not None:
                    reporter.final(outcome)


class _Beside:
    """Work beside a run (:func:`_beside_the_run`): its nursery, and the moment the first wave
    of requests is out."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.first_wave_out = trio.Event()

    def when_first_wave_out(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` once the first wave of requests is out (at once if it is, or if the
        run has no models): for work the first requests do not need, whose CPU would delay
        them (the sink's preparation: a worker thread holding the GIL while the first
        requests are built, ``benches/small_runs.py``'s "first request")."""
        if self.first_wave_out.is_set():
            fn()
            return

        async def later() -> None:
            await self.first_wave_out.wait()
            fn()

        self.nursery.start_soon(later)


def _prepare_generators(generators: Mapping[str, ColumnGenerator]) -> None:
    """``_prepare_ahead`` each generator (best effort: work a cell would do anyway)."""
    for generator in generators.values():
        try:
            generator._prepare_ahead()
        except Exception:  # a cell that needs what failed fails with it, as before
            continue


@asynccontextmanager
async def _beside_the_run(models: ModelRegistry | None) -> AsyncIterator[_Beside]:
    """A nursery for work beside a run: the sink's background preparation, and connections
    to the providers warmed up while the run starts (``ModelRegistry.warm_up``: no request,
    only connecting, so the first requests find connections ready). The warm-up is cancelled
    when the run ends. ``first_wave_out`` is set once the warm-up saw the first wave of
    requests out (``ModelRegistry.top_up``'s test), when the warm-up ends otherwise, and
    at once without models."""
    async with trio.open_nursery() as nursery:
        beside = _Beside(nursery)
        warm = trio.CancelScope()
        if models is not None:
            nursery.start_soon(_warm_up, models, warm, beside.first_wave_out)
        else:
            beside.first_wave_out.set()
        try:
            yield beside
        finally:
            warm.cancel()
            beside.first_wave_out.set()


async def _warm_up(models: ModelRegistry, scope: trio.CancelScope, out: trio.Event) -> None:
    """Connect before the first requests need it; then, once the first wave of requests is
    out, open the connections the answers' follow-up requests will need
    (``ModelRegistry.top_up``), and set ``out``."""
    try:
        with scope:
            await models.warm_up()
            await models.top_up()
    finally:
        out.set()


@contextmanager
def _single_error() -> Iterator[None]:
    """What ends a run reaches the caller as itself (a ``ProviderError``, the ``SinkError`` of
    the sink's background preparation, a ``KeyboardInterrupt``), not inside the
    ``ExceptionGroup`` of the nursery the sink prepares in. Groups of cancellations are left
    to trio's cancel scopes."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
            raise leaves[0]  # noqa: B904 (its own cause and traceback are kept)
        raise


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


class _LimitChanges:
    """Forwards the adaptive limiters' limit changes to the running state as ``limit_change``
    scheduler events (traces, progress, ``on_event``). The registry opens before the state
    exists, hence the indirection."""

    def __init__(self) -> None:
        self.state: RunState | None = None

    def __call__(self, endpoint: str, change: Any) -> None:
        if self.state is not None:
            from ._observe import limit_change_fields

            self.state.emit("limit_change", **limit_change_fields(endpoint, change))


async def _open_seed(config: PipelineConfig) -> OpenSeed | None:
    """The config's seed, opened in a worker thread (a CSV is parsed, a hub dataset loaded);
    ``None`` without one.

    Raises:
      ConfigError: the seed's problems (``trio_designer._seed.open_seed``), located.
    """
    if config.seed is None:
        return None
    try:
        return await trio.to_thread.run_sync(open_seed, config)
    except ConfigError as exc:
        raise config.located(exc) from exc.__cause__


def _prepare(
    config: PipelineConfig, num_records: int, seed: OpenSeed | None
) -> tuple[ExecutionGraph, dict[str, ColumnGenerator], OpenSeed | None, ProcessorChain]:
    """Validate everything that can be validated without a request; build the generators and
    the processors (``seed``: the config's seed, opened by :func:`_open_seed`)."""
    if not isinstance(num_records, int) or num_records < 1:
        raise ConfigError(f"num_records: must be a positive integer, got {num_records!r}")
    try:
        graph = ExecutionGraph.from_config(
            config, seed_columns=None if seed is None else seed.columns
        )
        code = config.code_search()
        reader = None if seed is None else SeedReader(seed)
        generators = {
            name: build_generator(graph.configs[name], code=code, seed=reader)
            for name in graph.order
        }
        for column in config.columns:
            for field, source in template_fields(column).items():
                precompile(source, column=column.name, field=field)
        chain = ProcessorChain(
            config.processors,
            columns=output_columns(graph.order, graph.configs, generators),
            search=code,
        )
    except ConfigError as exc:
        raise config.located(exc) from exc.__cause__

    return graph, generators, seed, chain


def _preview_after_run(chain: ProcessorChain, table: Any) -> tuple[Any, dict[str, Any]]:
    """A preview's table through the after-run stage, in memory (nothing written)."""
    from .processors._chain import preview_after_run

    return preview_after_run(chain, table)


def _outside(row_groups: range, num_records: int, row_group_size: int) -> frozenset[int]:
    """The row groups of a run of ``num_records`` that are not in ``row_groups``."""
    total = -(-num_records // row_group_size)
    return frozenset(range(total)) - frozenset(row_groups)


def _dataset_files(sink: Any) -> tuple[str, ...]:
    """The dataset's parquet files (this run's and, after a resume, earlier runs'), in
    row-group order."""
    files: tuple[str, ...] = sink.data_files()
    return files


def _write_artifacts(output_dir: Path, state: RunState, engine: str) -> None:
    from ._observe import write_trace
    from ._sink import append_failures

    if state.failures:
        append_failures(output_dir, state.failures)
    if state.trace.enabled:
        write_trace(output_dir, state.trace, engine=engine)


async def _prior_spend(
    output_dir: Path, sink: Any, done: frozenset[int], config: PipelineConfig
) -> tuple[Spend, int] | None:
    """What the row groups already on disk spent (their provenance files), for the budgets of
    a resumed run; ``None`` without budgets or nothing on disk."""
    run = config.run
    if not done or all(b is None for b in (run.max_cost, run.max_tokens, run.max_requests)):
        return None
    from ._sink import recorded_spend

    entries = sink.metadata()["row_groups"]
    kept = {rg: entry for rg, entry in entries.items() if int(rg) in done}
    cost, tokens, requests, rows = await trio.to_thread.run_sync(
        recorded_spend, output_dir, kept
    )
    return Spend(cost, tokens, requests), rows


def budget_record(state: RunState) -> dict[str, Any] | None:
    """The run's budgets, what it spent (earlier sessions' written row groups included) and
    which budget stopped it; ``None`` without budgets."""
    gate = state.budget_gate
    if gate is None:
        return None
    return {
        "limits": gate.budget.to_dict(),
        "spent": state.spent().to_dict(),
        "stopped_by": list(gate.stopped_by),
    }


def _outcome(state: RunState) -> RunStatus:
    """How a run that returned ended: early shutdown first (it cancelled work), then a budget
    (it only stopped admitting), else complete."""
    if state.early_shutdown:
        return "early_shutdown"
    return "budget_exhausted" if state.budget_exhausted else "complete"


def _column_summary(counts: ColumnCounts) -> ColumnSummary:
    return ColumnSummary(
        ok=counts.ok,
        skipped=counts.skipped,
        failed=counts.failed,
        retried=counts.retried,
        cancelled=counts.cancelled,
        truncated=counts.truncated,
    )


def _summary(state: RunState, status: str, stopped: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "status": status,
        "stopped": stopped,
        "rows_written": state.rows_written,
        "rows_dropped": state.rows_dropped,
        "columns": {c: attrs.asdict(n) for c, n in state.counts.items()},
        "failures": [attrs.asdict(f) for f in state.failures[:1000]],
        "early_shutdown": state.early_shutdown,
        "partial_row_groups": sorted(state.partial_row_groups),
        SUMMARY_ROW_GROUPS_FOUND: len(state.skip_row_groups),
        "usage": usage_dicts(state.models),
        "budget": budget_record(state),
    }


def usage_dicts(models: ModelRegistry | None) -> dict[str, dict[str, Any]]:
    """Alias -> its usage as a plain dict (``ModelUsage.to_dict``), ``cost`` ``None`` for an
    alias without a price (unknown, not free)."""
    if models is None:
        return {}
    result = {}
    for alias, usage in models.usage().items():
        data = usage.to_dict()
        if not models.model(alias).priced:
            data["cost"] = None
        result[alias] = data
    return result
