"""The per-endpoint dispatch backlog (layer 3, dispatch side): caps, the invariant, wake-ups.

The end-to-end reason for the cap is tested in
``tests/test_adaptive_e2e.py::test_a_saturated_model_never_starves_another``.
"""

from __future__ import annotations

import pytest
import trio

from trio_designer import LLMTextColumn, ModelConfig, PipelineConfig
from trio_designer.models._backlog import (
    BACKLOG_FACTOR,
    BacklogStatistics,
    EndpointBacklog,
    RestingTasks,
    resting_tasks,
)
from trio_designer.models._registry import open_model_registry

GEN = ModelConfig(alias="gen", model="m-gen", max_parallel_requests=2)
GEN_NARROW = ModelConfig(alias="gen-narrow", model="m-gen", max_parallel_requests=1)
JUDGE = ModelConfig(alias="judge", model="m-judge", max_parallel_requests=8)


def test_caps_come_from_the_narrowest_model_of_each_endpoint() -> None:
    backlog = EndpointBacklog.for_columns(
        {
            "topic": (),  # a sampler: waits on no model
            "g": (GEN,),
            "g2": (GEN_NARROW,),  # the same endpoint through another alias
            "j": (JUDGE,),
            "both": (GEN, JUDGE),  # a custom column calling two models: no single endpoint
        }
    )
    assert backlog.statistics() == {
        "simulator:m-gen": BacklogStatistics(dispatched=0, cap=BACKLOG_FACTOR * 1, peak=0),
        "simulator:m-judge": BacklogStatistics(dispatched=0, cap=BACKLOG_FACTOR * 8, peak=0),
    }


def test_batched_columns_get_room_for_full_batches() -> None:
    """An embedding column sends ``batch_size`` cells per request: its endpoint's cap grows by
    that factor, unless the endpoint also serves a column of single requests."""
    backlog = EndpointBacklog.for_columns({"vec": (JUDGE,), "g": (GEN,)}, {"vec": 16})
    assert backlog.statistics()["simulator:m-judge"].cap == BACKLOG_FACTOR * 8 * 16
    assert backlog.statistics()["simulator:m-gen"].cap == BACKLOG_FACTOR * 2
    shared = EndpointBacklog.for_columns({"vec": (JUDGE,), "j": (JUDGE,)}, {"vec": 16})
    assert shared.statistics()["simulator:m-judge"].cap == BACKLOG_FACTOR * 8


def test_the_cap_holds_and_every_place_comes_back() -> None:
    """The invariant of ``EndpointBacklog``: 0 <= dispatched <= cap, enter/exit paired."""
    backlog = EndpointBacklog.for_columns({"g": (GEN,), "j": (JUDGE,)})
    cap = BACKLOG_FACTOR * GEN.max_parallel_requests
    for _ in range(cap):
        assert backlog.eligible("g")
        backlog.enter("g")
    assert not backlog.eligible("g")
    assert backlog.eligible("j")  # another endpoint is not held back
    with pytest.raises(AssertionError, match=r"simulator:m-gen: backlog above its cap"):
        backlog.enter("g")  # the dispatcher never does this: it asks eligible() first
    stats = backlog.statistics()["simulator:m-gen"]
    assert (stats.dispatched, stats.cap, stats.peak) == (cap, cap, cap)
    for _ in range(cap):
        backlog.exit("g")
    assert backlog.statistics()["simulator:m-gen"] == BacklogStatistics(
        dispatched=0, cap=cap, peak=cap
    )


def test_the_first_wave_is_narrow_until_widened() -> None:
    """A first-wave backlog dispatches no more than the endpoint's slots (its limiter stays
    uncontended) until ``widen()``, which restores the full cap once and wakes the
    dispatchers; ``when_dispatched`` fires once, at the first dispatch to an endpoint."""
    backlog = EndpointBacklog.for_columns({"g": (GEN,), "j": (JUDGE,)}, first_wave=True)
    woken: list[str] = []
    dispatched: list[str] = []
    backlog.subscribe(lambda: woken.append("worker"))
    backlog.when_dispatched(lambda: dispatched.append("first"))
    assert backlog.narrowed
    slots = GEN.max_parallel_requests
    for _ in range(slots):
        assert backlog.eligible("g")
        backlog.enter("g")
    assert dispatched == ["first"]
    assert not backlog.eligible("g")  # narrow: as many as can hold a slot now
    assert backlog.statistics()["simulator:m-gen"].cap == slots
    assert backlog.statistics()["simulator:m-judge"].cap == JUDGE.max_parallel_requests
    backlog.widen()
    assert woken == ["worker"]
    assert not backlog.narrowed
    backlog.widen()  # idempotent: no second wake
    assert woken == ["worker"]
    cap = BACKLOG_FACTOR * slots
    for _ in range(cap - slots):
        assert backlog.eligible("g")
        backlog.enter("g")
    assert not backlog.eligible("g")
    assert dispatched == ["first"]
    assert backlog.statistics()["simulator:m-gen"] == BacklogStatistics(
        dispatched=cap, cap=cap, peak=cap
    )
    # Without first_wave, the full cap from the start (nothing to widen).
    assert not EndpointBacklog.for_columns({"g": (GEN,)}).narrowed


