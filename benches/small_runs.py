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

**Two placements of the two processes** take turns run by run (Linux, two CPUs or more):

* ``own core`` (the headline): the simulator on a CPU of its own, this process on the others —
  as with an endpoint on other hardware, the engine's CPU is never the endpoint's;
* ``shared``: both anywhere, as the OS scheduler likes. On a 2-CPU machine the simulator,
  woken by a request, then often takes the CPU this process was sending from (the kernel's
  wake-up preemption) and keeps it while it reads: at stop 24 one send in ten took 0.4–2.9 ms
  instead of 20 µs, which made Deep 1.055 instead of 1.044 — a cost of co-locating the
  endpoint with the engine, not of either.

Elsewhere (no ``sched_setaffinity``, or one CPU) only ``shared`` is measured.

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
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import attrs
import trio

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._plan import ExecutionGraph
from trio_designer.models._http import ConnectionPool
from trio_designer.models._transport import parse_origin

from . import _common as c

PROVIDER = "external-sim"

Layout = Literal["own core", "shared"]


@attrs.frozen(kw_only=True)
class Params:
    records: int = 10
    latency: float = 0.2
    max_parallel: int = 16
    trials: int = 9
    warmups: int = 2
    shapes: tuple[c.ShapeName, ...] = c.SHAPES
    settle: float = 0.1  # seconds between runs: each one starts against an idle simulator
    layouts: tuple[Layout, ...] = ("own core", "shared")


PROFILES = {
    "full": Params(),
    "quick": Params(trials=3, warmups=1),
    "smoke": Params(
        records=2,
        latency=0.01,
        trials=1,
        warmups=0,
        shapes=("Narrow", "Dual-model"),
        settle=0,
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


def _threads(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (``0``: this one); ``[pid]`` where /proc is missing."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid or os.getpid()}/task")]
    except OSError:
        return [pid]


def _pin(pid: int, cpus: set[int]) -> None:
    """Let every thread of process ``pid`` run on ``cpus`` only (``sched_setaffinity`` sets
    one thread's: the fsync and worker threads this process has started keep their own
    otherwise). A thread that ended meanwhile is skipped."""
    for tid in _threads(pid):
        with suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cpus)


def available_layouts(wanted: Sequence[Layout]) -> tuple[Layout, ...]:
    """The placements this machine can give (``own core``: Linux affinity and two CPUs)."""
    can_pin = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    return tuple(layout for layout in wanted if layout == "shared" or can_pin)


@contextmanager
def placed(layout: Layout, sim: External) -> Iterator[None]:
    """Run the block with the simulator and this process placed as ``layout`` says (see the
    module docstring); every thread of both gets back the CPUs this process had."""
    if layout == "shared":
        yield
        return
    everything = os.sched_getaffinity(0)
    own = max(everything)
    try:
        _pin(sim.pid, {own})
        _pin(0, everything - {own})
        yield
    finally:
        _pin(0, everything)
        _pin(sim.pid, everything)


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


async def measure(
    p: Params, sim: External, scratch: Path, layouts: Sequence[Layout]
) -> dict[Layout, dict[str, list[dict[str, Any]]]]:
    """Every trial of every shape in every placement (warm-ups run and dropped), the shapes
    and placements taking turns."""
    url = sim.url
    log = SimulatorLog(url)
    await log.calibrate()
    runs: dict[Layout, dict[str, list[dict[str, Any]]]] = {
        layout: {shape: [] for shape in p.shapes} for layout in layouts
    }
    try:
        for trial in range(-p.warmups, p.trials):
            for shape in p.shapes:
                for layout in layouts:
                    out = scratch / f"{shape}-{layout}-{trial + p.warmups}".replace(" ", "-")
                    with placed(layout, sim):
                        # The previous run's connections are closed when create() returns,
                        # and the simulator tears them down after that: without a pause it
                        # would still be at it while the next run starts (a faster return
                        # made the next first request 3-8 ms later on a loaded machine).
                        await trio.sleep(p.settle)
                        run = await one_run(shape_config(shape, url, p), log, out, p, sim)
                    if trial >= 0:
                        runs[layout][shape].append(run)
                        print(
                            f"  {shape:<10} {layout:<8} trial {trial}: "
                            f"{run['makespan_s']:.3f} s ({run['ratio']:.3f}x), first request "
                            f"{run['first_request_ms']:.1f} ms, after last answer "
                            f"{run['after_last_answer_ms']:.1f} ms",
                            flush=True,
                        )
    finally:
        await log.aclose()
    return runs


def summarise(runs: dict[Layout, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Per placement and shape, the median of each figure."""
    rows = []
    for layout, shapes in runs.items():
        for shape, trials in shapes.items():
            row: dict[str, Any] = {"layout": layout, "shape": shape}
            for key in trials[0]:
                row[key] = c.median([t[key] for t in trials])
            row["ratio_max"] = max(t["ratio"] for t in trials)
            rows.append(row)
    return rows


def run(profile: str, *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    specs = [f"{model}:latency={p.latency}" for model in (c.GEN_MODEL, c.JUDGE_MODEL)]
    layouts = available_layouts(p.layouts)
    with external_simulator(specs) as sim, tempfile.TemporaryDirectory() as scratch:
        runs = trio.run(measure, p, sim, Path(scratch), layouts)
    rows = summarise(runs)
    print(
        c.table(
            [
                "placement",
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
                    r["layout"],
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
    payload = {
        "profile": profile,
        "params": attrs.asdict(p),
        "layouts": list(layouts),
        "summary": rows,
        "runs": runs,
    }
    c.write_result("small_runs", payload, results_dir)
    return payload
