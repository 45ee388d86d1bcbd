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
"""

from __future__ import annotations

import attrs
import trio

__all__ = ["AdmissionStatistics", "AdmissionTicket", "RowGroupAdmission"]


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
