"""The batched replay of cached cells (``trio_designer/_engine/_replay.py``) against the per-cell
path it replaces: the same bytes, the same counts, the same fall-backs.

The cache is filled by a cold run of the Deep example over real HTTP to the simulator on
loopback (as in ``test_cache.py``). The warm runs compared need no endpoint (the simulator is
stopped: a request would fail the run). They run on a ``MockClock`` that stands still
(``rate=0``): every time the engine reads — a hit's latency in the provenance sidecar, the
trace — is then 0 in both paths, so the sidecars can be compared byte for byte; its
``autojump_threshold`` turns a deadlock (the run idle for seconds of real time) into the
``fail_after`` deadline's ``TooSlowError``. Row groups of 150 and 300 rows make the replay's
column batches full (128 cells, the inline batch's budget) and several a column.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import trio
import trio.testing
from test_cache import LLM_COLUMNS, changed_cells, column, deep, rows_of, served, simulator

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._engine import _cells, _dispatch, _replay
from trio_designer._engine._dispatch import INLINE_BATCH
from trio_designer.generators._base import MISSED
from trio_designer.simulator import Faults, Latency, SimulatedModel, open_simulator

ROWS = 300
GROUP = 150

#: metadata.json fields that hold wall-clock times (different in any two runs).
CLOCK_FIELDS = frozenset({"started_at", "updated_at", "finished_at"})


def config_for(url: str, edit: Any = None) -> PipelineConfig:
    def edited(data: dict[str, Any]) -> None:
        data["run"]["row_group_size"] = GROUP
        if edit is not None:
            edit(data)

    return deep(url, edited)


def fill(tmp_path: Path, cache: Path) -> tuple[str, Any]:
    """A cold run into ``tmp_path / "cold"`` that fills ``cache``; the (now dead) simulator URL
    and the run's result."""

    async def cold() -> tuple[str, Any]:
        with trio.fail_after(120):
            async with simulator() as sim:
                result = await TrioDesigner(cache_dir=cache).create(
                    config_for(sim.url), num_records=ROWS, output_dir=tmp_path / "cold"
                )
                return sim.url, result

    url, result = trio.run(cold)
    assert result.cache["misses"] == ROWS * len(LLM_COLUMNS)
    return url, result


def frozen_run(config: PipelineConfig, out: Path, cache: Path) -> Any:
    """``create`` on a clock that stands still (see the module docstring)."""

    async def run() -> Any:
        with trio.fail_after(60):
            return await TrioDesigner(cache_dir=cache).create(
                config, num_records=ROWS, output_dir=out
            )

    clock = trio.testing.MockClock(rate=0, autojump_threshold=5.0)
    return trio.run(run, clock=clock)


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def metadata(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "metadata.json").read_text())
    return {k: v for k, v in data.items() if k not in CLOCK_FIELDS}


