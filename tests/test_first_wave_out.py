"""The designer's warm-up and the moment the first wave of requests is "out"
(``_designer._warm_up``), in virtual time.

The warm-up connects at once, but looks for the first wave (``ModelRegistry.top_up``, then
``out``: the sink's preparation and the generators' ``_prepare_ahead`` wait for it) only once
the run's engine has started: while ``create()`` still sets up, every task can be blocked with
nothing sending, which ``first_wave_out``'s test alone read as "out". Requests go over
loopback to the embedded simulator.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_designer import LLMTextColumn, ModelConfig, PipelineConfig
from trio_designer._designer import _warm_up
from trio_designer.models._registry import open_model_registry
from trio_designer.simulator import Latency, SimulatedModel

pytestmark = pytest.mark.deadline(30)

SETUP = 0.05  # virtual seconds of "set-up" (nothing sent), then one request of 1 s


def _config() -> PipelineConfig:
    return PipelineConfig(
        columns=[LLMTextColumn(name="g", model="gen", prompt="hi")],
        models=[ModelConfig(alias="gen", model="m-gen", max_parallel_requests=2)],
    )


def _simulated() -> list[SimulatedModel]:
    return [SimulatedModel(name="m-gen", latency=Latency(median=1.0), capacity=100)]


async def test_out_waits_for_the_run_to_start_and_its_request_to_be_out(
    autojump_clock: Any,
) -> None:
    """Set-up idles (every task blocked, nothing sending): ``out`` stays unset. The engine
    starts and sends a request: ``out`` is set while that request waits for its answer, and
    the top-up has opened connections for the answer's follow-ups by then."""
    async with open_model_registry(_config(), simulator_models=_simulated()) as registry:
        client = registry.client("simulator")
        started, out = trio.Event(), trio.Event()
        seen: list[tuple[float, bool, int]] = []

        async def watch() -> None:
            await out.wait()
            seen.append((trio.current_time(), client.sending() == 0, client.statistics().opened))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_warm_up, registry, trio.CancelScope(), started, out)
            nursery.start_soon(watch)
            await trio.sleep(SETUP)  # create()'s set-up
            assert not out.is_set(), "the set-up's idle moment is not the first wave"
            opened = client.statistics().opened  # the warm-up's connections
            started.set()
            reply = await registry.model("gen").chat([{"role": "user", "content": "hi"}])
            assert reply.content
        assert len(seen) == 1
        when, nothing_sending, opened_by_then = seen[0]
        assert SETUP <= when < SETUP + 1.0  # before the answer came back
        assert nothing_sending
        assert opened_by_then >= opened  # (the top-up's own connects finish after ``out``)


async def test_a_run_that_never_starts_sets_out_when_the_warm_up_ends(
    autojump_clock: Any,
) -> None:
    """A run that ends (or fails) before its engine starts: ``out`` is set when the warm-up
    is cancelled, so nothing waiting for it (a deferred sink preparation) waits forever."""
    async with open_model_registry(_config(), simulator_models=_simulated()) as registry:
        started, out, scope = trio.Event(), trio.Event(), trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_warm_up, registry, scope, started, out)
            await trio.sleep(1.0)
            assert not out.is_set()
            scope.cancel()
        assert out.is_set()
        assert not started.is_set()
