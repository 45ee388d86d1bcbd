"""Traces you can look at: Chrome trace-event JSON for Perfetto, and the timeline picture.

The traces come from real runs: a small pipeline (samplers, an expression with a skip condition,
an async custom column that sleeps, flakes once and fails once) through
``TrioDesigner().create(...)`` with ``trace=True``, under both engines, on a ``MockClock`` running
1000x real time (the parquet writes run in threads). The exported JSON is checked against the
trace-event format's rules (required keys per phase, numeric non-negative times, integer
pid/tid, string names), plus the one rule Perfetto enforces that matters most to us: slices of
one thread never partly overlap.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from hypothesis import given

from trio_designer import (
    CategorySampler,
    CustomColumn,
    ExpressionColumn,
    NonRetryableGenerationError,
    PipelineConfig,
    RetryableGenerationError,
    RunConfig,
    TrioDesigner,
)
from trio_designer._core._limits import LimitChange, LimiterPolicy
from trio_designer._exceptions import TraceExportError, TrioDesignerError
from trio_designer._observe import export_chrome_trace, limit_change_fields, load_run_trace
from trio_designer._observe._perfetto import assign_lanes
from trio_designer._observe._plot import PLOT_INSTALL_HINT, active_intervals, plot_timeline
from trio_designer._sink import CHROME_TRACE_FILE
from trio_designer.config import LLMTextColumn, ModelConfig
from trio_designer.models._limiter import AdaptiveLimiter, StaticLimiter
from trio_designer.models._registry import open_model_registry
from trio_designer.simulator import Latency, SimulatedModel

BIG = 10_000
COLUMNS = ("topic", "shout", "slow")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Recorded runs
# ---------------------------------------------------------------------------------------------


async def slow(row: Mapping[str, Any], ctx: Any) -> str:
    """Sleeps 0.5 s; row 3 fails for good (its row is dropped); the first other cell to run
    flakes once (it is retried)."""
    await trio.sleep(0.5)
    if ctx.row_index == 3:
        raise NonRetryableGenerationError(f"slow failed on row {ctx.row_index}")
    if not FLAKED:
        FLAKED.add(ctx.row_index)
        raise RetryableGenerationError(f"slow flaked on row {ctx.row_index}")
    return f"{row['shout']}!"


FLAKED: set[int] = set()  # rows that already flaked in the current run


def small_pipeline() -> PipelineConfig:
    return PipelineConfig(
        columns=(
            CategorySampler(name="topic", values=("jazz", "chess", "geology")),
            ExpressionColumn(
                name="shout", expr="{{ topic | upper }}", skip_when="{{ topic == 'chess' }}"
            ),
            CustomColumn(name="slow", function=slow, depends_on=("shout",), dtype="str"),
        ),
        run=RunConfig(row_group_size=4, trace=True, seed=3, salvage_max_rounds=2),
    )


def run_with_clock(fn: Any) -> Any:
    """Runs that write parquet (worker threads): a clock 1000x faster than real time."""

    async def guarded() -> Any:
        with trio.fail_after(BIG):
            return await fn()

    return trio.run(guarded, clock=trio.testing.MockClock(rate=1000.0))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Output directories of the same traced pipeline under each engine."""
    root = tmp_path_factory.mktemp("traced")

    async def both() -> None:
        for engine in ("sync", "async"):
            FLAKED.clear()
            await TrioDesigner(engine=engine).create(
                small_pipeline(), num_records=10, output_dir=root / engine
            )

    run_with_clock(both)
    return {engine: root / engine for engine in ("sync", "async")}


