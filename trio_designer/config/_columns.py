"""Column configs: what each column of the dataset holds and how it is produced.

A pipeline is a list of columns. Each is a frozen attrs value tagged by ``kind`` (and, for
samplers, by ``sampler``) in its serialized form::

    columns:
      - {name: topic, kind: sampler, sampler: category, values: [astronomy, cooking, jazz]}
      - {name: summary, kind: llm_text, model: gen, prompt: "Summarize {{ topic }}."}
      - {name: n_words, kind: expression, expr: "{{ summary.split() | length }}", dtype: int}

Templates (``prompt``, ``system_prompt``, ``expr``, ``skip_when``) refer to other columns by
name; those references, plus ``depends_on`` and a subcategory's parent, are the dependency
edges of the execution graph (:mod:`trio_designer._graph`).

The tags are class attributes (``CategorySampler.kind == "sampler"``,
``CategorySampler.sampler == "category"``), not fields: they name the class, so they cannot
disagree with it. The converter writes them first in every column mapping.

Hashing: every column is hashable and compares by value. Fields that hold arbitrary JSON
(``values``, ``skip_value``, ``schema``, ``scores``) or a user function take part in equality
but not in the hash, because dicts and lists are unhashable; equal columns still hash alike.
Treat the dicts they hold as read-only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, ClassVar, Literal, TypeAlias, get_args

import attrs
from attrs import validators as v

from .._core._constraints import parse_constraint, referenced_columns
from .._core._jsonschema import schema_problems
from ._bounded import MAX_TEMPLATE_CHARS
from ._code import function_path_problem
from ._models import InferenceParams
from ._validators import (
    checked,
    finite,
    identifier,
    instance_of,
    is_any,
    is_bool,
    is_int,
    is_json_object,
    is_number,
    is_str,
    is_tuple_of,
    non_blank,
    non_empty,
    optional,
    short_repr,
    str_keys,
    to_optional_tuple,
    to_tuple,
)

Dtype: TypeAlias = Literal["str", "int", "float", "bool", "json"]
Strategy: TypeAlias = Literal["cell", "full_column"]
DatetimeUnit: TypeAlias = Literal["D", "h", "m", "s"]
OnTruncated: TypeAlias = Literal["retry", "keep", "drop"]

DTYPES: tuple[str, ...] = get_args(Dtype)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
DATETIME_UNITS: tuple[str, ...] = get_args(DatetimeUnit)
ON_TRUNCATED: tuple[str, ...] = get_args(OnTruncated)

_names = checked(is_tuple_of(is_str, "a string"))
_dtype = optional(checked(v.in_(DTYPES)))


def _template_length(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if len(value) > MAX_TEMPLATE_CHARS:
        raise ValueError(
            f"'{attribute.name}' is a template of {len(value):,} characters, more than the limit "
            f"of {MAX_TEMPLATE_CHARS:,}; keep data out of templates (read it from a column)"
        )


# -- common fields -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _ColumnBase:
    """Fields every column has.

    Attributes:
      name: the column name, an identifier (templates refer to it as ``{{ name }}``).
      drop: generate the column (downstream columns may use it) but do not write it.
      skip_when: a Jinja condition over the row; when it renders truthy, the cell is not
        generated and gets ``skip_value`` instead, and the skip propagates downstream.
      skip_value: the value of skipped cells (default ``None``, a null).
      depends_on: extra upstream columns not visible in templates (e.g. for custom columns).
    """

    kind: ClassVar[str]

    name: str = attrs.field(validator=checked(identifier))
    drop: bool = attrs.field(default=False, validator=checked(is_bool))
    skip_when: str | None = attrs.field(
        default=None, validator=optional(checked(non_blank, _template_length))
    )
    skip_value: Any = attrs.field(default=None, hash=False)
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=to_tuple, validator=_names)


# -- samplers ----------------------------------------------------------------------------------


def _constraints(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for index, text in enumerate(value):
        constraint = parse_constraint(text)  # ValueError: reported on the field
        if constraint.column != instance.name:
            raise ValueError(
                f"constraint [{index}] {text!r} must start with the column's own name "
                f"{instance.name!r} (e.g. '{instance.name} >= 0')"
            )
        if constraint.other == instance.name:
            raise ValueError(f"constraint [{index}] {text!r} compares the column with itself")


#: Fields a ``conditional_params`` entry may not change.
_UNCONDITIONAL: tuple[str, ...] = (
    "name",
    "drop",
    "skip_when",
    "skip_value",
    "depends_on",
    "constraints",
    "conditional_params",
)


def _conditional_params(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    fields = [f.name for f in attrs.fields(type(instance)) if f.name not in _UNCONDITIONAL]
    for condition, params in value.items():
        if not isinstance(condition, str) or not condition.strip():
            raise ValueError(
                f"'conditional_params' keys must be conditions: {short_repr(condition)}"
            )
        if not isinstance(params, dict) or not params:
            raise ValueError(
                f"'conditional_params' must map each condition to the fields it changes "
                f"(a mapping): {condition!r} -> {short_repr(params)}"
            )
        for key in params:
            if key not in fields:
                from .._core._suggest import did_you_mean

                hint = did_you_mean(
                    str(key), fields, otherwise="it may set " + ", ".join(map(repr, fields))
                )
                raise ValueError(
                    f"'conditional_params' for {condition!r} sets {key!r}, which is not a "
                    f"field this sampler can vary; {hint}"
                )


@attrs.frozen(kw_only=True)
class _SamplerBase(_ColumnBase):
    """Fields every sampler has, besides the common ones.

    Attributes:
      constraints: comparisons every value must satisfy, each ``"<this column> <op>
        <number, 'string' or other column>"`` (``"age >= 18"``, ``"end > start"``); a cell
        is redrawn (seeded) until all hold, at most 1000 times, then its row group fails.
        Constraints no value can meet are a config error at run start.
      conditional_params: Jinja condition over the row -> other values for this sampler's
        fields, used for rows where the condition holds (the first that holds wins);
        ``{"{{ tier == 'gold' }}": {"mean": 500}}``. Not hashed; read-only.
    """

    constraints: tuple[str, ...] = attrs.field(
        default=(),
        converter=to_tuple,
        validator=checked(is_tuple_of(is_str, "a string"), _constraints),
    )
    conditional_params: dict[str, dict[str, Any]] = attrs.field(
        factory=dict, converter=str_keys, validator=checked(is_json_object, _conditional_params),
        hash=False,
    )


def _weights(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not all(is_number(w) and math.isfinite(w) and w >= 0 for w in value):
        raise ValueError(f"'weights' must be finite numbers >= 0: {short_repr(value)}")
    if isinstance(instance.values, tuple) and len(value) != len(instance.values):
        raise ValueError(
            f"'weights' must have one weight per value: {len(value)} weights for "
            f"{len(instance.values)} values"
        )
    if not sum(value) > 0:
        raise ValueError("'weights' must not all be zero")


@attrs.frozen(kw_only=True)
class CategorySampler(_SamplerBase):
    """Draw each cell from ``values``, uniformly or by ``weights``.

    Attributes:
      values: the categories (any JSON values), at least one.
      weights: relative weights, one per value, ``>= 0``, not all zero; ``None`` = uniform.
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["category"]] = "category"

    values: tuple[Any, ...] = attrs.field(
        converter=to_tuple, validator=checked(is_tuple_of(is_any, "a value"), non_empty), hash=False
    )
    weights: tuple[float, ...] | None = attrs.field(
        default=None,
        converter=to_optional_tuple,
        validator=optional(checked(is_tuple_of(is_number, "a number"), _weights)),
    )


