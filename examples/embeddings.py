"""Structured products with search vectors, on the built-in simulated endpoints.

Runs ``examples/embeddings.yaml``: each row gets a product (a struct column: name, description,
price, tags), an embedding of its description (``llm_embedding``: 16 texts per request to
``/v1/embeddings``, stored as fixed_size_list<float32, 64>) and a judge's score. Then it reads
the struct fields back, finds each of the first products' nearest neighbour by cosine
similarity, and exports the dataset as JSONL next to the output directory. The output
directory also holds the dataset card, ``README.md``.

Run: ``.venv/bin/python examples/embeddings.py --num-records 200``
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import trio

from trio_designer import PipelineConfig, TrioDesigner, export_dataset
from trio_designer.simulator import Latency, SimulatedModel

HERE = Path(__file__).parent


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


async def main(output_dir: Path, num_records: int) -> None:
    config = PipelineConfig.from_file(HERE / "embeddings.yaml")
    designer = TrioDesigner(
        simulator_models=[
            SimulatedModel(name="sim-gen", latency=Latency(median=0.05, sigma=0.3)),
            SimulatedModel(name="sim-embed", latency=Latency(median=0.02, sigma=0.2)),
        ],
    )
    result = await designer.create(config, num_records=num_records, output_dir=output_dir)
    print(
        f"{result.status}: {result.num_records_written}/{result.num_records_requested} rows "
        f"in {result.elapsed:.1f} s"
    )
    for alias, usage in result.usage.items():
        requests, tokens = usage["requests_ok"], usage["input_tokens"]
        print(f"  model {alias}: {requests} requests, {tokens} input tokens")
    table = result.to_arrow()
    print(f"  description_vec: {table.schema.field('description_vec').type}")
    print(f"  product: {table.schema.field('product').type}")
    rows = table.to_pylist()
    for row in rows[:3]:
        vector = row["description_vec"]
        others = [other for other in rows if other is not row]
        best = max(others, key=lambda other: cosine(vector, other["description_vec"]))
        score = cosine(vector, best["description_vec"])
        name, nearest = row["product"]["name"], best["product"]["name"]
        print(f"  {name!r} is nearest to {nearest!r} ({score:.2f})")
    exported = export_dataset(output_dir, "jsonl", overwrite=True)
    print(f"  card: {output_dir / 'README.md'}; jsonl: {exported}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", type=Path, default=Path("out/embeddings"))
    parser.add_argument("--num-records", type=int, default=200)
    args = parser.parse_args()
    shutil.rmtree(args.output_dir, ignore_errors=True)
    trio.run(main, args.output_dir, args.num_records)