def recorded(output_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((output_dir / "trace.json").read_text())
    return data


def exported(output_dir: Path, tmp_path: Path) -> list[dict[str, Any]]:
    path = export_chrome_trace(output_dir, tmp_path / f"{output_dir.name}.json")
    document = json.loads(path.read_text())
    assert set(document) >= {"traceEvents", "displayTimeUnit"}
    assert document["displayTimeUnit"] == "ms"
    events: list[dict[str, Any]] = document["traceEvents"]
    return events


# ---------------------------------------------------------------------------------------------
# The trace-event format, as a checker
# ---------------------------------------------------------------------------------------------

METADATA_NAMES = {"process_name", "thread_name", "process_sort_index", "thread_sort_index"}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def format_problems(event: Mapping[str, Any]) -> list[str]:
    """What is wrong with one event under the trace-event format (empty: nothing)."""
    problems: list[str] = []
    phase = event.get("ph")
    if not isinstance(event.get("name"), str):
        problems.append("name must be a string")
    if not is_int(event.get("pid")):
        problems.append("pid must be an int")
    if "tid" in event and not is_int(event["tid"]):
        problems.append("tid must be an int")
    if "args" in event and not isinstance(event["args"], dict):
        problems.append("args must be an object")
    if phase != "M" and not is_time(event.get("ts")):
        problems.append("ts must be a number >= 0")
    if phase == "X":
        if not is_time(event.get("dur")):
            problems.append("dur must be a number >= 0")
        if not is_int(event.get("tid")):
            problems.append("a complete event needs an int tid")
    elif phase == "i":
        if event.get("s") not in ("g", "p", "t"):
            problems.append("an instant event's scope s must be g, p or t")
    elif phase == "C":
        values = event.get("args")
        if not values or not all(is_time(v) for v in values.values()):
            problems.append("a counter needs numeric args >= 0")
    elif phase == "M":
        args = event.get("args", {})
        if event.get("name") not in METADATA_NAMES:
            problems.append(f"unknown metadata event {event.get('name')!r}")
        elif event["name"].endswith("_name") and not isinstance(args.get("name"), str):
            problems.append("a *_name metadata event needs args.name (a string)")
        elif event["name"].endswith("_sort_index") and not is_int(args.get("sort_index")):
            problems.append("a *_sort_index metadata event needs an int args.sort_index")
        if event.get("name", "").startswith("thread_") and not is_int(event.get("tid")):
            problems.append("a thread metadata event needs an int tid")
    else:
        problems.append(f"unexpected phase {phase!r}")
    return problems


def test_the_format_checker_can_fail() -> None:
    assert format_problems({"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 0, "dur": 1}) == []
    assert format_problems({"ph": "X", "name": "a", "pid": 1, "tid": "1", "ts": -1}) == [
        "tid must be an int",
        "ts must be a number >= 0",
        "dur must be a number >= 0",
        "a complete event needs an int tid",
    ]
    assert format_problems({"ph": "i", "name": 3, "pid": True, "ts": 0}) == [
        "name must be a string",
        "pid must be an int",
        "an instant event's scope s must be g, p or t",
    ]


# ---------------------------------------------------------------------------------------------
# Chrome trace-event JSON
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sync", "async"])
def test_chrome_trace_follows_the_trace_event_format(
    runs: dict[str, Path], engine: str, tmp_path: Path
) -> None:
    events = exported(runs[engine], tmp_path)
    problems = {i: format_problems(e) for i, e in enumerate(events)}
    assert {i: p for i, p in problems.items() if p} == {}
    assert Counter(e["ph"] for e in events).keys() == {"M", "X", "C", "i"}


@pytest.mark.parametrize("engine", ["sync", "async"])
def test_every_task_attempt_is_one_slice_with_its_args(
    runs: dict[str, Path], engine: str, tmp_path: Path
) -> None:
    tasks = recorded(runs[engine])["tasks"]
    slices = [e for e in exported(runs[engine], tmp_path) if e.get("cat") == "task"]

    def key(column: str, a: Mapping[str, Any]) -> tuple[Any, ...]:
        return (column, a["row"], a["row_group"], a["attempt"], a["status"], a["error_class"])

    assert Counter(key(s["name"].split(" ")[0], s["args"]) for s in slices) == Counter(
        key(t["column"], t) for t in tasks
    )
    statuses = {t["status"] for t in tasks}
    assert statuses >= {"ok", "skipped", "failed", "retryable"}  # the scenario really varied
    assert {s["name"] for s in slices} >= {"slow", "slow (failed)", "slow (retryable)"}
    failed = next(s for s in slices if s["name"] == "slow (failed)")
    assert failed["args"]["error_class"] == "NonRetryableGenerationError"
    assert failed["args"]["row"] == 3


@pytest.mark.parametrize("engine", ["sync", "async"])
def test_slices_of_one_thread_never_partly_overlap(
    runs: dict[str, Path], engine: str, tmp_path: Path
) -> None:
    by_thread: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for e in exported(runs[engine], tmp_path):
        if e["ph"] == "X":
            by_thread[e["pid"], e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_thread.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end


def test_columns_are_named_track_groups_in_config_order(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    events = exported(runs["async"], tmp_path)
    meta = [e for e in events if e["ph"] == "M"]
    processes = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    order = {e["pid"]: e["args"]["sort_index"] for e in meta if e["name"] == "process_sort_index"}
    named = sorted(processes.values(), key=lambda n: order[_pid(processes, n)])
    assert named == ["run (async engine)", *(f"column {c}" for c in COLUMNS)]
    threads = {e["tid"]: e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    slice_threads = {(e["pid"], e["tid"]) for e in events if e["ph"] == "X"}
    for pid, tid in slice_threads:
        column = processes[pid].removeprefix("column ")
        assert threads[tid] == column or threads[tid].startswith(f"{column} (")
    assert len({tid for _, tid in slice_threads}) == len(slice_threads)  # tids are unique
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert counters == {f"{c} running" for c in COLUMNS}


def _pid(processes: Mapping[int, str], name: str) -> int:
    return next(pid for pid, n in processes.items() if n == name)


def test_concurrent_cells_get_lanes_and_a_running_counter(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    events = exported(runs["async"], tmp_path)
    slow_threads = {e["tid"] for e in events if e["ph"] == "X" and e["name"] == "slow"}
    assert len(slow_threads) > 1  # the async engine runs several 'slow' cells at once
    running = [e["args"]["tasks"] for e in events if e["name"] == "slow running"]
    assert max(running) > 1
    assert running[0] == running[-1] == 0
    sync_events = exported(runs["sync"], tmp_path)
    assert max(e["args"]["tasks"] for e in sync_events if e["name"] == "slow running") > 1


@pytest.mark.parametrize("engine", ["sync", "async"])
def test_scheduler_events_are_instant_events(
    runs: dict[str, Path], engine: str, tmp_path: Path
) -> None:
    recorded_events = recorded(runs[engine])["events"]
    instants = [e for e in exported(runs[engine], tmp_path) if e["ph"] == "i"]
    assert Counter(e["name"] for e in instants) == Counter(e["name"] for e in recorded_events)
    assert Counter(e["name"] for e in instants)["row_group_checkpointed"] == 3
    assert all(e["cat"] == "scheduler" for e in instants)
    checkpoint = next(e for e in instants if e["name"] == "row_group_checkpointed")
    assert set(checkpoint["args"]) == {"row_group", "rows"}


def test_default_destination_is_next_to_the_trace(runs: dict[str, Path]) -> None:
    path = export_chrome_trace(runs["sync"])
    assert path == runs["sync"] / CHROME_TRACE_FILE
    assert json.loads(path.read_text())["otherData"]["engine"] == "sync"


def test_times_are_microseconds_since_the_start(runs: dict[str, Path], tmp_path: Path) -> None:
    tasks = recorded(runs["async"])["tasks"]
    slices = [e for e in exported(runs["async"], tmp_path) if e.get("cat") == "task"]
    last_end = max(t["finished"] for t in tasks)
    assert max(e["ts"] + e["dur"] for e in slices) == pytest.approx(last_end * 1e6, abs=2)


def test_a_run_without_trace_says_how_to_record_one(tmp_path: Path) -> None:
    with pytest.raises(
        TraceExportError,
        match=r"has no trace\.json; tracing is off by default: run again with "
        r"RunConfig\(trace=True\) \(in YAML: run: \{trace: true\}\)\.$",
    ) as caught:
        export_chrome_trace(tmp_path)
    assert isinstance(caught.value, TrioDesignerError)


def test_an_unknown_trace_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "trace.json").write_text(json.dumps({"format_version": 99, "tasks": []}))
    with pytest.raises(TraceExportError, match="format_version 99"):
        load_run_trace(tmp_path)
    (tmp_path / "trace.json").write_text(
        json.dumps({"format_version": 1, "engine": "async", "tasks": [{"col": 1}], "events": []})
    )
    with pytest.raises(TraceExportError, match="not a trio_designer trace"):
        load_run_trace(tmp_path)


# ---------------------------------------------------------------------------------------------
# Model tracks (a real LLM run against the simulator, in virtual time)
# ---------------------------------------------------------------------------------------------


async def judged(row: Mapping[str, Any]) -> str:
    await trio.sleep(0.25)
    return f"ok: {row['summary'][:10]}"


def llm_pipeline() -> PipelineConfig:
    return PipelineConfig(
        models=(
            ModelConfig(alias="gen", model="sim-gen", max_parallel_requests=3),
            ModelConfig(alias="gen_cold", model="sim-gen", max_parallel_requests=2),
            ModelConfig(alias="judge", model="sim-judge"),
        ),
        columns=(
            CategorySampler(name="topic", values=("jazz", "chess")),
            LLMTextColumn(name="summary", model="gen", prompt="Sum {{ topic }}"),
            LLMTextColumn(name="trivia", model="gen_cold", prompt="Fact {{ topic }}"),
            CustomColumn(
                name="verdict", function=judged, llm_bound=True, models=("judge",), dtype="str"
            ),
        ),
        run=RunConfig(trace=True),
    )


async def test_model_endpoints_get_running_and_limit_counters(
    autojump_clock: Any, tmp_path: Path
) -> None:
    config = llm_pipeline()
    sim = [SimulatedModel(name=n, latency=Latency(median=1.0)) for n in ("sim-gen", "sim-judge")]
    with trio.fail_after(BIG):
        result = await TrioDesigner(simulator_models=sim).preview(config, num_records=6)
    change = LimitChange(old=2, new=1, reason="rate_limited", at=2.0, rejections=3, concurrency=2)
    document = {
        "format_version": 1,
        "engine": "async",
        "tasks": [attrs.asdict(t) for t in result.traces],
        "events": [
            {
                "time": 2.0,
                "name": "limit_change",
                "fields": limit_change_fields("simulator:sim-gen", change),
            }
        ],
    }
    (tmp_path / "trace.json").write_text(json.dumps(document))
    (tmp_path / "metadata.json").write_text(json.dumps({"config": config.to_dict(lenient=True)}))

    run = load_run_trace(tmp_path)
    assert run.endpoints == {
        "summary": ("simulator:sim-gen",),
        "trivia": ("simulator:sim-gen",),
        "verdict": ("simulator:sim-judge",),
    }
    assert run.ceilings == {"simulator:sim-gen": 2, "simulator:sim-judge": 4}

    events = exported(tmp_path, tmp_path / "out")
    assert [p for e in events for p in format_problems(e)] == []
    models_pid = next(
        e["pid"] for e in events if e["name"] == "process_name" and e["args"]["name"] == "models"
    )
    limit = [
        (e["ts"], e["args"]["limit"]) for e in events if e["name"] == "simulator:sim-gen limit"
    ]
    assert limit == [(0, 2), (2_000_000, 1)]
    gen_running = [e["args"]["tasks"] for e in events if e["name"] == "simulator:sim-gen running"]
    assert max(gen_running) > 1  # summary and trivia cells overlap on one endpoint
    assert all(e["pid"] == models_pid for e in events if e["name"].startswith("simulator:"))
    (instant,) = [e for e in events if e["ph"] == "i" and e["name"] == "limit_change"]
    assert instant["pid"] == models_pid
    assert instant["args"] == {
        "endpoint": "simulator:sim-gen",
        "old": 2,
        "new": 1,
        "reason": "rate_limited",
        "detail": "load: 3 429s in a row at 2 in flight",
    }


# ---------------------------------------------------------------------------------------------
# The registry reports limit changes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory",
    [AdaptiveLimiter, partial(AdaptiveLimiter, policy=LimiterPolicy(latency_signal=False))],
    ids=["default", "partial"],
)
async def test_registry_reports_limit_changes_with_the_endpoint_name(
    autojump_clock: Any, factory: Any
) -> None:
    seen: list[tuple[str, Any]] = []
    sim = [SimulatedModel(name=n) for n in ("sim-gen", "sim-judge")]

    def record(endpoint: str, change: Any) -> None:
        seen.append((endpoint, change))

    with trio.fail_after(BIG):
        async with open_model_registry(
            llm_pipeline(),
            simulator_models=sim,
            limiter_factory=factory,
            on_limit_change=record,
        ) as registry:
            for _ in range(3):  # three 429s in a row on one slot: load
                async with registry.model("judge").limiter.slot() as permit:
                    permit.rate_limited(1.0)
    [(endpoint, change)] = seen
    assert endpoint == "simulator:sim-judge"
    assert (change.old, change.reason) == (4, "rate_limited")
    assert change.new < change.old


@pytest.mark.parametrize(
    "factory", [StaticLimiter, partial(AdaptiveLimiter, on_change=print)], ids=["static", "bound"]
)
async def test_limit_changes_need_an_adaptive_limiter_factory(factory: Any) -> None:
    with pytest.raises(TypeError, match="on_limit_change needs limiter_factory"):
        async with open_model_registry(
            llm_pipeline(), limiter_factory=factory, on_limit_change=lambda e, c: None
        ):
            pass


# ---------------------------------------------------------------------------------------------
# Lanes and intervals
# ---------------------------------------------------------------------------------------------


def test_lanes_reuse_the_lowest_free_lane() -> None:
    spans = [(0, 10), (2, 5), (5, 8), (3, 4), (10, 12)]
    assert assign_lanes(spans) == [0, 1, 1, 2, 0]
    assert assign_lanes([]) == []


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 20)), max_size=40))
def test_lanes_never_overlap_and_match_the_peak_concurrency(
    starts_and_lengths: list[tuple[int, int]],
) -> None:
    spans = [(s, s + n) for s, n in starts_and_lengths]
    lanes = assign_lanes(spans)
    by_lane: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for span, lane in zip(spans, lanes, strict=True):
        by_lane[lane].append(span)
    for members in by_lane.values():
        members.sort()
        assert all(b[0] >= a[1] for a, b in itertools.pairwise(members))
    # As few lanes as the deepest point: spans are open intervals (s, e) (touching ones share a
    # lane); zero-length spans at one instant share one lane; with integer ends, half-steps see
    # every depth.
    points = [k / 2 for k in range(2 * 80)]
    depth = [sum(s < x < e for s, e in spans) + any(s == x == e for s, e in spans) for x in points]
    assert len(by_lane) == max(depth, default=0)
    assert sorted(by_lane) == list(range(len(by_lane)))


def test_active_intervals_merge_overlapping_and_close_spans() -> None:
    spans = [(3.0, 4.0), (0.0, 1.0), (0.5, 2.0), (2.0, 2.5), (2.6, 2.7), (9.0, 8.0)]
    assert active_intervals(spans) == [(0.0, 2.5), (2.6, 2.7), (3.0, 4.0), (9.0, 9.0)]
    assert active_intervals(spans, gap=0.15) == [(0.0, 2.7), (3.0, 4.0), (9.0, 9.0)]
    assert active_intervals([]) == []


# ---------------------------------------------------------------------------------------------
# The timeline picture
# ---------------------------------------------------------------------------------------------


def needs_matplotlib() -> None:
    """Skip when the optional ``plot`` extra (matplotlib) is not installed at all; any other
    ImportError (a broken install, or our own module failing) fails the test."""
    pytest.importorskip(
        "matplotlib", reason="the plot extra (matplotlib) is not installed",
        exc_type=ModuleNotFoundError,
    )


def test_sync_vs_async_png(runs: dict[str, Path], tmp_path: Path) -> None:
    needs_matplotlib()
    dest = plot_timeline([runs["sync"], runs["async"]], tmp_path / "pictures" / "cmp.png")
    assert dest == tmp_path / "pictures" / "cmp.png"
    data = dest.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000


def test_svg_names_every_column_and_engine(runs: dict[str, Path], tmp_path: Path) -> None:
    needs_matplotlib()
    dest = plot_timeline([runs["sync"], runs["async"]], tmp_path / "cmp.svg", title="Small")
    text = dest.read_text()
    assert text.lstrip().startswith("<?xml")
    for label in (*COLUMNS, "sync engine", "async engine", "Small", "failed attempt"):
        assert f">{label}" in text
    single = plot_timeline([runs["async"]], tmp_path / "one.svg").read_text()
    assert ">Column activity (async engine)<" in single
    assert ">sync engine" not in single


def test_plot_sets_a_writable_config_dir_when_unset(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_matplotlib()
    import os

    monkeypatch.setenv("MPLCONFIGDIR", "")  # so that the test's end restores the original
    monkeypatch.delenv("MPLCONFIGDIR")
    plot_timeline([runs["sync"]], tmp_path / "one.png")
    folder = Path(os.environ["MPLCONFIGDIR"])
    assert folder.is_dir()
    assert os.access(folder, os.W_OK)


def test_plot_refuses_other_formats_and_no_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(TraceExportError, match=r"\.png or \.svg"):
        plot_timeline([runs["sync"]], tmp_path / "cmp.jpg")
    with pytest.raises(TraceExportError, match="at least one output directory"):
        plot_timeline([], tmp_path / "cmp.png")
    with pytest.raises(TraceExportError, match=r"has no trace\.json"):
        plot_timeline([tmp_path], tmp_path / "cmp.png")


def test_missing_matplotlib_gives_the_install_hint(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    with pytest.raises(TraceExportError, match="pip install 'trio_designer\\[plot\\]'") as caught:
        plot_timeline([runs["sync"]], tmp_path / "cmp.png")
    assert PLOT_INSTALL_HINT in str(caught.value)
    assert not (tmp_path / "cmp.png").exists()
