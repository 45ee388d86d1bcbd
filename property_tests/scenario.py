"""A scripted pipeline for the scenario tests: random DAG × per-cell latencies × failure schedule.

Every column is a ``custom`` column whose async function sleeps the cell's scripted latency (in
virtual time), then succeeds, raises a retryable error or raises a non-retryable one, as the
schedule says for that (column, row, attempt). The function records what happened (start, end,
outcome, cancellation) with ``trio.current_time()``, so the tests can check the scheduler's
invariants from the outside.

A cell's value is ``"<column>-<row>-<digest of its upstream values>"``: deterministic, and it
proves that each cell saw exactly its own row's upstream values.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import trio
from hypothesis import strategies as st

from trio_designer import CustomColumn, ExpressionColumn, PipelineConfig, RunConfig
from trio_designer._core._retry import RetryPolicy
from trio_designer._exceptions import NonRetryableGenerationError, RetryableGenerationError

from .strategies import Dag, dags

Outcome = Literal["ok", "retry", "fatal"]


def _unit(*parts: object) -> float:
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@attrs.frozen
class Schedule:
    """Per-cell latency and outcome, derived from a seed (cheap to draw, stable to replay)."""

    seed: int
    latencies: tuple[float, ...]
    fatal_rate: float
    retry_rate: float

    def latency(self, column: str, key: int) -> float:
        index = int(_unit(self.seed, "lat", column, key) * len(self.latencies))
        return self.latencies[index]

    def outcome(self, column: str, key: int, attempt: int) -> Outcome:
        draw = _unit(self.seed, "out", column, key, attempt)
        if draw < self.fatal_rate:
            return "fatal"
        if draw < self.fatal_rate + self.retry_rate:
            return "retry"
        return "ok"


@attrs.frozen
class Scenario:
    dag: Dag
    llm_bound: Mapping[str, bool]
    rows: int
    row_group_size: int
    max_row_groups_in_flight: int
    max_submitted: int
    max_llm_wait: int
    salvage_max_rounds: int
    schedule: Schedule
    early_shutdown: bool
    inline: Mapping[str, bool]

    def config(self, recorder: Recorder) -> PipelineConfig:
        columns: list[Any] = []
        for c in self.dag.order:
            ups = tuple(sorted(self.dag.upstream[c]))
            if self.inline[c]:
                columns.append(ExpressionColumn(name=c, expr=inline_expr(c, ups)))
                continue
            columns.append(
                CustomColumn(
                    name=c,
                    function=recorder.function_for(c),
                    strategy=self.dag.strategy[c],
                    depends_on=ups,
                    llm_bound=self.llm_bound[c],
                    dtype="str",
                )
            )
        run = RunConfig(
            row_group_size=self.row_group_size,
            max_row_groups_in_flight=self.max_row_groups_in_flight,
            max_submitted_tasks=self.max_submitted,
            max_llm_wait_tasks=self.max_llm_wait,
            salvage_max_rounds=self.salvage_max_rounds,
            shutdown_error_rate=0.5 if self.early_shutdown else 1.0,
            shutdown_error_window=10,
            seed=self.schedule.seed,
            trace=True,
        )
        return PipelineConfig(columns=tuple(columns), run=run)


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    failures: bool = True,
    unlimited: bool = False,
    fixed_latency: bool = False,
) -> Scenario:
    dag = draw(dags())
    rows = draw(st.integers(1, 50))
    rg_size = draw(st.integers(1, rows)) if not unlimited else rows
    latencies = (
        (draw(st.sampled_from([0.5, 1.0, 2.0])),)
        if fixed_latency
        else tuple(
            draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]), min_size=1, max_size=4))
        )
    )
    schedule = Schedule(
        seed=draw(st.integers(0, 2**16)),
        latencies=latencies,
        fatal_rate=draw(st.sampled_from([0.0, 0.02, 0.1, 0.3])) if failures else 0.0,
        retry_rate=draw(st.sampled_from([0.0, 0.05, 0.2, 0.5])) if failures else 0.0,
    )
    big = 100_000
    return Scenario(
        dag=dag,
        llm_bound={c: draw(st.booleans()) for c in dag.order},
        rows=rows,
        row_group_size=rg_size,
        max_row_groups_in_flight=big if unlimited else draw(st.integers(1, 4)),
        max_submitted=big if unlimited else draw(st.integers(1, 8)),
        max_llm_wait=big if unlimited else draw(st.integers(1, 8)),
        salvage_max_rounds=draw(st.integers(0, 2)),
        schedule=schedule,
        early_shutdown=failures and draw(st.booleans()),
        inline={
            c: dag.strategy[c] == "cell" and bool(dag.upstream[c]) and draw(st.booleans())
            for c in dag.order
        },
    )


@attrs.define
class Attempt:
    column: str
    key: int  # global row index, or the row group id for full-column tasks
    rows: tuple[int, ...]
    attempt: int
    llm_bound: bool
    start: float
    start_seq: int
    end: float | None = None
    end_seq: int | None = None
    outcome: Literal["ok", "retry", "fatal", "cancelled"] | None = None


def inline_expr(column: str, ups: tuple[str, ...]) -> str:
    """A Jinja expression column (run inline by the dispatcher) whose value, like a scripted
    cell's, names its column and row and depends on its upstream values."""
    joined = " ~ '|' ~ ".join(ups)
    return f"{{{{ '%s-%s-e%d' % ('{column}', {ups[0]}.split('-')[1], ({joined}) | length) }}}}"


