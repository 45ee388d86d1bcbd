"""Bench: a parquet seed as big as the run does not grow peak memory (issue 14).

A seed of ``N`` rows (parquet, row groups of 65,536 rows: ``id`` int64, ``topic``, ``question``
~60 characters) drives an ``N``-record run whose other columns are a Jinja expression and a
custom function reading the seed's columns (no model: the bench measures the seed path, not
the endpoint). The same run **without** a seed draws ``id``/``topic``/``question`` from
samplers (uuid, category) instead. Each run is a fresh subprocess
(``python -m benches.seed_memory --child ...``) reporting ``ru_maxrss`` (peak RSS, KiB), so
neither inherits the other's peak; the seed file is written by the parent beforehand.

Goal: peak RSS with the seed within 1.5x of the run without it — the reader decodes only the
parquet row groups of the row groups in flight (at most 4 kept decoded), never the whole seed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.parquet as pq
import trio

from trio_designer import PipelineConfig, TrioDesigner

from . import _common as c


@attrs.frozen(kw_only=True)
class Params:
    records: int = 1_000_000
    row_group_size: int = 1_000
    seed_row_group_rows: int = 65_536


PROFILES = {
    "full": Params(),
    "quick": Params(records=100_000),
    "smoke": Params(records=1_500, row_group_size=250, seed_row_group_rows=400),
}

GOAL = 1.5


async def shout(row: Any) -> str:
    """The custom column (async, so no worker thread per cell): reads two seed columns."""
    return f"{row['topic']}:{row['id']}"


def pipeline(seed_path: Path | None, row_group_size: int) -> PipelineConfig:
    downstream = [
        {"name": "prompt", "kind": "expression",
         "expr": "Q{{ id }} ({{ topic }}): {{ question | upper }}"},
        {"name": "key", "kind": "custom", "function": "benches.seed_memory:shout",
         "depends_on": ["topic", "id"]},
    ]
    if seed_path is not None:
        return PipelineConfig.from_dict(
            {
                "seed": {"path": str(seed_path)},
                "run": {"seed": 1, "row_group_size": row_group_size},
                "columns": downstream,
            }
        )
    samplers = [
        {"name": "id", "kind": "sampler", "sampler": "uuid", "short_form": True},
        {"name": "topic", "kind": "sampler", "sampler": "category", "values": list(c.TOPICS)},
        {"name": "question", "kind": "sampler", "sampler": "uuid"},
    ]
    return PipelineConfig.from_dict(
        {"run": {"seed": 1, "row_group_size": row_group_size}, "columns": samplers + downstream}
    )


def write_seed(path: Path, rows: int, row_group_rows: int) -> int:
    """The seed file, written in slices (so the parent stays small too); returns its bytes."""
    topics = list(c.TOPICS)
    schema = pa.schema([("id", pa.int64()), ("topic", pa.string()), ("question", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, row_group_rows):
            ids = range(start, min(rows, start + row_group_rows))
            writer.write_table(
                pa.table(
                    {
                        "id": pa.array(list(ids), pa.int64()),
                        "topic": [topics[i % len(topics)] for i in ids],
                        "question": [f"What is the {i}-th most surprising fact about it?"
                                     for i in ids],
                    },
                    schema=schema,
                )
            )
    return path.stat().st_size


def child(seed_path: str, records: int, out: Path, row_group_size: int) -> dict[str, Any]:
    """In the subprocess: one create() of ``records`` rows; peak RSS in KiB."""
    config = pipeline(Path(seed_path) if seed_path != "-" else None, row_group_size)

    async def go() -> Any:
        return await TrioDesigner().create(config, num_records=records, output_dir=out)

    start = time.perf_counter()
    result = trio.run(go)
    wall = time.perf_counter() - start
    return {
        "seed": seed_path != "-",
        "records": records,
        "written": result.num_records_written,
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "wall_s": wall,
    }


def measure(seed_path: Path | None, p: Params) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="td-bench-seedmem-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "benches.seed_memory", "--child",
             str(seed_path) if seed_path is not None else "-", str(p.records),
             str(Path(tmp) / "out"), str(p.row_group_size)],
            capture_output=True,
            text=True,
            check=False,
            cwd=c.ROOT,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"seed_memory child failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    with tempfile.TemporaryDirectory(prefix="td-bench-seed-") as tmp:
        seed_path = Path(tmp) / "seed.parquet"
        seed_bytes = write_seed(seed_path, p.records, p.seed_row_group_rows)
        without = measure(None, p)
        with_seed = measure(seed_path, p)
    ratio = with_seed["peak_rss_kb"] / without["peak_rss_kb"]
    print(f"\nSeed memory — {p.records:,} records, row groups of {p.row_group_size:,}, "
          f"a {p.records:,}-row parquet seed of {seed_bytes / 2**20:.1f} MiB")
    print(
        c.table(
            ["run", "peak RSS MiB", "wall s", "records/s"],
            [
                [name, r["peak_rss_kb"] / 1024, r["wall_s"], r["records"] / r["wall_s"]]
                for name, r in (("without seed", without), ("with seed", with_seed))
            ],
        )
    )
    print(f"peak RSS with / without seed: {ratio:.2f}x (goal <= {GOAL}x)")
    payload = {
        "profile": profile,
        "params": attrs.asdict(p),
        "seed_bytes": seed_bytes,
        "without_seed": without,
        "with_seed": with_seed,
        "ratio": ratio,
        "goal": GOAL,
    }
    path = c.write_result("seed_memory", payload, results_dir)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=4, metavar=("SEED", "RECORDS", "OUT", "ROW_GROUP"))
    args = parser.parse_args()
    seed_arg, records_arg, out_arg, group_arg = args.child
    print(json.dumps(child(seed_arg, int(records_arg), Path(out_arg), int(group_arg))))
