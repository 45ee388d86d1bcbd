"""Bench 5: engine overhead — cells per second with generators that cost (almost) nothing.

Two pipelines of 10 cell columns after one category sampler, each column reading the previous
one (so every completion unlocks the next cell, exercising the dependency tracking):

* ``custom``: ``async def`` custom functions that return at once (no thread, no sleep): the
  engine's own cost per cell;
* ``expression``: Jinja expressions (``{{ prev }}``): the engine plus template rendering.

Both engines, real (wall) time on one core (the run is single-threaded: no generator here uses
a worker thread), in-memory sink (``preview``), default ``RunConfig``. Then cProfile of the async
engine on the ``custom`` pipeline names the top costs (tottime, % of the profiled run).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_designer import PipelineConfig, TrioDesigner

from . import _common as c

COLUMNS = 10


async def zero(row: Any) -> int:
    """A custom cell generator that costs nothing."""
    return 1


@attrs.frozen(kw_only=True)
class Params:
    cells: tuple[int, ...] = (10_000, 1_000_000)
    pipelines: tuple[str, ...] = ("custom", "expression")
    engines: tuple[str, ...] = ("async", "sync")
    profile_cells: int = 100_000
    top: int = 25


PROFILES = {
    "full": Params(),
    "quick": Params(cells=(10_000, 100_000), profile_cells=20_000),
    "smoke": Params(cells=(500,), pipelines=("custom",), profile_cells=500, top=5),
}


def pipeline(kind: str) -> PipelineConfig:
    columns: list[dict[str, Any]] = [
        {"name": "c0", "kind": "sampler", "sampler": "category", "values": list(c.TOPICS)}
    ]
    for i in range(1, COLUMNS + 1):
        if kind == "custom":
            columns.append(
                {
                    "name": f"c{i}",
                    "kind": "custom",
                    "function": "benches.overhead:zero",
                    "depends_on": [f"c{i - 1}"],
                }
            )
        else:
            columns.append({"name": f"c{i}", "kind": "expression", "expr": f"{{{{ c{i - 1} }}}}"})
    return PipelineConfig.from_dict({"columns": columns, "run": {"seed": 3}})


def measure(kind: str, engine: str, cells: int) -> dict[str, Any]:
    rows = max(1, cells // COLUMNS)
    config = pipeline(kind)

    async def one() -> Any:
        return await TrioDesigner(engine=engine).preview(  # type: ignore[arg-type]
            config, num_records=rows
        )

    wall, cpu = time.perf_counter(), time.process_time()
    result = trio.run(one)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result.num_records_written == rows
    return {
        "pipeline": kind,
        "engine": engine,
        "cells": rows * COLUMNS,
        "wall_s": wall,
        "cpu_s": cpu,
        "cells_per_s": rows * COLUMNS / wall,
    }


def profile_async(cells: int, top: int) -> dict[str, Any]:
    """cProfile the async engine on the ``custom`` pipeline; the top functions by tottime."""
    config = pipeline("custom")
    rows = max(1, cells // COLUMNS)

    async def one() -> Any:
        return await TrioDesigner().preview(config, num_records=rows)

    profiler = cProfile.Profile()
    profiler.enable()
    trio.run(one)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt  # type: ignore[attr-defined]
    entries = []
    for (file, line, func), (_cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append(
            {
                "function": f"{_short(file)}:{line}({func})",
                "calls": nc,
                "tottime_s": tt,
                "tottime_pct": 100 * tt / total,
                "cumtime_s": ct,
                "cumtime_pct": 100 * ct / total,
            }
        )
    by_tot = sorted(entries, key=lambda e: -e["tottime_s"])[:top]
    ours = [e for e in entries if "trio_designer" in e["function"]]
    by_cum = sorted(ours, key=lambda e: -e["cumtime_s"])[:top]
    return {
        "cells": rows * COLUMNS,
        "profiled_s": total,
        "top_tottime": by_tot,
        "top_cumtime_trio_designer": by_cum,
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "trio_designer/", "lib/python3"):
        if marker in path:
            return path[path.index(marker) :].removeprefix("site-packages/")
    return path


def run(profile: str = "full", *, results_dir: Path, img_dir: Path | None) -> dict[str, Any]:
    p = PROFILES[profile]
    runs = []
    for cells in p.cells:
        for kind in p.pipelines:
            for engine in p.engines:
                runs.append(measure(kind, engine, cells))
                r = runs[-1]
                print(
                    f"  {kind:10} {engine:5} {r['cells']:>9,} cells: {r['wall_s']:.1f} s, "
                    f"{r['cells_per_s']:,.0f} cells/s",
                    flush=True,
                )
    print("\nEngine overhead — zero-latency generators, one core, in-memory sink")
    print(
        c.table(
            ["pipeline", "engine", "cells", "wall s", "cpu s", "cells/s"],
            [
                [r["pipeline"], r["engine"], r["cells"], r["wall_s"], r["cpu_s"], r["cells_per_s"]]
                for r in runs
            ],
        )
    )
    prof = profile_async(p.profile_cells, p.top)
    print(f"\ncProfile of the async engine, custom pipeline, {prof['cells']:,} cells (tottime)")
    print(
        c.table(
            ["function", "calls", "tottime s", "% of run"],
            [
                [e["function"], e["calls"], e["tottime_s"], f"{e['tottime_pct']:.1f}%"]
                for e in prof["top_tottime"]
            ],
        )
    )
    print("\n... and trio_designer's functions by cumulative time")
    print(
        c.table(
            ["function", "calls", "cumtime s", "% of run"],
            [
                [e["function"], e["calls"], e["cumtime_s"], f"{e['cumtime_pct']:.1f}%"]
                for e in prof["top_cumtime_trio_designer"]
            ],
        )
    )
    payload = {"profile": profile, "params": attrs.asdict(p), "runs": runs, "cprofile": prof}
    path = c.write_result("overhead", payload, results_dir)
    print(f"wrote {path}")
    return payload
