"""Smoke test of the benchmarks: every bench's code path on tiny sizes (the ``smoke`` profile).

Benchmarks are not tests; this only checks that each bench still runs against the current
engine, prints its table, writes its JSON (to a temporary directory, never to
``benches/results``), and that a few facts that must hold at any size do hold: a lower bound is
never above the makespan it bounds, the async engine is never slower than the sync one on the
Dual-model shape in virtual time, and the memory bench measures a real peak.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from benches import (
    adaptivity,
    bound,
    cache,
    client_cpu,
    endpoints,
    memory,
    overhead,
    scale,
    scaleout,
    seed,
    seed_memory,
    small_runs,
)
from benches.__main__ import main as bench_main


def _run(module: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    module.run("smoke", results_dir=tmp_path, img_dir=None)
    out = capsys.readouterr().out
    assert "|---" in out, out  # a table was printed
    name = module.__name__.rsplit(".", 1)[-1]
    data: dict[str, Any] = json.loads((tmp_path / f"{name}.json").read_text())
    assert data["bench"] == name
    assert data["machine"]["nproc"] >= 1
    assert data["profile"] == "smoke"
    return data


def test_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _run(seed, tmp_path, capsys)
    virtual = data["variants"][0]
    dual = next(r for r in virtual if r["shape"] == "Dual-model")
    assert dual["async_s"] <= dual["sync_s"]
    assert len(data["variants"]) == 2


def test_bound_is_a_lower_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _run(bound, tmp_path, capsys)
    for r in data["runs"]:
        assert r["bound"]["simple"] <= r["bound"]["refined"] <= r["makespan"] + 1e-9, r
    # fixed latency 0.2 s: the bound is exact for the async engine on these shapes
    assert all(
        r["ratio_refined"] == pytest.approx(1.0) for r in data["runs"] if r["engine"] == "async"
    )


def test_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _run(scale, tmp_path, capsys)
    for r in data["runs"]:
        assert 0 < r["busy_fraction"]["sim-judge"] <= 1
        assert r["ratio_to_bound"] >= 1 - 1e-9
        assert len(r["timeline"]["sim-gen"]) == scale.PROFILES["smoke"].bins


def test_adaptivity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _run(adaptivity, tmp_path, capsys)
    assert data["hosted"]["static 64"]["rate_limited"] > 0
    assert data["hosted"]["static 24 (oracle)"]["rate_limited"] == 0
    assert all(r["ok"] == adaptivity.PROFILES["smoke"].records for r in data["gpu"].values())


def test_overhead(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _run(overhead, tmp_path, capsys)
    assert all(r["cells_per_s"] > 0 for r in data["runs"])
    assert data["cprofile"]["top_tottime"]


@pytest.mark.slow
def test_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _run(memory, tmp_path, capsys)
    for r in data["runs"]:
        assert r["written"] == r["records"]
        assert r["peak_rss_kb"] >= r["rss_after_imports_kb"] > 0


def test_client_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _run(client_cpu, tmp_path, capsys)
    levels = client_cpu.PROFILES["smoke"].concurrency
    for section in ("zero_latency", "latency"):
        assert [r["max_parallel_requests"] for r in data[section]] == list(levels)
        assert all(r["requests"] == 5 * r["records"] for r in data[section])
        assert all(r["cpu_us_per_request"] > 0 for r in data[section])
    options = {r["option"] for r in data["transport_options"]}
    assert options >= {"ours, native (h11 on trio)", "ours, transport: httpx"}


def test_small_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    affinity = getattr(os, "sched_getaffinity", lambda pid: None)
    before = affinity(0)
    data = _run(small_runs, tmp_path, capsys)
    params = small_runs.PROFILES["smoke"]
    layouts = small_runs.available_layouts(params.layouts)
    assert data["layouts"] == list(layouts)
    assert [(r["layout"], r["shape"]) for r in data["summary"]] == [
        (layout, shape) for layout in layouts for shape in params.shapes
    ]
    assert affinity(0) == before  # this thread got its CPUs back
    for r in data["summary"]:
        assert r["makespan_s"] >= r["bound_s"]  # every request sleeps its whole latency
        assert r["first_request_ms"] > 0
        assert r["after_last_answer_ms"] > 0
        assert r["requests_span_s"] <= r["makespan_s"]


@pytest.mark.slow
def test_endpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real-endpoints bench: every scenario runs against a simulator in its own process,
    and its facts are reported (tiny sizes: the numbers mean nothing here)."""
    data = _run(endpoints, tmp_path, capsys)
    assert data["hidden8"]["adaptive"]["calls"] == 5 * endpoints.PROFILES["smoke"].hidden8_records
    assert {v["rate"] for v in data["sporadic"]["variants"]} == {0.1, 0.3}
    assert [f["capacity"] for f in data["moving"]["follow"]] == [8, 32]
    assert set(data["budgets"]) == {"config", "headers"}


