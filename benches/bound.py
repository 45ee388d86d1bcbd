"""Bench 2: how far each engine's makespan is from the DAG lower bound.

For every run (virtual time, traces on) the bound is computed from what actually happened:
each LLM cell's *service time* (the simulator's time in service for the request that answered
it), the graph, and each model's concurrency (``min(max_parallel_requests, capacity)``):

* critical path: per row, the longest chain of its cells' service times; the max over rows;
* work: per model, its service times summed ÷ its concurrency (with a fixed latency ``L``:
  ``ceil(n / c) · L``, whole waves — no schedule can do better);
* simple bound (the issue's): ``max(critical path, work)``;
* refined bound: per model ``head + work + tail``, where head is the shortest chain that must
  precede any of its requests and tail the shortest chain that must follow — e.g. a judge model
  cannot start before the first generator answer exists. Still a valid lower bound, and tighter
  on the Dual-model shape.

Reported: ``makespan ÷ bound`` for the sync and async engines, with the default adaptive limiter
and with a static limiter (the scheduler alone). Latencies: lognormal (median 1 s, σ 0.5), and
fixed 200 ms and 2 s, where the bound is exact up to the integrality of waves.
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from trio_designer._plan import ExecutionGraph
from trio_designer.simulator import Latency

from . import _common as c

LATENCIES: dict[str, Latency] = {
    "lognormal 1 s σ0.5": Latency(median=1.0, sigma=0.5),
    "fixed 0.2 s": Latency(median=0.2),
    "fixed 2 s": Latency(median=2.0),
}


@attrs.frozen(kw_only=True)
class Params:
    records: tuple[int, ...] = (10, 100)
    shapes: tuple[c.ShapeName, ...] = c.SHAPES
    latencies: tuple[str, ...] = tuple(LATENCIES)
    limiters: tuple[c.LimiterKind, ...] = ("adaptive", "static")
    max_parallel: int = 16
    seed: int = 7


PROFILES = {
    "full": Params(),
    "quick": Params(records=(10,)),
    "smoke": Params(
        records=(3,),
        shapes=("Deep", "Dual-model"),
        latencies=("fixed 0.2 s",),
        limiters=("static",),
    ),
}


def measure(
    shape: c.ShapeName,
    latency_name: str,
    records: int,
    limiter: c.LimiterKind,
    engine: str,
    p: Params,
) -> dict[str, Any]:
    """One run and its bound."""
    config = c.shape_config(shape, seed=p.seed, max_parallel=p.max_parallel)
    models = c.simulated(LATENCIES[latency_name], seed=p.seed)

    async def one() -> c.Outcome:
        return await c.run_once(
            config,
            engine=engine,
            models=models,
            num_records=records,
            limiter=c.limiter_factory(limiter),
        )

    outcome: c.Outcome = c.run_virtual(one)
    concurrency = {m.name: min(m.capacity, p.max_parallel) for m in models}
    bound = c.lower_bound(
        outcome, ExecutionGraph.from_config(config), c.column_models(config), concurrency
    )
    reference = list_schedule_reference(outcome, p.max_parallel) if shape == "Wide" else None
    replay = work_conserving_replay(
        outcome, ExecutionGraph.from_config(config), c.column_models(config), concurrency, records
    )
    return {
        "replay": replay,
        "ratio_replay": outcome.makespan / replay,
        "list_schedule": reference,
        "shape": shape,
        "latency": latency_name,
        "records": records,
        "limiter": limiter,
        "engine": engine,
        "makespan": outcome.makespan,
        "bound": attrs.asdict(bound),
        "ratio_simple": outcome.makespan / bound.simple,
        "ratio_refined": outcome.makespan / bound.refined,
        "wall_s": outcome.wall,
    }


def greedy_makespan(durations: Sequence[float], slots: int) -> float:
    """List scheduling: each job, in the given order, starts on the first slot to free up."""
    free = [0.0] * slots
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def service_sequences(outcome: c.Outcome) -> dict[str, list[float]]:
    """Model -> the service times (queueing excluded) of its answered requests, in arrival
    order: the latency sequence the simulator drew for that model."""
    sequences: dict[str, list[float]] = {}
    for r in sorted((r for r in outcome.log if r.status == 200), key=lambda r: r.start):
        sequences.setdefault(r.model, []).append(r.end - r.start - r.queued_for)
    return sequences


def list_schedule_reference(outcome: c.Outcome, slots: int) -> dict[str, float]:
    """What other schedules of the same requests would take, for a shape of independent
    requests on one model (Wide).

    The simulator draws the i-th latency for the i-th request it receives, whichever cell sent
    it, so *any* online order of the cells meets the same latency sequence. ``arrival`` is
    greedy list scheduling of that sequence (what a scheduler that never leaves a slot idle
    while work is ready achieves, in this simulation); ``random_median`` the median over 200
    shuffles of the same latencies (the tail a typical draw order leaves); ``lpt`` longest
    first (a clairvoyant scheduler that knows every length in advance, which no LLM client
    does).
    """
    durations = [d for sequence in service_sequences(outcome).values() for d in sequence]
    shuffles = [
        greedy_makespan(random.Random(i).sample(durations, len(durations)), slots)
        for i in range(200)
    ]
    return {
        "arrival": greedy_makespan(durations, slots),
        "random_median": statistics.median(shuffles),
        "lpt": greedy_makespan(sorted(durations, reverse=True), slots),
    }


def work_conserving_replay(
    outcome: c.Outcome,
    graph: Any,
    column_models: Mapping[str, str],
    concurrency: Mapping[str, int],
    rows: int,
) -> float:
    """The makespan of an ideal scheduler on the same latencies: every cell starts the instant
    its row's upstream cells are done and its model has a free slot (best rank first: longest
    chain, then row, then column order), nothing else costs time.

    The simulator draws the i-th latency of a model for the i-th request that model receives,
    whichever cell sent it, so the replay gives the i-th cell it starts on a model the i-th
    latency the run's request log recorded for that model (queueing excluded). A run whose
    makespan equals the replay wastes nothing: no slot idles while a cell could use it.
    """
    durations = service_sequences(outcome)
    fallback = {m: statistics.fmean(d) for m, d in durations.items()}
    order = list(graph.order)
    rank = {col: (-graph.priority[col], order.index(col)) for col in order}
    done: set[tuple[str, int]] = set()
    started: set[tuple[str, int]] = set()
    busy = dict.fromkeys(concurrency, 0)
    taken = dict.fromkeys(concurrency, 0)
    running: list[tuple[float, str, int]] = []
    now = 0.0
    while len(done) < len(order) * rows:
        ready = sorted(
            (
                (rank[col][0], row, rank[col][1], col)
                for col in order
                for row in range(rows)
                if (col, row) not in started
                and all((up, row) in done for up in graph.upstream[col])
            ),
        )
        for _, row, _, col in ready:
            model = column_models.get(col)
            if model is None:  # not an LLM cell: no time
                started.add((col, row))
                heapq.heappush(running, (now, col, row))
            elif busy[model] < concurrency[model]:
                seq = durations.get(model, [])
                i = taken[model]
                taken[model] += 1
                busy[model] += 1
                started.add((col, row))
                heapq.heappush(
                    running, (now + (seq[i] if i < len(seq) else fallback[model]), col, row)
                )
        now = running[0][0]
        while running and running[0][0] <= now:  # every cell that ends at this instant
            _, col, row = heapq.heappop(running)
            done.add((col, row))
            if col in column_models:
                busy[column_models[col]] -= 1
    return now


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    runs = [
        measure(shape, latency, records, limiter, engine, p)
        for limiter in p.limiters
        for latency in p.latencies
        for records in p.records
        for shape in p.shapes
        for engine in ("sync", "async")
    ]
    for limiter in p.limiters:
        print(f"\nMakespan ÷ lower bound — {limiter} limiter (virtual time, 16 parallel)")
        rows = []
        for latency in p.latencies:
            for records in p.records:
                for shape in p.shapes:
                    pair = {
                        r["engine"]: r
                        for r in runs
                        if (r["shape"], r["latency"], r["records"], r["limiter"])
                        == (shape, latency, records, limiter)
                    }
                    a, s = pair["async"], pair["sync"]
                    rows.append(
                        [
                            shape,
                            latency,
                            records,
                            s["makespan"],
                            a["makespan"],
                            a["bound"]["refined"],
                            f"{s['ratio_refined']:.3f}",
                            f"{a['ratio_refined']:.3f}",
                            f"{a['ratio_simple']:.3f}",
                            f"{a['ratio_replay']:.3f}",
                            a["bound"]["binding"],
                        ]
                    )
        print(
            c.table(
                [
                    "shape",
                    "latency",
                    "rows",
                    "sync s",
                    "async s",
                    "bound s",
                    "sync/bound",
                    "async/bound",
                    "async/simple",
                    "async/replay",
                    "binding",
                ],
                rows,
            )
        )
    _print_list_schedules(runs)
    within = [r for r in runs if r["engine"] == "async" and r["ratio_refined"] <= 1.05 + 1e-9]
    asyncs = [r for r in runs if r["engine"] == "async"]
    print(f"\nasync within 5 % of the refined bound: {len(within)} of {len(asyncs)} runs")
    ideal = [r for r in asyncs if r["ratio_replay"] <= 1.0 + 1e-9]
    print(f"async equal to the work-conserving replay: {len(ideal)} of {len(asyncs)} runs")
    payload = {"profile": profile, "params": attrs.asdict(p), "runs": runs}
    path = c.write_result("bound", payload, results_dir)
    print(f"wrote {path}")
    return payload


def _print_list_schedules(runs: Sequence[dict[str, Any]]) -> None:
    rows = [
        [
            r["latency"],
            r["records"],
            r["limiter"],
            r["makespan"],
            r["bound"]["refined"],
            r["list_schedule"]["arrival"],
            r["list_schedule"]["random_median"],
            r["list_schedule"]["lpt"],
        ]
        for r in runs
        if r["engine"] == "async" and r.get("list_schedule")
    ]
    if not rows:
        return
    print("\nWide (independent requests, one model): the same latencies under other schedules")
    print(
        c.table(
            [
                "latency",
                "rows",
                "limiter",
                "async s",
                "bound s",
                "greedy, arrival order s",
                "greedy, shuffled (median) s",
                "clairvoyant LPT s",
            ],
            rows,
        )
    )