def test_a_saturated_endpoint_wakes_its_listeners_when_a_place_frees() -> None:
    backlog = EndpointBacklog.for_columns({"g": (GEN,)})
    woken: list[str] = []
    backlog.subscribe(lambda: woken.append("worker"))
    cap = BACKLOG_FACTOR * GEN.max_parallel_requests
    for _ in range(cap):
        backlog.enter("g")
    backlog.exit("g")  # saturated -> one free place: wake
    assert woken == ["worker"]
    backlog.exit("g")  # not saturated before: nobody is waiting on it
    assert woken == ["worker"]
    backlog.unsubscribe(woken.append)  # unknown listener: no-op


def test_columns_without_exactly_one_model_are_never_held_back() -> None:
    backlog = EndpointBacklog.for_columns({"topic": (), "both": (GEN, JUDGE)})
    for _ in range(100):
        assert backlog.eligible("both")
        backlog.enter("both")
        backlog.enter("topic")
    assert backlog.statistics() == {}


def test_bad_caps_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^endpoint 'e': a backlog cap must be >= 1, got 0$"):
        EndpointBacklog({"c": "e"}, {"e": 0})
    with pytest.raises(ValueError, match=r"^endpoints without a backlog cap: \['e'\]$"):
        EndpointBacklog({"c": "e"}, {})


def test_resting_tasks_hold_no_place() -> None:
    """A task waiting out a 429 in place holds no backlog place: while it rests, another may
    be dispatched (the dispatcher is woken when a full endpoint's task starts resting)."""
    resting = RestingTasks()
    backlog = EndpointBacklog.for_columns({"g": (GEN,)})
    assert backlog.statistics()["simulator:m-gen"].resting == 0
    backlog = EndpointBacklog({"g": "simulator:m-gen"}, {"simulator:m-gen": 2}, resting=resting)
    woken: list[str] = []
    backlog.subscribe(lambda: woken.append("dispatcher"))
    backlog.enter("g")
    backlog.enter("g")
    assert not backlog.eligible("g")
    with resting.rest("simulator:m-gen"):
        assert woken == ["dispatcher"]
        assert backlog.eligible("g")
        backlog.enter("g")  # 3 dispatched, 1 resting: the cap of 2 holds
        assert not backlog.eligible("g")
        assert backlog.statistics()["simulator:m-gen"] == BacklogStatistics(
            dispatched=3, cap=2, peak=2, resting=1
        )
    # The rest is over: 3 hold places against a cap of 2; nothing more until two have left.
    assert not backlog.eligible("g")
    backlog.exit("g")
    assert not backlog.eligible("g")
    assert woken == ["dispatcher"]
    backlog.exit("g")
    assert backlog.eligible("g")
    assert woken == ["dispatcher", "dispatcher"]
    with resting.rest("simulator:other"):  # another endpoint's rest wakes nobody here
        assert woken == ["dispatcher", "dispatcher"]


async def test_the_open_registry_lends_its_ledger_to_backlogs_built_inside_it() -> None:
    """The engine builds its backlog inside ``open_model_registry``: that backlog counts the
    registry's resting tasks (the ledger travels in a context variable, like the request
    priority)."""
    assert resting_tasks() is None
    config = PipelineConfig(
        columns=[LLMTextColumn(name="g", model="gen", prompt="hi")],
        models=[ModelConfig(alias="gen", model="m-gen", max_parallel_requests=1)],
    )
    with trio.fail_after(30):
        async with open_model_registry(config) as registry:
            ledger = resting_tasks()
            assert ledger is not None
            backlog = EndpointBacklog.for_columns({"g": (GEN,)})
            for _ in range(BACKLOG_FACTOR * GEN.max_parallel_requests):
                backlog.enter("g")
            assert not backlog.eligible("g")
            with ledger.rest("simulator:m-gen"):
                assert backlog.eligible("g")
            assert registry.aliases() == ("gen",)
    assert resting_tasks() is None
