"""The first wave of a run (``models/_backlog.py``, "The first wave"), in virtual time.

While more cells are ready for an endpoint than it has slots, the async engine dispatches
only as many as can hold a slot at once, so its limiter grants each first-wave request on the
spot (no grant round: the first request leaves after one cell's work, not after every
dispatched cell built its own); the surplus is dispatched once the first wave is out, parks,
and is admitted by priority as before. LLM-bound custom columns call the real simulator over
loopback and record what the endpoint's limiter looked like when they asked for a slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio

from trio_designer import (
    CategorySampler,
    CustomColumn,
    ModelConfig,
    PipelineConfig,
    RunConfig,
    TrioDesigner,
)
from trio_designer.simulator import Latency, SimulatedModel

pytestmark = pytest.mark.deadline(20)

SLOTS = 4
ROWS = 6


class Calls:
    """Every model call of the run: (column, row, virtual time, in flight, waiting), as the
    endpoint's limiter showed them right before the call asked it for a slot."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, float, int, int]] = []

    def column(self, name: str, after: str) -> CustomColumn:
        async def fn(row: Mapping[str, Any], ctx: Any) -> str:
            handle = ctx.models.model("gen")
            stats = handle.limiter.statistics()
            self.seen.append(
                (name, ctx.row_index, trio.current_time(), stats.in_flight, stats.waiting)
            )
            reply = await handle.chat([{"role": "user", "content": f"{name} {row[after]}"}])
            return str(reply.content)[:8]

        fn.__name__ = f"call_{name}"
        return CustomColumn(
            name=name,
            function=fn,
            depends_on=(after,),
            llm_bound=True,
            models=("gen",),
            dtype="str",
        )


def deep(calls: Calls) -> PipelineConfig:
    """Deep's shape, small: ``summary -> analysis`` (the critical path) and ``trivia`` (no
    downstream), declared first so that declaration order would put it first."""
    return PipelineConfig(
        columns=(
            CategorySampler(name="topic", values=("a", "b")),
            calls.column("trivia", "topic"),
            calls.column("summary", "topic"),
            calls.column("analysis", "summary"),
        ),
        models=(ModelConfig(alias="gen", model="sim-gen", max_parallel_requests=SLOTS),),
        run=RunConfig(seed=3),
    )


async def run(calls: Calls) -> Any:
    sim = [SimulatedModel(name="sim-gen", latency=Latency(median=1.0), capacity=1000)]
    with trio.fail_after(100):
        return await TrioDesigner(simulator_models=sim).preview(deep(calls), num_records=ROWS)


async def test_the_first_wave_takes_its_slots_on_the_spot(autojump_clock: Any) -> None:
    """12 cells are ready for 4 slots at the start. The first wave is the 4 best (critical
    path: ``summary``), each granted the moment it asks (in flight 0, 1, 2, 3, nobody parked:
    with a grant round every one of them would see 0 in flight, the later ones parked); the
    surplus asks only after that, parks, and is admitted by priority."""
    calls = Calls()
    result = await run(calls)
    assert result.num_records_written == ROWS
    first = calls.seen[:SLOTS]
    assert [c[0] for c in first] == ["summary"] * SLOTS
    assert [(c[2], c[3], c[4]) for c in first] == [(0.0, n, 0) for n in range(SLOTS)]
    # The surplus was dispatched once the first wave was out: it found every slot taken.
    surplus = [c for c in calls.seen if c[2] == 0.0][SLOTS:]
    assert surplus, "the surplus is dispatched (and parks) during the first wave's wait"
    assert all(c[3] == SLOTS for c in surplus)


async def test_the_critical_path_still_goes_first(autojump_clock: Any) -> None:
    """Every summary starts before any trivia is admitted, every analysis as soon as a slot
    and its summary allow: 18 one-second cells on 4 slots in ceil(18 / 4) = 5 s."""
    calls = Calls()
    result = await run(calls)
    assert result.elapsed == 5.0
    assert result.usage["gen"]["requests_ok"] == 3 * ROWS
    assert sorted(r for c, r, *_ in calls.seen if c == "summary") == list(range(ROWS))
