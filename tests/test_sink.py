"""Tests for ``trio_designer._sink``: build_table, the sink contract, and the parquet sink's disk.

Threads are real here (parquet writes run in ``trio.to_thread``), so these tests run in real
time; every wait is on an event, never a sleep, and every scenario is under ``fail_after``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import stat
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_designer._exceptions import SinkError
from trio_designer._sink import (
    FORMAT_VERSION,
    MemorySink,
    ParquetSink,
    build_table,
    dataset_card,
    row_group_file,
    write_atomically,
)
from trio_designer._sink._atomic import Background, Content, write_atomically_together

FINGERPRINT = "sha256:" + "a" * 64
OTHER_FINGERPRINT = "sha256:" + "b" * 64
CONFIG = {"columns": [{"name": "n", "kind": "expression", "expr": "{{ 1 }}"}], "run": {"seed": 7}}
TYPES = {"n": pa.int64(), "text": pa.string()}
BIG = 30  # seconds; real time, only reached if something hangs

Sink = ParquetSink | MemorySink


def rows(start: int, count: int) -> pa.Table:
    """A row group table: ``n`` = start..start+count-1, ``text`` = "row <n>"."""
    numbers = list(range(start, start + count))
    return build_table({"n": numbers, "text": [f"row {i}" for i in numbers]}, TYPES)


async def open_sink(sink: Sink, *, num_records: int = 100, row_group_size: int = 10) -> None:
    await sink.open(
        fingerprint=FINGERPRINT,
        config=CONFIG,
        num_records=num_records,
        row_group_size=row_group_size,
    )


@attrs.define
class Harness:
    """One sink under contract test, and how to look at what it stored."""

    sink: Sink
    _make_again: Callable[[], Sink]

    def reopen(self) -> Sink:
        """A sink over the same storage (parquet: a new instance); it becomes ``sink``."""
        self.sink = self._make_again()
        return self.sink

    def read_back(self) -> pa.Table:
        """Every stored row, in row group order, read the way a user would."""
        if isinstance(self.sink, MemorySink):
            return self.sink.table()
        assert_disk_matches_record(self.sink)
        files = sorted(self.sink.dataset_dir.iterdir())
        return ds.dataset(files, format="parquet").to_table() if files else pa.table({})


def assert_disk_matches_record(sink: ParquetSink) -> None:
    """metadata.json == the sink's record, and its files are exactly the files on disk."""
    on_disk = json.loads((sink.output_dir / "metadata.json").read_text())
    assert on_disk == sink.metadata()
    recorded = {e["file"] for e in on_disk["row_groups"].values() if e["file"] is not None}
    present = {f"parquet-files/{p.name}" for p in sink.dataset_dir.iterdir()}
    assert present == recorded
    for entry in on_disk["row_groups"].values():
        if entry["file"] is not None:
            assert pq.read_metadata(sink.output_dir / entry["file"]).num_rows == entry["rows"]


def write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def listdir(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def tmp_files(sink: ParquetSink) -> list[str]:
    tmp = sink.output_dir / ".tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


@pytest.fixture(params=["parquet", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "parquet":
        out = tmp_path / "out"
        return Harness(sink=ParquetSink(out), make_again=lambda: ParquetSink(out))
    sink = MemorySink()
    return Harness(sink=sink, make_again=lambda: sink)


# ---------------------------------------------------------------------------------------------
# build_table
# ---------------------------------------------------------------------------------------------


def test_build_table_keeps_column_order_and_declared_types() -> None:
    """Columns come out in the given order with exactly the declared types."""
    table = build_table(
        {"z": [1, 2], "a": [0.5, None], "m": ["x", "y"]},
        {"z": pa.int32(), "a": pa.float64(), "m": pa.large_string()},
    )
    assert table.schema.names == ["z", "a", "m"]
    assert table.schema.types == [pa.int32(), pa.float64(), pa.large_string()]
    assert table.to_pydict() == {"z": [1, 2], "a": [0.5, None], "m": ["x", "y"]}


def test_declared_type_survives_all_nulls_and_zero_rows() -> None:
    """A declared column keeps its type when every value is None, and with no rows at all."""
    declared = {"n": pa.int64(), "s": pa.struct([("k", pa.string())])}
    all_null = build_table({"n": [None, None], "s": [None, None]}, declared)
    empty = build_table({"n": [], "s": []}, declared)
    assert all_null.schema == empty.schema == pa.schema(list(declared.items()))


@given(
    values=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=30),
    cuts=st.lists(st.integers(0, 30), max_size=4),
)
def test_declared_types_give_every_row_group_the_same_schema(
    values: list[int | None], cuts: list[int]
) -> None:
    """However rows are split into row groups (all-null and empty groups included)."""
    bounds = [0, *sorted(min(c, len(values)) for c in cuts), len(values)]
    schemas = {
        build_table(
            {"n": values[lo:hi], "t": [None if v is None else str(v) for v in values[lo:hi]]},
            {"n": pa.int64(), "t": pa.string()},
        ).schema
        for lo, hi in itertools.pairwise(bounds)
    }
    assert schemas == {pa.schema([("n", pa.int64()), ("t", pa.string())])}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2], pa.int64()),
        ([1, 2.5], pa.float64()),
        (["a", None], pa.string()),
        ([True, None], pa.bool_()),
        ([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("us")),
        ([dt.date(2024, 1, 2)], pa.date32()),
        ([[1, 2], []], pa.list_(pa.int64())),
        ([{"b": 1}, {"a": "x"}], pa.struct([("b", pa.int64()), ("a", pa.string())])),
        ([None, None], pa.string()),
        ([], pa.string()),
    ],
)
def test_untyped_columns_are_inferred(values: list[Any], expected: pa.DataType) -> None:
    """Without a type Arrow infers one; all-null and empty columns become strings."""
    table = build_table({"c": values}, {"c": None})
    assert table.schema.field("c").type == expected


def test_missing_and_extra_type_entries() -> None:
    """A column absent from ``types`` is inferred; types of non-columns are ignored."""
    table = build_table({"c": [1]}, {"dropped": pa.string()})
    assert table.schema == pa.schema([("c", pa.int64())])


def test_structured_values_become_sorted_json_text_for_string_columns() -> None:
    """dict/list values in a string column are stored as JSON with sorted keys."""
    table = build_table(
        {"c": [{"b": 1, "a": [1, 2]}, [3, {"y": None, "x": "é"}], None, "plain"]},
        {"c": pa.string()},
    )
    assert table.column("c").to_pylist() == [
        '{"a": [1, 2], "b": 1}',
        '[3, {"x": "é", "y": null}]',
        None,
        "plain",
    ]


def test_iso_strings_fill_timestamp_and_date_columns() -> None:
    """ISO 8601 text is parsed for declared timestamp and date types."""
    table = build_table(
        {"t": ["2024-05-06T07:08:09", dt.datetime(2024, 1, 1)], "d": ["2024-05-06", None]},
        {"t": pa.timestamp("s"), "d": pa.date32()},
    )
    assert table.column("t").to_pylist() == [
        dt.datetime(2024, 5, 6, 7, 8, 9),
        dt.datetime(2024, 1, 1),
    ]
    assert table.column("d").to_pylist() == [dt.date(2024, 5, 6), None]


