"""Sharded runs across processes (issue 16): the local process pool, a shard killed and
resumed, an interrupted multi-shard run resumed with the same command, and the Slurm path
(``run-shard`` + ``merge``) — every model call over loopback HTTP to ONE simulator in its own
process (``python -m trio_designer.simulator``), whose ``GET /log`` counts the requests
server-side.

Row-group files are compared byte for byte with a one-process ``create`` of the same config.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import trio

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._scaleout._workers import run_workers
from trio_designer.cli import main as cli_main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ROW_GROUP_SIZE = 5
NUM_RECORDS = 60  # 12 row groups
LLM_COLUMNS = 1


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    """The simulator in its own process; yields its ``/v1`` base URL."""
    command = [
        sys.executable,
        "-m",
        "trio_designer.simulator",
        "--port",
        "0",
        "--model",
        "sim-gen:latency=0.03,mode=gpu,capacity=64",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://"), url
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


def _call(url: str, method: str, path: str) -> Any:
    root = url.removesuffix("/v1")
    request = urllib.request.Request(
        root + path, method=method, data=b"" if method == "POST" else None
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def requests_logged(url: str) -> int:
    return len(_call(url, "GET", "/log")["records"])


def reset(url: str) -> None:
    _call(url, "POST", "/stats/reset")


def config_dict(url: str, max_parallel: int = 4) -> dict[str, Any]:
    return {
        "providers": [{"name": "ext", "base_url": url}],
        "models": [
            {
                "alias": "gen",
                "model": "sim-gen",
                "provider": "ext",
                "max_parallel_requests": max_parallel,
            }
        ],
        "run": {"seed": 5, "row_group_size": ROW_GROUP_SIZE, "max_row_groups_in_flight": 2},
        "columns": [
            {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a", "b", "c"]},
            {"name": "x", "kind": "sampler", "sampler": "gaussian", "mean": 0, "stddev": 1},
            {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "On {{ topic }}."},
        ],
    }


def write_config(folder: Path, url: str, max_parallel: int = 4) -> Path:
    path = folder / "pipeline.json"
    path.write_text(json.dumps(config_dict(url, max_parallel)))
    return path


@pytest.fixture(scope="module")
def reference(simulator: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Row-group file name -> bytes of a one-process run of the same config."""
    out = tmp_path_factory.mktemp("single") / "out"
    config = PipelineConfig.from_dict(config_dict(simulator))

    async def main() -> None:
        with trio.fail_after(30):
            await TrioDesigner().create(config, num_records=NUM_RECORDS, output_dir=out)

    trio.run(main)
    return files_of(out / "parquet-files")


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("row-group-*.parquet"))}


