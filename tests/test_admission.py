"""Row-group admission (layer 2): "park, then poke" (style.md §7.3), in virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_designer._engine._admission import (
    AdmissionStatistics,
    AdmissionTicket,
    RowGroupAdmission,
)


async def test_admits_up_to_the_limit_then_parks_in_order(autojump_clock: Any) -> None:
    admission = RowGroupAdmission(2)
    admitted: list[AdmissionTicket] = []

    async def admit(row_group: int) -> None:
        admitted.append(await admission.admit(row_group))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for row_group in range(4):
                nursery.start_soon(admit, row_group)
                await trio.testing.wait_all_tasks_blocked()
            assert [t.row_group for t in admitted] == [0, 1]
            assert admission.statistics() == AdmissionStatistics(
                in_flight=2, limit=2, waiting=2, peak_in_flight=2, admitted=2
            )
            admission.release(admitted[0])
            await trio.testing.wait_all_tasks_blocked()
            assert [t.row_group for t in admitted] == [0, 1, 2]  # first come, first served
            for ticket in admitted[1:]:
                admission.release(ticket)
            await trio.testing.wait_all_tasks_blocked()
            admission.release(admitted[3])
    assert admission.statistics() == AdmissionStatistics(
        in_flight=0, limit=2, waiting=0, peak_in_flight=2, admitted=4
    )


async def test_a_cancelled_wait_admits_nothing(autojump_clock: Any) -> None:
    admission = RowGroupAdmission(1)
    with trio.fail_after(10):
        first = await admission.admit(0)
        with trio.move_on_after(5):
            await admission.admit(1)
        assert admission.statistics().in_flight == 1
        admission.release(first)
    assert admission.statistics().in_flight == 0


async def test_admission_is_always_a_checkpoint(autojump_clock: Any) -> None:
    admission = RowGroupAdmission(1)
    with trio.fail_after(10), trio.testing.assert_checkpoints():
        ticket = await admission.admit(0)
    admission.release(ticket)


async def test_a_ticket_is_released_once(autojump_clock: Any) -> None:
    admission = RowGroupAdmission(1)
    with trio.fail_after(10):
        ticket = await admission.admit(0)
    admission.release(ticket)
    with pytest.raises(RuntimeError):
        admission.release(ticket)