def test_nan_stays_nan() -> None:
    """NaN is a float value, not a null."""
    column = build_table({"f": [math.nan, None]}, {"f": pa.float64()}).column("f")
    assert column.null_count == 1
    assert math.isnan(column[0].as_py())


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"^every column of a row group needs the same number of values: "
        r"'a' has 2, 'b' has 1\.$",
    ):
        build_table({"a": [1, 2], "b": [1]}, {})


def test_a_value_that_does_not_fit_its_declared_type_is_named() -> None:
    with pytest.raises(
        SinkError,
        match=r"^column 'score': the value 'high' \(str\) at position 1 of the row group cannot "
        r"be stored as int64; fix the generator or declare a type that fits its values\.$",
    ):
        build_table({"score": [3, "high", 4]}, {"score": pa.int64()})


def test_mixed_untyped_values_ask_for_a_type() -> None:
    with pytest.raises(SinkError, match=r"^column 'x': its values \(int, str\) do not form one"):
        build_table({"x": [1, "a"]}, {"x": None})


def test_bad_iso_text_is_named() -> None:
    with pytest.raises(SinkError, match=r"^column 't': 'tomorrow' is not an ISO 8601 date/time"):
        build_table({"t": ["tomorrow"]}, {"t": pa.timestamp("s")})


def test_no_columns_gives_an_empty_table() -> None:
    assert build_table({}, {}).num_columns == 0


# ---------------------------------------------------------------------------------------------
# Contract: ParquetSink and MemorySink behave the same
# ---------------------------------------------------------------------------------------------


async def test_open_records_a_running_run(harness: Harness) -> None:
    """After open the record names the run, its size and status, and no row groups."""
    await open_sink(harness.sink, num_records=95, row_group_size=10)
    meta = harness.sink.metadata()
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["fingerprint"] == FINGERPRINT
    assert meta["config"] == CONFIG
    assert (meta["num_records"], meta["row_group_size"], meta["num_row_groups"]) == (95, 10, 10)
    assert (meta["status"], meta["row_groups"], meta["rows_written"]) == ("running", {}, 0)
    assert meta["finished_at"] is None
    assert meta["summary"] == {}
    assert meta["schema"] is None
    assert dt.datetime.fromisoformat(meta["started_at"]).tzinfo is not None
    assert harness.sink.completed_row_groups() == {}


async def test_write_returns_the_relative_path_and_records_the_entry(harness: Harness) -> None:
    await open_sink(harness.sink)
    path = await harness.sink.write_row_group(3, rows(30, 7), requested_rows=10)
    assert path == row_group_file(3) == "parquet-files/row-group-00003.parquet"
    assert harness.sink.metadata()["row_groups"] == {
        "3": {"file": path, "rows": 7, "requested_rows": 10}
    }
    assert harness.sink.completed_row_groups() == {3: 7}
    assert harness.sink.statistics().rows_written == 7
    assert harness.sink.metadata()["schema"]["columns"] == [
        {"name": "n", "type": "int64"},
        {"name": "text", "type": "string"},
    ]


async def test_out_of_order_row_groups_read_back_in_id_order(harness: Harness) -> None:
    """Row groups finish in any order; the stored data reads back in row group order."""
    await open_sink(harness.sink)
    for rg in (4, 0, 2):
        await harness.sink.write_row_group(rg, rows(rg * 10, 10), requested_rows=10)
    expected = pa.concat_tables([rows(0, 10), rows(20, 10), rows(40, 10)])
    assert harness.read_back().equals(expected)


async def test_concurrent_writes_are_all_recorded(harness: Harness) -> None:
    """Many row groups finishing at once: each one is stored and in the record."""
    await open_sink(harness.sink, num_records=200)
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            for rg in range(20):
                write = partial(harness.sink.write_row_group, requested_rows=10)
                nursery.start_soon(write, rg, rows(rg * 10, 10 - rg % 3))
    assert harness.sink.completed_row_groups() == {rg: 10 - rg % 3 for rg in range(20)}
    assert sorted(harness.read_back().column("n").to_pylist()) == [
        rg * 10 + i for rg in range(20) for i in range(10 - rg % 3)
    ]
    assert harness.sink.statistics().writes_in_flight == 0


async def test_an_empty_row_group_is_recorded_without_a_file(harness: Harness) -> None:
    """A row group whose rows were all dropped counts as written, with no file."""
    await open_sink(harness.sink)
    assert await harness.sink.write_row_group(1, rows(0, 0), requested_rows=10) is None
    assert harness.sink.metadata()["row_groups"] == {
        "1": {"file": None, "rows": 0, "requested_rows": 10}
    }
    assert harness.sink.completed_row_groups() == {1: 0}
    assert harness.read_back().num_rows == 0


async def test_close_stores_status_and_summary(harness: Harness) -> None:
    """The summary is stored as given (tuples as lists, NaN as null, dates as ISO text)."""
    await open_sink(harness.sink)
    await harness.sink.write_row_group(0, rows(0, 10), requested_rows=10)
    summary = {
        "rows": {"requested": 100, "written": 10},
        "columns": {"n": {"mean": math.nan, "range": (0, 9)}},
        "when": dt.date(2024, 1, 2),
        "ratios": [0.5, math.inf],
    }
    await harness.sink.close(status="early_shutdown", summary=summary)
    meta = harness.sink.metadata()
    assert meta["status"] == "early_shutdown"
    assert meta["finished_at"] == meta["updated_at"]
    assert meta["summary"] == {
        "rows": {"requested": 100, "written": 10},
        "columns": {"n": {"mean": None, "range": [0, 9]}},
        "when": "2024-01-02",
        "ratios": [0.5, None],
    }
    assert harness.sink.statistics().state == "closed"


async def test_commit_later_is_recorded_by_close(harness: Harness) -> None:
    """A ``commit_later`` write is stored at once (it reads back, it counts, it cannot be written
    twice) and enters the record with the next record write: here the final one of close()."""
    await open_sink(harness.sink, num_records=20)
    await harness.sink.write_row_group(0, rows(0, 10), requested_rows=10)
    path = await harness.sink.write_row_group(1, rows(10, 8), requested_rows=10, commit_later=True)
    assert path == row_group_file(1)
    assert harness.sink.metadata()["row_groups"].keys() == {"0"}  # not recorded yet
    assert harness.sink.statistics().rows_written == 18  # but stored
    with pytest.raises(ValueError, match=r"row group 1 was already written"):
        await harness.sink.write_row_group(1, rows(10, 8), requested_rows=10)
    await harness.sink.close(status="complete", summary={})
    meta = harness.sink.metadata()
    assert meta["row_groups"]["1"] == {"file": path, "rows": 8, "requested_rows": 10}
    assert (meta["status"], meta["rows_written"]) == ("complete", 18)
    assert harness.read_back().equals(pa.concat_tables([rows(0, 10), rows(10, 8)]))


async def test_a_later_commit_records_the_staged_entries_too(harness: Harness) -> None:
    await open_sink(harness.sink)
    await harness.sink.write_row_group(2, rows(20, 10), requested_rows=10, commit_later=True)
    await harness.sink.write_row_group(0, rows(0, 10), requested_rows=10)
    assert harness.sink.completed_row_groups() == {0: 10, 2: 10}


