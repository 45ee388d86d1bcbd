"""Finish reasons end to end: cut-off, filtered and empty answers through ``TrioDesigner``.

Real HTTP to the simulator on 127.0.0.1, virtual time. The simulator cuts an answer that
reaches ``max_tokens`` and says ``finish_reason: "length"``; its ``content_filter`` and
``empty`` faults send the other two kinds. What a user sees is checked where they see it: the
dataset (the ``<name>__truncated`` side column), ``RunResult.columns``, ``metadata.json``,
``failures.jsonl`` and the command line's summary table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import trio
import trio.testing

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer.cli._run import column_table
from trio_designer.simulator import Faults, Latency, SimulatedModel

BIG = 10_000


def pipeline(on_truncated: str, *, max_tokens: int | None = None) -> PipelineConfig:
    model: dict[str, Any] = {"alias": "gen", "model": "sim-gen", "max_parallel_requests": 8}
    if max_tokens is not None:
        model["inference"] = {"max_tokens": max_tokens}
    return PipelineConfig.from_dict(
        {
            "models": [model],
            "run": {"seed": 3},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a", "b"]},
                {
                    "name": "summary",
                    "kind": "llm_text",
                    "model": "gen",
                    "prompt": "Summarize {{ topic }}.",
                    "on_truncated": on_truncated,
                },
            ],
        }
    )


def simulator(**faults: float) -> list[SimulatedModel]:
    return [
        SimulatedModel(
            name="sim-gen", latency=Latency(median=0.2), faults=Faults(**faults), seed=11
        )
    ]


def test_kept_cut_answers_are_marked_everywhere_a_user_looks(tmp_path: Path) -> None:
    """Half the answers are cut (fault ``truncated``) and kept: the side column says which,
    the counts say how many, in the result, in metadata.json and in the summary table."""
    designer = TrioDesigner(simulator_models=simulator(rate_truncated=0.5))

    async def create() -> Any:
        with trio.fail_after(BIG):
            return await designer.create(pipeline("keep"), num_records=20, output_dir=tmp_path)

    # Parquet is written in worker threads: a clock 1000x faster than real time instead of
    # the autojumper, which would take a thread's work for idleness.
    result = trio.run(create, clock=trio.testing.MockClock(rate=1000.0))
    assert result.num_records_written == 20
    table = result.table
    assert table.schema.field("summary__truncated").type == pa.bool_()
    marks = table.column("summary__truncated").to_pylist()
    assert set(marks) == {True, False}
    assert result.columns["summary"].truncated == marks.count(True)
    assert result.columns["topic"].truncated == 0
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["summary"]["columns"]["summary"]["truncated"] == marks.count(True)
    assert "truncated" in column_table(result.columns).splitlines()[0]
    assert not result.failures


async def test_retry_and_drop_never_store_a_cut_answer(autojump_clock: Any) -> None:
    """Every answer reaches max_tokens: ``retry`` asks 3 times then drops, ``drop`` at once;
    either way nothing cut is written and the failure says to raise max_tokens."""
    with trio.fail_after(BIG):
        retried = await TrioDesigner(simulator_models=simulator()).preview(
            pipeline("retry", max_tokens=4), num_records=4
        )
        dropped = await TrioDesigner(simulator_models=simulator()).preview(
            pipeline("drop", max_tokens=4), num_records=4
        )
    for result, attempts in ((retried, 3), (dropped, 1)):
        assert result.num_records_written == 0
        assert result.num_rows_dropped == 4
        assert result.usage["gen"]["requests_ok"] == 4 * attempts
        assert "summary__truncated" not in result.table.column_names
        for failure in result.failures:
            assert failure.error_class == "ModelOutputError"
            assert "Raise max_tokens (now 4)" in failure.message
        assert "truncated" not in column_table(result.columns).splitlines()[0]


async def test_a_filtered_answer_drops_its_row_once(autojump_clock: Any) -> None:
    with trio.fail_after(BIG):
        result = await TrioDesigner(simulator_models=simulator(rate_content_filter=1.0)).preview(
            pipeline("retry"), num_records=3
        )
    assert result.num_rows_dropped == 3
    assert result.usage["gen"]["requests_ok"] == 3  # no retry, no salvage round
    assert {f.error_class for f in result.failures} == {"ModelContentFilteredError"}
    assert {f.attempts for f in result.failures} == {1}
    assert result.columns["summary"].retried == 0


async def test_empty_answers_are_asked_again_until_one_arrives(autojump_clock: Any) -> None:
    with trio.fail_after(BIG):
        result = await TrioDesigner(simulator_models=simulator(rate_empty=0.3)).preview(
            pipeline("retry"), num_records=20
        )
    usage = result.usage["gen"]
    assert usage["requests_ok"] > 20  # some answers were empty and asked again
    assert all(value for value in result.table.column("summary").to_pylist())
    assert result.num_records_written + result.num_rows_dropped == 20
    assert all(f.error_class == "ModelOutputError" for f in result.failures)
