"""The cell-level engine: the three layers of the design, composed.

A cell runs the moment its own upstream cells finish. Three independent layers decide what runs
when, each in its own place:

==========  ======================================  ============================================
layer       decides                                 where
==========  ======================================  ============================================
1 dispatch  *what* runs next; the submission ->     :mod:`._dispatch` (``RowGroupWorker``,
            LLM-wait handoff                        ``TaskSlots``) over the pure
                                                    ``_core._tracker.CompletionTracker``
2 admission *how much* is in memory                 :mod:`._admission` (``RowGroupAdmission``)
3 models    *how fast* each endpoint takes work     ``models/_limiter.py`` (per-endpoint
                                                    limiter, in the model registry) and
                                                    ``models/_backlog.py`` (``EndpointBacklog``)
==========  ======================================  ============================================

Structure (one nursery per level, so no task outlives its parent)::

    AsyncEngine.run()
    └── run nursery, inside state.run_scope (cancelled on early shutdown)
        ├── admission loop: for each row group, admission.admit(), then start its task
        └── _row_group()                  one per admitted row group
            ├── state.load_cached()       the response cache's answers of its rows
            ├── RowGroupWorker.run()      dispatch loop, with its own cell nursery
            │   └── _run_task()           one per dispatched task
            ├── state.checkpoint()        write the finished group (shielded)
            ├── state.checkpoint_salvaged()  early shutdown only: its complete rows (shielded)
            └── admission.release()       in a finally: also when cancelled
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import trio

from ..config import CustomColumn
from ..models._backlog import EndpointBacklog
from ._admission import AdmissionTicket, RowGroupAdmission
from ._cells import CellRunner
from ._dispatch import RowGroupWorker, TaskSlots
from ._state import RowGroupPlan, RunState


class AsyncEngine:
    """One run of the cell-level engine.

    Args:
      state: the run's shared state.
      slots: layer 1's submission and LLM-wait pools.
      admission: layer 2's row-group admission.
      backlog: layer 3's per-endpoint dispatch caps (its limiters live in the model registry
        the generators call).
    """

    def __init__(
        self,
        state: RunState,
        *,
        slots: TaskSlots,
        admission: RowGroupAdmission,
        backlog: EndpointBacklog,
    ) -> None:
        self.state = state
        self.slots = slots
        self.admission = admission
        self.backlog = backlog
        self._cells = CellRunner(
            state.graph, state.generators, seed=state.run.seed, models=state.models
        )
        # The first wave's watcher (_widen_after_first_wave) and what ends it.
        self._widening = trio.CancelScope()
        self._admitting = True
        self._row_groups_running = 0

    @classmethod
    def for_run(cls, state: RunState) -> AsyncEngine:
        """The engine with the layers ``state.run`` and the pipeline's models ask for."""
        run = state.run
        return cls(
            state,
            slots=TaskSlots(run.max_submitted_tasks, run.max_llm_wait_tasks),
            admission=RowGroupAdmission(run.max_row_groups_in_flight),
            backlog=EndpointBacklog.for_columns(
                state.column_models,
                state.tasks_per_request,
                first_wave=hasattr(state.models, "first_wave_out"),
            ),
        )

    async def run(self) -> None:
        """Run every row group of the state, at most ``max_row_groups_in_flight`` at once."""
        state = self.state
        with self._contenders_bound(), state.run_scope:
            async with trio.open_nursery() as nursery:
                if self.backlog.narrowed:
                    nursery.start_soon(self._widen_after_first_wave)
                gate = state.budget_gate
                try:
                    for plan in state.plans():
                        ticket = await self.admission.admit(plan.id)
                        if gate is not None and not await gate.wait_for_room(plan.size):
                            self.admission.release(ticket)
                            state.stop_admitting_for_budget()
                            break  # the row groups in flight finish and are written
                        state.emit("row_group_admitted", row_group=plan.id, rows=plan.size)
                        self._row_groups_running += 1
                        nursery.start_soon(self._row_group, plan, ticket)
                finally:
                    self._admitting = False
                    self._stop_widening_if_done()

    def _stop_widening_if_done(self) -> None:
        """Cancel :meth:`_widen_after_first_wave` once nothing of the run is left to run
        (every row group admitted and ended), so it never holds the run's nursery open."""
        if not self._admitting and not self._row_groups_running:
            self._widening.cancel()

    async def _widen_after_first_wave(self) -> None:
        """Give the backlog its full caps once the first wave of requests is out
        (``models/_backlog.py``, "The first wave"): after the first task is dispatched to an
        endpoint, when the registry sees the run waiting for answers
        (``ModelRegistry.first_wave_out``; also when it gave up looking). Until then each
        endpoint gets no more tasks than it has slots, so its limiter is uncontended and
        each first-wave request leaves as soon as it is built.

        Invariant: the backlog is widened exactly once, and never before its first dispatch
        (a run whose first LLM cells become ready late keeps its narrow first wave); a run
        that ends first cancels this. Checked by ``tests/test_engine_first_wave.py``.
        """
        with self._widening:
            dispatched = trio.Event()
            self.backlog.when_dispatched(dispatched.set)
            await dispatched.wait()
            models = self.state.models
            assert models is not None  # a narrow backlog is built only for a run with models
            await models.first_wave_out()
            self.backlog.widen()

    @contextmanager
    def _contenders_bound(self) -> Iterator[None]:
        """For the run, each endpoint's limiter knows how many tasks may ask it for a slot:
        the backlog's count of the endpoint's dispatched tasks, so a request that cannot lose
        its slot to anyone takes it on the spot (``models/_limiter.py``, "Uncontended
        requests"). Only where the backlog counts every caller: an endpoint also called by a
        column of several models, or a run with a custom column that names models without
        being LLM-bound (its calls are counted nowhere), keeps its grant rounds. A custom
        function calling a model it does not declare is not counted either: its requests are
        still admitted within the limit, only their order against the run's cells may be off
        (declare the models a column calls, ``docs/configuration.md``)."""
        registry = self.state.models
        if registry is None or any(
            isinstance(config, CustomColumn) and config.models and not self.state.column_models[c]
            for c, config in self.state.graph.configs.items()
        ):
            yield
            return
        bound = [e for e in registry.limiters() if self.backlog.counts_every_task_of(e)]
        for endpoint in bound:
            registry.bound_contenders(endpoint, partial(self.backlog.tasks_of, endpoint))
        try:
            yield
        finally:
            for endpoint in bound:
                registry.bound_contenders(endpoint, None)

    async def _row_group(self, plan: RowGroupPlan, ticket: AdmissionTicket) -> None:
        """Generate and write one row group.

        Early shutdown (the error-rate gate cancels ``state.run_scope``): the worker's dispatch
        stops and its in-flight tasks are cancelled; once its cell nursery has closed (nothing
        of the group runs), the rows complete in every column are written as a partial row
        group (``state.checkpoint_salvaged``, shielded). Any other cancellation (an interrupt,
        a provider that stopped the run) writes nothing of an unfinished group.
        """
        written = False
        worker: RowGroupWorker | None = None
        ran = False  # the worker's dispatch ran to its end (every cell finished or dropped)
        try:
            await self.state.load_cached(plan)
            worker = RowGroupWorker(self.state, self._cells, self.slots, self.backlog, plan)
            await worker.run()
            ran = True
            await self.state.checkpoint(worker.buffer, worker.tracker.dropped_rows)
            written = True
        finally:
            try:
                if worker is not None and not ran and self.state.salvages():
                    await self.state.checkpoint_salvaged(worker.buffer, worker.tracker)
                    written = True
            finally:
                self.state.forget_cached(plan)
                self.admission.release(ticket)
                gate = self.state.budget_gate
                if gate is not None and not written:
                    gate.left(plan.size)
                self._row_groups_running -= 1
                self._stop_widening_if_done()
