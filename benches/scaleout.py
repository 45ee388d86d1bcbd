"""Sharded runs on local worker processes (``run --workers K``) against ONE simulator in its own
process (``python -m trio_designer.simulator``), over loopback HTTP.

Two questions:

1. **Throughput where the client is the bottleneck.** Zero latency, a capacity no run reaches
   (``mode=gpu``): every request costs only client CPU (and the simulator's). 1, 2 and 4
   workers, and the one-process ``create`` for reference. Reported: rows per second over the
   wall time of the call (process start-up and merge included) and over the span of the
   requests in the simulator's log (first arrival to last answer). The machine's core count is
   in the JSON: with 2 cores, the simulator process and the workers share them, so more than
   ~1.5× is not to be expected whatever the design.
2. **An endpoint with a hidden capacity.** 200 ms answers, ``mode=hosted`` with a hidden
   ``capacity`` (429 beyond it), a run-wide ``max_parallel_requests`` of twice the capacity
   (each shard gets its share). Reported: throughput against the capacity's rate
   (``capacity / 0.2 s``), the peak number of requests the simulator served at once (never
   above the capacity: it refuses the rest), the 429s, and fairness: the shards' limits when
   the first shard finished, the sum of the shards' limits averaged over the time all ran
   (after its first fifth), and each shard's share of the row groups written while all ran
   (an even split is ``1 / K``). Both limiter policies: the default (what a lone run uses) and
   what sharded runs use (``SHARD_POLICY``: ``probe_by_share``, ``max_noise_rate=0.1``,
   ``follow_use``).

3. **The same, against the canned endpoint** (``python -m trio_designer.simulator --canned``,
   ``trio_designer/simulator/_canned.py``): every chat completion answered at once with a fixed
   text, for a small fraction of the full simulator's CPU per request, so the client really is
   the bottleneck. 1, 2 and 4 workers and ``create``, interleaved and repeated (``reps``).
   Reported per run: rows/s and requests/s over the span of the requests (the endpoint's
   first arrival to its last answer) and over the wall time, the client's CPU (the bench
   process for ``create``; for workers the children's ``time.process_time`` at their end, from
   their final report, split into start-up — interpreter, imports, the job — and the run, plus
   the driver's own CPU), per request, and the endpoint's CPU per request. The same CPU figures
   are taken against the full simulator (question 1) for comparison.

The JSON records the machine's load average before and after (1, 5 and 15 minutes): on a
shared machine the real-time figures are the machine's as much as the design's.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.request
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._scaleout._workers import ShardedRunResult, run_workers
from trio_designer.models import AdaptiveLimiter

from . import _common as c
from .small_runs import External, external_process, external_simulator

PROVIDER = "bench"


@attrs.frozen
class Params:
    workers: tuple[int, ...]
    fast_records: int
    fast_row_group: int
    hidden_records: int
    hidden_capacity: int
    latency: float
    canned_records: int = 6000
    reps: int = 3


PROFILES = {
    "full": Params((1, 2, 4), 6000, 100, 2400, 16, 0.2, 8000, 3),
    "quick": Params((1, 2, 4), 2000, 100, 800, 16, 0.2, 4000, 3),
    "smoke": Params((2,), 40, 10, 40, 4, 0.05, 40, 1),
}


def external_canned(model: str) -> AbstractContextManager[External]:
    """``python -m trio_designer.simulator --port 0 --canned <model>``."""
    return external_process(["--canned", model], what="the canned endpoint")


def _call(url: str, method: str, path: str) -> Any:
    root = url.removesuffix("/v1")
    data = b"" if method == "POST" else None
    request = urllib.request.Request(root + path, method=method, data=data)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def config(url: str, *, max_parallel: int, row_group_size: int) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": PROVIDER, "base_url": url}],
            "models": [
                {
                    "alias": "gen",
                    "model": c.GEN_MODEL,
                    "provider": PROVIDER,
                    "max_parallel_requests": max_parallel,
                }
            ],
            "run": {"row_group_size": row_group_size},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a", "b"]},
                {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "On {{ topic }}."},
            ],
        }
    )


def served_peak(records: list[dict[str, Any]]) -> int:
    """The most requests the simulator was serving at once (answered ones, 200)."""
    edges = sorted(
        [(r["start"] + r.get("queued_for", 0.0), 1) for r in records if r["status"] == 200]
        + [(r["end"], -1) for r in records if r["status"] == 200]
    )
    peak = level = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def span(records: list[dict[str, Any]]) -> float:
    return max(r["end"] for r in records) - min(r["start"] for r in records)


def one_process(cfg: PipelineConfig, records: int, out: Path) -> float:
    async def main() -> float:
        start = trio.current_time()
        await TrioDesigner().create(cfg, num_records=records, output_dir=out)
        return trio.current_time() - start

    return trio.run(main)


def sharded(
    cfg: PipelineConfig, records: int, workers: int, out: Path, limiter_factory: Any = None
) -> ShardedRunResult:
    async def main() -> ShardedRunResult:
        return await run_workers(
            cfg,
            num_records=records,
            output_dir=out,
            workers=workers,
            progress_interval=None,
            limiter_factory=limiter_factory,
        )

    return trio.run(main)


def measured_run(
    cfg: PipelineConfig, records: int, workers: int, out: Path
) -> tuple[float, dict[str, float]]:
    """One run (``workers`` 0: ``create`` in this process): wall seconds and the client's CPU
    seconds (``total``; for workers also ``startup``, the children's before their runs began,
    and ``driver``, this process's)."""
    own = time.process_time()
    if workers == 0:
        wall = one_process(cfg, records, out)
        return wall, {"total": time.process_time() - own, "startup": 0.0, "driver": 0.0}
    result = sharded(cfg, records, workers, out)
    driver = time.process_time() - own
    assert result.status == "complete"
    assert all(cpu is not None for cpu in result.child_cpu), result.child_cpu
    children = [cpu for cpu in result.child_cpu if cpu is not None]
    return result.elapsed, {
        "total": sum(total for _, total in children) + driver,
        "startup": sum(start for start, _ in children),
        "driver": driver,
    }


def canned_throughput(p: Params, scratch: Path) -> list[dict[str, Any]]:
    """Question 3: the canned endpoint, 1/2/4 workers and ``create``, interleaved, ``reps``
    rounds (each round in another order)."""
    rows = []
    order = (0, *p.workers)
    with external_canned(c.GEN_MODEL) as endpoint:
        cfg = config(endpoint.url, max_parallel=64, row_group_size=p.fast_row_group)
        for rep in range(p.reps):
            shift = rep % len(order)
            for workers in order[shift:] + order[:shift]:
                _call(endpoint.url, "POST", "/stats/reset")
                out = scratch / f"canned-{workers}-{rep}"
                endpoint_cpu = endpoint.cpu_seconds()
                wall, cpu = measured_run(cfg, p.canned_records, workers, out)
                endpoint_cpu = endpoint.cpu_seconds() - endpoint_cpu
                stats = _call(endpoint.url, "GET", "/stats")
                n = stats["requests"]
                assert n == p.canned_records, stats
                span_s = stats["last_answer"] - stats["first_arrival"]
                rows.append(
                    {
                        "rep": rep,
                        "workers": workers or "create",
                        "records": p.canned_records,
                        "requests": n,
                        "wall_s": round(wall, 3),
                        "rows_per_s_wall": round(p.canned_records / wall, 1),
                        "requests_span_s": round(span_s, 3),
                        "rows_per_s_span": round(p.canned_records / span_s, 1),
                        "requests_per_s_span": round(n / span_s, 1),
                        "client_cpu_s": round(cpu["total"], 3),
                        "client_startup_cpu_s": round(cpu["startup"], 3),
                        "driver_cpu_s": round(cpu["driver"], 3),
                        "client_cpu_ms_per_request": round(1000 * cpu["total"] / n, 3),
                        "client_run_cpu_ms_per_request": round(
                            1000 * (cpu["total"] - cpu["startup"] - cpu["driver"]) / n, 3
                        ),
                        "endpoint_cpu_s": round(endpoint_cpu, 3),
                        "endpoint_cpu_ms_per_request": round(1000 * endpoint_cpu / n, 3),
                    }
                )
    for rep in range(p.reps):
        mine = [r for r in rows if r["rep"] == rep]
        base = next((r for r in mine if r["workers"] == 1), mine[0])
        for row in mine:
            row["speedup_span_vs_1_worker"] = round(
                row["rows_per_s_span"] / base["rows_per_s_span"], 2
            )
            row["speedup_wall_vs_1_worker"] = round(
                row["rows_per_s_wall"] / base["rows_per_s_wall"], 2
            )
    return rows


def throughput(p: Params, scratch: Path) -> list[dict[str, Any]]:
    rows = []
    spec = f"{c.GEN_MODEL}:latency=0,mode=gpu,capacity=100000"
    with external_simulator([spec]) as sim:
        cfg = config(sim.url, max_parallel=64, row_group_size=p.fast_row_group)
        for workers in (0, *p.workers):
            _call(sim.url, "POST", "/stats/reset")
            out = scratch / f"fast-{workers}"
            cpu = sim.cpu_seconds()
            wall, client = measured_run(cfg, p.fast_records, workers, out)
            records = _call(sim.url, "GET", "/log")["records"]
            assert len(records) == p.fast_records
            rows.append(
                {
                    "workers": workers or "create",
                    "records": p.fast_records,
                    "wall_s": round(wall, 3),
                    "rows_per_s_wall": round(p.fast_records / wall, 1),
                    "requests_span_s": round(span(records), 3),
                    "rows_per_s_span": round(p.fast_records / span(records), 1),
                    "simulator_cpu_s": round(sim.cpu_seconds() - cpu, 2),
                    "simulator_cpu_ms_per_request": round(
                        1000 * (sim.cpu_seconds() - cpu) / p.fast_records, 3
                    ),
                    "client_cpu_s": round(client["total"], 3),
                    "client_startup_cpu_s": round(client["startup"], 3),
                    "client_cpu_ms_per_request": round(1000 * client["total"] / p.fast_records, 3),
                }
            )
    base = next((r for r in rows if r["workers"] == 1), rows[0])["rows_per_s_span"]
    for row in rows:
        row["speedup_span_vs_1_worker"] = round(row["rows_per_s_span"] / base, 2)
    return rows


def fairness(result: ShardedRunResult, workers: int, ceiling: int) -> dict[str, Any]:
    """Limits when the first shard finished, and each shard's rows/s while all ran."""
    last = {s: max(t for t, shard, _ in result.finished if shard == s) for s in range(workers)}
    first_done = min(last.values())
    limits = dict.fromkeys(range(workers), ceiling)  # a limiter starts at its ceiling
    for t, shard, _, limit in result.limits:
        if t <= first_done:
            limits[shard] = limit
    # When every shard had started: its first report (a limit change in its start-up burst, or
    # a row group). Child processes take seconds to start on a loaded machine (15 s were seen
    # with load average 5): before that a shard holds nothing, whatever its ceiling.
    first_report: dict[int, float] = {}
    for t, shard, _ in [*result.finished, *((t, s, 0) for t, s, _, _ in result.limits)]:
        first_report[shard] = min(t, first_report.get(shard, t))
    all_started = max(first_report.values(), default=0.0)
    rows_while_all = [0] * workers
    for t, shard, _ in result.finished:
        if all_started <= t <= first_done:
            rows_while_all[shard] += 1
    total = sum(rows_while_all) or 1
    changes = sorted((t, shard, limit) for t, shard, _, limit in result.limits)

    def mean_limit_sum(begin: float, end: float) -> float:
        """The sum of the shards' limits, averaged over time from ``begin`` to ``end``."""
        current = dict.fromkeys(range(workers), ceiling)
        area, last_t = 0.0, 0.0
        for t, shard, limit in [*changes, (end, -1, 0)]:
            t = min(t, end)
            if t > begin:
                area += sum(current.values()) * max(0.0, t - max(last_t, begin))
            last_t = max(last_t, t)
            if shard >= 0:
                current[shard] = limit
        return area / max(end - begin, 1e-9)

    span_all = max(first_done - all_started, 1e-9)
    return {
        "all_started_s": round(all_started, 2),
        # While all ran, after the first 20 % of that stretch (the start-up burst).
        "mean_limit_sum": round(mean_limit_sum(all_started + 0.2 * span_all, first_done), 1),
        # The steady stretch: also without the last 20 % (the first shard's wind-down, when
        # its row groups run dry and the others' limits grow into the room it leaves); what
        # tests/test_shards_e2e.py asserts in virtual time.
        "mean_limit_sum_steady": round(
            mean_limit_sum(all_started + 0.2 * span_all, all_started + 0.8 * span_all), 1
        ),
        "limits_at_first_finish": [limits[s] for s in range(workers)],
        "limit_sum": sum(limits.values()),
        "row_group_shares_while_all_ran": [round(r / total, 3) for r in rows_while_all],
        "finish_s": [round(last[s], 2) for s in range(workers)],
    }


def hidden(p: Params, scratch: Path) -> list[dict[str, Any]]:
    rows = []
    spec = f"{c.GEN_MODEL}:latency={p.latency},mode=hosted,capacity={p.hidden_capacity}"
    size = max(1, p.hidden_records // 40)
    with external_simulator([spec]) as sim:
        cfg = config(sim.url, max_parallel=2 * p.hidden_capacity, row_group_size=size)
        for policy in ("default", "shards"):
            for workers in p.workers:
                _call(sim.url, "POST", "/stats/reset")
                out = scratch / f"hidden-{policy}-{workers}"
                # None: what sharded runs use (trio_designer._scaleout._shard.SHARD_POLICY)
                factory = partial(AdaptiveLimiter) if policy == "default" else None
                result = sharded(cfg, p.hidden_records, workers, out, factory)
                assert result.status == "complete"
                records = _call(sim.url, "GET", "/log")["records"]
                ok = [r for r in records if r["status"] == 200]
                bound = p.hidden_capacity / p.latency
                rate = len(ok) / span(records)
                ceiling = -(-2 * p.hidden_capacity // workers)
                rows.append(
                    {
                        "policy": policy,
                        "workers": workers,
                        "records": p.hidden_records,
                        "wall_s": round(result.elapsed, 2),
                        "rows_per_s_span": round(rate, 1),
                        "of_capacity_rate": round(rate / bound, 3),
                        "served_peak": served_peak(records),
                        "capacity": p.hidden_capacity,
                        "rate_limited": sum(1 for r in records if r["status"] == 429),
                        **fairness(result, workers, ceiling),
                    }
                )
    return rows


def run(profile: str, *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews it
    with tempfile.TemporaryDirectory() as scratch:
        fast = throughput(p, Path(scratch))
        canned = canned_throughput(p, Path(scratch))
        capped = hidden(p, Path(scratch))
    print(
        c.table(
            [
                "workers",
                "records",
                "wall s",
                "rows/s (wall)",
                "span s",
                "rows/s (span)",
                "× 1 worker",
                "simulator CPU s",
                "sim CPU ms/req",
                "client CPU ms/req",
            ],
            [
                [
                    r["workers"],
                    r["records"],
                    r["wall_s"],
                    r["rows_per_s_wall"],
                    r["requests_span_s"],
                    r["rows_per_s_span"],
                    r["speedup_span_vs_1_worker"],
                    r["simulator_cpu_s"],
                    r["simulator_cpu_ms_per_request"],
                    r["client_cpu_ms_per_request"],
                ]
                for r in fast
            ],
        )
    )
    print(
        c.table(
            [
                "rep",
                "workers",
                "wall s",
                "rows/s (wall)",
                "× (wall)",
                "requests/s (span)",
                "× 1 worker",
                "client CPU s",
                "of which start-up",
                "client CPU ms/req",
                "run only",
                "endpoint CPU ms/req",
            ],
            [
                [
                    r["rep"],
                    r["workers"],
                    r["wall_s"],
                    r["rows_per_s_wall"],
                    r["speedup_wall_vs_1_worker"],
                    r["requests_per_s_span"],
                    r["speedup_span_vs_1_worker"],
                    r["client_cpu_s"],
                    r["client_startup_cpu_s"],
                    r["client_cpu_ms_per_request"],
                    r["client_run_cpu_ms_per_request"],
                    r["endpoint_cpu_ms_per_request"],
                ]
                for r in canned
            ],
        )
    )
    print(
        c.table(
            [
                "policy",
                "workers",
                "rows/s",
                "÷ capacity rate",
                "served peak",
                "capacity",
                "429s",
                "mean limit sum",
                "steady",
                "limits at first finish",
                "shares while all ran",
                "finish s",
            ],
            [
                [
                    r["policy"],
                    r["workers"],
                    r["rows_per_s_span"],
                    r["of_capacity_rate"],
                    r["served_peak"],
                    r["capacity"],
                    r["rate_limited"],
                    r["mean_limit_sum"],
                    r["mean_limit_sum_steady"],
                    r["limits_at_first_finish"],
                    r["row_group_shares_while_all_ran"],
                    r["finish_s"],
                ]
                for r in capped
            ],
        )
    )
    load_after = [round(x, 2) for x in os.getloadavg()]
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    payload = {
        "profile": profile,
        "load_average": {"before": load_before, "after": load_after},
        "params": attrs.asdict(p),
        "throughput": fast,
        "canned": canned,
        "cpu_count": os.cpu_count(),
        "hidden": capped,
        "seconds": round(time.perf_counter() - started, 1),
    }
    c.write_result("scaleout", payload, results_dir)
    return payload
