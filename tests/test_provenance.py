"""Per-cell provenance: the sidecar each row group writes, over real HTTP to the simulator.

A pipeline with an LLM column that always answers, an LLM column that is skipped on most rows
and meets a content filter on the others (a failed cell that drops its row), and an expression
downstream. The sidecar must say, cell by cell, what happened — and its request counts must
match what the server logged. Real clock (the parquet sink writes in worker threads), tiny
latencies, a deadline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import trio

from trio_designer import ConfigError, PipelineConfig, TrioDesigner
from trio_designer._core._cellusage import CellUsage
from trio_designer._sink import (
    CELLS_SCHEMA,
    ParquetSink,
    build_table,
    cells_table,
)
from trio_designer._sink._provenance import CellLog
from trio_designer.simulator import Faults, Latency, SimulatedModel, open_simulator

PRICE = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
FAST = Latency(median=0.002, sigma=0.0)


def pipeline(url: str, *, rows_per_group: int = 4) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": "local", "base_url": url}],
            "models": [
                {"alias": "gen", "model": "sim-gen", "provider": "local", "price": PRICE},
                {"alias": "strict", "model": "sim-filter", "provider": "local"},
            ],
            "run": {"row_group_size": rows_per_group, "seed": 7, "shutdown_error_rate": 1.0},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a", "b"]},
                {"name": "summary", "kind": "llm_text", "model": "gen", "prompt": "{{ topic }}"},
                {
                    "name": "risky",
                    "kind": "llm_text",
                    "model": "strict",
                    "prompt": "about {{ summary }}",  # after summary: nothing is cancelled
                    "skip_when": "{{ topic != 'a' }}",
                },
                {"name": "echo", "kind": "expression", "expr": "{{ summary }}!"},
            ],
        }
    )


SIMULATED = [
    SimulatedModel(name="sim-gen", latency=FAST),
    SimulatedModel(name="sim-filter", latency=FAST, faults=Faults(rate_content_filter=1.0)),
]


@pytest.mark.slow
def test_the_sidecar_tells_every_cells_story(tmp_path: Path) -> None:
    out = tmp_path / "out"

    async def main() -> int:
        with trio.fail_after(30):
            async with open_simulator(SIMULATED) as sim:
                await TrioDesigner().create(pipeline(sim.url), num_records=10, output_dir=out)
                return len(sim.request_log())

    requests_served = trio.run(main)
    meta = json.loads((out / "metadata.json").read_text())
    entries = meta["row_groups"]
    assert len(entries) == 3
    for rg, entry in entries.items():  # every row group names its sidecar, which exists
        assert entry["cells"] == f"provenance/row-group-{int(rg):05d}.parquet"
        assert (out / entry["cells"]).is_file()

    cells = ds.dataset(out / "provenance").to_table()
    assert cells.schema == CELLS_SCHEMA
    assert cells.num_rows == 10 * 4  # one record per (row, column)
    data = ds.dataset(out / "parquet-files").to_table()
    by_cell = {(r["row_id"], r["column"]): r for r in cells.to_pylist()}
    topics = {}  # the sampler's value of every row, written or not, from the survivors...
    for row in data.to_pylist():
        topics[row["_row_id"]] = row["topic"]
    failed_rows = sorted(
        row_id for (row_id, column), r in by_cell.items() if r["status"] == "failed"
    )
    assert failed_rows, "seed 7 draws topic 'a' for some rows"
    # The dataset holds exactly the rows without a failed cell, joined by _row_id.
    assert sorted(topics) == sorted(set(range(10)) - set(failed_rows))
    for row_id in range(10):
        risky, summary, echo = (by_cell[(row_id, c)] for c in ("risky", "summary", "echo"))
        assert subset(echo, "model", "input_tokens", "cost") == {
            "model": None, "input_tokens": None, "cost": None
        }
        if row_id in failed_rows:
            assert subset(risky, *FAILED) == FAILED
            assert "content filter" in risky["error_message"]
            # The summary of a dropped row was generated and paid for, but is not kept.
            assert summary["status"] == "dropped_upstream"
            assert summary["requests"] == 1
            assert echo["status"] == "dropped_upstream"
            continue
        assert topics[row_id] == "b"
        assert subset(risky, "status", "attempts", "requests") == {
            "status": "skipped", "attempts": 0, "requests": None
        }
        assert subset(summary, *SUMMARY_OK) == SUMMARY_OK
        assert echo["status"] == "ok"
    for record in by_cell.values():
        if record["column"] == "summary" and record["requests"] == 1:
            assert record["input_tokens"] > 0
            assert record["output_tokens"] > 0
            assert record["latency_s"] > 0
            cost = (record["input_tokens"] * 2.0 + record["output_tokens"] * 8.0) / 1e6
            assert record["cost"] == pytest.approx(cost)
    # What the sidecar counts is what the server saw.
    assert sum(r["requests"] or 0 for r in by_cell.values()) == requests_served
    paid = sum(r["cost"] or 0.0 for r in by_cell.values())
    assert meta["summary"]["usage"]["gen"]["cost"] == pytest.approx(paid)


FAILED = {
    "status": "failed",
    "error_class": "ModelContentFilteredError",
    "finish_reason": "content_filter",
    "model_alias": "strict",
    "model": "sim-filter",
    "cost": None,  # the alias has no price
    "attempts": 1,
    "requests": 1,
}
SUMMARY_OK = {
    "status": "ok",
    "attempts": 1,
    "model_alias": "gen",
    "model": "sim-gen",
    "requests": 1,
    "finish_reason": "stop",
}


def subset(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: record[key] for key in keys}


async def test_preview_keeps_provenance_in_memory() -> None:
    """The memory sink builds the same table when asked (never while the run goes)."""
    with trio.fail_after(10):
        async with open_simulator(SIMULATED) as sim:
            config = pipeline(sim.url, rows_per_group=3)
            result = await TrioDesigner().preview(config, num_records=6)
    cells = result.cells
    assert cells.schema == CELLS_SCHEMA
    assert cells.num_rows == 6 * 4
    assert set(cells.column("row_id").to_pylist()) == set(range(6))
    assert result.table.column("_row_id").to_pylist() == sorted(
        set(range(6)) - {r["row_id"] for r in cells.to_pylist() if r["status"] == "failed"}
    )


def test_a_row_id_column_is_reserved() -> None:
    text = "columns:\n  - {name: _row_id, kind: expression, expr: '1'}\n"
    with pytest.raises(ConfigError, match=r"columns\[0\]\.name: 'name' '_row_id' is reserved"):
        PipelineConfig.from_yaml(text)


# -- the sink: both files or neither -------------------------------------------------------------


def log_of(row_group: int, size: int) -> CellLog:
    log = CellLog(row_group, row_group * size, size, ["n"])
    usage = log.usage_for("n", 0)
    usage.add_answer(
        alias="gen", model="m", finish_reason="stop", input_tokens=1, output_tokens=2,
        reasoning_tokens=0, cached_input_tokens=0, latency=0.1, cost=0.5, cached=False,
    )
    return log


def rows(start: int, size: int) -> pa.Table:
    return build_table({"n": list(range(start, start + size))}, {"n": pa.int64()})


async def test_a_row_group_whose_data_was_not_published_leaves_no_sidecar(tmp_path: Path) -> None:
    """Cancelled between the two publishes: neither file stays, nothing is recorded."""
    failing = {"armed": True}

    def writer(table: pa.Table, file: Any) -> None:
        import pyarrow.parquet as pq

        if failing["armed"] and "n" in table.column_names:
            raise OSError(28, "No space left on device")
        pq.write_table(table, file)

    sink = ParquetSink(tmp_path, parquet_writer=writer)
    await sink.open(fingerprint="f", config={}, num_records=20, row_group_size=10)
    from trio_designer import SinkError

    with pytest.raises(SinkError):
        await sink.write_row_group(0, rows(0, 10), requested_rows=10, cells=log_of(0, 10))
    assert list((tmp_path / "provenance").iterdir()) == []
    assert sink.completed_row_groups() == {}
    failing["armed"] = False
    await sink.write_row_group(0, rows(0, 10), requested_rows=10, cells=log_of(0, 10))
    await sink.close(status="complete", summary={})
    assert pa.parquet.read_table(tmp_path / "provenance/row-group-00000.parquet").num_rows == 10


async def test_resume_forgets_a_row_group_whose_sidecar_is_gone(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    await sink.open(fingerprint="f", config={}, num_records=20, row_group_size=10)
    for rg in (0, 1):
        await sink.write_row_group(rg, rows(rg * 10, 10), requested_rows=10, cells=log_of(rg, 10))
    await sink.close(status="complete", summary={})
    (tmp_path / "provenance/row-group-00001.parquet").unlink()
    again = ParquetSink(tmp_path)
    await again.open(fingerprint="f", config={}, num_records=20, row_group_size=10)
    assert again.completed_row_groups() == {0: 10}  # row group 1 runs again...
    assert not (tmp_path / "parquet-files/row-group-00001.parquet").exists()  # ...from scratch
    await again.close(status="complete", summary={})


def test_cells_table_statuses_and_attempts() -> None:
    log = CellLog(2, 20, 5, ["a", "b"], {"a": {1}, "b": {1}})
    log.usage_for("b", 4).add_answer(
        alias="gen", model="m", finish_reason="stop", input_tokens=3, output_tokens=4,
        reasoning_tokens=0, cached_input_tokens=0, latency=0.5, cost=None, cached=True,
    )
    log.note_failure("b", 2, ValueError("x"), 1, final=False)  # retried once, then ok
    log.note_failure("b", 3, ValueError("y"), 3, final=True)
    log.dropped = frozenset({3})
    table = cells_table(log)
    got = [(r["row_id"], r["column"], r["status"], r["attempts"]) for r in table.to_pylist()]
    assert got == [
        (20, "a", "ok", 1),
        (21, "a", "skipped", 0),
        (22, "a", "ok", 1),
        (23, "a", "dropped_upstream", None),
        (24, "a", "ok", 1),
        (20, "b", "ok", 1),
        (21, "b", "skipped", 0),
        (22, "b", "ok", 2),
        (23, "b", "failed", 3),
        (24, "b", "cached", 1),
    ]
    assert table.column("error_class").to_pylist()[7:9] == ["ValueError", "ValueError"]


def test_a_cell_usage_without_a_price_has_no_cost() -> None:
    usage = CellUsage()
    usage.add_answer(
        alias="a", model="m", finish_reason="stop", input_tokens=1, output_tokens=1,
        reasoning_tokens=0, cached_input_tokens=0, latency=0.0, cost=1.0, cached=False,
    )
    usage.add_answer(
        alias="a", model="m", finish_reason="stop", input_tokens=1, output_tokens=1,
        reasoning_tokens=0, cached_input_tokens=0, latency=0.0, cost=None, cached=False,
    )
    assert usage.cost is None
    assert usage.requests == 2
    assert not usage.all_cached


def test_a_full_column_task_has_a_record_of_its_own_for_its_usage() -> None:
    log = CellLog(0, 0, 3, ["batch"])
    log.usage_for("batch", None).add_answer(
        alias="gen", model="m", finish_reason="stop", input_tokens=9, output_tokens=9,
        reasoning_tokens=0, cached_input_tokens=0, latency=1.0, cost=0.25, cached=False,
    )
    records = cells_table(log).to_pylist()
    assert [r["row_id"] for r in records] == [0, 1, 2, None]
    assert records[3]["cost"] == 0.25
    assert records[3]["status"] == "ok"
    assert log.spend() == (0.25, 18, 1)
    log.note_failure("batch", None, RuntimeError("boom"), 1, final=True)
    log.dropped = frozenset({0, 1, 2})
    statuses = [r["status"] for r in cells_table(log).to_pylist()]
    assert statuses == ["failed"] * 4


def test_a_directory_from_before_row_ids_is_refused_with_a_clear_message() -> None:
    from trio_designer import SinkError
    from trio_designer._sink._table import SchemaGuard

    guard = SchemaGuard()
    guard.reference = pa.schema([("n", pa.int64())])
    table = build_table({"_row_id": [5], "n": [1]}, {"_row_id": pa.int64(), "n": pa.int64()})
    with pytest.raises(SinkError, match="written before datasets had a '_row_id' column"):
        guard.conform(1, table)
