"""Cross-field checks of the run budgets (``RunConfig.max_cost`` and friends)."""

from __future__ import annotations

from collections.abc import Sequence

from ._models import ModelConfig
from ._run import RunConfig

__all__ = ["budget_problems"]


def budget_problems(run: RunConfig | None, models: Sequence[tuple[int, ModelConfig]]) -> list[str]:
    """A cost budget needs a price on every model: the cost of an alias without one is unknown,
    so the budget could not be kept. Token and request budgets need nothing."""
    if run is None or run.max_cost is None:
        return []
    unpriced = [model.alias for _, model in models if model.price is None]
    if not unpriced:
        return []
    names = ", ".join(repr(alias) for alias in unpriced)
    return [
        f"run.max_cost: model {names} has no price, so its cost is unknown and the budget "
        f"cannot be kept; add 'price: {{input_per_mtok: ..., output_per_mtok: ...}}' to that "
        f"model, or budget with max_tokens / max_requests instead"
    ]
