"""Bench 1: the seed's table — four shapes, sync engine vs async engine.

Protocol (the seed's): 10 records, ``max_parallel_requests=16``, simulated latency lognormal
with median 1 s (σ 0.5, seeded), 1 warm-up pair, then 4 trials with the engines interleaved
(sync first in odd trials, async first in even ones); each trial uses its own simulator and run
seed, the same for both engines of the trial. Reported: median makespans and the speedup
``median(sync) / median(async)``, beside the seed's published numbers.

Three variants:

* virtual time, default (adaptive) limiter — what a user gets, measured exactly;
* virtual time, static limiter at ``max_parallel_requests`` — the scheduler alone;
* virtual time, default limiter, σ 0.25 — how much the speedup owes to the latency spread
  (the sync engine waits for the slowest cell of every column);
* real time, default limiter — wall clock with real sleeps, to show the result holds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from trio_designer.simulator import Latency, SimulatedModel

from . import _common as c


@attrs.frozen(kw_only=True)
class Params:
    records: int = 10
    trials: int = 4
    warmups: int = 1
    median: float = 1.0
    sigma: float = 0.5
    real_median: float = 1.0
    real_trials: int = 4
    narrow_sigma: float = 0.25
    shapes: tuple[c.ShapeName, ...] = c.SHAPES
    variants: tuple[str, ...] = ("adaptive", "static", "sensitivity", "real")


PROFILES = {
    "full": Params(),
    "quick": Params(real_median=0.2, real_trials=2),
    "smoke": Params(
        records=2,
        trials=1,
        warmups=0,
        real_median=0.005,
        real_trials=1,
        shapes=("Narrow", "Dual-model"),
        variants=("adaptive", "real"),
    ),
}


def trial_pairs(
    shape: c.ShapeName,
    p: Params,
    *,
    runner: Callable[[Any], Any],
    median: float,
    trials: int,
    limiter: c.LimiterKind,
) -> dict[str, list[float]]:
    """Makespans of the measured trials, per engine (warm-ups run and are dropped)."""
    times: dict[str, list[float]] = {"sync": [], "async": []}
    for trial in range(-p.warmups, trials):
        seed = 1000 + trial
        config = c.shape_config(shape, seed=seed, trace=False)
        models = c.simulated(Latency(median=median, sigma=p.sigma), seed=seed)
        engines = ("sync", "async") if trial % 2 == 0 else ("async", "sync")
        for engine in engines:

            async def one(
                engine: str = engine,
                config: Any = config,
                models: list[SimulatedModel] = models,
            ) -> c.Outcome:
                return await c.run_once(
                    config,
                    engine=engine,
                    models=models,
                    num_records=p.records,
                    limiter=c.limiter_factory(limiter),
                )

            outcome: c.Outcome = runner(one)
            if trial >= 0:
                times[engine].append(outcome.makespan)
    return times


def variant_rows(
    name: str, p: Params, runner: Callable[[Any], Any], median: float, trials: int, limiter: Any
) -> list[dict[str, Any]]:
    rows = []
    for shape in p.shapes:
        times = trial_pairs(shape, p, runner=runner, median=median, trials=trials, limiter=limiter)
        sync, async_ = c.median(times["sync"]), c.median(times["async"])
        rows.append(
            {
                "variant": name,
                "shape": shape,
                "sync_s": sync,
                "async_s": async_,
                "speedup": sync / async_,
                "trials": times,
            }
        )
    return rows


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    plan = {
        "adaptive": lambda: variant_rows(
            "virtual, adaptive limiter", p, c.run_virtual, p.median, p.trials, "adaptive"
        ),
        "static": lambda: variant_rows(
            "virtual, static limiter", p, c.run_virtual, p.median, p.trials, "static"
        ),
        "sensitivity": lambda: variant_rows(
            f"virtual, adaptive limiter, σ {p.narrow_sigma:g} (sensitivity)",
            attrs.evolve(p, sigma=p.narrow_sigma),
            c.run_virtual,
            p.median,
            p.trials,
            "adaptive",
        ),
        "real": lambda: variant_rows(
            f"real time (median {p.real_median:g} s), adaptive limiter",
            p,
            c.run_real,
            p.real_median,
            p.real_trials,
            "adaptive",
        ),
    }
    variants = [plan[name]() for name in p.variants]
    for rows in variants:
        print(f"\nSeed table — {rows[0]['variant']}")
        print(
            c.table(
                ["shape", "seed sync", "seed async", "seed x", "sync s", "async s", "speedup"],
                [
                    [
                        r["shape"],
                        *c.SEED_TABLE[r["shape"]][:2],
                        f"{c.SEED_TABLE[r['shape']][2]:.1f}x",
                        r["sync_s"],
                        r["async_s"],
                        f"{r['speedup']:.2f}x",
                    ]
                    for r in rows
                ],
            )
        )
    payload = {
        "profile": profile,
        "params": attrs.asdict(p),
        "seed_table": {k: list(v) for k, v in c.SEED_TABLE.items()},
        "variants": variants,
    }
    path = c.write_result("seed", payload, results_dir)
    print(f"\nwrote {path}")
    _plot(variants, img_dir)
    return payload


def _plot(variants: list[list[dict[str, Any]]], img_dir: Path | None) -> None:
    plt = c.pyplot(img_dir)
    if plt is None or img_dir is None:
        return
    shapes = [r["shape"] for r in variants[0]]
    series = [("seed (published)", [c.SEED_TABLE[s][2] for s in shapes])]
    series += [(rows[0]["variant"], [r["speedup"] for r in rows]) for rows in variants]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        xs = [k + (i - (len(series) - 1) / 2) * width for k in range(len(shapes))]
        ax.bar(xs, values, width, label=label)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(shapes)), shapes)
    ax.set_ylabel("speedup (sync ÷ async makespan)")
    ax.set_title("Async engine speedup per shape: 10 records, 16 parallel, latency median 1 s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(img_dir / "seed_speedup.png", dpi=110)
    plt.close(fig)
