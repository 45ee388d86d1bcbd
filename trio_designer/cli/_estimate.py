"""``trio-designer estimate CONFIG --num-records N``: a small preview, extrapolated.

Runs ``--preview-records`` rows in memory (the config's endpoints with ``--real``, the default,
or the built-in simulator with ``--simulator``), measures each model's requests, tokens, cost and
latency from the preview's per-cell records, and scales them to ``--num-records`` with
:func:`trio_designer._core._estimate.extrapolate`, printing every assumption.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

import attrs
import pyarrow.compute as pc
import trio

from .._core._estimate import ModelEstimate, ModelPreview, extrapolate, run_time, totals
from ..config import SIMULATOR_PROVIDER, PipelineConfig
from ._format import Redactor, duration, table
from ._inspect_cells import money
from ._load import load_config, with_overrides
from ._run import STOP_SIGNALS, limiter_factory, run_until_interrupted

__all__ = ["cmd_estimate", "estimate_config", "preview_models"]


def estimate_config(config: PipelineConfig, *, simulator: bool) -> PipelineConfig:
    """The config the preview runs: budgets off (the preview is the estimate's basis), and
    with ``simulator`` every model served by the built-in simulated endpoint."""
    run = attrs.evolve(config.run, max_cost=None, max_tokens=None, max_requests=None)
    models = config.models
    if simulator:
        models = tuple(attrs.evolve(m, provider=SIMULATOR_PROVIDER) for m in models)
    return attrs.evolve(config, run=run, models=models)


def preview_models(config: PipelineConfig, result: Any) -> list[ModelPreview]:
    """Each model alias's numbers in a preview result (usage, and latency from its cells)."""
    cells = result.cells
    latency: dict[str, float] = {}
    if cells.num_rows:
        called = cells.filter(pc.is_valid(cells["model_alias"]))
        for row in called.group_by("model_alias").aggregate([("latency_s", "sum")]).to_pylist():
            latency[row["model_alias"]] = row["latency_s_sum"] or 0.0
    previews = []
    for model in config.models:
        usage = result.usage.get(model.alias) or {}
        outcomes = ("requests_ok", "requests_failed", "requests_rate_limited")
        requests = sum(int(usage.get(k, 0)) for k in outcomes)
        previews.append(
            ModelPreview(
                alias=model.alias,
                requests=requests,
                input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
                cost=usage.get("cost"),
                latency_total=latency.get(model.alias, 0.0),
                max_parallel_requests=model.max_parallel_requests,
                rpm=model.rpm,
                tpm=model.tpm,
            )
        )
    return previews


def cmd_estimate(args: argparse.Namespace) -> int:
    """``trio-designer estimate CONFIG --num-records N``."""
    from .._designer import TrioDesigner

    loaded = with_overrides(load_config(args.config, python_path=args.python_path), seed=args.seed)
    config = estimate_config(loaded, simulator=args.simulator)
    preview_rows = min(args.preview_records, args.num_records)
    designer = TrioDesigner(limiter_factory=limiter_factory(args.limiter))

    async def preview() -> Any:
        return await designer.preview(config, num_records=preview_rows)

    result, stopped_by = trio.run(partial(run_until_interrupted, designer, preview))
    if stopped_by is not None:
        print("interrupted: no estimate (the preview did not finish)", file=sys.stderr)
        return STOP_SIGNALS[stopped_by]
    assert result is not None
    estimates = extrapolate(
        preview_models(config, result), preview_rows=preview_rows, num_records=args.num_records
    )
    redact = Redactor()
    source = "the built-in simulator" if args.simulator else "the config's endpoints"
    if args.json:
        document = {
            "num_records": args.num_records,
            "preview_records": preview_rows,
            "preview_rows_written": result.num_records_written,
            "endpoints": "simulator" if args.simulator else "real",
            "models": [e.to_dict() for e in estimates],
            "total": dict(totals(estimates)),
            "seconds": run_time(estimates),
            "assumptions": assumptions(result, preview_rows, simulator=args.simulator),
        }
        print(redact(json.dumps(document, indent=2)))
        return 0
    lines = [
        f"estimate for {args.num_records} rows, from a preview of {preview_rows} rows "
        f"({source}; {result.num_records_written} written, {result.num_rows_dropped} dropped)",
        estimate_table(estimates),
        f"time: about {duration(run_time(estimates))} at the configured limits "
        f"({_bounds(estimates)})",
        "assumptions:",
        *(f"  - {a}" for a in assumptions(result, preview_rows, simulator=args.simulator)),
    ]
    print(redact("\n".join(lines)))
    return 0


def estimate_table(estimates: Sequence[ModelEstimate]) -> str:
    rows = [
        [e.alias, round(e.requests), round(e.input_tokens), round(e.output_tokens), money(e.cost)]
        for e in estimates
    ]
    total = totals(estimates)
    if len(estimates) != 1:
        rows.append(
            [
                "total",
                round(total["requests"] or 0),
                round(total["input_tokens"] or 0),
                round(total["output_tokens"] or 0),
                money(total["cost"]),
            ]
        )
    return table(["model", "requests", "input tokens", "output tokens", "cost"], rows)


def _bounds(estimates: Sequence[ModelEstimate]) -> str:
    if not estimates:
        return "no model calls"
    return ", ".join(f"{e.alias}: {e.bound}" for e in estimates)


def assumptions(result: Any, preview_rows: int, *, simulator: bool) -> list[str]:
    """What the estimate takes for granted, said plainly."""
    said = [
        f"every row costs what a preview row cost on average ({preview_rows} rows; skipped "
        "cells, retries, parse re-asks and dropped rows included); a larger preview averages "
        "more",
        "time per model: the largest of its requests at max_parallel_requests in flight with "
        "the preview's mean latency, at its rpm, and its tokens at its tpm; the run takes as "
        "long as its slowest model; engine overhead and endpoint saturation are not modelled",
        "cost: at each model's price; '-' for a model without a price; the response cache "
        "and budgets are ignored",
    ]
    if simulator:
        said.append(
            "the preview ran against the built-in simulator: requests per row are what your "
            "pipeline asks for, but tokens and latency are the simulator's, not your model's"
        )
    else:
        said.append("the preview ran at the config's endpoints (and was paid for there)")
    if result.num_rows_dropped:
        said.append(
            f"{result.num_rows_dropped} of {preview_rows} preview rows were dropped; the same "
            "share is assumed for the full run"
        )
    return said

