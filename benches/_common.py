"""What every bench shares: the seed's four shapes, a run helper, lower bounds, machine facts,
tables and JSON results.

Runs go through the public engine (``TrioDesigner``) against the real simulated endpoint over
loopback HTTP. Two ways to run:

* **virtual time** (:func:`run_virtual`): ``trio.run`` with ``MockClock(autojump_threshold=0)``;
  the simulator lives in the same run, so every simulated latency is virtual. Makespans are
  exact and do not depend on the machine's speed or load: this measures the *scheduler*;
* **real time** (:func:`run_real`): the ordinary clock, real sleeps, real wall time: this shows
  the result holds in practice (with the httpx ceiling of a few hundred requests/s per process,
  keep those runs small).

:class:`BenchDesigner` is ``TrioDesigner`` plus what the public API does not expose: the
simulator's statistics and request log, captured just before the embedded simulator stops (it
overrides the private ``_open_models`` for that, and passes its ``limiter_factory`` along).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import attrs
import trio
import trio.testing

from trio_designer import PipelineConfig, RunResult, TrioDesigner
from trio_designer.models._limiter import AdaptiveLimiter, ModelLimiter, StaticLimiter
from trio_designer.models._registry import ModelRegistry, open_model_registry
from trio_designer.simulator import Latency, RequestRecord, SimulatedModel, SimulatorStats

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benches" / "results"
IMG_DIR = ROOT / "docs" / "img"

#: A virtual-time run that takes longer than this many virtual seconds is stuck.
VIRTUAL_DEADLINE = 10_000_000.0

ShapeName = Literal["Narrow", "Deep", "Wide", "Dual-model"]
SHAPES: tuple[ShapeName, ...] = ("Narrow", "Deep", "Wide", "Dual-model")

#: The seed's published table (10 records, max_parallel_requests=16): sync s, async s, speedup.
SEED_TABLE: Mapping[str, tuple[float, float, float]] = {
    "Narrow": (5.2, 4.6, 1.1),
    "Deep": (8.5, 6.6, 1.3),
    "Wide": (6.7, 4.5, 1.5),
    "Dual-model": (10.0, 6.1, 1.6),
}

GEN_MODEL = "sim-gen"
JUDGE_MODEL = "sim-judge"
TOPICS = ("astronomy", "cooking", "jazz", "chess", "volcanoes", "typography")

LimiterKind = Literal["adaptive", "static"]
LimiterFactory = Callable[[str, int], ModelLimiter]


# ---------------------------------------------------------------------------------------------
# The four shapes
# ---------------------------------------------------------------------------------------------


def _text(name: str, model: str, prompt: str) -> dict[str, Any]:
    return {"name": name, "kind": "llm_text", "model": model, "prompt": prompt}


def shape_columns(shape: ShapeName) -> list[dict[str, Any]]:
    """The columns of one of the seed's shapes (``topic`` is a category sampler)."""
    topic = {"name": "topic", "kind": "sampler", "sampler": "category", "values": list(TOPICS)}
    narrow = [
        _text("summary", "gen", "Summarize {{ topic }} in two sentences."),
        _text("analysis", "gen", "Analyse this summary: {{ summary }}"),
        _text("conclusion", "gen", "Conclude from this analysis: {{ analysis }}"),
    ]
    if shape == "Narrow":
        return [topic, *narrow]
    if shape == "Deep":
        return [topic, *narrow, _text("trivia", "gen", "One trivia fact about {{ topic }}.")]
    if shape == "Wide":
        angles = ("history", "science", "people", "future", "myths")
        return [
            topic,
            *(_text(a, "gen", f"Write about the {a} of {{{{ topic }}}}.") for a in angles),
        ]
    columns: list[dict[str, Any]] = [topic]
    for i in range(3):
        columns.append(_text(f"answer_{i}", "gen", f"Question {i} about {{{{ topic }}}}."))
        columns.append(
            {
                "name": f"judge_{i}",
                "kind": "llm_judge",
                "model": "judge",
                "prompt": f"Judge this answer: {{{{ answer_{i} }}}}",
                "rubrics": [
                    {
                        "name": "quality",
                        "description": "How accurate and clear the answer is.",
                        "scores": {"1": "poor", "2": "fair", "3": "good"},
                    }
                ],
            }
        )
    return columns


