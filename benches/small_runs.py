"""Bench 8: small runs — how close 10 records get to the DAG's lower bound, in real time.

A user's first runs are small, and there the fixed costs show: everything ``create()`` does
before its first request and after its last answer adds straight to the makespan. Protocol: the
seed's four shapes, 10 records, ``max_parallel_requests=16``, every request exactly 200 ms
(σ 0), the simulator in its **own process** (``python -m trio_designer.simulator``), the
default (adaptive) limiter, ``create()`` into a fresh directory each time, real clock. The
shapes take turns trial by trial (Narrow, Deep, Wide, Dual-model, Narrow, ...), after warm-up
runs, each after a pause of ``settle`` (0.1 s: the previous run's connections, closed as its
``create()`` returns, are torn down by then, as for a user's run against an idle endpoint);
medians are reported.

Where the time goes is read from both sides: this process notes when ``create()`` was called
and when it returned; the simulator's request log (``GET /log``) says when each request arrived
and when its answer left, on the simulator's clock, which is lined up with ours by the
round trip of ``GET /log`` itself (the exchange with the shortest round trip of a few; its half
is the error bound, a fraction of a millisecond on loopback). Reported per run:

* ``first request``: from calling ``create()`` to the first request's arrival;
* ``after last answer``: from the last answer leaving the simulator to ``create()`` returning;
* ``requests span``: from the first arrival to the last answer (the part the scheduler owns);
* ``CPU ms``, ``simulator CPU ms``: what this process and the simulator process spent on the
  run, and the same per request (``CPU ms / request``, ``simulator CPU ms / request``; this
  process's includes the run's fixed costs). The simulator spent about 1 ms per request under
  hypercorn (a wave of ten requests, ten ms of its CPU), ~0.4 ms on its own server;
* ``makespan ÷ bound``: the whole call against the DAG's lower bound for fixed latencies —
  ``max(critical path, max over models of head + ceil(requests / 16) waves + tail)``, the
  refined bound of ``benches/bound.py`` (Narrow 0.6 s, Deep 0.6 s, Wide 0.8 s, Dual-model 0.6 s).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._plan import ExecutionGraph
from trio_designer.models._http import ConnectionPool
from trio_designer.models._transport import parse_origin

from . import _common as c

PROVIDER = "external-sim"


@attrs.frozen(kw_only=True)
class Params:
    records: int = 10
    latency: float = 0.2
    max_parallel: int = 16
    trials: int = 9
    warmups: int = 2
    shapes: tuple[c.ShapeName, ...] = c.SHAPES
    settle: float = 0.1  # seconds between runs: each one starts against an idle simulator


PROFILES = {
    "full": Params(),
    "quick": Params(trials=3, warmups=1),
    "smoke": Params(
        records=2, latency=0.01, trials=1, warmups=0, shapes=("Narrow", "Dual-model"), settle=0
    ),
}


# ---------------------------------------------------------------------------------------------
# The simulator in its own process, and its clock
# ---------------------------------------------------------------------------------------------


@attrs.define
class External:
    """The simulator subprocess: its base URL, and its CPU use (Linux)."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the simulator has used so far (0 where /proc is missing)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def external_simulator(specs: Sequence[str]) -> AbstractContextManager[External]:
    """``python -m trio_designer.simulator --port 0 --model <spec> ...``."""
    options: list[str] = []
    for spec in specs:
        options += ["--model", spec]
    return external_process(options, what="the simulator")


