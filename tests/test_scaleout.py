"""Sharded runs (issue 16): a shard is a plain function, and the union of the shards of an
n-shard run is the one-process run, byte for byte, for any n.

In-process shards (each its own ``trio.run``, each with its own embedded simulator: the
simulator's answers are a pure function of the request, so shards in different processes
get the same bytes) against a one-process ``create``; the process pool, the kill test and the
command line are in ``tests/test_scaleout_processes.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio

from trio_designer import PipelineConfig, SinkError, TrioDesigner
from trio_designer._core._shares import limit_share, shard_row_groups
from trio_designer._scaleout import ShardManifest, run_shard_async, shard_config
from trio_designer._scaleout._merge import merge
from trio_designer._sink import read_cells
from trio_designer.cli import main as cli_main
from trio_designer.simulator import Latency, SimulatedModel

SIMULATED = [SimulatedModel(name="sim-gen", latency=Latency(median=0.001))]

CONFIG_DICT: dict[str, Any] = {
    "models": [{"alias": "gen", "model": "sim-gen", "max_parallel_requests": 7, "rpm": 6000}],
    "run": {"seed": 11, "row_group_size": 3},
    "columns": [
        {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["cats", "owls"]},
        {"name": "x", "kind": "sampler", "sampler": "uniform", "low": 0, "high": 1},
        {"name": "id", "kind": "sampler", "sampler": "uuid"},
        {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "Write about {{ topic }}."},
        {"name": "n_chars", "kind": "expression", "expr": "{{ text | length }}"},
    ],
}
CONFIG = PipelineConfig.from_dict(CONFIG_DICT)
NUM_RECORDS = 20  # 7 row groups of 3, the last one short


def designer() -> TrioDesigner:
    return TrioDesigner(simulator_models=SIMULATED)


def single_process(out: Path) -> None:
    async def main() -> None:
        with trio.fail_after(20):
            await designer().create(CONFIG, num_records=NUM_RECORDS, output_dir=out)

    trio.run(main)


def run_shards(out: Path, num_shards: int, config: PipelineConfig = CONFIG) -> list[ShardManifest]:
    async def main() -> list[ShardManifest]:
        with trio.fail_after(30):
            return [
                await run_shard_async(
                    config,
                    shard=i,
                    num_shards=num_shards,
                    num_records=NUM_RECORDS,
                    output_dir=out,
                    designer=designer(),
                )
                for i in range(num_shards)
            ]

    return trio.run(main)


def row_group_files(folder: Path) -> dict[str, bytes]:
    """File name -> bytes of every row-group file under ``folder``."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.rglob("row-group-*.parquet"))
        if p.parent.name != "provenance"  # the per-cell sidecars share the row groups' names
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "out"
    single_process(out)
    return out


@pytest.mark.deadline(60)
@pytest.mark.parametrize("num_shards", [1, 2, 3, 7])
def test_the_union_of_the_shards_is_the_one_process_run_byte_for_byte(
    reference: Path, tmp_path: Path, num_shards: int
) -> None:
    manifests = run_shards(tmp_path / "out", num_shards)
    assert [m.status for m in manifests] == ["complete"] * num_shards
    # The shards' ranges partition the row groups, in order.
    ranges = [list(m.row_groups) for m in manifests]
    assert [g for r in ranges for g in r] == list(range(7))
    # Every row group's file is byte-identical to the one-process run's.
    expected = row_group_files(reference / "parquet-files")
    assert len(expected) == 7
    assert row_group_files(tmp_path / "out" / "shards") == expected
    # And so is the table, read the way a user reads it.
    files = [tmp_path / "out" / f for m in manifests for f in m.files]
    union = pa.concat_tables([pq.read_table(f) for f in files])
    single = pa.concat_tables(
        [pq.read_table(reference / "parquet-files" / name) for name in sorted(expected)]
    )
    assert union.num_rows == NUM_RECORDS
    assert union.equals(single)


@pytest.mark.deadline(30)
def test_a_shard_records_the_whole_runs_config_and_fingerprint(tmp_path: Path) -> None:
    manifests = run_shards(tmp_path / "out", 2)
    fingerprints = {m.fingerprint for m in manifests}
    assert len(fingerprints) == 1
    for m in manifests:
        meta = json.loads((m.output_dir / "metadata.json").read_text())
        assert meta["fingerprint"] == m.fingerprint
        assert meta["config"]["models"][0]["max_parallel_requests"] == 7  # the total
        shard_json = json.loads((m.output_dir / "shard.json").read_text())
        assert shard_json["status"] == "complete"
        assert sorted(int(k) for k in meta["row_groups"]) == list(m.row_groups)


@pytest.mark.deadline(30)
def test_a_shard_run_again_generates_nothing(tmp_path: Path) -> None:
    run_shards(tmp_path / "out", 3)
    before = row_group_files(tmp_path / "out" / "shards")
    again = run_shards(tmp_path / "out", 3)
    assert [m.rows_written for m in again] == [0, 0, 0]
    assert [m.status for m in again] == ["complete"] * 3
    assert row_group_files(tmp_path / "out" / "shards") == before


@pytest.mark.deadline(30)
def test_a_shard_of_another_config_is_refused_naming_the_field(tmp_path: Path) -> None:
    run_shards(tmp_path / "out", 2)
    edited = PipelineConfig.from_dict({**CONFIG_DICT, "run": {**CONFIG_DICT["run"], "seed": 12}})
    with pytest.raises(SinkError, match=r"run\.seed changed"):
        run_shards(tmp_path / "out", 2, edited)


