"""The model layer inside the scenarios: random DAGs whose cells call endpoints that 429.

Each example runs the whole engine, the real per-endpoint limiters and the real simulator in
one ``trio.run`` under an autojumping clock (``property_tests/model_layer.py`` says what is
recorded, and from where). The invariants are the per-endpoint limiter's documented contract
(``trio_designer/models/_limiter.py``):

11. ``check_in_flight_within_limit`` — a request is admitted only while fewer than the limit
    are in flight;
12. ``check_limit_within_bounds`` — the limit stays within ``[1, ceiling]``;
13. ``check_429_cuts_are_measured`` — a 429 cut is made in a 429's report and at most halves
    the limit (it lands on what is in flight);
14. ``check_nothing_sent_during_a_cooldown`` — no request is admitted, nor reaches the
    endpoint, while the limiter holds admission back (the static limiter's pause after a 429,
    a spent budget);
15. ``check_every_slot_returned`` — after the run no slot is held and nobody waits; and from
    the endpoint's side, it never sees more of our requests at once than the ceiling.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings

from trio_designer import TrioDesigner
from trio_designer.simulator import open_simulator

from ._budget import scaled
from .model_layer import (
    ModelLayerLog,
    ModelScenario,
    check_429_cuts_are_measured,
    check_every_slot_returned,
    check_in_flight_within_limit,
    check_limit_within_bounds,
    check_nothing_sent_during_a_cooldown,
    dropped_rows,
    hidden_limit,
    model_scenarios,
    work_bound,
)
from .scenario import run_in_virtual_time
from .test_engine_scenarios import check_tokens_returned


@settings(max_examples=scaled(100))
@given(sc=model_scenarios())
@example(sc=hidden_limit("adaptive"))
@example(sc=hidden_limit("static"))
@example(sc=dropped_rows("adaptive"))
@example(sc=dropped_rows("static"))
def test_model_layer_invariants(sc: ModelScenario) -> None:
    """Invariants 11-15 over random DAGs, endpoints, 429 schedules and both limiters."""
    log = ModelLayerLog()

    async def go() -> tuple[Any, Any, Any]:
        async with open_simulator([e.model for e in sc.endpoints]) as sim:
            designer = TrioDesigner(limiter_factory=log.factory(sc.limiter))
            result = await designer.preview(sc.config(sim.url), num_records=sc.rows)
            return result, sim.request_log(), sim.stats()

    result, request_log, sim_stats = run_in_virtual_time(go, deadline=2 * work_bound(sc) + 1)
    names = {m: next(n for n in log.probes if n.endswith(f":{m}")) for m in _models(sc)}
    model_of = {name: model for model, name in names.items()}
    ceilings = {names[e.model.name]: e.ceiling for e in sc.endpoints if e.model.name in names}
    check_in_flight_within_limit(log)
    check_limit_within_bounds(log, ceilings)
    check_429_cuts_are_measured(log)
    check_nothing_sent_during_a_cooldown(log, request_log, model_of)
    check_every_slot_returned(log)
    for e in sc.endpoints:
        assert sim_stats[e.model.name].peak_concurrency <= e.ceiling, (e, sim_stats)
    check_tokens_returned(result.slots)


def _models(sc: ModelScenario) -> set[str]:
    """The simulated models some column calls (each has a limiter)."""
    return {
        sc.endpoints[index].model.name for index in sc.endpoint_of.values() if index is not None
    }
