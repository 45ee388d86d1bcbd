"""Bench 3: the Dual-model shape at scale on two self-hosted (GPU-mode) endpoints.

The generator endpoint serves 32 requests at once, the judge endpoint 16 (GPU mode: the
simulator queues, never answers 429; latency lognormal, median 1 s, σ 0.3). The client's
``max_parallel_requests`` equals each endpoint's capacity. Virtual time, so the numbers are the
scheduler's; the simulation itself costs ~3 ms of CPU per request (httpx + hypercorn in one
process), i.e. ~3 minutes of wall time per engine per 10,000 records (60,000 requests).

Reported per engine and size: makespan, records/s, each endpoint's busy fraction (time in
service ÷ capacity ÷ makespan), makespan ÷ work bound (the busier endpoint's service time ÷ its
capacity), and the busy-fraction timeline of both endpoints (plotted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from trio_designer.simulator import Latency

from . import _common as c


@attrs.frozen(kw_only=True)
class Params:
    records: tuple[int, ...] = (1_000, 10_000)
    gen_capacity: int = 32
    judge_capacity: int = 16
    median: float = 1.0
    sigma: float = 0.3
    seed: int = 11
    bins: int = 100
    limiters: tuple[c.LimiterKind, ...] = ("adaptive", "static")
    wide_pools: int | None = 100_000
    """Also run the async engine with a static limiter and both task pools this large (the
    what-if that shows where the gap to the bound comes from); ``None`` to skip."""


PROFILES = {
    "full": Params(),
    "quick": Params(records=(1_000,)),
    "smoke": Params(records=(8,), bins=10, limiters=("static",), wide_pools=None),
    # ~1 hour: 600,000 simulated requests per engine. Results go to scale_100k.json.
    "huge": Params(records=(100_000,), limiters=("static",), wide_pools=None),
}


def measure(
    records: int, engine: str, limiter: c.LimiterKind, p: Params, *, pools: int | None = None
) -> dict[str, Any]:
    overrides = {} if pools is None else {"max_submitted_tasks": pools, "max_llm_wait_tasks": pools}
    config = c.shape_config(
        "Dual-model",
        seed=p.seed,
        trace=False,
        max_parallel=(p.gen_capacity, p.judge_capacity),
        **overrides,
    )
    models = c.simulated(
        Latency(median=p.median, sigma=p.sigma),
        seed=p.seed,
        mode="gpu",
        capacity=(p.gen_capacity, p.judge_capacity),
    )

    async def one() -> c.Outcome:
        return await c.run_once(
            config,
            engine=engine,
            models=models,
            num_records=records,
            limiter=c.limiter_factory(limiter),
        )

    outcome: c.Outcome = c.run_virtual(one)
    start, end = outcome.origin, outcome.origin + outcome.makespan
    capacity = {c.GEN_MODEL: p.gen_capacity, c.JUDGE_MODEL: p.judge_capacity}
    work = {}
    busy = {}
    timeline = {}
    for model, cap in capacity.items():
        served = [r for r in outcome.log if r.model == model and r.status == 200]
        service = sum(r.end - r.start - r.queued_for for r in served)
        work[model] = service / cap
        busy[model] = service / cap / outcome.makespan
        timeline[model] = c.busy_timeline(
            outcome.log, model, cap, start=start, end=end, bins=p.bins
        )
    bound = max(work.values())
    return {
        "records": records,
        "engine": engine,
        "limiter": limiter,
        "setup": f"{limiter} limiter" + ("" if pools is None else f", pools {pools:,}"),
        "makespan": outcome.makespan,
        "records_per_s": records / outcome.makespan,
        "busy_fraction": busy,
        "work_bound": bound,
        "ratio_to_bound": outcome.makespan / bound,
        "wall_s": outcome.wall,
        "timeline": timeline,
        "limits": {k: attrs.asdict(v) for k, v in outcome.result.model_limits.items()},
    }


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    runs = []
    for records in p.records:
        plan: list[tuple[str, c.LimiterKind, int | None]] = [
            (engine, limiter, None) for limiter in p.limiters for engine in ("sync", "async")
        ]
        if p.wide_pools is not None:
            plan.append(("async", "static", p.wide_pools))
        for engine, limiter, pools in plan:
            runs.append(measure(records, engine, limiter, p, pools=pools))
            r = runs[-1]
            print(
                f"  {engine:5} {r['setup']:22} {records:>7,} records: {r['makespan']:.1f} s "
                f"virtual in {r['wall_s']:.1f} s wall",
                flush=True,
            )
    print(
        f"\nScale — Dual-model, GPU endpoints: generator {p.gen_capacity} slots, judge "
        f"{p.judge_capacity} slots, latency median {p.median:g} s σ{p.sigma:g} (virtual time)"
    )
    rows = []
    for r in runs:
        sync = next(
            s
            for s in runs
            if (s["records"], s["limiter"], s["engine"]) == (r["records"], r["limiter"], "sync")
        )
        rows.append(
            [
                r["records"],
                r["setup"],
                r["engine"],
                r["makespan"],
                r["records_per_s"],
                f"{r['busy_fraction'][c.GEN_MODEL]:.0%}",
                f"{r['busy_fraction'][c.JUDGE_MODEL]:.0%}",
                f"{r['ratio_to_bound']:.3f}",
                f"{sync['makespan'] / r['makespan']:.2f}x",
                r["wall_s"],
            ]
        )
    print(
        c.table(
            [
                "records",
                "setup",
                "engine",
                "makespan s",
                "records/s",
                "gen busy",
                "judge busy",
                "÷ bound",
                "speedup",
                "wall s",
            ],
            rows,
        )
    )
    payload = {"profile": profile, "params": attrs.asdict(p), "runs": runs}
    path = c.write_result("scale_100k" if profile == "huge" else "scale", payload, results_dir)
    print(f"wrote {path}")
    if profile != "huge":
        _plot(runs, img_dir)
    return payload


def _plot(runs: list[dict[str, Any]], img_dir: Path | None) -> None:
    plt = c.pyplot(img_dir)
    if plt is None or img_dir is None:
        return
    records = max(r["records"] for r in runs)
    chosen = [r for r in runs if r["records"] == records]
    longest = max(r["makespan"] for r in chosen)
    fig, axes = plt.subplots(len(chosen), 1, figsize=(9, 2.4 * len(chosen)), sharex=True)
    for ax, r in zip(axes, chosen, strict=True):
        for model, label in ((c.GEN_MODEL, "generator (32 slots)"), (c.JUDGE_MODEL, "judge (16)")):
            series = r["timeline"][model]
            width = r["makespan"] / len(series)
            xs = [(i + 0.5) * width for i in range(len(series))]
            ax.plot(xs, series, label=label)
        ax.set_xlim(0, longest)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("busy fraction")
        ax.set_title(
            f"{r['engine']} engine, {r['setup']}: {records:,} records in "
            f"{r['makespan']:,.0f} s ({r['records_per_s']:.1f} records/s)",
            fontsize=10,
        )
        ax.legend(loc="lower right", fontsize=8)
    axes[-1].set_xlabel("virtual seconds")
    fig.tight_layout()
    fig.savefig(img_dir / "scale_utilisation.png", dpi=110)
    plt.close(fig)
