"""Run budgets (``max_cost``, ``max_tokens``, ``max_requests``): whether the next row group may
be admitted. Pure arithmetic: the engine passes the numbers.

The engine admits row groups one after the other (layer 2). With a budget, before each one it
asks :func:`decide`:

* ``spent``: everything the run has spent so far (earlier sessions' written row groups
  included), the row groups in flight included;
* ``finished`` / ``finished_rows``: the spend and the requested rows of the row groups that are
  done (written), the basis of the estimate: ``per_row = finished / finished_rows``;
* ``in_flight_rows``: the rows of the admitted row groups still running;
* ``next_rows``: the rows of the next row group.

The projection is ``spent + what the groups in flight will still spend + the next group``,
with the groups in flight expected to cost ``per_row`` each row, less what they already spent.
The answer:

* ``admit`` when the projection stays within every budget set;
* ``wait`` when it does not but groups are in flight (they may come out cheaper: decide again
  when one finishes), and when no group has finished yet and one is in flight (no estimate:
  one row group at a time until there is one);
* ``stop`` when it does not and nothing is in flight, or when a budget is already spent.

Invariants (``tests/test_runbudget.py``, hypothesis): never ``admit`` a group whose projected
spend exceeds a budget; with nothing in flight the answer is never ``wait`` (no deadlock); with
row groups that all cost the same per row, a run that follows the answers never spends more
than its budgets, and stops only when one more group would not fit.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["Decision", "RunBudget", "Spend", "decide"]

Decision = Literal["admit", "wait", "stop"]


@attrs.frozen
class Spend:
    """What was spent: cost (currency of the prices), tokens (input + output), requests.
    Floats, because estimates scale them."""

    cost: float = 0.0
    tokens: float = 0
    requests: float = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.cost + other.cost, self.tokens + other.tokens, self.requests + other.requests
        )

    def __sub__(self, other: Spend) -> Spend:
        return Spend(
            self.cost - other.cost, self.tokens - other.tokens, self.requests - other.requests
        )

    def scaled(self, factor: float) -> Spend:
        """``self * factor``."""
        return Spend(self.cost * factor, self.tokens * factor, self.requests * factor)

    def clipped(self) -> Spend:
        """Negative parts set to zero."""
        return Spend(max(self.cost, 0.0), max(self.tokens, 0), max(self.requests, 0))

    def to_dict(self) -> dict[str, float]:
        return {"cost": self.cost, "tokens": self.tokens, "requests": self.requests}


@attrs.frozen
class RunBudget:
    """The budgets of a run; ``None`` for no limit."""

    max_cost: float | None = None
    max_tokens: int | None = None
    max_requests: int | None = None

    @property
    def is_set(self) -> bool:
        return any(v is not None for v in (self.max_cost, self.max_tokens, self.max_requests))

    def exceeded(self, spend: Spend) -> list[str]:
        """The budgets ``spend`` goes past (``"cost"``, ``"tokens"``, ``"requests"``)."""
        over = []
        if self.max_cost is not None and spend.cost > self.max_cost:
            over.append("cost")
        if self.max_tokens is not None and spend.tokens > self.max_tokens:
            over.append("tokens")
        if self.max_requests is not None and spend.requests > self.max_requests:
            over.append("requests")
        return over

    def exhausted(self, spend: Spend) -> list[str]:
        """The budgets ``spend`` has reached (nothing more may be spent on them)."""
        full = []
        if self.max_cost is not None and spend.cost >= self.max_cost:
            full.append("cost")
        if self.max_tokens is not None and spend.tokens >= self.max_tokens:
            full.append("tokens")
        if self.max_requests is not None and spend.requests >= self.max_requests:
            full.append("requests")
        return full

    def to_dict(self) -> dict[str, float | int | None]:
        return {"cost": self.max_cost, "tokens": self.max_tokens, "requests": self.max_requests}


def projection(
    *, spent: Spend, finished: Spend, finished_rows: int, in_flight_rows: int, next_rows: int
) -> Spend | None:
    """What the run will have spent once the groups in flight and the next one are done, at
    the per-row spend of the finished groups; ``None`` without a finished row to go by."""
    if finished_rows <= 0:
        return None
    per_row = finished.scaled(1 / finished_rows)
    in_flight_left = (per_row.scaled(in_flight_rows) - (spent - finished)).clipped()
    return spent + in_flight_left + per_row.scaled(next_rows)


def decide(
    budget: RunBudget,
    *,
    spent: Spend,
    finished: Spend,
    finished_rows: int,
    in_flight_rows: int,
    next_rows: int,
) -> Decision:
    """Whether to admit the next row group now (see the module docstring)."""
    if not budget.is_set:
        return "admit"
    if budget.exhausted(spent):
        return "stop"
    projected = projection(
        spent=spent,
        finished=finished,
        finished_rows=finished_rows,
        in_flight_rows=in_flight_rows,
        next_rows=next_rows,
    )
    if projected is None:  # no estimate yet: one row group at a time
        return "wait" if in_flight_rows > 0 else "admit"
    if not budget.exceeded(projected):
        return "admit"
    return "wait" if in_flight_rows > 0 else "stop"
