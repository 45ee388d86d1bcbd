"""The budget decision of row-group admission (``_core/_runbudget.py``): pure, no trio.

Properties over random numbers, and a state machine that plays a whole run: row groups that
cost the same per row, finishing in random order, a random number in flight.
"""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from trio_designer._core._runbudget import RunBudget, Spend, decide, projection

spends = st.builds(
    Spend,
    cost=st.floats(0, 100, allow_nan=False),
    tokens=st.integers(0, 10**6),
    requests=st.integers(0, 10**4),
)
budgets = st.builds(
    RunBudget,
    max_cost=st.none() | st.floats(0.01, 100, allow_nan=False),
    max_tokens=st.none() | st.integers(1, 10**6),
    max_requests=st.none() | st.integers(1, 10**4),
)


@settings(max_examples=300, deadline=None)
@given(
    budget=budgets,
    finished=spends,
    extra=spends,
    finished_rows=st.integers(0, 1000),
    in_flight_rows=st.integers(0, 1000),
    next_rows=st.integers(1, 1000),
)
def test_never_admits_past_a_budget_and_never_waits_on_nothing(
    budget: RunBudget,
    finished: Spend,
    extra: Spend,
    finished_rows: int,
    in_flight_rows: int,
    next_rows: int,
) -> None:
    spent = finished + extra
    decision = decide(
        budget,
        spent=spent,
        finished=finished,
        finished_rows=finished_rows,
        in_flight_rows=in_flight_rows,
        next_rows=next_rows,
    )
    if in_flight_rows == 0:
        assert decision != "wait"  # nothing would ever wake it
    if not budget.is_set:
        assert decision == "admit"
        return
    if budget.exhausted(spent):
        assert decision == "stop"
    projected = projection(
        spent=spent,
        finished=finished,
        finished_rows=finished_rows,
        in_flight_rows=in_flight_rows,
        next_rows=next_rows,
    )
    if decision == "admit" and projected is not None:
        assert not budget.exceeded(projected)
    if decision == "admit" and projected is None:
        assert in_flight_rows == 0  # the probe: one row group until there is an estimate


def test_examples() -> None:
    budget = RunBudget(max_cost=1.0)
    # no estimate: the first group goes alone
    assert decide(budget, spent=Spend(), finished=Spend(), finished_rows=0, in_flight_rows=0,
                  next_rows=10) == "admit"  # fmt: skip
    assert decide(budget, spent=Spend(0.1), finished=Spend(), finished_rows=0, in_flight_rows=10,
                  next_rows=10) == "wait"  # fmt: skip
    # 0.25 per group of 10: two done, one in flight (0.1 spent of it): 0.6 + 0.15 + 0.25 = 1.0
    done = Spend(0.5)
    assert decide(budget, spent=Spend(0.6), finished=done, finished_rows=20, in_flight_rows=10,
                  next_rows=10) == "admit"  # fmt: skip
    # a fourth would make 1.25: wait while one is in flight, stop when none is
    assert decide(budget, spent=Spend(0.85), finished=Spend(0.75), finished_rows=30,
                  in_flight_rows=10, next_rows=10) == "wait"  # fmt: skip
    assert decide(budget, spent=Spend(1.0), finished=Spend(1.0), finished_rows=40,
                  in_flight_rows=0, next_rows=10) == "stop"  # fmt: skip
    assert decide(budget, spent=Spend(0.9), finished=Spend(0.9), finished_rows=40,
                  in_flight_rows=0, next_rows=10) == "stop"  # fmt: skip
    assert decide(budget, spent=Spend(0.8), finished=Spend(0.8), finished_rows=40,
                  in_flight_rows=0, next_rows=10) == "admit"  # 0.8 + 0.2 fits exactly


@attrs.define
class Group:
    rows: int
    spent: float = 0.0


class BudgetedRun(RuleBasedStateMachine):
    """Groups cost ``per_row`` per row, spent gradually while in flight; admissions follow
    :func:`decide`. The total never goes past the budget, and a stop means the next group
    would not have fit."""

    @initialize(
        per_row=st.floats(0.001, 1.0, allow_nan=False),
        max_cost=st.floats(0.01, 50.0, allow_nan=False),
        group_rows=st.lists(st.integers(1, 20), min_size=1, max_size=30),
        slots=st.integers(1, 4),
    )
    def setup(self, per_row: float, max_cost: float, group_rows: list[int], slots: int) -> None:
        self.per_row = per_row
        self.budget = RunBudget(max_cost=max_cost)
        self.pending = list(group_rows)
        self.slots = slots
        self.in_flight: list[Group] = []
        self.finished = Spend()
        self.finished_rows = 0
        self.stopped = False
        self.first_rows = group_rows[0]

    def spent(self) -> Spend:
        return self.finished + Spend(sum(g.spent for g in self.in_flight))

    def ask(self) -> str:
        return decide(
            self.budget,
            spent=self.spent(),
            finished=self.finished,
            finished_rows=self.finished_rows,
            in_flight_rows=sum(g.rows for g in self.in_flight),
            next_rows=self.pending[0],
        )

    @precondition(lambda self: self.pending and not self.stopped)
    @rule()
    def admit(self) -> None:
        if len(self.in_flight) >= self.slots:
            return
        decision = self.ask()
        if decision == "admit":
            self.in_flight.append(Group(self.pending.pop(0)))
        elif decision == "stop":
            if self.in_flight:  # only once what is spent already uses the whole budget
                assert self.budget.exhausted(self.spent())
            else:
                full = self.finished + Spend(self.per_row * self.pending[0])
                assert self.budget.exceeded(full) or self.budget.exhausted(self.finished)
            self.stopped = True

    @precondition(lambda self: self.in_flight)
    @rule(index=st.integers(0, 3), fraction=st.floats(0, 1))
    def progress(self, index: int, fraction: float) -> None:
        group = self.in_flight[index % len(self.in_flight)]
        group.spent = max(group.spent, fraction * group.rows * self.per_row)

    @precondition(lambda self: self.in_flight)
    @rule(index=st.integers(0, 3))
    def finish(self, index: int) -> None:
        group = self.in_flight.pop(index % len(self.in_flight))
        self.finished = self.finished + Spend(group.rows * self.per_row)
        self.finished_rows += group.rows

    @rule()
    def look(self) -> None:
        """Always possible (the run may be over): a stopped run stays stopped."""
        if self.stopped:
            assert self.pending

    @invariant()
    def within_budget(self) -> None:
        """Only the first row group (admitted alone, before any estimate) may overshoot."""
        committed = self.finished.cost + sum(g.rows * self.per_row for g in self.in_flight)
        limit = max(self.budget.max_cost or 0.0, self.first_rows * self.per_row)
        assert committed <= limit + 1e-9


BudgetedRun.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_budgeted_run = BudgetedRun.TestCase
