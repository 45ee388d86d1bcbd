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

from ._engine._async import AsyncEngine
from ._engine._dispatch import SlotStatistics
from ._engine._state import ColumnCounts, FailureRecord, RunState
from ._engine._sync import run_sync
from ._eventloop import check_sync_caller, check_trio_caller
from ._exceptions import ConfigError, MissingDependencyError, RunInterrupted, TrioDesignerError
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

if TYPE_CHECKING:
    from .models._registry import ModelRegistry

_logger = logging.getLogger("trio_designer")

EngineName = Literal["async", "sync"]
#: How a run that returned a result ended. A run that is interrupted returns nothing: after
#: the finished row groups and ``metadata.json`` (``status: "interrupted"``) are written,
#: :meth:`TrioDesigner.interrupt` makes ``create`` raise :class:`RunInterrupted`, and a
#: cancellation from outside (an outer cancel scope, Ctrl-C) propagates, as trio requires.
#: A run that an exception ended records ``status: "failed"`` and re-raises it.
RunStatus = Literal["complete", "early_shutdown"]


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
      status: ``complete``, or ``early_shutdown`` (the error-rate gate tripped). An interrupted
        run returns no result (see :data:`RunStatus`).
      engine: ``async`` or ``sync``.
      num_records_requested: rows asked for.
      num_records_written: rows written by this run (surviving rows of the row groups it
        finished; ``table`` holds the whole dataset, earlier runs' rows included).
      num_rows_dropped: rows dropped by failures in finished row groups.
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
      cache: what the response cache did (``directory``, ``hits``, ``misses``, ``stored``,
        ``loaded``, ``corrupt``, ``write_errors``); empty when the run had no cache.
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
    _memory_table: Any = attrs.field(default=None, repr=False, alias="memory_table")
    cache: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def table(self) -> Any:
        """The dataset as a ``pyarrow.Table`` (read from disk for ``create`` runs)."""
        if self._memory_table is not None:
            return self._memory_table
        import pyarrow as pa
        import pyarrow.dataset as ds

        if self.output_dir is None or not self.files:
            return pa.table({})
        paths = [str(self.output_dir / f) for f in self.files]
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
        from ._sink import ParquetSink
        from .config._fingerprint import fingerprint_basis, fingerprint_of

        graph, generators, seed = _prepare(config, num_records, await _open_seed(config))
        try:
            # Hashing a seed's files reads them: off the trio thread (without a seed, inline).
            basis = (
                fingerprint_basis(config)
                if seed is None
                else await trio.to_thread.run_sync(fingerprint_basis, config)
            )
        except ConfigError as exc:
            raise config.located(exc) from exc.__cause__
        if seed is not None:
            basis["files"].update(seed.identity())
        resume = resume or force_resume
        changes = _LimitChanges()
        with self._controlled(Path(output_dir)) as control, _single_error():
            async with (
                self._open_cache(config) as cache,
                self._open_models(config, changes, cache) as models,
                _beside_the_run(models) as disk,
            ):
                sink = ParquetSink(output_dir)
                # Refusals (another run in the directory...) are raised here, before any
                # request; the folders and the first record are written while the first
                # requests are out (writes and close wait for them).
                await sink.open(
                    fingerprint=fingerprint_of(basis),
                    config=config.to_dict(lenient=True),
                    num_records=num_records,
                    row_group_size=config.run.row_group_size,
                    resume=resume,
                    background=disk,
                    fingerprint_basis=basis,
                    force_resume=force_resume,
                )
                done = frozenset(sink.completed_row_groups()) if resume else frozenset()
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
                )
            await trio.to_thread.run_sync(_write_card, Path(output_dir))
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

        graph, generators, _ = _prepare(config, num_records, await _open_seed(config))
        changes = _LimitChanges()
        with self._controlled(None) as control, _single_error():
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
                )
        return attrs.evolve(result, memory_table=sink.table())

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
    ) -> RunResult:
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
            status = "early_shutdown" if state.early_shutdown else "complete"
        except BaseException as exc:
            status, stopped = stop_record(control, exc) or (status, None)
            raise
        finally:
            control.rows_written = state.rows_written
            with trio.CancelScope(shield=True):
                if output_dir is not None and (state.failures or state.trace.enabled):
                    await trio.to_thread.run_sync(
                        partial(_write_artifacts, output_dir, state, self.engine)
                    )
                await sink.close(status=status, summary=_summary(state, status, stopped))
        return RunResult(
            status="early_shutdown" if state.early_shutdown else "complete",
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
            usage={} if models is None else {a: u.to_dict() for a, u in models.usage().items()},
            model_limits={}
            if models is None
            else {name: lim.statistics() for name, lim in models.limiters().items()},
            cache={} if state.cache is None else state.cache.statistics().to_dict(),
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
                outcome = "early_shutdown" if state.early_shutdown else "complete"
            finally:
                nursery.cancel_scope.cancel()
                if reporter is not None:
                    reporter.final(outcome)


@asynccontextmanager
async def _beside_the_run(models: ModelRegistry | None) -> AsyncIterator[trio.Nursery]:
    """A nursery for work beside a run: the sink's background preparation, and connections
    to the providers warmed up while the run starts (``ModelRegistry.warm_up``: no request,
    only connecting, so the first requests find connections ready). The warm-up is cancelled
    when the run ends."""
    async with trio.open_nursery() as nursery:
        warm = trio.CancelScope()
        if models is not None:
            nursery.start_soon(_warm_up, models, warm)
        try:
            yield nursery
        finally:
            warm.cancel()


async def _warm_up(models: ModelRegistry, scope: trio.CancelScope) -> None:
    with scope:
        await models.warm_up()


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
) -> tuple[ExecutionGraph, dict[str, ColumnGenerator], OpenSeed | None]:
    """Validate everything that can be validated without a request; build the generators
    (``seed``: the config's seed, opened by :func:`_open_seed`)."""
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
    except ConfigError as exc:
        raise config.located(exc) from exc.__cause__

    return graph, generators, seed


def _dataset_files(sink: Any) -> tuple[str, ...]:
    """The dataset's parquet files (this run's and, after a resume, earlier runs'), in
    row-group order."""
    row_groups = sink.metadata().get("row_groups", {})
    entries = sorted(row_groups.items(), key=lambda item: int(item[0]))
    return tuple(entry["file"] for _, entry in entries if entry.get("file"))


def _write_artifacts(output_dir: Path, state: RunState, engine: str) -> None:
    from ._observe import write_trace
    from ._sink import append_failures

    if state.failures:
        append_failures(output_dir, state.failures)
    if state.trace.enabled:
        write_trace(output_dir, state.trace, engine=engine)


def _write_card(output_dir: Path) -> None:
    """The dataset card (``README.md``) of a finished run. A card that cannot be written is
    logged, never raised: the dataset itself is complete on disk."""
    from ._sink import write_dataset_card

    try:
        write_dataset_card(output_dir)
    except (OSError, TrioDesignerError) as exc:
        _logger.warning("the dataset card of %s was not written: %s", output_dir, exc)


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
        SUMMARY_ROW_GROUPS_FOUND: len(state.skip_row_groups),
        "usage": {}
        if state.models is None
        else {a: u.to_dict() for a, u in state.models.usage().items()},
    }
