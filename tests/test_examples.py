"""Every shipped example loads, validates, and (for the scripts) runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trio_designer import PipelineConfig
from trio_designer._plan import ExecutionGraph

EXAMPLES = Path(__file__).parent.parent / "examples"

SHAPES = {
    "narrow": ["topic", "summary", "analysis", "conclusion"],
    "deep": ["topic", "audience", "summary", "trivia", "analysis", "conclusion", "quality"],
    "wide": ["topic", "summary", "trivia", "analysis", "conclusion", "trivia_2"],
    "dual_model": ["topic", "summary", "trivia", "analysis", "judge_sum", "judge_tri", "judge_ana"],
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shape_examples_validate(name: str) -> None:
    config = PipelineConfig.from_file(EXAMPLES / f"{name}.yaml")
    graph = ExecutionGraph.from_config(config)
    assert set(SHAPES[name]) <= set(graph.order)


def test_seed_shapes_have_the_seed_critical_paths() -> None:
    """Narrow and Deep chain 3 LLM columns, Wide has 1, Dual-model has 2 (generate, judge)."""
    expected = {"narrow": 3, "deep": 3, "wide": 1, "dual_model": 2}
    for name, llm_depth in expected.items():
        graph = ExecutionGraph.from_config(PipelineConfig.from_file(EXAMPLES / f"{name}.yaml"))
        latency = {c: 1.0 for c in graph.order if graph.llm_bound[c]}
        assert graph.critical_path(latency) == llm_depth, name


@pytest.mark.parametrize(
    "script", [["side_by_side.py", "--num-records", "3"], ["run_demo.py", "--num-records", "5"]]
)
@pytest.mark.slow
def test_example_scripts_run(script: list[str], tmp_path: Path) -> None:
    args = [*script, "--output-dir", str(tmp_path / "demo")] if "run_demo" in script[0] else script
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / args[0]), *args[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "complete" in done.stdout


@pytest.mark.slow
@pytest.mark.deadline(60)
async def test_code_sft_example_writes_chat_jsonl_a_trainer_loads(tmp_path: Path) -> None:
    """topic -> instruction -> solution -> code validation -> judge -> filter -> to_chat,
    against the built-in simulator."""
    import json

    from trio_designer import TrioDesigner
    from trio_designer.simulator import Latency, SimulatedModel

    config = PipelineConfig.from_file(EXAMPLES / "code_sft.yaml")
    fast = [
        SimulatedModel(name=name, latency=Latency(median=0.005))
        for name in ("sim-gen", "sim-judge")
    ]
    out = tmp_path / "sft_run"
    result = await TrioDesigner(simulator_models=fast).create(
        config, num_records=12, output_dir=out
    )
    assert result.status == "complete"
    report = result.processors["keep_good"]
    assert report["rows_in"] == 12
    assert report["rows_out"] == result.num_records_written
    assert sum(report["removed"].values()) == 12 - report["rows_out"]
    lines = (out / "sft" / "data.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == result.num_records_written > 0
    for line in lines:
        record = json.loads(line)
        assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
        assert record["messages"][2]["content"].startswith("```python\ndef ")
    table = result.table
    assert all(check["is_valid"] for check in table.column("code_check").to_pylist())
    scores = [json.loads(j)["correctness"]["score"] for j in table.column("judge").to_pylist()]
    assert min(scores) >= 3
    try:
        import datasets  # a fine-tuning framework's loader, when installed
    except ImportError:
        return
    loaded = datasets.load_dataset(
        "json", data_files=str(out / "sft" / "data.jsonl"), cache_dir=str(tmp_path / "hf")
    )["train"]
    assert loaded.num_rows == len(lines)
    assert loaded[0]["messages"][1]["role"] == "user"
