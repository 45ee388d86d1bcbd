"""The per-endpoint dispatch backlog (layer 3, dispatch side): caps, the invariant, wake-ups.

The end-to-end reason for the cap is tested in
``tests/test_adaptive_e2e.py::test_a_saturated_model_never_starves_another``.
"""

from __future__ import annotations

import pytest

from trio_designer import ModelConfig
from trio_designer.models._backlog import BACKLOG_FACTOR, BacklogStatistics, EndpointBacklog

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
