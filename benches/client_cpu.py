"""Bench 7: the request path — CPU per request and requests/s of one process.

The simulator runs in its **own process** (``python -m trio_designer.simulator --port 0``), so
everything this process spends is ours: the engine, the generators, the limiter and the model
client. Two measurements, both the Wide shape (five LLM columns after a category sampler, each
row five independent requests), real time, ``preview`` (in-memory sink), static limiter at
``max_parallel_requests`` (so the limit does not move and only the request path is measured):

* **zero latency**, capacity far above the load: the process is CPU-bound, so requests/s is
  its ceiling and ``time.process_time()`` ÷ requests is the CPU cost of one request, at
  ``max_parallel_requests`` 16, 64 and 256;
* **20 ms latency, capacity 256**, 400 records: the makespan at 16, 64 and 256. More
  concurrency must never make this slower (the latency-bound ideal is ``ceil(2000 / c) × 20 ms``;
  at high concurrency the CPU ceiling binds instead).

Then one cProfile of the zero-latency run at 64 names the top costs.

Timing on a shared 2-core machine is noisy: each point is the best of ``repeats`` runs (the
least disturbed one), and the simulator's own CPU per request is reported too (from
``/proc/<pid>/stat``), to show which process is the bottleneck.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_designer import PipelineConfig
from trio_designer.models._limiter import StaticLimiter

from . import _common as c

COLUMNS_PER_ROW = 5  # the Wide shape's LLM columns
PROVIDER = "external-sim"


@attrs.frozen(kw_only=True)
class Params:
    records: int = 1000
    concurrency: tuple[int, ...] = (16, 64, 256)
    latency_records: int = 400
    latency: float = 0.02
    latency_capacity: int = 256
    repeats: int = 3
    profile_records: int = 1000
    top: int = 25


PROFILES = {
    "full": Params(),
    "quick": Params(records=400, latency_records=200, repeats=1, profile_records=400),
    "smoke": Params(
        records=20,
        concurrency=(4, 16),
        latency_records=10,
        latency_capacity=16,
        repeats=1,
        profile_records=10,
        top=5,
    ),
}


# ---------------------------------------------------------------------------------------------
# The simulator in its own process
# ---------------------------------------------------------------------------------------------


@attrs.define
class ExternalSimulator:
    """A simulator subprocess: its base URL and its process (for CPU readings)."""

    url: str
    process: subprocess.Popen[str]

    def cpu_seconds(self) -> float | None:
        """User + system CPU the simulator process has used so far (Linux only)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


