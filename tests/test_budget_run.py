"""Budgets end to end: a run stops admitting row groups at its budget, keeps what it wrote,
ends ``budget_exhausted``; a resume with a larger budget continues exactly where it stopped.
Requests are counted on the server side (the simulator's request log), over real HTTP.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import trio

from trio_designer import ConfigError, PipelineConfig, TrioDesigner
from trio_designer.simulator import Latency, SimulatedModel, open_simulator

SIMULATED = [SimulatedModel(name="sim-gen", latency=Latency(median=0.002, sigma=0.0))]


def pipeline(url: str, **run: Any) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": "local", "base_url": url}],
            "models": [
                {
                    "alias": "gen",
                    "model": "sim-gen",
                    "provider": "local",
                    "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
                }
            ],
            "run": {"row_group_size": 4, "max_row_groups_in_flight": 2, "seed": 1, **run},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["x"]},
                {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "{{ topic }}"},
            ],
        }
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


PORT = free_port()  # one endpoint for every session: its base_url is part of the fingerprint


def create(out: Path, *, resume: bool = False, **run: Any) -> tuple[Any, int]:
    async def main() -> tuple[Any, int]:
        with trio.fail_after(30):
            async with open_simulator(SIMULATED, port=PORT) as sim:
                result = await TrioDesigner().create(
                    pipeline(sim.url, **run), num_records=20, output_dir=out, resume=resume
                )
                return result, len(sim.request_log())

    return trio.run(main)


@pytest.mark.slow
def test_a_request_budget_stops_admission_and_a_resume_finishes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # 4 requests per row group. The first group goes alone (no estimate yet), the second fits
    # (8 <= 9), a third would make 12: admission stops, the groups in flight are written.
    result, served = create(out, max_requests=9)
    assert result.status == "budget_exhausted"
    assert served == 8
    assert result.num_records_written == 8
    assert result.budget["limits"] == {"cost": None, "tokens": None, "requests": 9}
    assert result.budget["spent"]["requests"] == 8
    assert result.budget["spent"]["cost"] > 0
    assert result.budget["stopped_by"] == ["requests"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "budget_exhausted"
    assert sorted(meta["row_groups"]) == ["0", "1"]
    assert meta["summary"]["budget"]["stopped_by"] == ["requests"]

    # A larger budget: the resume pays only for the 3 missing row groups (12 requests).
    result, served = create(out, resume=True, max_requests=100)
    assert result.status == "complete"
    assert served == 12
    assert result.budget["spent"]["requests"] == 20  # the whole run, both sessions
    ids = ds.dataset(out / "parquet-files").to_table().column("_row_id").to_pylist()
    assert sorted(ids) == list(range(20))
    cells = ds.dataset(out / "provenance").to_table()
    assert sum(cells.column("requests").to_pylist()[i] or 0 for i in range(cells.num_rows)) == 20


@pytest.mark.slow
def test_a_resume_with_the_same_budget_buys_nothing_more(tmp_path: Path) -> None:
    out = tmp_path / "out"
    create(out, max_requests=9)
    result, served = create(out, resume=True, max_requests=9)
    assert result.status == "budget_exhausted"
    assert served == 0  # 8 spent, a group costs 4: nothing fits
    assert result.budget["spent"]["requests"] == 8


def test_max_cost_needs_a_price_on_every_model() -> None:
    data = {
        "models": [{"alias": "gen", "model": "sim-gen"}],
        "run": {"max_cost": 1.0},
        "columns": [{"name": "t", "kind": "llm_text", "model": "gen", "prompt": "hi"}],
    }
    with pytest.raises(ConfigError, match=r"run\.max_cost: model 'gen' has no price"):
        PipelineConfig.from_dict(data)
    data["run"] = {"max_requests": 10}  # requests and tokens need no price
    assert PipelineConfig.from_dict(data).run.max_requests == 10
