"""Request and token budgets (``trio_designer._core._budget``): token buckets, the token
estimate, and what the headers' readings do to them. Pure: ``now`` is an argument."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_designer._core._budget import (
    BudgetReading,
    EndpointBudget,
    RateLimits,
    TokenBucket,
    TokenEstimator,
)

# -- the bucket --------------------------------------------------------------------------------


def test_a_bucket_starts_full_and_refills_at_limit_per_window() -> None:
    bucket = TokenBucket(600, 60.0, now=0.0)
    assert bucket.level(0.0) == 600
    bucket.take(600, 0.0)
    assert bucket.level(0.0) == 0
    assert bucket.level(1.0) == pytest.approx(10)  # 600 a minute: 10 a second
    assert bucket.level(1_000.0) == 600  # never above the limit
    assert bucket.wait(1, 0.0) == pytest.approx(0.1)
    assert bucket.wait(0, 0.0) == 0.0


def test_a_cost_above_the_limit_waits_for_a_full_bucket_not_forever() -> None:
    bucket = TokenBucket(100, 60.0, now=0.0, level=40)
    assert bucket.wait(1_000, 0.0) == pytest.approx(36.0)  # 60 more at 100 a minute
    assert math.isfinite(bucket.wait(10**9, 0.0))


def test_give_never_overfills_and_a_negative_give_charges() -> None:
    bucket = TokenBucket(100, 60.0, now=0.0, level=90)
    bucket.give(50, 0.0)
    assert bucket.level(0.0) == 100
    bucket.give(-30, 0.0)
    assert bucket.level(0.0) == 70


def test_lower_to_believes_a_reading_a_whole_unit_below_ours_only() -> None:
    bucket = TokenBucket(600, 60.0, now=0.0, level=100)
    bucket.lower_to(99.5, 0.0)  # rounding: the server reports whole units
    assert bucket.level(0.0) == 100
    bucket.lower_to(40, 0.0)
    assert bucket.level(0.0) == 40
    bucket.lower_to(500, 0.0)  # higher than ours: ours already counts what it has not seen
    assert bucket.level(0.0) == 40


def test_a_bucket_needs_a_finite_limit_and_window() -> None:
    with pytest.raises(ValueError, match=r"^a budget needs a finite limit and window > 0"):
        TokenBucket(0, 60.0, now=0.0)
    with pytest.raises(ValueError, match=r"^a budget needs a finite limit and window > 0"):
        TokenBucket(10, math.inf, now=0.0)


@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["take", "give", "lower", "advance"]),
            st.floats(0.0, 500.0, allow_nan=False),
        ),
        max_size=40,
    )
)
def test_bucket_invariants(events: list[tuple[str, float]]) -> None:
    """The level is never above the limit; wait is 0 exactly when the bucket holds the cost
    (a cost above the limit: when it is full), up to a millionth of a unit of rounding, and
    finite; taking after a wait of 0 never leaves the level below that rounding."""
    bucket = TokenBucket(100, 60.0, now=0.0)
    now = 0.0
    for kind, x in events:
        if kind == "take":
            if bucket.wait(x, now) == 0:
                bucket.take(x, now)
                assert bucket.level(now) >= -1e-6 or x > 100
        elif kind == "give":
            bucket.give(x, now)
        elif kind == "lower":
            bucket.lower_to(x, now)
        else:
            now += x
        assert bucket.level(now) <= 100
        for cost in (0.0, 1.0, 50.0, 100.0, 1e6):
            wait = bucket.wait(cost, now)
            assert math.isfinite(wait)
            assert wait >= 0
            assert (wait == 0) == (bucket.level(now) >= min(cost, 100) - 1e-6)


# -- the token estimate ----------------------------------------------------------------------------


def test_the_first_estimate_is_chars_over_4_plus_overhead_plus_a_guess() -> None:
    estimator = TokenEstimator()
    assert TokenEstimator.raw_prompt([40]) == 10 + 3 + 3
    assert TokenEstimator.raw_prompt([41, 0]) == 11 + 3 + 0 + 3 + 3
    assert estimator.estimate([40], max_tokens=None) == 16 + 256
    assert estimator.estimate([40], max_tokens=50) == 16 + 50  # providers reserve max_tokens


def test_the_estimate_learns_from_usage() -> None:
    """Answers of 100 completion tokens and prompts that count 10 where we guessed 16: the
    prompt scale and the completion guess follow (mean + 2 standard deviations)."""
    estimator = TokenEstimator()
    for _ in range(200):
        estimator.learn(raw_prompt=16, prompt_tokens=10, completion_tokens=100)
    assert estimator.prompt([40]) == 10
    assert estimator.completion(None) == pytest.approx(100, abs=1)
    for i in range(200):
        estimator.learn(raw_prompt=16, prompt_tokens=10, completion_tokens=80 + 40 * (i % 2))
    assert 120 <= estimator.completion(None) <= 145  # mean 100, spread 20: ~140


# -- the endpoint's budgets ----------------------------------------------------------------------


def test_configured_budgets_gate_requests_and_tokens() -> None:
    budget = EndpointBudget(rpm=60, tpm=600)
    assert budget.limited
    assert budget.wait(100, 0.0) == 0.0
    for _ in range(6):
        budget.take(100, 0.0)
    assert budget.wait(100, 0.0) == pytest.approx(10.0)  # 100 tokens at 10 a second
    assert budget.wait(0, 0.0) == 0.0  # the request budget still holds 54


def test_settle_corrects_the_token_charge() -> None:
    budget = EndpointBudget(tpm=1000)
    ticket = budget.take(300, 0.0)
    budget.settle(ticket, 120, 0.0)
    assert budget.tokens is not None
    assert budget.tokens.level(0.0) == 880
    other = budget.take(100, 0.0)
    budget.settle(other, None, 0.0)  # no usage reported: the estimate stands
    assert budget.tokens.level(0.0) == 780


def test_a_refused_request_is_refunded() -> None:
    budget = EndpointBudget(rpm=10, tpm=1000)
    ticket = budget.take(300, 0.0)
    budget.refund(ticket, 0.0)
    assert budget.requests is not None
    assert budget.tokens is not None
    assert (budget.requests.level(0.0), budget.tokens.level(0.0)) == (10, 1000)


def test_headers_create_a_budget_nobody_configured() -> None:
    budget = EndpointBudget()
    assert not budget.limited
    assert budget.wait(10**6, 0.0) == 0.0
    budget.observe(
        RateLimits(
            requests=BudgetReading(limit=600, remaining=590),
            tokens=BudgetReading(limit=10_000, remaining=9_000),
        ),
        now=5.0,
    )
    assert budget.requests is not None
    assert budget.tokens is not None
    assert (budget.requests.level(5.0), budget.tokens.level(5.0)) == (590, 9_000)
    assert budget.tokens.rate == pytest.approx(10_000 / 60)


def test_a_reading_is_discounted_by_what_was_sent_after_it() -> None:
    """The answer to the first of three requests says 5 are left: the two sent after it may
    not have reached the server yet, so 3 are left as far as we may spend."""
    budget = EndpointBudget(rpm=600)
    first = budget.take(0, 0.0)
    budget.take(0, 0.0)
    budget.take(0, 0.0)
    budget.settle(first, None, 0.0)
    budget.observe(RateLimits(requests=BudgetReading(limit=600, remaining=5)), 0.0, first)
    assert budget.requests is not None
    assert budget.requests.level(0.0) == 3


def test_a_configured_budget_shrinks_to_a_smaller_advertised_limit() -> None:
    budget = EndpointBudget(rpm=1000)
    budget.observe(RateLimits(requests=BudgetReading(limit=600, remaining=600)), 0.0)
    assert budget.requests is not None
    assert budget.requests.limit == 600
    budget.observe(RateLimits(requests=BudgetReading(limit=5000, remaining=600)), 0.0)
    assert budget.requests.limit == 1000  # the configured one is the most we spend


@pytest.mark.parametrize(
    ("limits", "tokens", "spent"),
    [
        (None, 10, False),
        (RateLimits(), 10, False),
        (RateLimits(requests=BudgetReading(remaining=0)), 10, True),
        (RateLimits(requests=BudgetReading(remaining=3)), 10, False),
        (RateLimits(tokens=BudgetReading(remaining=5)), 10, True),
        (RateLimits(tokens=BudgetReading(remaining=50)), 10, False),
    ],
)
def test_when_a_429_is_the_budgets(limits: RateLimits | None, tokens: int, spent: bool) -> None:
    assert EndpointBudget().spent(limits, tokens) is spent
