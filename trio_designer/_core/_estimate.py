"""Extrapolating a preview to a full run: requests, tokens, cost and time per model. Pure.

``trio-designer estimate`` runs a few rows and hands their numbers here. Every figure scales
linearly with the rows (per-row requests and tokens as in the preview: skips, retries, parse
re-asks, dropped rows included). Time, per model, is the largest of:

* its requests at ``max_parallel_requests`` in flight, each taking the preview's mean latency;
* its requests at ``rpm`` requests per minute, when set;
* its tokens at ``tpm`` tokens per minute, when set;

and the run takes as long as its slowest model (models work concurrently, cell by cell). The
engine's own overhead and the endpoints' real capacity are not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

__all__ = ["ModelEstimate", "ModelPreview", "extrapolate", "run_time", "totals"]


@attrs.frozen(kw_only=True)
class ModelPreview:
    """What one model alias did in the preview, and its limits."""

    alias: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost: float | None
    latency_total: float  # seconds spent in its requests, summed
    max_parallel_requests: int
    rpm: int | None = None
    tpm: int | None = None


@attrs.frozen(kw_only=True)
class ModelEstimate:
    """The extrapolated figures of one model alias for the full run."""

    alias: str
    requests: float
    input_tokens: float
    output_tokens: float
    cost: float | None
    seconds: float
    bound: str  # what limits its time: "concurrency", "rpm", "tpm" or "none"

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


def extrapolate(
    previews: Sequence[ModelPreview], *, preview_rows: int, num_records: int
) -> list[ModelEstimate]:
    """Scale each model's preview to ``num_records`` rows (see the module docstring).

    >>> p = ModelPreview(alias="gen", requests=10, input_tokens=100, output_tokens=400,
    ...                  cost=0.01, latency_total=5.0, max_parallel_requests=4, rpm=60)
    >>> e, = extrapolate([p], preview_rows=10, num_records=1000)
    >>> (e.requests, e.output_tokens, round(e.cost, 6), round(e.seconds), e.bound)
    (1000.0, 40000.0, 1.0, 1000, 'rpm')
    """
    factor = num_records / preview_rows if preview_rows else 0.0
    result = []
    for p in previews:
        requests = p.requests * factor
        tokens = (p.input_tokens + p.output_tokens) * factor
        latency = p.latency_total / p.requests if p.requests else 0.0
        bounds = {"concurrency": requests * latency / max(p.max_parallel_requests, 1)}
        if p.rpm:
            bounds["rpm"] = requests / p.rpm * 60
        if p.tpm:
            bounds["tpm"] = tokens / p.tpm * 60
        bound, seconds = max(bounds.items(), key=lambda item: item[1])
        result.append(
            ModelEstimate(
                alias=p.alias,
                requests=requests,
                input_tokens=p.input_tokens * factor,
                output_tokens=p.output_tokens * factor,
                cost=None if p.cost is None else p.cost * factor,
                seconds=seconds,
                bound=bound if seconds > 0 else "none",
            )
        )
    return result


def run_time(estimates: Sequence[ModelEstimate]) -> float:
    """The run's time: its slowest model's."""
    return max((e.seconds for e in estimates), default=0.0)


def totals(estimates: Sequence[ModelEstimate]) -> Mapping[str, float | None]:
    """Requests, tokens and cost over every model (cost ``None`` if any model has no price)."""
    costs = [e.cost for e in estimates]
    return {
        "requests": sum(e.requests for e in estimates),
        "input_tokens": sum(e.input_tokens for e in estimates),
        "output_tokens": sum(e.output_tokens for e in estimates),
        "cost": None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
    }
