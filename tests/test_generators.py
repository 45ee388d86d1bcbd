"""Tests of trio_designer.generators: templates, samplers, expressions, custom columns, registry.

The central property is determinism: a cell's value depends only on (seed, row, column) (and
its row's upstream values), never on the order rows are generated in or on how they are split
into row groups.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
import re
import statistics
import threading
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pyarrow as pa
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer._exceptions import (
    ConfigError,
    ModelServerError,
    NonRetryableGenerationError,
)
from trio_designer.config import (
    BernoulliSampler,
    CategorySampler,
    CustomColumn,
    DatetimeSampler,
    ExpressionColumn,
    GaussianSampler,
    PoissonSampler,
    SubcategorySampler,
    UniformSampler,
    UUIDSampler,
)
from trio_designer.generators import CellContext, ColumnContext
from trio_designer.generators._base import ColumnGenerator, rng_for
from trio_designer.generators._custom import CustomGenerator, resolve_function
from trio_designer.generators._expression import ExpressionGenerator, cast_value
from trio_designer.generators._registry import build_generator
from trio_designer.generators._samplers import SamplerGenerator, infer_arrow_type
from trio_designer.generators._templates import (
    check_template,
    compile_template,
    environment,
    evaluate_condition,
    render,
)

# -- helpers ------------------------------------------------------------------------------


def column_ctx(
    column: str,
    row_indices: Sequence[int],
    *,
    seed: int = 0,
    rows: Sequence[Mapping[str, Any]] | None = None,
    row_group: int = 0,
) -> ColumnContext:
    if rows is None:
        rows = [{} for _ in row_indices]
    return ColumnContext(
        column=column, row_group=row_group, row_indices=list(row_indices), rows=rows, seed=seed
    )


def fill(
    generator: ColumnGenerator,
    column: str,
    n: int,
    *,
    seed: int = 0,
    rows: Sequence[Mapping[str, Any]] | None = None,
) -> list[Any]:
    return generator.generate_column(column_ctx(column, range(n), seed=seed, rows=rows))


SAMPLER_CONFIGS = [
    CategorySampler(name="cat", values=("a", "b", "c"), weights=(1.0, 2.0, 3.0)),
    CategorySampler(name="cat_plain", values=(1, 2, 3, 4)),
    SubcategorySampler(
        name="sub",
        category="cat",
        values={"a": ("a1", "a2"), "b": ("b1",), "c": ("c1", "c2", "c3")},
    ),
    UniformSampler(name="uni", low=-2.0, high=5.0),
    UniformSampler(name="uni2", low=0.0, high=1.0, decimal_places=2),
    GaussianSampler(name="gauss", mean=10.0, stddev=3.0, decimal_places=3),
    BernoulliSampler(name="coin", p=0.3),
    PoissonSampler(name="pois_small", mean=2.5),
    PoissonSampler(name="pois_big", mean=40.0),
    UUIDSampler(name="id", prefix="u-", short_form=True, uppercase=True),
    UUIDSampler(name="id_long"),
    DatetimeSampler(name="when", start="2024-01-01", end="2024-12-31T23:59:59", unit="m"),
]
SAMPLER_IDS = [c.name for c in SAMPLER_CONFIGS]


def parent_rows(n: int) -> list[dict[str, Any]]:
    """Rows carrying a 'cat' parent value for the subcategory sampler."""
    return [{"cat": "abc"[i % 3]} for i in range(n)]


# -- determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("config", SAMPLER_CONFIGS, ids=SAMPLER_IDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_sampler_values_do_not_depend_on_order_or_row_groups(config: Any, data: Any) -> None:
    n = 30
    generator = build_generator(config)
    rows = parent_rows(n)
    reference = fill(generator, config.name, n, seed=7, rows=rows)

    order = data.draw(st.permutations(range(n)), label="order")
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=5), label="cuts"))
    got: dict[int, Any] = {}
    for group, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, n], strict=True)):
        indices = order[lo:hi]
        ctx = column_ctx(
            config.name, indices, seed=7, rows=[rows[i] for i in indices], row_group=group
        )
        got.update(zip(indices, generator.generate_column(ctx), strict=True))
    assert [got[i] for i in range(n)] == reference


@pytest.mark.parametrize("config", SAMPLER_CONFIGS, ids=SAMPLER_IDS)
def test_sampler_cell_strategy_gives_the_column_strategy_values(config: Any) -> None:
    generator = build_generator(config)
    rows = parent_rows(10)
    by_column = fill(generator, config.name, 10, seed=3, rows=rows)
    by_cell = [
        generator.generate(CellContext(column=config.name, row_index=i, row=rows[i], seed=3))
        for i in range(10)
    ]
    assert by_cell == by_column


@pytest.mark.parametrize("config", SAMPLER_CONFIGS, ids=SAMPLER_IDS)
def test_sampler_values_change_with_the_seed(config: Any) -> None:
    generator = build_generator(config)
    rows = parent_rows(40)
    assert fill(generator, config.name, 40, seed=1, rows=rows) != fill(
        generator, config.name, 40, seed=2, rows=rows
    )


def test_same_config_under_another_column_name_draws_other_values() -> None:
    a = build_generator(UniformSampler(name="a", low=0, high=1))
    b = build_generator(UniformSampler(name="b", low=0, high=1))
    assert fill(a, "a", 20) != fill(b, "b", 20)


def test_rng_for_is_random_seeded_with_the_cells_digest() -> None:
    """``rng_for`` builds its ``random.Random`` without ``__init__`` (cheaper per cell): its
    state, its draws and ``gauss`` (which needs the ``gauss_next`` attribute) are those of
    ``random.Random(n)`` for the cell's blake2b digest ``n``."""
    for seed, row, column in [(0, 0, "id"), (9, 5, "c"), (2**40, 123_456, "é"), (1, 2, "")]:
        digest = hashlib.blake2b(f"{seed}\x00{row}\x00{column}".encode(), digest_size=8)
        reference = random.Random(int.from_bytes(digest.digest(), "big"))
        built = rng_for(seed, row, column)
        assert type(built) is random.Random
        assert built.getstate() == reference.getstate()
        assert [built.getrandbits(31) for _ in range(700)] == [
            reference.getrandbits(31) for _ in range(700)
        ]
        assert built.gauss(0, 1) == reference.gauss(0, 1)
        assert built.gauss(0, 1) == reference.gauss(0, 1)