async def test_a_background_open_refuses_before_it_returns(harness: Harness) -> None:
    """``open(background=...)``: what refuses the run is raised by open itself; the storage is
    prepared by a task of the nursery, and writes wait for it."""
    await open_sink(harness.sink)
    await harness.sink.write_row_group(0, rows(0, 10), requested_rows=10)
    await harness.sink.close(status="interrupted", summary={})
    again = harness.reopen()
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            with pytest.raises(SinkError, match=r"holds a different run"):
                await again.open(
                    fingerprint=OTHER_FINGERPRINT,
                    config=CONFIG,
                    num_records=100,
                    row_group_size=10,
                    background=nursery,
                )
            await again.open(
                fingerprint=FINGERPRINT,
                config=CONFIG,
                num_records=100,
                row_group_size=10,
                background=nursery,
            )
            assert again.completed_row_groups() == {0: 10}  # known before it is prepared
            await again.write_row_group(1, rows(10, 10), requested_rows=10)
            await again.close(status="complete", summary={})
    assert again.metadata()["status"] == "complete"
    assert again.completed_row_groups() == {0: 10, 1: 10}


async def test_a_failed_background_preparation_fails_writes_and_stores_nothing(
    out: Path,
) -> None:
    sink = ParquetSink(out)
    caught: list[BaseException] = []
    with trio.fail_after(BIG):
        try:
            async with trio.open_nursery() as nursery:
                await open_sink_in(sink, nursery)  # the checks pass: nothing is there
                # Before the background task runs: the first record cannot replace a
                # directory, a real disk error.
                (out / "metadata.json").mkdir(parents=True)
                with pytest.raises(SinkError, match=r"^writing to output directory"):
                    await sink.write_row_group(0, rows(0, 1), requested_rows=1)
                await sink.close(status="failed", summary={})
        except BaseExceptionGroup as group:
            caught.extend(group.exceptions)
    assert [type(e) for e in caught] == [SinkError]
    assert sink.statistics().state == "closed"
    assert listdir(out / "parquet-files") == []


async def test_a_deferred_preparation_waits_for_its_start_or_for_a_write(out: Path) -> None:
    """``open(background=..., defer_preparation=True)``: nothing is on disk until
    ``start_preparing`` (or a write, or ``close``, that needs the storage); then it is
    prepared as an undeferred one would be."""
    for trigger in ("start", "write", "close"):
        root = out / trigger
        sink = ParquetSink(root)
        with trio.fail_after(BIG):
            async with trio.open_nursery() as nursery:
                await open_sink_in(sink, nursery, defer_preparation=True)
                await trio.testing.wait_all_tasks_blocked()
                assert not root.exists()  # the background task waits
                if trigger == "start":
                    sink.start_preparing()
                    await trio.testing.wait_all_tasks_blocked()
                    # A worker thread writes it: no trio event to wait for.
                    while not (root / "metadata.json").exists():  # noqa: ASYNC110
                        await trio.sleep(0.001)
                    assert json.loads((root / "metadata.json").read_bytes())["status"] == (
                        "running"
                    )
                if trigger != "close":
                    await sink.write_row_group(0, rows(0, 10), requested_rows=10)
                await sink.close(status="interrupted", summary={})
        assert sink.metadata()["status"] == "interrupted"
        assert_disk_matches_record(sink)


async def test_a_deferred_preparation_cancelled_while_it_waits_still_prepares(
    out: Path,
) -> None:
    """Its nursery cancelled before the start (the run failed before ``close``): the storage
    is still prepared, as an undeferred preparation would have been, and a ``close`` after
    that stores the final record."""
    sink = ParquetSink(out)
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            await open_sink_in(sink, nursery, defer_preparation=True)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert json.loads((out / "metadata.json").read_bytes())["status"] == "running"
        await sink.close(status="failed", summary={})
    assert sink.metadata()["status"] == "failed"


async def open_sink_in(
    sink: Sink, nursery: trio.Nursery, *, defer_preparation: bool = False
) -> None:
    await sink.open(
        fingerprint=FINGERPRINT,
        config=CONFIG,
        num_records=100,
        row_group_size=10,
        background=nursery,
        defer_preparation=defer_preparation,
    )


async def test_close_refuses_an_unknown_status_and_unstorable_summary(harness: Harness) -> None:
    await open_sink(harness.sink)
    with pytest.raises(
        ValueError,
        match=r"^status must be one of \['budget_exhausted', 'complete', 'early_shutdown', "
        r"'failed', 'interrupted'\], got 'done'\.$",
    ):
        await harness.sink.close(status="done", summary={})
    with pytest.raises(TypeError, match=r"^summary\['x'\]: a set cannot be stored"):
        await harness.sink.close(status="complete", summary={"x": {1}})
    assert harness.sink.metadata()["status"] == "running"


async def test_reopening_the_same_run_keeps_its_row_groups(harness: Harness) -> None:
    """Same fingerprint: written row groups stay (for resume), the status is running again."""
    await open_sink(harness.sink)
    await harness.sink.write_row_group(2, rows(20, 9), requested_rows=10)
    await harness.sink.write_row_group(5, rows(0, 0), requested_rows=10)
    await harness.sink.close(status="interrupted", summary={"x": 1})
    started_at = harness.sink.metadata()["started_at"]

    again = harness.reopen()
    await open_sink(again, num_records=120)
    assert again.completed_row_groups() == {2: 9, 5: 0}
    meta = again.metadata()
    assert (meta["status"], meta["summary"], meta["num_records"]) == ("running", {}, 120)
    assert meta["started_at"] == started_at
    await again.write_row_group(0, rows(0, 10), requested_rows=10)
    await again.close(status="complete", summary={})
    assert harness.read_back().column("n").to_pylist() == [*range(10), *range(20, 29)]


async def test_reopening_without_resume_refuses_written_row_groups(harness: Harness) -> None:
    """resume=False: a run that already wrote row groups is refused, nothing is changed."""
    await open_sink(harness.sink)
    await harness.sink.close(status="complete", summary={})
    again = harness.reopen()
    await again.open(
        fingerprint=FINGERPRINT, config=CONFIG, num_records=100, row_group_size=10, resume=False
    )  # no row groups yet: reused
    await again.write_row_group(4, rows(40, 10), requested_rows=10)
    await again.close(status="interrupted", summary={})
    refused = harness.reopen()
    with pytest.raises(
        SinkError,
        match=r" already holds 1 written row group\(s\) of this run; pass resume=True to "
        r"continue it, or (pass another output_dir= or remove the directory|use a new MemorySink)",
    ):
        await refused.open(
            fingerprint=FINGERPRINT, config=CONFIG, num_records=100, row_group_size=10, resume=False
        )
    if isinstance(refused, ParquetSink):
        stored = json.loads((refused.output_dir / "metadata.json").read_text())
    else:
        stored = refused.metadata()
    assert (stored["status"], list(stored["row_groups"])) == ("interrupted", ["4"])


async def test_reopening_with_another_fingerprint_is_refused(harness: Harness) -> None:
    await open_sink(harness.sink)
    await harness.sink.close(status="complete", summary={})
    with pytest.raises(SinkError, match=r" holds a different run \(fingerprint sha256:a+, "):
        await harness.reopen().open(
            fingerprint=OTHER_FINGERPRINT, config=CONFIG, num_records=100, row_group_size=10
        )


async def test_reopening_with_another_row_group_size_is_refused(harness: Harness) -> None:
    await open_sink(harness.sink)
    await harness.sink.close(status="complete", summary={})
    with pytest.raises(SinkError, match=r"row_group_size 10, but this run uses 20"):
        await open_sink(harness.reopen(), row_group_size=20)


