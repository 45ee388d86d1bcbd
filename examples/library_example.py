"""Using trio_designer as a library: build a pipeline in Python, preview it, then create it.

Run: ``.venv/bin/python examples/library_example.py``
"""

from __future__ import annotations

import trio

from trio_designer import (
    CategorySampler,
    CustomColumn,
    ExpressionColumn,
    LLMStructuredColumn,
    LLMTextColumn,
    ModelConfig,
    PipelineBuilder,
    TrioDesigner,
    UniformSampler,
)


def price_band(row: dict[str, object]) -> str:
    """A custom column: plain Python, reads the columns named in ``depends_on``."""
    price = float(row["price"])  # type: ignore[arg-type]
    return "budget" if price < 20 else "premium"


CONFIG = (
    PipelineBuilder()
    .add_model(ModelConfig(alias="gen", model="sim-gen", max_parallel_requests=16))
    .add_column(CategorySampler(name="product", values=("tea", "coffee", "cocoa")))
    .add_column(UniformSampler(name="price", low=5, high=40, decimal_places=2))
    .add_column(CustomColumn(name="band", function=price_band, depends_on=("price",)))
    .add_column(
        LLMTextColumn(
            name="review",
            model="gen",
            prompt="Write a short {{ band }} review of our {{ product }} at ${{ price }}.",
        )
    )
    .add_column(
        LLMStructuredColumn(
            name="sentiment",
            model="gen",
            prompt="Classify the sentiment of: {{ review }}",
            schema={
                "type": "object",
                "properties": {"label": {"enum": ["positive", "neutral", "negative"]}},
                "required": ["label"],
            },
        )
    )
    .add_column(ExpressionColumn(name="label", expr="{{ sentiment.label }}"))
    .with_run(seed=42, row_group_size=50)
    .build()
)


async def main() -> None:
    designer = TrioDesigner()
    preview = await designer.preview(CONFIG, num_records=3)
    for record in preview.table.to_pylist():
        print(record["product"], record["price"], record["band"], record["label"])
    result = await designer.create(CONFIG, num_records=200, output_dir="out/library_example")
    print(result.status, result.num_records_written, "rows in", result.output_dir)


if __name__ == "__main__":
    trio.run(main)