def test_sampler_values_are_pinned() -> None:
    """Golden values, written out: a change here changes every dataset users have generated.

    Literals, not values recomputed with ``rng_for``: a cell's ``random.Random`` must be
    seeded the same way in every process and Python version (a ``hash()``-seeded one, which
    varies with ``PYTHONHASHSEED``, would still agree with itself within one process)."""
    assert rng_for(0, 0, "id").random() == 0.021162824660299284
    assert rng_for(9, 5, "c").random() == 0.04856579920371262
    uuids = build_generator(UUIDSampler(name="id")).generate_column(
        column_ctx("id", [0, 1, 2], seed=0)
    )
    assert uuids == [
        "bffd93de-ca5e-4ec6-be74-aba5056aed4a",
        "98729343-a40c-482f-9f11-0febec06d8c9",
        "398dd176-5a81-44dd-9a6c-b09f043087f9",
    ]
    category = build_generator(CategorySampler(name="c", values=("x", "y", "z")))
    assert category.generate_column(column_ctx("c", range(8), seed=9)) == list("zyyyzxzx")
    uniform = build_generator(UniformSampler(name="u", low=0, high=1))
    assert uniform.generate_column(column_ctx("u", range(3), seed=1)) == [
        0.3458011950096399,
        0.5430681892739881,
        0.3547530799890586,
    ]


async def test_async_column_bridge_runs_inline_with_the_same_values() -> None:
    generator = build_generator(PoissonSampler(name="p", mean=4.0))
    ctx = column_ctx("p", range(10), seed=5)
    assert generator.strategy == "full_column"
    assert generator.inline
    with trio.testing.assert_checkpoints():
        values = await generator.agenerate_column(ctx)
    assert values == generator.generate_column(ctx)


# -- category / subcategory ---------------------------------------------------------------


def test_category_follows_weights() -> None:
    generator = build_generator(
        CategorySampler(name="c", values=("a", "b", "c"), weights=(1, 0, 3))
    )
    values = fill(generator, "c", 4000)
    assert "b" not in values
    assert values.count("c") / len(values) == pytest.approx(0.75, abs=0.03)