def watch_prepared(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count what the generators' column-wise path (``CellRunner.prepare_cached``) answers:
    cells it served, cells it found missing."""
    counts = {"served": 0, "missed": 0}
    prepare = _cells.CellRunner.prepare_cached

    def watched(self: Any, buf: Any, column: str, rows: Any) -> dict[int, Any]:
        found = prepare(self, buf, column, rows)
        for entry in found.values():
            counts["missed" if entry is MISSED else "served"] += 1
        return found

    monkeypatch.setattr(_cells.CellRunner, "prepare_cached", watched)
    return counts


def test_a_warm_run_replayed_column_wise_writes_the_bytes_of_the_per_cell_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    url, cold = fill(tmp_path, cache)
    config = config_for(url)  # the simulator is gone: a request would fail the run
    batches: list[int] = []

    def counted(worker: Any, first: Any, budget: int) -> tuple[int, Any]:
        ran, missed = _replay.replay_column(worker, first, budget)
        batches.append(ran)
        return ran, missed

    monkeypatch.setattr(_dispatch, "replay_column", counted)
    by_generator = watch_prepared(monkeypatch)
    batched = frozen_run(config, tmp_path / "batched", cache)
    # Column-wise for real: full batches (the inline batch's budget), every LLM cell in one,
    # and every cell served by its generator's column-wise path.
    assert max(batches) == INLINE_BATCH
    assert sum(batches) == ROWS * len(LLM_COLUMNS)
    assert by_generator == {"served": ROWS * len(LLM_COLUMNS), "missed": 0}
    # The batch without the generators' column-wise path: each cell through agenerate.
    monkeypatch.setattr(_replay, "COLUMNWISE", False)
    by_cell = frozen_run(config, tmp_path / "by-cell", cache)
    assert by_generator["served"] == ROWS * len(LLM_COLUMNS)  # not asked again
    monkeypatch.setattr(_replay, "ENABLED", False)
    per_cell = frozen_run(config, tmp_path / "per-cell", cache)
    for result in (batched, by_cell, per_cell):
        assert result.status == "complete"
        assert result.cache["hits"] == ROWS * len(LLM_COLUMNS)
        assert result.cache["misses"] == 0
        assert result.cache["corrupt"] == 0
    b = files(tmp_path / "per-cell")
    parquet = [name for name in b if name.endswith(".parquet")]
    assert len(parquet) == 2 * ROWS // GROUP  # the data, and the provenance sidecar
    for other in ("batched", "by-cell"):
        a = files(tmp_path / other)
        assert a.keys() == b.keys()
        for name in parquet:  # values and provenance (status cached, tokens, cost, latency 0)
            assert a[name] == b[name], (other, name)
        assert metadata(tmp_path / other) == metadata(tmp_path / "per-cell")
    assert batched.usage == by_cell.usage == per_cell.usage
    # And the values are the cold run's, the one that paid for them.
    assert rows_of(batched) == rows_of(cold)
    cells = pq.read_table(tmp_path / "batched" / "provenance").to_pylist()
    llm = [c for c in cells if c["column"] in LLM_COLUMNS]
    assert len(llm) == ROWS * len(LLM_COLUMNS)
    assert {c["status"] for c in llm} == {"cached"}


def test_a_prompt_changed_for_some_rows_re_requests_exactly_those_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``summary``'s prompt changes for the jazz rows only: in each column batch some cells
    hit and some miss (the misses of a batch go back to the dispatcher, which gives each a
    task of its own). Exactly the changed cells are paid — jazz rows' summary and what reads
    it — and the batched path writes what the per-cell path writes."""

    def edit(data: dict[str, Any]) -> None:
        column(data, "summary")["prompt"] = (
            "{% if topic == 'jazz' %}Summarize {{ topic }} in one sentence."
            "{% else %}Summarize {{ topic }} in two sentences.{% endif %}"
        )

    cache = tmp_path / "cache"

    async def runs() -> tuple[Any, dict[str, tuple[Any, int]]]:
        with trio.fail_after(180):
            async with simulator() as sim:  # one endpoint: its URL is part of every key
                cold = await TrioDesigner(cache_dir=cache).create(
                    config_for(sim.url), num_records=ROWS, output_dir=tmp_path / "cold"
                )
                results = {}
                for name, enabled in (("batched", True), ("per-cell", False)):
                    # Each path from the same filled cache (a run stores what it paid).
                    own = tmp_path / f"cache-{name}"
                    shutil.copytree(cache, own)
                    monkeypatch.setattr(_replay, "ENABLED", enabled)
                    before = await served(sim.url)
                    result = await TrioDesigner(cache_dir=own).create(
                        config_for(sim.url, edit), num_records=ROWS, output_dir=tmp_path / name
                    )
                    assert result.status == "complete"
                    results[name] = (result, await served(sim.url) - before)
                return cold, results

    by_generator = watch_prepared(monkeypatch)
    cold, results = trio.run(runs)
    # Hits and misses inside the generators' column-wise batches (a miss there is a miss:
    # the cell gets a task of its own without a second cache-only pass).
    assert by_generator["served"] > 0
    assert by_generator["missed"] > 0
    (batched, paid), (per_cell, paid_per_cell) = results["batched"], results["per-cell"]
    expected = changed_cells(
        config_for("http://x/v1"), config_for("http://x/v1", edit), cold, batched, set()
    )
    jazz = sum(1 for r in rows_of(cold) if r["topic"] == "jazz")
    assert 0 < jazz < ROWS
    assert jazz * 3 <= expected  # summary, analysis and quality of every jazz row, at least
    assert paid == paid_per_cell == expected
    assert batched.cache["hits"] == per_cell.cache["hits"] == ROWS * len(LLM_COLUMNS) - expected
    assert rows_of(batched) == rows_of(per_cell)
    for a, b in zip(rows_of(cold), rows_of(batched), strict=True):
        if a["topic"] != "jazz":
            assert a == b


def filtering_simulator() -> Any:
    """The simulator with 10 % of ``sim-gen``'s answers stopped by its content filter: stored
    in the cache like any answer (before parsing), they fail their cells again when replayed
    (``ModelContentFilteredError``: the row is dropped, without a retry)."""
    models = [
        SimulatedModel(
            name="sim-gen", latency=Latency(median=0.0), faults=Faults(rate_content_filter=0.1)
        ),
        SimulatedModel(name="sim-judge", latency=Latency(median=0.0)),
    ]
    return open_simulator(models)


def gated(url: str, rate: float, window: int = 10) -> PipelineConfig:
    def edit(data: dict[str, Any]) -> None:
        data["run"]["shutdown_error_rate"] = rate
        data["run"]["shutdown_error_window"] = window

    return config_for(url, edit)


def with_filtered_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warm: list[tuple[str, bool, float]]
) -> tuple[Any, dict[str, Any]]:
    """A cold run with the gate off fills a cache with answers of which ~10 % fail their cell;
    then each ``(name, batched, shutdown_error_rate)`` of ``warm`` runs from its own copy of it.

    Real clock, the endpoint up throughout (one simulator: its URL is in every key). A warm
    run may miss now and then: a row the cold run dropped at one cell before another of its
    cells ran can, run in another order, reach that other cell first (whose answer was never
    paid); it is paid then, and the row is dropped all the same."""
    cache = tmp_path / "cache"

    async def runs() -> tuple[Any, dict[str, Any]]:
        with trio.fail_after(180):
            async with filtering_simulator() as sim:
                filled = await TrioDesigner(cache_dir=cache).create(
                    gated(sim.url, 1.0), num_records=ROWS, output_dir=tmp_path / "cold"
                )
                results = {}
                for name, enabled, rate in warm:
                    own = tmp_path / f"cache-{name}"
                    shutil.copytree(cache, own)
                    monkeypatch.setattr(_replay, "ENABLED", enabled)
                    results[name] = await TrioDesigner(cache_dir=own).create(
                        gated(sim.url, rate), num_records=ROWS, output_dir=tmp_path / name
                    )
                return filled, results

    filled, results = trio.run(runs)
    assert 0 < filled.num_records_written < ROWS  # some rows were dropped
    return filled, results