async def test_misuse_is_refused(harness: Harness) -> None:
    """Writes need an open sink, a valid id, a new id and a sane requested_rows."""
    sink = harness.sink
    with pytest.raises(RuntimeError, match=r"needs an open sink, but the sink is new"):
        await sink.write_row_group(0, rows(0, 1), requested_rows=1)
    with pytest.raises(RuntimeError, match=r"^completed_row_groups\(\) needs a sink that was"):
        sink.completed_row_groups()
    await open_sink(sink, num_records=25)
    with pytest.raises(RuntimeError, match=r"^the sink is already open"):
        await open_sink(sink)
    with pytest.raises(ValueError, match=r"^row group 3 does not exist: this run has 3 row"):
        await sink.write_row_group(3, rows(0, 1), requested_rows=1)
    with pytest.raises(ValueError, match=r"requested_rows must be between the table's 5 rows"):
        await sink.write_row_group(0, rows(0, 5), requested_rows=4)
    await sink.write_row_group(0, rows(0, 5), requested_rows=10)
    with pytest.raises(ValueError, match=r"^row group 0 was already written; write it only once"):
        await sink.write_row_group(0, rows(0, 5), requested_rows=10)
    await sink.close(status="complete", summary={})
    with pytest.raises(RuntimeError, match=r"needs an open sink, but the sink is closed"):
        await sink.write_row_group(1, rows(0, 1), requested_rows=1)
    with pytest.raises(RuntimeError, match=r"^close\(\) needs an open sink"):
        await sink.close(status="complete", summary={})


async def test_a_different_column_type_is_refused_and_nothing_stored(harness: Harness) -> None:
    await open_sink(harness.sink)
    await harness.sink.write_row_group(0, build_table({"n": [1]}, {"n": None}), requested_rows=1)
    floats = build_table({"n": [1.5]}, {"n": None})
    with pytest.raises(
        SinkError,
        match=r"^row group 1: column 'n' holds double values, but earlier row groups stored it "
        r"as int64; every row group file needs the same schema, so declare the column's type",
    ):
        await harness.sink.write_row_group(1, floats, requested_rows=1)
    assert harness.sink.completed_row_groups() == {0: 1}
    assert harness.read_back().column("n").to_pylist() == [1]


async def test_different_columns_are_refused(harness: Harness) -> None:
    await open_sink(harness.sink)
    await harness.sink.write_row_group(0, rows(0, 1), requested_rows=1)
    swapped = rows(0, 1).select(["text", "n"])
    with pytest.raises(SinkError, match=r"^row group 1 has the columns \['text', 'n'\], but"):
        await harness.sink.write_row_group(1, swapped, requested_rows=1)


async def test_an_all_null_column_takes_the_established_type(harness: Harness) -> None:
    """An untyped column that is all null in a later row group is stored with the first type."""
    await open_sink(harness.sink)
    await harness.sink.write_row_group(0, build_table({"n": [1]}, {"n": None}), requested_rows=1)
    await harness.sink.write_row_group(
        1, build_table({"n": [None, None]}, {"n": None}), requested_rows=2
    )
    table = harness.read_back()
    assert table.schema == pa.schema([("n", pa.int64())])
    assert table.column("n").to_pylist() == [1, None, None]


async def test_every_async_method_is_a_checkpoint(harness: Harness) -> None:
    """open, write (empty or not) and close all checkpoint, as trio's API rules require."""
    with trio.testing.assert_checkpoints():
        await open_sink(harness.sink)
    with trio.testing.assert_checkpoints():
        await harness.sink.write_row_group(0, rows(0, 3), requested_rows=10)
    with trio.testing.assert_checkpoints():
        await harness.sink.write_row_group(1, rows(0, 0), requested_rows=10)
    with trio.testing.assert_checkpoints():
        await harness.sink.close(status="complete", summary={})


async def test_a_write_cancelled_before_it_starts_stores_nothing(harness: Harness) -> None:
    await open_sink(harness.sink)
    with trio.CancelScope() as scope:
        scope.cancel()
        await harness.sink.write_row_group(0, rows(0, 3), requested_rows=3)
    assert scope.cancelled_caught
    assert harness.sink.completed_row_groups() == {}
    assert harness.read_back().num_rows == 0
    # the cancelled table did not fix the schema: another one is welcome
    await harness.sink.write_row_group(0, build_table({"x": ["a"]}, {}), requested_rows=1)


async def test_a_cancelled_close_still_closes(harness: Harness) -> None:
    """Like trio's aclose(): the final record is stored, then Cancelled is raised."""
    await open_sink(harness.sink)
    with trio.CancelScope() as scope:
        scope.cancel()
        await harness.sink.close(status="interrupted", summary={"why": "ctrl-c"})
    assert scope.cancelled_caught
    assert harness.sink.metadata()["status"] == "interrupted"
    assert harness.sink.statistics().state == "closed"


async def test_statistics_count_row_groups_and_rows(harness: Harness) -> None:
    assert harness.sink.statistics().state == "new"
    await open_sink(harness.sink)
    await harness.sink.write_row_group(0, rows(0, 4), requested_rows=10)
    await harness.sink.write_row_group(1, rows(0, 0), requested_rows=10)
    stats = harness.sink.statistics()
    assert (stats.state, stats.row_groups_written, stats.rows_written) == ("open", 2, 4)


# ---------------------------------------------------------------------------------------------
# ParquetSink on disk
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


async def test_layout_after_a_run(out: Path) -> None:
    """metadata.json + parquet-files/row-group-NNNNN.parquet; .tmp is gone after close."""
    sink = ParquetSink(out)
    await open_sink(sink)
    assert listdir(out) == [".tmp", "metadata.json", "parquet-files", "provenance"]
    for rg in (0, 7):
        await sink.write_row_group(rg, rows(rg * 10, 10), requested_rows=10)
        assert_disk_matches_record(sink)
    await sink.close(status="complete", summary={})
    assert_disk_matches_record(sink)
    assert listdir(out) == ["metadata.json", "parquet-files", "provenance"]
    assert listdir(sink.dataset_dir) == [
        "row-group-00000.parquet",
        "row-group-00007.parquet",
    ]
    assert json.loads((out / "metadata.json").read_text())["status"] == "complete"


async def test_every_file_has_the_same_schema_and_reads_as_one_dataset(out: Path) -> None:
    """pyarrow.dataset over parquet-files/ reads every row group, all with one schema."""
    sink = ParquetSink(out)
    await open_sink(sink)
    types = {"n": pa.int64(), "maybe": pa.float64(), "when": pa.timestamp("us", tz="UTC")}
    for rg in range(3):
        maybe = [None] * 2 if rg == 1 else [rg + 0.5, None]
        table = build_table(
            {"n": [rg, rg], "maybe": maybe, "when": [dt.datetime(2024, 1, 1 + rg)] * 2}, types
        )
        await sink.write_row_group(rg, table, requested_rows=2)
    schemas = {pq.read_schema(p).remove_metadata() for p in sink.dataset_dir.iterdir()}
    assert schemas == {pa.schema(list(types.items()))}
    table = ds.dataset(sink.dataset_dir).to_table()
    assert sorted(table.column("n").to_pylist()) == [0, 0, 1, 1, 2, 2]