def test_category_without_weights_is_uniform() -> None:
    generator = build_generator(CategorySampler(name="c", values=("a", "b")))
    values = fill(generator, "c", 4000)
    assert values.count("a") / len(values) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("a", "b"), pa.string()),
        ((1, 2), pa.int64()),
        ((1, 2.5), pa.float64()),
        ((True, False), pa.bool_()),
        ((1, "a"), None),
        ((None,), None),
    ],
)
def test_category_arrow_type_is_inferred(values: tuple[Any, ...], expected: Any) -> None:
    assert build_generator(CategorySampler(name="c", values=values)).arrow_type() == expected


def test_infer_arrow_type_of_nothing_is_none() -> None:
    assert infer_arrow_type([]) is None


def test_subcategory_draws_from_its_parents_values() -> None:
    config = SubcategorySampler(
        name="dish", category="cuisine", values={"it": ("pasta", "pizza"), "3": ("three",)}
    )
    generator = build_generator(config)
    rows: list[dict[str, Any]] = [{"cuisine": "it"}, {"cuisine": 3}, {"cuisine": "it"}] * 20
    values = fill(generator, "dish", len(rows), rows=rows)
    for row, value in zip(rows, values, strict=True):
        assert value in (("three",) if row["cuisine"] == 3 else ("pasta", "pizza"))
    assert {"pasta", "pizza"} <= set(values)
    assert generator.arrow_type() == pa.string()


def test_subcategory_unknown_parent_value_is_non_retryable() -> None:
    generator = build_generator(
        SubcategorySampler(name="dish", category="cuisine", values={"it": ("pasta",)})
    )
    ctx = column_ctx("dish", [4, 5], rows=[{"cuisine": "it"}, {"cuisine": "fr"}])
    with pytest.raises(NonRetryableGenerationError) as info:
        generator.generate_column(ctx)
    assert re.fullmatch(
        r"column 'dish': parent column 'cuisine' has value 'fr' in row 5, which is not a key of "
        r"values \(known: 'it'\); add it to values\.",
        str(info.value),
    )
    assert (info.value.column, info.value.row) == ("dish", 5)


def test_subcategory_missing_parent_column_is_non_retryable() -> None:
    generator = build_generator(
        SubcategorySampler(name="dish", category="cuisine", values={"it": ("pasta",)})
    )
    with pytest.raises(
        NonRetryableGenerationError,
        match=r"^column 'dish': row 0 has no value for its parent column 'cuisine'; ",
    ):
        generator.generate_column(column_ctx("dish", [0]))


# -- numeric samplers ----------------------------------------------------------------------


def test_uniform_stays_in_range_and_rounds() -> None:
    values = fill(
        build_generator(UniformSampler(name="u", low=2, high=3, decimal_places=1)), "u", 500
    )
    assert all(2.0 <= v <= 3.0 for v in values)
    assert all(v == round(v, 1) for v in values)
    assert len(set(values)) > 5
    raw = fill(build_generator(UniformSampler(name="u", low=2, high=3)), "u", 500)
    assert statistics.fmean(raw) == pytest.approx(2.5, abs=0.05)


def test_gaussian_has_its_mean_and_stddev() -> None:
    values = fill(build_generator(GaussianSampler(name="g", mean=10, stddev=2)), "g", 4000)
    assert statistics.fmean(values) == pytest.approx(10, abs=0.15)
    assert statistics.stdev(values) == pytest.approx(2, abs=0.1)


def test_gaussian_rounds_to_decimal_places() -> None:
    values = fill(
        build_generator(GaussianSampler(name="g", mean=0, stddev=1, decimal_places=0)), "g", 100
    )
    assert all(v == round(v) for v in values)


def test_bernoulli_is_zero_or_one_with_probability_p() -> None:
    generator = build_generator(BernoulliSampler(name="b", p=0.2))
    values = fill(generator, "b", 4000)
    assert set(values) == {0, 1}
    assert all(type(v) is int for v in values)
    assert statistics.fmean(values) == pytest.approx(0.2, abs=0.03)
    assert generator.arrow_type() == pa.int64()
    assert set(fill(build_generator(BernoulliSampler(name="b", p=1.0)), "b", 50)) == {1}
    assert set(fill(build_generator(BernoulliSampler(name="b", p=0.0)), "b", 50)) == {0}


