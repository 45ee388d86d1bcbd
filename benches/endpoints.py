"""Bench 8: real endpoints (issue 11) — hidden limits, sporadic 429s, a moving limit, budgets.

Every run drives the public engine (``TrioDesigner``, default settings: the adaptive limiter,
retries in place) over real HTTP against the simulator **in its own process**
(``python -m trio_designer.simulator --port 0 --model ...``), in real time. Scenarios:

* **hidden limit 8**: Wide, 200 records, ``max_parallel_requests`` 32; the endpoint serves 8
  at once and answers 429 beyond. Target: makespan <= 1.11x the ideal (calls / 8 x latency)
  and the final limit within one of 8.
* **hidden limit 32**: Wide, 1,000 records, ``max_parallel_requests`` 64. Same targets.
* **sporadic 429s**: capacity 64, Wide, 100 records, ``max_parallel_requests`` 16; 10 % or
  30 % of requests answered 429 whatever the load, with ``Retry-After`` or without any wait
  header. Target: the median makespan over seeds <= 1.3x (10 %) / 1.6x (30 %) the same run
  without 429s.
* **a moving limit**: 32, then 8, then 32 again (``capacity_schedule``), ceiling 64: how soon
  the limit follows each move.
* **budgets**: a 600 RPM / 100k TPM account, Wide at 16 in flight for three minutes, with the
  budget in the config or learnt from the headers only. Target: no 429 after the first minute,
  >= 90 % of the binding budget used in every whole minute after it.

Real time is slow, so ``--quick`` **scales** latencies and waits: every latency and
``Retry-After`` is multiplied by ``scale`` (1 in ``full``: the issue's 200 ms and 1 s; 0.5 in
``quick``), which leaves the limiter's ratios unchanged — makespans, limits and waits scale
together — but makes the fixed cost of each request (client and simulator CPU, loopback) a
larger share: at 0.5 a static limiter that knows the hidden limit of 8 takes 1.07x the ideal.
The budget scenario's windows are real minutes (it always runs at 200 ms, and only in
``full``). The simulator's
``retry-after-ms`` carries the scaled wait (its ``Retry-After`` rounds up to whole seconds).
The limit's trajectory in each scenario is plotted to ``docs/img/endpoints_limits.png``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer.models._limiter import StaticLimiter

from . import _common as c
from .small_runs import external_simulator

PROVIDER = "external-sim"
LATENCY = 0.2  # the answers, before scaling
RETRY_AFTER = 1.0  # the Retry-After, before scaling


@attrs.frozen(kw_only=True)
class Params:
    scale: float = 0.5
    hidden8_records: int = 200
    hidden32_records: int = 1_000
    sporadic_records: int = 100
    sporadic_seeds: int = 5
    moving_records: int = 800
    # Seconds at scale 1 (they scale with the latencies).
    moving_schedule: tuple[tuple[float, int], ...] = ((0, 32), (10, 8), (20, 32))
    budget_records: int = 480  # 2,400 calls: a 600 RPM burst, then 3 minutes at the rate
    budget: bool = True
    static_baseline: bool = True


PROFILES = {
    "full": Params(scale=1.0),
    "quick": Params(hidden32_records=400, sporadic_seeds=3, moving_records=800, budget=False),
    "smoke": Params(
        scale=0.1,
        hidden8_records=8,
        hidden32_records=16,
        sporadic_records=8,
        sporadic_seeds=1,
        moving_records=40,
        budget_records=4,
        static_baseline=False,
    ),
}


# ---------------------------------------------------------------------------------------------
# The simulator in its own process
# ---------------------------------------------------------------------------------------------


def model_spec(**fields: Any) -> str:
    """The ``--model`` spec of the generator endpoint."""
    items = [f"{k}={_spec_value(v)}" for k, v in fields.items() if v is not None]
    return f"{c.GEN_MODEL}:" + ",".join(items)


def _spec_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "/".join(f"{t:g}:{n}" for t, n in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def wide_config(url: str, max_parallel: int, **model: Any) -> PipelineConfig:
    """The Wide shape against the simulator at ``url``."""
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": PROVIDER, "base_url": url}],
            "models": [
                {
                    "alias": "gen",
                    "model": c.GEN_MODEL,
                    "provider": PROVIDER,
                    "max_parallel_requests": max_parallel,
                    **model,
                }
            ],
            "run": {"seed": 0, "trace": True},
            "columns": c.shape_columns("Wide"),
        }
    )


async def simulator_stats(url: str) -> dict[str, Any]:
    """``GET /stats`` of the simulator at ``url`` (a plain HTTP/1.1 exchange)."""
    host, port = url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = f"GET /stats HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode())
        chunks = []
        while chunk := await stream.receive_some():
            chunks.append(chunk)
    body = b"".join(chunks).split(b"\r\n\r\n", 1)[1]
    stats: dict[str, Any] = json.loads(body)["models"][c.GEN_MODEL]
    return stats


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------


def run_case(
    spec: str,
    records: int,
    max_parallel: int,
    *,
    static: bool = False,
    model: Mapping[str, Any] | None = None,
    sample_every: float | None = None,
) -> dict[str, Any]:
    """One preview of Wide against a fresh simulator of ``spec``: makespan, the limit's
    changes, 429s, and (every ``sample_every`` s) the simulator's budget counters."""
    limits: list[tuple[float, int]] = []
    samples: list[dict[str, Any]] = []
    with external_simulator([spec]) as simulator:
        url = simulator.url
        config = wide_config(url, max_parallel, **(model or {}))
        origin = [0.0]

        def on_event(name: str, fields: Mapping[str, Any]) -> None:
            if name == "limit_change":
                limits.append((trio.current_time() - origin[0], int(fields["new"])))

        designer = TrioDesigner(
            on_event=on_event, limiter_factory=StaticLimiter if static else None
        )

        async def sample() -> None:
            while True:
                stats = await simulator_stats(url)
                samples.append({"t": trio.current_time() - origin[0], **stats})
                await trio.sleep(sample_every or 1.0)

        async def main() -> Any:
            origin[0] = trio.current_time()
            async with trio.open_nursery() as nursery:
                if sample_every is not None:
                    nursery.start_soon(sample)
                result = await designer.preview(config, num_records=records)
                if sample_every is not None:
                    samples.append(
                        {"t": trio.current_time() - origin[0], **await simulator_stats(url)}
                    )
                nursery.cancel_scope.cancel()
            return result

        wall = time.perf_counter()
        result = trio.run(main)
        wall = time.perf_counter() - wall
        final_stats = trio.run(simulator_stats, url)
    if result.num_records_written != records:
        raise RuntimeError(
            f"wrote {result.num_records_written} of {records}: {result.failures[:2]}"
        )
    usage = result.usage["gen"]
    calls = usage["requests_ok"]
    return {
        "records": records,
        "max_parallel_requests": max_parallel,
        "limiter": "static" if static else "adaptive",
        "makespan_s": result.elapsed,
        "wall_s": wall,
        "calls": calls,
        "rate_limited": usage["requests_rate_limited"],
        "limits": limits,
        "final_limit": _limit_at(limits, max_parallel, _last_admission(result)),
        "server": final_stats,
        "samples": samples,
    }


