"""Model limiters (``trio_designer.models._limiter``): a contract suite over both limiters
(admission, priority order, cancellation, cooldowns), then the adaptive limiter's 429 and latency
behaviour in virtual time."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from typing import Literal

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer._core._budget import BudgetReading, EndpointBudget, RateLimits
from trio_designer._core._limits import LimitChange, LimiterPolicy
from trio_designer.models._limiter import (
    AdaptiveLimiter,
    LimiterStatistics,
    ModelLimiter,
    Permit,
    StaticLimiter,
    _Waiter,
    _WaiterQueue,
    request_priority,
    set_request_priority,
)

BIG = 10_000

Factory = Callable[[int], ModelLimiter]
FACTORIES: dict[str, Factory] = {
    "static": lambda ceiling: StaticLimiter("m", ceiling),
    "adaptive": lambda ceiling: AdaptiveLimiter("m", ceiling),
}
contract = pytest.mark.parametrize("make", list(FACTORIES.values()), ids=list(FACTORIES))


async def hold_until(
    limiter: ModelLimiter, release: trio.Event, entered: list[int], tag: int
) -> None:
    async with limiter.slot() as permit:
        entered.append(tag)
        await release.wait()
        permit.success()


# -- contract: both limiters -------------------------------------------------------------------


@contract
async def test_slot_admits_up_to_the_limit_then_parks(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    limiter = make(3)
    release, entered = trio.Event(), list[int]()
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(hold_until, limiter, release, entered, i)
            await trio.testing.wait_all_tasks_blocked()
            s = limiter.statistics()
            assert (s.in_flight, s.waiting, s.limit, s.ceiling) == (3, 2, 3, 3)
            assert len(entered) == 3
            release.set()
    s = limiter.statistics()
    assert (s.in_flight, s.waiting, s.successes) == (0, 0, 5)


@contract
async def test_waiters_with_equal_keys_are_admitted_in_fifo_order(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    limiter = make(1)
    release, entered = trio.Event(), list[int]()
    order: list[int] = []

    async def waiter(tag: int) -> None:
        async with limiter.slot() as permit:
            order.append(tag)
            permit.success()

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold_until, limiter, release, entered, -1)
            await trio.testing.wait_all_tasks_blocked()
            for tag in range(6):
                nursery.start_soon(waiter, tag)
                await trio.testing.wait_all_tasks_blocked()  # fixes the arrival order
            assert limiter.statistics().waiting == 6
            release.set()
    assert order == list(range(6))


@contract
async def test_a_newcomer_never_overtakes_a_parked_waiter(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    limiter = make(1)
    order: list[str] = []

    async def one(tag: str) -> None:
        async with limiter.slot() as permit:
            order.append(tag)
            await trio.sleep(1)
            permit.success()

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "first")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(one, "parked")
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(1)  # "first" releases; "parked" is granted the slot at once
            nursery.start_soon(one, "newcomer")
    assert order == ["first", "parked", "newcomer"]


@contract
@pytest.mark.parametrize(
    ("newcomer_key", "expected"),
    [
        ((1,), ["parked", "newcomer"]),  # equal keys: FIFO
        ((2,), ["parked", "newcomer"]),
        ((0,), ["newcomer", "parked"]),  # a better key parks too, and is woken first
    ],
)
async def test_a_newcomer_queues_by_key_when_a_cooldown_ends(
    make: Factory,
    autojump_clock: trio.testing.MockClock,
    newcomer_key: tuple[int, ...],
    expected: list[str],
) -> None:
    """At the instant a pause ends there is a free slot and a parked waiter, until the pause
    sleeper runs; a task arriving in that instant joins the queue at its key."""
    limiter = make(1)
    order: list[str] = []

    async def waiter() -> None:
        set_request_priority((1,))
        async with limiter.slot() as permit:
            order.append("parked")
            permit.success()

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            async with limiter.slot() as permit:
                # A spent budget of 30 a minute: the next request can go in 2 s (the static
                # limiter also pauses its 2 s cooldown).
                permit.rate_limited(None, rate_limits=spent_requests(30))
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            autojump_clock.jump(2.0)  # the cooldown is over; nothing else has run yet
            set_request_priority(newcomer_key)
            async with limiter.slot() as permit:
                order.append("newcomer")
                permit.success()
    assert order == expected


async def admit_in_turn(
    limiter: ModelLimiter,
    keys: list[tuple[int, ...]],
    *,
    cancel: frozenset[int] = frozenset(),
) -> list[int]:
    """Fill ``limiter`` (limit 1), park one waiter per key in list order, cancel the waiters at
    the indices in ``cancel``, then release: return the indices in the order they got the slot.
    """
    release, entered, order = trio.Event(), list[int](), list[int]()
    scopes = {i: trio.CancelScope() for i in cancel}

    async def waiter(i: int) -> None:
        set_request_priority(keys[i])
        with scopes.get(i, contextlib.nullcontext()):
            async with limiter.slot() as permit:
                assert i not in cancel, "a cancelled waiter must never be admitted"
                order.append(i)
                permit.success()

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold_until, limiter, release, entered, -1)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(len(keys)):
                nursery.start_soon(waiter, i)
                await trio.testing.wait_all_tasks_blocked()  # fixes the arrival order
            assert limiter.statistics().waiting == len(keys)
            for scope in scopes.values():
                scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert limiter.statistics().waiting == len(keys) - len(cancel)
            assert order == []
            release.set()
    s = limiter.statistics()
    assert (s.in_flight, s.waiting, s.successes) == (0, 0, 1 + len(keys) - len(cancel))
    return order


@contract
async def test_waiters_are_admitted_best_key_first(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    keys = [(3, 0), (1, 5), (4,), (1, 2), (0, 9, 9), (2, 1), (5,), (1, 3)]
    order = await admit_in_turn(make(1), keys)
    assert [keys[i] for i in order] == sorted(keys)


@contract
async def test_requests_arriving_together_at_a_free_limiter_are_admitted_by_key(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    """Tasks started in one go reach ``slot()`` in trio's random order. With 3 free slots and 8
    such requests, the 3 best keys get the slots (one grant round per scheduler batch), not
    the 3 that trio happened to run first."""
    limiter = make(3)
    keys = [(3,), (1,), (7,), (0,), (5,), (2,), (6,), (4,)]
    admitted: list[tuple[int, ...]] = []
    release = trio.Event()

    async def request(key: tuple[int, ...]) -> None:
        set_request_priority(key)
        async with limiter.slot() as permit:
            admitted.append(key)
            await release.wait()
            permit.success()

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(request, key)
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(admitted) == [(0,), (1,), (2,)]
            release.set()
    assert sorted(admitted) == sorted(keys)


@contract
async def test_equal_keys_keep_their_arrival_order_among_other_keys(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    keys = [(1,), (0,), (1,), (), (0,), (1,), ()]
    assert await admit_in_turn(make(1), keys) == [3, 6, 1, 4, 0, 2, 5]


@contract
async def test_cancelled_waiters_inside_the_queue_leave_no_trace(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancelled waiters in the middle (and at the top) of the queue are never admitted and do
    not disturb the order of the others."""
    keys: list[tuple[int, ...]] = [(5,), (2,), (6,), (0,), (3,), (1,), (4,)]
    order = await admit_in_turn(make(1), keys, cancel=frozenset({1, 3, 4}))
    assert [keys[i] for i in order] == [(1,), (4,), (5,), (6,)]


