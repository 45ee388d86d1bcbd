"""Tokens, cost and budgets in the progress display and the CLI's messages."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from trio_designer._core._runbudget import RunBudget, Spend
from trio_designer._engine._admission import BudgetGate
from trio_designer._observe._progress_model import (
    ModelSpend,
    ProgressTracker,
    format_budget,
    format_spend,
)
from trio_designer._observe._progress_plain import format_plain
from trio_designer.cli._budget import budget_message


def test_spend_line_shows_tokens_per_model_and_a_total_only_when_every_model_is_priced() -> None:
    gen = ModelSpend(alias="gen", input_tokens=120, output_tokens=480, cost=0.0123)
    judge = ModelSpend(alias="judge", input_tokens=10, output_tokens=5, cost=None)
    assert format_spend([gen]) == "spent gen 120+480 tok 0.0123"
    assert format_spend([gen, judge]) == "spent gen 120+480 tok 0.0123, judge 10+5 tok"
    both = [gen, ModelSpend(alias="b", input_tokens=1, output_tokens=1, cost=2.5)]
    assert format_spend(both).endswith("  total 2.51")
    assert format_spend([]) == ""


def test_budget_line_shows_spent_of_each_limit() -> None:
    line = format_budget([("cost", 0.41, 1.0), ("requests", 8.0, 9.0)])
    assert line == "budget cost 0.4100/1, requests 8/9"


def state_with_budget() -> Any:
    counts = {"a": SimpleNamespace(ok=3, skipped=0, failed=0)}
    gate = BudgetGate(RunBudget(max_requests=9), lambda: Spend(0.0, 100, 8))
    return SimpleNamespace(
        counts=counts,
        rows_written=3,
        rows_dropped=0,
        num_records=10,
        run=SimpleNamespace(row_group_size=10),
        skip_row_groups=frozenset(),
        models=None,
        budget_gate=gate,
    )


def test_progress_frames_carry_the_budget() -> None:
    tracker = ProgressTracker(state_with_budget(), start=0.0)
    snapshot = tracker.snapshot(1.0)
    assert snapshot.budget == (("requests", 8.0, 9.0),)
    assert "budget requests 8/9" in format_plain(snapshot)


def test_budget_message_says_how_far_and_how_to_resume() -> None:
    budget = {
        "limits": {"cost": 5.0, "tokens": None, "requests": None},
        "spent": {"cost": 4.9811, "tokens": 10, "requests": 3},
        "stopped_by": ["cost"],
    }
    text = budget_message(
        budget, written=400, requested=1000, resume="td run c.yaml --max-cost 5 --resume"
    )
    assert text == (
        "budget exhausted (cost): 400 of 1000 requested rows written; spent cost 4.9811 of 5\n"
        "  resume with a larger budget: td run c.yaml --resume --max-cost ..."
    )
