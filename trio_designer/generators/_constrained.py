"""``constraints`` and ``conditional_params`` of a sampler column, around its own generator.

A :class:`ConstrainedSampler` wraps the generator of a sampler config (built without these two
fields) and, per row:

1. picks the parameters: the first ``conditional_params`` condition (a Jinja condition over
   the row, like ``skip_when``) that holds selects its variant of the sampler (the config
   with those fields changed, built once, when the run starts); none holds: the column's own;
2. draws from the cell's own ``rng`` until every constraint holds (seeded rejection: the
   redraws continue the cell's random stream, so the accepted value is reproducible), at
   most :data:`MAX_DRAWS` times; then the cell fails with an error naming the column, the row
   and the constraint that kept failing.

Constraints with a constant right side that no value of the sampler can meet (``age >
200`` on ``uniform [0, 100)``) are found when the generator is built — a config error at run
start (``validate`` too), before any request.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable, Mapping
from typing import Any, Final, final

import attrs

from trio_designer._core._constraints import Constraint, Support, never_holds, parse_constraint
from trio_designer._exceptions import ConfigError, NonRetryableGenerationError

from ._base import ColumnGenerator
from ._samplers import SamplerGenerator
from ._templates import evaluate_condition

__all__ = ["MAX_DRAWS", "ConstrainedSampler", "support_of"]

#: Draws per cell before a constraint is declared unsatisfiable for that row.
MAX_DRAWS: Final = 1000


@final
class ConstrainedSampler(SamplerGenerator):
    """A sampler with constraints and conditional parameters (see the module docstring).

    Runs in a worker thread: conditions render Jinja, and a rejection loop may draw many
    times.
    """

    inline = False

    def __init__(self, config: Any, build: Callable[[Any], ColumnGenerator]) -> None:
        super().__init__(config.name)
        plain = attrs.evolve(config, constraints=(), conditional_params={})
        self._base = _sampler(build(plain))
        self._variants: list[tuple[str, SamplerGenerator]] = []
        for index, (condition, params) in enumerate(config.conditional_params.items()):
            try:
                variant = attrs.evolve(plain, **params)
            except (ConfigError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"column {config.name!r}: conditional_params[{index}] ({condition!r}): {exc}"
                ) from None
            self._variants.append((condition, _sampler(build(variant))))
        self._constraints = [parse_constraint(text) for text in config.constraints]
        if not config.conditional_params:
            support = support_of(config)
            for constraint in self._constraints:
                if never_holds(constraint, support):
                    raise ConfigError(
                        f"column {config.name!r}: constraint {constraint.text!r} can never "
                        f"hold: {_describe(support)}; loosen the constraint or change the "
                        "sampler's parameters"
                    )

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        generator = self._base
        for condition, variant in self._variants:
            if evaluate_condition(
                condition, row, column=self.name, field="conditional_params", row_index=row_index
            ):
                generator = variant
                break
        failing: Constraint | None = None
        for _ in range(MAX_DRAWS):
            value = generator.sample(rng, row, row_index)
            failing = self._first_failing(value, row, row_index)
            if failing is None:
                return value
        assert failing is not None
        raise NonRetryableGenerationError(
            f"column {self.name!r}: constraint {failing.text!r} did not hold in {MAX_DRAWS} "
            f"draws for row {row_index}; widen the sampler's range or loosen the constraint",
            column=self.name,
            row=row_index,
        )

    def _first_failing(self, value: Any, row: Mapping[str, Any], row_index: int) -> Any:
        for constraint in self._constraints:
            try:
                if not constraint.holds(value, row):
                    return constraint
            except (TypeError, ValueError, KeyError) as exc:
                raise NonRetryableGenerationError(
                    f"column {self.name!r}: constraint {constraint.text!r} cannot compare "
                    f"{value!r} in row {row_index}: {exc}",
                    column=self.name,
                    row=row_index,
                ) from None
        return None

    def arrow_type(self) -> Any:
        return self._base.arrow_type()


def _sampler(generator: ColumnGenerator) -> SamplerGenerator:
    assert isinstance(generator, SamplerGenerator), generator
    return generator


def support_of(config: Any) -> Support:
    """What ``config`` (a sampler config) can draw, as far as its fields say."""
    sampler = getattr(config, "sampler", None)
    if sampler == "uniform":
        return Support(float(config.low), float(config.high))
    if sampler == "gaussian" and config.stddev == 0:
        return Support(values=(float(config.mean),))
    if sampler == "bernoulli":
        return Support(values=tuple(v for v, w in ((0, 1 - config.p), (1, config.p)) if w > 0))
    if sampler == "poisson":
        return Support(values=(0,)) if config.mean == 0 else Support(0, math.inf)
    if sampler == "category":
        weights = config.weights or (1,) * len(config.values)
        return Support(values=tuple(v for v, w in zip(config.values, weights, strict=True) if w))
    if sampler == "datetime":
        return Support(_naive_utc(config.start), _naive_utc(config.end), high_open=True)
    if sampler == "distribution":
        return _distribution_support(config.distribution, config.params)
    return Support()


def _naive_utc(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


_NON_NEGATIVE: Final = frozenset(
    {"chisquare", "exponential", "f", "gamma", "lognormal", "negative_binomial", "pareto",
     "poisson", "rayleigh", "wald", "weibull"}
)


def _distribution_support(name: str, params: Mapping[str, float]) -> Support:
    if name in ("beta", "power"):
        return Support(0.0, 1.0)
    if name == "binomial" and "n" in params:
        return Support(0, params["n"])
    if name in ("geometric", "zipf", "logseries"):
        return Support(1, math.inf)
    if name == "uniform":
        return Support(params.get("low", 0.0), params.get("high", 1.0))
    if name == "triangular" and "left" in params and "right" in params:
        return Support(params["left"], params["right"])
    if name in _NON_NEGATIVE:
        return Support(0, math.inf)
    return Support()


def _describe(support: Support) -> str:
    if support.values is not None:
        return "the sampler draws only " + ", ".join(map(repr, support.values))
    close = ")" if support.high_open else "]"
    return f"the sampler draws from [{support.low}, {support.high}{close}"
