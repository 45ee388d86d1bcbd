"""Bench: ``llm_embedding`` batching — requests saved and makespan, in virtual time.

Protocol: an embedding model served by the simulator with a fixed 200 ms per request (σ 0,
whatever the batch size: embedding servers are bound by request count more than by texts at
these sizes), ``max_parallel_requests=8``, the default adaptive limiter, ``preview`` (no disk),
virtual time. Two shapes:

* **direct**: ``topic`` (sampler) → ``sentence`` (expression) → ``vec`` (embedding): every
  text is ready at once when its row group is admitted;
* **after text**: ``topic`` → ``summary`` (``llm_text``, lognormal 0.5 s, σ 0.3, 64 in
  parallel) → ``vec``: texts become ready one by one, as their summaries arrive.

For each ``batch_size`` (1, 4, 16; window 10 ms) it reports the embedding requests the
simulator saw (its request log), the mean texts per request, and the makespan, as a ratio to
``batch_size: 1``. The bound for *direct* is ``ceil(ceil(N / batch) / 8) × 0.2 s`` (8 requests
in flight, full batches; the engine lets ``2 × 8 × batch`` cells of the column wait on the
endpoint, so full batches are possible). For *after text* it is the makespan of the same
pipeline without its embedding column (the text column alone).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs

from trio_designer import PipelineConfig
from trio_designer.simulator import Latency, SimulatedModel

from . import _common as c

EMBED = "sim-embed"


@attrs.frozen(kw_only=True)
class Params:
    records: int = 2_000
    batch_sizes: tuple[int, ...] = (1, 4, 16)
    shapes: tuple[str, ...] = ("direct", "after text")


PROFILES = {
    "full": Params(),
    "quick": Params(records=500),
    "smoke": Params(records=40, batch_sizes=(1, 16)),
}


def config(shape: str, batch_size: int, records: int, *, vectors: bool = True) -> PipelineConfig:
    text = "{{ sentence }}" if shape == "direct" else "{{ summary }}"
    middle: dict[str, Any] = (
        {"name": "sentence", "kind": "expression", "expr": "Notes on {{ topic }}, item."}
        if shape == "direct"
        else {"name": "summary", "kind": "llm_text", "model": "gen", "prompt": "On {{ topic }}."}
    )
    return PipelineConfig.from_dict(
        {
            "models": [
                {"alias": "gen", "model": "sim-gen", "max_parallel_requests": 64},
                {"alias": "emb", "model": EMBED, "max_parallel_requests": 8},
            ],
            "run": {"row_group_size": min(records, 1000), "seed": 1},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category",
                 "values": ["tea", "jazz", "rain", "maps"]},
                middle,
                *(
                    [{"name": "vec", "kind": "llm_embedding", "model": "emb", "text": text,
                      "dimensions": 16, "batch_size": batch_size}]
                    if vectors
                    else []
                ),
            ],
        }
    )


def models() -> list[SimulatedModel]:
    return [
        SimulatedModel(name="sim-gen", latency=Latency(median=0.5, sigma=0.3), capacity=256),
        SimulatedModel(name=EMBED, latency=Latency(median=0.2, sigma=0.0), capacity=256),
    ]


def makespan_without_vectors(records: int) -> float:
    """The *after text* pipeline without its embedding column: a lower bound for it."""

    async def once() -> c.Outcome:
        return await c.run_once(
            config("after text", 1, records, vectors=False),
            engine="async",
            models=models(),
            num_records=records,
        )

    outcome: c.Outcome = c.run_virtual(once)
    return outcome.makespan


def measure(shape: str, batch_size: int, records: int) -> dict[str, Any]:
    async def once() -> c.Outcome:
        return await c.run_once(
            config(shape, batch_size, records),
            engine="async",
            models=models(),
            num_records=records,
        )

    outcome = c.run_virtual(once)
    requests = sum(1 for r in outcome.log if r.model == EMBED and r.status == 200)
    row: dict[str, Any] = {
        "shape": shape,
        "batch_size": batch_size,
        "records": records,
        "embedding_requests": requests,
        "texts_per_request": records / requests if requests else 0.0,
        "makespan": outcome.makespan,
    }
    if shape == "direct":
        row["bound"] = math.ceil(math.ceil(records / batch_size) / 8) * 0.2
    return row


def run(profile: str, *, results_dir: Path, img_dir: Path | None) -> None:
    params = PROFILES[profile]
    rows = [
        measure(shape, batch, params.records)
        for shape in params.shapes
        for batch in params.batch_sizes
    ]
    text_only = (
        makespan_without_vectors(params.records) if "after text" in params.shapes else None
    )
    for row in rows:
        first = next(r for r in rows if r["shape"] == row["shape"])
        row["makespan_vs_batch_1"] = row["makespan"] / first["makespan"]
        if row["shape"] == "after text":
            row["bound"] = text_only
    print(
        c.table(
            ["shape", "batch", "records", "requests", "texts/request", "makespan s",
             "÷ batch 1", "bound s"],
            [
                [r["shape"], r["batch_size"], r["records"], r["embedding_requests"],
                 r["texts_per_request"], r["makespan"], r["makespan_vs_batch_1"],
                 r.get("bound", "—")]
                for r in rows
            ],
        )
    )
    c.write_result("embeddings", {"profile": profile, "params": params, "rows": rows}, results_dir)
