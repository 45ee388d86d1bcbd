"""``inspect --cells`` and ``inspect --row N`` over a real run (simulator, real HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from test_provenance import SIMULATED, pipeline

from trio_designer import TrioDesigner
from trio_designer.cli import main
from trio_designer.simulator import open_simulator


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cells") / "out"

    async def create() -> None:
        with trio.fail_after(30):
            async with open_simulator(SIMULATED) as sim:
                await TrioDesigner().create(pipeline(sim.url), num_records=10, output_dir=out)

    trio.run(create)
    return out


@pytest.mark.slow
def test_inspect_cells_counts_statuses_tokens_and_errors(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(run_dir), "--cells", "--json"]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert list(cells) == ["topic", "summary", "risky", "echo"]
    risky, summary = cells["risky"], cells["summary"]
    failed = risky["statuses"]["failed"]
    assert failed > 0
    assert risky["statuses"]["skipped"] == 10 - failed
    assert risky["errors"] == {"ModelContentFilteredError": failed}
    assert summary["statuses"]["dropped_upstream"] == failed
    assert summary["statuses"]["ok"] == 10 - failed
    assert summary["requests"] == 10
    assert summary["cost"] > 0
    assert risky["cost"] is None  # no price for its alias
    assert 0 < summary["latency_p50_s"] <= summary["latency_p95_s"]
    assert main(["inspect", str(run_dir), "--cells"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("cells per column:\n")
    assert f"risky: ModelContentFilteredError x{failed}" in text


@pytest.mark.slow
def test_inspect_row_tells_one_rows_story(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(run_dir), "--cells", "--json"]) == 0
    assert main(["inspect", str(run_dir), "--row", "0", "--json"]) == 0
    story = json.loads(capsys.readouterr().out.split("\n}\n", 1)[1])
    statuses = {c["column"]: c["status"] for c in story["cells"]}
    if statuses["risky"] == "failed":
        assert story["values"] is None
        assert statuses["summary"] == "dropped_upstream"
    else:
        assert story["values"]["_row_id"] == 0
    assert main(["inspect", str(run_dir), "--row", "0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("row 0 (row group 0): ")
    assert "summary  " in text
    assert main(["inspect", str(run_dir), "--row", "99"]) == 0
    assert "no per-cell records" in capsys.readouterr().out


@pytest.mark.slow
def test_model_usage_summary_for_the_dataset_card(run_dir: Path) -> None:
    from trio_designer._sink import model_usage_summary

    summary = model_usage_summary(run_dir)
    assert list(summary) == ["gen", "strict"]
    gen, strict = summary["gen"], summary["strict"]
    assert gen["model"] == "sim-gen"
    assert gen["price"] == {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
    assert gen["requests"] == 10
    assert gen["cost"] == pytest.approx(
        (gen["input_tokens"] * 2.0 + gen["output_tokens"] * 8.0) / 1e6
    )
    assert strict["price"] is None
    assert strict["cost"] is None
    assert strict["requests"] > 0


@pytest.mark.slow
def test_the_dataset_card_shows_the_cost_of_priced_models(run_dir: Path) -> None:
    from trio_designer._sink import CARD_FILE, model_usage_summary

    card = (run_dir / CARD_FILE).read_text(encoding="utf-8")
    cost = model_usage_summary(run_dir)["gen"]["cost"]
    gen = next(line for line in card.splitlines() if line.startswith("| `gen` |"))
    assert gen.endswith(f"| {cost:.4f} (whole dataset) |")
    strict = next(line for line in card.splitlines() if line.startswith("| `strict` |"))
    assert strict.endswith("| not computed |")  # no price