@contextmanager
def external_process(options: Sequence[str], *, what: str) -> Iterator[External]:
    """``python -m trio_designer.simulator --port 0 <options>`` in its own process, for as
    long as the block lasts; ``what`` names it in the error if it prints no URL."""
    command = [sys.executable, "-m", "trio_designer.simulator", "--port", "0", *options]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            if not url.startswith("http://"):
                raise RuntimeError(f"{what} did not print its URL (got {url!r})")
            yield External(url=url, pid=process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


class SimulatorLog:
    """``GET /log`` and ``POST /stats/reset`` of the simulator at ``url``, and the offset of
    its clock from ours."""

    def __init__(self, url: str) -> None:
        origin, path = parse_origin(url)
        self._root = path.removesuffix("/v1")
        self._pool = ConnectionPool(origin, max_connections=1)
        self.offset = 0.0
        self.error = math.inf

    async def _call(self, method: str, path: str) -> dict[str, Any]:
        headers = [("accept", "application/json")]
        response = await self._pool.request(
            method, self._root + path, headers, b"", timeout=10, max_body=1 << 26
        )
        data: dict[str, Any] = json.loads(response.body)
        return data

    async def calibrate(self, rounds: int = 5) -> None:
        """Line the simulator's clock up with ours: the exchange with the shortest round trip
        wins; half of it bounds the error."""
        for _ in range(rounds):
            before = trio.current_time()
            served = await self._call("GET", "/log?calibrate")
            after = trio.current_time()
            if (after - before) / 2 < self.error:
                self.error = (after - before) / 2
                self.offset = served["time"] - (before + after) / 2

    async def reset(self) -> None:
        await self._call("POST", "/stats/reset")

    async def records(self) -> list[dict[str, Any]]:
        """The request log, with ``start`` and ``end`` on our clock."""
        served = await self._call("GET", "/log")
        return [
            {**r, "start": r["start"] - self.offset, "end": r["end"] - self.offset}
            for r in served["records"]
        ]

    async def aclose(self) -> None:
        await self._pool.aclose()


# ---------------------------------------------------------------------------------------------
# The bound and one run
# ---------------------------------------------------------------------------------------------


def fixed_latency_bound(config: PipelineConfig, records: int, latency: float, slots: int) -> float:
    """The refined DAG lower bound when every request takes ``latency`` (see the module
    docstring): chains of LLM columns, and whole waves of ``slots`` requests per model."""
    graph = ExecutionGraph.from_config(config)
    models = {col.name: col.model for col in config.columns if hasattr(col, "model")}
    before: dict[str, int] = {}
    for column in graph.order:
        own = 1 if column in models else 0
        before[column] = own + max((before[u] for u in graph.upstream[column]), default=0)
    after: dict[str, int] = {}
    for column in reversed(graph.order):
        own = 1 if column in models else 0
        after[column] = own + max((after[d] for d in graph.downstream[column]), default=0)
    path = max(before[col] + after[col] - 1 for col in models) * latency
    bound = path
    for model in set(models.values()):
        columns = [col for col, m in models.items() if m == model]
        waves = math.ceil(records * len(columns) / slots)
        head = min(before[col] - 1 for col in columns)
        tail = min(after[col] - 1 for col in columns)
        bound = max(bound, (head + waves + tail) * latency)
    return bound


def shape_config(shape: c.ShapeName, url: str, p: Params) -> PipelineConfig:
    """One of the seed's shapes, calling the external simulator."""
    models = [{"alias": "gen", "model": c.GEN_MODEL, "provider": PROVIDER}]
    if shape == "Dual-model":
        models.append({"alias": "judge", "model": c.JUDGE_MODEL, "provider": PROVIDER})
    for model in models:
        model["max_parallel_requests"] = p.max_parallel
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": PROVIDER, "base_url": url}],
            "models": models,
            "run": {"seed": 0},
            "columns": c.shape_columns(shape),
        }
    )