async def test_cancel_while_serialising_leaves_no_file_and_no_tmp(out: Path) -> None:
    """Cancelled mid-write: the partial file stays in .tmp, then is deleted; nothing visible."""
    entered, release = threading.Event(), threading.Event()

    def slow_writer(table: pa.Table, file: BinaryIO) -> None:
        pq.write_table(table, file)
        entered.set()
        release.wait(BIG)

    sink = ParquetSink(out, parquet_writer=slow_writer)
    await open_sink(sink)
    returned: list[str | None] = []
    scope = trio.CancelScope()

    async def write() -> None:
        with scope:
            returned.append(await sink.write_row_group(0, rows(0, 10), requested_rows=10))

    try:
        with trio.fail_after(BIG):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await trio.to_thread.run_sync(entered.wait)
                assert [name.split(".parquet.")[0] for name in tmp_files(sink)] == [
                    "row-group-00000"
                ]
                assert list(sink.dataset_dir.iterdir()) == []
                scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert sink.statistics().writes_in_flight == 1  # waits for its thread
                release.set()
    finally:
        release.set()
    assert scope.cancelled_caught
    assert returned == []
    assert tmp_files(sink) == []
    assert sink.completed_row_groups() == {}
    assert_disk_matches_record(sink)


async def test_a_cancel_after_the_rename_still_commits_and_returns(out: Path) -> None:
    """Past the point of no return the write finishes: the file is recorded, the path returned.

    The test parks the commit by holding the sink's record lock (a private field: there is no
    public way to pause a write between the rename and the commit), cancels, then lets go.
    """
    sink = ParquetSink(out)
    await open_sink(sink)
    returned: list[str | None] = []
    scope = trio.CancelScope()

    async def write() -> None:
        with scope:
            returned.append(await sink.write_row_group(0, rows(0, 10), requested_rows=10))

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery, sink._lock:
            nursery.start_soon(write)
            # Poll: a task waiting on a thread counts as blocked, so wait_all_tasks_blocked
            # cannot tell "renamed, waiting for the lock" from "still in the thread".
            while sink._lock.statistics().tasks_waiting == 0:  # noqa: ASYNC110
                await trio.sleep(0.001)
            assert listdir(sink.dataset_dir) == ["row-group-00000.parquet"]
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
    assert returned == [row_group_file(0)]
    assert sink.completed_row_groups() == {0: 10}
    assert_disk_matches_record(sink)


async def test_cancellation_at_any_moment_keeps_files_and_record_consistent(out: Path) -> None:
    """Returned ⇔ file + entry; raised Cancelled ⇔ neither — whatever stage each write was in.

    The 4th serialisation to finish cancels every write, so the writes are caught at every
    stage (not started, serialising, past the rename, committing). Which write lands in which
    stage varies from run to run; the invariant checked here must hold for all of them.
    """
    finished, lock = [0], threading.Lock()
    scope = trio.CancelScope()

    def writer(table: pa.Table, file: BinaryIO) -> None:
        pq.write_table(table, file)
        with lock:
            finished[0] += 1
            fourth = finished[0] == 4
        if fourth:
            trio.from_thread.run_sync(scope.cancel)

    sink = ParquetSink(out, parquet_writer=writer)
    await open_sink(sink, num_records=120)
    outcome: dict[int, str | None] = {}

    async def write(rg: int) -> None:
        try:
            outcome[rg] = await sink.write_row_group(rg, rows(rg * 10, 10), requested_rows=10)
        except trio.Cancelled:
            outcome[rg] = "cancelled"
            raise

    with trio.fail_after(BIG), scope:
        async with trio.open_nursery() as nursery:
            for rg in range(12):
                nursery.start_soon(write, rg)
    assert scope.cancelled_caught
    assert sorted(outcome) == list(range(12))
    stored = {rg for rg, result in outcome.items() if result != "cancelled"}
    assert "cancelled" in outcome.values()
    assert set(sink.completed_row_groups()) == stored
    assert all(outcome[rg] == row_group_file(rg) for rg in stored)
    assert tmp_files(sink) == []
    assert_disk_matches_record(sink)


async def test_a_failing_serialisation_leaves_nothing(out: Path) -> None:
    def broken_writer(table: pa.Table, file: BinaryIO) -> None:
        file.write(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    sink = ParquetSink(out, parquet_writer=broken_writer)
    await open_sink(sink)
    with pytest.raises(
        SinkError,
        match=r"^writing to output directory '.*out' failed: \[Errno 28\] No space left on "
        r"device; free some disk space and run again\.$",
    ):
        await sink.write_row_group(0, rows(0, 3), requested_rows=3)
    assert tmp_files(sink) == []
    assert sink.completed_row_groups() == {}
    assert_disk_matches_record(sink)


async def test_a_failed_metadata_commit_withdraws_the_file(out: Path) -> None:
    """If metadata.json cannot be replaced, the new parquet file is removed again."""
    sink = ParquetSink(out)
    await open_sink(sink)
    await sink.write_row_group(0, rows(0, 3), requested_rows=3)
    (out / "metadata.json").unlink()
    (out / "metadata.json").mkdir()  # os.replace(file, directory) fails: a real disk error
    with pytest.raises(SinkError, match=r"^writing to output directory"):
        await sink.write_row_group(1, rows(10, 3), requested_rows=3)
    assert listdir(sink.dataset_dir) == ["row-group-00000.parquet"]
    assert sink.completed_row_groups() == {0: 3}
    assert tmp_files(sink) == []


async def test_close_waits_for_writes_in_flight(out: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_writer(table: pa.Table, file: BinaryIO) -> None:
        pq.write_table(table, file)
        entered.set()
        release.wait(BIG)

    sink = ParquetSink(out, parquet_writer=slow_writer)
    await open_sink(sink)
    try:
        with trio.fail_after(BIG):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(sink.write_row_group, 0, rows(0, 5), requested_rows=5))
                await trio.to_thread.run_sync(entered.wait)
                nursery.start_soon(partial(sink.close, status="complete", summary={}))
                await trio.testing.wait_all_tasks_blocked()
                assert sink.statistics().state == "closing"
                with pytest.raises(RuntimeError, match=r"but the sink is closing"):
                    await sink.write_row_group(1, rows(0, 1), requested_rows=1)
                assert json.loads((out / "metadata.json").read_text())["status"] == "running"
                release.set()
    finally:
        release.set()
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["status"], list(meta["row_groups"])) == ("complete", ["0"])
    assert not (out / ".tmp").exists()


@pytest.mark.parametrize("junk", ["notes.txt", "parquet-files/x.parquet", ".tmp/stray", ".hidden"])
async def test_a_non_empty_directory_without_metadata_is_refused(out: Path, junk: str) -> None:
    write_file(out / junk, "x")
    with pytest.raises(
        SinkError,
        match=r"^output directory '.*out' is not empty and has no metadata\.json, so it holds no "
        r"trio_designer run; pass another output_dir= or empty the directory\.$",
    ):
        await open_sink(ParquetSink(out))


async def test_empty_scaffolding_from_a_crashed_open_is_accepted(out: Path) -> None:
    (out / "parquet-files").mkdir(parents=True)
    (out / ".tmp").mkdir()
    await open_sink(ParquetSink(out))
    assert (out / "metadata.json").is_file()


