"""``build_generator``: from a column config to the generator that fills it.

The one place that knows which generator serves which config class::

    generator = build_generator(CategorySampler(name="topic", values=("a", "b")))
    generator.strategy        # "full_column"

Building a generator checks what only the generator can check (weights against values, a
parsable date range, a template's syntax, a custom function's import path) and raises
:class:`~trio_designer.ConfigError` before the run starts.

The config classes are imported when first needed, not at module import, so that the config
package may itself import :mod:`trio_designer.generators._templates` without an import cycle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from trio_designer._exceptions import ConfigError

from ..config._columns import PluginColumn
from ._base import ColumnGenerator
from ._constrained import ConstrainedSampler
from ._custom import custom_generator
from ._distribution import DistributionGenerator
from ._embedding import LLMEmbeddingGenerator
from ._expression import ExpressionGenerator
from ._llm import build_llm_generator
from ._person import PersonGenerator
from ._plugin import build_plugin_generator
from ._samplers import (
    BernoulliGenerator,
    CategoryGenerator,
    DatetimeGenerator,
    GaussianGenerator,
    PoissonGenerator,
    SubcategoryGenerator,
    TimeDeltaGenerator,
    UniformGenerator,
    UUIDGenerator,
)
from ._seed import SeedColumnGenerator, SeedReader

if TYPE_CHECKING:
    from trio_designer.config import ColumnConfig, CustomColumn, LLMColumnConfig
    from trio_designer.config._code import CodeSearch

__all__ = ["build_generator"]


def build_generator(
    column: ColumnConfig,
    *,
    models: Any = None,
    code: CodeSearch | None = None,
    seed: SeedReader | None = None,
) -> ColumnGenerator:
    """The generator for ``column``.

    Args:
      column: any column config (a ``ColumnConfig``).
      models: the run's model registry, when already open; LLM columns then check their
        model alias at build time (otherwise at their first cell, via ``ctx.models``).
      code: where a custom column's import path may be imported from (the pipeline's
        ``code_search()``); default: the installed environment only.

    Returns:
      A fresh generator; its ``strategy``, ``llm_bound`` and ``inline`` class attributes tell the
      engine how to schedule it, and ``arrow_type()`` the column's parquet type.

    Raises:
      ConfigError: the config is invalid in a way only the generator can see (see the module
        docstring), or an LLM column names a model alias ``models`` does not have.
      PluginError: a plugin column's generator class breaks the generator protocol
        (:mod:`._plugin`).
      TypeError: ``column`` is not a column config.
    """
    if getattr(column, "kind", None) == "seed":
        if seed is None or column.name not in seed.seed.columns:
            raise ConfigError(
                f"column {column.name!r}: kind 'seed' needs the pipeline's seed to have a "
                f"column {column.name!r}"
            )
        return SeedColumnGenerator(column.name, seed)
    builder = _builders().get(type(column))
    if builder is None and isinstance(column, PluginColumn):
        return build_plugin_generator(column)
    if builder is None:
        raise TypeError(f"build_generator() got a {type(column).__name__}, not a column config.")
    if builder is build_llm_generator:
        return build_llm_generator(cast("LLMColumnConfig", column), models=models)
    if builder is custom_generator:
        return custom_generator(cast("CustomColumn", column), search=code)
    if getattr(column, "constraints", None) or getattr(column, "conditional_params", None):
        return ConstrainedSampler(column, builder)
    return builder(column)


@functools.cache
def _builders() -> dict[type[Any], Callable[[Any], ColumnGenerator]]:
    from trio_designer import config

    return {
        config.CategorySampler: CategoryGenerator,
        config.SubcategorySampler: SubcategoryGenerator,
        config.UniformSampler: UniformGenerator,
        config.GaussianSampler: GaussianGenerator,
        config.BernoulliSampler: BernoulliGenerator,
        config.PoissonSampler: PoissonGenerator,
        config.UUIDSampler: UUIDGenerator,
        config.DatetimeSampler: DatetimeGenerator,
        config.PersonSampler: PersonGenerator,
        config.DistributionSampler: DistributionGenerator,
        config.TimeDeltaSampler: TimeDeltaGenerator,
        config.ExpressionColumn: ExpressionGenerator,
        config.CustomColumn: custom_generator,
        config.LLMEmbeddingColumn: LLMEmbeddingGenerator,
        config.LLMTextColumn: build_llm_generator,
        config.LLMCodeColumn: build_llm_generator,
        config.LLMStructuredColumn: build_llm_generator,
        config.LLMJudgeColumn: build_llm_generator,
    }