@pytest.mark.parametrize("mean", [0.5, 3.0, 9.5, 10.0, 40.0, 1000.0])
def test_poisson_has_equal_mean_and_variance(mean: float) -> None:
    values = fill(build_generator(PoissonSampler(name="p", mean=mean)), "p", 4000)
    assert all(type(v) is int and v >= 0 for v in values)
    # Standard error of the mean is sqrt(mean / n); allow 5 of them.
    assert statistics.fmean(values) == pytest.approx(mean, abs=5 * math.sqrt(mean / 4000))
    assert statistics.variance(values) == pytest.approx(mean, rel=0.12)


@pytest.mark.parametrize("mean", [3.0, 25.0])
def test_poisson_matches_the_exact_distribution(mean: float) -> None:
    """Total variation distance to the exact pmf stays at sampling-noise level (~0.012-0.018)."""
    n = 10_000
    counts = Counter(fill(build_generator(PoissonSampler(name="p", mean=mean)), "p", n))
    support = range(int(mean * 4 + 20))
    pmf = [math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1)) for k in support]
    distance = 0.5 * sum(abs(counts.get(k, 0) / n - pmf[k]) for k in support)
    assert distance < 0.03


def test_poisson_with_mean_zero_is_always_zero() -> None:
    assert set(fill(build_generator(PoissonSampler(name="p", mean=0)), "p", 50)) == {0}


# -- uuid / datetime -----------------------------------------------------------------------


def test_uuid_is_a_random_version_4_uuid() -> None:
    values = fill(build_generator(UUIDSampler(name="id")), "id", 200)
    assert len(set(values)) == 200
    for value in values:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_uuid_options() -> None:
    long_value = fill(build_generator(UUIDSampler(name="id")), "id", 1)[0]
    short = fill(
        build_generator(UUIDSampler(name="id", prefix="u-", short_form=True, uppercase=True)),
        "id",
        1,
    )[0]
    assert short == "u-" + long_value[:8].upper()
    assert build_generator(UUIDSampler(name="id")).arrow_type() == pa.string()


def test_datetime_is_on_the_unit_grid_inside_the_range() -> None:
    config = DatetimeSampler(name="t", start="2024-03-01T10:30:00", end="2024-03-05", unit="D")
    generator = build_generator(config)
    values = fill(generator, "t", 300)
    expected = {dt.datetime(2024, 3, d) for d in (2, 3, 4)}  # midnights in [start, end)
    assert set(values) == expected
    assert generator.arrow_type() == pa.timestamp("s")


