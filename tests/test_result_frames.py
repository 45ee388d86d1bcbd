"""``RunResult.to_arrow()`` / ``to_pandas()`` / ``to_polars()`` (issue 14).

pandas and polars are optional extras: with them, the frames hold the run's values (struct
columns as dicts / polars structs); without them, a MissingDependencyError names the extra.
"""

from __future__ import annotations

import sys
from typing import Any

import pyarrow as pa
import pytest
import trio

from trio_designer import MissingDependencyError, RunResult, TrioDesigner
from trio_designer.config import (
    CategorySampler,
    LLMStructuredColumn,
    ModelConfig,
    PipelineConfig,
)

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
    "additionalProperties": False,
}


@pytest.fixture
async def result(autojump_clock: Any) -> RunResult:
    config = PipelineConfig(
        models=(ModelConfig(alias="gen", model="sim-gen"),),
        columns=(
            CategorySampler(name="kind", values=("pen", "mug")),
            LLMStructuredColumn(name="product", model="gen", prompt="A {{ kind }}.", schema=SCHEMA),
        ),
    )
    with trio.fail_after(100):
        return await TrioDesigner().preview(config, num_records=4)


async def test_to_arrow_is_the_table(result: RunResult) -> None:
    table = result.to_arrow()
    assert table is result.table
    assert pa.types.is_struct(table.schema.field("product").type)


async def test_to_pandas_and_to_polars_hold_the_values(result: RunResult) -> None:
    pytest.importorskip("pandas")
    polars = pytest.importorskip("polars")
    expected = result.table.to_pylist()
    frame = result.to_pandas()
    assert [dict(p) for p in frame["product"]] == [row["product"] for row in expected]
    lazy = result.to_polars()
    assert isinstance(lazy, polars.DataFrame)
    prices = lazy["product"].struct.field("price").to_list()
    assert prices == [row["product"]["price"] for row in expected]


@pytest.mark.parametrize(("method", "extra"), [("to_pandas", "pandas"), ("to_polars", "polars")])
async def test_without_the_extra_the_error_names_it(
    result: RunResult, method: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, extra, None)  # import pandas -> ImportError
    with pytest.raises(MissingDependencyError) as info:
        getattr(result, method)()
    assert f"pip install 'trio_designer[{extra}]'" in str(info.value)
    assert info.value.extra == extra
    assert isinstance(info.value, ImportError)