DROPPED = ("failed", "dropped_upstream")


def same_provenance(a: Path, b: Path) -> None:
    """The two sidecars agree cell for cell on every row kept (the latency of a hit aside: a
    real clock's reading), and drop the same rows. What a dropped row's cells say may differ:
    a row with two failing cells is blamed on the one that ran first, and a cell that ran
    before the row's failure has its model calls; which ran first is the order of the row's
    cells — the batched replay runs a column's cells together, the per-cell path interleaves
    a priority level's columns row by row, and a cold run's order is the endpoint's timing."""
    rows_a, rows_b = pq.read_table(a).to_pylist(), pq.read_table(b).to_pylist()
    assert len(rows_a) == len(rows_b)
    dropped_a = {x["row_id"] for x in rows_a if x["status"] in DROPPED}
    dropped_b = {y["row_id"] for y in rows_b if y["status"] in DROPPED}
    assert dropped_a == dropped_b
    for x, y in zip(rows_a, rows_b, strict=True):
        if x["row_id"] not in dropped_a:
            del x["latency_s"], y["latency_s"]
            assert x == y


def failed_rows(out: Path) -> list[tuple[int, int]]:
    records = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    return sorted((r["row_group"], r["row"]) for r in records)


def test_cached_failures_inside_a_batch_drop_the_rows_the_per_cell_path_drops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cells failing in the middle of a column batch (a cached content-filtered answer) are
    handled one by one, as inline cells: their rows dropped, the batch going on with the next
    cell. The gate is off here, so both paths run every row group to its end: the data is
    the per-cell path's, byte for byte, the same rows are dropped, and the sidecars agree on
    every row kept (see :func:`same_provenance` for what may differ)."""
    filled, runs = with_filtered_answers(
        tmp_path, monkeypatch, [("batched", True, 1.0), ("per-cell", False, 1.0)]
    )
    batched, per_cell = runs["batched"], runs["per-cell"]
    assert batched.num_records_written == per_cell.num_records_written
    assert batched.num_records_written == filled.num_records_written
    a, b = files(tmp_path / "batched"), files(tmp_path / "per-cell")
    assert a.keys() == b.keys()
    assert "failures.jsonl" in a
    # One record a dropped row, in the order the rows were dropped (the row groups' workers
    # interleave as trio's scheduler, which shuffles on purpose, lets them, in either path);
    # which of its cells a row is blamed on may differ (see same_provenance).
    assert failed_rows(tmp_path / "batched") == failed_rows(tmp_path / "per-cell")
    for name in a:
        if name == "failures.jsonl":
            continue
        if name.startswith("provenance"):
            same_provenance(tmp_path / "batched" / name, tmp_path / "per-cell" / name)
        elif name not in ("metadata.json", "README.md"):
            assert a[name] == b[name], name
    assert rows_of(batched) == rows_of(filled)


def test_no_replayed_cell_starts_after_early_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the gate on, the cached failures trip it in the middle of a warm run: the batch
    that trips it stops there (its untaken cells go back), and no stretch of cached cells
    starts afterwards; the rows written are complete and the cold run's."""
    started_late: list[int] = []
    stretches: list[int] = []
    replay_cells = _cells.CellRunner.replay_cached_cells
    current: dict[str, Any] = {}

    def watched_column(worker: Any, first: Any, budget: int) -> tuple[int, Any]:
        current["state"] = worker.state
        return _replay.replay_column(worker, first, budget)

    def watched_cells(
        self: Any, buf: Any, column: str, rows: Any, statuses: Any, prepared: Any = None
    ) -> bool:
        if current["state"].early_shutdown:
            started_late.extend(rows)
        stretches.append(len(rows))
        return replay_cells(self, buf, column, rows, statuses, prepared)

    monkeypatch.setattr(_dispatch, "replay_column", watched_column)
    monkeypatch.setattr(_cells.CellRunner, "replay_cached_cells", watched_cells)
    filled, runs = with_filtered_answers(tmp_path, monkeypatch, [("warm", True, 0.3)])
    result = runs["warm"]
    assert result.status == "early_shutdown"
    assert stretches
    assert started_late == []
    kept = {r["_row_id"]: r for r in rows_of(filled)}
    written = rows_of(result)
    assert len(written) < ROWS
    assert all(r == kept[r["_row_id"]] for r in written)


