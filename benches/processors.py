"""Bench 11: what processors and a validation column cost a run (issue 15).

Protocol: the Wide seed shape of ``examples/wide.yaml`` (a sampler and five independent LLM
text columns), 1,000 records in row groups of 100, ``max_parallel_requests=64``, every request
exactly 50 ms (σ 0), the simulator in its **own process** (as in ``benches/small_runs.py``;
capacity 1,000: it never pushes back), a static limiter (so the comparison is of the engine,
not of the adaptive limit's reaction to a loaded machine), ``create()`` into a fresh
directory, real clock, tracing off. Two variants take turns trial by trial, after a
warm-up run of each:

* **plain**: the shape as it is;
* **processed**: the same plus a validation column (``validator: code, language: python,
  lint: false`` over ``science``: ``ast.parse`` in a worker thread, one per row), a ``filter``
  (``{{ history | length > 20 }}``, a Jinja render per row, before each checkpoint) and a
  ``dedup`` (exact on ``topic`` + ``future``, and MinHash/LSH near-duplicates of ``history`` at
  0.9), the last after the run, streaming over the row groups into ``processed/``.

Reported: the median makespan of each (``RunResult.elapsed``: from ``create()``'s start to the
RunResult, so the after-run dedup pass is inside it), their ratio (the target is <= 1.05), the
CPU seconds of this process per run, and the processed variant's rows in and out per
processor. Lint with ``ruff`` is left out on purpose: it is one subprocess per row (~20-40 ms
of CPU each), which a 2-core machine cannot hide behind 50 ms requests; see
``docs/benchmarks.md``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import yaml

from trio_designer import PipelineConfig

from . import _common as c
from .small_runs import external_simulator

PROVIDER = "external-sim"
WIDE = c.ROOT / "examples" / "wide.yaml"


@attrs.frozen(kw_only=True)
class Params:
    records: int = 1_000
    row_group_size: int = 100
    latency: float = 0.05
    max_parallel: int = 64
    trials: int = 3
    warmups: int = 1


PROFILES = {
    "full": Params(),
    "quick": Params(trials=1),
    "smoke": Params(records=20, row_group_size=10, latency=0.005, trials=1, warmups=0),
}

EXTRA_COLUMN = {
    "name": "science_check",
    "kind": "validation",
    "validator": "code",
    "language": "python",
    "lint": False,
    "target": ["science"],
}
PROCESSORS = [
    {"kind": "filter", "condition": "{{ history | length > 20 }}", "reason": "too short"},
    {
        "kind": "dedup",
        "columns": ["topic", "future"],
        "near_duplicate": "history",
        "threshold": 0.9,
    },
]


def config(p: Params, url: str, *, processed: bool) -> PipelineConfig:
    """``examples/wide.yaml``'s columns (Wide: five LLM columns off one sampler), sized."""
    data = yaml.safe_load(WIDE.read_text(encoding="utf-8"))
    data["models"][0]["max_parallel_requests"] = p.max_parallel
    data["models"][0]["provider"] = PROVIDER
    data["providers"] = [{"name": PROVIDER, "base_url": url}]
    data["run"] = {"row_group_size": p.row_group_size, "seed": 1, "trace": False}
    # The bench names the Wide columns by angle, as benches/_common.py's Wide shape does.
    data["columns"] = [
        data["columns"][0],
        *(
            {"name": angle, "kind": "llm_text", "model": "gen",
             "prompt": f"Write about the {angle} of {{{{ topic }}}}."}
            for angle in ("history", "science", "people", "future", "myths")
        ),
    ]
    if processed:
        data["columns"].append(EXTRA_COLUMN)
        data["processors"] = PROCESSORS
    return PipelineConfig.from_dict(data)


async def one_run(
    p: Params, url: str, *, processed: bool, folder: Path, index: int
) -> dict[str, Any]:
    designer = c.BenchDesigner(limiter=c.limiter_factory("static"))
    cpu = time.process_time()
    result = await designer.create(
        config(p, url, processed=processed),
        num_records=p.records,
        output_dir=folder / f"{'processed' if processed else 'plain'}-{index}",
    )
    return {
        "processed": processed,
        "makespan": result.elapsed,
        "cpu_s": time.process_time() - cpu,
        "rows": result.table.num_rows,
        "processors": dict(result.processors),
    }


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    runs: list[dict[str, Any]] = []
    spec = f"{c.GEN_MODEL}:latency={p.latency},sigma=0,capacity=1000"
    with tempfile.TemporaryDirectory() as tmp, external_simulator([spec]) as sim:
        folder = Path(tmp)
        order = [False, True]
        for index in range(p.warmups + p.trials):
            for processed in order:
                outcome = c.run_real(
                    lambda processed=processed, index=index: one_run(  # type: ignore[misc]
                        p, sim.url, processed=processed, folder=folder, index=index
                    )
                )
                if index >= p.warmups:
                    runs.append(outcome)
            order.reverse()  # alternate which variant goes first
    plain = [r for r in runs if not r["processed"]]
    processed = [r for r in runs if r["processed"]]
    summary = {
        "plain_makespan_s": c.median([r["makespan"] for r in plain]),
        "processed_makespan_s": c.median([r["makespan"] for r in processed]),
        "plain_cpu_s": c.median([r["cpu_s"] for r in plain]),
        "processed_cpu_s": c.median([r["cpu_s"] for r in processed]),
    }
    summary["ratio"] = summary["processed_makespan_s"] / summary["plain_makespan_s"]
    print(f"\nWide, {p.records:,} records, {p.latency * 1000:g} ms requests, "
          f"max_parallel_requests={p.max_parallel} (medians of {p.trials})")
    print(
        c.table(
            ["variant", "makespan s", "CPU s", "rows written"],
            [
                ["plain", summary["plain_makespan_s"], summary["plain_cpu_s"], plain[0]["rows"]],
                [
                    "validation + filter + dedup",
                    summary["processed_makespan_s"],
                    summary["processed_cpu_s"],
                    processed[0]["rows"],
                ],
                ["ratio", summary["ratio"], summary["processed_cpu_s"] / summary["plain_cpu_s"],
                 ""],
            ],
        )
    )
    reports = processed[0]["processors"]
    print("\nprocessors of the processed variant (first trial)")
    print(
        c.table(
            ["processor", "stage", "rows in", "rows out", "removed"],
            [
                [k, r["stage"], r["rows_in"], r["rows_out"],
                 ", ".join(f"{why}: {n}" for why, n in r["removed"].items()) or "-"]
                for k, r in reports.items()
            ],
        )
    )
    payload = {"profile": profile, "params": attrs.asdict(p), "summary": summary, "runs": runs}
    c.write_result("processors", payload, results_dir)
    return payload
