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

Then one cProfile of the zero-latency run at 64 names the top costs, and the **transport
options** are compared without the engine: the same chat request sent ``option_requests``
times by bare tasks at each concurrency, through (a) one httpx client (the pool sized to the
concurrency, capped at 64, with a ``trio.CapacityLimiter`` in front so nothing queues inside
httpcore: how the client used httpx), (b) several httpx clients of at most 16 connections,
round-robin, (c) one httpcore pool used directly, (d) several httpcore pools of at most 16,
(e) our client with its default, native transport (h11 on trio streams,
``trio_designer/models/_http.py``), and (f) our client with ``transport="httpx"``
(``trio_designer/models/_httpx_transport.py``: clients of at most 16 connections, the whole
client around it: deadline, size cap, error translation).

Timing on a shared 2-core machine is noisy: the concurrency levels take turns (16, 64, 256,
16, 64, 256, ...) so a change of load hits all of them alike, each point is the best of
``repeats`` runs (the least disturbed one), and the simulator's own CPU per request is reported
too (from ``/proc/<pid>/stat``), to show which process is the bottleneck. ``ceiling req/s`` is
what this process's CPU cost allows on a core of its own (``1 / CPU per request``).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_designer import PipelineConfig
from trio_designer.models._limiter import StaticLimiter

from . import _common as c
from .small_runs import External, external_simulator

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
    option_requests: int = 3000


PROFILES = {
    "full": Params(),
    "quick": Params(
        records=400, latency_records=200, repeats=1, profile_records=400, option_requests=1000
    ),
    "smoke": Params(
        records=20,
        concurrency=(4, 16),
        latency_records=10,
        latency_capacity=16,
        repeats=1,
        profile_records=10,
        top=5,
        option_requests=40,
    ),
}


# ---------------------------------------------------------------------------------------------
# The simulator in its own process
# ---------------------------------------------------------------------------------------------


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


def measure(sim: External, records: int, max_parallel: int) -> dict[str, Any]:
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
            1e6 * (sim_after - sim_cpu) / requests
        ),
    }


def best_of_interleaved(
    sim: External, records: int, levels: tuple[int, ...], repeats: int, label: str
) -> list[dict[str, Any]]:
    """Per level, the run with the shortest wall time among ``repeats``; the levels take turns."""
    runs: dict[int, list[dict[str, Any]]] = {level: [] for level in levels}
    for _ in range(repeats):
        for level in levels:
            r = measure(sim, records, level)
            runs[level].append(r)
            print(
                f"  {label}, {level:>3} concurrent: {r['requests']:,} requests in "
                f"{r['wall_s']:.2f} s, {r['cpu_us_per_request']:,.0f} µs CPU/request, "
                f"{r['requests_per_s']:,.0f} req/s",
                flush=True,
            )
    best = []
    for level in levels:
        winner = min(runs[level], key=lambda r: r["wall_s"])
        best.append({**winner, "wall_s_all": [r["wall_s"] for r in runs[level]]})
    return best