def finished_row_groups(out: Path) -> set[int]:
    done: set[int] = set()
    for meta_path in (out / "shards").glob("*/metadata.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            continue
        done |= {int(k) for k in meta.get("row_groups", {})}
    return done


@pytest.mark.deadline(90)
def test_a_process_pool_of_more_shards_than_workers_equals_the_one_process_run(
    simulator: str, reference: dict[str, bytes], tmp_path: Path
) -> None:
    config = PipelineConfig.from_dict(config_dict(simulator))
    out = tmp_path / "out"
    reset(simulator)

    async def main() -> Any:
        with trio.fail_after(80):
            return await run_workers(
                config,
                num_records=NUM_RECORDS,
                output_dir=out,
                workers=3,
                num_shards=7,
                progress_interval=None,
                compact=True,
            )

    result = trio.run(main)
    assert result.status == "complete"
    assert result.attempts == (1,) * 7
    # Each child reported its CPU: start-up (imports, the job) before its run, and the total.
    assert len(result.child_cpu) == 7
    for cpu in result.child_cpu:
        assert cpu is not None
        assert 0 < cpu[0] <= cpu[1]
    assert result.merged is not None
    assert result.merged.rows == NUM_RECORDS
    assert files_of(out / "parquet-files") == reference
    # Every cell was bought exactly once.
    assert requests_logged(simulator) == NUM_RECORDS * LLM_COLUMNS
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "complete"
    assert meta["rows_written"] == NUM_RECORDS
    assert len(meta["summary"]["shards"]) == 7
    compacted = pq.read_table(out / result.merged.compacted[0])
    single = pq.ParquetDataset(out / "parquet-files").read()
    assert compacted.equals(single)


@pytest.mark.deadline(120)
def test_a_killed_shard_is_started_again_and_resumes_from_its_finished_row_groups(
    simulator: str, reference: dict[str, bytes], tmp_path: Path
) -> None:
    config = PipelineConfig.from_dict(config_dict(simulator, max_parallel=2))
    out = tmp_path / "out"
    reset(simulator)
    pids: dict[int, int] = {}
    killed: dict[str, Any] = {}

    def shard0_groups() -> set[int]:
        return finished_row_groups(out) & set(range(6))  # shard 0 of 2: row groups 0..5

    async def killer() -> None:
        while not (0 in pids and len(shard0_groups()) >= 3):  # noqa: ASYNC110 (polls files)
            await trio.sleep(0.01)
        os.kill(pids[0], signal.SIGKILL)
        killed["done"] = shard0_groups()  # final: the process is gone

    async def main() -> Any:
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(killer)
                result = await run_workers(
                    config,
                    num_records=NUM_RECORDS,
                    output_dir=out,
                    workers=2,
                    progress_interval=None,
                    on_child=lambda shard, pid: pids.setdefault(shard, pid),
                )
                nursery.cancel_scope.cancel()
            return result

    result = trio.run(main)
    assert result.status == "complete"
    assert result.attempts == (2, 1)
    done_at_kill = killed["done"]
    assert 3 <= len(done_at_kill) < 6
    assert files_of(out / "parquet-files") == reference
    # Nothing finished was bought again: beyond the cells of the run, at most the cells that
    # were in flight in the killed shard's unfinished row groups.
    extra = requests_logged(simulator) - NUM_RECORDS * LLM_COLUMNS
    unfinished = 6 - len(done_at_kill)
    assert 0 <= extra <= unfinished * ROW_GROUP_SIZE * LLM_COLUMNS
    meta0 = json.loads((out / "shards" / "0" / "metadata.json").read_text())
    assert meta0["summary"]["row_groups_found_on_disk"] == len(done_at_kill)


@pytest.mark.deadline(120)
def test_an_interrupted_multi_shard_run_resumes_with_the_same_command(
    simulator: str, reference: dict[str, bytes], tmp_path: Path
) -> None:
    path = write_config(tmp_path, simulator, max_parallel=2)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "trio_designer",
        "run",
        str(path),
        "-n",
        str(NUM_RECORDS),
        "-o",
        str(out),
        "--workers",
        "2",
        "--progress",
        "none",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "first.log"
    with (
        log.open("wb") as stderr,
        subprocess.Popen(
            command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr
        ) as process,
    ):
        try:
            deadline = time.monotonic() + 60
            while len(finished_row_groups(out)) < 3:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.01)
            os.killpg(process.pid, signal.SIGKILL)  # the parent and every shard, at once
        finally:
            process.wait(timeout=10)
    time.sleep(0.3)  # requests in flight when the shards died reach the log
    done = finished_row_groups(out)
    assert 3 <= len(done) < 12
    reset(simulator)
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
    assert rerun.returncode == 0, rerun.stderr
    assert "status: complete" in rerun.stdout
    assert files_of(out / "parquet-files") == reference
    # Exactly the rows of the row groups that were not on disk were generated again.
    assert requests_logged(simulator) == (12 - len(done)) * ROW_GROUP_SIZE * LLM_COLUMNS


