"""End-to-end behaviour of the engines through the public API, in virtual time.

Scenario columns are ``custom`` columns whose async functions sleep a scripted latency (virtual
time) and record when they start and end; LLM columns run against the real simulator over
loopback. Exact times are asserted with ``==``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import trio
import trio.testing

from trio_designer import (
    CategorySampler,
    ConfigError,
    CustomColumn,
    ExpressionColumn,
    ModelConfig,
    NonRetryableGenerationError,
    PipelineConfig,
    ProviderError,
    RetryableGenerationError,
    RunConfig,
    TrioDesigner,
)
from trio_designer.simulator import Faults, Latency, SimulatedModel

BIG = 10_000


class Script:
    """Scripted custom columns: latency and failures per (column, row); records start/end."""

    def __init__(self) -> None:
        self.latency: dict[str, float] = {}
        self.fail: dict[tuple[str, int], str] = {}  # "fatal" | "retry-once"
        self.events: list[tuple[str, str, int, float]] = []
        self._retried: set[tuple[str, int]] = set()

    def column(self, name: str, *, after: tuple[str, ...] = (), llm: bool = False) -> CustomColumn:
        async def fn(row: Mapping[str, Any], ctx: Any) -> str:
            key = (name, ctx.row_index)
            self.events.append(("start", name, ctx.row_index, trio.current_time()))
            try:
                await trio.sleep(self.latency.get(name, 1.0))
            except trio.Cancelled:
                self.events.append(("cancelled", name, ctx.row_index, trio.current_time()))
                raise
            self.events.append(("end", name, ctx.row_index, trio.current_time()))
            how = self.fail.get(key)
            if how == "fatal":
                raise NonRetryableGenerationError(f"{name} failed on row {ctx.row_index}")
            if how == "retry-once" and key not in self._retried:
                self._retried.add(key)
                raise RetryableGenerationError(f"{name} flaked on row {ctx.row_index}")
            return f"{name}:{ctx.row_index}"

        fn.__name__ = f"script_{name}"
        return CustomColumn(name=name, function=fn, depends_on=after, llm_bound=llm, dtype="str")

    def times(self, kind: str, column: str) -> dict[int, float]:
        return {row: t for k, c, row, t in self.events if k == kind and c == column}


def pipeline(*columns: Any, models: tuple[ModelConfig, ...] = (), **run: Any) -> PipelineConfig:
    return PipelineConfig(columns=columns, models=models, run=RunConfig(**run))


@pytest.mark.deadline(15)
async def test_a_cell_starts_when_its_own_row_is_ready(autojump_clock: Any) -> None:
    """Row 1's b starts at 1 s although row 0's a takes 5 s."""
    script = Script()
    script.latency = {"a": 1.0, "b": 1.0}
    config = pipeline(script.column("a"), script.column("b", after=("a",)))
    original = script.column("a").function

    async def slow_row_zero(row: Mapping[str, Any], ctx: Any) -> str:
        if ctx.row_index == 0:
            await trio.sleep(4.0)
        return str(await original(row, ctx))

    config = pipeline(
        CustomColumn(name="a", function=slow_row_zero, dtype="str"),
        script.column("b", after=("a",)),
    )
    result = await TrioDesigner().preview(config, num_records=2)
    assert script.times("start", "b") == {1: 1.0, 0: 5.0}
    assert result.elapsed == 6.0


@pytest.mark.deadline(25)
async def test_dropped_row_cancels_in_flight_siblings(autojump_clock: Any) -> None:
    script = Script()
    script.latency = {"a": 1.0, "slow": 10.0, "c": 1.0}
    script.fail = {("a", 0): "fatal"}
    config = pipeline(
        script.column("a"), script.column("slow"), script.column("c", after=("a", "slow"))
    )
    result = await TrioDesigner().preview(config, num_records=3)
    assert script.times("cancelled", "slow") == {0: 1.0}
    assert 0 not in script.times("start", "c")
    assert result.num_records_written == 2
    assert result.columns["a"].failed == 1
    assert result.columns["slow"].cancelled == 1
    assert result.failures[0].row == 0
    assert result.failures[0].error_class == "NonRetryableGenerationError"
    assert result.table.column("c").to_pylist() == ["c:1", "c:2"]


async def test_retryable_failures_are_salvaged(autojump_clock: Any) -> None:
    script = Script()
    script.fail = {("a", 1): "retry-once"}
    config = pipeline(script.column("a"), script.column("b", after=("a",)), trace=True)
    result = await TrioDesigner().preview(config, num_records=3)
    assert result.num_records_written == 3
    assert result.columns["a"].retried == 1
    retried = [t for t in result.traces if t.column == "a" and t.row == 1]
    assert [(t.attempt, t.status) for t in retried] == [(1, "retryable"), (2, "ok")]
    # Deferred at 1 s with a 0.5 s backoff; the row group stalled at 2 s (rows 0 and 2 done
    # with b), by which time the backoff had elapsed, so the salvage round ran at once.
    assert retried[1].started == 2.0


@pytest.mark.deadline(120)
async def test_the_last_failure_of_a_cell_says_it_gave_up(autojump_clock: Any) -> None:
    """A retryable failure that runs out of retries drops its row, and the record says the
    engine gave up after every attempt; the model error itself promises nothing."""

    async def always_flaky(row: Mapping[str, Any], ctx: Any) -> str:
        raise RetryableGenerationError(f"flaked on row {ctx.row_index}")

    config = pipeline(
        CustomColumn(name="a", function=always_flaky, dtype="str"), salvage_max_rounds=2
    )
    result = await TrioDesigner().preview(config, num_records=1)
    [failure] = result.failures
    assert failure.attempts == 3
    assert failure.message == "gave up after 3 attempts: flaked on row 0"


@pytest.mark.deadline(220)
async def test_llm_wait_handoff_keeps_dispatch_going(autojump_clock: Any) -> None:
    """One submission slot: 10 LLM-bound cells park on a slow model, yet the local column's 10
    cells all run while they wait."""
    script = Script()
    script.latency = {"llm": 100.0, "local": 1.0}
    config = pipeline(
        script.column("llm", llm=True),
        script.column("local"),
        max_submitted_tasks=1,
        max_llm_wait_tasks=64,
    )
    result = await TrioDesigner().preview(config, num_records=10)
    # Dispatch alternates llm[k], local[k] (same priority, row order): llm[k] starts at k s,
    # right after local[k-1] frees the slot, and parks on the model without holding it.
    assert script.times("start", "llm") == {k: float(k) for k in range(10)}
    assert max(script.times("end", "local").values()) == 10.0
    assert result.elapsed == 109.0


@pytest.mark.deadline(15)
async def test_a_finished_llm_cell_passes_its_slot_on_to_the_next(autojump_clock: Any) -> None:
    """A chain of two LLM cells with free pools: each row's second cell runs in the task of
    its first (the LLM-wait slot passed on), so a row needs one handoff, not two; the second
    cell starts the instant the first ends, and is traced as dispatched then, holding its
    slot from then."""
    script = Script()
    script.latency = {"a": 1.0, "b": 1.0}
    config = pipeline(
        script.column("a", llm=True),
        script.column("b", after=("a",), llm=True),
        trace=True,
    )
    result = await TrioDesigner().preview(config, num_records=4)
    assert result.slots.handoffs == 4
    assert result.slots.passed_on == 4
    assert script.times("start", "b") == dict.fromkeys(range(4), 1.0)
    for trace in result.traces:
        if trace.column == "b":
            assert trace.dispatched == trace.slot_acquired == trace.started == 1.0


@pytest.mark.deadline(15)
async def test_no_slot_is_passed_on_past_a_task_waiting_for_one(autojump_clock: Any) -> None:
    """Two submission slots, one LLM-wait slot, two rows: when the first ``a`` ends, the
    other is parked for the LLM-wait slot (holding a submission slot; the other is free), so
    the slot is not passed on to the ready ``b`` of the first row: it goes to the waiting
    ``a``, as the pool grants it, and that ``b`` waits its turn."""
    script = Script()
    script.latency = {"a": 1.0, "b": 1.0}
    config = pipeline(
        script.column("a", llm=True),
        script.column("b", after=("a",), llm=True),
        max_submitted_tasks=2,
        max_llm_wait_tasks=1,
    )
    result = await TrioDesigner().preview(config, num_records=2)
    # Which row's ``a`` gets the slot first is trio's order; the second ``a`` is next.
    assert sorted(script.times("start", "a").values()) == [0.0, 1.0]
    assert sorted(script.times("start", "b").values()) == [2.0, 3.0]
    # Each later end finds the next cell already dispatched and parked for the slot too.
    assert (result.slots.handoffs, result.slots.passed_on) == (4, 0)


@pytest.mark.deadline(200)
async def test_without_the_handoff_llm_cells_would_block_dispatch(autojump_clock: Any) -> None:
    """The contrast: a non-LLM slow column holds its submission slot to the end."""
    script = Script()
    script.latency = {"slow": 100.0, "local": 1.0}
    config = pipeline(script.column("slow"), script.column("local"), max_submitted_tasks=2)
    await TrioDesigner().preview(config, num_records=2)
    assert max(script.times("end", "local").values()) > 100.0


async def test_skips_propagate_downstream(autojump_clock: Any) -> None:
    config = pipeline(
        CategorySampler(name="topic", values=("jazz", "chess")),
        ExpressionColumn(
            name="shout", expr="{{ topic | upper }}", skip_when="{{ topic == 'jazz' }}"
        ),
        ExpressionColumn(name="echo", expr="{{ shout }}!", skip_value="-"),
        seed=3,
    )
    result = await TrioDesigner().preview(config, num_records=20)
    for row in result.table.to_pylist():
        if row["topic"] == "jazz":
            assert (row["shout"], row["echo"]) == (None, "-")
        else:
            assert row["echo"] == row["shout"] + "!"
    assert result.columns["shout"].skipped == result.columns["echo"].skipped > 0


async def test_early_shutdown_keeps_finished_row_groups(autojump_clock: Any) -> None:
    script = Script()
    script.fail = {("a", row): "fatal" for row in range(4, 20)}
    config = pipeline(
        script.column("a"),
        row_group_size=4,
        max_row_groups_in_flight=1,
        shutdown_error_rate=0.5,
        shutdown_error_window=4,
    )
    result = await TrioDesigner().preview(config, num_records=20)
    assert result.status == "early_shutdown"
    assert result.num_records_written == 4
    assert result.table.column("a").to_pylist() == ["a:0", "a:1", "a:2", "a:3"]


async def test_bad_references_fail_before_anything_runs(tmp_path: Path) -> None:
    config = pipeline(
        CategorySampler(name="topic", values=("a",)),
        ExpressionColumn(name="x", expr="{{ tpoic }}"),
    )
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"did you mean 'topic'\?"):
        await TrioDesigner().create(config, num_records=3, output_dir=out)
    assert not out.exists()


def run_with_clock(fn: Any) -> Any:
    """Runs that write parquet (worker threads): a clock 1000x faster than real time, so the
    autojumper does not mistake a thread for idleness."""

    async def guarded() -> Any:
        with trio.fail_after(BIG):
            return await fn()

    return trio.run(guarded, clock=trio.testing.MockClock(rate=1000.0))


def test_cancel_keeps_finished_row_groups_and_resume_completes(tmp_path: Path) -> None:
    script = Script()
    config = pipeline(script.column("a"), row_group_size=2, max_row_groups_in_flight=1)
    out = tmp_path / "out"

    async def interrupted() -> None:
        with trio.CancelScope() as scope:

            def stop_after_two(event: str, fields: Mapping[str, Any]) -> None:
                if event == "row_group_checkpointed" and fields["row_group"] == 1:
                    scope.cancel()

            await TrioDesigner(on_event=stop_after_two).create(
                config, num_records=8, output_dir=out
            )
        assert scope.cancelled_caught

    run_with_clock(interrupted)
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["status"] == "interrupted"
    assert set(metadata["row_groups"]) == {"0", "1"}
    assert len(list((out / "parquet-files").iterdir())) == 2

    async def resumed() -> Any:
        return await TrioDesigner().create(config, num_records=8, output_dir=out, resume=True)

    result = run_with_clock(resumed)
    assert result.status == "complete"
    assert result.num_records_written == 4  # this run's share
    assert len(result.files) == 4
    assert result.table.num_rows == 8  # the whole dataset
    table = ds.dataset(out / "parquet-files", format="parquet").to_table()
    assert sorted(table.column("a").to_pylist()) == sorted(f"a:{i}" for i in range(8))
    assert json.loads((out / "metadata.json").read_text())["status"] == "complete"


def test_sync_and_async_engines_write_identical_files(tmp_path: Path) -> None:
    config = pipeline(
        CategorySampler(name="topic", values=("a", "b", "c")),
        ExpressionColumn(name="upper", expr="{{ topic | upper }}"),
        Script().column("custom", after=("upper",)),
        row_group_size=3,
        seed=11,
    )

    async def both() -> list[Any]:
        return [
            await TrioDesigner(engine=engine).create(
                config, num_records=10, output_dir=tmp_path / engine
            )
            for engine in ("async", "sync")
        ]

    fast, slow = run_with_clock(both)
    for a, b in zip(fast.files, slow.files, strict=True):
        assert a == b
        left = ds.dataset(tmp_path / "async" / a, format="parquet").to_table()
        right = ds.dataset(tmp_path / "sync" / b, format="parquet").to_table()
        assert left.equals(right)


DEEP = PipelineConfig.from_dict(
    {
        "models": [{"alias": "gen", "model": "sim-gen", "max_parallel_requests": 64}],
        "run": {"seed": 1},
        "columns": [
            {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a", "b"]},
            {"name": "summary", "kind": "llm_text", "model": "gen", "prompt": "Sum {{ topic }}"},
            {"name": "trivia", "kind": "llm_text", "model": "gen", "prompt": "Fact {{ topic }}"},
            {"name": "analysis", "kind": "llm_text", "model": "gen", "prompt": "An {{ summary }}"},
            {"name": "conclusion", "kind": "llm_text", "model": "gen", "prompt": "{{ analysis }}"},
        ],
    }
)


async def test_deep_pipeline_makespan_is_its_critical_path(autojump_clock: Any) -> None:
    """Over real HTTP to the simulator: 3 chained LLM columns x 1 s = 3 s, whatever the rows."""
    sim = [SimulatedModel(name="sim-gen", latency=Latency(median=1.0), capacity=1000)]
    with trio.fail_after(BIG):
        result = await TrioDesigner(simulator_models=sim).preview(DEEP, num_records=10)
    assert result.num_records_written == 10
    assert result.elapsed == 3.0
    assert result.usage["gen"]["requests_ok"] == 40


async def test_sync_engine_waits_for_whole_columns(autojump_clock: Any) -> None:
    sim = [SimulatedModel(name="sim-gen", latency=Latency(median=1.0), capacity=1000)]
    with trio.fail_after(BIG):
        result = await TrioDesigner(engine="sync", simulator_models=sim).preview(
            DEEP, num_records=10
        )
    assert result.elapsed == 4.0  # one wave per LLM column


@pytest.mark.deadline(20)
async def test_transient_model_faults_are_retried_to_completion(autojump_clock: Any) -> None:
    sim = [
        SimulatedModel(
            name="sim-gen",
            latency=Latency(median=0.5),
            faults=Faults(rate_500=0.2, rate_429=0.1),
            seed=5,
        )
    ]
    with trio.fail_after(BIG):
        result = await TrioDesigner(simulator_models=sim).preview(DEEP, num_records=20)
    # Which request draws which fault depends on arrival order (trio schedules ready tasks in
    # random order), so a cell may exhaust its 1 + salvage_max_rounds attempts; every row is
    # then either written or dropped for exactly that reason.
    assert result.num_records_written + result.num_rows_dropped == 20
    for failure in result.failures:
        assert failure.error_class in {"ModelServerError", "ModelRateLimitedError"}
        assert failure.attempts >= DEEP.run.salvage_max_rounds + 1
    assert sum(c.retried for c in result.columns.values()) > 0
    usage = result.usage["gen"]
    assert usage["requests_failed"] + usage["requests_rate_limited"] > 0


async def test_secrets_never_reach_results_or_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_designer.simulator import open_simulator

    secret = "sk-test-9f8e7d6c5b4a"
    monkeypatch.setenv("TD_TEST_KEY", secret)
    async with open_simulator([SimulatedModel(name="m", latency=Latency(median=0.0))]) as sim:
        config = PipelineConfig.from_dict(
            {
                "providers": [{"name": "local", "base_url": sim.url, "api_key_env": "TD_TEST_KEY"}],
                "models": [
                    {"alias": "gen", "model": "m", "provider": "local"},
                    {"alias": "missing", "model": "no-such-model", "provider": "local"},
                ],
                "run": {"trace": True},
                "columns": [
                    {"name": "q", "kind": "llm_text", "model": "gen", "prompt": "say hi"},
                    {"name": "bad", "kind": "llm_text", "model": "missing", "prompt": "{{ q }}"},
                ],
            }
        )
        # A model the server does not know stops the run at its first 404 (fail fast).
        with pytest.raises(ProviderError) as info:
            await TrioDesigner().create(config, num_records=3, output_dir=tmp_path / "o")
    blob = str(info.value) + "".join(
        p.read_text(errors="replace") for p in (tmp_path / "o").rglob("*") if p.is_file()
    )
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert meta["status"] == "failed"  # recorded, with the message naming the model
    assert "no-such-model" in json.dumps(meta)
    assert secret not in blob
    assert "TD_TEST_KEY" in (tmp_path / "o" / "metadata.json").read_text()


async def test_reasoning_goes_to_its_own_column(autojump_clock: Any) -> None:
    config = PipelineConfig.from_dict(
        {
            "models": [{"alias": "r", "model": "sim-reasoner"}],
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {
                    "name": "answer",
                    "kind": "llm_text",
                    "model": "r",
                    "prompt": "Why {{ topic }}?",
                    "extract_reasoning": True,
                },
                {"name": "echo", "kind": "expression", "expr": "{{ answer }}"},
            ],
        }
    )
    with trio.fail_after(BIG):
        result = await TrioDesigner().preview(config, num_records=3)
    table = result.table
    assert table.column_names == ["_row_id", "topic", "answer", "answer__reasoning", "echo"]
    for row in table.to_pylist():
        assert row["answer__reasoning"]
        assert row["echo"] == row["answer"]


async def test_critical_path_first_saves_a_wave_on_the_deep_shape(autojump_clock: Any) -> None:
    """Deep shape, 10 rows, 15 slots, 1 s per cell, trivia declared before summary. Dispatching
    in declaration order takes 4 waves (trivia x10 + summary x5, then the rest trickles);
    dispatching the longest remaining chain first takes 3 (the issue's "3 vs 4 waves")."""
    script = Script()
    config = pipeline(
        CategorySampler(name="topic", values=("a",)),
        script.column("trivia", after=("topic",)),
        script.column("summary", after=("topic",)),
        script.column("analysis", after=("summary",)),
        script.column("conclusion", after=("analysis",)),
        max_submitted_tasks=15,
    )
    result = await TrioDesigner().preview(config, num_records=10)
    assert result.elapsed == 3.0
    assert set(script.times("start", "summary").values()) == {0.0}


async def test_long_runs_of_inline_cells_all_complete(autojump_clock: Any) -> None:
    """Regression: the inline batch took the 129th cell off the ready queue and then stopped,
    so that cell never ran and its row group never finished (found by benches/overhead.py)."""
    from trio_designer._engine._dispatch import INLINE_BATCH

    config = pipeline(
        CategorySampler(name="topic", values=("a", "b")),
        ExpressionColumn(name="x", expr="{{ topic }}!"),
        ExpressionColumn(name="y", expr="{{ x }}?"),
        row_group_size=3 * INLINE_BATCH,
    )
    with trio.fail_after(BIG):
        result = await TrioDesigner().preview(config, num_records=3 * INLINE_BATCH + 7)
    assert result.num_records_written == 3 * INLINE_BATCH + 7
    assert all(row["y"] == row["topic"] + "!?" for row in result.table.to_pylist())