@pytest.mark.parametrize(("unit", "seconds"), [("h", 3600), ("m", 60), ("s", 1)])
def test_datetime_units(unit: Any, seconds: int) -> None:
    config = DatetimeSampler(name="t", start="2020-01-01", end="2020-01-03", unit=unit)
    values = fill(build_generator(config), "t", 200)
    epoch = dt.datetime(1970, 1, 1)
    for value in values:
        assert value.tzinfo is None
        assert dt.datetime(2020, 1, 1) <= value < dt.datetime(2020, 1, 3)
        assert (value - epoch).total_seconds() % seconds == 0
    assert len(set(values)) > min(150, 2 * 86_400 // seconds // 2)


def test_datetime_converts_offsets_to_naive_utc() -> None:
    config = DatetimeSampler(
        name="t", start="2024-01-01T12:00:00+02:00", end="2024-01-01T10:00:01Z", unit="s"
    )
    assert fill(build_generator(config), "t", 3) == [dt.datetime(2024, 1, 1, 10)] * 3


def test_datetime_values_write_as_timestamps() -> None:
    generator = build_generator(DatetimeSampler(name="t", start="2024-01-01", end="2024-02-01"))
    array = pa.array(fill(generator, "t", 5), type=generator.arrow_type())
    assert array.type == pa.timestamp("s")
    assert array.null_count == 0


def test_datetime_range_without_a_grid_instant_is_a_config_error() -> None:
    config = DatetimeSampler(name="t", start="2024-01-01T01:00", end="2024-01-01T02:00", unit="D")
    with pytest.raises(
        ConfigError,
        match=r"^column 't': no whole 'D' instant lies in \[2024-01-01T01:00, 2024-01-01T02:00\); "
        r"widen the range or use a smaller unit\.$",
    ):
        build_generator(config)


# -- templates -----------------------------------------------------------------------------


def test_render_accepts_every_row_value_type() -> None:
    row = {
        "s": "jazz",
        "i": 3,
        "f": 1.5,
        "b": True,
        "d": {"k": "v"},
        "l": [1, 2, 3],
        "n": None,
        "t": dt.datetime(2024, 5, 6, 7, 8, 9),
    }
    template = (
        "{{ s|upper }} {{ i + 1 }} {{ f * 2 }} {{ b }} {{ d.k }} {{ l|sum }} {{ n }} {{ t.year }}"
    )
    assert render(template, row) == "JAZZ 4 3.0 True v 6 None 2024"


def test_templates_are_compiled_once() -> None:
    assert compile_template("{{ a }}!") is compile_template("{{ a }}!")
    assert compile_template("{{ a }}!").environment is environment()


def test_undefined_name_names_column_and_name() -> None:
    with pytest.raises(NonRetryableGenerationError) as info:
        render("{{ sumary }}", {"summary": "x"}, column="n_words", field="expr", row_index=3)
    assert str(info.value) == (
        "column 'n_words': expr references 'sumary', which is undefined in row 3; reference "
        "only columns upstream of this one, or give a fallback with '| default(...)'."
    )
    assert (info.value.column, info.value.row) == ("n_words", 3)


def test_undefined_attribute_is_non_retryable() -> None:
    with pytest.raises(
        NonRetryableGenerationError,
        match=r"^column 'c': expr failed to render in row 0: 'dict object' has no attribute 'x'",
    ):
        render("{{ d.x }}", {"d": {}}, column="c", field="expr", row_index=0)


def test_sandbox_blocks_python_internals() -> None:
    with pytest.raises(
        NonRetryableGenerationError,
        match=r"^column 'c': prompt was blocked by the template sandbox in row 1: ",
    ):
        render("{{ s.__class__.__mro__ }}", {"s": "x"}, column="c", field="prompt", row_index=1)


def test_runtime_errors_while_rendering_are_non_retryable() -> None:
    with pytest.raises(
        NonRetryableGenerationError,
        match=r"^column 'c': expr failed to render in row 2: ZeroDivisionError: ",
    ):
        render("{{ 1 / n }}", {"n": 0}, column="c", field="expr", row_index=2)


def test_syntax_errors_are_config_errors_with_the_line() -> None:
    with pytest.raises(
        ConfigError, match=r"^column 'c': prompt has a Jinja syntax error on template line 2: "
    ):
        check_template("line one\n{{ oops ", column="c", field="prompt")
    with pytest.raises(NonRetryableGenerationError, match=r"syntax error on template line 1"):
        render("{% if %}", {}, column="c")


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [
        ("", False),
        ("  ", False),
        ("False", False),
        (" 0 ", False),
        ("None", False),
        ("NO", False),
        ("no", False),
        ("True", True),
        ("yes", True),
        ("1", True),
        ("anything", True),
        ("0.0", True),
    ],
)
def test_evaluate_condition_truthiness(rendered: str, expected: bool) -> None:
    assert evaluate_condition("{{ v }}", {"v": rendered}) is expected


def test_evaluate_condition_with_expressions() -> None:
    assert evaluate_condition("{{ n > 3 }}", {"n": 5}) is True
    assert evaluate_condition("{{ n > 3 }}", {"n": 2}) is False
    assert evaluate_condition("{% if n > 3 %}skip{% endif %}", {"n": 2}) is False


# -- expression ----------------------------------------------------------------------------


def expression_value(expr: str, row: Mapping[str, Any], dtype: Any = None) -> Any:
    generator = build_generator(ExpressionColumn(name="e", expr=expr, dtype=dtype))
    return generator.generate(CellContext(column="e", row_index=0, row=row))


@pytest.mark.parametrize(
    ("text", "dtype", "expected"),
    [
        ("3", "int", 3),
        (" 3.0 ", "int", 3),
        ("-1e3", "int", -1000),
        ("2.5", "float", 2.5),
        ("7", "float", 7.0),
        ("TRUE", "bool", True),
        (" yes", "bool", True),
        ("1", "bool", True),
        ("false", "bool", False),
        ("No", "bool", False),
        ("0", "bool", False),
        ('{"a": [1, 2]}', "json", {"a": [1, 2]}),
        ("[1, 2]", "json", [1, 2]),
        (" x ", "str", " x "),
        (" x ", None, " x "),
    ],
)
def test_expression_casts(text: str, dtype: Any, expected: Any) -> None:
    value = expression_value("{{ v }}", {"v": text}, dtype)
    assert value == expected
    assert type(value) is type(expected)


