"""Two pipelines side by side in one trio nursery, inside your own ``trio.run``.

Each ``create`` is an ordinary async call, so structured concurrency composes: both runs share
the event loop, each has its own models, limits and output directory, and if one fails the
nursery cancels the other (its finished row groups stay on disk).

Run: ``.venv/bin/python examples/side_by_side.py [--num-records N]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import trio

from trio_designer import PipelineConfig, RunResult, TrioDesigner

HERE = Path(__file__).parent


async def run_one(name: str, num_records: int, results: dict[str, RunResult]) -> None:
    config = PipelineConfig.from_file(HERE / f"{name}.yaml")
    results[name] = await TrioDesigner().create(
        config, num_records=num_records, output_dir=Path("out") / f"side_by_side_{name}"
    )


async def main(num_records: int) -> None:
    results: dict[str, RunResult] = {}
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_one, "wide", num_records, results)
        nursery.start_soon(run_one, "dual_model", num_records, results)
    for name, result in results.items():
        print(
            f"{name}: {result.status}, {result.num_records_written} rows in {result.elapsed:.1f} s"
        )
    print(f"both done in {trio.current_time() - start:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-records", type=int, default=20)
    trio.run(main, parser.parse_args().num_records)