def shape_config(
    shape: ShapeName,
    *,
    max_parallel: int | tuple[int, int] = 16,
    seed: int = 0,
    trace: bool = True,
    **run: Any,
) -> PipelineConfig:
    """A pipeline of ``shape``; ``max_parallel`` is per model (gen, judge)."""
    gen_par, judge_par = (
        max_parallel if isinstance(max_parallel, tuple) else (max_parallel, max_parallel)
    )
    models = [{"alias": "gen", "model": GEN_MODEL, "max_parallel_requests": gen_par}]
    if shape == "Dual-model":
        models.append({"alias": "judge", "model": JUDGE_MODEL, "max_parallel_requests": judge_par})
    return PipelineConfig.from_dict(
        {
            "models": models,
            "run": {"seed": seed, "trace": trace, **run},
            "columns": shape_columns(shape),
        }
    )


def simulated(
    latency: Latency,
    *,
    seed: int,
    mode: Literal["hosted", "gpu"] = "hosted",
    capacity: tuple[int, int] = (1000, 1000),
    judge_latency: Latency | None = None,
) -> list[SimulatedModel]:
    """The generator and judge endpoints, seeded (the judge with ``seed + 1000``)."""
    return [
        SimulatedModel(name=GEN_MODEL, latency=latency, mode=mode, capacity=capacity[0], seed=seed),
        SimulatedModel(
            name=JUDGE_MODEL,
            latency=judge_latency or latency,
            mode=mode,
            capacity=capacity[1],
            seed=seed + 1000,
        ),
    ]


def limiter_factory(kind: LimiterKind) -> LimiterFactory:
    """The default adaptive limiter, or a static one at ``max_parallel_requests``."""
    return AdaptiveLimiter if kind == "adaptive" else StaticLimiter


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