def test_expression_renders_from_upstream_columns() -> None:
    row = {"summary": "one two three", "topic": "jazz"}
    assert expression_value("{{ summary.split() | length }}", row, "int") == 3
    assert expression_value("{{ topic }}-{{ summary[:3] }}", row) == "jazz-one"


@pytest.mark.parametrize(
    ("text", "dtype"),
    [
        ("3.5", "int"),
        ("three", "int"),
        ("abc", "float"),
        ("maybe", "bool"),
        ("{", "json"),
        ("", "bool"),
    ],
)
def test_expression_failed_cast_names_column_row_value_and_dtype(text: str, dtype: Any) -> None:
    generator = build_generator(ExpressionColumn(name="e", expr="{{ v }}", dtype=dtype))
    with pytest.raises(NonRetryableGenerationError) as info:
        generator.generate(CellContext(column="e", row_index=12, row={"v": text}))
    assert re.fullmatch(
        rf"column 'e': cannot cast {re.escape(repr(text))} in row 12 to dtype '{dtype}' "
        r"\(.+\); change the template/function or the dtype\.",
        str(info.value),
    ), str(info.value)
    assert (info.value.column, info.value.row) == ("e", 12)


def test_expression_undefined_reference() -> None:
    with pytest.raises(
        NonRetryableGenerationError,
        match=r"^column 'e': expr references 'missing', which is undefined in row 0; ",
    ):
        expression_value("{{ missing }}", {})


def test_expression_syntax_error_fails_at_build_time() -> None:
    with pytest.raises(
        ConfigError, match=r"^column 'e': expr has a Jinja syntax error on template line 1"
    ):
        build_generator(ExpressionColumn(name="e", expr="{{ x "))


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (None, None),
        ("str", pa.string()),
        ("int", pa.int64()),
        ("float", pa.float64()),
        ("bool", pa.bool_()),
        ("json", None),
    ],
)
def test_expression_arrow_type_follows_dtype(dtype: Any, expected: Any) -> None:
    generator = build_generator(ExpressionColumn(name="e", expr="x", dtype=dtype))
    assert generator.arrow_type() == expected


async def test_expression_is_an_inline_cell_generator() -> None:
    generator = build_generator(ExpressionColumn(name="e", expr="{{ a * 2 }}", dtype="int"))
    assert isinstance(generator, ExpressionGenerator)
    assert (generator.strategy, generator.inline, generator.llm_bound) == ("cell", True, False)
    with trio.testing.assert_checkpoints():
        value = await generator.agenerate(CellContext(column="e", row_index=0, row={"a": 21}))
    assert value == 42


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        (None, "int", None),
        (True, "int", 1),
        (4.0, "int", 4),
        (3, "float", 3.0),
        (1, "bool", True),
        (False, "bool", False),
        ({"a": 1}, "json", {"a": 1}),
        (12, "str", "12"),
        ("5", "int", 5),
    ],
)
def test_cast_value_of_non_text(value: Any, dtype: str, expected: Any) -> None:
    cast = cast_value(value, dtype, column="c", row=0)
    assert cast == expected
    assert type(cast) is type(expected)


@pytest.mark.parametrize(("value", "dtype"), [(4.5, "int"), ([1], "float"), (2, "bool")])
def test_cast_value_rejects_non_text(value: Any, dtype: str) -> None:
    with pytest.raises(NonRetryableGenerationError, match=rf"to dtype '{dtype}'"):
        cast_value(value, dtype, column="c", row=None)


# -- custom --------------------------------------------------------------------------------


def cell(column: str, row: Mapping[str, Any], *, row_index: int = 0, seed: int = 0) -> CellContext:
    return CellContext(column=column, row_index=row_index, row=row, seed=seed)


def custom(function: Any, **kwargs: Any) -> CustomGenerator:
    generator = build_generator(CustomColumn(name="c", function=function, **kwargs))
    assert isinstance(generator, CustomGenerator)
    return generator


async def test_sync_custom_function_runs_in_a_worker_thread() -> None:
    seen: list[int] = []

    def shout(row: Mapping[str, Any]) -> str:
        seen.append(threading.get_ident())
        return str(row["topic"]).upper()

    value = await custom(shout).agenerate(cell("c", {"topic": "jazz"}))
    assert value == "JAZZ"
    assert len(seen) == 1
    assert seen[0] != threading.get_ident()