async def test_a_file_as_output_dir_is_refused(out: Path) -> None:
    write_file(out, "x")
    with pytest.raises(
        SinkError, match=r"^output directory '.*out' is a file; pass another output_dir=\.$"
    ):
        await open_sink(ParquetSink(out))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"metadata\.json is not valid JSON"),
        ("[1, 2]", r"metadata\.json is not a trio_designer run record \(the document is not"),
        ('{"format_version": 99}', r"\(format_version is 99, this version reads 1\)"),
        ('{"format_version": 1}', r"is not a trio_designer run record \('fingerprint'\)"),
    ],
)
async def test_an_unreadable_metadata_file_is_refused(
    out: Path, content: str, message: str
) -> None:
    write_file(out / "metadata.json", content)
    with pytest.raises(SinkError, match=message):
        await open_sink(ParquetSink(out))


async def test_reopening_cleans_up_after_a_crash(out: Path) -> None:
    """Stale tmp files and unrecorded files go; entries whose file vanished are forgotten."""
    sink = ParquetSink(out)
    await open_sink(sink)
    for rg in range(3):
        await sink.write_row_group(rg, rows(rg * 10, 10), requested_rows=10)
    # a crash: no close(), a half-written tmp file, a renamed-but-uncommitted file, a lost file
    (out / ".tmp" / "row-group-00004.parquet.0123456789abcdef").write_bytes(b"PAR1")
    pq.write_table(rows(40, 10), out / row_group_file(4))
    (out / row_group_file(1)).unlink()
    (out / "parquet-files" / "README.txt").write_text("not ours: kept")

    again = ParquetSink(out)
    await open_sink(again)
    assert again.completed_row_groups() == {0: 10, 2: 10}
    assert tmp_files(again) == []
    assert listdir(again.dataset_dir) == [
        "README.txt",
        "row-group-00000.parquet",
        "row-group-00002.parquet",
    ]


async def test_a_continued_run_keeps_the_schema_of_its_files(out: Path) -> None:
    sink = ParquetSink(out)
    await open_sink(sink)
    await sink.write_row_group(0, rows(0, 2), requested_rows=2)
    await sink.close(status="interrupted", summary={})
    again = ParquetSink(out)
    await open_sink(again)
    texts = build_table({"n": ["one"], "text": ["x"]}, {})
    with pytest.raises(SinkError, match=r"column 'n' holds string values, but earlier row groups"):
        await again.write_row_group(1, texts, requested_rows=1)


async def test_a_continued_run_accepts_types_parquet_cannot_store_exactly(out: Path) -> None:
    """Regression: parquet reads timestamp[s] back as timestamp[ms]; resuming must not care."""
    types = {"when": pa.timestamp("s")}
    sink = ParquetSink(out)
    await open_sink(sink)
    first = build_table({"when": ["2024-01-01T00:00:00"]}, types)
    await sink.write_row_group(0, first, requested_rows=1)
    await sink.close(status="interrupted", summary={})
    assert pq.read_schema(out / row_group_file(0)).field("when").type == pa.timestamp("ms")
    again = ParquetSink(out)
    await open_sink(again)
    await again.write_row_group(1, build_table({"when": [None]}, types), requested_rows=1)
    await again.write_row_group(2, build_table({"when": ["2024-01-03"]}, types), requested_rows=1)
    assert again.completed_row_groups() == {0: 1, 1: 1, 2: 1}


async def test_the_parquet_writer_can_be_swapped(out: Path) -> None:
    """A custom writer (here: zstd) decides how bytes are laid out, not where they go."""
    sink = ParquetSink(out, parquet_writer=lambda t, f: pq.write_table(t, f, compression="zstd"))
    await open_sink(sink)
    await sink.write_row_group(0, rows(0, 10), requested_rows=10)
    metadata = pq.read_metadata(out / row_group_file(0))
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_row_group_file_names_are_zero_padded() -> None:
    assert [row_group_file(i) for i in (0, 42, 123456)] == [
        "parquet-files/row-group-00000.parquet",
        "parquet-files/row-group-00042.parquet",
        "parquet-files/row-group-123456.parquet",
    ]


# ---------------------------------------------------------------------------------------------
# The atomic write (metadata, row-group files, trace.json, failures.jsonl)
# ---------------------------------------------------------------------------------------------


def test_write_atomically_fsyncs_the_file_then_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Content fsynced while the old file is still in place; the directory fsynced after the
    rename, so the new entry survives a power cut.

    ``os.fsync`` (the standard library, not our code) is wrapped to note, at each call, what
    the descriptor is (a file or the directory, by inode) and what a reader of the
    destination sees at that moment; it still really fsyncs.
    """
    target = tmp_path / "record.json"
    target.write_bytes(b"old")
    real_fsync = os.fsync
    synced: list[tuple[str, int, bytes]] = []

    def observed_fsync(fd: int) -> None:
        status = os.fstat(fd)
        kind = "directory" if stat.S_ISDIR(status.st_mode) else "file"
        synced.append((kind, status.st_ino, target.read_bytes()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", observed_fsync)
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert synced == [
        ("file", target.stat().st_ino, b"old"),  # the tmp file, renamed over the target later
        ("directory", tmp_path.stat().st_ino, b"new"),  # after the rename
    ]
    assert listdir(tmp_path) == ["record.json"]  # no tmp file left


def test_write_atomically_streams_into_a_tmp_dir_and_can_give_up(tmp_path: Path) -> None:
    """A writer function streams the content through ``tmp_dir``; a ``before_replace`` that
    raises leaves the destination untouched and no tmp file behind."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    target = tmp_path / "data.bin"
    seen_in_scratch: list[list[str]] = []

    def write(stream: BinaryIO) -> None:
        stream.write(b"streamed")
        seen_in_scratch.append(listdir(scratch))

    write_atomically(target, write, tmp_dir=scratch)
    assert target.read_bytes() == b"streamed"
    assert [[name.startswith("data.bin.") for name in names] for names in seen_in_scratch] == [
        [True]
    ]

    def give_up() -> None:
        raise RuntimeError("cancelled before the rename")

    with pytest.raises(RuntimeError, match="before the rename"):
        write_atomically(target, b"lost", tmp_dir=scratch, before_replace=give_up)
    assert target.read_bytes() == b"streamed"
    assert listdir(scratch) == []
    assert listdir(tmp_path) == ["data.bin", "scratch"]


# ---------------------------------------------------------------------------------------------
# MemorySink specifics
# ---------------------------------------------------------------------------------------------


async def test_memory_sink_table_is_empty_before_any_row() -> None:
    sink = MemorySink()
    await open_sink(sink)
    assert sink.table().num_columns == 0


@pytest.mark.parametrize(
    ("first", "again", "size"), [(12, 15, 5), (100, 90, 10)], ids=["past-short-group", "shrink"]
)
async def test_resuming_with_a_plan_that_breaks_written_groups_is_refused(
    harness: Harness, first: int, again: int, size: int
) -> None:
    """Growing past a short last row group (it would stay short) or shrinking is refused."""
    await open_sink(harness.sink, num_records=first, row_group_size=size)
    await harness.sink.write_row_group(0, rows(0, size), requested_rows=size)
    await harness.sink.close(status="interrupted", summary={})
    with pytest.raises(SinkError, match=rf"holds a run of {first} records .* not {again}; or "):
        await open_sink(harness.reopen(), num_records=again, row_group_size=size)


