"""Sampler generators: random values drawn per row, reproducibly.

Every sampler is a full-column generator (one task per row group, run inline on the event loop:
sampling is cheap and never blocks). Determinism is the point of the design: the value of cell
(row, column) is drawn from ``rng_for(seed, row, column)`` and from nothing else, so::

    values of rows [0..9] in one row group
    == values of rows [0..4] and [5..9] in two row groups
    == values of the same rows in any order, from the cell strategy or the column strategy

and the dataset does not depend on the row-group size, the completion order or the engine (sync
or async). Each sampler also implements the cell strategy (``generate``) with the same values;
the engine uses the column strategy.

Samplers draw with the standard library only (``random.Random``); no numpy.

==============  ===============================================  =====================
sampler         value                                            arrow type
==============  ===============================================  =====================
category        one of ``values`` (optionally weighted)          inferred from values
subcategory     one of ``values[str(parent value)]``             inferred from values
uniform         float in [low, high), optionally rounded         float64
gaussian        float ~ N(mean, stddev), optionally rounded      float64
bernoulli       ``1`` with probability p, else ``0``             int64
poisson         int ~ Poisson(mean)                              int64
uuid            UUID4 string (prefix / short form / uppercase)   string
datetime        naive UTC ``datetime`` on the unit grid          timestamp[s]
time_delta      reference column's value + [min, max] units      inferred
==============  ===============================================  =====================

``person`` (:mod:`._person`, Faker) and ``distribution`` (:mod:`._distribution`, numpy) live
in modules of their own; ``constraints`` and ``conditional_params`` wrap any sampler
(:mod:`._constrained`).

The config classes validate their own fields (weights match values, ``low < high``, ``0 <= p <=
1``, parsable dates ...), so the generators trust them. The one problem only a generator sees,
a datetime range that holds no instant of its unit's grid, raises
:class:`~trio_designer.ConfigError` when the generator is built, before the run starts.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, final

import pyarrow as pa

from trio_designer._exceptions import ConfigError, NonRetryableGenerationError

from ._base import CellContext, ColumnContext, ColumnGenerator, Strategy

if TYPE_CHECKING:
    from trio_designer.config import (
        BernoulliSampler,
        CategorySampler,
        DatetimeSampler,
        GaussianSampler,
        PoissonSampler,
        SubcategorySampler,
        TimeDeltaSampler,
        UniformSampler,
        UUIDSampler,
    )

__all__ = [
    "BernoulliGenerator",
    "CategoryGenerator",
    "DatetimeGenerator",
    "GaussianGenerator",
    "PoissonGenerator",
    "SamplerGenerator",
    "SubcategoryGenerator",
    "TimeDeltaGenerator",
    "UUIDGenerator",
    "UniformGenerator",
    "infer_arrow_type",
]


def infer_arrow_type(values: Sequence[Any]) -> Any:
    """The pyarrow type pyarrow infers for ``values``, or ``None`` when it cannot decide.

    ``None`` is returned for an empty or all-null sequence and for values pyarrow cannot put in
    one column (``[1, "a"]``); the sink then infers the type from the data.
    """
    try:
        inferred = pa.array(list(values)).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return None
    return None if pa.types.is_null(inferred) else inferred


class SamplerGenerator(ColumnGenerator):
    """Base of the samplers: one value per row from that row's own random generator.

    Subclasses implement :meth:`sample`; this class turns it into both strategies. Either way,
    the value of a row depends only on (seed, row index, column) and, for subcategories, the
    row's parent value.
    """

    strategy: ClassVar[Strategy] = "full_column"
    inline: ClassVar[bool] = True

    def __init__(self, name: str) -> None:
        self.name = name

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        """Draw the value of one cell from ``rng`` (that cell's own generator)."""
        raise NotImplementedError

    def generate(self, ctx: CellContext) -> Any:
        """One cell, from ``ctx.rng``."""
        return self.sample(ctx.rng, ctx.row, ctx.row_index)

    def generate_column(self, ctx: ColumnContext) -> list[Any]:
        """Every row of ``ctx``, each from ``ctx.rng_for(row_index)``."""
        return [
            self.sample(ctx.rng_for(row_index), row, row_index)
            for row_index, row in zip(ctx.row_indices, ctx.rows, strict=True)
        ]


@final
class CategoryGenerator(SamplerGenerator):
    """One of ``values``, uniformly or with relative ``weights`` (need not sum to 1)."""

    def __init__(self, config: CategorySampler) -> None:
        super().__init__(config.name)
        self._values = tuple(config.values)
        self._cum_weights = (
            None if config.weights is None else list(itertools.accumulate(config.weights))
        )

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        if self._cum_weights is None:
            return rng.choice(self._values)
        return rng.choices(self._values, cum_weights=self._cum_weights)[0]

    def arrow_type(self) -> Any:
        return infer_arrow_type(self._values)


@final
class SubcategoryGenerator(SamplerGenerator):
    """One of ``values[parent value]``, uniformly, where the parent is another column of the row.

    Keys are compared as strings: a parent value ``3`` selects ``values["3"]``. A parent value
    that is not a key raises :class:`~trio_designer.NonRetryableGenerationError` (which, for a
    full-column task, drops the row group); keep the parent's values and the keys in sync.
    """

    def __init__(self, config: SubcategorySampler) -> None:
        super().__init__(config.name)
        self._parent = config.category
        self._values = {str(key): tuple(choices) for key, choices in config.values.items()}

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        try:
            parent_value = row[self._parent]
        except KeyError:
            raise NonRetryableGenerationError(
                f"column {self.name!r}: row {row_index} has no value for its parent column "
                f"{self._parent!r}; the parent must be generated before the subcategory.",
                column=self.name,
                row=row_index,
            ) from None
        key = parent_value if isinstance(parent_value, str) else str(parent_value)
        choices = self._values.get(key)
        if choices is None:
            known = ", ".join(repr(k) for k in self._values)
            raise NonRetryableGenerationError(
                f"column {self.name!r}: parent column {self._parent!r} has value "
                f"{parent_value!r} in row {row_index}, which is not a key of values "
                f"(known: {known}); add it to values.",
                column=self.name,
                row=row_index,
            )
        return rng.choice(choices)

    def arrow_type(self) -> Any:
        return infer_arrow_type([v for choices in self._values.values() for v in choices])


def _rounded(value: float, decimal_places: int | None) -> float:
    return value if decimal_places is None else round(value, decimal_places)


@final
class UniformGenerator(SamplerGenerator):
    """A float drawn uniformly from [low, high), rounded to ``decimal_places`` if given.

    (``random.uniform`` may return ``high`` itself through floating-point rounding, and
    rounding to ``decimal_places`` may reach it too.)
    """

    def __init__(self, config: UniformSampler) -> None:
        super().__init__(config.name)
        self._low, self._high = float(config.low), float(config.high)
        self._decimal_places = config.decimal_places

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        return _rounded(rng.uniform(self._low, self._high), self._decimal_places)

    def arrow_type(self) -> Any:
        return pa.float64()


@final
class GaussianGenerator(SamplerGenerator):
    """A float drawn from N(mean, stddev²), rounded to ``decimal_places`` if given."""

    def __init__(self, config: GaussianSampler) -> None:
        super().__init__(config.name)
        self._mean, self._stddev = float(config.mean), float(config.stddev)
        self._decimal_places = config.decimal_places

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        # normalvariate, not gauss: gauss caches a second draw inside the Random object.
        return _rounded(rng.normalvariate(self._mean, self._stddev), self._decimal_places)

    def arrow_type(self) -> Any:
        return pa.float64()


@final
class BernoulliGenerator(SamplerGenerator):
    """``1`` with probability ``p``, else ``0`` (an int, so that it sums and averages)."""

    def __init__(self, config: BernoulliSampler) -> None:
        super().__init__(config.name)
        self._p = float(config.p)

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        return 1 if rng.random() < self._p else 0

    def arrow_type(self) -> Any:
        return pa.int64()


# Below this mean, Knuth's multiplication method (expected mean + 1 draws); from it on,
# Hörmann's PTRS transformed rejection (about 1.1 draw pairs, any mean).
_PTRS_THRESHOLD = 10.0


@final
class PoissonGenerator(SamplerGenerator):
    """A non-negative int drawn from Poisson(mean).

    Two exact algorithms, chosen by the mean: Knuth's multiplication of uniforms for small
    means, and Hörmann's PTRS ("The transformed rejection method for generating Poisson random
    variables", 1993; the one numpy uses) for means >= 10, where Knuth's cost and the underflow
    of ``exp(-mean)`` would bite.
    """

    def __init__(self, config: PoissonSampler) -> None:
        super().__init__(config.name)
        self._mean = float(config.mean)

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        if self._mean < _PTRS_THRESHOLD:
            return _poisson_knuth(rng, self._mean)
        return _poisson_ptrs(rng, self._mean)

    def arrow_type(self) -> Any:
        return pa.int64()


def _poisson_knuth(rng: random.Random, mean: float) -> int:
    """Count uniforms until their product drops to ``exp(-mean)`` or below."""
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _poisson_ptrs(rng: random.Random, mean: float) -> int:
    """Hörmann's PTRS for ``mean >= 10`` (as in numpy's ``random_poisson_ptrs``)."""
    sqrt_mean, log_mean = math.sqrt(mean), math.log(mean)
    b = 0.931 + 2.53 * sqrt_mean
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        if us <= 0.0:  # u == -0.5 exactly: the formula below would divide by zero
            continue
        k = math.floor((2 * a / us + b) * u + mean + 0.43)
        if us >= 0.07 and v <= v_r:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if v == 0.0:  # log(0) = -inf accepts
            return k
        lhs = math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b)
        if lhs <= -mean + k * log_mean - math.lgamma(k + 1):
            return k