def _limit_at(limits: list[tuple[float, int]], ceiling: int, t: float) -> int:
    return ([ceiling] + [limit for at, limit in limits if at <= t])[-1]


def _last_admission(result: Any) -> float:
    """When the run's last request went out (the limit after that meets no demand: a probe
    passes because the server has room, not because its capacity rose)."""
    starts = [trace.started for trace in result.traces if trace.column != "topic"]
    return max(starts) - min(trace.started for trace in result.traces) if starts else 0.0


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------


def hidden(p: Params, capacity: int, records: int, max_parallel: int) -> dict[str, Any]:
    latency, wait = LATENCY * p.scale, RETRY_AFTER * p.scale
    spec = model_spec(latency=latency, capacity=capacity, retry_after=wait)
    ideal = records * 5 / capacity * latency
    print(f"hidden limit {capacity}: {records} records ...", flush=True)
    adaptive = run_case(spec, records, max_parallel)
    rows = {"capacity": capacity, "ideal_s": ideal, "adaptive": adaptive}
    if p.static_baseline:
        # The oracle: a fixed limit at the hidden one. What it loses to the ideal is the
        # request path's own cost (client, simulator, loopback), not the limiter's.
        rows["oracle"] = run_case(spec, records, capacity, static=True)
    if p.static_baseline and capacity == 8:
        rows["static"] = run_case(spec, records, max_parallel, static=True)
    return rows


