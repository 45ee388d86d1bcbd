"""The response cache end to end: the Deep example over real HTTP, requests counted by the server.

Each test runs the simulator on loopback and points the Deep shape (``examples/deep.yaml``)
at it as a configured provider, then counts what reached the endpoint with the simulator's
``GET /log``. Real time, not virtual: ``create`` writes parquet in a worker thread, and while
a thread works an autojump clock leaps to the next deadline (the cache itself calls its store
on the loop under a ``MockClock``, for this reason). Each run takes well under a second.

What is proved:

* a second identical run sends nothing and writes byte-identical values;
* editing one prompt re-buys exactly the cells whose request changed: that column, and the
  downstream cells whose inputs changed (the expected count is computed from the two datasets,
  cell by cell, not assumed);
* a parser-side change (reasoning extracted, more parse retries, an expression) sends nothing;
* raising ``num_records`` pays for the new rows only;
* a hit never takes a limiter slot; ``--no-cache``/``cache=False`` sends everything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from _loopback import ScriptedApp
from _loopback import served as serve_app

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._cache import CacheStore, CellKey, cache_key
from trio_designer.generators._templates import render
from trio_designer.models import StaticLimiter
from trio_designer.simulator import Latency, SimulatedModel, open_simulator

DEEP = Path(__file__).resolve().parents[1] / "examples" / "deep.yaml"
LLM_COLUMNS = ("summary", "trivia", "analysis", "conclusion", "quality")
ROWS = 24


def deep(url: str, edit: Callable[[dict[str, Any]], None] | None = None) -> PipelineConfig:
    """The Deep example pointed at the simulator at ``url``, row groups of 10, optionally
    edited."""
    data = yaml.safe_load(DEEP.read_text())
    data["providers"] = [{"name": "sim", "base_url": url}]
    for model in data["models"]:
        model["provider"] = "sim"
    data["run"]["row_group_size"] = 10
    if edit is not None:
        edit(data)
    return PipelineConfig.from_dict(data)


def column(data: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in data["columns"] if c["name"] == name)
    return found


async def served(url: str) -> int:
    """Chat requests the simulator has answered so far (its ``GET /log``)."""
    root = url.removesuffix("/v1")
    async with httpx.AsyncClient() as client:
        log = (await client.get(f"{root}/log")).json()
    return sum(1 for r in log["records"] if r["status"] == 200)


async def counted_run(
    url: str, config: PipelineConfig, out: Path, rows: int = ROWS, **designer: Any
) -> tuple[Any, int]:
    """Run ``config`` into ``out``; the result and the requests the server saw for it."""
    before = await served(url)
    result = await TrioDesigner(**designer).create(config, num_records=rows, output_dir=out)
    assert result.status == "complete"
    assert result.num_records_written == rows
    return result, await served(url) - before


def simulator() -> Any:
    models = [SimulatedModel(name=n, latency=Latency(median=0.0)) for n in ("sim-gen", "sim-judge")]
    return open_simulator(models)


def rows_of(result: Any) -> list[dict[str, Any]]:
    """The dataset's rows; structured values (struct columns, or JSON text where a schema
    does not map to Arrow) as dicts."""
    rows: list[dict[str, Any]] = result.table.to_pylist()
    for row in rows:
        for name in ("analysis", "quality"):
            if isinstance(row[name], str):
                row[name] = json.loads(row[name])
    return rows


def prompts(config: PipelineConfig, name: str, row: dict[str, Any]) -> tuple[str, ...]:
    """The texts column ``name`` sends for ``row`` (system prompt, prompt), rendered."""
    spec = config.column(name)
    sources = (getattr(spec, "system_prompt", None), spec.prompt)  # type: ignore[union-attr]
    return tuple(render(s, row) for s in sources if s is not None)


def changed_cells(
    before: PipelineConfig, after: PipelineConfig, first: Any, second: Any, edited: set[str]
) -> int:
    """LLM cells of ``second`` whose request differs from ``first``'s: every cell of a column
    whose config was edited, and the cells whose rendered prompts differ (a column they read
    has another value *in a part the prompt uses*: ``analysis.tone``, not ``analysis``)."""
    a, b = rows_of(first), rows_of(second)
    count = 0
    for name in LLM_COLUMNS:
        for row_a, row_b in zip(a, b, strict=True):
            if name in edited or prompts(before, name, row_a) != prompts(after, name, row_b):
                count += 1
    return count


@pytest.mark.deadline(60)
async def test_a_second_run_sends_nothing_and_writes_the_same_bytes(tmp_path: Path) -> None:
    async with simulator() as sim:
        config = deep(sim.url)
        first, paid = await counted_run(sim.url, config, tmp_path / "a", cache_dir=tmp_path / "c")
        # One request per LLM cell: the simulator's answers always parse (what the counts of
        # the other tests rely on).
        assert paid == ROWS * len(LLM_COLUMNS)
        assert first.cache["misses"] == paid
        assert first.cache["stored"] == paid
        again, repaid = await counted_run(sim.url, config, tmp_path / "b", cache_dir=tmp_path / "c")
    assert repaid == 0
    assert again.cache["hits"] == paid
    assert again.usage["gen"]["requests_ok"] == 0
    for name in first.files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.deadline(60)
async def test_editing_one_prompt_rebuys_exactly_the_cells_whose_request_changed(
    tmp_path: Path,
) -> None:
    def edit(data: dict[str, Any]) -> None:
        column(data, "summary")["prompt"] = "Summarize {{ topic }} in one short sentence."

    cache = tmp_path / "cache"
    async with simulator() as sim:
        first, _ = await counted_run(sim.url, deep(sim.url), tmp_path / "a", cache_dir=cache)
        edited = deep(sim.url, edit)
        second, paid = await counted_run(sim.url, edited, tmp_path / "b", cache_dir=cache)
    expected = changed_cells(deep(sim.url), edited, first, second, {"summary"})
    # summary, and what reads it (analysis, quality) in every row; conclusion only where
    # analysis.tone changed; trivia never.
    assert ROWS * 3 <= expected < ROWS * 4
    assert paid == expected
    assert second.cache["hits"] == ROWS * len(LLM_COLUMNS) - expected
    a, b = rows_of(first), rows_of(second)
    assert [r["trivia"] for r in a] == [r["trivia"] for r in b]
    assert all(ra["summary"] != rb["summary"] for ra, rb in zip(a, b, strict=True))
    for ra, rb in zip(a, b, strict=True):  # conclusion: the same wherever its inputs were
        if (ra["analysis"]["tone"], ra["topic"]) == (rb["analysis"]["tone"], rb["topic"]):
            assert ra["conclusion"] == rb["conclusion"]


@pytest.mark.deadline(60)
async def test_a_parser_side_change_sends_nothing(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        column(data, "summary")["extract_reasoning"] = True  # read from the raw answer
        column(data, "analysis")["max_parse_retries"] = 5
        column(data, "n_words")["expr"] = "{{ summary.split() | length * 2 }}"

    cache = tmp_path / "cache"
    async with simulator() as sim:
        first, _ = await counted_run(sim.url, deep(sim.url), tmp_path / "a", cache_dir=cache)
        second, paid = await counted_run(
            sim.url, deep(sim.url, edit), tmp_path / "b", cache_dir=cache
        )
    assert paid == 0
    a, b = rows_of(first), rows_of(second)
    assert [r["summary"] for r in a] == [r["summary"] for r in b]
    assert [2 * r["n_words"] for r in a] == [r["n_words"] for r in b]
    assert "summary__reasoning" in b[0]


@pytest.mark.deadline(60)
async def test_raising_num_records_pays_for_the_new_rows_only(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    async with simulator() as sim:
        config = deep(sim.url)
        first, _ = await counted_run(sim.url, config, tmp_path / "a", 15, cache_dir=cache)
        second, paid = await counted_run(sim.url, config, tmp_path / "b", 40, cache_dir=cache)
    assert paid == (40 - 15) * len(LLM_COLUMNS)
    assert rows_of(second)[:15] == rows_of(first)


@pytest.mark.deadline(60)
async def test_identical_prompts_in_two_rows_stay_two_samples(tmp_path: Path) -> None:
    """Five topics over 24 rows: many rows ask ``trivia`` the very same prompt, and each is
    its own request and its own entry."""

    async with simulator() as sim:
        first, paid = await counted_run(sim.url, deep(sim.url), tmp_path / "a", cache_dir=tmp_path)
    prompts = {r["topic"] for r in rows_of(first)}
    assert len(prompts) < ROWS
    assert paid == ROWS * len(LLM_COLUMNS)
    assert first.cache["stored"] == paid


@pytest.mark.deadline(60)
async def test_a_hit_takes_no_limiter_slot_and_no_cache_sends_everything(tmp_path: Path) -> None:
    slots: list[str] = []

    class Counting(StaticLimiter):
        def slot(self, tokens: int = 0) -> Any:
            slots.append(self.name)
            return super().slot(tokens)

    cache = tmp_path / "cache"
    async with simulator() as sim:
        config = deep(sim.url)
        await counted_run(sim.url, config, tmp_path / "a", cache_dir=cache)
        warm, paid = await counted_run(
            sim.url, config, tmp_path / "b", cache_dir=cache, limiter_factory=Counting
        )
        assert (paid, slots) == (0, [])
        assert warm.slots is not None
        assert warm.slots.handoffs == 0  # no cell ever took an LLM-wait slot
        uncached, paid = await counted_run(
            sim.url, config, tmp_path / "c", cache=False, cache_dir=cache
        )
    assert paid == ROWS * len(LLM_COLUMNS)
    assert uncached.cache == {}


@pytest.mark.deadline(60)
async def test_a_warm_cache_needs_no_endpoint_at_all(tmp_path: Path) -> None:
    """Served from the cache, a run finishes with the endpoint gone: nothing is sent."""
    cache = tmp_path / "cache"
    async with simulator() as sim:
        url = sim.url
        first, _ = await counted_run(url, deep(url), tmp_path / "a", cache_dir=cache)
    # The simulator is stopped: any request would fail to connect (and stop the run).
    again = await TrioDesigner(cache_dir=cache).create(
        deep(url), num_records=ROWS, output_dir=tmp_path / "b"
    )
    assert again.status == "complete"
    assert rows_of(again) == rows_of(first)


@pytest.mark.deadline(60)
async def test_a_key_hashes_the_very_bytes_the_endpoint_received(tmp_path: Path) -> None:
    """Key version 2: the body is encoded once, its bytes are hashed for the key and sent on a
    miss; the server's copy of each request gives back exactly the stored keys."""
    app = ScriptedApp()
    async with serve_app(app) as url:
        config = PipelineConfig.from_dict(
            {
                "providers": [{"name": "p", "base_url": url}],
                "models": [{"alias": "gen", "model": "m", "provider": "p"}],
                "columns": [
                    {
                        "name": "topic",
                        "kind": "sampler",
                        "sampler": "category",
                        "values": ["jazz", "jazz"],
                    },
                    {
                        "name": "fact",
                        "kind": "llm_text",
                        "model": "gen",
                        "prompt": "One fact about {{ topic }} ✓.",
                    },
                ],
            }
        )
        rows = 3
        await TrioDesigner(cache_dir=tmp_path / "c").create(
            config, num_records=rows, output_dir=tmp_path / "a"
        )
    sent = [r["body"] for r in app.requests]
    assert len(sent) == rows
    with CacheStore(tmp_path / "c") as store:
        stored = set(store.load_rows(config.run.seed, 0, rows, ("fact",)).values)
    assert len(stored) == rows
    seeds = [json.loads(body)["seed"] for body in sent]
    # Each stored key is one request as the server received it, for one of the rows.
    assert stored <= {
        cache_key(url, body, CellKey(config.run.seed, row, "fact", seed))
        for body, seed in zip(sent, seeds, strict=True)
        for row in range(rows)
    }


@pytest.mark.deadline(60)
async def test_the_seed_is_sent_unless_the_model_says_not_to(tmp_path: Path) -> None:
    """``send_seed: false`` leaves ``seed`` out of the body (for endpoints that reject it);
    the answers stay distinct per row all the same (the key still has the cell)."""
    app = ScriptedApp()

    def no_seed(data: dict[str, Any]) -> None:
        for model in data["models"]:
            model["send_seed"] = False

    async with serve_app(app) as url:
        await TrioDesigner(cache=False).preview(deep(url), num_records=1)
        seeded = [body.get("seed") for body in app.bodies()]
        app.requests.clear()
        await TrioDesigner(cache=False).preview(deep(url, no_seed), num_records=1)
        unseeded = [body.get("seed") for body in app.bodies()]
    assert seeded
    assert all(isinstance(s, int) for s in seeded)
    assert unseeded
    assert all("seed" not in body for body in app.bodies())


@pytest.mark.deadline(60)
async def test_a_cell_whose_answers_are_partly_cached_pays_only_for_the_rest(
    tmp_path: Path,
) -> None:
    """``analysis`` gets malformed JSON a third of the time. With no re-ask allowed, those
    rows are dropped, but their (bad) answers are cached. With re-asks allowed, the same
    cells replay the bad answer from the cache and pay only for the re-asks: exactly one
    more request per such cell at least, and nothing for any other cell."""
    from trio_designer.simulator import Faults

    def strict(data: dict[str, Any]) -> None:
        column(data, "analysis")["max_parse_retries"] = 0

    def lenient(data: dict[str, Any]) -> None:
        column(data, "analysis")["max_parse_retries"] = 3

    gen = SimulatedModel(
        name="sim-gen", latency=Latency(median=0.0), faults=Faults(rate_malformed=0.3)
    )
    judge = SimulatedModel(name="sim-judge", latency=Latency(median=0.0))
    cache = tmp_path / "cache"
    async with open_simulator([gen, judge]) as sim:
        before = await served(sim.url)
        first = await TrioDesigner(cache_dir=cache).create(
            deep(sim.url, strict), num_records=ROWS, output_dir=tmp_path / "a"
        )
        paid_first = await served(sim.url) - before
        dropped = first.num_rows_dropped
        second = await TrioDesigner(cache_dir=cache).create(
            deep(sim.url, lenient), num_records=ROWS, output_dir=tmp_path / "b"
        )
        paid = await served(sim.url) - before - paid_first
    assert 0 < dropped < ROWS
    assert {f.column for f in first.failures} == {"analysis"}
    assert paid == second.cache["misses"]
    # Each dropped row: its analysis re-asks at least once, and everything downstream of
    # analysis in that row (conclusion, which never ran) is paid too.
    assert paid >= 2 * dropped
    # Rows matched by their global row index: two rows may share topic and summary (the
    # simulator's texts are short), which made a match by content pair different rows.
    survivors = {r["_row_id"]: r for r in rows_of(first)}
    kept = [r for r in rows_of(second) if r["_row_id"] in survivors]
    assert len(kept) == ROWS - dropped
    assert all(r == survivors[r["_row_id"]] for r in kept)


@pytest.mark.deadline(60)
async def test_in_virtual_time_a_warm_preview_takes_no_time(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """Under a ``MockClock`` (the cache calls its store on the loop there): each request takes
    0.5 virtual seconds, so the cold preview takes at least the Deep chain's three; the warm
    one is served from the cache in zero virtual seconds, sending nothing."""
    models = [SimulatedModel(name=n, latency=Latency(median=0.5)) for n in ("sim-gen", "sim-judge")]
    async with open_simulator(models) as sim:
        config = deep(sim.url)
        cold = await TrioDesigner(cache_dir=tmp_path).preview(config, num_records=ROWS)
        before = len(sim.request_log())
        warm = await TrioDesigner(cache_dir=tmp_path).preview(config, num_records=ROWS)
        assert len(sim.request_log()) == before
    assert cold.elapsed >= 1.5
    assert warm.elapsed == 0.0
    assert warm.table.equals(cold.table)


@pytest.mark.deadline(60)
async def test_the_sync_engine_uses_the_cache_too(tmp_path: Path) -> None:
    """The column-at-a-time engine takes the cache-only pass in ``CellRunner.run_cell``
    (no inline dispatch there): a warm run sends nothing and writes the same values as the
    async engine's cold one."""
    cache = tmp_path / "cache"
    async with simulator() as sim:
        config = deep(sim.url)
        first, _ = await counted_run(sim.url, config, tmp_path / "a", cache_dir=cache)
        again, paid = await counted_run(
            sim.url, config, tmp_path / "b", cache_dir=cache, engine="sync"
        )
    assert paid == 0
    assert rows_of(again) == rows_of(first)