@pytest.mark.deadline(90)
def test_the_slurm_path_run_shard_then_merge(
    simulator: str, reference: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, simulator)
    out = tmp_path / "out"
    common = ["run-shard", str(path), "-n", str(NUM_RECORDS), "-o", str(out), "--num-shards", "3"]
    assert cli_main([*common, "--shard", "0"]) == 0
    # A missing shard: merge refuses, naming it.
    assert cli_main(["merge", str(out)]) == 2
    assert "shard 1 of 3 has not run" in capsys.readouterr().err
    # A shard of another seed: merge refuses, naming the field.
    assert cli_main([*common, "--shard", "1", "--seed", "9"]) == 0
    assert cli_main([*common, "--shard", "2"]) == 0
    capsys.readouterr()
    assert cli_main(["merge", str(out)]) == 2
    err = capsys.readouterr().err
    assert "shard 1 was made by another config" in err
    assert "run.seed changed" in err
    # Redo shard 1 with the run's config (SLURM_ARRAY_TASK_ID stands in for --shard).
    import shutil

    shutil.rmtree(out / "shards" / "1")
    os.environ["SLURM_ARRAY_TASK_ID"] = "1"
    try:
        assert cli_main(common) == 0
    finally:
        del os.environ["SLURM_ARRAY_TASK_ID"]
    assert cli_main(["merge", str(out), "--compact"]) == 0
    assert "merged 3 shards: 60 rows" in capsys.readouterr().out
    assert files_of(out / "parquet-files") == reference
    assert cli_main(["inspect", str(out)]) == 0
    assert "row groups: 12 of 12 written" in capsys.readouterr().out


@pytest.mark.deadline(120)
def test_ctrl_c_stops_every_shard_cleanly_and_the_same_command_resumes(
    simulator: str, reference: dict[str, bytes], tmp_path: Path
) -> None:
    """SIGINT to the terminal's process group (what Ctrl-C sends): the parent and every shard
    stop cleanly (shards record ``interrupted``), nothing is started again, exit 130 with
    the command that resumes; that command finishes the run."""
    path = write_config(tmp_path, simulator, max_parallel=2)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "trio_designer",
        "run",
        str(path),
        "-n",
        str(NUM_RECORDS),
        "-o",
        str(out),
        "--workers",
        "2",
        "--progress",
        "none",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "first.log"
    with (
        log.open("wb") as stderr,
        subprocess.Popen(
            command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr
        ) as process,
    ):
        try:
            deadline = time.monotonic() + 60
            while len(finished_row_groups(out)) < 2:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.01)
            os.killpg(process.pid, signal.SIGINT)
            assert process.wait(timeout=60) == 130
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    message = log.read_text()
    assert "resume with:" in message
    statuses = {
        json.loads(p.read_text())["status"] for p in (out / "shards").glob("*/metadata.json")
    }
    assert statuses <= {"interrupted", "complete"}
    assert "interrupted" in statuses
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
    assert rerun.returncode == 0, rerun.stderr
    assert files_of(out / "parquet-files") == reference


@pytest.mark.deadline(120)
def test_shard_processes_share_one_response_cache(
    simulator: str,
    reference: dict[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three shard processes write one SQLite response cache at once: nothing is lost or
    corrupt (every answer stored once, integrity check ok), and a run split differently — two
    shards, so each reads answers the others' processes wrote — buys nothing and writes the
    same bytes."""
    import sqlite3

    from trio_designer._cache._store import CacheStore

    monkeypatch.setenv("TRIO_DESIGNER_CACHE", "on")  # the suite's default is off; children inherit
    cache = tmp_path / "cache"
    data = config_dict(simulator)
    data["run"] = {**data["run"], "cache_dir": str(cache)}
    config = PipelineConfig.from_dict(data)

    def run(out: Path, workers: int) -> Any:
        async def main() -> Any:
            with trio.fail_after(100):
                return await run_workers(
                    config,
                    num_records=NUM_RECORDS,
                    output_dir=out,
                    workers=workers,
                    progress_interval=None,
                )

        return trio.run(main)

    reset(simulator)
    first = run(tmp_path / "three", 3)
    assert first.status == "complete"
    assert requests_logged(simulator) == NUM_RECORDS * LLM_COLUMNS
    with CacheStore(cache) as store:
        assert store.stats().entries == NUM_RECORDS * LLM_COLUMNS
    with sqlite3.connect(next(cache.glob("*.sqlite3"))) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reset(simulator)
    second = run(tmp_path / "two", 2)
    assert second.status == "complete"
    assert requests_logged(simulator) == 0  # every answer came from the shared cache
    assert files_of(tmp_path / "two" / "parquet-files") == reference
    assert files_of(tmp_path / "three" / "parquet-files") == reference
