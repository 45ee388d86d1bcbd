"""The dataset card (``README.md``) every finished run writes (issue 14).

A real run against the embedded simulator (real clock: the sink writes in worker threads), then
the card is read back: front matter, counts, schema, usage, per-column profile (checked against
statistics of the whole table computed at once), config. The profile is streamed one row group
at a time; a hand-made directory checks the categorical/text cut and the null counts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
import trio
import yaml

from trio_designer import TrioDesigner
from trio_designer._sink import CARD_FILE, dataset_card, write_dataset_card
from trio_designer._sink._card import CATEGORICAL_MAX, _observe_table
from trio_designer._sink._stored import read_metadata
from trio_designer.config import (
    CategorySampler,
    ExpressionColumn,
    LLMEmbeddingColumn,
    LLMStructuredColumn,
    LLMTextColumn,
    ModelConfig,
    PipelineConfig,
    RunConfig,
    UniformSampler,
)
from trio_designer.simulator import Latency, SimulatedModel

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
    "additionalProperties": False,
}


def _pipeline() -> PipelineConfig:
    return PipelineConfig(
        models=(
            ModelConfig(alias="gen", model="sim-gen", provider="simulator"),
            ModelConfig(alias="emb", model="sim-embed", provider="simulator"),
        ),
        run=RunConfig(row_group_size=5, seed=11),
        columns=(
            CategorySampler(name="topic", values=("tea", "jazz", "owls")),
            UniformSampler(name="score", low=0, high=10),
            LLMTextColumn(name="summary", model="gen", prompt="Tell me about {{ topic }}."),
            LLMStructuredColumn(
                name="product", model="gen", prompt="A product about {{ topic }}.", schema=SCHEMA
            ),
            ExpressionColumn(name="n", expr="{{ summary | length }}", dtype="int"),
            LLMEmbeddingColumn(name="vec", model="emb", text="{{ summary }}", dimensions=8),
        ),
    )


@pytest.fixture
def out(tmp_path: Path) -> Path:
    fast = [
        SimulatedModel(name="sim-gen", latency=Latency(median=0.001)),
        SimulatedModel(name="sim-embed", latency=Latency(median=0.001)),
    ]

    async def run() -> None:
        with trio.fail_after(30):
            await TrioDesigner(simulator_models=fast).create(
                _pipeline(), num_records=12, output_dir=tmp_path / "shop"
            )

    trio.run(run)
    return tmp_path / "shop"


def _section(card: str, title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", card, re.MULTILINE | re.DOTALL)
    assert match, title
    return match.group(1)


def _profile_row(card: str, column: str) -> str:
    for line in _section(card, "Column profile").splitlines():
        if line.startswith(f"| `{column}` |"):
            return line
    raise AssertionError(column)


def test_a_finished_run_writes_its_card(out: Path) -> None:
    card = (out / CARD_FILE).read_text(encoding="utf-8")
    assert card == dataset_card(out)  # what the run wrote is what the function renders
    assert not list(out.glob("*.tmp*"))
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["configs"][0]["data_files"][0]["path"] == "parquet-files/*.parquet"
    assert "\n---\n\n# shop\n" in card

    counts = _section(card, "Counts")
    assert "| 12 | 12 | 0 | 3 of 3 |" in counts
    assert re.search(r"\| `summary` \| 12 \| 0 \| 0 \|", counts)

    schema = _section(card, "Schema")
    assert "| `product` | `struct<name: string not null, price: double not null>` |" in schema
    assert "| `vec` | `fixed_size_list<item: float>[8]` |" in schema

    meta = read_metadata(out)
    usage = _section(card, "Models and token usage")
    gen = meta.summary["usage"]["gen"]
    requests, tokens = gen["requests_ok"], gen["input_tokens"]
    assert f"| `gen` | sim-gen | simulator | {requests} | {tokens:,} |" in usage
    assert "not computed" in usage

    config = _section(card, "Configuration")
    assert "Seed: `11`" in config
    assert "trio_designer 0.1.0" in config
    block = config.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(block) == meta.config


def test_the_profile_matches_the_whole_table(out: Path) -> None:
    card = (out / CARD_FILE).read_text(encoding="utf-8")
    table = ds.dataset(out / "parquet-files").to_table()

    score = table.column("score")
    low, high = pc.min_max(score)["min"].as_py(), pc.min_max(score)["max"].as_py()
    row = _profile_row(card, "score")
    assert f"min {low:,.4g} · mean {pc.mean(score).as_py():,.4g} · max {high:,.4g}" in row

    counts = {v: table.column("topic").to_pylist().count(v) for v in ("tea", "jazz", "owls")}
    row = _profile_row(card, "topic")
    assert row.count("categorical, 3 values")
    for value, count in counts.items():
        if count:
            assert f"{value}: {count} (" in row

    lengths = pc.utf8_length(table.column("summary"))
    row = _profile_row(card, "summary")
    mean = pc.mean(lengths).as_py()
    assert f"length (characters): min {pc.min(lengths).as_py():,} · mean {mean:,.1f}" in row

    price = pc.struct_field(table.column("product"), [1])
    assert f"mean {pc.mean(price).as_py():,.4g}" in _profile_row(card, "product.price")
    assert "length (items): min 8 · mean 8.0 · max 8" in _profile_row(card, "vec")


def test_categorical_text_and_null_profiles(tmp_path: Path) -> None:
    """Written through the parquet sink's own record by hand: many distinct strings are text,
    few are categorical, nulls are counted, an all-null column shows a dash."""
    many = [f"line {i}" for i in range(CATEGORICAL_MAX + 1)]
    rows = len(many)
    table = pa.table(
        {
            "text": many,
            "cat": ["a", "b", None] * (rows // 3) + ["a"] * (rows % 3),
            "flag": [True, False] * (rows // 2) + [True] * (rows % 2),
            "empty": pa.nulls(rows, pa.string()),
        }
    )
    out = _written(tmp_path, table)
    card = write_dataset_card(out).read_text(encoding="utf-8")
    assert "length (characters): min 6" in _profile_row(card, "text")
    cat = _profile_row(card, "cat")
    assert cat.startswith(f"| `cat` | `string` | {rows // 3:,} | categorical, 2 values: a:")
    assert "categorical, 2 values: True: 51" in _profile_row(card, "flag")
    assert _profile_row(card, "empty").endswith("| — |")


def _written(tmp_path: Path, table: pa.Table) -> Path:
    """An output directory holding ``table`` in two row groups, written by the parquet sink."""
    from trio_designer._sink import ParquetSink

    out = tmp_path / "hand"

    async def write() -> None:
        with trio.fail_after(30):
            sink = ParquetSink(out)
            half = table.num_rows // 2
            await sink.open(
                fingerprint="sha256:x",
                config={"columns": []},
                num_records=table.num_rows,
                row_group_size=half + 1,
            )
            await sink.write_row_group(0, table.slice(0, half + 1), requested_rows=half + 1)
            rest = table.slice(half + 1)
            await sink.write_row_group(1, rest, requested_rows=rest.num_rows)
            await sink.close(status="complete", summary={})

    trio.run(write)
    return out


def test_a_directory_without_a_run_is_a_sink_error(tmp_path: Path) -> None:
    from trio_designer import SinkError

    with pytest.raises(SinkError, match=r"has no metadata\.json"):
        dataset_card(tmp_path)


def test_small_columns_profiled_in_python_match_the_compute_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """String and boolean columns of up to ``_IN_PYTHON`` values are profiled from their Python
    values (the end of a run's card, ``_Stats.add_values``): the same card as from the compute
    kernels, with nulls, non-ASCII text (lengths in characters), ties, and a column that goes
    past ``CATEGORICAL_MAX`` only in its second row group."""
    from trio_designer._sink import _card

    rows = CATEGORICAL_MAX + 2
    table = pa.table(
        {
            "text": [f"line {i} é ☕" if i % 7 else None for i in range(rows)],
            "late": [f"v{i}" for i in range(rows)],  # categorical in its first row group only
            "cat": ["ü", "b", None, "b"] * (rows // 4) + ["ü"] * (rows % 4),
            "flag": [True, None, False] * (rows // 3) + [False] * (rows % 3),
            "empty": pa.nulls(rows, pa.string()),
            "big": pa.array(["", "long text " * 30] * (rows // 2), pa.large_string()),
        }
    )
    out = _written(tmp_path, table)
    in_python = dataset_card(out)
    monkeypatch.setattr(_card, "_IN_PYTHON", -1)  # every column through the compute kernels
    assert dataset_card(out) == in_python
    assert "length (characters): min 10 · mean 10.9 · max 12" in _profile_row(in_python, "text")
    assert "length (characters)" in _profile_row(in_python, "late")


def test_an_unpriced_draft_skips_the_sums_but_not_for_another_config(tmp_path: Path) -> None:
    """Prepared with a config whose models have no price, the draft skips the provenance sums
    (the card shows no cost); rendered with another config, which may have prices, it gives
    up (``None``: the sink builds the card from the directory)."""
    from trio_designer._sink._card import CardDraft
    from trio_designer._sink._metadata import RowGroupEntry, RunMetadata
    from trio_designer._sink._provenance import CELLS_SCHEMA

    config = {"models": [{"alias": "gen", "model": "m"}], "columns": []}
    meta = RunMetadata(
        fingerprint="sha256:x",
        config=config,
        num_records=2,
        row_group_size=2,
        status="running",
        started_at="t",
        updated_at="t",
    )
    table = pa.table({"topic": ["a", "b"]})
    cell = {"row_id": 0, "row_group": 0, "column": "c", "status": "ok", "model_alias": "gen"}
    cells = pa.Table.from_pylist([{**cell, "requests": 1, "cost": 0.5}], schema=CELLS_SCHEMA)
    entry = RowGroupEntry(file="parquet-files/row-group-00000.parquet", rows=2, requested_rows=2)
    final = meta.with_entry(0, entry, schema=table.schema, now="t")
    draft = CardDraft(tmp_path)
    draft.prepare(final)
    draft.observe(0, table, cells)
    text = draft.render(final)
    assert text is not None
    assert "not computed" in text
    priced = {"models": [{"alias": "gen", "model": "m", "price": {"input_per_mtok": 1.0}}]}
    assert draft.render(RunMetadata(**{**_fields(final), "config": priced})) is None


def _fields(meta: object) -> dict[str, object]:
    import attrs

    return attrs.asdict(meta, recurse=False)  # type: ignore[arg-type]


def test_a_long_text_is_shortened_from_its_prefix_as_from_the_whole() -> None:
    """``_short`` normalises a long text from a prefix: the same result as from the whole
    text, whatever the whitespace around the cut."""
    import random

    from trio_designer._sink._card import _SHOWN_CHARS, _short

    def whole(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"

    rng = random.Random(7)
    pieces = ["a", "bb", "word", " ", "  ", "\n", "\t", "é", "x" * 50, " " * 120]
    texts = ["", "short", " " * 500 + "tail", "y" * 400, "z " * 200]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 120))) for _ in range(500)]
    for text in texts:
        assert _short(text) == whole(text), repr(text)


def test_struct_and_integer_leaves_are_profiled_as_with_compute_calls() -> None:
    """A struct's leaves come from ``flatten()`` and small integer columns from their Python
    values (``_Stats.add_integers``): the statistics are those of ``pc.struct_field``,
    ``pc.min_max`` and ``pc.sum`` — nulls of the struct included, and a sum beyond int64 (where
    ``pc.sum`` wraps around) left to ``pc.sum``."""
    kind = pa.struct([("q", pa.struct([("r", pa.string()), ("s", pa.int64())]))])
    rows = [{"q": {"r": "a", "s": 3}}, None, {"q": None}, {"q": {"r": None, "s": -(2**62)}}]
    judged = pa.array(rows, type=kind)
    table = pa.table(
        {
            "judge": pa.chunked_array([judged.slice(1), judged.slice(0, 2)]),
            "n": pa.chunked_array([[1, None, 2**62], [2**62, 5]]),
            "big": pa.chunked_array([[2**63 - 1, 1, 0, 0, 0]]),
        }
    )
    stats: dict[str, object] = {}
    _observe_table(stats, table)  # type: ignore[arg-type]
    judge = table.column("judge")
    expected = {
        "judge.q.s": pc.struct_field(pc.struct_field(judge, [0]), [1]),
        "n": table.column("n"),
        "big": table.column("big"),
    }
    for name, column in expected.items():
        entry = stats[name]
        bounds = pc.min_max(column)
        assert entry.nulls == column.null_count, name  # type: ignore[attr-defined]
        assert (entry.low, entry.high) == (  # type: ignore[attr-defined]
            bounds["min"].as_py(),
            bounds["max"].as_py(),
        ), name
        assert entry.sums == [float(pc.sum(column).as_py())], name  # type: ignore[attr-defined]
        assert entry.valued == len(column) - column.null_count, name  # type: ignore[attr-defined]
    reasons = pc.struct_field(pc.struct_field(judge, [0]), [0])
    assert stats["judge.q.r"].nulls == reasons.null_count == 4  # type: ignore[attr-defined]