async def test_async_custom_function_runs_on_the_event_loop(autojump_clock: Any) -> None:
    async def slow(row: Mapping[str, Any]) -> int:
        trio.lowlevel.current_task()  # raises outside trio
        await trio.sleep(5)
        return int(row["n"]) + 1

    with trio.fail_after(100):
        start = trio.current_time()
        assert await custom(slow).agenerate(cell("c", {"n": 1})) == 2
        assert trio.current_time() - start == 5


async def test_custom_function_gets_ctx_when_it_takes_two_parameters() -> None:
    def with_ctx(row: Mapping[str, Any], ctx: CellContext) -> tuple[int, float]:
        return ctx.row_index, ctx.rng.random()

    async def async_with_ctx(row: Mapping[str, Any], ctx: CellContext) -> float:
        return ctx.rng.random()

    def with_default(row: Mapping[str, Any], ctx: Any = None) -> bool:
        return ctx is not None

    expected = rng_for(4, 9, "c").random()
    assert await custom(with_ctx).agenerate(cell("c", {}, row_index=9, seed=4)) == (9, expected)
    assert await custom(async_with_ctx).agenerate(cell("c", {}, row_index=9, seed=4)) == expected
    assert await custom(with_default).agenerate(cell("c", {})) is True
    assert await custom(lambda *args: len(args)).agenerate(cell("c", {})) == 2
    assert await custom(lambda row: row).agenerate(cell("c", {"a": 1})) == {"a": 1}


async def test_custom_function_cannot_mutate_the_engine_row() -> None:
    def mutate(row: dict[str, Any]) -> int:
        row["a"] = 99
        return 0

    row = {"a": 1}
    await custom(mutate).agenerate(cell("c", row))
    assert row == {"a": 1}


SEED = 7  # a module-level value that is not a function (named by a path below)


def json_of_row(row: Mapping[str, Any]) -> str:
    """A module-level custom function, named by import path below."""
    return json.dumps(dict(row), sort_keys=True)


async def test_custom_function_from_an_import_path() -> None:
    path = f"{__name__}:json_of_row"  # this module is imported already: nothing runs again
    generator = custom(path, dtype="json")
    assert await generator.agenerate(cell("c", {"a": [1, 2]})) == {"a": [1, 2]}
    assert resolve_function(path, column="c") is json_of_row


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "td_no_such_module_xyz:f",
            r"^column 'c': no module 'td_no_such_module_xyz' in the installed environment; "
            r"install the package, or add the directory holding it to python_path$",
        ),
        (
            f"{__name__}:nope",
            rf"^column 'c': module '{__name__}' defines no 'nope'; check the name$",
        ),
        (
            f"{__name__}:json_of_rows",
            rf"^column 'c': module '{__name__}' defines no 'json_of_rows'; did you mean "
            r"'json_of_row'\?$",
        ),
        (
            f"{__name__}:SEED",
            rf"^column 'c': '{__name__}:SEED' is a int, not a function or a class; name a "
            r"function defined in that module$",
        ),
        (
            f"{__name__}:cast_value",  # imported into this module, defined elsewhere
            rf"^column 'c': '{__name__}:cast_value' is defined in "
            r"'trio_designer\.generators\._expression', not in",
        ),
        ("json:dumps", r"names the standard library \('json'\)"),
        ("os:environ.__or__", r"not an attribute chain"),
        ("os.path:join", r"names the standard library \('os'\)"),
        ("trio_designer.generators:CellContext", r"names trio_designer itself"),
        (f"{__name__}:__doc__", r"may not name a dunder attribute"),
        ("__main__:f", r"may not name a dunder module"),
        ("builtins:eval", r"names the standard library \('builtins'\)|trio_designer|builtins"),
    ],
)
def test_bad_import_paths_are_config_errors(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_generator(attrs.evolve(CustomColumn(name="c", function=json_of_row), function=path))
    with pytest.raises(ConfigError, match=message):
        resolve_function(path, column="c")


def test_resolve_function_rejects_a_malformed_path() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^column 'c': 'function' must be an import path 'package\.module:function' "
        r"\(a module, a colon, one name\): 'json'$",
    ):
        resolve_function("json", column="c")


def test_function_without_positional_parameters_is_a_config_error() -> None:
    def nothing(*, row: Any) -> None:
        return None

    with pytest.raises(ConfigError, match=r"^column 'c': the custom function takes no positional"):
        build_generator(CustomColumn(name="c", function=nothing))