def test_re_asks_reasoning_skips_and_kept_cut_offs_replay_as_the_per_cell_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the generators' column-wise path leaves to the per-cell code, mixed into its
    batches: cached answers that were malformed, empty or cut off (their cells replay their
    cached re-asks through ``agenerate``), a column with ``skip_when`` (its skipped rows are
    not asked for), a system prompt, a reasoning side column and a kept cut-off answer (side
    columns from the column-wise path). The three paths — column-wise, the batch cell by cell,
    one cell at a time — write the same data byte for byte, count the same hits, and their
    sidecars agree cell for cell (``same_provenance``: the latency of a hit aside, a real
    clock's reading)."""

    def edit(data: dict[str, Any]) -> None:
        trivia = column(data, "trivia")
        trivia["extract_reasoning"] = True
        trivia["on_truncated"] = "keep"
        trivia["inference"] = {"extra_body": {"reasoning": True}}
        column(data, "conclusion")["skip_when"] = "{{ topic == 'chess' }}"
        for name in LLM_COLUMNS:  # no row dropped: every path runs every cell (see below)
            column(data, name)["max_parse_retries"] = 8

    faults = Faults(rate_malformed=0.1, rate_empty=0.04, rate_truncated=0.08)
    models = [
        SimulatedModel(name="sim-gen", latency=Latency(median=0.0), faults=faults),
        SimulatedModel(name="sim-judge", latency=Latency(median=0.0)),
    ]
    cache = tmp_path / "cache"
    paths = [("column-wise", True, True), ("by-cell", True, False), ("per-cell", False, False)]
    by_generator = watch_prepared(monkeypatch)

    async def runs() -> tuple[Any, dict[str, Any]]:
        with trio.fail_after(180):
            async with open_simulator(models) as sim:
                filled = await TrioDesigner(cache_dir=cache).create(
                    config_for(sim.url, edit), num_records=ROWS, output_dir=tmp_path / "cold"
                )
                results = {}
                for name, enabled, columnwise in paths:
                    own = tmp_path / f"cache-{name}"
                    shutil.copytree(cache, own)
                    monkeypatch.setattr(_replay, "ENABLED", enabled)
                    monkeypatch.setattr(_replay, "COLUMNWISE", columnwise)
                    results[name] = await TrioDesigner(cache_dir=own).create(
                        config_for(sim.url, edit), num_records=ROWS, output_dir=tmp_path / name
                    )
                return filled, results

    filled, results = trio.run(runs)
    assert filled.cache["misses"] > ROWS * len(LLM_COLUMNS)  # re-asks were paid and stored
    # Every row written: a dropped row's other cells may run or not depending on the order of
    # its cells (see same_provenance), which would make the paths' hits differ.
    assert filled.num_records_written == ROWS
    hits = {r.cache["hits"] for r in results.values()}
    assert len(hits) == 1
    assert 0 < by_generator["served"] < hits.pop()  # some cells took the per-cell path
    truth = files(tmp_path / "per-cell")
    for name in ("column-wise", "by-cell"):
        assert results[name].num_records_written == results["per-cell"].num_records_written
        a = files(tmp_path / name)
        assert a.keys() == truth.keys()
        for file in a:
            if file.startswith("provenance"):
                same_provenance(tmp_path / name / file, tmp_path / "per-cell" / file)
            elif file not in ("metadata.json", "README.md"):
                assert a[file] == truth[file], (name, file)
    written = rows_of(results["column-wise"])
    assert any(r["conclusion"] is None for r in written)  # skipped (chess)
    assert any(r["trivia__reasoning"] for r in written)
    assert any(r["trivia__truncated"] for r in written)
    assert rows_of(filled) == written
