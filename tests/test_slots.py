"""The submission / LLM-wait pools and the one-way handoff ("park, then poke", style.md §7.3)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_designer._engine._dispatch import SlotToken, TaskSlots


async def test_handoff_frees_the_submission_slot() -> None:
    slots = TaskSlots(1, 4)
    token = SlotToken()
    await slots.acquire_submission(token)
    assert slots.statistics().submission_borrowed == 1
    await slots.handoff_to_llm_wait(token)
    stats = slots.statistics()
    assert (stats.submission_borrowed, stats.llm_wait_borrowed, stats.handoffs) == (0, 1, 1)
    other = SlotToken()
    await slots.acquire_submission(other)  # would park forever without the handoff
    slots.release(other)
    slots.release(token)
    assert slots.statistics().llm_wait_borrowed == 0


async def test_handoff_is_idempotent_and_one_way() -> None:
    slots = TaskSlots(2, 2)
    token = SlotToken()
    await slots.acquire_submission(token)
    await slots.handoff_to_llm_wait(token)
    await slots.handoff_to_llm_wait(token)
    assert token.holds == "llm_wait"
    assert slots.statistics().handoffs == 1
    slots.release(token)
    slots.release(token)  # a second release is a no-op
    assert token.holds == "none"


async def test_a_task_parked_for_llm_wait_keeps_its_submission_slot() -> None:
    slots = TaskSlots(2, 1)
    first, second = SlotToken(), SlotToken()
    for token in (first, second):
        await slots.acquire_submission(token)
    await slots.handoff_to_llm_wait(first)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(slots.handoff_to_llm_wait, second)
        await trio.testing.wait_all_tasks_blocked()
        stats = slots.statistics()
        assert (stats.submission_borrowed, stats.llm_wait_borrowed) == (1, 1)
        slots.release(first)
    assert second.holds == "llm_wait"
    slots.release(second)


async def test_cancelled_while_parked_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slots = TaskSlots(2, 1)
    holder, waiter = SlotToken(), SlotToken()
    await slots.acquire_submission(holder)
    await slots.handoff_to_llm_wait(holder)
    await slots.acquire_submission(waiter)
    with trio.move_on_after(1) as scope:
        await slots.handoff_to_llm_wait(waiter)
    assert scope.cancelled_caught
    assert waiter.holds == "submission"
    slots.release(waiter)
    slots.release(holder)
    stats = slots.statistics()
    assert (stats.submission_borrowed, stats.llm_wait_borrowed) == (0, 0)


@pytest.mark.deadline(20)
async def test_peaks_never_exceed_pool_sizes(autojump_clock: trio.testing.MockClock) -> None:
    slots = TaskSlots(3, 5)

    async def task(llm: bool) -> None:
        token = SlotToken()
        await slots.acquire_submission(token)
        try:
            if llm:
                await slots.handoff_to_llm_wait(token)
            await trio.sleep(1)
        finally:
            slots.release(token)

    async with trio.open_nursery() as nursery:
        for i in range(40):
            nursery.start_soon(task, i % 2 == 0)
    stats = slots.statistics()
    assert stats.peak_submission <= 3
    assert stats.peak_llm_wait <= 5
    assert (stats.submission_borrowed, stats.llm_wait_borrowed) == (0, 0)


async def test_a_free_llm_wait_slot_is_taken_without_a_schedule_point() -> None:
    """The handoff sits on the path from a cell's dispatch to its request: with a slot free it
    hands over at once, letting no other task run first (``handoff_to_llm_wait``)."""
    slots = TaskSlots(2, 2)
    token = SlotToken()
    await slots.acquire_submission(token)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as nursery:
        for _ in range(20):  # were the handoff a schedule point, some would surely run first
            nursery.start_soon(other)
        await slots.handoff_to_llm_wait(token)
        assert token.holds == "llm_wait"
        assert ran == []  # no schedule point: no other task has run yet
    assert ran == ["other"] * 20
    slots.release(token)


async def test_a_cancelled_task_is_not_handed_over_even_with_a_free_slot() -> None:
    slots = TaskSlots(2, 2)
    token = SlotToken()
    await slots.acquire_submission(token)
    with trio.CancelScope() as scope:
        scope.cancel()
        await slots.handoff_to_llm_wait(token)
    assert scope.cancelled_caught
    assert token.holds == "submission"  # kept; release returns it
    slots.release(token)
    stats = slots.statistics()
    assert (stats.submission_borrowed, stats.llm_wait_borrowed, stats.handoffs) == (0, 0, 0)
