"""``trio-designer export`` and ``export_dataset`` (issue 14): jsonl, csv, parquet, hf.

One real run (simulator, real clock: the sink writes in worker threads) with a struct column, a
fixed-size embedding column, text, numbers and a NaN; every format is read back with its own
reader and compared with the stored dataset value by value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import trio
from _cli_harness import run_cli

from trio_designer import SinkError, TrioDesigner
from trio_designer._sink._export import default_destination, export_dataset
from trio_designer.config import (
    CategorySampler,
    ExpressionColumn,
    LLMEmbeddingColumn,
    LLMStructuredColumn,
    ModelConfig,
    PipelineConfig,
    RunConfig,
)
from trio_designer.simulator import Latency, SimulatedModel

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "price": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    },
    "required": ["name", "price", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "shop"
    config = PipelineConfig(
        models=(
            ModelConfig(alias="gen", model="sim-gen"),
            ModelConfig(alias="emb", model="sim-embed"),
        ),
        run=RunConfig(row_group_size=4, seed=2),
        columns=(
            CategorySampler(name="kind", values=("pen", "mug")),
            LLMStructuredColumn(
                name="product", model="gen", prompt="A {{ kind }} to sell.", schema=SCHEMA
            ),
            ExpressionColumn(name="ratio", expr="{{ 'nan' if kind == 'pen' else 0.5 }}",
                             dtype="float"),
            LLMEmbeddingColumn(name="vec", model="emb", text="{{ product.name }}", dimensions=4),
        ),
    )
    fast = [
        SimulatedModel(name="sim-gen", latency=Latency(median=0.001)),
        SimulatedModel(name="sim-embed", latency=Latency(median=0.001)),
    ]

    async def create() -> None:
        with trio.fail_after(30):
            await TrioDesigner(simulator_models=fast).create(
                config, num_records=10, output_dir=out
            )

    trio.run(create)
    return out


def _stored(run_dir: Path) -> pa.Table:
    return ds.dataset(run_dir / "parquet-files").to_table()


def _no_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def test_jsonl_holds_nested_json(run_dir: Path, tmp_path: Path) -> None:
    target = export_dataset(run_dir, "jsonl", tmp_path / "a.jsonl")
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    stored = _stored(run_dir).to_pylist()
    assert len(rows) == len(stored) == 10
    for got, want in zip(rows, stored, strict=True):
        assert got["product"] == want["product"]  # a nested object, not text
        assert got["vec"] == pytest.approx(want["vec"])
        assert got["ratio"] == _no_nan(want["ratio"])  # NaN has no JSON spelling: null
    assert any(row["ratio"] is None for row in rows)


def test_csv_holds_json_text_in_nested_cells(run_dir: Path, tmp_path: Path) -> None:
    target = export_dataset(run_dir, "csv", tmp_path / "a.csv")
    table = pcsv.read_csv(target)
    assert table.column_names == ["_row_id", "kind", "product", "ratio", "vec"]
    stored = _stored(run_dir).to_pylist()
    for got, want in zip(table.to_pylist(), stored, strict=True):
        assert json.loads(got["product"]) == want["product"]
        assert json.loads(got["vec"]) == pytest.approx(want["vec"])
        assert got["kind"] == want["kind"]


def test_parquet_is_one_file_with_the_exact_schema(run_dir: Path, tmp_path: Path) -> None:
    target = export_dataset(run_dir, "parquet", tmp_path / "a.parquet")
    stored = _stored(run_dir)
    file = pq.ParquetFile(target)
    assert file.metadata.num_row_groups == 3  # one per stored row group (10 rows by 4)
    got = file.read()
    assert got.schema.remove_metadata() == stored.schema.remove_metadata()
    assert str(got.to_pylist()) == str(stored.to_pylist())  # str: NaN equals NaN


def test_hf_is_a_directory_datasets_loads(run_dir: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    target = export_dataset(run_dir, "hf", tmp_path / "hf")
    loaded = datasets.load_from_disk(str(target))
    stored = _stored(run_dir).to_pylist()
    assert loaded.num_rows == 10
    assert loaded[0]["product"] == stored[0]["product"]
    assert loaded[3]["vec"] == pytest.approx(stored[3]["vec"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]  # no staging


def test_destinations(run_dir: Path, tmp_path: Path) -> None:
    assert default_destination(run_dir, "jsonl") == run_dir.parent / "shop.jsonl"
    assert default_destination(run_dir, "hf") == run_dir.parent / "shop-hf"
    target = tmp_path / "x.jsonl"
    export_dataset(run_dir, "jsonl", target)
    with pytest.raises(SinkError, match="exists already"):
        export_dataset(run_dir, "jsonl", target)
    export_dataset(run_dir, "jsonl", target, overwrite=True)
    with pytest.raises(SinkError, match="has no metadata"):
        export_dataset(tmp_path, "jsonl", tmp_path / "y.jsonl")
    with pytest.raises(SinkError, match="unknown export format"):
        export_dataset(run_dir, "xml", tmp_path / "y.xml")  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_command(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cmd.jsonl"
    done = run_cli(["export", str(run_dir), "--format", "jsonl", "--output", str(out)])
    assert done.status == 0, done.err
    assert len(out.read_text().splitlines()) == 10
    again = run_cli(["export", str(run_dir), "--format", "jsonl", "--output", str(out)])
    assert again.status == 2
    assert "exists already" in again.err
    bad = run_cli(["export", str(run_dir), "--format", "xml"])
    assert bad.status == 2


@pytest.mark.slow
def test_push_to_hub_needs_hf_and_a_token_and_never_shows_it(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the argument handling: no network. Without a token the command stops before
    exporting anything."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    target = tmp_path / "hub"
    argv = ["export", str(run_dir), "--output", str(target), "--push-to-hub", "me/shop"]
    wrong = run_cli([*argv, "--format", "jsonl"])
    assert wrong.status == 2
    assert "--push-to-hub needs --format hf" in wrong.err
    missing = run_cli([*argv, "--format", "hf"])
    assert missing.status == 2
    assert "set HF_TOKEN" in missing.err
    assert not target.exists()
