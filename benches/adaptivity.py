"""Bench 4: the per-model limiter against endpoints whose capacity the client does not know.

One LLM column off a sampler, many records, virtual time, latency lognormal (median 1 s, σ 0.3).

* **Hosted API** (``mode="hosted"``): 24 concurrent requests, 429 above that (``Retry-After:
  1``); the client says ``max_parallel_requests=64``. Reported: time until the adaptive limit
  first comes down to the true capacity, the limit's band afterwards, the 429s, and the
  steady-state throughput ÷ the true capacity's throughput (``24 / mean service time``),
  measured between the convergence and the moment 90 % of the requests were done. Baselines: a
  static limit of 64 (no adaptation: the excess requests of each burst get 429s, are deferred,
  and the limiter pauses for ``Retry-After``) and a static limit of 24 (an oracle that knows
  the capacity).
* **Self-hosted GPU** (``mode="gpu"``): 32 service slots, a FIFO queue, never a 429. Reported:
  throughput ÷ capacity throughput and the mean latency the client sees (limiter admission to
  answer, which includes the server's queue) for the adaptive limit (ceiling 256) and static
  limits of 16 and 256.

The limiter is chosen with ``limiter_factory``; the bench uses
:class:`benches._common.BenchDesigner` to also read the embedded simulator's request log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_designer import PipelineConfig
from trio_designer.models._limiter import (
    AdaptiveLimiter,
    LimiterStatistics,
    ModelLimiter,
    Permit,
    StaticLimiter,
)
from trio_designer.models._registry import ModelRegistry
from trio_designer.simulator import Latency, SimulatedModel

from . import _common as c


@attrs.frozen(kw_only=True)
class Params:
    records: int = 3_000
    hosted_capacity: int = 24
    hosted_client_limit: int = 64
    gpu_capacity: int = 32
    gpu_ceiling: int = 256
    median: float = 1.0
    sigma: float = 0.3
    sample_every: float = 0.5
    seed: int = 5


PROFILES = {
    "full": Params(),
    "quick": Params(records=1_000),
    "smoke": Params(records=30),
}


class TimedLimiter:
    """Wraps a limiter; records each request's latency as the client sees it (from admission
    to the end of the request, which includes any wait for a pooled connection)."""

    def __init__(self, inner: ModelLimiter) -> None:
        self.inner = inner
        self.latencies: list[float] = []

    def slot(self, tokens: int = 0) -> AbstractAsyncContextManager[Permit]:
        return self._slot(tokens)

    @asynccontextmanager
    async def _slot(self, tokens: int) -> AsyncIterator[Permit]:
        async with self.inner.slot(tokens) as permit:
            admitted = trio.current_time()
            ok = False
            try:
                yield permit
                ok = True
            finally:
                if ok:
                    self.latencies.append(trio.current_time() - admitted)

    def statistics(self) -> LimiterStatistics:
        return self.inner.statistics()


def _config(limit: int, seed: int) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "models": [{"alias": "gen", "model": c.GEN_MODEL, "max_parallel_requests": limit}],
            "run": {"seed": seed, "row_group_size": 500},
            "columns": [
                {
                    "name": "topic",
                    "kind": "sampler",
                    "sampler": "category",
                    "values": list(c.TOPICS),
                },
                {"name": "answer", "kind": "llm_text", "model": "gen", "prompt": "On {{ topic }}"},
            ],
        }
    )


def _run(
    model: SimulatedModel,
    limit: int,
    make: Callable[[str, int], ModelLimiter],
    p: Params,
) -> dict[str, Any]:
    """One run; samples the limiter every ``sample_every`` virtual seconds."""
    timed: list[TimedLimiter] = []
    samples: list[dict[str, Any]] = []
    holder: dict[str, ModelRegistry] = {}

    def factory(name: str, ceiling: int) -> ModelLimiter:
        timed.append(TimedLimiter(make(name, ceiling)))
        return timed[-1]

    async def sample() -> None:
        while True:
            registry = holder.get("r")
            if registry is not None:
                (stats,) = [lim.statistics() for lim in registry.limiters().values()]
                samples.append(
                    {
                        "t": trio.current_time(),
                        "limit": stats.limit,
                        "in_flight": stats.in_flight,
                        "probing": stats.probing,
                    }
                )
            await trio.sleep(p.sample_every)

    async def one() -> c.Outcome:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            outcome = await c.run_once(
                _config(limit, p.seed),
                engine="async",
                models=[model],
                num_records=p.records,
                limiter=factory,
                on_registry=lambda r: holder.__setitem__("r", r),
                require_complete=False,
            )
            nursery.cancel_scope.cancel()
        return outcome

    outcome: c.Outcome = c.run_virtual(one)
    ok = sorted((r for r in outcome.log if r.status == 200), key=lambda r: r.end)
    mean_service = (
        sum(r.end - r.start - r.queued_for for r in ok) / len(ok) if ok else model.latency.median
    )
    capacity_rate = model.capacity / mean_service
    for s in samples:
        s["t"] -= outcome.origin
    return {
        "status": outcome.result.status,
        "written": outcome.result.num_records_written,
        "dropped": outcome.result.num_rows_dropped,
        "makespan": outcome.makespan,
        "requests": len(outcome.log),
        "ok": len(ok),
        "rate_limited": sum(1 for r in outcome.log if r.status == 429),
        "mean_service_s": mean_service,
        "capacity_rate": capacity_rate,
        "throughput_ratio": len(ok) / outcome.makespan / capacity_rate,
        "client_latency_s": sum(timed[0].latencies) / max(1, len(timed[0].latencies)),
        "server_latency_s": sum(r.end - r.start for r in ok) / max(1, len(ok)),
        "ends": [r.end - outcome.origin for r in ok],
        "samples": samples,
        "wall_s": outcome.wall,
        "origin": outcome.origin,
    }


def hosted(p: Params) -> dict[str, Any]:
    model = SimulatedModel(
        name=c.GEN_MODEL,
        mode="hosted",
        capacity=p.hosted_capacity,
        latency=Latency(median=p.median, sigma=p.sigma),
        seed=p.seed,
    )
    changes: list[dict[str, Any]] = []

    def adaptive(name: str, ceiling: int) -> ModelLimiter:
        return AdaptiveLimiter(
            name,
            ceiling,
            on_change=lambda ch: changes.append(
                {"at": ch.at, "old": ch.old, "new": ch.new, "reason": ch.reason}
            ),
        )

    results = {}
    for label, limit, make in (
        ("adaptive (ceiling 64)", p.hosted_client_limit, adaptive),
        ("static 64", p.hosted_client_limit, StaticLimiter),
        ("static 24 (oracle)", p.hosted_capacity, StaticLimiter),
    ):
        changes.clear()
        r = _run(model, limit, make, p)
        r["limit_changes"] = [dict(ch, at=ch["at"] - r["origin"]) for ch in changes]
        r.update(_convergence(r, p.hosted_capacity, label))
        results[label] = r
    return results


def _convergence(r: dict[str, Any], capacity: int, label: str) -> dict[str, Any]:
    """Convergence time (the first limit change to at most ``capacity``; 0 for static limits),
    the limit's band afterwards, and the steady-state throughput ÷ capacity throughput (between
    convergence and the moment 90 % of the requests were answered). Times from the run's start.
    """
    converged = 0.0
    if label.startswith("adaptive"):
        under = [ch["at"] for ch in r["limit_changes"] if ch["new"] <= capacity]
        converged = under[0] if under else r["makespan"]
    ends = r["ends"]
    if not ends:
        return {"converged_s": converged, "limit_band": None, "steady_ratio": 0.0}
    t90 = ends[int(0.9 * (len(ends) - 1))]
    lo = min(converged, t90)
    window = [t for t in ends if lo < t <= t90]
    steady = len(window) / (t90 - lo) if t90 > lo else 0.0
    after = [s["limit"] for s in r["samples"] if s["t"] >= lo]
    return {
        "converged_s": converged,
        "limit_band": [min(after), max(after)] if after else None,
        "steady_ratio": steady / r["capacity_rate"],
    }


def gpu(p: Params) -> dict[str, Any]:
    model = SimulatedModel(
        name=c.GEN_MODEL,
        mode="gpu",
        capacity=p.gpu_capacity,
        latency=Latency(median=p.median, sigma=p.sigma),
        seed=p.seed,
    )
    results = {}
    for label, limit, make in (
        (f"adaptive (ceiling {p.gpu_ceiling})", p.gpu_ceiling, AdaptiveLimiter),
        ("static 16", 16, StaticLimiter),
        (f"static {p.gpu_ceiling}", p.gpu_ceiling, StaticLimiter),
    ):
        results[label] = _run(model, limit, make, p)
    return results


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    host = hosted(p)
    print(
        f"\nAdaptivity — hosted endpoint, true capacity {p.hosted_capacity} (429 above), client "
        f"limit {p.hosted_client_limit}, {p.records:,} requests (virtual time)"
    )
    print(
        c.table(
            [
                "limiter",
                "status",
                "rows written",
                "makespan s",
                "429s",
                "converged at s",
                "limit band after",
                "throughput ÷ capacity",
                "steady ÷ capacity",
            ],
            [
                [
                    label,
                    r["status"],
                    r["written"],
                    r["makespan"],
                    r["rate_limited"],
                    r["converged_s"] if label.startswith("adaptive") else "-",
                    "{}–{}".format(*r["limit_band"]) if r["limit_band"] else "-",
                    f"{r['throughput_ratio']:.2f}",
                    f"{r['steady_ratio']:.2f}",
                ]
                for label, r in host.items()
            ],
        )
    )
    g = gpu(p)
    print(
        f"\nAdaptivity — GPU endpoint, {p.gpu_capacity} slots, queues (never 429), "
        f"{p.records:,} requests (virtual time)"
    )
    print(
        c.table(
            [
                "limiter",
                "makespan s",
                "throughput ÷ capacity",
                "client latency s",
                "server latency s",
                "service s",
                "final limit",
            ],
            [
                [
                    label,
                    r["makespan"],
                    f"{r['throughput_ratio']:.2f}",
                    r["client_latency_s"],
                    r["server_latency_s"],
                    r["mean_service_s"],
                    r["samples"][-1]["limit"] if r["samples"] else "-",
                ]
                for label, r in g.items()
            ],
        )
    )
    payload = {"profile": profile, "params": attrs.asdict(p), "hosted": host, "gpu": g}
    path = c.write_result("adaptivity", _slim(payload), results_dir)
    print(f"wrote {path}")
    _plot(host, g, p, img_dir)
    return payload


def _slim(payload: dict[str, Any]) -> dict[str, Any]:
    """The JSON without per-request end times (kept as a throughput series instead)."""
    out = dict(payload)
    for key in ("hosted", "gpu"):
        out[key] = {
            label: {k: v for k, v in r.items() if k != "ends"} | {"per_second": _rate(r["ends"])}
            for label, r in payload[key].items()
        }
    return out


def _rate(ends: list[float]) -> list[int]:
    """Completions per virtual second."""
    if not ends:
        return []
    counts = [0] * (int(max(ends)) + 1)
    for t in ends:
        counts[int(t)] += 1
    return counts


def _plot(host: dict[str, Any], g: dict[str, Any], p: Params, img_dir: Path | None) -> None:
    plt = c.pyplot(img_dir)
    if plt is None or img_dir is None:
        return
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=False)
    for label, r in host.items():
        if r["samples"]:
            ax1.step(
                [s["t"] for s in r["samples"]],
                [s["in_flight"] for s in r["samples"]],
                where="post",
                label=f"{label}: in flight",
                linewidth=0.9,
            )
    adaptive = next(r for label, r in host.items() if label.startswith("adaptive"))
    ax1.step(
        [s["t"] for s in adaptive["samples"]],
        [s["limit"] for s in adaptive["samples"]],
        where="post",
        label="adaptive: limit",
        color="black",
        linewidth=1.2,
    )
    ax1.axhline(p.hosted_capacity, color="red", linestyle="--", label="true capacity")
    ax1.set_ylabel("requests")
    ax1.set_title(f"Hosted endpoint, capacity {p.hosted_capacity}, client limit 64", fontsize=10)
    ax1.legend(fontsize=7, loc="upper right")
    for label, r in g.items():
        rate = _rate(r["ends"])
        ax2.plot(range(len(rate)), rate, label=label, linewidth=0.9)
    capacity_rate = next(iter(g.values()))["capacity_rate"]
    ax2.axhline(capacity_rate, color="red", linestyle="--", label="capacity throughput")
    ax2.set_ylabel("completions / s")
    ax2.set_xlabel("virtual seconds")
    ax2.set_title(f"GPU endpoint, {p.gpu_capacity} slots (queues, never 429)", fontsize=10)
    ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(img_dir / "adaptivity.png", dpi=110)
    plt.close(fig)
