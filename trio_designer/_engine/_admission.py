"""Layer 2: row-group admission — how many row groups are in memory at once.

The rows of a run are split into row groups of ``RunConfig.row_group_size`` rows. A row group
is *admitted* before its worker starts and *released* after it has been written to the sink (or
abandoned, when the run stops); while admitted it holds its buffer in memory. Bounding the
admitted groups bounds the memory of a run, whatever ``num_records`` is, and makes the row
group the unit of loss: what finished is on disk.

A ``trio.CapacityLimiter`` with one token per admitted group does the counting; the borrower is
an :class:`AdmissionTicket` rather than a trio task, because the admission loop acquires on a
group's behalf and the group's worker (another task) releases. Waiters are served first come,
first served, so row groups are admitted in order.

With run budgets (``max_cost``, ``max_tokens``, ``max_requests``) a :class:`BudgetGate` also
decides, before each row group, whether it may start at all: it stops admitting once the next
row group could go past what is left, estimated from the row groups so far
(:mod:`trio_designer._core._runbudget`); the row groups in flight finish and are written.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from .._core._runbudget import RunBudget, Spend, decide, projection

__all__ = ["AdmissionStatistics", "AdmissionTicket", "BudgetGate", "RowGroupAdmission"]


class AdmissionTicket:
    """The borrower identity of one admitted row group."""

    __slots__ = ("row_group",)

    def __init__(self, row_group: int) -> None:
        self.row_group = row_group

    def __repr__(self) -> str:
        return f"<AdmissionTicket row group {self.row_group}>"


@attrs.frozen
class AdmissionStatistics:
    """A snapshot of row-group admission."""

    in_flight: int
    """Row groups admitted and not yet released."""
    limit: int
    """The most that may be admitted at once (``RunConfig.max_row_groups_in_flight``)."""
    waiting: int
    """Row groups waiting to be admitted (0 or 1: one admission loop per run)."""
    peak_in_flight: int
    """The most ever admitted at once; never above ``limit``."""
    admitted: int
    """Row groups admitted so far."""


class RowGroupAdmission:
    """At most ``max_in_flight`` row groups admitted at once (see the module docstring).

    Invariant: ``in_flight <= limit`` at all times, and every ticket :meth:`admit` returns is
    released exactly once — also when the run is cancelled (the row-group task releases in a
    ``finally``) — so ``in_flight == 0`` after a run. Checked by
    ``property_tests/test_engine_scenarios.py::check_admission_respected`` (from the outside:
    admitted minus checkpointed row groups, over random scenarios, early shutdown and outer
    cancellation included) and ``tests/test_admission.py``.

    Args:
      max_in_flight: the limit (``RunConfig.max_row_groups_in_flight``, ``>= 1``).
    """

    def __init__(self, max_in_flight: int) -> None:
        self._limiter = trio.CapacityLimiter(max_in_flight)
        self._peak = 0
        self._admitted = 0

    async def admit(self, row_group: int) -> AdmissionTicket:
        """Wait until fewer than ``limit`` row groups are admitted, then admit ``row_group``.

        Always a checkpoint. Cancelled while waiting, nothing is admitted.
        """
        ticket = AdmissionTicket(row_group)
        await self._limiter.acquire_on_behalf_of(ticket)
        self._admitted += 1
        self._peak = max(self._peak, self._limiter.borrowed_tokens)
        return ticket

    def release(self, ticket: AdmissionTicket) -> None:
        """The row group of ``ticket`` left memory (written, or abandoned); admit the next.

        Raises:
          RuntimeError: ``ticket`` is not admitted (released twice, or never admitted).
        """
        self._limiter.release_on_behalf_of(ticket)

    def statistics(self) -> AdmissionStatistics:
        stats = self._limiter.statistics()
        return AdmissionStatistics(
            in_flight=stats.borrowed_tokens,
            limit=int(stats.total_tokens),
            waiting=stats.tasks_waiting,
            peak_in_flight=self._peak,
            admitted=self._admitted,
        )


class BudgetGate:
    """Run budgets at admission: whether the next row group may start (``max_cost``,
    ``max_tokens``, ``max_requests``).

    The decision is :func:`~trio_designer._core._runbudget.decide`'s (pure); this class keeps
    its inputs — the spend and rows of finished row groups, the rows in flight — and waits,
    when the answer is "wait", until a row group in flight finishes. Once it answers "stop"
    the run admits nothing more: the row groups in flight finish and are written.

    Args:
      budget: the run's budgets.
      spent: the run's spend so far (earlier sessions included), read at each decision.
      finished: spend of the row groups written before this session (a resume), and
      finished_rows: their requested rows — the first basis of the estimate.
    """

    def __init__(
        self,
        budget: RunBudget,
        spent: Callable[[], Spend],
        *,
        finished: Spend | None = None,
        finished_rows: int = 0,
    ) -> None:
        self.budget = budget
        self._spent = spent
        self.finished = finished or Spend()
        self.finished_rows = finished_rows
        self.in_flight_rows = 0
        self._changed = trio.Event()
        #: The budgets that stopped admission (empty while it goes on).
        self.stopped_by: list[str] = []

    @property
    def stopped(self) -> bool:
        return bool(self.stopped_by)

    def spent(self) -> Spend:
        return self._spent()

    async def wait_for_room(self, rows: int) -> bool:
        """Wait until the next row group (of ``rows`` rows) may start: ``True`` (it is now
        counted in flight), or ``False`` when the budget says stop. Always a checkpoint."""
        await trio.lowlevel.checkpoint()
        while True:
            spent = self._spent()
            decision = decide(
                self.budget,
                spent=spent,
                finished=self.finished,
                finished_rows=self.finished_rows,
                in_flight_rows=self.in_flight_rows,
                next_rows=rows,
            )
            if decision == "admit":
                self.in_flight_rows += rows
                return True
            if decision == "stop":
                projected = projection(
                    spent=spent,
                    finished=self.finished,
                    finished_rows=self.finished_rows,
                    in_flight_rows=0,
                    next_rows=rows,
                )
                over = self.budget.exhausted(spent) or self.budget.exceeded(projected or spent)
                self.stopped_by = over or ["cost"]
                return False
            self._changed = trio.Event()
            await self._changed.wait()

    def finished_group(self, rows: int, spend: Spend) -> None:
        """A row group of ``rows`` requested rows was written, having spent ``spend``."""
        self.finished = self.finished + spend
        self.finished_rows += rows
        self.left(rows)

    def left(self, rows: int) -> None:
        """A row group of ``rows`` rows left memory (written or abandoned)."""
        self.in_flight_rows = max(0, self.in_flight_rows - rows)
        self._changed.set()