def _subcategory_values(value: Any) -> Any:
    """Copy the mapping, with string keys and tuple values (anything else: as-is)."""
    mapping = str_keys(value)
    if not isinstance(mapping, dict):
        return mapping
    return {key: to_tuple(items) for key, items in mapping.items()}


def _subcategory_mapping(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for key, items in value.items():
        if not isinstance(items, tuple) or not items:
            raise ValueError(
                f"'values' must map each parent value to a non-empty list: {key!r} -> "
                f"{short_repr(items)}"
            )


def _not_self(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value == instance.name:
        raise ValueError(f"'{attribute.name}' must name another column, not the column itself")


@attrs.frozen(kw_only=True)
class SubcategorySampler(_SamplerBase):
    """Draw each cell from the list that ``values`` gives for the parent column's value.

    Attributes:
      category: the parent column's name (usually a :class:`CategorySampler`).
      values: parent value (as a string) -> the subcategories to draw from, uniformly.
        Integer keys (``1:`` in YAML) are turned into strings; a generator looks a parent
        value up by ``str(value)``.
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["subcategory"]] = "subcategory"

    category: str = attrs.field(validator=checked(identifier, _not_self))
    values: dict[str, tuple[Any, ...]] = attrs.field(
        converter=_subcategory_values,
        validator=checked(is_json_object, non_empty, _subcategory_mapping),
        hash=False,
    )


_decimal_places = optional(checked(is_int, v.ge(0)))


def _above_low(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if is_number(instance.low) and not value > instance.low:
        raise ValueError(f"'high' must be > 'low': high={value}, low={instance.low}")


@attrs.frozen(kw_only=True)
class UniformSampler(_SamplerBase):
    """Draw floats uniformly from ``[low, high)``.

    Attributes:
      low: the lower bound.
      high: the upper bound, ``> low``.
      decimal_places: round each value to this many places (``None``: no rounding).
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["uniform"]] = "uniform"

    low: float = attrs.field(validator=checked(finite))
    high: float = attrs.field(validator=checked(finite, _above_low))
    decimal_places: int | None = attrs.field(default=None, validator=_decimal_places)


@attrs.frozen(kw_only=True)
class GaussianSampler(_SamplerBase):
    """Draw floats from a normal distribution.

    Attributes:
      mean: the mean.
      stddev: the standard deviation, ``>= 0``.
      decimal_places: round each value to this many places (``None``: no rounding).
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["gaussian"]] = "gaussian"

    mean: float = attrs.field(validator=checked(finite))
    stddev: float = attrs.field(validator=checked(finite, v.ge(0)))
    decimal_places: int | None = attrs.field(default=None, validator=_decimal_places)


@attrs.frozen(kw_only=True)
class BernoulliSampler(_SamplerBase):
    """Draw 1 with probability ``p``, else 0.

    Attributes:
      p: the probability of 1, ``0 <= p <= 1``.
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["bernoulli"]] = "bernoulli"

    p: float = attrs.field(validator=checked(finite, v.ge(0), v.le(1)))