@pytest.mark.deadline(30)
def test_a_shard_directory_of_another_split_is_refused(tmp_path: Path) -> None:
    run_shards(tmp_path / "out", 2)
    with pytest.raises(SinkError, match="split differently: num_shards 2 \\(now 3\\)"):
        run_shards(tmp_path / "out", 3)


def test_row_groups_partition_for_any_number_of_shards() -> None:
    for groups in (0, 1, 5, 7, 100):
        for n in range(1, 12):
            ranges = [shard_row_groups(groups, i, n) for i in range(n)]
            assert [g for r in ranges for g in r] == list(range(groups))
            sizes = [len(r) for r in ranges]
            assert max(sizes) - min(sizes) <= 1


def test_limit_shares_sum_to_the_total() -> None:
    for total in range(1, 40):
        for n in range(1, total + 1):
            shares = [limit_share(total, i, n) for i in range(n)]
            assert sum(shares) == total
            assert max(shares) - min(shares) <= 1
    assert [limit_share(2, i, 3) for i in range(3)] == [1, 1, 1]  # never below 1


def test_shard_config_shares_every_models_limits() -> None:
    shares = [shard_config(CONFIG, i, 3).models[0] for i in range(3)]
    assert [m.max_parallel_requests for m in shares] == [3, 2, 2]
    assert [m.rpm for m in shares] == [2000, 2000, 2000]
    assert [m.tpm for m in shares] == [None, None, None]


@pytest.mark.deadline(60)
def test_the_merge_links_the_provenance_so_inspect_cells_and_row_work(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``merge`` links each row group's provenance sidecar as it links its data: the merged
    run's per-cell records are the one-process run's (timings aside), and ``inspect --cells``
    and ``--row`` read the merged directory."""
    out = tmp_path / "out"
    run_shards(out, 3)
    merge(out)
    meta = json.loads((out / "metadata.json").read_text())
    for rg in range(7):
        name = f"row-group-{rg:05d}.parquet"
        assert meta["row_groups"][str(rg)]["cells"] == f"provenance/{name}"
        assert (out / "provenance" / name).is_file()
    key = ["row_id", "row_group", "column", "status", "attempts", "requests", "output_tokens"]
    assert read_cells(out).select(key).equals(read_cells(reference).select(key))
    assert cli_main(["inspect", str(out), "--cells", "--json"]) == 0
    merged = json.loads(capsys.readouterr().out)["cells"]
    assert cli_main(["inspect", str(reference), "--cells", "--json"]) == 0
    single = json.loads(capsys.readouterr().out)["cells"]
    assert {c: v["statuses"] for c, v in merged.items()} == {
        c: v["statuses"] for c, v in single.items()
    }
    assert merged["text"]["requests"] == NUM_RECORDS
    assert cli_main(["inspect", str(out), "--row", "19"]) == 0
    assert capsys.readouterr().out.startswith("row 19 (row group 6): ")
    # Merging again gives the same directory.
    merge(out)
    assert sorted(p.name for p in (out / "provenance").iterdir()) == sorted(
        f"row-group-{rg:05d}.parquet" for rg in range(7)
    )


def seeded_config(seed_path: Path, sampling: str) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            **CONFIG_DICT,
            "seed": {"path": str(seed_path), "sampling": sampling},
            "columns": [
                *CONFIG_DICT["columns"],
                {"name": "q", "kind": "llm_text", "model": "gen", "prompt": "On {{ question }}"},
            ],
        }
    )


@pytest.mark.deadline(60)
@pytest.mark.parametrize("sampling", ["ordered", "shuffle"])
def test_shards_of_a_seeded_run_read_their_own_seed_rows_and_equal_the_one_process_run(
    tmp_path: Path, sampling: str
) -> None:
    """With a seed dataset each shard reads the seed rows of its own row ids (its part of the
    seed, for ``ordered``: rows ``[start, stop)`` of its row groups) and the union of 1, 2, 3
    and 7 shards is the one-process run, byte for byte."""
    seed_path = tmp_path / "seed.parquet"
    pq.write_table(
        pa.table({"qid": list(range(NUM_RECORDS)), "question": [f"q{i}?" for i in range(20)]}),
        seed_path,
        row_group_size=6,  # the seed's parquet row groups do not line up with the run's
    )
    config = seeded_config(seed_path, sampling)

    async def one_process(out: Path) -> None:
        with trio.fail_after(20):
            await designer().create(config, num_records=NUM_RECORDS, output_dir=out)

    trio.run(one_process, tmp_path / "single")
    expected = row_group_files(tmp_path / "single" / "parquet-files")
    assert len(expected) == 7
    for num_shards in (1, 2, 3, 7):
        out = tmp_path / f"shards-{num_shards}"
        manifests = run_shards(out, num_shards, config)
        assert row_group_files(out / "shards") == expected
        if sampling == "ordered":
            for m in manifests:
                rows = [r for f in m.files for r in pq.read_table(out / f)["qid"].to_pylist()]
                start = m.row_group_start * 3
                assert rows == list(range(start, min(NUM_RECORDS, m.row_group_stop * 3)))


def test_a_shards_child_process_starts_without_optional_heavy_imports() -> None:
    """Each shard's child pays its imports (~1 s of CPU, ``docs/benchmarks.md``, "Branch
    scalebench"): httpx (only for ``transport: httpx``), trio.testing (which imports pytest
    when installed) and jsonschema (only for schemas) stay out of its start-up."""
    import subprocess
    import sys

    heavy = ("httpx", "rich", "pytest", "trio.testing", "jsonschema", "referencing")
    code = (
        "import sys, trio_designer._scaleout._child; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
