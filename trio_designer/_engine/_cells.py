"""Running one task: a cell, or a full column of one row group. Shared by both engines.

The async (cell-level) engine and the sync (column-at-a-time) baseline differ only in *when* they
run a task. *How* a task runs lives here once: whether the cell is skipped, the context the
generator sees, the call, storing the values. So for the same seed and deterministic
generators both engines write identical datasets
(``property_tests/test_engine_scenarios.py::test_engines_agree``).

The LLM-wait handoff (layer 1, :mod:`trio_designer._engine._dispatch`) is performed here and
nowhere else: right before an LLM-bound generator (``ColumnGenerator.llm_bound``) is called,
:meth:`CellRunner.run_cell` / :meth:`CellRunner.run_full_column` await the ``handoff`` the
dispatcher passed in, once. Generators never see slots: a plugin declares ``llm_bound = True``
and the engine does the rest. The sync engine passes no handoff (it has no slot pools).

The response cache (``models/_cached.py``, ``docs/cache.md``) is consulted here too, before
the handoff: a generator that ``replays_from_cache`` (the LLM columns) is first run with
``cache_only`` set, in the row group's loaded answers only. If every request it makes is
cached, the cell is done without the handoff, without a limiter slot, without a request. At
the first miss (``CacheMiss``) it is handed off and run for real, from a fresh context (the
same random draws, hence the same keys). Row groups whose rows had nothing cached skip that
pass (``ResponseCache.may_hit``), so a cold cache costs no extra render.

What a task *means* for the run (counters, failures, retries, traces) is the caller's business:
errors raised by the generator propagate unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from .._core._cellusage import CellUsage
from .._exceptions import GenerationError, NonRetryableGenerationError
from .._observe import TaskStatus
from .._plan import ExecutionGraph
from ..generators._base import (
    MISSED,
    CellContext,
    CellOutput,
    ColumnContext,
    ColumnGenerator,
    Replayed,
)
from ..generators._templates import evaluate_condition
from ..models._cached import CacheMiss, cache_only
from ..models._cellcalls import recording, start_recording, stop_recording
from ._state import RowGroupBuffer

if TYPE_CHECKING:
    from ..models._registry import ModelRegistry

#: The dispatcher's LLM-wait handoff for the running task (see the module docstring).
Handoff = Callable[[], Awaitable[None]]


class CellRunner:
    """Runs cells and full-column tasks of a run's columns into row-group buffers.

    Args:
      graph: the run's execution graph.
      generators: one generator per column.
      seed: the run seed (``RunConfig.seed``), passed to every context.
      models: the model registry passed to generator contexts (``None`` without models).
    """

    def __init__(
        self,
        graph: ExecutionGraph,
        generators: Mapping[str, ColumnGenerator],
        *,
        seed: int,
        models: ModelRegistry | None,
    ) -> None:
        self._graph = graph
        self._generators = generators
        self._seed = seed
        self._models = models
        self._cache = getattr(models, "cache", None)  # registry look-alikes may have none
        self._cache_columns = frozenset(
            c
            for c, g in generators.items()
            if self._cache is not None and g.strategy == "cell" and g.replays_from_cache
        )
        self._ancestors = _ancestors(graph)
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
        self._llm_cell_columns = frozenset(
            c for c, g in generators.items() if g.strategy == "cell" and g.llm_bound
        )

    # -- how a column's cells are scheduled ------------------------------------------------
    def runs_inline(self, column: str) -> bool:
        """Whether cells of ``column`` run synchronously in the dispatcher: cheap, non-blocking,
        not LLM-bound cell generators (Jinja expressions). Skips the per-task machinery (slot,
        task, cancel scope), which dominates the cost of such cells."""
        return column in self._inline_columns

    def continues_in_task(self, column: str) -> bool:
        """Whether a cell of ``column`` may run in a task that just finished another cell (see
        ``RowGroupWorker._run_task``): cell strategy, not LLM-bound, not inline — exactly the
        cells that would otherwise get a task of their own and keep their submission slot."""
        return column in self._continuable_columns

    def takes_llm_slot(self, column: str) -> bool:
        """Whether a cell of ``column`` may run in a task that holds an LLM-wait slot (one that
        just finished an LLM cell, see ``RowGroupWorker._continuation``): cell strategy and
        LLM-bound — a cell that would otherwise get a task of its own and be handed off."""
        return column in self._llm_cell_columns

    # -- skips ------------------------------------------------------------------------------
    def is_skipped(self, buf: RowGroupBuffer, column: str, row: int) -> bool:
        """A cell is skipped if any upstream cell of its row was, or its condition holds."""
        for up in self._graph.upstream[column]:
            if row in buf.skipped[up]:
                return True
        condition = self._graph.configs[column].skip_when
        if condition is None:
            return False
        try:
            return bool(evaluate_condition(condition, buf.row_view(self._ancestors[column], row)))
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
        buf.values[column][row] = self._graph.configs[column].skip_value
        buf.skipped[column].add(row)

    # -- running ----------------------------------------------------------------------------
    async def run_cell(
        self,
        buf: RowGroupBuffer,
        column: str,
        row: int,
        started: list[float],
        handoff: Handoff | None = None,
        *,
        try_cache: bool = True,
    ) -> TaskStatus:
        """Generate cell (``row``, ``column``) into ``buf``; ``skipped`` or ``ok``.

        Appends the time the generator was called (or the skip decided) to ``started``.
        Raises whatever the generator raises (classified by the caller). ``try_cache=False``:
        the caller already found the cell's answers not all cached; skip the cache-only pass.
        """
        if self.is_skipped(buf, column, row):
            self.mark_skipped(buf, column, row)
            await trio.lowlevel.checkpoint()
            started.append(trio.current_time())
            return "skipped"
        generator = self._generators[column]
        ctx = self._context(buf, column, row)
        if generator.llm_bound:
            if (
                try_cache
                and generator.replays_from_cache
                and self._cache is not None
                and self._cache.may_hit(buf.plan.id)
            ):
                started.append(trio.current_time())
                token = cache_only.set(True)
                scratch = CellUsage()  # a pass ending in a miss counts nothing
                try:
                    with recording(scratch):
                        result = await generator.agenerate(ctx)
                except CacheMiss:
                    del started[-1]
                    ctx = self._context(buf, column, row)  # the same random draws again
                else:
                    buf.cells.usage_for(column, row).merge(scratch)
                    _store(buf, column, row, result)
                    return "ok"
                finally:
                    cache_only.reset(token)
            await _hand_off(handoff)
            started.append(trio.current_time())
            # Only LLM-bound cells get a tally: the others never call a model, and pay nothing.
            recorded = start_recording(buf.cells.usage_for(column, row))  # recording(), inline
            try:
                result = await generator.agenerate(ctx)
            finally:
                stop_recording(recorded)
        else:
            started.append(trio.current_time())
            result = await generator.agenerate(ctx)
        _store(buf, column, row, result)
        return "ok"

    def replays_from_cache(self, column: str) -> bool:
        """Whether cells of ``column`` can be served by the response cache (LLM columns, when
        the run has a cache)."""
        return column in self._cache_columns

    def run_cached_inline(self, buf: RowGroupBuffer, column: str, row: int) -> TaskStatus | None:
        """The cache-only pass of :meth:`run_cell`, synchronously, in the dispatcher: the
        cell's status when every request it makes is cached (or it is skipped), ``None`` when
        one is not (nothing stored; the cell then runs as a task).

        The generator's coroutine is driven by hand: under ``cache_only`` a replaying
        generator never suspends (a hit returns at once, a miss raises ``CacheMiss``). One
        that suspends all the same is closed and counted as a miss.
        """
        if self.is_skipped(buf, column, row):
            self.mark_skipped(buf, column, row)
            return "skipped"
        coroutine = self._generators[column].agenerate(self._context(buf, column, row))
        token = cache_only.set(True)
        scratch = CellUsage()  # a pass ending in a miss counts nothing
        recorded = start_recording(scratch)
        try:
            coroutine.send(None)
        except StopIteration as done:
            tallies = buf.cells.usage
            earlier = tallies.get((column, row))
            if earlier is None:  # the cell's first attempt (the usual case): the tally as is
                tallies[column, row] = scratch
            else:
                earlier.merge(scratch)
            _store(buf, column, row, done.value)
            return "ok"
        except CacheMiss:
            return None
        finally:
            stop_recording(recorded)
            cache_only.reset(token)
        coroutine.close()  # it suspended: not replayable synchronously after all
        return None

    def prepare_cached(
        self, buf: RowGroupBuffer, column: str, rows: Sequence[int]
    ) -> dict[int, Replayed]:
        """The column-wise part of the batched replay: ``column``'s generator serves ``rows``
        from the cache together (``ColumnGenerator.replay_cached``), before any of them is
        stored. Returns, for the rows it could say something about, the value and tally to
        store (the cell is served) or ``MISSED`` (the cell's first request is not cached);
        :meth:`replay_cached_cells` uses these and runs the other rows cell by cell.

        Only rows that are surely not skipped are asked for: none of their upstream cells
        skipped and, for a column with ``skip_when``, a condition that evaluates false (a
        condition that raises is left to the per-cell path, which raises it again). Nothing
        here depends on what the batch stores (a batch is one column's cells, none upstream
        of another), so deciding before is deciding as the per-cell path would."""
        generator = self._generators[column]
        if type(generator).replay_cached is ColumnGenerator.replay_cached:
            return {}
        upstream = self._graph.upstream[column]
        condition = self._graph.configs[column].skip_when
        skipped, values = buf.skipped, buf.values
        eligible: list[int] = []
        for row in rows:
            if any(row in skipped[up] for up in upstream):
                continue
            if condition is not None:
                try:
                    if self.is_skipped(buf, column, row):
                        continue
                except Exception:
                    continue
            eligible.append(row)
        if not eligible:
            return {}
        ancestors = self._ancestors[column]
        columns = [(c, values[c]) for c in ancestors]
        start = buf.plan.start
        try:
            results = generator.replay_cached(
                [{c: cells[row] for c, cells in columns} for row in eligible],
                [start + row for row in eligible],
                seed=self._seed,
                models=self._models,
            )
        except Exception:  # a column-wise path that fails: every cell takes the per-cell one
            return {}
        if results is None:
            return {}
        found = zip(eligible, results, strict=True)
        return {row: result for row, result in found if result is not None}

    def replay_cached_cells(
        self,
        buf: RowGroupBuffer,
        column: str,
        rows: Sequence[int],
        statuses: list[TaskStatus],
        prepared: Mapping[int, Replayed] | None = None,
    ) -> bool:
        """:meth:`run_cached_inline` for ``rows`` of ``column``, one after the other, in one
        call (the batched replay, ``_engine/_replay.py``): each served cell's status is
        appended to ``statuses``.

        Returns ``True`` when every cell was served; ``False`` at the first one that was not,
        ``rows[len(statuses)]``, which is left untouched (nothing stored, its tally as it
        was), and the cells after it are not run. An exception of a cell's skip condition or
        generator propagates: the failing cell is ``rows[len(statuses)]``; what the cells
        before it stored stays.

        Each cell does exactly what :meth:`run_cached_inline` does — the same skip decision,
        the same context (hence the same random draws and cache keys), the same tally and
        store — so the dataset and its provenance are the same; only the per-call set-up
        (the cache-only flag, lookups of the generator and the column's inputs) is done once.

        ``prepared`` (:meth:`prepare_cached`): what the column-wise replay found for some of
        the rows; such a row is stored from it (a served cell, counted as one cache hit) or
        is a miss, without running its generator again.
        """
        generator = self._generators[column]
        agenerate = generator.agenerate
        ancestors = self._ancestors[column]
        upstream = self._graph.upstream[column]
        condition = self._graph.configs[column].skip_when
        tallies = buf.cells.usage
        skipped = buf.skipped
        values = buf.values
        start, seed, models = buf.plan.start, self._seed, self._models
        if prepared is None:
            prepared = {}
        hits = 0
        token = cache_only.set(True)
        try:
            for row in rows:
                ready = prepared.get(row)
                if ready is not None:
                    if ready is MISSED:
                        return False
                    result, scratch = ready  # type: ignore[misc]  # not MISSED: a pair
                    hits += 1
                    earlier = tallies.get((column, row))
                    if earlier is None:
                        tallies[column, row] = scratch
                    else:
                        earlier.merge(scratch)
                    _store(buf, column, row, result)
                    statuses.append("ok")
                    continue
                if (condition is not None or any(row in skipped[up] for up in upstream)) and (
                    self.is_skipped(buf, column, row)
                ):
                    self.mark_skipped(buf, column, row)
                    statuses.append("skipped")
                    continue
                coroutine = agenerate(
                    CellContext(
                        column=column,
                        row_index=start + row,
                        row={c: values[c][row] for c in ancestors},
                        seed=seed,
                        models=models,
                    )
                )
                scratch = CellUsage()  # a pass ending in a miss counts nothing
                recorded = start_recording(scratch)
                try:
                    coroutine.send(None)
                except StopIteration as done:
                    result = done.value
                except CacheMiss:
                    return False
                else:
                    coroutine.close()  # it suspended: not replayable synchronously after all
                    return False
                finally:
                    stop_recording(recorded)
                earlier = tallies.get((column, row))
                if earlier is None:  # the cell's first attempt (the usual case): the tally as is
                    tallies[column, row] = scratch
                else:
                    earlier.merge(scratch)
                _store(buf, column, row, result)
                statuses.append("ok")
        finally:
            cache_only.reset(token)
            if hits and self._cache is not None:
                self._cache.count_hits(hits)
        return True

    def _context(self, buf: RowGroupBuffer, column: str, row: int) -> CellContext:
        return CellContext(
            column=column,
            row_index=buf.plan.start + row,
            row=buf.row_view(self._ancestors[column], row),
            seed=self._seed,
            models=self._models,
        )

    def run_cell_inline(self, buf: RowGroupBuffer, column: str, row: int) -> TaskStatus:
        """:meth:`run_cell` for an inline column, synchronously (no checkpoint)."""
        if self.is_skipped(buf, column, row):
            self.mark_skipped(buf, column, row)
            return "skipped"
        ctx = CellContext(
            column=column,
            row_index=buf.plan.start + row,
            row=buf.row_view(self._ancestors[column], row),
            seed=self._seed,
            models=self._models,
        )
        _store(buf, column, row, self._generators[column].generate(ctx))
        return "ok"

    async def run_full_column(
        self,
        buf: RowGroupBuffer,
        column: str,
        live_rows: Callable[[], Sequence[int]],
        started: list[float],
        handoff: Handoff | None = None,
    ) -> TaskStatus:
        """Generate ``column`` for the surviving rows of a row group into ``buf``.

        ``live_rows`` is asked *after* the LLM-wait handoff (which may park), so rows dropped
        meanwhile are not handed to the generator.
        """
        generator = self._generators[column]
        if generator.llm_bound:
            await _hand_off(handoff)
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
        ctx = ColumnContext(
            column=column,
            row_group=buf.plan.id,
            row_indices=[buf.plan.start + r for r in active],
            rows=[buf.row_view(self._ancestors[column], r) for r in active],
            seed=self._seed,
            models=self._models,
        )
        started.append(trio.current_time())
        if generator.llm_bound:
            with recording(buf.cells.usage_for(column, None)):
                values = await generator.agenerate_column(ctx)
        else:
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


async def _hand_off(handoff: Handoff | None) -> None:
    """The one place the LLM-wait handoff is performed: right before an LLM-bound generator is
    called (both callers check ``generator.llm_bound`` first, which keeps the common non-LLM
    cell free of an extra coroutine).

    Invariant: a generator never starts for a row dropped (or a run shut down) while its task
    parked in the handoff. A handoff that parked ends in a shielded checkpoint, so such a
    cancellation is seen only after it: hence the explicit check (one that found a slot free
    does not yield at all, and checks for cancellation before taking it). Checked by
    ``check_dropped_rows_stop`` and ``check_nothing_starts_after_shutdown`` in
    ``property_tests/test_engine_scenarios.py``.
    """
    if handoff is not None:
        await handoff()
    await trio.lowlevel.checkpoint_if_cancelled()


def _store(buf: RowGroupBuffer, column: str, row: int, result: Any) -> None:
    if isinstance(result, CellOutput):
        buf.values[column][row] = result.value
        for extra, value in result.extras.items():
            buf.values[extra][row] = value
        if result.truncated:
            buf.truncated.setdefault(column, set()).add(row)
    else:
        buf.values[column][row] = result


def _ancestors(graph: ExecutionGraph) -> dict[str, tuple[str, ...]]:
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
