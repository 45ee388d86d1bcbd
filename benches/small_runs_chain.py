"""Where a small run's chain of requests loses time: ``python -m benches.small_runs_chain
[--shapes Narrow,Deep] [--trials 4]``.

A diagnostic for ``benches/small_runs.py`` (same shapes, 10 records, 200 ms, the simulator in
its own process, the cache off), not a bench of its own: it prints, per shape, the steps of
each record's chain of LLM cells, from both sides —

* the client's ``RunResult.traces`` (``run.trace`` on): a cell finished → the next cell of its
  row dispatched (the engine), dispatched → the generator called;
* the simulator's request log (``GET /log``): answer left − request arrived − 200 ms (the
  simulator's own overshoot; ``start`` is the request's arrival, its body read — until branch
  ``smallhop`` it was taken after the simulator parsed it and drew its answer);
* both, paired by rank (the i-th cell to start with the i-th request to arrive; the i-th to
  finish with the i-th answer to leave): the *send side* (generator called → request taken up
  by the simulator) and the *receive side* (answer left → cell finished), each above the run's
  fastest, since the two clocks are not lined up here (their sum is exact: a cell's in-progress
  time minus 200 ms minus the overshoot).

Meant for shapes whose records are chains of one LLM cell per wave (Narrow, Deep): where
requests queue for the model's limiter (Dual-model's waves of 30 with 16 slots) the pairing by
rank mixes queueing into the send side (so may a first wave that queues, as Deep's can).
Figures are medians, 90th percentiles and maxima over every cell of every trial (one warm-up
run per shape is dropped); the send side is also shown wave by wave (the first wave also opens
most of its connections). On a loaded machine they show where the waiting is, not how much
CPU it costs: compare with ``python -m benches.simulator_cpu`` and the ``CPU ms`` columns of
``small_runs``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import trio

from trio_designer import PipelineConfig, TaskTrace, TrioDesigner

from . import _common as c
from . import small_runs as sr


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(0.9 * len(ordered))]
    return f"median {statistics.median(ordered):6.2f}  p90 {p90:6.2f}  max {ordered[-1]:6.2f}"


async def measure(
    url: str, shapes: Sequence[str], trials: int
) -> dict[str, dict[str, list[float]]]:
    p = sr.Params()
    log = sr.SimulatorLog(url)
    await log.calibrate()
    scratch = Path(tempfile.mkdtemp(prefix="small-runs-chain-"))
    steps: dict[str, dict[str, list[float]]] = {shape: {} for shape in shapes}
    try:
        for trial in range(-1, trials):
            for shape in shapes:
                await trio.sleep(p.settle)
                base = sr.shape_config(shape, url, p).to_dict()
                config = PipelineConfig.from_dict(
                    {**base, "run": {**base.get("run", {}), "trace": True}}
                )
                await log.reset()
                result = await TrioDesigner().create(
                    config, num_records=p.records, output_dir=scratch / f"{shape}-{trial + 1}"
                )
                served = [r for r in await log.records() if r["status"] == 200]
                if trial >= 0:
                    _add_run(steps[shape], result.traces, served, p.latency)
    finally:
        await log.aclose()
    return steps


def _add_run(
    out: dict[str, list[float]],
    traces: Sequence[TaskTrace],
    served: list[dict[str, Any]],
    latency: float,
) -> None:
    cells = [
        t
        for t in traces
        if t.kind == "cell" and t.status == "ok" and t.finished - t.started > 0.75 * latency
    ]

    def add(key: str, values: Iterable[float]) -> None:
        out.setdefault(key, []).extend(values)

    add(
        "simulator: answer left - arrived - latency",
        (1000 * (r["end"] - r["start"] - latency) for r in served),
    )
    rows: dict[int | None, list[TaskTrace]] = {}
    for cell in cells:
        rows.setdefault(cell.row, []).append(cell)
    for row_cells in rows.values():
        row_cells.sort(key=lambda t: t.started)
        add(
            "engine: cell finished -> next cell of the row dispatched",
            (1000 * (b.dispatched - a.finished) for a, b in itertools.pairwise(row_cells)),
        )
        add(
            "engine: dispatched -> generator called",
            (1000 * (t.started - t.dispatched) for t in row_cells),
        )
    if len(cells) != len(served):
        return  # a retried request: no pairing by rank for this run
    arrived = sorted(served, key=lambda r: r["start"])
    left = sorted(served, key=lambda r: r["end"])
    started = sorted(cells, key=lambda t: t.started)
    finished = sorted(cells, key=lambda t: t.finished)
    send = [r["start"] - t.started for r, t in zip(arrived, started, strict=True)]
    receive = [t.finished - r["end"] for r, t in zip(left, finished, strict=True)]
    add(
        "send side: generator called -> taken up by the simulator (above the run's fastest)",
        (1000 * (x - min(send)) for x in send),
    )
    first = started[0].started
    for x, cell in zip(send, started, strict=True):  # by wave: the first one also connects
        wave = int((cell.started - first) / (0.95 * latency)) + 1
        add(f"send side, wave {wave}", [1000 * (x - min(send))])
    add(
        "receive side: answer left -> cell finished (above the run's fastest)",
        (1000 * (x - min(receive)) for x in receive),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.small_runs_chain")
    parser.add_argument(
        "--shapes", default="Narrow,Deep", help="chains of one cell per wave (not Dual-model)"
    )
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args(argv)
    os.environ.setdefault("TRIO_DESIGNER_CACHE", "off")  # as `python -m benches` does
    p = sr.Params()
    specs = [f"{model}:latency={p.latency}" for model in (c.GEN_MODEL, c.JUDGE_MODEL)]
    with sr.external_simulator(specs) as sim:
        shapes = [shape for shape in c.SHAPES if shape in args.shapes.split(",")]
        steps = trio.run(measure, sim.url, shapes, args.trials)
    for shape, figures in steps.items():
        print(f"{shape} (ms)")
        for name, values in figures.items():
            if values:
                print(f"  {name}:\n      {_summary(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