@attrs.frozen(kw_only=True)
class PoissonSampler(_SamplerBase):
    """Draw non-negative integers from a Poisson distribution.

    Attributes:
      mean: the mean (lambda), ``>= 0``.
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["poisson"]] = "poisson"

    mean: float = attrs.field(validator=checked(finite, v.ge(0)))


@attrs.frozen(kw_only=True)
class UUIDSampler(_SamplerBase):
    """A random (seeded) UUID4 per cell, as a string.

    Attributes:
      prefix: prepended to each value.
      short_form: keep only the first 8 hex digits.
      uppercase: upper-case hex digits.
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["uuid"]] = "uuid"

    prefix: str = attrs.field(default="", validator=checked(instance_of(str)))
    short_form: bool = attrs.field(default=False, validator=checked(is_bool))
    uppercase: bool = attrs.field(default=False, validator=checked(is_bool))


def _not_below_min(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if is_number(instance.min) and value < instance.min:
        raise ValueError(f"'max' must be >= 'min' ({instance.min}): {value}")


def _iso_datetime(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"'{attribute.name}' must be an ISO 8601 date or datetime such as "
            f"'2024-01-31' or '2024-01-31T12:00:00': {short_repr(value)}"
        ) from None


def _after_start(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    try:
        start = datetime.fromisoformat(instance.start)
    except (TypeError, ValueError):
        return  # reported on 'start'
    end = datetime.fromisoformat(value)
    if (start.tzinfo is None) != (end.tzinfo is None):
        raise ValueError("'start' and 'end' must both have a timezone offset or both lack one")
    if not end > start:
        raise ValueError(f"'end' must be after 'start': start={instance.start}, end={value}")


@attrs.frozen(kw_only=True)
class DatetimeSampler(_SamplerBase):
    """Draw timestamps uniformly from ``[start, end)``, truncated to ``unit``.

    Attributes:
      start: ISO 8601 date or datetime (``"2024-01-01"``, ``"2024-01-01T08:00:00+00:00"``).
      end: ISO 8601, after ``start``; both with or both without a timezone.
      unit: resolution of the drawn values: ``"D"`` days, ``"h"``, ``"m"``, ``"s"`` (default).
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["datetime"]] = "datetime"

    start: str = attrs.field(validator=checked(_iso_datetime))
    end: str = attrs.field(validator=checked(_iso_datetime, _after_start))
    unit: DatetimeUnit = attrs.field(default="s", validator=checked(v.in_(DATETIME_UNITS)))


def _age_range(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if len(value) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in value):
        raise ValueError(
            f"'age_range' must be two integers [youngest, oldest]: {short_repr(value)}"
        )
    low, high = value
    if not 0 <= low <= high <= 120:
        raise ValueError(f"'age_range' must satisfy 0 <= youngest <= oldest <= 120: {list(value)}")


def _iso_date(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"'{attribute.name}' must be an ISO 8601 date such as '2025-01-01': {short_repr(value)}"
        ) from None


@attrs.frozen(kw_only=True)
class PersonSampler(_SamplerBase):
    """A made-up person per cell, from Faker (the ``person`` extra), as a struct-like dict.

    Templates read its fields: ``{{ customer.first_name }}``. Fields: ``first_name``,
    ``last_name``, ``full_name``, ``sex``, ``age``, ``birth_date``, ``city``, ``state``,
    ``country``, ``occupation``, ``email``, ``phone``.

    Attributes:
      locale: a Faker locale (``en_US``, ``de_DE``, ``ja_JP`` ...): names, cities, phone
        formats and the country follow it (checked when the run starts).
      sex: ``"female"`` or ``"male"`` for everyone; ``None`` draws either, evenly.
      age_range: ``[youngest, oldest]``, ages drawn uniformly, inclusive (default
        ``[18, 85]``).
      city: draw the city from these names instead of the locale's made-up ones.
      as_of: the date ages are counted at (ISO 8601; default ``2025-01-01``), fixed so that a
        dataset does not change with the day it is generated.
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["person"]] = "person"

    locale: str = attrs.field(default="en_US", validator=checked(non_blank))
    sex: Literal["female", "male"] | None = attrs.field(
        default=None, validator=optional(checked(v.in_(("female", "male"))))
    )
    age_range: tuple[int, ...] = attrs.field(
        default=(18, 85), converter=to_tuple, validator=checked(_age_range)
    )
    city: tuple[str, ...] = attrs.field(
        default=(), converter=to_tuple, validator=checked(is_tuple_of(is_str, "a city name"))
    )
    as_of: str = attrs.field(default="2025-01-01", validator=checked(_iso_date))


#: Distributions by numpy's ``Generator`` method name (the ``stats`` extra), each with its
#: parameters in numpy's names; discrete ones give integers.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "beta": ("a", "b"),
    "binomial": ("n", "p"),
    "chisquare": ("df",),
    "exponential": ("scale",),
    "f": ("dfnum", "dfden"),
    "gamma": ("shape", "scale"),
    "geometric": ("p",),
    "gumbel": ("loc", "scale"),
    "hypergeometric": ("ngood", "nbad", "nsample"),
    "laplace": ("loc", "scale"),
    "logistic": ("loc", "scale"),
    "lognormal": ("mean", "sigma"),
    "logseries": ("p",),
    "negative_binomial": ("n", "p"),
    "normal": ("loc", "scale"),
    "pareto": ("a",),
    "poisson": ("lam",),
    "power": ("a",),
    "rayleigh": ("scale",),
    "standard_cauchy": (),
    "standard_t": ("df",),
    "triangular": ("left", "mode", "right"),
    "uniform": ("low", "high"),
    "vonmises": ("mu", "kappa"),
    "wald": ("mean", "scale"),
    "weibull": ("a",),
    "zipf": ("a",),
}