@contract
async def test_a_newcomer_with_the_best_key_parks_behind_a_full_limiter(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    """A better key moves a request up the queue; it never takes a slot from a holder."""
    limiter = make(1)
    release, entered = trio.Event(), list[int]()
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            set_request_priority((9,))  # inherited by the holder and the first waiter
            nursery.start_soon(hold_until, limiter, release, entered, 0)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(hold_until, limiter, release, entered, 1)
            await trio.testing.wait_all_tasks_blocked()
            set_request_priority((0,))
            nursery.start_soon(hold_until, limiter, release, entered, 2)
            await trio.testing.wait_all_tasks_blocked()
            s = limiter.statistics()
            assert (s.in_flight, s.waiting, entered) == (1, 2, [0])
            release.set()
    assert entered == [0, 2, 1]


@pytest.mark.parametrize("name", list(FACTORIES))
@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.tuples(st.integers(0, 3)) | st.tuples(), max_size=12))
def test_admission_order_is_the_sorted_order_of_key_and_arrival(
    name: str, keys: list[tuple[int, ...]]
) -> None:
    order: list[int] = []

    async def main() -> None:
        with trio.fail_after(10):  # virtual: admissions take no time at all
            order.extend(await admit_in_turn(FACTORIES[name](1), keys))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert order == sorted(range(len(keys)), key=lambda i: (keys[i], i))


