"""Bench 6: peak memory vs records — it must stay flat.

Each size runs in a fresh subprocess (``python -m benches.memory --child N OUT``) so peaks do not
carry over: a pipeline of zero-latency generators (category and uuid samplers, a Jinja
expression, an ``async def`` custom function) writes ``N`` records to parquet with row groups of
1,000 rows (at most 3 in flight, the default), async engine, real time. The child reports its
RSS after imports and a tiny warm-up run (``VmRSS``) and its peak (``VmHWM`` from
``/proc/self/status``; ``ru_maxrss`` where there is no /proc).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_designer import PipelineConfig, TrioDesigner

from . import _common as c


@attrs.frozen(kw_only=True)
class Params:
    records: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    row_group_size: int = 1_000


PROFILES = {
    "full": Params(),
    "quick": Params(records=(10_000, 100_000)),
    "smoke": Params(records=(500, 1_500), row_group_size=250),
}


async def tag(row: Any) -> str:
    """A zero-latency async custom column."""
    return f"{row['topic']}#"


def pipeline(row_group_size: int) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "run": {"seed": 1, "row_group_size": row_group_size},
            "columns": [
                {
                    "name": "topic",
                    "kind": "sampler",
                    "sampler": "category",
                    "values": list(c.TOPICS),
                },
                {"name": "id", "kind": "sampler", "sampler": "uuid"},
                {"name": "title", "kind": "expression", "expr": "{{ topic | title }} {{ id }}"},
                {
                    "name": "tagged",
                    "kind": "custom",
                    "function": "benches.memory:tag",
                    "depends_on": ["topic"],
                },
            ],
        }
    )


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def child(records: int, out: Path, row_group_size: int) -> dict[str, Any]:
    """Run in the subprocess: one create() of ``records`` rows; memory figures in KiB."""
    config = pipeline(row_group_size)
    warm = pipeline(row_group_size)

    async def go(n: int, where: Path) -> Any:
        return await TrioDesigner().create(
            config if n == records else warm, num_records=n, output_dir=where
        )

    trio.run(go, 10, out / "warmup")
    baseline = _status_kb("VmRSS")
    start = time.perf_counter()
    result = trio.run(go, records, out / "run")
    wall = time.perf_counter() - start
    peak = _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "records": records,
        "written": result.num_records_written,
        "files": len(result.files),
        "rss_after_imports_kb": baseline,
        "peak_rss_kb": peak,
        "wall_s": wall,
    }


def measure(records: int, row_group_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="td-bench-mem-") as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benches.memory",
                "--child",
                str(records),
                tmp,
                str(row_group_size),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=c.ROOT,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child for {records} records failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    runs = []
    for records in p.records:
        runs.append(measure(records, p.row_group_size))
        r = runs[-1]
        print(
            f"  {records:>9,} records: peak {r['peak_rss_kb'] / 1024:.0f} MiB "
            f"in {r['wall_s']:.1f} s",
            flush=True,
        )
    base = runs[0]["peak_rss_kb"]
    print(f"\nMemory — peak RSS vs records, row groups of {p.row_group_size:,}, parquet sink")
    print(
        c.table(
            [
                "records",
                "row groups",
                "RSS after imports MiB",
                "peak RSS MiB",
                "vs smallest",
                "wall s",
                "records/s",
            ],
            [
                [
                    r["records"],
                    r["files"],
                    r["rss_after_imports_kb"] / 1024,
                    r["peak_rss_kb"] / 1024,
                    f"{(r['peak_rss_kb'] - base) / 1024:+.1f} MiB",
                    r["wall_s"],
                    r["records"] / r["wall_s"],
                ]
                for r in runs
            ],
        )
    )
    payload = {"profile": profile, "params": attrs.asdict(p), "runs": runs}
    path = c.write_result("memory", payload, results_dir)
    print(f"wrote {path}")
    _plot(runs, img_dir)
    return payload


def _plot(runs: list[dict[str, Any]], img_dir: Path | None) -> None:
    plt = c.pyplot(img_dir)
    if plt is None or img_dir is None:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [r["records"] for r in runs]
    ax.plot(xs, [r["peak_rss_kb"] / 1024 for r in runs], marker="o", label="peak RSS")
    ax.plot(
        xs,
        [r["rss_after_imports_kb"] / 1024 for r in runs],
        marker=".",
        linestyle="--",
        label="RSS after imports",
    )
    ax.set_xscale("log")
    ax.set_ylim(0, max(r["peak_rss_kb"] for r in runs) / 1024 * 1.3)
    ax.set_xlabel("records (log scale)")
    ax.set_ylabel("MiB")
    ax.set_title("Peak RSS vs records (row groups of 1,000, parquet)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(img_dir / "memory_rss.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        report = child(int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps(report))
    else:
        sys.exit("usage: python -m benches.memory --child RECORDS OUT_DIR ROW_GROUP_SIZE")