def _distribution_params(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    names = DISTRIBUTIONS.get(instance.distribution)
    if names is None:
        return  # reported on 'distribution'
    for key, number in value.items():
        if key not in names:
            listed = ", ".join(map(repr, names)) or "none"
            raise ValueError(
                f"'params': {instance.distribution} has no parameter {key!r}; its parameters "
                f"are {listed} (numpy's names)"
            )
        if not (is_number(number) and math.isfinite(number)):
            raise ValueError(f"'params': {key!r} must be a finite number: {short_repr(number)}")


def _distribution_name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in DISTRIBUTIONS:
        from .._core._suggest import did_you_mean

        hint = did_you_mean(str(value), DISTRIBUTIONS, otherwise="see the list in the docs")
        raise ValueError(f"'distribution' {short_repr(value)} is not one we know; {hint}")


@attrs.frozen(kw_only=True)
class DistributionSampler(_SamplerBase):
    """Draw from a named distribution, numpy's (``pip install 'trio_designer[stats]'``).

    Attributes:
      distribution: numpy ``Generator`` method name: ``lognormal``, ``beta``, ``binomial``,
        ``gamma``, ``weibull``, ... (:data:`DISTRIBUTIONS`).
      params: its parameters by numpy's names (``{mean: 0, sigma: 1}`` for lognormal);
        missing ones take numpy's defaults; checked against numpy at run start. Not hashed.
      decimal_places: round each (float) value to this many places (``None``: no rounding).
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["distribution"]] = "distribution"

    distribution: str = attrs.field(validator=checked(non_blank, _distribution_name))
    params: dict[str, float] = attrs.field(
        factory=dict,
        converter=str_keys,
        validator=checked(is_json_object, _distribution_params),
        hash=False,
    )
    decimal_places: int | None = attrs.field(default=None, validator=_decimal_places)


@attrs.frozen(kw_only=True)
class TimeDeltaSampler(_SamplerBase):
    """A date or datetime some time after (or before) another column's value.

    Attributes:
      reference: the column holding the start (a date or datetime column of the row).
      min: the smallest offset, in ``unit``s (may be negative).
      max: the largest offset, inclusive, ``>= min``.
      unit: ``"D"`` days (default), ``"h"``, ``"m"``, ``"s"``.
    """

    kind: ClassVar[Literal["sampler"]] = "sampler"
    sampler: ClassVar[Literal["time_delta"]] = "time_delta"

    reference: str = attrs.field(validator=checked(identifier, _not_self))
    min: int = attrs.field(default=0, validator=checked(is_int))
    max: int = attrs.field(validator=checked(is_int, _not_below_min))
    unit: DatetimeUnit = attrs.field(default="D", validator=checked(v.in_(DATETIME_UNITS)))


# -- expression and custom ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ExpressionColumn(_ColumnBase):
    """A Jinja expression over the row, optionally cast.

    Attributes:
      expr: the Jinja template, e.g. ``"{{ summary.split() | length }}"``.
      dtype: cast the rendered text: ``"str"``, ``"int"``, ``"float"``, ``"bool"``, ``"json"``
        (``None``: keep the text).
    """

    kind: ClassVar[Literal["expression"]] = "expression"

    expr: str = attrs.field(validator=checked(non_blank, _template_length))
    dtype: Dtype | None = attrs.field(default=None, validator=_dtype)


def _function(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, str):
        problem = function_path_problem(value)
        if problem is not None:
            raise ValueError(problem)
    elif not callable(value):
        raise ValueError(f"'function' must be a callable or an import path: {short_repr(value)}")


@attrs.frozen(kw_only=True)
class CustomColumn(_ColumnBase):
    """A user function, sync or ``async def``, per cell or per row group.

    Attributes:
      function: the function itself, or its import path ``"package.module:function"``: one
        name after the colon, a function (or a generator class) *defined in* that module, not
        from the standard library or trio_designer (see :mod:`._code` for where the module
        may come from). Serializing turns a function into its import path, so it must be a
        module-level function (not a lambda, a local function or a method). Loading keeps
        the path; the generator imports it. Not hashed (compared by identity when a
        callable).
      strategy: ``"cell"`` (``fn(row)``, one call per row) or ``"full_column"`` (``fn(rows)``,
        one call per row group, returning one value per row).
      dtype: cast the result like :class:`ExpressionColumn` (``None``: keep it).
      llm_bound: the function waits on a model; the engine hands its submission slot over
        before the wait (see the scheduler).
      models: aliases of the models the function calls (checked against ``models``).
    """

    kind: ClassVar[Literal["custom"]] = "custom"

    function: Callable[..., Any] | str = attrs.field(validator=checked(_function), hash=False)
    strategy: Strategy = attrs.field(default="cell", validator=checked(v.in_(STRATEGIES)))
    dtype: Dtype | None = attrs.field(default=None, validator=_dtype)
    llm_bound: bool = attrs.field(default=False, validator=checked(is_bool))
    models: tuple[str, ...] = attrs.field(default=(), converter=to_tuple, validator=_names)


# -- LLM columns -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _LLMColumnBase(_ColumnBase):
    """Fields every LLM column has.

    Attributes:
      model: the alias of a :class:`~trio_designer.config.ModelConfig`.
      prompt: the user prompt, a Jinja template over the row.
      system_prompt: an optional system prompt, also a template.
      inference: per-call overrides of the model's inference parameters.
      max_parse_retries: extra attempts when the output does not parse, ``>= 0`` (default 2).
      extract_reasoning: keep the model's reasoning trace (in a side column).
    """

    model: str = attrs.field(validator=checked(non_blank))
    prompt: str = attrs.field(validator=checked(non_blank, _template_length))
    system_prompt: str | None = attrs.field(
        default=None, validator=optional(checked(non_blank, _template_length))
    )
    inference: InferenceParams | None = attrs.field(
        default=None, validator=optional(checked(instance_of(InferenceParams)))
    )
    max_parse_retries: int = attrs.field(default=2, validator=checked(is_int, v.ge(0)))
    extract_reasoning: bool = attrs.field(default=False, validator=checked(is_bool))


@attrs.frozen(kw_only=True)
class LLMTextColumn(_LLMColumnBase):
    """Free text from a chat model.

    Attributes:
      on_truncated: what to do with an answer cut off at ``max_tokens`` (``finish_reason``
        ``"length"``): ``"retry"`` (default) asks again, within ``max_parse_retries``, then
        drops the row; ``"keep"`` keeps the cut answer and marks it (the side column
        ``<name>__truncated`` and the column's ``truncated`` count); ``"drop"`` drops the row
        at once.
    """

    kind: ClassVar[Literal["llm_text"]] = "llm_text"

    on_truncated: OnTruncated = attrs.field(default="retry", validator=checked(v.in_(ON_TRUNCATED)))


@attrs.frozen(kw_only=True)
class LLMCodeColumn(_LLMColumnBase):
    """Code from a chat model, extracted from its fenced block.

    Attributes:
      language: the expected language (default ``"python"``).
    """

    kind: ClassVar[Literal["llm_code"]] = "llm_code"

    language: str = attrs.field(default="python", validator=checked(non_blank))


def schema_to_dict(value: Any) -> Any:
    """Accept a JSON schema dict, or a class with ``model_json_schema()`` (pydantic).

    Returns a deep copy of the dict, or the class's schema. Anything else is returned as-is
    for the validator to reject. No pydantic import: any class with that method works.
    """
    to_schema = getattr(value, "model_json_schema", None)
    if isinstance(value, type) and callable(to_schema):
        value = to_schema()
    return copy.deepcopy(value) if isinstance(value, dict) else value


def _valid_schema(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    problems = schema_problems(value)
    if problems:
        listed = "; ".join(problems)
        raise ValueError(
            f"'schema' is not a valid JSON schema (Draft 2020-12 unless it says $schema): "
            f"{listed}"
        )


@attrs.frozen(kw_only=True)
class LLMStructuredColumn(_LLMColumnBase):
    """A JSON object from a chat model, validated against a JSON schema.

    Attributes:
      schema: the JSON schema (a dict), checked against its meta-schema (Draft 2020-12 unless
        it names another with ``$schema``); ``$ref`` must stay inside the schema. A class with
        ``model_json_schema()`` (a pydantic model) is accepted and stored as its schema. Not
        hashed; read-only.
    """

    kind: ClassVar[Literal["llm_structured"]] = "llm_structured"

    schema: dict[str, Any] = attrs.field(
        converter=schema_to_dict, validator=checked(is_json_object, _valid_schema), hash=False
    )


def _scores(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not all(isinstance(text, str) for text in value.values()):
        raise ValueError("'scores' must map each score to a description string")


@attrs.frozen(kw_only=True)
class Rubric:
    """One judging criterion.

    Attributes:
      name: the criterion's name, the key of its score in the judge's output.
      description: what the judge assesses.
      scores: score value -> what it means (``{"1": "off topic", "5": "excellent"}``).
        Integer keys (as YAML reads ``5: excellent``) are turned into strings. Not hashed.
    """

    name: str = attrs.field(validator=checked(non_blank))
    description: str = attrs.field(validator=checked(non_blank))
    scores: dict[str, str] = attrs.field(
        converter=str_keys, validator=checked(is_json_object, non_empty, _scores), hash=False
    )


def _unique_rubric_names(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    names = [rubric.name for rubric in value]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"'rubrics' names must be unique: {', '.join(map(repr, duplicates))}")


@attrs.frozen(kw_only=True)
class LLMJudgeColumn(_LLMColumnBase):
    """Scores from a chat model acting as a judge, one per rubric.

    Attributes:
      rubrics: the criteria, at least one, with unique names.
    """

    kind: ClassVar[Literal["llm_judge"]] = "llm_judge"

    rubrics: tuple[Rubric, ...] = attrs.field(
        converter=to_tuple,
        validator=checked(
            is_tuple_of(lambda r: isinstance(r, Rubric), "a Rubric"),
            non_empty,
            _unique_rubric_names,
        ),
    )


# -- seed --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SeedColumn(_ColumnBase):
    """A column of the pipeline's seed (``seed:``), declared to set its own fields.

    Every seed column is a column of the pipeline without being declared; declare one only to
    set ``drop`` (or ``skip_when``/``skip_value``) on it, as ``{name: question, kind: seed,
    drop: true}``. Its values are read from the seed, one seed row per run row.
    """

    kind: ClassVar[Literal["seed"]] = "seed"
@attrs.frozen(kw_only=True)
class LLMEmbeddingColumn(_ColumnBase):
    """An embedding vector of a text, from an OpenAI-compatible ``/embeddings`` endpoint.

    Cells of the column are gathered into batches: one request embeds up to ``batch_size``
    texts and holds one slot of the endpoint's limiter. A cell waits at most ``batch_window``
    seconds for others to join its batch; a full batch is sent at once.

    Attributes:
      model: the alias of a :class:`~trio_designer.config.ModelConfig` (an embedding model).
      text: the text to embed, a Jinja template over the row (``"{{ summary }}"``).
      dimensions: the vector length to ask for (sent as ``dimensions``; the column is then a
        fixed-size list); ``None``: the model's own length.
      batch_size: the most texts in one request, ``>= 1`` (default 16).
      batch_window: seconds a cell waits for others to fill its batch, ``>= 0`` (default
        0.01).
    """

    kind: ClassVar[Literal["llm_embedding"]] = "llm_embedding"

    model: str = attrs.field(validator=checked(non_blank))
    text: str = attrs.field(validator=checked(non_blank, _template_length))
    dimensions: int | None = attrs.field(
        default=None, validator=optional(checked(is_int, v.ge(1), v.le(65_536)))
    )
    batch_size: int = attrs.field(default=16, validator=checked(is_int, v.ge(1), v.le(2048)))
    batch_window: float = attrs.field(default=0.01, validator=checked(finite, v.ge(0)))


# -- the union and helpers ---------------------------------------------------------------------

SamplerConfig: TypeAlias = (
    CategorySampler
    | SubcategorySampler
    | UniformSampler
    | GaussianSampler
    | BernoulliSampler
    | PoissonSampler
    | UUIDSampler
    | DatetimeSampler
    | PersonSampler
    | DistributionSampler
    | TimeDeltaSampler
)
LLMColumnConfig: TypeAlias = LLMTextColumn | LLMCodeColumn | LLMStructuredColumn | LLMJudgeColumn
ColumnConfig: TypeAlias = (
    SamplerConfig
    | ExpressionColumn
    | CustomColumn
    | LLMColumnConfig
    | SeedColumn
    | LLMEmbeddingColumn
)

SAMPLER_CLASSES: tuple[type[SamplerConfig], ...] = get_args(SamplerConfig)
LLM_COLUMN_CLASSES: tuple[type[LLMColumnConfig], ...] = get_args(LLMColumnConfig)
COLUMN_CLASSES: tuple[type[ColumnConfig], ...] = (
    *SAMPLER_CLASSES,
    ExpressionColumn,
    CustomColumn,
    *LLM_COLUMN_CLASSES,
    SeedColumn,
    LLMEmbeddingColumn,
)


def column_kind(column: ColumnConfig) -> str:
    """The column's tag: ``"sampler:category"`` for samplers, else its ``kind`` (``"llm_text"``)."""
    if isinstance(column, SAMPLER_CLASSES):
        return f"{column.kind}:{column.sampler}"
    if isinstance(column, PluginSampler):
        return f"{column.kind}:{column.sampler}"
    return column.kind


def template_fields(column: ColumnConfig) -> dict[str, str]:
    """Field name -> Jinja source, for every template-bearing field that is set.

    The fields are ``prompt``, ``system_prompt`` (LLM columns), ``expr`` (expressions),
    ``text`` (embedding columns) and ``skip_when`` (every column).
    """
    fields: dict[str, str] = {}
    if isinstance(column, LLM_COLUMN_CLASSES):
        fields["prompt"] = column.prompt
        if column.system_prompt is not None:
            fields["system_prompt"] = column.system_prompt
    elif isinstance(column, ExpressionColumn):
        fields["expr"] = column.expr
    elif isinstance(column, PluginColumn):
        for field in type(column).template_fields:
            source = getattr(column, field, None)
            if isinstance(source, str):
                fields[field] = source
    elif isinstance(column, _SamplerBase):
        for index, condition in enumerate(column.conditional_params):
            fields[f"conditional_params[{index}]"] = condition
    elif isinstance(column, LLMEmbeddingColumn):
        fields["text"] = column.text
    if column.skip_when is not None:
        fields["skip_when"] = column.skip_when
    return fields


def default_strategy(column: ColumnConfig) -> Strategy:
    """How the engine schedules the column: samplers per row group, custom as configured,
    everything else per cell."""
    if isinstance(column, (*SAMPLER_CLASSES, SeedColumn)):
        return "full_column"
    if isinstance(column, CustomColumn):
        return column.strategy
    if isinstance(column, PluginColumn):
        return plugin_strategy(type(column))
    return "cell"


def is_llm_bound(column: ColumnConfig) -> bool:
    """Whether the column's tasks wait on a model (LLM columns; custom with ``llm_bound``)."""
    if isinstance(column, CustomColumn):
        return column.llm_bound
    if isinstance(column, PluginColumn):
        return getattr(type(column).generator_class, "llm_bound", False) is True
    return isinstance(column, (*LLM_COLUMN_CLASSES, LLMEmbeddingColumn))


def explicit_dependencies(column: ColumnConfig) -> tuple[str, ...]:
    """Upstream columns named outside templates: ``depends_on``, plus a subcategory's parent.

    In order, without duplicates.
    """
    names = list(column.depends_on)
    if isinstance(column, SubcategorySampler):
        names.append(column.category)
    if isinstance(column, PluginColumn):
        names.extend(plugin_column_references(column).values())
    if isinstance(column, TimeDeltaSampler):
        names.append(column.reference)
    if isinstance(column, _SamplerBase):
        names.extend(referenced_columns(column.constraints))
    return tuple(dict.fromkeys(names))


# -- plugins -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PluginColumn(_ColumnBase):
    """Base class of the config of a column kind that an installed package adds (a plugin).

    A subclass is a frozen attrs class with its own fields (besides the common ones) and
    these class attributes (see docs/plugins.md)::

        @attrs.frozen(kw_only=True)
        class ReverseText(PluginColumn):
            kind: ClassVar[str] = "reverse_text"       # the entry point's name
            generator_class: ClassVar[type] = ReverseTextGenerator
            template_fields: ClassVar[tuple[str, ...]] = ("text",)
            column_fields: ClassVar[tuple[str, ...]] = ()

            source: str                                # a field of the kind

    Attributes:
      kind: the kind a config writes; equal to the entry point's name.
      generator_class: the :class:`~trio_designer.plugins.ColumnGenerator` subclass that fills
        the column; called with the config (``generator_class(config)``). Its ``strategy`` and
        ``llm_bound`` tell the engine how to schedule the column.
      template_fields: names of fields that hold Jinja templates over the row; the columns
        they read become the column's upstream columns (like a prompt's).
      column_fields: names of fields that hold a column's name (a string, or a list of
        names); those columns become upstream columns, and must exist.
    """

    kind: ClassVar[str]
    generator_class: ClassVar[type[Any]]
    template_fields: ClassVar[tuple[str, ...]] = ()
    column_fields: ClassVar[tuple[str, ...]] = ()


@attrs.frozen(kw_only=True)
class PluginSampler(PluginColumn):
    """Base class of the config of a sampler that a plugin adds (``kind: sampler``).

    Like :class:`PluginColumn`, with ``sampler`` (the entry point's name, in the
    ``trio_designer.samplers`` group) instead of ``kind``.
    """

    kind: ClassVar[str] = "sampler"
    sampler: ClassVar[str]


#: Every class a column config is an instance of: the built-in kinds and the plugins' base.
COLUMN_BASES: tuple[type[Any], ...] = (*COLUMN_CLASSES, PluginColumn)


def plugin_column_references(column: PluginColumn) -> dict[str, str]:
    """Path below the column (``source``, ``sources[1]``) -> the column name a plugin column's
    ``column_fields`` hold, in field order."""
    found: dict[str, str] = {}
    for field in type(column).column_fields:
        value = getattr(column, field, None)
        if isinstance(value, str):
            found[field] = value
        elif isinstance(value, tuple | list):
            found.update(
                (f"{field}[{i}]", item) for i, item in enumerate(value) if isinstance(item, str)
            )
    return found


def plugin_strategy(cls: type[PluginColumn]) -> Strategy:
    """How the engine schedules a plugin column: its generator class's ``strategy``."""
    strategy = getattr(cls.generator_class, "strategy", "cell")
    return "full_column" if strategy == "full_column" else "cell"


# ``trio_designer.plugins`` presents these two classes under its own name; its namespace lacks
# the typing names of their (string) annotations, which ``typing.get_type_hints`` of a plugin's
# subclass (``attrs.resolve_types``, cattrs) evaluates there. Evaluated annotations need no
# namespace.
PluginColumn.__annotations__ = {
    "kind": ClassVar[str],
    "generator_class": ClassVar[type[Any]],
    "template_fields": ClassVar[tuple[str, ...]],
    "column_fields": ClassVar[tuple[str, ...]],
}
PluginSampler.__annotations__ = {"kind": ClassVar[str], "sampler": ClassVar[str]}