async def test_request_priority_is_per_task_and_inherited_by_children() -> None:
    seen: dict[str, tuple[int, ...]] = {}

    async def child(tag: str) -> None:
        seen[tag] = request_priority()

    async def parent() -> None:
        set_request_priority((1, 2))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child, "child")
        seen["parent"] = request_priority()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(parent)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(child, "sibling")
    assert seen == {"child": (1, 2), "parent": (1, 2), "sibling": ()}
    assert request_priority() == ()


async def test_cancelled_queue_entries_do_not_pile_up() -> None:
    """Dead heap entries are swept once they outnumber the live ones (past a small floor)."""
    queue = _WaiterQueue()
    task = trio.lowlevel.current_task()
    keep = _Waiter(task, 0)
    queue.push((0,), keep)
    for i in range(1_000):
        waiter = _Waiter(task, 0)
        queue.push((i,), waiter)
        queue.discard(waiter)
        assert queue.stored <= 66
    assert queue.live == 1
    assert queue.pop() == (keep, task)
    assert (queue.live, queue.stored) == (0, 0)


@contract
async def test_cancelled_waiter_leaves_no_trace(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    limiter = make(1)
    release, entered = trio.Event(), list[int]()
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold_until, limiter, release, entered, 0)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(hold_until, limiter, release, entered, 1)
            scope = trio.CancelScope()

            async def cancellable() -> None:
                with scope:
                    async with limiter.slot():
                        pytest.fail("a cancelled waiter must never be admitted")

            nursery.start_soon(cancellable)
            await trio.testing.wait_all_tasks_blocked()
            assert limiter.statistics().waiting == 2
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert limiter.statistics().waiting == 1
            release.set()
    s = limiter.statistics()
    assert (s.in_flight, s.waiting, s.successes) == (0, 0, 2)
    assert entered == [0, 1]


@contract
async def test_slot_is_released_when_the_body_raises(make: Factory) -> None:
    limiter = make(2)

    async def body_raises() -> None:
        async with limiter.slot():
            assert limiter.statistics().in_flight == 1
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await body_raises()
    s = limiter.statistics()
    assert (s.in_flight, s.successes, s.failures, s.rate_limited) == (0, 0, 0, 0)


@contract
async def test_reporting_twice_raises_and_exit_does_not_release_again(make: Factory) -> None:
    limiter = make(2)
    async with limiter.slot() as permit:
        permit.success()
        assert permit.released
        assert limiter.statistics().in_flight == 0
        with pytest.raises(RuntimeError, match=r"^this permit of model limiter 'm' was already"):
            permit.failure()
    s = limiter.statistics()
    assert (s.in_flight, s.successes, s.failures) == (0, 1, 0)


@contract
async def test_slot_always_checkpoints(make: Factory) -> None:
    limiter = make(1)
    with trio.testing.assert_checkpoints():
        async with limiter.slot() as permit:
            permit.success()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            async with limiter.slot():
                pytest.fail("a cancelled task must not be admitted, even to a free slot")
    assert limiter.statistics().in_flight == 0


