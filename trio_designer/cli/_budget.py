"""The command line's budgets: ``--max-cost``, ``--max-tokens``, ``--max-requests`` (they set
``run.max_cost`` and friends), and what ``run`` says when a budget stopped it."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any

import attrs

from ..config import PipelineConfig

__all__ = ["add_budget_options", "budget_message", "with_budgets"]

_FLAGS = {"cost": "--max-cost", "tokens": "--max-tokens", "requests": "--max-requests"}


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def add_budget_options(sub: argparse.ArgumentParser, positive_int: Any) -> None:
    group = sub.add_argument_group(
        "budgets (override run.max_cost / max_tokens / max_requests; see docs/cost.md)"
    )
    group.add_argument(
        "--max-cost",
        type=positive_float,
        metavar="X",
        help="stop admitting row groups before the run's cost would pass X (in the currency "
        "of the models' prices; every model needs a price)",
    )
    group.add_argument(
        "--max-tokens",
        type=positive_int,
        metavar="N",
        help="the same for input + output tokens",
    )
    group.add_argument(
        "--max-requests",
        type=positive_int,
        metavar="N",
        help="the same for requests sent",
    )


def with_budgets(config: PipelineConfig, args: argparse.Namespace) -> PipelineConfig:
    """``config`` with the budget flags given on the command line applied."""
    changes = {
        field: value
        for field in ("max_cost", "max_tokens", "max_requests")
        if (value := getattr(args, field, None)) is not None
    }
    if not changes:
        return config
    return attrs.evolve(config, run=attrs.evolve(config.run, **changes))


def budget_flags(args: argparse.Namespace) -> list[str]:
    """The budget flags of ``args`` as command-line words (for the resume command)."""
    words: list[str] = []
    for field, flag in (("max_cost", "--max-cost"), ("max_tokens", "--max-tokens"),
                        ("max_requests", "--max-requests")):  # fmt: skip
        value = getattr(args, field, None)
        if value is not None:
            words += [flag, str(value)]
    return words


def budget_message(
    budget: Mapping[str, Any], *, written: int, requested: int, resume: str
) -> str:
    """What ``run`` prints when a budget stopped it: how far it got, spent / budget, and the
    command that continues with a larger budget."""
    limits, spent = budget.get("limits") or {}, budget.get("spent") or {}
    stopped = list(budget.get("stopped_by") or [])
    parts = []
    for name in ("cost", "tokens", "requests"):
        if limits.get(name) is None:
            continue
        if name == "cost":
            parts.append(f"cost {spent.get('cost', 0.0):.4f} of {limits['cost']:g}")
        else:
            parts.append(f"{int(spent.get(name, 0))} {name} of {int(limits[name])}")
    flags = " ".join(f"{_FLAGS[name]} ..." for name in stopped) or "--max-cost ..."
    return (
        f"budget exhausted ({', '.join(stopped) or 'budget'}): {written} of {requested} "
        f"requested rows written; spent {', '.join(parts)}\n"
        f"  resume with a larger budget: {_without_budget_flags(resume)} {flags}"
    )


def _without_budget_flags(command: str) -> str:
    words = command.split(" ")
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in _FLAGS.values():
            skip = True
            continue
        kept.append(word)
    return " ".join(kept)
