"""Recording a run: one record per task attempt and the scheduler's point events.

The engine records into a :class:`TraceRecorder` (a no-op unless ``trace=True``); the records
feed ``trace.json`` (:mod:`._tracefile`), the exporters, and the property suite. The names and
fields of the scheduler events are listed in :mod:`._events`.

Times are ``trio.current_time()`` values (virtual time under a ``MockClock``), relative to the
start of the run.
"""

from __future__ import annotations

from typing import Literal

import attrs

TaskStatus = Literal["ok", "skipped", "retryable", "failed", "cancelled"]


@attrs.frozen(kw_only=True)
class TaskTrace:
    """What happened to one attempt of one task.

    Attributes:
      column: the column generated.
      row_group: the row group id.
      row: the global row index, or ``None`` for a full-column task.
      kind: ``"cell"`` or ``"full_column"``.
      dispatched: when the dispatcher started the task (it already held a submission slot).
      slot_acquired: when the task got the slot it runs under (after the LLM-wait handoff for
        LLM-bound tasks; equal to ``dispatched`` otherwise).
      started: when the generator was called.
      finished: when the attempt ended.
      status: ``ok``, ``skipped`` (skip condition or skipped upstream), ``retryable`` (deferred
        for salvage), ``failed`` (the row was dropped), ``cancelled`` (its row was dropped by a
        sibling, or the run stopped).
      attempt: 1 for the first attempt, 2 for the first salvage retry, and so on.
      error_class: the exception class name when the attempt failed.
    """

    column: str
    row_group: int
    row: int | None
    kind: Literal["cell", "full_column"]
    dispatched: float
    slot_acquired: float
    started: float
    finished: float
    status: TaskStatus
    attempt: int
    error_class: str | None = None


@attrs.frozen(kw_only=True)
class SchedulerEvent:
    """A point event of the run: row group admitted / checkpointed, salvage round, limit
    change, early shutdown. ``time`` is relative to the start of the run."""

    time: float
    name: str
    fields: dict[str, object]


@attrs.define(eq=False)
class TraceRecorder:
    """Collects :class:`TaskTrace` records and :class:`SchedulerEvent` s when tracing is
    enabled."""

    enabled: bool
    origin: float = 0.0
    records: list[TaskTrace] = attrs.Factory(list)
    events: list[SchedulerEvent] = attrs.Factory(list)

    def add(self, trace: TaskTrace) -> None:
        if self.enabled:
            self.records.append(trace)

    def event(self, now: float, name: str, fields: dict[str, object]) -> None:
        if self.enabled:
            self.events.append(SchedulerEvent(time=now - self.origin, name=name, fields=fields))
