"""Bench 11: the response cache — a warm cache's cells/s, and what a cold cache costs.

The Deep example (``examples/deep.yaml``: 2 samplers, 5 LLM columns, 1 expression; 8 cells a
row) against the built-in simulator, written to parquet (``create``), real clock:

* **warm**: the cache is filled by one run, then the same run again into a new directory
  serves every LLM cell from the cache. Reported: cells per CPU second of this process (the
  run is single-threaded but for the cache's one query per row group in a worker thread,
  which ``process_time`` counts too), and cells per wall second. The issue's target is
  >= 20,000 cells/s on one core for 100,000 records.
* **cold vs none**: the same run with an empty cache (every answer paid and stored) and with
  the cache off, taking turns, medians of ``trials``; the ratio of their throughputs (rows
  per wall second) is the cost of a cold cache (target: within 3 %). The simulator answers at
  once (latency 0), so the run is CPU-bound and every microsecond the cache adds shows: the
  worst case. ``latency`` runs the same comparison with a realistic per-request latency.

The cache lives in a temporary directory (never the user's).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import trio
import yaml

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer.simulator import Latency, SimulatedModel

from . import _common as c

DEEP = c.ROOT / "examples" / "deep.yaml"
CELLS_PER_ROW = 8


@attrs.frozen(kw_only=True)
class Params:
    warm_records: int = 100_000
    compare_records: int = 2_000
    trials: int = 4
    latency: float = 0.05
    latency_records: int = 2_000


PROFILES = {
    "full": Params(),
    "quick": Params(warm_records=10_000, compare_records=1_000, trials=4, latency_records=500),
    "smoke": Params(
        warm_records=40, compare_records=20, trials=1, latency=0.01, latency_records=10
    ),
}


def deep(row_group_size: int = 1000) -> PipelineConfig:
    data = yaml.safe_load(DEEP.read_text())
    data["run"]["row_group_size"] = row_group_size
    data["run"]["max_row_groups_in_flight"] = 4
    for model in data["models"]:
        model["max_parallel_requests"] = 64
    return PipelineConfig.from_dict(data)


def simulated(latency: float) -> list[SimulatedModel]:
    return [
        SimulatedModel(name=name, latency=Latency(median=latency), capacity=10_000)
        for name in ("sim-gen", "sim-judge")
    ]


def one_run(
    records: int, out: Path, *, cache: bool, cache_dir: Path | None, latency: float = 0.0
) -> dict[str, Any]:
    designer = TrioDesigner(simulator_models=simulated(latency), cache=cache, cache_dir=cache_dir)

    async def go() -> Any:
        return await designer.create(deep(), num_records=records, output_dir=out)

    wall, cpu = time.perf_counter(), time.process_time()
    result = trio.run(go)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if result.num_records_written != records:
        raise RuntimeError(f"wrote {result.num_records_written} of {records}")
    cells = records * CELLS_PER_ROW
    return {
        "records": records,
        "cells": cells,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cells_per_cpu_s": round(cells / cpu),
        "cells_per_wall_s": round(cells / wall),
        "rows_per_s": round(records / wall, 1),
        "cache": dict(result.cache),
        "requests": sum(u["requests_ok"] for u in result.usage.values()),
    }


def warm(p: Params, tmp: Path) -> dict[str, Any]:
    fill = one_run(p.warm_records, tmp / "fill", cache=True, cache_dir=tmp / "cache")
    print(
        f"  filled the cache: {fill['records']:,} records, {fill['requests']:,} requests, "
        f"{fill['wall_s']:.1f} s",
        flush=True,
    )
    served = one_run(p.warm_records, tmp / "warm", cache=True, cache_dir=tmp / "cache")
    if served["requests"]:
        raise RuntimeError(f"a warm run sent {served['requests']} requests")
    return {"fill": fill, "warm": served}


def compare(p: Params, tmp: Path, *, records: int, latency: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "cold": []}
    for trial in range(p.trials):
        # Taking turns, and which goes first alternates: a pair's second run finds the
        # process warmer (and the machine's load moves), which must not favour one kind.
        for kind in ("none", "cold") if trial % 2 == 0 else ("cold", "none"):
            out = tmp / f"{kind}-{latency}-{trial}"
            cold = tmp / f"cold-cache-{latency}-{trial}"  # empty: every answer paid, stored
            runs[kind].append(
                one_run(records, out, cache=kind == "cold", cache_dir=cold, latency=latency)
            )
    median = {k: statistics.median(r["rows_per_s"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r["cpu_s"] for r in v) for k, v in runs.items()}
    pairs = zip(runs["none"], runs["cold"], strict=True)
    cpu_ratio = statistics.median(cold["cpu_s"] / none["cpu_s"] for none, cold in pairs)
    return {
        "records": records,
        "latency_s": latency,
        "rows_per_s": median,
        "cpu_s": cpu,
        "ratio_cold_to_none": round(median["cold"] / median["none"], 4),
        # CPU of the cold run over the no-cache run of the same trial, median over trials:
        # the cost of a cold cache less sensitive to the machine's load than wall time.
        "cpu_ratio_cold_to_none": round(cpu_ratio, 4),
        "runs": runs,
    }


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    del img_dir
    p = PROFILES[profile]
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as folder:
        tmp = Path(folder)
        warm_result = warm(p, tmp)
        cpu_bound = compare(p, tmp, records=p.compare_records, latency=0.0)
        with_latency = compare(p, tmp, records=p.latency_records, latency=p.latency)
    served = warm_result["warm"]
    print("\nResponse cache — Deep example, parquet, real clock, one process")
    print(
        c.table(
            ["run", "records", "cells", "wall s", "cpu s", "cells/cpu s", "cells/wall s"],
            [
                ["fill (cold)", *(_row(warm_result["fill"]))],
                ["warm", *(_row(served))],
            ],
        )
    )
    print()
    print(
        c.table(
            [
                "latency",
                "records",
                "none rows/s",
                "cold rows/s",
                "cold ÷ none",
                "cpu s none/cold",
                "cpu cold ÷ none",
            ],
            [
                [
                    f"{r['latency_s']:g} s",
                    r["records"],
                    round(r["rows_per_s"]["none"], 1),
                    round(r["rows_per_s"]["cold"], 1),
                    r["ratio_cold_to_none"],
                    f"{r['cpu_s']['none']:.2f} / {r['cpu_s']['cold']:.2f}",
                    r["cpu_ratio_cold_to_none"],
                ]
                for r in (cpu_bound, with_latency)
            ],
        )
    )
    payload = {
        "profile": profile,
        "params": attrs.asdict(p),
        "warm": warm_result,
        "cold_vs_none": [cpu_bound, with_latency],
    }
    path = c.write_result("cache", payload, results_dir)
    print(f"wrote {path}")
    return payload


def _row(r: dict[str, Any]) -> list[Any]:
    return [
        r["records"],
        r["cells"],
        r["wall_s"],
        r["cpu_s"],
        r["cells_per_cpu_s"],
        r["cells_per_wall_s"],
    ]