def test_cli_rejects_unknown_bench(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main(["nope"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benches import validate

    data = _run(validate, tmp_path, capsys)
    [run] = data["runs"]
    assert run["columns"] == 200
    assert set(data["hostile_s"]) == {"billion laughs (YAML)", "10,000-level JSON"}


def test_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _run(cache, tmp_path, capsys)
    assert data["warm"]["warm"]["requests"] == 0
    assert data["warm"]["warm"]["cache"]["hits"] == data["warm"]["fill"]["requests"]
    assert all(r["ratio_cold_to_none"] > 0 for r in data["cold_vs_none"])
    processes = data["cold_vs_none_processes"]  # one child process a run
    assert [r["cache"]["stored"] for r in processes["runs"]["cold"]] == [20 * 5]
    assert processes["runs"]["none"][0]["process_user_s"] > 0


def test_cache_huge_runs_the_warm_figure_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--huge``: the fill and the warm run only (100,000 records; 40 here)."""
    small = cache.Params(warm_records=40, warm_only=True)
    monkeypatch.setitem(cache.PROFILES, "huge", small)
    assert bench_main(["cache", "--huge", "--results-dir", str(tmp_path), "--no-plots"]) == 0
    data = json.loads((tmp_path / "cache.json").read_text())
    assert data["profile"] == "huge"
    assert data["warm"]["warm"]["requests"] == 0
    assert data["warm"]["warm"]["cells"] == 40 * cache.CELLS_PER_ROW
    assert "cold_vs_none" not in data
    assert "|---" in capsys.readouterr().out


@pytest.mark.slow
def test_seed_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _run(seed_memory, tmp_path, capsys)
    for arm in ("with_seed", "without_seed"):
        assert data[arm]["written"] == data[arm]["records"] == 1_500
        assert data[arm]["peak_rss_kb"] > 0
    assert data["ratio"] == data["with_seed"]["peak_rss_kb"] / data["without_seed"]["peak_rss_kb"]



def test_embeddings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Batching: batch 16 sends fewer requests than batch 1 and is never slower; the direct
    shape's makespan is never below its bound."""
    from benches import embeddings

    data = _run(embeddings, tmp_path, capsys)
    rows = {(r["shape"], r["batch_size"]): r for r in data["rows"]}
    for shape in ("direct", "after text"):
        one, sixteen = rows[(shape, 1)], rows[(shape, 16)]
        assert one["embedding_requests"] == one["records"]
        assert sixteen["embedding_requests"] < one["embedding_requests"]
        assert sixteen["makespan"] <= one["makespan"]
        assert sixteen["makespan"] >= sixteen["bound"] - 1e-9


def test_plugins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benches import plugins

    data = _run(plugins, tmp_path, capsys)
    assert data["rows"] == 200
    assert set(data["cells_per_s"]) == {"built-in expression", "plugin reverse_text"}
    assert all(value > 0 for value in data["load_ms"].values())


@pytest.mark.slow
def test_processors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benches import processors

    data = _run(processors, tmp_path, capsys)
    summary = data["summary"]
    assert summary["plain_makespan_s"] > 0
    assert summary["ratio"] == pytest.approx(
        summary["processed_makespan_s"] / summary["plain_makespan_s"]
    )
    processed = [r for r in data["runs"] if r["processed"]]
    assert set(processed[0]["processors"]) == {"filter_0", "dedup_1"}
    assert all(r["rows"] == data["params"]["records"] for r in data["runs"] if not r["processed"])


@pytest.mark.deadline(120)
def test_scaleout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Worker processes against a simulator in its own process: every request is answered
    once, and the served concurrency never exceeds the hidden capacity."""
    data = _run(scaleout, tmp_path, capsys)
    assert [r["workers"] for r in data["throughput"]] == ["create", 2]
    # The canned endpoint's variant: every request answered once, client and endpoint CPU
    # accounted (each child reported its own).
    assert [r["workers"] for r in data["canned"]] == ["create", 2]
    for row in data["canned"]:
        assert row["requests"] == row["records"]
        assert row["client_cpu_s"] > 0
        assert row["endpoint_cpu_ms_per_request"] >= 0
    assert data["canned"][1]["client_startup_cpu_s"] > 0
    for row in data["hidden"]:
        assert row["served_peak"] <= row["capacity"]
        assert row["limit_sum"] >= 1