def sporadic(p: Params) -> dict[str, Any]:
    latency, wait = LATENCY * p.scale, RETRY_AFTER * p.scale
    variants = [(0.1, "seconds"), (0.3, "seconds"), (0.1, "none"), (0.3, "none")]
    out: dict[str, Any] = {"variants": []}
    clean = {}
    for seed in range(p.sporadic_seeds):
        spec = model_spec(latency=latency, capacity=64, seed=seed)
        print(f"sporadic: clean run, seed {seed} ...", flush=True)
        clean[seed] = run_case(spec, p.sporadic_records, 16)
    for rate, header in variants:
        runs = []
        for seed in range(p.sporadic_seeds):
            spec = model_spec(
                latency=latency,
                capacity=64,
                seed=seed,
                rate_429=rate,
                retry_after=wait,
                retry_after_header=header,
            )
            print(f"sporadic {rate:.0%} ({header}), seed {seed} ...", flush=True)
            run = run_case(spec, p.sporadic_records, 16)
            run["ratio"] = run["makespan_s"] / clean[seed]["makespan_s"]
            runs.append(run)
        entry: dict[str, Any] = {
            "rate": rate,
            "retry_after_header": header,
            "ratios": [r["ratio"] for r in runs],
            "median_ratio": statistics.median(r["ratio"] for r in runs),
            "lowest_limit": min(
                [16]
                + [limit for r in runs for at, limit in r["limits"] if at < r["makespan_s"] - 1.0]
            ),
            "runs": runs,
        }
        if p.static_baseline and header == "seconds":
            spec = model_spec(latency=latency, capacity=64, seed=0, rate_429=rate, retry_after=wait)
            static = run_case(spec, p.sporadic_records, 16, static=True)
            entry["static_ratio"] = static["makespan_s"] / clean[0]["makespan_s"]
        out["variants"].append(entry)
    out["clean"] = list(clean.values())
    return out


def moving(p: Params) -> dict[str, Any]:
    latency, wait = LATENCY * p.scale, RETRY_AFTER * p.scale
    schedule = tuple((t * p.scale, n) for t, n in p.moving_schedule)
    spec = model_spec(latency=latency, capacity=32, retry_after=wait, capacity_schedule=schedule)
    print(f"moving limit {schedule} ...", flush=True)
    run = run_case(spec, p.moving_records, 64)
    run["schedule"] = schedule
    follow = []
    moves = schedule[1:]
    for (t, capacity), nxt in zip(moves, [*moves[1:], None], strict=True):
        end = nxt[0] if nxt is not None else run["makespan_s"]
        reached = next(
            (at - t for at, lim in run["limits"] if t <= at < end and abs(lim - capacity) <= 1),
            None,
        )
        follow.append({"at_s": t, "capacity": capacity, "within_one_after_s": reached})
    run["follow"] = follow
    return run


def budgets(p: Params) -> dict[str, Any]:
    budget = {"rpm": 600, "tpm": 100_000}
    spec = model_spec(latency=LATENCY, capacity=1_000, **budget)
    out = {}
    for label, model in (("config", budget), ("headers", {})):
        print(f"budget {budget} ({label}): {p.budget_records} records ...", flush=True)
        run = run_case(spec, p.budget_records, 16, model=model, sample_every=1.0)
        run["minutes"] = _per_minute(run["samples"], budget)
        out[label] = run
    return out


def _per_minute(samples: list[dict[str, Any]], budget: Mapping[str, int]) -> list[dict[str, Any]]:
    """Per whole minute of the run: requests and tokens charged, 429s."""
    minutes = []
    start = samples[0]
    m = 1
    while True:
        edge = [s for s in samples if s["t"] >= 60.0 * m]
        if not edge:
            break
        end = edge[0]
        minutes.append(
            {
                "minute": m - 1,
                "admitted": end["admitted"] - start["admitted"],
                "tokens": end["charged_tokens"] - start["charged_tokens"],
                "rate_limited": end["rate_limited"] - start["rate_limited"],
                "rpm_share": (end["admitted"] - start["admitted"]) / budget["rpm"],
                "tpm_share": (end["charged_tokens"] - start["charged_tokens"]) / budget["tpm"],
            }
        )
        start, m = end, m + 1
    last = samples[-1]
    minutes.append(
        {
            "minute": m - 1,
            "partial_s": last["t"] - 60.0 * (m - 1),
            "admitted": last["admitted"] - start["admitted"],
            "tokens": last["charged_tokens"] - start["charged_tokens"],
            "rate_limited": last["rate_limited"] - start["rate_limited"],
        }
    )
    return minutes


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    data: dict[str, Any] = {"profile": profile, "params": attrs.asdict(p)}
    data["hidden8"] = hidden(p, 8, p.hidden8_records, 32)
    data["hidden32"] = hidden(p, 32, p.hidden32_records, 64)
    data["sporadic"] = sporadic(p)
    data["moving"] = moving(p)
    if p.budget:
        data["budgets"] = budgets(p)
    report(p, data)
    plot(p, data, img_dir)
    data["machine"] = c.machine()
    c.write_result("endpoints", data, results_dir)
    return data