@final
class UUIDGenerator(SamplerGenerator):
    """A version-4 UUID string built from 16 bytes of the cell's generator.

    ``short_form`` keeps the first 8 hex digits; ``uppercase`` upper-cases the hex digits;
    ``prefix`` is prepended as given (it is not upper-cased).
    """

    def __init__(self, config: UUIDSampler) -> None:
        super().__init__(config.name)
        self._prefix = config.prefix
        self._short_form = config.short_form
        self._uppercase = config.uppercase

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        text = str(uuid.UUID(bytes=rng.getrandbits(128).to_bytes(16, "big"), version=4))
        if self._short_form:
            text = text[:8]
        if self._uppercase:
            text = text.upper()
        return self._prefix + text

    def arrow_type(self) -> Any:
        return pa.string()


_UNIT_SECONDS: dict[str, int] = {"D": 86_400, "h": 3_600, "m": 60, "s": 1}
_EPOCH = dt.datetime(1970, 1, 1)
_MICROSECOND = dt.timedelta(microseconds=1)


@final
class DatetimeGenerator(SamplerGenerator):
    """A naive-UTC ``datetime`` drawn uniformly from the ``unit`` grid inside [start, end).

    ``start`` and ``end`` are ISO 8601 strings; with an offset they are converted to UTC,
    without one they are taken as UTC. The candidates are the instants in [start, end) that are
    whole multiples of ``unit`` since the Unix epoch (``"D"``: midnights UTC; ``"h"``, ``"m"``,
    ``"s"``: whole hours, minutes, seconds), each equally likely. So every value lies inside
    the range even when ``start`` is not on the grid (``start="2024-03-01T10:30"`` with
    ``unit="D"`` first gives March 2). Values are naive ``datetime`` objects meaning UTC,
    written as ``timestamp[s]`` (no time zone).

    Raises:
      ConfigError: (when built) no instant of the grid lies in [start, end), e.g.
        ``start="2024-01-01T01:00"``, ``end="2024-01-01T02:00"``, ``unit="D"``.
    """

    def __init__(self, config: DatetimeSampler) -> None:
        super().__init__(config.name)
        self._unit_seconds = _UNIT_SECONDS[config.unit]
        unit_us = self._unit_seconds * 1_000_000
        start_us = (_parse_utc(config.start) - _EPOCH) // _MICROSECOND
        end_us = (_parse_utc(config.end) - _EPOCH) // _MICROSECOND
        self._first = -(-start_us // unit_us)  # the first grid step at or after start
        self._last = -(-end_us // unit_us) - 1  # the last grid step before end
        if self._first > self._last:
            raise ConfigError(
                f"column {self.name!r}: no whole {config.unit!r} instant lies in "
                f"[{config.start}, {config.end}); widen the range or use a smaller unit."
            )

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        step = rng.randint(self._first, self._last)
        return _EPOCH + dt.timedelta(seconds=step * self._unit_seconds)

    def arrow_type(self) -> Any:
        return pa.timestamp("s")


@final
class TimeDeltaGenerator(SamplerGenerator):
    """``row[reference]`` plus a whole number of ``unit``s drawn uniformly from [min, max].

    A ``date`` reference with whole days stays a ``date``; otherwise the value is a
    ``datetime`` (a ``date`` reference counts from its midnight). A row whose reference is
    null gets null.
    """

    def __init__(self, config: TimeDeltaSampler) -> None:
        super().__init__(config.name)
        self._reference = config.reference
        self._low, self._high = config.min, config.max
        self._unit = config.unit
        self._seconds = _UNIT_SECONDS[config.unit]

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        start = row.get(self._reference)
        offset = rng.randint(self._low, self._high)
        if start is None:
            return None
        if isinstance(start, str):
            start = _parse_reference(start, self.name, self._reference, row_index)
        if not isinstance(start, dt.date):
            raise NonRetryableGenerationError(
                f"column {self.name!r}: reference column {self._reference!r} holds "
                f"{start!r} in row {row_index}, not a date or datetime",
                column=self.name,
                row=row_index,
            )
        if not isinstance(start, dt.datetime):
            if self._unit == "D":
                return start + dt.timedelta(days=offset)
            start = dt.datetime.combine(start, dt.time())
        return start + dt.timedelta(seconds=offset * self._seconds)


def _parse_reference(text: str, column: str, reference: str, row: int) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise NonRetryableGenerationError(
            f"column {column!r}: reference column {reference!r} holds {text!r} in row {row}, "
            "not an ISO 8601 date or datetime",
            column=column,
            row=row,
        ) from None


def _parse_utc(text: str) -> dt.datetime:
    """Parse ISO 8601 (validated by the config) into a naive datetime meaning UTC."""
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed
