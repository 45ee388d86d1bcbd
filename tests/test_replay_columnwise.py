"""The pieces of the generators' column-wise replay of cached cells (``_engine/_replay.py``,
``LLMGenerator.replay_cached``), each against the per-cell code it stands for: the same texts,
draws, keys and answers, and nothing counted. The whole path against the per-cell path, byte for
byte on disk: ``tests/test_cache_replay.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer._cache import CacheStore, CellKey, cache_key
from trio_designer._cache._key import cache_keys, encode_fields
from trio_designer._core._cellusage import CellUsage
from trio_designer._exceptions import NonRetryableGenerationError
from trio_designer.config import LLMStructuredColumn, LLMTextColumn
from trio_designer.generators import CellContext
from trio_designer.generators._base import MISSED, first_draws, rng_for
from trio_designer.generators._llm import build_llm_generator
from trio_designer.generators._templates import render, render_column
from trio_designer.models._cached import ResponseCache
from trio_designer.models._cellcalls import recording

TEMPLATES = [
    "Summarize {{ topic }} in two sentences.",
    "{% set n = topic | length %}{{ n }} letters: {{ topic | upper }}",
    "{% for i in range(3) %}{{ topic }}{{ i }} {% endfor %}{{ x.tone }}",
    "{% if topic == 'jazz' %}one{% else %}two{% endif %} {{ missing | default('m') }}",
    "{% block b %}in a block {{ topic }}{% endblock %}",
    "{{ topic ~ x.tone }}{% set topic = 'shadowed' %}{{ topic }}",
]

ROWS: list[dict[str, Any]] = [
    {"topic": "jazz", "x": {"tone": "neutral"}},
    {"topic": "chess", "x": {"tone": "critical"}},
    {"topic": "é ✓ \u2028", "x": {"tone": ""}},
    {"topic": "geology", "x": {}},  # x.tone undefined: that row's render raises
    {"topic": "astronomy", "x": {"tone": "enthusiastic"}},
]


def per_cell(template: str, row: dict[str, Any]) -> str | None:
    try:
        return render(template, row)
    except NonRetryableGenerationError:
        return None


@pytest.mark.parametrize("template", TEMPLATES)
def test_render_column_renders_each_row_as_render_does(template: str) -> None:
    """A row's text is :func:`render`'s, whatever the rows before it did (template variables
    set, a render that raised half-way); a row whose render raises is ``None``."""
    assert render_column(template, ROWS) == [per_cell(template, row) for row in ROWS]
    # Twice over, in another order: nothing carried from one row (or call) to the next.
    rows = ROWS[::-1] + ROWS
    assert render_column(template, rows) == [per_cell(template, row) for row in rows]


def test_render_column_holds_every_row_to_the_sandboxs_limits() -> None:
    """The render budget counts from zero for each row: a row over the limit fails alone,
    and rows under it after it render (a budget not reset would fail them too)."""
    template = "{% for i in range(n) %}x{% endfor %}"
    rows = [{"n": 10}, {"n": 10**7}, {"n": 300_000}, {"n": 300_000}, {"n": 3}]
    texts = render_column(template, rows)
    assert texts == [per_cell(template, row) for row in rows]
    assert texts[1] is None
    assert texts[2] == texts[3] == "x" * 300_000
    assert texts[4] == "xxx"


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**64),
    rows=st.lists(st.integers(0, 10**12), max_size=20),
    column=st.text(max_size=10),
)
def test_first_draws_are_each_cells_first_draw(seed: int, rows: list[int], column: str) -> None:
    try:
        expected = [rng_for(seed, row, column).getrandbits(31) for row in rows]
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            first_draws(seed, rows, column, 31)
        return
    assert first_draws(seed, rows, column, 31) == expected


@settings(max_examples=50, deadline=None)
@given(
    endpoint=st.text(max_size=12),
    column=st.text(max_size=12),
    run_seed=st.integers(0, 2**64) | st.booleans(),
    cells=st.lists(
        st.tuples(st.integers(0, 10**12), st.integers(0, 2**31 - 1) | st.booleans()),
        max_size=6,
    ),
)
def test_cache_keys_are_cache_key_of_each_cell(
    endpoint: str, column: str, run_seed: int, cells: list[tuple[int, int]]
) -> None:
    """For names never seen (the canonical encoder) and seen (their quoted text kept), any
    names and values: the keys :func:`cache_key` gives one cell at a time."""
    bodies = [b'{"n":%d}' % i for i in range(len(cells))]
    rows = [row for row, _ in cells]
    seeds = [seed for _, seed in cells]
    try:
        expected: Any = [
            cache_key(endpoint, body, CellKey(run_seed, row, column, seed))
            for body, (row, seed) in zip(bodies, cells, strict=True)
        ]
    except UnicodeEncodeError:
        expected = UnicodeEncodeError
    for _ in range(2):
        try:
            got: Any = cache_keys(endpoint, bodies, run_seed, rows, column, seeds)
        except UnicodeEncodeError:
            got = UnicodeEncodeError
        assert got == expected


def test_peek_many_finds_what_get_finds_and_counts_nothing(tmp_path: Path) -> None:
    good = encode_fields("answer", None, 3, 4, 0, "stop", "m")
    answers = {b"k1": good, b"k2": b"not json", b"k3": good}

    async def main() -> None:
        with trio.fail_after(10):
            await trio.lowlevel.checkpoint()
            cache = ResponseCache(CacheStore(tmp_path), on_loop=True)
            cache._answers.update(answers)
            found = cache.peek_many([b"k1", b"k2", b"absent", b"k3"])
            assert found[1] is True
            assert found[2] is False
            statistics = cache.statistics()
            assert (statistics.hits, statistics.corrupt, statistics.misses) == (0, 0, 0)
            assert found[0] == cache.get(b"k1") == found[3]
            cache.count_hits(2)
            assert cache.statistics().hits == 3

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def tally_of(usage: CellUsage) -> dict[str, Any]:
    return {name: getattr(usage, name) for name in CellUsage.__slots__}


@pytest.mark.parametrize(
    "column",
    [
        LLMTextColumn(
            name="t", model="gen", prompt="Tell me about {{ topic }}.", system_prompt="Be {{ x }}."
        ),
        LLMStructuredColumn(
            name="s",
            model="gen",
            prompt="Rate {{ topic }}.",
            schema={
                "type": "object",
                "properties": {"n": {"type": "integer"}},
                "required": ["n"],
            },
        ),
    ],
)
def test_an_llm_generators_column_wise_replay_is_its_cache_only_pass(
    tmp_path: Path, column: Any
) -> None:
    """``LLMGenerator.replay_cached`` against ``agenerate`` under the cache-only pass, through
    a real model handle and response cache (a virtual clock: a hit's latency is 0 in both):
    the same values and tallies for the cells it serves; ``MISSED`` for a cell whose answer
    is not stored; ``None`` for one whose stored answer needs a re-ask (not valid JSON, for
    the structured column; empty, for the text one), or cannot be read, or whose prompt
    cannot render; and no hit counted by it."""
    from trio_designer import PipelineConfig
    from trio_designer.models._cached import cache_only
    from trio_designer.models._registry import open_model_registry

    config = PipelineConfig.from_dict(
        {
            "models": [{"alias": "gen", "model": "sim-gen", "provider": "simulator"}],
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]}
            ],
        }
    )

    generator = build_llm_generator(column)
    rows = [{"topic": f"t{i}", "x": "brief"} for i in range(8)]
    rows[5] = {"x": "brief"}  # no topic: the prompt does not render
    indices = [100 + i for i in range(8)]

    async def main() -> None:
        with trio.fail_after(10):
            async with (
                ResponseCache.open(tmp_path) as cache,
                open_model_registry(config, cache=cache) as registry,
            ):
                handle = registry.model("gen")
                # What each cell would ask: its messages and seed, hence its key.
                keys = []
                for row, index in zip(rows, indices, strict=True):
                    if "topic" not in row:
                        keys.append(None)
                        continue
                    ctx = CellContext(column=column.name, row_index=index, row=row, seed=7)
                    seed = ctx.rng.getrandbits(31)
                    _, _, key, _ = handle._lookup(
                        generator._first_messages(ctx),
                        generator._response_format,
                        column.inference,
                        seed,
                        CellKey(7, index, column.name, seed),
                    )
                    keys.append(key)
                content = '{"n": 3}' if column.kind == "llm_structured" else "An answer."
                needs_a_re_ask = "not json {" if column.kind == "llm_structured" else "  "
                stored = {
                    keys[0]: encode_fields(content, None, 5, 6, 0, "stop", "sim-gen"),
                    keys[1]: encode_fields(content, "why", 1, 2, 1, "stop", "sim-gen"),
                    keys[2]: encode_fields(needs_a_re_ask, None, 1, 1, 0, "stop", "sim-gen"),
                    keys[3]: b"garbage",
                    keys[4]: encode_fields(content, None, 1, 1, 0, "length", "sim-gen"),
                    # keys[6]: not stored
                    keys[7]: encode_fields(content, None, 9, 9, 0, "stop", "sim-gen"),
                }
                cache._answers.update(stored)
                before = cache.statistics()
                got = generator.replay_cached(rows, indices, seed=7, models=registry)
                after = cache.statistics()
                assert (after.hits, after.corrupt, after.misses) == (
                    before.hits,
                    before.corrupt,
                    before.misses,
                )
                assert got[2:6] == [None] * 4
                assert got[6] is MISSED
                for i in (0, 1, 7):
                    entry = got[i]
                    assert isinstance(entry, tuple)
                    value, usage = entry
                    ctx = CellContext(
                        column=column.name,
                        row_index=indices[i],
                        row=rows[i],
                        seed=7,
                        models=registry,
                    )
                    scratch = CellUsage()
                    token = cache_only.set(True)
                    try:
                        with recording(scratch):
                            expected = await generator.agenerate(ctx)
                    finally:
                        cache_only.reset(token)
                    assert value == expected
                    assert tally_of(usage) == tally_of(scratch)

    trio.run(main, clock=trio.testing.MockClock(rate=0, autojump_threshold=0))


def test_a_cached_answers_tally_is_add_answers() -> None:
    for latency in (0.0, 1e-6, 0.25):
        built = CellUsage.of_cached_answer("gen", "m", "stop", 3, 4, 1, 2, latency)
        added = CellUsage()
        added.add_answer(
            alias="gen",
            model="m",
            finish_reason="stop",
            input_tokens=3,
            output_tokens=4,
            reasoning_tokens=1,
            cached_input_tokens=2,
            latency=latency,
            cost=0.0,
            cached=True,
        )
        assert tally_of(built) == tally_of(added)
        assert type(built) is CellUsage
