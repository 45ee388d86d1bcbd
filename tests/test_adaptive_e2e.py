"""The model layer end to end: engine -> adaptive limiter -> client -> simulator over loopback.

Virtual time, real HTTP (the simulator runs inside the test's own trio.run on 127.0.0.1).
"""

from __future__ import annotations

from functools import partial
from statistics import fmean
from typing import Any

import pytest
import trio

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer.models import AdaptiveLimiter, LimiterPolicy, StaticLimiter
from trio_designer.simulator import Latency, SimulatedModel, open_simulator

BIG = 100_000


def one_column(url: str, *, ceiling: int, rows_per_group: int = 2000) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": "gpu", "base_url": url}],
            "models": [
                {"alias": "gen", "model": "m", "provider": "gpu", "max_parallel_requests": ceiling}
            ],
            "run": {"row_group_size": rows_per_group, "seed": 3},
            "columns": [
                {"name": "n", "kind": "sampler", "sampler": "uniform", "low": 0, "high": 1},
                {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "Say {{ n }}."},
            ],
        }
    )


@pytest.mark.slow
@pytest.mark.deadline(20)
async def test_latency_signal_keeps_a_gpu_endpoint_at_its_knee(autojump_clock: Any) -> None:
    """A self-hosted endpoint never 429s: 16 slots, 0.1 s per request, everything else queues.
    Starting at a ceiling of 64 (4x the endpoint's capacity), the limiter must find the knee:
    once it has (the last third of the run), >= 90 % of the endpoint's 160 req/s with latency
    (queueing included) near the 0.1 s baseline. benches/adaptivity.py runs longer versions."""
    gpu = SimulatedModel(name="m", latency=Latency(median=0.1), mode="gpu", capacity=16)
    with trio.fail_after(BIG):
        async with open_simulator([gpu]) as sim:
            result = await TrioDesigner().preview(
                one_column(sim.url, ceiling=64), num_records=1500
            )
            log = sorted(sim.request_log(), key=lambda r: r.start)
    assert result.num_records_written == 1500
    settled = log[2 * len(log) // 3 :]
    span = max(r.end for r in settled) - settled[0].start
    throughput = len(settled) / span
    latency = fmean(r.end - r.start for r in settled)
    assert throughput >= 0.9 * 160, throughput
    assert latency <= 1.5 * 0.1, latency
    assert result.model_limits["gpu:m"].limit <= 32  # near the 16 slots, not the ceiling


@pytest.mark.deadline(100)
async def test_a_throttled_model_never_stalls_another(autojump_clock: Any) -> None:
    """Two submission slots only. Cells waiting on a slow, narrow model hand their slot over
    to the LLM-wait pool, so the fast model's cells all run at once."""
    slow = SimulatedModel(name="slow", latency=Latency(median=10.0), capacity=1000)
    fast = SimulatedModel(name="fast", latency=Latency(median=1.0), capacity=1000)
    config = PipelineConfig.from_dict(
        {
            "models": [
                {"alias": "slow", "model": "slow", "max_parallel_requests": 2},
                {"alias": "fast", "model": "fast", "max_parallel_requests": 16},
            ],
            "run": {"max_submitted_tasks": 2, "trace": True},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {"name": "a", "kind": "llm_text", "model": "slow", "prompt": "{{ topic }}"},
                {"name": "b", "kind": "llm_text", "model": "fast", "prompt": "{{ topic }}"},
            ],
        }
    )
    with trio.fail_after(BIG):
        result = await TrioDesigner(simulator_models=[slow, fast]).preview(
            config, num_records=10
        )
    fast_done = max(t.finished for t in result.traces if t.column == "b")
    assert fast_done == 1.0
    assert result.elapsed == 50.0  # 10 slow cells, 2 at a time, 10 s each
    assert result.model_limits["simulator:fast"].limit == 16


