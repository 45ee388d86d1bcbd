"""Early shutdown (the error-rate gate) keeps what is complete, and a resume completes the rest.

Real HTTP to a server on loopback that answers most requests in 0.2 s and some, slowly, with a
body larger than ``max_response_bytes`` (the oversize failure of ``docs/benchmarks.md``,
branch ``hostile21``, row 26: a non-retryable failure slower than the successes, so the
failures finish last). Virtual time; ``create`` writes parquet in worker threads, so the clock
jumps only after 0.1 s of real idleness (a thread at work looks idle to trio). Each test has a
deadline.

What is proved:

* 10 % of slow failures at the end of an otherwise healthy run no longer trip the gate (before:
  0 of 100 rows written): the gate also asks the run's own error rate to reach the threshold;
* when the gate trips, the row groups in flight keep their rows complete in every column: the
  others are dropped as ``UnfinishedAtShutdown`` (failure records and provenance), the record
  marks the groups partial, and a resume generates them again whole, the kept rows served by
  the response cache;
* a run that fails from its first answers still stops after one window of outcomes;
* the simulator's own oversize fault (10 %) drops exactly the rows it hit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from _hostile_server import Hostile, answer, completion, hostile_server, read_request

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._sink import read_cells
from trio_designer.cli._run import run_summary

BIG = 10_000  # virtual seconds
LIMIT = 65_536  # the models' max_response_bytes
FAST, SLOW = 0.2, 5.0  # seconds to an answer, to a failure


def pipeline(url: str, **run: Any) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": "odd", "base_url": url}],
            "models": [
                {
                    "alias": "gen",
                    "model": "m",
                    "provider": "odd",
                    "max_parallel_requests": 32,
                    "max_response_bytes": LIMIT,
                    "timeout": 60,
                }
            ],
            "run": {"row_group_size": 50, **run},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "On {{ topic }}."},
            ],
        }
    )


def failing_every(tenth: set[int], *, fail_after: float = SLOW) -> Any:
    """A handler: request ``n`` (counted from 0 by the server) fails, ``fail_after`` seconds
    late, with an oversize body when ``n % 10`` is in ``tenth``; the others are answered in
    0.2 s."""
    ok = answer(body=completion("fine"))
    oversize = answer(body=completion("x" * (2 * LIMIT)))

    async def handler(stream: trio.SocketStream, seen: Hostile) -> None:
        while await read_request(stream, seen):
            n = len(seen.requests) - 1
            if n % 10 in tenth:  # read at each request: a test may heal the server
                await trio.sleep(fail_after)
                await stream.send_all(oversize)
            else:
                await trio.sleep(FAST)
                await stream.send_all(ok)

    return handler


@pytest.mark.deadline(2 * BIG)
async def test_slow_failures_at_the_end_of_a_healthy_run_do_not_stop_it(
    autojump_clock: Any,
) -> None:
    """Before: the last ten outcomes were the ten slow failures, the gate tripped at the fifth
    and both row groups in flight were lost: 0 of 100 rows."""
    autojump_clock.autojump_threshold = 0.1
    async with hostile_server(failing_every({0})) as server:
        with trio.fail_after(BIG):
            result = await TrioDesigner(cache=False).preview(
                pipeline(server.url), num_records=100
            )
    assert result.status == "complete"
    assert result.num_records_written == 90
    assert result.num_rows_dropped == 10
    assert {f.error_class for f in result.failures} == {"ModelRequestError"}
    assert result.partial_row_groups == ()


@pytest.mark.deadline(2 * BIG)
async def test_early_shutdown_keeps_complete_rows_and_resume_completes_them(
    autojump_clock: Any, tmp_path: Path
) -> None:
    autojump_clock.autojump_threshold = 0.1
    out, cache = tmp_path / "out", tmp_path / "cache"
    # 30 % fail, 5 s late; a gate at 20 %: it trips once the failures reach a fifth of the
    # outcomes, with failing requests (and, in the later row group, rows) still out.
    failing = {0, 1, 2}
    async with hostile_server(failing_every(failing)) as server:
        config = pipeline(server.url, shutdown_error_rate=0.2)
        with trio.fail_after(BIG):
            result = await TrioDesigner(cache_dir=cache).create(
                config, num_records=100, output_dir=out
            )
        await check_then_resume_healed(server, failing, config, out, cache, result)


async def check_then_resume_healed(
    server: Hostile, failing: set[int], config: PipelineConfig, out: Path, cache: Path, result: Any
) -> None:
    """The checks of the early-shutdown run above, then its resume on the healed server."""
    assert result.status == "early_shutdown"
    assert result.partial_row_groups  # at least the last row group was in flight
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "early_shutdown"
    entries = {int(rg): e for rg, e in meta["row_groups"].items()}
    partial = [rg for rg, e in entries.items() if e.get("partial")]
    assert partial == list(result.partial_row_groups) == meta["summary"]["partial_row_groups"]
    assert meta["rows_written"] == result.num_records_written == len(result.table)
    assert result.num_records_written + result.num_rows_dropped == 50 * len(entries)
    causes = [f.error_class for f in result.failures]
    unfinished = [f for f in result.failures if f.error_class == "UnfinishedAtShutdown"]
    assert unfinished, causes
    assert set(causes) == {"ModelRequestError", "UnfinishedAtShutdown"}
    assert len(causes) == result.num_rows_dropped  # one record per dropped row
    assert {f.row_group for f in unfinished} <= set(partial)
    assert all(f.column == "text" and "shut down early" in f.message for f in unfinished)
    # Every kept row is complete: its LLM cell has a value.
    assert None not in result.table.column("text").to_pylist()
    cells = read_cells(out).to_pylist()
    assert sum(c["error_class"] == "UnfinishedAtShutdown" for c in cells) == len(unfinished)
    kept = {rg: entries[rg]["rows"] for rg in partial}
    summary = run_summary(result)
    assert f"rows: {result.num_records_written} written of 100 requested" in summary
    assert "kept only their rows complete in every column" in summary
    assert "--resume generates them again whole" in summary

    # The resume: the same config, the server healed. The partial row groups are generated
    # again whole; their kept rows come from the response cache, so only their dropped rows
    # are sent.
    failing.clear()
    sent = len(server.requests)
    with trio.fail_after(BIG):
        again = await TrioDesigner(cache_dir=cache).create(
            config, num_records=100, output_dir=out, resume=True
        )
    assert len(server.requests) - sent == sum(50 - k for k in kept.values())
    assert again.status == "complete"
    assert again.partial_row_groups == ()
    meta = json.loads((out / "metadata.json").read_text())
    assert all("partial" not in e for e in meta["row_groups"].values())
    assert all(meta["row_groups"][str(rg)]["rows"] == 50 for rg in partial)
    assert meta["rows_written"] == len(again.table)
    ids = again.table.column("_row_id").to_pylist()
    assert len(ids) == len(set(ids))
    for rg in partial:
        assert set(range(50 * rg, 50 * rg + 50)) <= set(ids)
    cells = read_cells(out).to_pylist()
    assert len(cells) == 200  # two columns x 100 rows: the partial provenance was replaced
    assert not any(c["error_class"] == "UnfinishedAtShutdown" for c in cells)
    assert sorted(p.name for p in (out / "parquet-files").iterdir()) == [
        "row-group-00000.parquet",
        "row-group-00001.parquet",
    ]


@pytest.mark.deadline(2 * BIG)
async def test_a_run_failing_from_the_start_still_stops_after_one_window(
    autojump_clock: Any,
) -> None:
    autojump_clock.autojump_threshold = 0.1
    async with hostile_server(failing_every(set(range(10)), fail_after=FAST)) as server:
        start = trio.current_time()
        with trio.fail_after(BIG):
            result = await TrioDesigner(cache=False).preview(
                pipeline(server.url), num_records=1000
            )
        elapsed = trio.current_time() - start
        sent = len(server.requests)
    assert result.status == "early_shutdown"
    assert result.num_records_written == 0
    assert elapsed < 2 * FAST + 1  # one wave of answers, not 1,000 rows' worth
    assert sent <= 64, sent  # the first wave (at most 32 in flight), nothing after the trip


@pytest.mark.deadline(2 * BIG)
async def test_the_simulators_oversize_fault_drops_only_the_rows_it_hit(
    autojump_clock: Any,
) -> None:
    from trio_designer.simulator import Faults, SimulatedModel, open_simulator

    autojump_clock.autojump_threshold = 0.1
    model = SimulatedModel(
        name="m", faults=Faults(rate_oversize=0.1, oversize_bytes=2 * LIMIT), seed=5
    )
    async with open_simulator([model]) as sim:
        with trio.fail_after(BIG):
            result = await TrioDesigner(cache=False).preview(pipeline(sim.url), num_records=100)
    assert result.status == "complete"
    assert 0 < result.num_rows_dropped < 30
    assert result.num_records_written == 100 - result.num_rows_dropped
    assert {f.error_class for f in result.failures} == {"ModelRequestError"}
