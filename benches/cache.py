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
* **cold vs none, one process per run** (:func:`compare_processes`): the same comparison at
  zero latency with every run in a child process of its own (``python -c`` calling
  :func:`child_run`), the kinds alternating and which goes first alternating pair by pair;
  the child's user and system CPU come from ``os.wait4`` (start-up included, the same in both
  kinds), so the kernel's share of a cold cache (SQLite's writes) is seen, which instruction
  counts are not. Reported: the median per-pair ratio of user + system CPU, and of rows per
  wall second, with their ranges. Runs in one process drift (sections "Re-measured by the
  lead", docs/benchmarks.md); separate processes do not.

The cache lives in a temporary directory (never the user's).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
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
    process_records: int = 1_000
    process_pairs: int = 6
    warm_only: bool = False  # the fill and the warm run only (the "huge" profile)


PROFILES = {
    "full": Params(),
    "quick": Params(
        warm_records=10_000,
        compare_records=1_000,
        trials=4,
        latency_records=500,
        process_pairs=4,
    ),
    # ``--huge``: the figure alone — a 100,000-record fill, then the warm run (the
    # fill is ~10 CPU minutes; the cold-vs-none comparisons are left out).
    "huge": Params(warm_records=100_000, warm_only=True),
    "smoke": Params(
        warm_records=40,
        compare_records=20,
        trials=1,
        latency=0.01,
        latency_records=10,
        process_records=20,
        process_pairs=1,
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


def child_run(
    records: int, kind: str, out: str, cache_dir: str, flush_interval: float | None = None
) -> None:
    """One run of :func:`compare_processes` (in the child): print :func:`one_run`'s JSON.

    ``flush_interval``: the cache writer's flush interval for this run (seconds; default
    ``FLUSH_INTERVAL``). For instruction counts under valgrind, which runs ~25-60x slower:
    with the 1 s interval a cold run there flushes far more often per record than natively,
    and its count grows with its wall time; 60 s gives the native cadence (every 512 answers
    and at the end). See docs/benchmarks.md, "Branch ``warmhit2``"."""
    if flush_interval is not None:
        from trio_designer.models import _cached

        _cached.FLUSH_INTERVAL = flush_interval  # type: ignore[misc]  # a bench's knob
    result = one_run(records, Path(out), cache=kind == "cold", cache_dir=Path(cache_dir))
    print(json.dumps(result), flush=True)


def _in_child(records: int, kind: str, out: Path, cache_dir: Path) -> dict[str, Any]:
    """:func:`child_run` in a new Python process; its JSON plus the process's own user and
    system CPU seconds (``os.wait4``: every thread, start-up included)."""
    code = (
        "import sys; from benches.cache import child_run; "
        "child_run(int(sys.argv[1]), *sys.argv[2:])"
    )
    env = {**os.environ, "PYTHONPATH": str(c.ROOT), "TRIO_DESIGNER_CACHE": "off"}
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(records), kind, str(out), str(cache_dir)],
        stdout=subprocess.PIPE,
        cwd=c.ROOT,
        env=env,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"a {kind} run's process exited with {process.returncode}")
    result: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    result["process_user_s"] = round(usage.ru_utime, 3)
    result["process_system_s"] = round(usage.ru_stime, 3)
    return result


def compare_processes(p: Params, tmp: Path) -> dict[str, Any]:
    """Cold vs none at zero latency, one process per run (see the module docstring)."""
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "cold": []}
    for pair in range(p.process_pairs):
        for kind in ("none", "cold") if pair % 2 == 0 else ("cold", "none"):
            out = tmp / f"process-{kind}-{pair}"
            cold = tmp / f"process-cache-{pair}"  # new and empty: every answer paid, stored
            runs[kind].append(_in_child(p.process_records, kind, out, cold))
    pairs = list(zip(runs["none"], runs["cold"], strict=True))

    def cpu(r: dict[str, Any]) -> float:
        return float(r["process_user_s"] + r["process_system_s"])

    cpu_ratios = [cpu(cold) / cpu(none) for none, cold in pairs]
    rate_ratios = [cold["rows_per_s"] / none["rows_per_s"] for none, cold in pairs]
    system = {k: statistics.median(r["process_system_s"] for r in v) for k, v in runs.items()}
    user = {k: statistics.median(r["process_user_s"] for r in v) for k, v in runs.items()}
    return {
        "records": p.process_records,
        "pairs": p.process_pairs,
        "user_s": user,
        "system_s": system,
        "cpu_ratio_cold_to_none": round(statistics.median(cpu_ratios), 4),
        "cpu_ratios": [round(r, 4) for r in cpu_ratios],
        "rate_ratio_cold_to_none": round(statistics.median(rate_ratios), 4),
        "rate_ratios": [round(r, 4) for r in rate_ratios],
        "load_average": os.getloadavg(),
        "runs": runs,
    }


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    del img_dir
    p = PROFILES[profile]
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as folder:
        tmp = Path(folder)
        warm_result = warm(p, tmp)
        cpu_bound: dict[str, Any] | None
        with_latency: dict[str, Any] | None
        processes: dict[str, Any] | None
        if p.warm_only:
            cpu_bound = with_latency = processes = None
        else:
            cpu_bound = compare(p, tmp, records=p.compare_records, latency=0.0)
            with_latency = compare(p, tmp, records=p.latency_records, latency=p.latency)
            processes = compare_processes(p, tmp)
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
    if cpu_bound is None or with_latency is None or processes is None:
        alone: dict[str, Any] = {"profile": profile, "params": attrs.asdict(p), "warm": warm_result}
        print(f"wrote {c.write_result('cache', alone, results_dir)}")
        return alone
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
    print()
    print(
        c.table(
            [
                "one process a run",
                "records",
                "pairs",
                "user s none/cold",
                "system s none/cold",
                "cpu cold ÷ none (range)",
                "rows/s cold ÷ none (range)",
            ],
            [
                [
                    "0 s latency",
                    processes["records"],
                    processes["pairs"],
                    f"{processes['user_s']['none']:.2f} / {processes['user_s']['cold']:.2f}",
                    f"{processes['system_s']['none']:.2f} / {processes['system_s']['cold']:.2f}",
                    f"{processes['cpu_ratio_cold_to_none']} "
                    f"({min(processes['cpu_ratios'])}-{max(processes['cpu_ratios'])})",
                    f"{processes['rate_ratio_cold_to_none']} "
                    f"({min(processes['rate_ratios'])}-{max(processes['rate_ratios'])})",
                ]
            ],
        )
    )
    payload = {
        "profile": profile,
        "params": attrs.asdict(p),
        "warm": warm_result,
        "cold_vs_none": [cpu_bound, with_latency],
        "cold_vs_none_processes": processes,
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