async def one_run(
    config: PipelineConfig, log: SimulatorLog, out: Path, p: Params, sim: External
) -> dict[str, Any]:
    """``create()`` once; where its time went."""
    await log.reset()
    cpu, sim_cpu = time.process_time(), sim.cpu_seconds()
    called = trio.current_time()
    result = await TrioDesigner().create(config, num_records=p.records, output_dir=out)
    returned = trio.current_time()
    cpu, sim_cpu = time.process_time() - cpu, sim.cpu_seconds() - sim_cpu
    if result.num_records_written != p.records:
        raise RuntimeError(f"wrote {result.num_records_written} of {p.records}: {result.failures}")
    records = [r for r in await log.records() if r["status"] == 200]
    first = min(r["start"] for r in records)
    last = max(r["end"] for r in records)
    bound = fixed_latency_bound(config, p.records, p.latency, p.max_parallel)
    return {
        "makespan_s": returned - called,
        "bound_s": bound,
        "ratio": (returned - called) / bound,
        "first_request_ms": 1000 * (first - called),
        "after_last_answer_ms": 1000 * (returned - last),
        "requests_span_s": last - first,
        "requests": len(records),
        "cpu_ms": 1000 * cpu,
        "simulator_cpu_ms": 1000 * sim_cpu,
        "cpu_ms_per_request": 1000 * cpu / len(records),
        "simulator_cpu_ms_per_request": 1000 * sim_cpu / len(records),
        "clock_error_ms": 1000 * log.error,
    }


async def measure(p: Params, sim: External, scratch: Path) -> dict[str, list[dict[str, Any]]]:
    """Every trial of every shape (warm-ups run and dropped), the shapes taking turns."""
    url = sim.url
    log = SimulatorLog(url)
    await log.calibrate()
    runs: dict[str, list[dict[str, Any]]] = {shape: [] for shape in p.shapes}
    try:
        for trial in range(-p.warmups, p.trials):
            for shape in p.shapes:
                out = scratch / f"{shape}-{trial + p.warmups}"
                # The previous run's connections are closed when create() returns, and the
                # simulator tears them down after that: without a pause it would still be at
                # it while the next run starts (a faster return made the next first request
                # 3-8 ms later on a loaded machine).
                await trio.sleep(p.settle)
                run = await one_run(shape_config(shape, url, p), log, out, p, sim)
                if trial >= 0:
                    runs[shape].append(run)
                    print(
                        f"  {shape:<10} trial {trial}: {run['makespan_s']:.3f} s "
                        f"({run['ratio']:.3f}x), first request {run['first_request_ms']:.1f} ms, "
                        f"after last answer {run['after_last_answer_ms']:.1f} ms",
                        flush=True,
                    )
    finally:
        await log.aclose()
    return runs


def summarise(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per shape, the median of each figure."""
    rows = []
    for shape, trials in runs.items():
        row: dict[str, Any] = {"shape": shape}
        for key in trials[0]:
            row[key] = c.median([t[key] for t in trials])
        row["ratio_max"] = max(t["ratio"] for t in trials)
        rows.append(row)
    return rows


def run(profile: str, *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    specs = [f"{model}:latency={p.latency}" for model in (c.GEN_MODEL, c.JUDGE_MODEL)]
    with external_simulator(specs) as sim, tempfile.TemporaryDirectory() as scratch:
        runs = trio.run(measure, p, sim, Path(scratch))
    rows = summarise(runs)
    print(
        c.table(
            [
                "shape",
                "bound s",
                "makespan s",
                "÷ bound",
                "worst ÷ bound",
                "first request ms",
                "after last answer ms",
                "requests span s",
                "CPU ms",
                "simulator CPU ms",
                "CPU ms / request",
                "simulator CPU ms / request",
            ],
            [
                [
                    r["shape"],
                    r["bound_s"],
                    r["makespan_s"],
                    r["ratio"],
                    r["ratio_max"],
                    r["first_request_ms"],
                    r["after_last_answer_ms"],
                    r["requests_span_s"],
                    r["cpu_ms"],
                    r["simulator_cpu_ms"],
                    r["cpu_ms_per_request"],
                    r["simulator_cpu_ms_per_request"],
                ]
                for r in rows
            ],
        )
    )
    payload = {"profile": profile, "params": attrs.asdict(p), "summary": rows, "runs": runs}
    c.write_result("small_runs", payload, results_dir)
    return payload