def test_write_atomically_together_orders_the_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file is renamed only once its content is fsynced; a stage's directories are fsynced
    before the next stage's first rename (so a record never becomes durable before the files
    it names); a function stage is made once the earlier stages' tmp files are written;
    everything is in place and no tmp file is left when the call returns.

    ``os.fsync`` and ``os.replace`` (the standard library) are wrapped to note the order of
    events; they still really run. The fsyncs run in several threads, and a later stage's
    file fsyncs may still run while an earlier stage is renamed: the order is checked per
    file and per stage, not as one sequence."""
    (tmp_path / "data").mkdir()
    (tmp_path / ".tmp").mkdir()
    real_fsync, real_replace = os.fsync, os.replace
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def observed_fsync(fd: int) -> None:
        real_fsync(fd)
        status = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(status.st_mode) else "file"
        with lock:
            events.append((f"fsync-{kind}", str(status.st_ino)))

    def observed_replace(src: Any, dst: Any) -> None:
        ino = str(os.stat(src).st_ino)
        real_replace(src, dst)
        with lock:
            events.append(("replace", f"{Path(dst).name}:{ino}"))

    def record_stage() -> list[tuple[Path, Content]]:
        with lock:
            events.append(("made", "record"))
        assert sorted(p.name.split(".")[0] for p in (tmp_path / ".tmp").iterdir()) == ["a", "b"]
        return [(tmp_path / "record.json", b"r")]

    monkeypatch.setattr(os, "fsync", observed_fsync)
    monkeypatch.setattr(os, "replace", observed_replace)
    write_atomically_together(
        [
            [
                (tmp_path / "data" / "a.parquet", b"a"),
                (tmp_path / "b.bin", lambda f: f.write(b"b")),
            ],
            record_stage,
        ],
        tmp_dir=tmp_path / ".tmp",
    )
    kinds = [kind for kind, _ in events]
    assert sorted(kinds) == sorted(
        ["fsync-file"] * 3 + ["made"] + ["replace"] * 3 + ["fsync-dir"] * 3
    )
    at = {event: i for i, event in enumerate(events)}
    replaced = {
        name.split(":")[0]: (i, name.split(":")[1])
        for (kind, name), i in at.items()
        if kind == "replace"
    }
    for index, ino in replaced.values():  # each file's content is durable before its rename
        assert at[("fsync-file", ino)] < index
    first_stage = max(replaced["a.parquet"][0], replaced["b.bin"][0])
    data_dir, root = str((tmp_path / "data").stat().st_ino), str(tmp_path.stat().st_ino)
    dir_syncs = [i for i, (kind, ino) in enumerate(events) if kind == "fsync-dir"]
    assert len(dir_syncs) == 3
    # Stage 1's two directories are fsynced after its renames, before the record's rename.
    assert {events[i][1] for i in dir_syncs[:2]} == {data_dir, root}
    assert first_stage < min(dir_syncs[:2])
    assert max(dir_syncs[:2]) < replaced["record.json"][0]
    assert events[-1] == ("fsync-dir", root)
    assert dir_syncs[2] == len(events) - 1
    assert at[("made", "record")] < min(index for index, _ in replaced.values())
    assert [(tmp_path / p).read_bytes() for p in ("data/a.parquet", "b.bin", "record.json")] == [
        b"a",
        b"b",
        b"r",
    ]
    assert listdir(tmp_path / ".tmp") == []


def test_write_atomically_together_with_before_replace_fsyncs_everything_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``before_replace`` (the last moment to give up): every file of every stage is
    fsynced before it is called, and it is called before the first rename."""
    (tmp_path / ".tmp").mkdir()
    real_fsync, real_replace = os.fsync, os.replace
    events: list[str] = []
    lock = threading.Lock()

    def observed_fsync(fd: int) -> None:
        real_fsync(fd)
        with lock:
            events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")

    def observed_replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        with lock:
            events.append("replace")

    monkeypatch.setattr(os, "fsync", observed_fsync)
    monkeypatch.setattr(os, "replace", observed_replace)
    write_atomically_together(
        [[(tmp_path / "a", b"a")], lambda: [(tmp_path / "b", b"b"), (tmp_path / "c", b"c")]],
        tmp_dir=tmp_path / ".tmp",
        before_replace=lambda: events.append("before_replace"),
    )
    assert events == ["fsync-file"] * 3 + [
        "before_replace",
        "replace",
        "fsync-dir",
        "replace",
        "replace",
        "fsync-dir",
    ]


def test_write_atomically_together_replaces_nothing_when_it_gives_up(tmp_path: Path) -> None:
    """A content function or ``before_replace`` that raises: no file replaced, no tmp file."""
    (tmp_path / ".tmp").mkdir()
    (tmp_path / "old").write_bytes(b"old")

    def broken(stream: BinaryIO) -> None:
        stream.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically_together(
            [[(tmp_path / "old", b"new"), (tmp_path / "x", broken)]], tmp_dir=tmp_path / ".tmp"
        )

    def give_up() -> None:
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        write_atomically_together(
            [[(tmp_path / "old", b"new")]], tmp_dir=tmp_path / ".tmp", before_replace=give_up
        )
    assert (tmp_path / "old").read_bytes() == b"old"
    assert listdir(tmp_path) == [".tmp", "old"]
    assert listdir(tmp_path / ".tmp") == []