def profile_run(
    sim: External, records: int, max_parallel: int, top: int
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


def _sim_cpu(r: dict[str, Any]) -> Any:
    value = r["simulator_cpu_us_per_request"]
    return "?" if value is None else round(value)


def _short(path: str) -> str:
    for marker in ("site-packages/", "trio_designer/", "lib/python3"):
        if marker in path:
            return path[path.index(marker) :].removeprefix("site-packages/")
    return path


# ---------------------------------------------------------------------------------------------
# Transport options, without the engine
# ---------------------------------------------------------------------------------------------

_MESSAGES = [{"role": "user", "content": "Write about the history of jazz."}]
_OPTION_POOL_CAP = 64
_SMALL_POOL = 16


async def _drive(send: Any, concurrency: int, requests: int) -> None:
    """``requests`` calls of ``send()``, ``concurrency`` at a time, each its own task."""
    gate = trio.Semaphore(concurrency)

    async def one() -> None:
        try:
            await send()
        finally:
            gate.release()

    async with trio.open_nursery() as nursery:
        for _ in range(requests):
            await gate.acquire()
            nursery.start_soon(one)


def _body() -> bytes:
    import json

    return json.dumps({"model": c.GEN_MODEL, "messages": _MESSAGES, "seed": 1}).encode()


async def _ours(url: str, concurrency: int, requests: int, *, transport: str = "native") -> None:
    from trio_designer.models._client import OpenAICompatibleClient

    async with OpenAICompatibleClient(
        base_url=url, max_connections=concurrency, transport=transport
    ) as client:

        async def send() -> None:
            await client.chat(model=c.GEN_MODEL, messages=_MESSAGES, extra_body={"seed": 1})

        await _drive(send, concurrency, requests)


async def _httpx(url: str, concurrency: int, requests: int, *, split: bool) -> None:
    import itertools
    import json

    import httpx

    count = -(-concurrency // _SMALL_POOL) if split else 1
    size = -(-concurrency // count) if split else min(concurrency, _OPTION_POOL_CAP)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    clients = [httpx.AsyncClient(base_url=url, limits=limits) for _ in range(count)]
    gates = [trio.CapacityLimiter(size) for _ in range(count)]
    turn = itertools.cycle(range(count))
    body = _body()

    async def send() -> None:
        i = next(turn)
        async with gates[i]:
            response = await clients[i].post(
                "chat/completions", content=body, headers={"content-type": "application/json"}
            )
        json.loads(response.content)

    await _drive(send, concurrency, requests)
    for client in clients:
        await client.aclose()


async def _httpcore(url: str, concurrency: int, requests: int, *, split: bool) -> None:
    import itertools
    import json

    import httpcore

    count = -(-concurrency // _SMALL_POOL) if split else 1
    size = -(-concurrency // count) if split else min(concurrency, _OPTION_POOL_CAP)
    pools = [
        httpcore.AsyncConnectionPool(max_connections=size, max_keepalive_connections=size)
        for _ in range(count)
    ]
    gates = [trio.CapacityLimiter(size) for _ in range(count)]
    turn = itertools.cycle(range(count))
    target = url.rstrip("/") + "/chat/completions"
    body = _body()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    async def send() -> None:
        i = next(turn)
        async with gates[i]:
            response = await pools[i].request("POST", target, headers=headers, content=body)
        json.loads(response.content)

    await _drive(send, concurrency, requests)
    for pool in pools:
        await pool.aclose()


def transport_options() -> dict[str, Any]:
    """Option name -> ``async fn(url, concurrency, requests)``."""
    from functools import partial

    return {
        "httpx, one client": partial(_httpx, split=False),
        f"httpx, clients of <= {_SMALL_POOL}": partial(_httpx, split=True),
        "httpcore pool": partial(_httpcore, split=False),
        f"httpcore, pools of <= {_SMALL_POOL}": partial(_httpcore, split=True),
        "ours, native (h11 on trio)": _ours,
        "ours, transport: httpx": partial(_ours, transport="httpx"),
    }


def compare_options(sim: External, p: Params) -> list[dict[str, Any]]:
    """CPU per request and requests/s of each transport option at each concurrency."""
    rows = []
    for name, option in transport_options().items():
        for concurrency in p.concurrency:
            trio.run(option, sim.url, concurrency, min(200, p.option_requests))  # warm up
            sim_cpu = sim.cpu_seconds()
            wall, cpu = time.perf_counter(), time.process_time()
            trio.run(option, sim.url, concurrency, p.option_requests)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            sim_after = sim.cpu_seconds()
            rows.append(
                {
                    "option": name,
                    "concurrency": concurrency,
                    "requests": p.option_requests,
                    "cpu_us_per_request": 1e6 * cpu / p.option_requests,
                    "requests_per_s": p.option_requests / wall,
                    "simulator_cpu_us_per_request": 1e6 * (sim_after - sim_cpu) / p.option_requests,
                }
            )
            r = rows[-1]
            print(
                f"  {name:26} {concurrency:>3} concurrent: {r['cpu_us_per_request']:,.0f} µs "
                f"CPU/request, {r['requests_per_s']:,.0f} req/s",
                flush=True,
            )
    return rows


# ---------------------------------------------------------------------------------------------
# The bench
# ---------------------------------------------------------------------------------------------


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    zero_spec = f"{c.GEN_MODEL}:latency=0,sigma=0,capacity=1000000"
    with external_simulator([zero_spec]) as sim:
        zero = best_of_interleaved(sim, p.records, p.concurrency, p.repeats, "zero latency")
        prof = profile_run(sim, p.profile_records, p.concurrency[len(p.concurrency) // 2], p.top)
        options = compare_options(sim, p)
    spec = f"{c.GEN_MODEL}:latency={p.latency},sigma=0,capacity={p.latency_capacity}"
    with external_simulator([spec]) as sim:
        label = f"{p.latency * 1000:g} ms latency"
        latency = best_of_interleaved(sim, p.latency_records, p.concurrency, p.repeats, label)
    for r in latency:
        concurrent = min(r["max_parallel_requests"], p.latency_capacity)
        r["ideal_s"] = -(-r["requests"] // concurrent) * p.latency

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
                "ceiling req/s",
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
                    round(1e6 / r["cpu_us_per_request"]),
                    _sim_cpu(r),
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
            [
                "max_parallel",
                "requests",
                "makespan s",
                "ideal s",
                "cpu s",
                "req/s",
                "sim µs CPU/req",
            ],
            [
                [
                    r["max_parallel_requests"],
                    r["requests"],
                    r["wall_s"],
                    r["ideal_s"],
                    r["cpu_s"],
                    round(r["requests_per_s"]),
                    _sim_cpu(r),
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
    print(
        f"\nTransport options without the engine: {p.option_requests:,} chat requests, zero "
        f"latency (simulator's CPU per request in the last column)"
    )
    print(
        c.table(
            ["option", "concurrent", "µs CPU/request", "req/s", "sim µs CPU/request"],
            [
                [
                    r["option"],
                    r["concurrency"],
                    round(r["cpu_us_per_request"]),
                    round(r["requests_per_s"]),
                    _sim_cpu(r),
                ]
                for r in options
            ],
        )
    )
    payload = {
        "profile": profile,
        "transport_options": options,
        "params": attrs.asdict(p),
        "zero_latency": zero,
        "latency": latency,
        "cprofile": prof,
    }
    path = c.write_result("client_cpu", payload, results_dir)
    print(f"wrote {path}")
    return payload
