"""Sampler constraints, conditional parameters, named distributions and time deltas
(issue 14)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from trio_designer import ConfigError, PipelineConfig, TrioDesigner
from trio_designer._core._constraints import Support, never_holds, parse_constraint
from trio_designer._plan import ExecutionGraph


def _config(*columns: dict[str, Any], row_group_size: int = 10) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {"run": {"row_group_size": row_group_size, "seed": 5}, "columns": list(columns)}
    )


async def _rows(config: PipelineConfig, n: int) -> list[dict[str, Any]]:
    result = await TrioDesigner(progress=False).preview(config, num_records=n)
    rows: list[dict[str, Any]] = result.table.to_pylist()
    return rows


AGE = {"name": "age", "kind": "sampler", "sampler": "uniform", "low": 0, "high": 100,
       "decimal_places": 0}
START = {"name": "start", "kind": "sampler", "sampler": "datetime", "start": "2024-01-01",
         "end": "2024-03-01", "unit": "D"}


# -- the pure parts ----------------------------------------------------------------------------


def test_parsing_constraints() -> None:
    assert parse_constraint("age >= 18").value == 18
    assert parse_constraint("x < 2.5").value == 2.5
    assert parse_constraint("end > start").other == "start"
    assert parse_constraint("day != '2024-01-01'").value == "2024-01-01"
    with pytest.raises(ValueError, match="is not '<column> <op>"):
        parse_constraint("age between 1 and 2")
    with pytest.raises(ValueError, match="neither a number"):
        parse_constraint("age > 1 + 2")


@pytest.mark.parametrize(
    ("text", "support", "never"),
    [
        ("x > 200", Support(0.0, 100.0), True),
        ("x > 99", Support(0.0, 100.0), False),
        ("x >= 100", Support(0.0, 100.0, high_open=True), True),
        ("x < 0", Support(0.0, math.inf), True),
        ("x == 3", Support(values=(1, 2)), True),
        ("x != 1", Support(values=(1,)), True),
        ("x > 5", Support(), False),
        ("x > y", Support(0.0, 1.0), False),
        ("x < '2024-01-01'", Support(dt.datetime(2024, 2, 1), dt.datetime(2024, 3, 1)), True),
    ],
)
def test_never_holds(text: str, support: Support, never: bool) -> None:
    assert never_holds(parse_constraint(text), support) is never


# -- constraints in a run ----------------------------------------------------------------------


@pytest.mark.deadline(20)
async def test_a_constant_constraint_holds_for_every_row_reproducibly() -> None:
    age = {**AGE, "constraints": ["age >= 18", "age < 30"]}
    rows = await _rows(_config(age), 40)
    assert all(18 <= row["age"] < 30 for row in rows)
    again = await _rows(_config(age, row_group_size=7), 40)
    assert again == rows


async def test_a_constraint_between_two_columns() -> None:
    end = {"name": "end", "kind": "sampler", "sampler": "datetime", "start": "2024-01-01",
           "end": "2024-03-01", "unit": "D", "constraints": ["end > start"]}
    rows = await _rows(_config(START, end), 20)
    assert all(row["end"] > row["start"] for row in rows)


@pytest.mark.parametrize(
    ("column", "match"),
    [
        ({**AGE, "constraints": ["age > 200"]},
         r"constraint 'age > 200' can never hold: the sampler draws from \[0.0, 100.0\]"),
        ({"name": "b", "kind": "sampler", "sampler": "bernoulli", "p": 0.5,
          "constraints": ["b > 1"]}, r"can never hold: the sampler draws only 0, 1"),
        ({**START, "constraints": ["start < '2023-12-01'"]},
         r"can never hold: the sampler draws from \[2024-01-01 00:00:00, 2024-03-01"),
    ],
)
async def test_a_provably_unsatisfiable_constraint_is_a_config_error(
    column: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        await _rows(_config(column), 2)


async def test_a_constraint_that_fails_at_run_time_names_column_and_constraint() -> None:
    end = {"name": "end", "kind": "sampler", "sampler": "time_delta", "reference": "start",
           "min": 1, "max": 5, "constraints": ["end < start"]}
    result = await TrioDesigner(progress=False).preview(_config(START, end), num_records=3)
    assert result.num_records_written == 0
    messages = [failure.message for failure in result.failures]
    assert any("column 'end': constraint 'end < start' did not hold in 1000 draws" in m
               for m in messages), messages


@pytest.mark.parametrize(
    ("column", "match"),
    [
        ({**AGE, "constraints": ["agee >= 18"]}, r"must start with the column's own name 'age'"),
        ({**AGE, "constraints": ["age >= ag"]}, r"constraints: no column named 'ag'"),
        ({**AGE, "constraints": "age > 1"}, r"expected a list"),
    ],
)
def test_malformed_constraints(column: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _config(column)


# -- conditional parameters --------------------------------------------------------------------

TIER = {"name": "tier", "kind": "sampler", "sampler": "category", "values": ["gold", "basic"]}


async def test_conditional_params_switch_the_sampler_per_row() -> None:
    spend = {"name": "spend", "kind": "sampler", "sampler": "uniform", "low": 0, "high": 10,
             "conditional_params": {"{{ tier == 'gold' }}": {"low": 100, "high": 110}}}
    rows = await _rows(_config(TIER, spend), 30)
    assert {row["tier"] for row in rows} == {"gold", "basic"}
    for row in rows:
        assert (100 <= row["spend"] <= 110) if row["tier"] == "gold" else (0 <= row["spend"] <= 10)


def test_conditional_params_name_fields_of_the_sampler() -> None:
    spend = {"name": "spend", "kind": "sampler", "sampler": "uniform", "low": 0, "high": 10,
             "conditional_params": {"{{ tier == 'gold' }}": {"hihg": 3}}}
    with pytest.raises(ConfigError, match=r"sets 'hihg'.*did you mean 'high'"):
        _config(TIER, spend)


async def test_conditional_params_values_are_checked_at_run_start() -> None:
    spend = {"name": "spend", "kind": "sampler", "sampler": "uniform", "low": 0, "high": 10,
             "conditional_params": {"{{ tier == 'gold' }}": {"high": -1}}}
    with pytest.raises(ConfigError, match=r"conditional_params\[0\].*'high' must be > 'low'"):
        await _rows(_config(TIER, spend), 2)


def test_a_condition_naming_an_unknown_column() -> None:
    spend = {"name": "spend", "kind": "sampler", "sampler": "uniform", "low": 0, "high": 10,
             "conditional_params": {"{{ teir == 'gold' }}": {"high": 3}}}
    config = _config(TIER, spend)
    with pytest.raises(ConfigError, match=r"conditional_params\[0\] references 'teir'.*'tier'"):
        ExecutionGraph.from_config(config)


# -- distributions and time deltas -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "check"),
    [
        ("lognormal", {"mean": 0, "sigma": 0.5}, lambda v: isinstance(v, float) and v > 0),
        ("beta", {"a": 2, "b": 5}, lambda v: 0 <= v <= 1),
        ("binomial", {"n": 10, "p": 0.3}, lambda v: isinstance(v, int) and 0 <= v <= 10),
        ("poisson", {"lam": 3}, lambda v: isinstance(v, int) and v >= 0),
        ("weibull", {"a": 1.5}, lambda v: v >= 0),
    ],
)
async def test_named_distributions(name: str, params: dict[str, Any], check: Any) -> None:
    pytest.importorskip("numpy")  # the `stats` extra; the Makefile installs it
    column = {"name": "x", "kind": "sampler", "sampler": "distribution", "distribution": name,
              "params": params}
    rows = await _rows(_config(column), 12)
    assert all(check(row["x"]) for row in rows)
    assert len({row["x"] for row in rows}) > 1
    assert await _rows(_config(column, row_group_size=5), 12) == rows


@pytest.mark.parametrize(
    ("column", "match"),
    [
        ({"distribution": "lognormall"}, r"did you mean 'lognormal'"),
        ({"distribution": "beta", "params": {"alpha": 1}}, r"beta has no parameter 'alpha'"),
    ],
)
def test_malformed_distributions(column: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _config({"name": "x", "kind": "sampler", "sampler": "distribution", **column})


async def test_numpy_refusing_parameters_is_a_config_error() -> None:
    pytest.importorskip("numpy")
    column = {"name": "x", "kind": "sampler", "sampler": "distribution",
              "distribution": "binomial", "params": {"n": 10, "p": 2}}
    with pytest.raises(ConfigError, match=r"numpy refuses binomial\(n=10, p=2\)"):
        await _rows(_config(column), 1)


async def test_time_delta_from_a_datetime_and_from_a_date() -> None:
    later = {"name": "later", "kind": "sampler", "sampler": "time_delta", "reference": "start",
             "min": 2, "max": 3, "unit": "h"}
    rows = await _rows(_config(START, later), 10)
    for row in rows:
        assert dt.timedelta(hours=2) <= row["later"] - row["start"] <= dt.timedelta(hours=3)
    day = {"name": "day", "kind": "expression", "expr": "2024-05-0{{ 1 }}"}
    due = {"name": "due", "kind": "sampler", "sampler": "time_delta", "reference": "day",
           "min": -1, "max": 1}
    rows = await _rows(_config(day, due), 6)
    assert {row["due"] for row in rows} <= {dt.datetime(2024, 4, 30), dt.datetime(2024, 5, 1),
                                             dt.datetime(2024, 5, 2)}