class BenchDesigner(TrioDesigner):
    """``TrioDesigner`` with a limiter factory and the simulator's observations captured.

    After a run, ``stats`` and ``log`` hold the embedded simulator's statistics and request log
    (taken just before it stops), ``origin`` the ``trio.current_time()`` at which the engine
    started (its first scheduler event), and ``registry`` the model registry (live only during
    the run).
    """

    def __init__(
        self,
        *,
        limiter: LimiterFactory | None = None,
        on_registry: Callable[[ModelRegistry], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(on_event=self._on_event, **kwargs)
        self._limiter = limiter
        self._on_registry = on_registry
        self.stats: SimulatorStats | None = None
        self.log: tuple[RequestRecord, ...] = ()
        self.origin: float | None = None
        self.registry: ModelRegistry | None = None

    def _on_event(self, name: str, fields: Mapping[str, Any]) -> None:
        if self.origin is None:
            self.origin = trio.current_time()

    def _open_models(
        self, config: Any, changes: Any, cache: Any = None
    ) -> AbstractAsyncContextManager[Any]:
        if not config.models:
            return nullcontext(None)
        return self._open(config, changes, cache)

    @asynccontextmanager
    async def _open(self, config: Any, changes: Any, cache: Any) -> AsyncIterator[ModelRegistry]:
        extra: dict[str, Any] = (
            {"on_limit_change": changes}
            if self._limiter is None
            else {"limiter_factory": self._limiter}  # a fixed limit never changes
        )
        async with open_model_registry(
            config, simulator_models=self.simulator_models, cache=cache, **extra
        ) as registry:
            self.registry = registry
            if self._on_registry is not None:
                self._on_registry(registry)
            try:
                yield registry
            finally:
                if registry.simulator is not None:
                    self.stats = registry.simulator.stats()
                    self.log = tuple(registry.simulator.request_log())


@attrs.frozen(kw_only=True)
class Outcome:
    """One run: the engine's result plus what the simulator saw."""

    engine: str
    makespan: float
    wall: float
    result: RunResult
    stats: SimulatorStats | None
    log: tuple[RequestRecord, ...]
    origin: float


async def run_once(
    config: PipelineConfig,
    *,
    engine: str,
    models: Sequence[SimulatedModel],
    num_records: int,
    limiter: LimiterFactory | None = None,
    output_dir: Path | None = None,
    on_registry: Callable[[ModelRegistry], None] | None = None,
    require_complete: bool = True,
) -> Outcome:
    """Run ``config`` once (preview, or ``create`` into ``output_dir``) inside the current run.

    Raises:
      RuntimeError: ``require_complete`` and some row was not written.
    """
    designer = BenchDesigner(
        engine=engine,
        simulator_models=models,
        limiter=limiter,
        on_registry=on_registry,
    )
    wall = time.perf_counter()
    if output_dir is None:
        result = await designer.preview(config, num_records=num_records)
    else:
        result = await designer.create(config, num_records=num_records, output_dir=output_dir)
    wall = time.perf_counter() - wall
    if require_complete and result.num_records_written != num_records:
        raise RuntimeError(
            f"bench run wrote {result.num_records_written} of {num_records} rows "
            f"({result.num_rows_dropped} dropped): {result.failures[:3]}"
        )
    return Outcome(
        engine=engine,
        makespan=result.elapsed,
        wall=wall,
        result=result,
        stats=designer.stats,
        log=designer.log,
        origin=designer.origin if designer.origin is not None else 0.0,
    )


def run_virtual(fn: Callable[[], Awaitable[Any]]) -> Any:
    """``trio.run(fn)`` in virtual time (autojump clock), guarded against a deadlock."""

    async def guarded() -> Any:
        with trio.fail_after(VIRTUAL_DEADLINE):
            return await fn()

    return trio.run(guarded, clock=trio.testing.MockClock(autojump_threshold=0))


def run_real(fn: Callable[[], Awaitable[Any]]) -> Any:
    """``trio.run(fn)`` on the real clock."""
    return trio.run(fn)


# ---------------------------------------------------------------------------------------------
# Lower bounds
# ---------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Bound:
    """The DAG lower bound of one run, and its parts (seconds).

    Attributes:
      critical_path: the longest per-row chain of service times.
      work: per model, its requests' service times summed ÷ its concurrency (``ceil(n/c)·L``
        when every service time is the same ``L``: no schedule can beat whole waves).
      simple: ``max(critical_path, max(work))`` — the issue's bound.
      refined: also counts, per model, the shortest chain before its first possible request
        (head) and after its last (tail): ``max(critical_path, max(head + work + tail))``.
      binding: which term sets ``refined``: ``"path"`` or a model name.
    """

    critical_path: float
    work: Mapping[str, float]
    simple: float
    refined: float
    binding: str


def cell_service_times(outcome: Outcome, column_models: Mapping[str, str]) -> dict[Any, float]:
    """Service time (seconds in service, queueing excluded) of every LLM cell of a run.

    Matches each cell's trace to the request the simulator answered when the cell finished: in
    virtual time the response and the cell's end carry the same ``trio.current_time()``.
    Cells are keyed ``(column, row)``.
    """
    pool: dict[tuple[str, float], list[RequestRecord]] = {}
    for record in outcome.log:
        if record.status == 200:
            pool.setdefault((record.model, round(record.end, 9)), []).append(record)
    times: dict[Any, float] = {}
    for trace in outcome.result.traces:
        model = column_models.get(trace.column)
        if model is None or trace.status != "ok" or trace.row is None:
            continue
        candidates = pool.get((model, round(trace.finished + outcome.origin, 9)))
        if not candidates:
            raise RuntimeError(f"no request matches cell {trace.column}[{trace.row}]")
        record = candidates.pop()
        times[(trace.column, trace.row)] = record.end - record.start - record.queued_for
    return times


def lower_bound(
    outcome: Outcome,
    graph: Any,
    column_models: Mapping[str, str],
    concurrency: Mapping[str, int],
) -> Bound:
    """The lower bound of ``outcome`` (see :class:`Bound`) from its traces and request log.

    Args:
      outcome: a virtual-time run with ``trace=True``.
      graph: its ``ExecutionGraph``.
      column_models: LLM column -> simulator model id.
      concurrency: model id -> most requests in service at once (client limit or capacity).
    """
    service = cell_service_times(outcome, column_models)
    rows = sorted({row for _, row in service})
    order = list(graph.order)
    heads: dict[str, float] = {}
    tails: dict[str, float] = {}
    path = 0.0
    for row in rows:
        own = {c: service.get((c, row), 0.0) for c in order}
        before = _longest(order, graph.upstream, own)
        after = _longest(list(reversed(order)), graph.downstream, own)
        path = max(path, max((before[c] + after[c] - own[c] for c in order), default=0.0))
        for column, model in column_models.items():
            if (column, row) in service:
                heads[model] = min(heads.get(model, math.inf), before[column] - own[column])
                tails[model] = min(tails.get(model, math.inf), after[column] - own[column])
    work: dict[str, float] = {}
    for model, capacity in concurrency.items():
        times = [t for (c, _), t in service.items() if column_models.get(c) == model]
        if not times:
            continue
        if max(times) - min(times) < 1e-9:  # fixed latency: whole waves
            work[model] = math.ceil(len(times) / capacity) * times[0]
        else:
            work[model] = sum(times) / capacity
    simple = max([path, *work.values()])
    refined, binding = path, "path"
    for model, w in work.items():
        total = heads.get(model, 0.0) + w + tails.get(model, 0.0)
        if total > refined + 1e-12:
            refined, binding = total, model
    return Bound(critical_path=path, work=work, simple=simple, refined=refined, binding=binding)


def _longest(
    order: Sequence[str], edges: Mapping[str, Any], own: Mapping[str, float]
) -> dict[str, float]:
    """Longest chain ending at each column (inclusive), walking ``order`` along ``edges``."""
    best: dict[str, float] = {}
    for column in order:
        best[column] = own[column] + max((best[e] for e in edges[column]), default=0.0)
    return best


def column_models(config: PipelineConfig) -> dict[str, str]:
    """LLM column -> the simulator model id it calls."""
    ids = {m.alias: m.model for m in config.models}
    return {
        c.name: ids[c.model]  # type: ignore[union-attr]
        for c in config.columns
        if getattr(c, "model", None) in ids
    }


# ---------------------------------------------------------------------------------------------
# Utilisation
# ---------------------------------------------------------------------------------------------


def busy_timeline(
    log: Sequence[RequestRecord],
    model: str,
    capacity: int,
    *,
    start: float,
    end: float,
    bins: int = 100,
) -> list[float]:
    """Busy fraction of ``model`` (requests in service ÷ ``capacity``) in ``bins`` equal bins."""
    width = (end - start) / bins if end > start else 1.0
    busy = [0.0] * bins
    for record in log:
        if record.model != model or record.status != 200:
            continue
        lo, hi = record.start + record.queued_for - start, record.end - start
        first, last = max(0, int(lo // width)), min(bins - 1, int(hi // width))
        for b in range(first, last + 1):
            overlap = min(hi, (b + 1) * width) - max(lo, b * width)
            if overlap > 0:
                busy[b] += overlap
    return [round(b / (width * capacity), 4) for b in busy]


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    from importlib.metadata import PackageNotFoundError, version

    from trio_designer import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **{name: installed(name) for name in ("trio", "httpx", "hypercorn", "pyarrow", "jinja2")},
        "matplotlib": installed("matplotlib"),
        "trio_designer": __version__,
        "revision": _revision(),
    }


def _revision() -> str:
    """The git commit the numbers were measured at (``+dirty`` with local changes), or the
    ``TD_BENCH_REVISION`` environment variable when set (runs from a copy of the tree)."""
    import subprocess

    if os.environ.get("TD_BENCH_REVISION"):
        return os.environ["TD_BENCH_REVISION"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}+dirty" if head and dirty else head or "unknown"


def write_result(name: str, payload: Mapping[str, Any], results_dir: Path) -> Path:
    """Write ``<results_dir>/<name>.json`` with the machine description; return the path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    body = {
        "bench": name,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        **payload,
    }
    path.write_text(json.dumps(body, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if attrs.has(type(value)):
        return attrs.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable on a terminal)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 100_000:
            return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def pyplot(img_dir: Path | None) -> Any:
    """matplotlib's pyplot (Agg), or ``None`` when plots are off or matplotlib is missing."""
    if img_dir is None:
        return None
    os.environ.setdefault("MPLCONFIGDIR", str(Path.home() / ".cache" / "matplotlib"))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plots; pip install matplotlib)")
        return None
    img_dir.mkdir(parents=True, exist_ok=True)
    return plt