def expected_value(scenario: Scenario, column: str, row: int, upstream: Mapping[str, Any]) -> str:
    """What cell (row, column) must hold, given its row's upstream values."""
    if scenario.inline[column]:
        joined = "|".join(str(upstream[k]) for k in sorted(upstream))
        return f"{column}-{row}-e{len(joined)}"
    return cell_value(column, row, upstream)


def cell_value(column: str, row: int, upstream: Mapping[str, Any]) -> str:
    text = "|".join(f"{k}={upstream[k]}" for k in sorted(upstream))
    return f"{column}-{row}-{hashlib.blake2b(text.encode(), digest_size=4).hexdigest()}"


class Recorder:
    """Runs the scripted columns and records every attempt."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.attempts: list[Attempt] = []
        self.counts: dict[tuple[str, int], int] = defaultdict(int)
        self.running_llm = 0
        self.running_local = 0
        self.peak_llm = 0
        self.peak_local = 0
        self.input_violations: list[str] = []
        self._seq = 0
        # The event sequence number at which the engine declared early shutdown, if it did.
        self.shutdown_seq: int | None = None
        # Row groups admitted and not yet checkpointed, seen from the events; and its peak.
        self.groups_open = 0
        self.peak_groups_open = 0
        # The async engine's TaskSlots, when the test hands them over (``_run_internal``):
        # each attempt's start is then checked against the pools (the pass-on invariant of
        # ``_engine/_dispatch.py``), the findings kept here.
        self.slots: Any = None
        self.slot_violations: list[str] = []
        self.pass_on_violations: list[str] = []
        self.passed_on = 0  # LLM attempts that ran in a task which had run an LLM attempt
        # The trio tasks that have run an LLM attempt (kept alive, so no id is reused).
        self._ran_llm: dict[int, Any] = {}

    def on_event(self, event: str, fields: Mapping[str, Any]) -> None:
        """The engine's ``on_event`` hook: remembers when early shutdown was declared, and
        counts the row groups in memory (admitted, not yet checkpointed)."""
        if event == "early_shutdown" and self.shutdown_seq is None:
            self.shutdown_seq = self._next_seq()
        elif event == "row_group_admitted":
            self.groups_open += 1
            self.peak_groups_open = max(self.peak_groups_open, self.groups_open)
        elif event == "row_group_checkpointed":
            self.groups_open -= 1

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def function_for(self, column: str) -> Any:
        ups = sorted(self.scenario.dag.upstream[column])
        if self.scenario.dag.strategy[column] == "cell":

            async def cell(row: Mapping[str, Any], ctx: Any) -> str:
                self._check_inputs(column, ctx.row_index, row, ups)
                await self._attempt(column, ctx.row_index, (ctx.row_index,))
                return cell_value(column, ctx.row_index, {u: row[u] for u in ups})

            cell.__name__ = f"cell_{column}"
            return cell

        async def full(rows: Sequence[Mapping[str, Any]], ctx: Any) -> list[str]:
            for index, row in zip(ctx.row_indices, rows, strict=True):
                self._check_inputs(column, index, row, ups)
            await self._attempt(column, ctx.row_group, tuple(ctx.row_indices))
            return [
                cell_value(column, index, {u: row[u] for u in ups})
                for index, row in zip(ctx.row_indices, rows, strict=True)
            ]

        full.__name__ = f"full_{column}"
        return full

    def _check_inputs(
        self, column: str, row: int, values: Mapping[str, Any], ups: list[str]
    ) -> None:
        for up in ups:
            value = values.get(up)
            if not isinstance(value, str) or not value.startswith(f"{up}-{row}-"):
                self.input_violations.append(f"{column}[{row}] saw {up}={value!r}")

    async def _attempt(self, column: str, key: int, rows: tuple[int, ...]) -> None:
        llm = self.scenario.llm_bound[column]
        self.counts[(column, key)] += 1
        attempt = self.counts[(column, key)]
        record = Attempt(column, key, rows, attempt, llm, trio.current_time(), self._next_seq())
        self.attempts.append(record)
        self._enter(llm)
        if self.slots is not None:
            self._check_slots(column, key, llm)
        try:
            await trio.sleep(self.scenario.schedule.latency(column, key))
        except trio.Cancelled:
            record.outcome, record.end = "cancelled", trio.current_time()
            record.end_seq = self._next_seq()
            raise
        finally:
            self._leave(llm)
        record.end = trio.current_time()
        record.end_seq = self._next_seq()
        record.outcome = self.scenario.schedule.outcome(column, key, record.attempt)
        if record.outcome == "retry":
            raise RetryableGenerationError(f"scripted retryable failure of {column}[{key}]")
        if record.outcome == "fatal":
            raise NonRetryableGenerationError(f"scripted failure of {column}[{key}]")

    def _check_slots(self, column: str, key: int, llm: bool) -> None:
        """At an attempt's start (just counted in): every running LLM attempt holds an
        LLM-wait slot and every running local one a submission slot; a trio task that has run
        an LLM attempt runs no local one after it (it never goes back to the submission pool);
        and an LLM attempt in such a task — a slot passed on — starts only while nobody is
        parked for either pool and a submission slot is free. The engine decides a pass-on
        with no schedule point before the generator is called, so the pools are seen here as
        the engine saw them."""
        stats = self.slots.statistics()
        what = f"{column}[{key}]"
        if self.running_llm > stats.llm_wait_borrowed:
            self.slot_violations.append(
                f"{what}: {self.running_llm} LLM cells run on {stats.llm_wait_borrowed} slots"
            )
        if self.running_local > stats.submission_borrowed:
            self.slot_violations.append(
                f"{what}: {self.running_local} local cells run on "
                f"{stats.submission_borrowed} submission slots"
            )
        task = trio.lowlevel.current_task()
        if id(task) not in self._ran_llm:
            if llm:
                self._ran_llm[id(task)] = task
            return
        if not llm:
            self.slot_violations.append(f"{what}: a local cell in a task that ran an LLM cell")
            return
        self.passed_on += 1
        if (
            stats.llm_wait_waiting
            or stats.submission_waiting
            or stats.submission_borrowed >= stats.submission_total
        ):
            self.pass_on_violations.append(f"{what}: passed on with the pools at {stats}")

    def _enter(self, llm: bool) -> None:
        if llm:
            self.running_llm += 1
            self.peak_llm = max(self.peak_llm, self.running_llm)
        else:
            self.running_local += 1
            self.peak_local = max(self.peak_local, self.running_local)

    def _leave(self, llm: bool) -> None:
        if llm:
            self.running_llm -= 1
        else:
            self.running_local -= 1


def work_bound(sc: Scenario) -> float:
    """An upper bound of the run's virtual makespan, in seconds: every attempt of every task
    one after another, each at the longest scripted latency, with the longest pause the
    run's :class:`~trio_designer._core._retry.RetryPolicy` puts before each retry.

    A run that schedules anything at all in parallel finishes well within it, so twice this
    bound is the scenario's deadline (:func:`run_in_virtual_time`): a deadlock then fails in
    microseconds of real time, with a message, instead of after a million virtual seconds.
    """
    policy = RetryPolicy.from_salvage_max_rounds(sc.salvage_max_rounds)
    attempts = sc.salvage_max_rounds + 1  # scripted failures are ordinary retryable errors
    per_task = attempts * max(sc.schedule.latencies) + sum(
        policy.delay(n) for n in range(1, attempts)
    )
    groups = -(-sc.rows // sc.row_group_size)
    tasks = sum(
        0 if sc.inline[c] else groups if sc.dag.strategy[c] == "full_column" else sc.rows
        for c in sc.dag.order
    )
    return tasks * per_task


def deadline_for(*scenarios: Scenario) -> float:
    """Twice the work bound of the runs, plus a second for the runs that take no time."""
    return 2 * sum(work_bound(sc) for sc in scenarios) + 1.0


THREADS_REAL_SECONDS = 60.0
"""With ``threads=True`` the clock runs 1000x real time, so real work (parquet writes) moves
it too: such runs get this much real time on top of their virtual deadline."""


def run_in_virtual_time(fn: Any, *args: Any, deadline: float, threads: bool = False) -> Any:
    """Run ``fn(*args)`` in a fresh ``trio.run`` under a ``MockClock``, with a ``deadline`` in
    virtual seconds (:func:`deadline_for` the scenario): a deadlock fails with a message.

    By default the clock autojumps (pure virtual time). With ``threads=True`` (the run writes
    parquet in worker threads, which autojump would mistake for idleness and jump straight to
    the deadline) the clock instead runs 1000x faster than real time, and the deadline gets
    :data:`THREADS_REAL_SECONDS` of real time on top.
    """
    rate = 1000.0
    limit = deadline + (rate * THREADS_REAL_SECONDS if threads else 0.0)

    async def guarded() -> Any:
        with trio.fail_after(limit):
            return await fn(*args)

    clock = (
        trio.testing.MockClock(rate=rate)
        if threads
        else trio.testing.MockClock(autojump_threshold=0)
    )
    try:
        return trio.run(guarded, clock=clock)
    except trio.TooSlowError:
        pass
    # Raised outside the except block, so it carries no context: every deadlock is then the
    # same failure to Hypothesis (one to shrink), whatever the scenario.
    raise AssertionError(
        f"the run did not finish within {limit:g} virtual seconds (twice the scenario's "
        "serial work bound): a deadlock, a leaked slot or a waiter nobody wakes"
    )