async def test_custom_result_is_cast_to_dtype() -> None:
    assert await custom(lambda row: "3", dtype="int").agenerate(cell("c", {})) == 3
    with pytest.raises(NonRetryableGenerationError, match=r"^column 'c': cannot cast 'x' in row 2"):
        await custom(lambda row: "x", dtype="int").agenerate(cell("c", {}, row_index=2))
    assert custom(lambda row: 1, dtype="float").arrow_type() == pa.float64()
    assert custom(lambda row: 1).arrow_type() is None


async def test_user_exceptions_propagate_unchanged() -> None:
    def broken(row: Mapping[str, Any]) -> Any:
        return row["missing"]

    with pytest.raises(KeyError, match="missing"):
        await custom(broken).agenerate(cell("c", {}))

    retryable = ModelServerError("upstream said 503", status=503, column="c")

    async def flaky(row: Mapping[str, Any]) -> Any:
        raise retryable

    with pytest.raises(ModelServerError) as info:
        await custom(flaky).agenerate(cell("c", {}))
    assert info.value is retryable


async def test_full_column_custom_function() -> None:
    def lengths(rows: list[dict[str, Any]], ctx: ColumnContext) -> list[int]:
        return [len(row["s"]) + ctx.row_group for row in rows]

    generator = custom(lengths, strategy="full_column", dtype="int")
    assert generator.strategy == "full_column"
    ctx = column_ctx("c", [3, 4], rows=[{"s": "ab"}, {"s": "abcd"}], row_group=10)
    assert await generator.agenerate_column(ctx) == [12, 14]

    async def async_values(rows: list[dict[str, Any]]) -> tuple[str, ...]:
        return tuple("x" for _ in rows)

    assert await custom(async_values, strategy="full_column").agenerate_column(ctx) == ["x", "x"]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            [1],
            r"^column 'c': the full-column function returned 1 values for 2 rows in row group "
            r"0; return exactly one value per row, in order\.$",
        ),
        (
            {"a": 1},
            r"^column 'c': the full-column function returned a dict; return a list with "
            r"one value per row \(2 rows in row group 0\)\.$",
        ),
    ],
)
async def test_full_column_result_must_match_the_rows(result: Any, message: str) -> None:
    generator = custom(lambda rows: result, strategy="full_column")
    with pytest.raises(NonRetryableGenerationError, match=message):
        await generator.agenerate_column(column_ctx("c", [0, 1]))


async def test_llm_bound_custom_function_runs_without_a_checkpoint_first() -> None:
    """The engine does the LLM-wait handoff; the generator must not checkpoint before the user
    function (a full-column task must start with exactly the rows it was given)."""
    events: list[str] = []

    async def call_model(row: Mapping[str, Any]) -> str:
        events.append("function")
        return "ok"

    generator = custom(call_model, llm_bound=True)
    assert generator.llm_bound
    assert not custom(call_model).llm_bound
    ctx = CellContext(column="c", row_index=0, row={})
    with trio.testing.assert_no_checkpoints():
        coro = generator.agenerate(ctx)
        with pytest.raises(StopIteration) as done:
            coro.send(None)
    assert done.value.value == "ok"
    assert events == ["function"]
    full = custom(lambda rows: [0] * len(rows), strategy="full_column", llm_bound=True)
    assert (full.strategy, full.llm_bound) == ("full_column", True)


# -- registry / exports ------------------------------------------------------------------


@pytest.mark.parametrize("config", SAMPLER_CONFIGS, ids=SAMPLER_IDS)
def test_samplers_are_inline_full_column_generators(config: Any) -> None:
    generator = build_generator(config)
    assert isinstance(generator, SamplerGenerator)
    assert (generator.strategy, generator.inline, generator.llm_bound) == (
        "full_column",
        True,
        False,
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (UniformSampler(name="x", low=0, high=1), pa.float64()),
        (GaussianSampler(name="x", mean=0, stddev=1), pa.float64()),
        (PoissonSampler(name="x", mean=1), pa.int64()),
        (SubcategorySampler(name="x", category="c", values={"a": (1,), "b": (2, 3)}), pa.int64()),
    ],
)
def test_sampler_arrow_types(config: Any, expected: Any) -> None:
    assert build_generator(config).arrow_type() == expected


def test_build_generator_rejects_non_configs() -> None:
    with pytest.raises(TypeError, match=r"^build_generator\(\) got a dict, not a column config\.$"):
        build_generator({"name": "x"})  # type: ignore[arg-type]
