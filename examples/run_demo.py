"""`make run`: the Deep pipeline against the built-in simulated endpoint, with progress.

The simulated models answer in about 0.3 s (lognormal, seeded), like a fast hosted endpoint.
Writes parquet under --output-dir and prints a summary and three records.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import trio

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer.simulator import Latency, SimulatedModel

HERE = Path(__file__).parent


async def main(output_dir: Path, num_records: int) -> None:
    config = PipelineConfig.from_file(HERE / "deep.yaml")
    designer = TrioDesigner(
        progress=True,  # sticky bars on a terminal, a plain block every 5 s otherwise
        simulator_models=[
            SimulatedModel(name="sim-gen", latency=Latency(median=0.3, sigma=0.4), capacity=64),
            SimulatedModel(name="sim-judge", latency=Latency(median=0.2, sigma=0.3), capacity=32),
        ],
    )
    result = await designer.create(config, num_records=num_records, output_dir=output_dir)
    print(
        f"\n{result.status}: {result.num_records_written}/{result.num_records_requested} rows "
        f"in {result.elapsed:.1f} s, {len(result.files)} parquet files in {output_dir}"
    )
    for alias, usage in result.usage.items():
        print(f"  model {alias}: {usage}")
    table = result.table
    print(f"schema: {', '.join(f'{f.name}: {f.type}' for f in table.schema)}")
    for record in table.slice(0, 3).to_pylist():
        print(
            {
                k: (v[:70] + "…" if isinstance(v, str) and len(v) > 70 else v)
                for k, v in record.items()
            }
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", type=Path, default=Path("out/demo"))
    parser.add_argument("--num-records", type=int, default=100)
    args = parser.parse_args()
    shutil.rmtree(args.output_dir, ignore_errors=True)
    trio.run(main, args.output_dir, args.num_records)
