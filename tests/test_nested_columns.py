"""Structured and judge columns as nested Arrow columns (issue 14).

The schema → Arrow type mapping (``_sink/_nested.py``) is checked case by case; then a real run
against the embedded simulator (HTTP on 127.0.0.1, virtual time) writes struct columns that
pyarrow, pandas, polars and duckdb read field by field, while templates downstream keep reading
the fields as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer import TrioDesigner
from trio_designer._sink._nested import _surely_fits, arrow_type_for_schema, value_fits
from trio_designer._sink._table import SchemaGuard, build_table
from trio_designer.config import (
    CategorySampler,
    ExpressionColumn,
    LLMJudgeColumn,
    LLMStructuredColumn,
    ModelConfig,
    PipelineConfig,
    Rubric,
    RunConfig,
)
from trio_designer.generators._llm import LLMStructuredGenerator, ParseFailure
from trio_designer.generators._registry import build_generator
from trio_designer.models._client import ChatResponse, Usage
from trio_designer.simulator import Latency, SimulatedModel

PRODUCT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "price": {"type": "number", "minimum": 0},
        "stock": {"type": "integer", "minimum": 0, "maximum": 1000},
        "in_sale": {"type": "boolean"},
        "colour": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "maker": {"$ref": "#/$defs/maker"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["name", "price", "stock", "in_sale", "colour", "tags", "maker", "note"],
    "additionalProperties": False,
    "$defs": {
        "maker": {
            "type": "object",
            "properties": {"company": {"type": "string"}, "country": {"type": "string"}},
            "required": ["company"],
        }
    },
}

PRODUCT_TYPE = pa.struct(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("stock", pa.int64(), nullable=False),
        pa.field("in_sale", pa.bool_(), nullable=False),
        pa.field("colour", pa.string(), nullable=False),
        pa.field("tags", pa.list_(pa.string()), nullable=False),
        pa.field(
            "maker",
            pa.struct(
                [
                    pa.field("company", pa.string(), nullable=False),
                    pa.field("country", pa.string()),
                ]
            ),
            nullable=False,
        ),
        pa.field("note", pa.string()),
    ]
)


def test_an_object_schema_maps_to_a_struct_of_its_properties() -> None:
    assert arrow_type_for_schema(PRODUCT) == PRODUCT_TYPE


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, pa.string()),
        ({"type": "integer"}, pa.int64()),
        ({"type": "number"}, pa.float64()),
        ({"type": "boolean"}, pa.bool_()),
        ({"type": ["integer", "number"]}, pa.float64()),
        ({"enum": ["a", "b", None]}, pa.string()),
        ({"enum": [1, 2, 3]}, pa.int64()),
        ({"enum": [1, 2.5]}, pa.float64()),
        ({"const": True}, pa.bool_()),
        ({"type": "array", "items": {"type": "integer"}}, pa.list_(pa.int64())),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, pa.string()),
        ({"oneOf": [{"type": "integer"}, {"type": "integer", "minimum": 5}]}, pa.int64()),
        (
            {"type": "array", "items": {"$ref": "#/$defs/p"}, "$defs": {"p": {"type": "number"}}},
            pa.list_(pa.float64()),
        ),
    ],
)
def test_scalar_list_and_union_schemas_map(schema: Any, expected: pa.DataType) -> None:
    assert arrow_type_for_schema(schema) == expected


@pytest.mark.parametrize(
    "schema",
    [
        {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        {
            "anyOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}},
                {"type": "string"},
            ]
        },
        {"type": "object"},
        {"type": "object", "additionalProperties": {"type": "integer"}},
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True},
        {"type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {}},
        {"type": "array"},
        {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "string"}},
        {"type": ["string", "integer"]},
        {"enum": ["a", 1]},
        {"allOf": [{"type": "string"}]},
        {"type": "null"},
        {},
        True,
        {"$ref": "#/$defs/missing"},
        {  # recursive: a tree of nodes
            "$ref": "#/$defs/node",
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                }
            },
        },
    ],
)
def test_schemas_that_do_not_map_fall_back_to_json_text(schema: Any) -> None:
    assert arrow_type_for_schema(schema) is None
    column = LLMStructuredColumn(name="s", model="m", prompt="p", schema={"type": "object"})
    assert build_generator(column).arrow_type() == pa.string()


def test_a_value_beyond_int64_is_re_asked_not_written() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    generator = build_generator(LLMStructuredColumn(name="s", model="m", prompt="p", schema=schema))
    assert isinstance(generator, LLMStructuredGenerator)
    assert value_fits({"n": 2**63}, generator.arrow_type()) is not None
    answer = ChatResponse(
        content=json.dumps({"n": 2**63}),
        usage=Usage(),
        finish_reason="stop",
        reasoning=None,
        model="m",
    )
    with pytest.raises(ParseFailure, match="cannot be stored as"):
        generator.parse(answer)
    ok = ChatResponse(
        content='{"n": 3}', usage=Usage(), finish_reason="stop", reasoning=None, model="m"
    )
    assert generator.parse(ok) == {"n": 3}


_ITEM = pa.struct(
    [pa.field("name", pa.string(), nullable=False), pa.field("n", pa.int64(), nullable=True)]
)


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        ("x", pa.string()),
        (None, pa.int64()),
        (2**63 - 1, pa.int64()),
        (2**63, pa.int64()),
        (-(2**63), pa.int64()),
        (True, pa.int64()),
        (1, pa.bool_()),
        (True, pa.bool_()),
        (1.5, pa.float64()),
        (2**53, pa.float64()),
        (2**53 + 1, pa.float64()),
        (1.0, pa.int64()),
        (["a", None], pa.list_(pa.string())),
        (["a", 1], pa.list_(pa.string())),
        ({"name": "a"}, _ITEM),
        ({"n": 1}, _ITEM),
        ({"name": "a", "n": 2**64}, _ITEM),
        ({"name": "a", "extra": 1}, _ITEM),
        ([{"name": "a", "n": None}], pa.list_(_ITEM)),
        ({"name": "a"}, pa.string()),
    ],
)
def test_the_fast_fit_check_never_contradicts_pyarrow(value: Any, data_type: pa.DataType) -> None:
    """``value_fits`` skips pyarrow's trial conversion when ``_surely_fits`` says yes: that yes
    must hold (and the usual shapes do get it)."""
    try:
        pa.array([value], type=data_type)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        converts = False
    else:
        converts = True
    if _surely_fits(value, data_type):
        assert converts
    assert (value_fits(value, data_type) is None) == converts


def test_the_usual_values_fit_without_pyarrow() -> None:
    assert _surely_fits([{"name": "a", "n": 3}, {"name": "b"}], pa.list_(_ITEM))
    assert _surely_fits({"clarity": {"reasoning": "r", "score": 3}}, pa.struct(
        [pa.field("clarity", pa.struct([pa.field("reasoning", pa.string()),
                                        pa.field("score", pa.int64())]))]
    ))  # fmt: skip


def test_the_judge_column_is_a_struct_of_reasoning_and_score_per_rubric() -> None:
    column = LLMJudgeColumn(
        name="verdict",
        model="m",
        prompt="Judge {{ x }}",
        rubrics=(
            Rubric(name="clarity", description="How clear", scores={"1": "bad", "2": "good"}),
            Rubric(name="tone", description="Tone", scores={"warm": "w", "cold": "c"}),
        ),
    )
    expected = pa.struct(
        [
            pa.field(
                "clarity",
                pa.struct(
                    [
                        pa.field("reasoning", pa.string(), nullable=False),
                        pa.field("score", pa.int64(), nullable=False),
                    ]
                ),
                nullable=False,
            ),
            pa.field(
                "tone",
                pa.struct(
                    [
                        pa.field("reasoning", pa.string(), nullable=False),
                        pa.field("score", pa.string(), nullable=False),
                    ]
                ),
                nullable=False,
            ),
        ]
    )
    assert build_generator(column).arrow_type() == expected


def test_a_resumed_run_that_stored_json_text_keeps_json_text() -> None:
    """Runs written before issue 14 stored structured columns as JSON strings: their later
    row groups, now built as structs, are stored as JSON text again so every file agrees."""
    guard = SchemaGuard()
    guard.reference = pa.schema([pa.field("p", pa.string())])
    value = {"name": "pen", "tags": ["a"]}
    table = build_table({"p": [value, None]}, {"p": pa.struct([("name", pa.string())])})
    conformed = guard.conform(3, build_table({"p": [value, None]}, {"p": None}))
    assert conformed.schema == guard.reference
    assert conformed.column("p").to_pylist() == [json.dumps(value, sort_keys=True), None]
    assert guard.conform(4, table).column("p").to_pylist() == ['{"name": "pen"}', None]


# --------------------------------------------------------------------------- a real run


def _pipeline() -> PipelineConfig:
    return PipelineConfig(
        models=(ModelConfig(alias="gen", model="sim-gen", provider="simulator"),),
        run=RunConfig(row_group_size=4, seed=3),
        columns=(
            CategorySampler(name="kind", values=("pen", "lamp", "mug")),
            LLMStructuredColumn(
                name="product", model="gen", prompt="Describe a {{ kind }}.", schema=PRODUCT
            ),
            ExpressionColumn(
                name="label", expr="{{ product.name }} by {{ product.maker.company }}"
            ),
            ExpressionColumn(
                name="first_tag", expr="{{ product.tags[0] if product.tags else '' }}"
            ),
            LLMJudgeColumn(
                name="review",
                model="gen",
                prompt="Judge the product {{ product.name }}.",
                rubrics=(Rubric(name="fit", description="Fit", scores={"1": "no", "5": "yes"}),),
            ),
            LLMStructuredColumn(
                name="loose",
                model="gen",
                prompt="Anything about {{ kind }}.",
                schema={"type": "object", "additionalProperties": True},
            ),
        ),
    )


@pytest.fixture
async def written(tmp_path: Path) -> Path:
    """A real run on the real clock (the sink writes in worker threads, which virtual time
    must not see: style.md 7.6), with a fast simulated model."""
    fast = SimulatedModel(name="sim-gen", latency=Latency(median=0.001))
    designer = TrioDesigner(simulator_models=[fast])
    with trio.fail_after(30):
        result = await designer.create(_pipeline(), num_records=10, output_dir=tmp_path / "out")
    assert result.num_records_written == 10
    return tmp_path / "out"


async def test_struct_columns_round_trip_through_pyarrow(written: Path) -> None:
    table = ds.dataset(written / "parquet-files").to_table()
    assert table.schema.field("product").type == PRODUCT_TYPE
    assert pa.types.is_struct(table.schema.field("review").type)
    assert table.schema.field("loose").type == pa.string()  # free-form: JSON text
    rows = table.to_pylist()
    for row in rows:
        product = row["product"]
        assert set(product) == {f.name for f in PRODUCT_TYPE}
        assert row["label"] == f"{product['name']} by {product['maker']['company']}"
        assert row["first_tag"] == (product["tags"][0] if product["tags"] else "")
        assert row["review"]["fit"]["score"] in (1, 5)
        assert isinstance(json.loads(row["loose"]), dict)


async def test_pandas_polars_and_duckdb_read_the_fields(written: Path) -> None:
    pandas = pytest.importorskip("pandas")
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    expected = ds.dataset(written / "parquet-files").to_table().column("product").to_pylist()
    prices = [p["price"] for p in expected]

    frame = pandas.read_parquet(written / "parquet-files")
    assert [p["price"] for p in frame["product"]] == prices

    lazy = polars.scan_parquet(str(written / "parquet-files" / "*.parquet"))
    got = lazy.select(polars.col("product").struct.field("price")).collect()
    assert got["price"].to_list() == prices

    glob = str(written / "parquet-files" / "*.parquet")
    with duckdb.connect() as con:
        sql = f"SELECT product.price, product.maker.company, review.fit.score FROM '{glob}'"
        got_rows = con.execute(sql).fetchall()
    assert [r[0] for r in got_rows] == prices
    assert [r[1] for r in got_rows] == [p["maker"]["company"] for p in expected]


def test_a_run_with_struct_columns_resumes_and_grows(tmp_path: Path) -> None:
    """The stored schema (with its non-null struct fields) holds for the row groups a resumed
    run adds: the dataset reads as one table."""
    fast = SimulatedModel(name="sim-gen", latency=Latency(median=0.001))

    async def create(records: int, resume: bool) -> None:
        with trio.fail_after(30):
            await TrioDesigner(simulator_models=[fast]).create(
                _pipeline(), num_records=records, output_dir=tmp_path / "out", resume=resume
            )

    trio.run(create, 8, False)
    trio.run(create, 12, True)
    table = ds.dataset(tmp_path / "out" / "parquet-files").to_table()
    assert table.num_rows == 12
    assert table.schema.field("product").type == PRODUCT_TYPE
    assert len(list((tmp_path / "out" / "parquet-files").iterdir())) == 3


_FIT_TYPES = [
    pa.string(),
    pa.int64(),
    pa.float64(),
    pa.bool_(),
    pa.list_(pa.int64()),
    pa.struct([("a", pa.int64()), ("b", pa.string())]),
    pa.struct([("q", pa.struct([("score", pa.int64()), ("why", pa.string())]))]),
    pa.list_(pa.struct([("x", pa.float64())])),
]
_JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xDFFF), max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "q", "score", "why", "x"]), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(value=_JSONISH, data_type=st.sampled_from(_FIT_TYPES))
def test_the_python_fit_check_agrees_with_arrow(value: Any, data_type: pa.DataType) -> None:
    """Whenever the Python check says a value surely fits, Arrow converts it; and
    ``value_fits`` answers what the Arrow conversion alone would (``None`` or a reason)."""
    from trio_designer._sink._nested import _surely_fits

    try:
        pa.array([value], type=data_type)
        arrow_ok = True
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        arrow_ok = False
    if _surely_fits(value, data_type):
        assert arrow_ok
    assert (value_fits(value, data_type) is None) == arrow_ok


def test_the_python_fit_check_covers_a_judges_answer() -> None:
    from trio_designer._sink._nested import _surely_fits

    judge = pa.struct([("quality", pa.struct([("reasoning", pa.string()), ("score", pa.int64())]))])
    assert _surely_fits({"quality": {"reasoning": "clear", "score": 3}}, judge)
    assert not _surely_fits({"quality": {"reasoning": "clear", "score": 2**63}}, judge)
    assert not _surely_fits({"quality": {"reasoning": "clear", "score": True}}, judge)
    assert not _surely_fits({"quality": {"reasoning": "\ud800", "score": 1}}, judge)
    assert value_fits({"quality": {"reasoning": "\ud800", "score": 1}}, judge) is not None


def test_the_fit_check_gives_up_beyond_its_depth_and_checkers_are_made_once() -> None:
    """A list nested deeper than the check's depth limit is "not sure" (Arrow decides); the
    checker of a type object is made once and reused."""
    from trio_designer._sink import _nested

    deep_type: pa.DataType = pa.int64()
    deep_value: Any = 1
    for _ in range(_nested._MAX_DEPTH + 2):
        deep_type, deep_value = pa.list_(deep_type), [deep_value]
    assert not _surely_fits(deep_value, deep_type)
    shallow_type, shallow_value = pa.list_(pa.list_(pa.int64())), [[1, 2], None, []]
    assert _surely_fits(shallow_value, shallow_type)
    assert _nested._checker(shallow_type) is _nested._checker(shallow_type)
    assert _surely_fits(shallow_value, pa.list_(pa.list_(pa.int64())))  # an equal type