def test_commit_early_commits_a_stage_while_the_next_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``commit_early``, stage 1 is renamed and its folders fsynced by the commit thread
    while the function stage is being made (it waits here for them: done afterwards, it
    would time out); the order stays: content fsync before each rename, stage 1's folder
    fsyncs before the record's rename. A function stage that raises then leaves stage 1 in
    place and no tmp file."""
    (tmp_path / "data").mkdir()
    (tmp_path / ".tmp").mkdir()
    real_fsync, real_replace = os.fsync, os.replace
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    dirs_synced = threading.Event()
    data_dir, root = (tmp_path / "data").stat().st_ino, tmp_path.stat().st_ino
    # Stage 1's folders, whose fsyncs the record stage waits for (run concurrently: all of
    # them, not the first, or an assertion below would race the others).
    unsynced = {data_dir, root}

    def observed_fsync(fd: int) -> None:
        real_fsync(fd)
        status = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(status.st_mode) else "file"
        with lock:
            events.append((f"fsync-{kind}", str(status.st_ino)))
        with lock:
            unsynced.discard(status.st_ino)
            if not unsynced:
                dirs_synced.set()

    def observed_replace(src: Any, dst: Any) -> None:
        ino = str(os.stat(src).st_ino)
        real_replace(src, dst)
        with lock:
            events.append(("replace", f"{Path(dst).name}:{ino}"))

    def record_stage() -> list[tuple[Path, Content]]:
        assert dirs_synced.wait(BIG)  # stage 1 committed while this stage is made
        with lock:
            events.append(("made", "record"))
        return [(tmp_path / "record.json", b"r")]

    monkeypatch.setattr(os, "fsync", observed_fsync)
    monkeypatch.setattr(os, "replace", observed_replace)
    stage_1: list[tuple[Path, Content]] = [
        (tmp_path / "data" / "a.parquet", Background(lambda f: f.write(b"a"))),
        (tmp_path / "b.bin", b"b"),
    ]
    write_atomically_together(
        [stage_1, record_stage], tmp_dir=tmp_path / ".tmp", commit_early=True
    )
    at = {event: i for i, event in enumerate(events)}
    replaced = {
        name.split(":")[0]: (i, name.split(":")[1])
        for (kind, name), i in at.items()
        if kind == "replace"
    }
    for index, ino in replaced.values():
        assert at[("fsync-file", ino)] < index
    dir_syncs = [i for i, (kind, _) in enumerate(events) if kind == "fsync-dir"]
    assert len(dir_syncs) == 3
    assert max(replaced["a.parquet"][0], replaced["b.bin"][0]) < min(dir_syncs[:2])
    assert max(dir_syncs[:2]) < at[("made", "record")] < replaced["record.json"][0]
    assert dir_syncs[2] == len(events) - 1
    assert (tmp_path / "record.json").read_bytes() == b"r"

    def broken() -> list[tuple[Path, Content]]:
        assert dirs_synced.wait(BIG)
        raise RuntimeError("no record")

    dirs_synced.clear()
    unsynced.add(data_dir)
    stage_1 = [(tmp_path / "data" / "a.parquet", b"a2")]
    with pytest.raises(RuntimeError, match="no record"):
        write_atomically_together([stage_1, broken], tmp_dir=tmp_path / ".tmp", commit_early=True)
    assert (tmp_path / "data" / "a.parquet").read_bytes() == b"a2"
    assert listdir(tmp_path / ".tmp") == []


def test_a_background_content_is_written_beside_the_next_stage(tmp_path: Path) -> None:
    """A ``Background`` content is written by an fsync thread while the caller makes the next
    stage (it waits here for the function stage to have started: written inline, it would
    time out), and is durable before its rename like any file; one that raises leaves
    nothing replaced and no tmp file."""
    (tmp_path / ".tmp").mkdir()
    (tmp_path / "old").write_bytes(b"old")
    making = threading.Event()
    threads: list[threading.Thread] = []

    def beside(stream: BinaryIO) -> None:
        threads.append(threading.current_thread())
        assert making.wait(BIG)
        stream.write(b"data")

    def record() -> list[tuple[Path, Content]]:
        making.set()
        return [(tmp_path / "record.json", b"r")]

    write_atomically_together(
        [[(tmp_path / "data.parquet", Background(beside))], record], tmp_dir=tmp_path / ".tmp"
    )
    assert threads != [threading.current_thread()]
    assert (tmp_path / "data.parquet").read_bytes() == b"data"
    assert (tmp_path / "record.json").read_bytes() == b"r"

    def broken(stream: BinaryIO) -> None:
        stream.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically_together(
            [[(tmp_path / "old", Background(broken))], record], tmp_dir=tmp_path / ".tmp"
        )
    assert (tmp_path / "old").read_bytes() == b"old"
    assert listdir(tmp_path / ".tmp") == []


async def test_a_commit_later_row_group_is_stored_with_the_final_record(out: Path) -> None:
    """The parquet sink keeps a ``commit_later`` table and stores it with the record write that
    commits it (one worker-thread hop at the end of a run): not on disk before ``close``, on
    disk and recorded after; the dataset card (``card=True``) goes with the final record of a
    run that ended without an error."""
    sink = ParquetSink(out, card=True)
    await open_sink(sink, num_records=20)
    await sink.write_row_group(0, rows(0, 10), requested_rows=10)
    await sink.write_row_group(1, rows(10, 10), requested_rows=10, commit_later=True)
    assert listdir(sink.dataset_dir) == ["row-group-00000.parquet"]
    await sink.close(status="complete", summary={})
    assert listdir(sink.dataset_dir) == ["row-group-00000.parquet", "row-group-00001.parquet"]
    assert_disk_matches_record(sink)
    assert tmp_files(sink) == []
    assert not (out / ".tmp").exists()
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card == dataset_card(out)  # built as it went = read back from the directory
    assert "| 20 | 20 | 0 | 2 of 2 |" in card


async def test_no_card_for_a_run_that_ended_with_an_error(out: Path) -> None:
    sink = ParquetSink(out, card=True)
    await open_sink(sink, num_records=20)
    await sink.write_row_group(0, rows(0, 10), requested_rows=10, commit_later=True)
    await sink.close(status="interrupted", summary={})
    assert sink.completed_row_groups() == {0: 10}
    assert_disk_matches_record(sink)
    assert not (out / "README.md").exists()


async def test_a_resumed_run_builds_its_card_from_the_directory(out: Path) -> None:
    """The draft did not see the earlier session's row group: the card is read back from the
    directory after the final record, and says the same as ``dataset_card``."""
    sink = ParquetSink(out, card=True)
    await open_sink(sink, num_records=20)
    await sink.write_row_group(0, rows(0, 10), requested_rows=10)
    await sink.close(status="interrupted", summary={})
    again = ParquetSink(out, card=True)
    await open_sink(again, num_records=20)
    await again.write_row_group(1, rows(10, 5), requested_rows=10, commit_later=True)
    await again.close(status="complete", summary={})
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card == dataset_card(out)
    assert "| 15 | 20 | 5 | 2 of 2 |" in card


def _write_two(root: str) -> None:
    base = Path(root)
    write_atomically_together(
        [[(base / "c1", b"1"), (base / "c2", b"2")]], tmp_dir=base / ".tmp"
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_write_atomically_together_works_in_a_forked_child(tmp_path: Path) -> None:
    """The fsync threads are per process: a child forked after the parent used them makes its
    own (its parent's are not there; waiting for them would hang)."""
    import multiprocessing

    (tmp_path / ".tmp").mkdir()
    write_atomically_together(
        [[(tmp_path / "p1", b"1"), (tmp_path / "p2", b"2")]], tmp_dir=tmp_path / ".tmp"
    )
    child = multiprocessing.get_context("fork").Process(target=_write_two, args=(str(tmp_path),))
    child.start()
    child.join(BIG)
    assert child.exitcode == 0
    assert (tmp_path / "c2").read_bytes() == b"2"


async def test_a_partial_row_group_is_left_to_resume_and_replaced_whole(harness: Harness) -> None:
    """An early shutdown writes a row group's complete rows as a partial entry: recorded and
    readable, but not among the completed row groups, so a resume writes it again; the new
    entry replaces it (and a file the new entry no longer names is removed)."""
    await open_sink(harness.sink, num_records=20)
    await harness.sink.write_row_group(0, rows(0, 10), requested_rows=10)
    await harness.sink.write_row_group(1, rows(10, 4), requested_rows=10, partial=True)
    assert harness.sink.metadata()["row_groups"]["1"] == {
        "file": row_group_file(1),
        "rows": 4,
        "requested_rows": 10,
        "partial": True,
    }
    assert harness.sink.completed_row_groups() == {0: 10}
    await harness.sink.close(status="early_shutdown", summary={})
    assert harness.read_back().num_rows == 14  # a run not resumed keeps the partial data

    again = harness.reopen()
    await again.open(
        fingerprint=FINGERPRINT, config=CONFIG, num_records=20, row_group_size=10, resume=True
    )
    assert again.completed_row_groups() == {0: 10}
    await again.write_row_group(1, rows(10, 0), requested_rows=10)  # every row dropped now
    assert again.metadata()["row_groups"]["1"] == {"file": None, "rows": 0, "requested_rows": 10}
    assert harness.read_back().equals(rows(0, 10))  # the partial file is gone
    with pytest.raises(ValueError, match=r"row group 1 was already written"):
        await again.write_row_group(1, rows(10, 10), requested_rows=10)
    await again.close(status="complete", summary={})
    assert again.completed_row_groups() == {0: 10, 1: 0}