@contextmanager
def external_simulator(spec: str) -> Iterator[ExternalSimulator]:
    """Start ``python -m trio_designer.simulator --port 0 --model <spec>``; stop it on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_designer.simulator", "--port", "0", "--model", spec],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the simulator did not print its URL (got {url!r})")
        yield ExternalSimulator(url=url, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------


def wide_config(url: str, max_parallel: int) -> PipelineConfig:
    """The Wide shape calling the external simulator at ``url``."""
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": PROVIDER, "base_url": url}],
            "models": [
                {
                    "alias": "gen",
                    "model": c.GEN_MODEL,
                    "provider": PROVIDER,
                    "max_parallel_requests": max_parallel,
                }
            ],
            "run": {"seed": 0},
            "columns": c.shape_columns("Wide"),
        }
    )


def measure(sim: ExternalSimulator, records: int, max_parallel: int) -> dict[str, Any]:
    """One preview of ``records`` Wide rows at ``max_parallel``: wall, CPU, requests/s."""
    config = wide_config(sim.url, max_parallel)
    designer = c.BenchDesigner(limiter=StaticLimiter)

    async def one() -> Any:
        return await designer.preview(config, num_records=records)

    sim_cpu = sim.cpu_seconds()
    wall, cpu = time.perf_counter(), time.process_time()
    result = trio.run(one)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sim_after = sim.cpu_seconds()
    if result.num_records_written != records:
        raise RuntimeError(f"wrote {result.num_records_written} of {records}: {result.failures}")
    requests = sum(
        u["requests_ok"] + u["requests_failed"] + u["requests_rate_limited"]
        for u in result.usage.values()
    )
    return {
        "records": records,
        "max_parallel_requests": max_parallel,
        "requests": requests,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_us_per_request": 1e6 * cpu / requests,
        "requests_per_s": requests / wall,
        "simulator_cpu_us_per_request": (
            None if sim_cpu is None or sim_after is None else 1e6 * (sim_after - sim_cpu) / requests
        ),
    }


def best_of(
    sim: ExternalSimulator, records: int, max_parallel: int, repeats: int
) -> dict[str, Any]:
    """The run with the shortest wall time among ``repeats`` (the least disturbed one)."""
    runs = [measure(sim, records, max_parallel) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["wall_s"])
    return {**best, "wall_s_all": [r["wall_s"] for r in runs]}


def profile_run(
    sim: ExternalSimulator, records: int, max_parallel: int, top: int
) -> dict[str, Any]:
    """cProfile one zero-latency run; the top functions by own time."""
    config = wide_config(sim.url, max_parallel)

    async def one() -> Any:
        return await c.BenchDesigner(limiter=StaticLimiter).preview(config, num_records=records)

    profiler = cProfile.Profile()
    profiler.enable()
    trio.run(one)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt  # type: ignore[attr-defined]
    entries = [
        {
            "function": f"{_short(file)}:{line}({func})",
            "calls": nc,
            "tottime_s": tt,
            "tottime_pct": 100 * tt / total,
        }
        for (file, line, func), (_cc, nc, tt, _ct, _) in stats.stats.items()  # type: ignore[attr-defined]
    ]
    return {
        "records": records,
        "max_parallel_requests": max_parallel,
        "profiled_s": total,
        "top_tottime": sorted(entries, key=lambda e: -e["tottime_s"])[:top],
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "trio_designer/", "lib/python3"):
        if marker in path:
            return path[path.index(marker) :].removeprefix("site-packages/")
    return path


# ---------------------------------------------------------------------------------------------
# The bench
# ---------------------------------------------------------------------------------------------


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    zero_spec = f"{c.GEN_MODEL}:latency=0,sigma=0,capacity=1000000"
    with external_simulator(zero_spec) as sim:
        zero = []
        for par in p.concurrency:
            zero.append(best_of(sim, p.records, par, p.repeats))
            r = zero[-1]
            print(
                f"  zero latency, {par:>3} concurrent: {r['requests']:,} requests in "
                f"{r['wall_s']:.2f} s, {r['cpu_us_per_request']:,.0f} µs CPU/request, "
                f"{r['requests_per_s']:,.0f} req/s",
                flush=True,
            )
        prof = profile_run(sim, p.profile_records, p.concurrency[len(p.concurrency) // 2], p.top)
    spec = f"{c.GEN_MODEL}:latency={p.latency},sigma=0,capacity={p.latency_capacity}"
    with external_simulator(spec) as sim:
        latency = []
        for par in p.concurrency:
            latency.append(best_of(sim, p.latency_records, par, p.repeats))
            r = latency[-1]
            ideal = -(-r["requests"] // min(par, p.latency_capacity)) * p.latency
            r["ideal_s"] = ideal
            print(
                f"  {p.latency * 1000:g} ms latency, {par:>3} concurrent: "
                f"{r['wall_s']:.2f} s (latency-bound ideal {ideal:.2f} s)",
                flush=True,
            )

    print(
        f"\nZero latency, Wide, {p.records:,} records, simulator in its own process "
        f"(best of {p.repeats})"
    )
    print(
        c.table(
            [
                "max_parallel",
                "requests",
                "wall s",
                "cpu s",
                "µs CPU/request",
                "req/s",
                "sim µs CPU/request",
            ],
            [
                [
                    r["max_parallel_requests"],
                    r["requests"],
                    r["wall_s"],
                    r["cpu_s"],
                    round(r["cpu_us_per_request"]),
                    round(r["requests_per_s"]),
                    "?"
                    if r["simulator_cpu_us_per_request"] is None
                    else round(r["simulator_cpu_us_per_request"]),
                ]
                for r in zero
            ],
        )
    )
    print(
        f"\n{p.latency * 1000:g} ms latency, capacity {p.latency_capacity}, Wide, "
        f"{p.latency_records:,} records (best of {p.repeats})"
    )
    print(
        c.table(
            ["max_parallel", "requests", "makespan s", "ideal s", "cpu s", "req/s"],
            [
                [
                    r["max_parallel_requests"],
                    r["requests"],
                    r["wall_s"],
                    r["ideal_s"],
                    r["cpu_s"],
                    round(r["requests_per_s"]),
                ]
                for r in latency
            ],
        )
    )
    print(
        f"\ncProfile, zero latency, {prof['records']:,} records at "
        f"{prof['max_parallel_requests']} (tottime)"
    )
    print(
        c.table(
            ["function", "calls", "tottime s", "% of run"],
            [
                [e["function"], e["calls"], e["tottime_s"], f"{e['tottime_pct']:.1f}%"]
                for e in prof["top_tottime"]
            ],
        )
    )
    payload = {
        "profile": profile,
        "params": attrs.asdict(p),
        "zero_latency": zero,
        "latency": latency,
        "cprofile": prof,
    }
    path = c.write_result("client_cpu", payload, results_dir)
    print(f"wrote {path}")
    return payload
