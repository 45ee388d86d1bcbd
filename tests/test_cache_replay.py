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
from trio_designer._engine import _dispatch, _replay
from trio_designer._engine._dispatch import INLINE_BATCH

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
    batched = frozen_run(config, tmp_path / "batched", cache)
    # Column-wise for real: full batches (the inline batch's budget), every LLM cell in one.
    assert max(batches) == INLINE_BATCH
    assert sum(batches) == ROWS * len(LLM_COLUMNS)
    monkeypatch.setattr(_replay, "ENABLED", False)
    per_cell = frozen_run(config, tmp_path / "per-cell", cache)
    for result in (batched, per_cell):
        assert result.status == "complete"
        assert result.cache["hits"] == ROWS * len(LLM_COLUMNS)
        assert result.cache["misses"] == 0
    a, b = files(tmp_path / "batched"), files(tmp_path / "per-cell")
    assert a.keys() == b.keys()
    parquet = [name for name in a if name.endswith(".parquet")]
    assert len(parquet) == 2 * ROWS // GROUP  # the data, and the provenance sidecar
    for name in parquet:  # values and provenance (status cached, tokens, cost, latency 0)
        assert a[name] == b[name], name
    assert metadata(tmp_path / "batched") == metadata(tmp_path / "per-cell")
    assert batched.usage == per_cell.usage
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

    cold, results = trio.run(runs)
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