@pytest.mark.deadline(25)
async def test_a_saturated_model_never_starves_another(autojump_clock: Any) -> None:
    """A generator endpoint (2 parallel) and its judge (8 parallel). The generator's cells rank
    first (longer chain), and without a per-endpoint backlog cap they would take all 18 task
    slots while parked on their own limiter, leaving the judge idle. With the cap (2 x 2
    generator tasks dispatched at most), every judge cell starts the moment its row's
    generated cell lands."""
    gen = SimulatedModel(name="gen", latency=Latency(median=1.0), capacity=1000)
    judge = SimulatedModel(name="judge", latency=Latency(median=1.0), capacity=1000)
    config = PipelineConfig.from_dict(
        {
            "models": [
                {"alias": "gen", "model": "gen", "max_parallel_requests": 2},
                {"alias": "judge", "model": "judge", "max_parallel_requests": 8},
            ],
            "run": {"max_submitted_tasks": 2, "max_llm_wait_tasks": 16, "trace": True},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {"name": "g", "kind": "llm_text", "model": "gen", "prompt": "{{ topic }}"},
                {"name": "j", "kind": "llm_text", "model": "judge", "prompt": "{{ g }}"},
            ],
        }
    )
    with trio.fail_after(BIG):
        result = await TrioDesigner(simulator_models=[gen, judge]).preview(
            config, num_records=20
        )
    generated = {t.row: t.finished for t in result.traces if t.column == "g"}
    judged = {t.row: t.started for t in result.traces if t.column == "j"}
    assert judged == generated  # no judge cell ever waited for a slot
    assert result.elapsed == 11.0  # 20 generator cells, 2 at a time, + the last judge


def deep_shape(rows_per_group: int = 100) -> PipelineConfig:
    """The seed's Deep shape: topic -> summary -> analysis -> conclusion, topic -> trivia."""
    llm = [
        ("summary", "Summarize {{ topic }}."),
        ("trivia", "A fact about {{ topic }}."),
        ("analysis", "Analyze {{ summary }}."),
        ("conclusion", "Conclude {{ analysis }}."),
    ]
    return PipelineConfig.from_dict(
        {
            "models": [{"alias": "gen", "model": "gen", "max_parallel_requests": 16}],
            "run": {"row_group_size": rows_per_group, "seed": 5},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a", "b"]},
                *[
                    {"name": n, "kind": "llm_text", "model": "gen", "prompt": p}
                    for n, p in llm
                ],
            ],
        }
    )


async def test_critical_path_cells_win_the_model_limiter(autojump_clock: Any) -> None:
    """Deep, 10 rows, 16 slots, fixed 0.2 s: 40 requests fit in 3 waves only if every wave
    serves the longest remaining chains first (10 summaries, then 10 analyses + 6 trivia, then
    10 conclusions + 4 trivia). All 20 ready cells park on the model limiter at once, in the
    order trio happens to run them; the limiter must admit them by the cells' rank, not FIFO
    (FIFO took 4 waves in about half the runs). Several runs, because trio's task order is
    random."""
    gen = SimulatedModel(name="gen", latency=Latency(median=0.2), capacity=1000)
    designer = TrioDesigner(simulator_models=[gen], limiter_factory=StaticLimiter)
    with trio.fail_after(BIG):
        for _ in range(8):
            start = trio.current_time()
            result = await designer.preview(deep_shape(), num_records=10)
            assert result.num_records_written == 10
            assert trio.current_time() - start <= 3 * 0.2 + 1e-6


@pytest.mark.deadline(50)
async def test_limiter_factory_chooses_each_endpoints_limiter(autojump_clock: Any) -> None:
    """Hosted endpoint, capacity 4, ceiling 16. A partial of AdaptiveLimiter (a tuned policy)
    still reports its cuts as ``limit_change`` events; StaticLimiter keeps 16 whatever the
    429s say, and still finishes every row (it pauses for Retry-After instead of spinning)."""
    hosted = SimulatedModel(name="m", latency=Latency(median=0.5), capacity=4, retry_after=1.0)
    config = PipelineConfig.from_dict(
        {
            "models": [{"alias": "gen", "model": "m", "max_parallel_requests": 16}],
            "run": {"seed": 3},
            "columns": [
                {"name": "n", "kind": "sampler", "sampler": "uniform", "low": 0, "high": 1},
                {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "Say {{ n }}."},
            ],
        }
    )
    events: list[str] = []
    tuned = partial(AdaptiveLimiter, policy=LimiterPolicy(latency_signal=False))
    with trio.fail_after(BIG):
        adaptive = await TrioDesigner(
            simulator_models=[hosted],
            limiter_factory=tuned,
            on_event=lambda name, _fields: events.append(name),
        ).preview(config, num_records=60)
        static = await TrioDesigner(
            simulator_models=[hosted], limiter_factory=StaticLimiter
        ).preview(config, num_records=60)
    assert adaptive.num_records_written == static.num_records_written == 60
    assert "limit_change" in events
    assert adaptive.model_limits["simulator:m"].limit < 16
    assert static.model_limits["simulator:m"].limit == 16
    assert static.model_limits["simulator:m"].rate_limited > 0