@contract
async def test_permit_measures_from_the_grant(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    limiter = make(1)
    async with limiter.slot() as permit:
        assert permit.admitted_at == trio.current_time()
        await trio.sleep(2)
        permit.success()
    assert isinstance(permit, Permit)


@contract
def test_statistics_outside_a_run(make: Factory) -> None:
    s = make(4).statistics()
    assert s == LimiterStatistics(
        name="m",
        limit=4,
        ceiling=4,
        in_flight=0,
        waiting=0,
        cooldown_remaining=0.0,
        rate_limited=0,
        successes=0,
        failures=0,
        baseline_latency=None,
        recent_latency=None,
        probing=False,
    )


@pytest.mark.parametrize("cls", [StaticLimiter, AdaptiveLimiter])
def test_limiters_reject_a_ceiling_below_1(cls: type[StaticLimiter | AdaptiveLimiter]) -> None:
    with pytest.raises(
        ValueError, match=r"^model limiter 'm' needs a ceiling of at least 1, got 0$"
    ):
        cls("m", 0)


Outcome = Literal["success", "failure", "rate_limited", "raise", "silent"]
ops_strategy = st.lists(
    st.one_of(
        st.tuples(
            st.just("spawn"),
            st.integers(0, 4),
            st.sampled_from(["success", "failure", "rate_limited", "raise", "silent"]),
        ),
        st.tuples(st.just("advance"), st.integers(0, 5), st.just("success")),
    ),
    max_size=25,
)


@pytest.mark.parametrize("name", list(FACTORIES))
@settings(max_examples=150, deadline=None)
@given(ops=ops_strategy)
def test_limiter_never_admits_beyond_its_limit(
    name: str, ops: list[tuple[str, int, Outcome]]
) -> None:
    """Random holders (hold time, outcome) and time steps: nobody is admitted beyond the limit,
    nobody waits while a slot is free, every slot comes back, counters add up."""
    cut_times: set[float] = set()
    if name == "static":
        limiter: StaticLimiter | AdaptiveLimiter = StaticLimiter("m", 3)
    else:
        limiter = AdaptiveLimiter("m", 3, on_change=lambda c: cut_times.add(c.at))
    holders: set[int] = set()

    async def borrower(i: int, hold: int, outcome: Outcome) -> None:
        with pytest.raises(KeyError) if outcome == "raise" else contextlib.nullcontext():
            async with limiter.slot() as permit:
                s = limiter.statistics()
                assert s.in_flight <= s.limit or trio.current_time() in cut_times
                holders.add(i)
                await trio.sleep(hold)
                holders.discard(i)
                if outcome == "success":
                    permit.success()
                elif outcome == "failure":
                    permit.failure()
                elif outcome == "rate_limited":
                    permit.rate_limited(None)
                elif outcome == "raise":
                    raise KeyError(i)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i, (kind, arg, outcome) in enumerate(ops):
                if kind == "spawn":
                    nursery.start_soon(borrower, i, arg, outcome)
                else:
                    await trio.sleep(arg)
                await trio.testing.wait_all_tasks_blocked()
                s = limiter.statistics()
                assert s.in_flight == len(holders)
                if s.waiting:  # parked only when full, cooling down or probing
                    assert s.in_flight >= s.limit or s.cooldown_remaining > 0 or s.probing

    async def guarded() -> None:
        with trio.fail_after(BIG):
            await main()

    trio.run(guarded, clock=trio.testing.MockClock(autojump_threshold=0))
    s = limiter.statistics()
    spawned = [outcome for kind, _, outcome in ops if kind == "spawn"]
    assert (s.in_flight, s.waiting) == (0, 0)
    assert s.successes == spawned.count("success")
    assert s.failures == spawned.count("failure")
    assert s.rate_limited == spawned.count("rate_limited")


# -- adaptive: 429s ----------------------------------------------------------------------------


async def fill_and_hold(
    limiter: ModelLimiter, n: int, nursery: trio.Nursery
) -> list[tuple[Permit, trio.Event]]:
    """Start ``n`` holders; return each one's permit and the event that ends its slot."""
    held: list[tuple[Permit, trio.Event]] = []

    async def holder() -> None:
        done = trio.Event()
        async with limiter.slot() as permit:
            held.append((permit, done))
            await done.wait()

    for _ in range(n):
        nursery.start_soon(holder)
    await trio.testing.wait_all_tasks_blocked()
    return held


async def late_comer(limiter: ModelLimiter, admitted_at: list[float]) -> None:
    """Take a slot, note when it was granted, report success."""
    async with limiter.slot() as permit:
        admitted_at.append(trio.current_time())
        permit.success()


async def rejected_in_turn(limiter: ModelLimiter, attempts: int) -> None:
    """A request the endpoint turns away ``attempts`` times; it takes a slot again each time."""
    for _ in range(attempts):
        async with limiter.slot() as permit:
            permit.rate_limited(1.0)


async def test_a_run_of_429s_on_a_slot_cuts_to_what_is_in_flight_and_logs_it(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten requests held by an endpoint that takes no more; six more are turned away and come
    back at once. Their 429s are load (runs on their slots, and a cliff by level): the limit
    goes to what is in flight, each cut logged, down to the ten; the requests still asking
    wait (parked, no pause) for one of the ten to finish."""
    caplog.set_level(logging.INFO, logger="trio_designer.models")
    changes: list[LimitChange] = []
    limiter = AdaptiveLimiter("gen", 16, on_change=changes.append)
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            held = await fill_and_hold(limiter, 10, nursery)
            async with trio.open_nursery() as asking:
                for _ in range(6):
                    asking.start_soon(rejected_in_turn, limiter, 10)
                await trio.testing.wait_all_tasks_blocked()
                s = limiter.statistics()
                assert (s.limit, s.in_flight, s.cooldown_remaining) == (10, 10, 0.0)
                assert s.waiting > 0
                asking.cancel_scope.cancel()
            for permit, done in held:
                permit.success()
                done.set()
    # The first cut comes while the other rejected requests still hold their slots; each
    # later run cuts to what is left, down to the ten.
    # (Which slot reaches three first depends on trio's scheduling order.)
    assert [c.old for c in changes] == [16] + [c.new for c in changes[:-1]]
    assert changes[-1].new == 10
    # Three in a row on a slot, or sooner: every admission at 11 and above was refused, none
    # below (a cliff by level).
    assert all(c.new == c.concurrency - 1 and 1 <= c.rejections <= 3 for c in changes)
    # How many of the run's 429s land on the last slot before the cut depends on trio's
    # scheduling order (1 to 3); the message reports exactly the count the limiter saw.
    last = changes[-1]
    assert [r.getMessage() for r in caplog.records][-1] == (
        f"model 'gen': limit 11 -> 10 (load: {last.rejections} 429s in a row at 11 in flight)"
    )
    assert len(caplog.records) == len(changes)
    assert all(r.levelno == logging.INFO for r in caplog.records)


async def test_a_sporadic_429_gives_its_slot_to_the_next_request_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One 429 with Retry-After 10: the adaptive limiter neither cuts nor pauses; a request
    waiting for a slot gets it in the same instant (the rejected one waits on its own)."""
    limiter = AdaptiveLimiter("m", 2)
    admitted_at: list[float] = []
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            (first, first_done), (second, second_done) = await fill_and_hold(limiter, 2, nursery)
            nursery.start_soon(late_comer, limiter, admitted_at)
            await trio.sleep(1)
            first.rate_limited(10.0)
            first_done.set()
            await trio.testing.wait_all_tasks_blocked()
            second.success()
            second_done.set()
    assert admitted_at == [1.0]
    s = limiter.statistics()
    assert (s.limit, s.rate_limited, s.cooldown_remaining) == (2, 1, 0.0)


def spent_requests(rpm: float) -> RateLimits:
    """What a 429's headers say when a request budget of ``rpm`` a minute is spent."""
    return RateLimits(requests=BudgetReading(limit=rpm, remaining=0, reset=60.0))


@contract
@pytest.mark.parametrize(("rpm", "refill"), [(12, 5.0), (240, 0.25)])
async def test_a_spent_budget_holds_admission_until_it_can_pay(
    make: Factory, autojump_clock: trio.testing.MockClock, rpm: float, refill: float
) -> None:
    """A 429 whose headers say the request budget is spent holds admission back, on both
    limiters, until the budget holds a request again (one ``60 / rpm`` refill; the static
    limiter's own pause, its ``Retry-After`` of 0.1 s, is shorter)."""
    limiter = make(4)
    admitted_at: list[float] = []

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            held = await fill_and_hold(limiter, 1, nursery)
            await trio.sleep(1)
            held[0][0].rate_limited(0.1, rate_limits=spent_requests(rpm))
            held[0][1].set()
            nursery.start_soon(late_comer, limiter, admitted_at)
            await trio.testing.wait_all_tasks_blocked()
            s = limiter.statistics()
            assert (s.waiting, s.in_flight) == (1, 0)
            assert s.cooldown_remaining == pytest.approx(refill)
            assert s.requests_left == 0
            # Nothing polls: the only timer is the budget's own refill.
            stats = trio.lowlevel.current_statistics()
            assert stats.seconds_to_next_deadline == pytest.approx(refill)
    assert admitted_at == [pytest.approx(1 + refill)]
    if isinstance(limiter, AdaptiveLimiter):
        assert limiter.statistics().limit == 4  # a spent budget is not load


@pytest.mark.parametrize(
    "rate_limits",
    [None, RateLimits(), RateLimits(requests=BudgetReading(limit=600, remaining=350))],
)
async def test_a_429_with_budget_left_pauses_nothing(
    autojump_clock: trio.testing.MockClock, rate_limits: RateLimits | None
) -> None:
    """A 429 whose headers do not say a budget is spent: the adaptive limiter admits the next
    request at once (it is noise or load, not the budget)."""
    limiter = AdaptiveLimiter("m", 1)
    with trio.fail_after(BIG):
        async with limiter.slot() as permit:
            permit.rate_limited(None, rate_limits=rate_limits)
        async with limiter.slot() as permit:
            assert trio.current_time() == 0.0
            permit.success()


@pytest.mark.deadline(30)
async def test_the_token_budget_waits_for_what_a_request_costs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A token budget of 6,000 a minute (100 a second): a request of 1,000 estimated tokens
    waits until the bucket holds them; the usage its answer reports corrects the charge."""
    limiter = AdaptiveLimiter("m", 8, budget=EndpointBudget(tpm=6_000))
    admitted_at: list[float] = []

    async def ask(tokens: int, used: int) -> None:
        async with limiter.slot(tokens) as permit:
            admitted_at.append(trio.current_time())
            await trio.sleep(0.1)
            permit.success(tokens=used)

    with trio.fail_after(BIG):
        for _ in range(6):  # the full bucket pays six requests at once
            await ask(1_000, 1_000)
        assert admitted_at == [pytest.approx(0.1 * i) for i in range(6)]
        await ask(1_000, 400)  # waits ~9.4 s for the refill; 600 of its 1,000 come back
        assert admitted_at[-1] == pytest.approx(10.0, abs=0.05)
        assert limiter.statistics().tokens_left == pytest.approx(600 + 10, abs=1)


@pytest.mark.deadline(1_000)  # virtual seconds: each request waits minutes for the budget
async def test_a_request_larger_than_the_token_budget_is_warned_about_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A request estimated above the whole budget (2,500 tokens against 1,000 a minute) waits
    for a full bucket and goes alone; the user is told why the run crawls, once per model."""
    limiter = AdaptiveLimiter("m", 8, budget=EndpointBudget(tpm=1_000))
    admitted_at: list[float] = []
    with trio.fail_after(BIG), caplog.at_level(logging.WARNING, "trio_designer"):
        for _ in range(3):
            async with limiter.slot(2_500) as permit:
                admitted_at.append(trio.current_time())
                permit.success(tokens=2_500)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "model 'm': one request is estimated at 2500 tokens, more than the whole token budget "
        "of 1000 per 60 s (tpm, or the x-ratelimit headers): each such request waits for the "
        "budget to refill completely and goes alone, so the run crawls (an endpoint that "
        "enforces the budget may refuse it outright). Raise tpm, or lower max_tokens or the "
        "prompt's length"
    ]
    # The first goes on the full bucket; each next waits for the debt and a full bucket.
    assert admitted_at == [0.0, pytest.approx(150.0), pytest.approx(300.0)]


async def test_budgets_of_two_limiters_are_independent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = AdaptiveLimiter("a", 4), AdaptiveLimiter("b", 4)
    admitted_b: list[float] = []

    async def use_b() -> None:
        async with b.slot() as permit:
            admitted_b.append(trio.current_time())
            permit.success()

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            held = await fill_and_hold(a, 4, nursery)
            for permit, done in held:
                permit.rate_limited(None, rate_limits=spent_requests(6))
                done.set()
            for _ in range(4):
                nursery.start_soon(use_b)
    assert a.statistics().cooldown_remaining == 0.0  # nobody waits at a
    assert a.statistics().requests_left == 0.0
    assert b.statistics().requests_left is None  # b learnt no budget
    assert admitted_b == [0.0] * 4


@pytest.mark.deadline(60)
async def test_limit_recovers_fast_below_a_cliff_and_probes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An endpoint that serves 12 at once behind a ceiling of 20, 30 clients: the limit is cut
    to 12 and probes 13 every 25-100 successes; the endpoint stays full."""
    changes: list[LimitChange] = []
    limiter = AdaptiveLimiter("m", 20, on_change=changes.append)
    server = {"held": 0}
    served: list[float] = []

    async def client() -> None:
        while trio.current_time() < 30.0:
            async with limiter.slot() as permit:
                if server["held"] >= 12:
                    permit.rate_limited(0.5)
                    rejected = True
                else:
                    rejected = False
                    server["held"] += 1
                    await trio.sleep(0.5)
                    server["held"] -= 1
                    permit.success()
                    served.append(trio.current_time())
            if rejected:
                await trio.sleep(0.5)

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(client)
    # The start-up burst is cut at once: by the end of t=0 (in one or several steps: the first
    # 429s may come back while more of the burst is still in flight, in trio's random order).
    assert min(c.new for c in changes if c.at == 0.0) <= 13
    late = [c.new for c in changes if c.at >= 5.0]
    assert late
    assert set(late) <= {12, 13}
    throughput = len([t for t in served if 10.0 <= t < 30.0]) / 20.0
    assert throughput >= 0.97 * 12 / 0.5


async def test_repeated_load_floors_the_limit_at_1(autojump_clock: trio.testing.MockClock) -> None:
    """An endpoint that takes nothing: every slot's runs of 429s halve the limit, down to 1,
    which still admits one request at a time."""
    limiter = AdaptiveLimiter("m", 4)
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(rejected_in_turn, limiter, 10)
    assert limiter.statistics().limit == 1
    with trio.fail_after(BIG):
        async with limiter.slot() as permit:
            permit.success()


@pytest.mark.deadline(20)
@pytest.mark.parametrize(("cooldown", "first_end"), [(None, 3.0), (0.5, 1.5)])
async def test_static_limiter_cools_down_on_429s_and_keeps_its_limit(
    autojump_clock: trio.testing.MockClock, cooldown: float | None, first_end: float
) -> None:
    """A 429 closes admission until its cooldown ends (the constructor's default when the 429
    has no Retry-After); a later, longer Retry-After extends it; the limit never moves."""
    limiter = (
        StaticLimiter("m", 2) if cooldown is None else StaticLimiter("m", 2, cooldown=cooldown)
    )
    admitted_at: list[float] = []

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            (first, first_done), (second, second_done) = await fill_and_hold(limiter, 2, nursery)
            await trio.sleep(1)
            first.rate_limited(None)  # t=1: closed until first_end, with a free slot
            first_done.set()
            nursery.start_soon(late_comer, limiter, admitted_at)
            nursery.start_soon(late_comer, limiter, admitted_at)
            await trio.testing.wait_all_tasks_blocked()
            s = limiter.statistics()
            assert (s.limit, s.in_flight, s.waiting) == (2, 1, 2)
            assert s.cooldown_remaining == first_end - 1
            assert trio.lowlevel.current_statistics().seconds_to_next_deadline == first_end - 1
            second.rate_limited(4.0)  # t=1: extends to 5.0
            second_done.set()
            await trio.testing.wait_all_tasks_blocked()
            s = limiter.statistics()
            assert (s.limit, s.in_flight, s.waiting, s.cooldown_remaining) == (2, 0, 2, 4.0)
            assert trio.lowlevel.current_statistics().seconds_to_next_deadline == 4.0
    assert admitted_at == [5.0, 5.0]
    s = limiter.statistics()
    assert (s.limit, s.rate_limited, s.successes, s.cooldown_remaining) == (2, 2, 2, 0.0)


@pytest.mark.deadline(20)
async def test_static_limiter_a_shorter_retry_after_does_not_shorten_the_cooldown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = StaticLimiter("m", 2)
    admitted_at: list[float] = []
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            (first, first_done), (second, second_done) = await fill_and_hold(limiter, 2, nursery)
            first.rate_limited(10.0)  # closed until 10.0
            second.rate_limited(1.0)  # in the same cooldown: still until 10.0
            first_done.set()
            second_done.set()
            assert limiter.statistics().cooldown_remaining == 10.0
            async with limiter.slot() as permit:
                admitted_at.append(trio.current_time())
                permit.success()
    assert admitted_at == [10.0]


@pytest.mark.parametrize("cooldown", [-0.5, math.inf, math.nan])
def test_static_limiter_rejects_a_bad_cooldown(cooldown: float) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^model limiter 'm' needs a finite cooldown of at least 0 seconds, got {cooldown}$",
    ):
        StaticLimiter("m", 2, cooldown=cooldown)


# -- adaptive: latency signal on an in-process GPU model ------------------------------------------


@pytest.mark.deadline(120)
async def test_latency_signal_finds_the_knee_of_a_gpu_endpoint(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A self-hosted GPU never 429s: 16 requests run at once for 0.1 s each, the rest queue.
    64 clients send requests back to back through a limiter with ceiling 256 for 60 virtual
    seconds. In the second half the endpoint must deliver >= 90 % of its 160 req/s with a mean
    latency <= 1.5 × its 0.1 s service time."""
    caplog.set_level(logging.INFO, logger="trio_designer.models")
    gpu = trio.CapacityLimiter(16)
    limiter = AdaptiveLimiter("gpu", 256)
    duration = 60.0
    done: list[tuple[float, float]] = []

    async def client() -> None:
        while trio.current_time() < duration:
            async with limiter.slot() as permit:
                start = trio.current_time()
                async with gpu:
                    await trio.sleep(0.1)
                permit.success()
                done.append((start, trio.current_time()))

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            for _ in range(64):
                nursery.start_soon(client)
    late = [(a, b) for a, b in done if duration / 2 <= b < duration]
    throughput = len(late) / (duration / 2)
    latency = math.fsum(b - a for a, b in late) / len(late)
    assert throughput >= 0.9 * 16 / 0.1
    assert latency <= 1.5 * 0.1
    s = limiter.statistics()
    assert s.baseline_latency == pytest.approx(0.1)
    assert s.limit <= 32
    assert any("(latency " in r.getMessage() for r in caplog.records)


@pytest.mark.deadline(15)
async def test_latency_signal_off_keeps_the_reference_behaviour(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With ``latency_signal=False`` a GPU endpoint gives AIMD nothing: the queue stays 4 deep."""
    gpu = trio.CapacityLimiter(16)
    limiter = AdaptiveLimiter("gpu", 256, policy=LimiterPolicy(latency_signal=False))
    latencies: list[float] = []

    async def client() -> None:
        while trio.current_time() < 5.0:
            async with limiter.slot() as permit:
                start = trio.current_time()
                async with gpu:
                    await trio.sleep(0.1)
                permit.success()
                latencies.append(trio.current_time() - start)

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            for _ in range(64):
                nursery.start_soon(client)
    assert limiter.statistics().limit == 256
    assert sorted(latencies)[len(latencies) // 2] == pytest.approx(0.4)


# -- uncontended requests (bound_contenders) ---------------------------------------------------


async def _ask_in_one_batch(
    limiter: StaticLimiter | AdaptiveLimiter, keys: dict[str, tuple[int, ...]]
) -> list[str]:
    """Tasks that become runnable together ask for a slot; what happened, in order."""
    log: list[str] = []
    done = trio.Event()

    async def ask(name: str) -> None:
        set_request_priority(keys[name])
        log.append(f"{name} asks")
        async with limiter.slot() as permit:
            log.append(f"{name} granted")
            await done.wait()
            permit.success()

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            for name in keys:
                nursery.start_soon(ask, name)
            await trio.testing.wait_all_tasks_blocked()
            done.set()
    return log


@contract
async def test_an_uncontended_request_takes_its_slot_on_the_spot(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    """With at most as many contenders as the limit, a request is granted before the tasks
    that became runnable with it ask: no grant round to wait for. Without a bound (or with
    one above the limit) every request of the batch asks first, then a round grants them."""
    limiter = make(4)
    assert isinstance(limiter, (StaticLimiter, AdaptiveLimiter))
    keys = {"a": (1,), "b": (0,)}
    limiter.bound_contenders(lambda: 2)
    log = await _ask_in_one_batch(limiter, keys)
    first = log[0].split()[0]
    assert log[1] == f"{first} granted"  # granted before the other asked
    assert sorted(log) == ["a asks", "a granted", "b asks", "b granted"]

    for bound in (None, 5):  # unknown, or more contenders than slots: a grant round
        limiter.bound_contenders(None if bound is None else (lambda b=bound: b))
        log = await _ask_in_one_batch(limiter, keys)
        assert sorted(log[:2]) == ["a asks", "b asks"]  # both ask before any grant
        assert sorted(log[2:]) == ["a granted", "b granted"]


@contract
async def test_a_contended_burst_is_still_granted_by_key(
    make: Factory, autojump_clock: trio.testing.MockClock
) -> None:
    """More contenders than slots: the grant round admits the best keys, whichever task trio
    ran first (the engine's critical path first, as without a bound)."""
    limiter = make(1)
    assert isinstance(limiter, (StaticLimiter, AdaptiveLimiter))
    limiter.bound_contenders(lambda: 3)
    log = await _ask_in_one_batch(limiter, {"a": (2,), "b": (1,), "c": (0,)})
    assert [entry for entry in log if entry.endswith("granted")] == [
        "c granted",
        "b granted",
        "a granted",
    ]