def report(p: Params, data: dict[str, Any]) -> None:
    print(f"\nReal endpoints (simulator in its own process; latency and waits x{p.scale:g})")
    rows = []
    for key in ("hidden8", "hidden32"):
        h = data[key]
        for kind in ("adaptive", "oracle", "static"):
            if kind not in h:
                continue
            r = h[kind]
            label = f"static {h['capacity']}, oracle" if kind == "oracle" else kind
            rows.append(
                [
                    f"hidden limit {h['capacity']} ({label})",
                    r["calls"],
                    r["makespan_s"],
                    round(r["makespan_s"] / h["ideal_s"], 3),
                    r["final_limit"],
                    r["rate_limited"],
                ]
            )
    print(c.table(["scenario", "calls", "makespan s", "x ideal", "final limit", "429s"], rows))
    print()
    rows = []
    for v in data["sporadic"]["variants"]:
        rows.append(
            [
                f"{v['rate']:.0%} sporadic, Retry-After {v['retry_after_header']}",
                round(v["median_ratio"], 3),
                " / ".join(f"{x:.2f}" for x in v["ratios"]),
                v["lowest_limit"],
                round(v["static_ratio"], 2) if "static_ratio" in v else "",
            ]
        )
    print(
        c.table(
            ["sporadic 429s", "median x 429-free", "per seed", "lowest limit", "static x"], rows
        )
    )
    print()
    mv = data["moving"]
    print(
        c.table(
            ["moving limit: capacity", "from s", "limit within one after s"],
            [[f["capacity"], f["at_s"], f["within_one_after_s"]] for f in mv["follow"]],
        )
    )
    if "budgets" in data:
        print()
        rows = []
        for label, r in data["budgets"].items():
            for minute in r["minutes"]:
                rows.append(
                    [
                        label,
                        minute["minute"],
                        minute["admitted"],
                        minute["tokens"],
                        f"{minute['rpm_share']:.0%}" if "rpm_share" in minute else "partial",
                        minute["rate_limited"],
                    ]
                )
        print(
            c.table(["600 RPM / 100k TPM", "minute", "requests", "tokens", "of RPM", "429s"], rows)
        )


def plot(p: Params, data: dict[str, Any], img_dir: Path | None) -> None:
    plt = c.pyplot(img_dir)
    if plt is None or img_dir is None:
        return
    panels = [
        ("hidden limit 8", data["hidden8"]["adaptive"], 32, lambda t: 8),
        ("hidden limit 32", data["hidden32"]["adaptive"], 64, lambda t: 32),
        (
            "30 % sporadic 429s (seed 0)",
            data["sporadic"]["variants"][1]["runs"][0],
            16,
            lambda t: None,
        ),
        ("moving limit", data["moving"], 64, _schedule(data["moving"]["schedule"])),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.3 * len(panels)))
    for ax, (title, r, ceiling, capacity) in zip(axes, panels, strict=True):
        times = [0.0] + [t for t, _ in r["limits"]] + [r["makespan_s"]]
        values = [ceiling] + [v for _, v in r["limits"]]
        values.append(values[-1])
        ax.step(times, values, where="post", label="limit")
        grid = [r["makespan_s"] * i / 400 for i in range(401)]
        caps = [capacity(t) for t in grid]
        if any(v is not None for v in caps):
            ax.plot(grid, caps, "--", color="grey", label="hidden capacity")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, ceiling + 4)
        ax.set_ylabel("requests")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel(f"seconds (latency {LATENCY * p.scale * 1000:g} ms)")
    fig.tight_layout()
    path = img_dir / "endpoints_limits.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


def _schedule(schedule: tuple[tuple[float, int], ...]) -> Any:
    def capacity(t: float) -> int:
        return [n for at, n in schedule if at <= t][-1]

    return capacity
