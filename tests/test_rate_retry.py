"""How a request answered 429 is retried in place (``trio_designer._core._rate_retry``): its
own delay, and when it gives up. Pure: no trio, no I/O."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_designer._core._rate_retry import DEFAULT_RATE_LIMIT_RETRY, RateLimitRetry


def test_defaults_match_the_documented_values() -> None:
    r = DEFAULT_RATE_LIMIT_RETRY
    assert (r.max_attempts, r.max_wait, r.base, r.cap) == (8, 60.0, 0.25, 2.0)


@pytest.mark.parametrize("retry_after", [0.5, 1.0, 30.0])
def test_the_servers_retry_after_is_the_delay(retry_after: float) -> None:
    assert DEFAULT_RATE_LIMIT_RETRY.delay(retry_after, 1, 0.9) == retry_after
    assert DEFAULT_RATE_LIMIT_RETRY.delay(retry_after, 5, 0.1) == retry_after


@pytest.mark.parametrize("retry_after", [None, 0.0, -1.0, math.inf, math.nan])
def test_without_a_usable_retry_after_the_backoff_is_full_jitter(
    retry_after: float | None,
) -> None:
    """Upper bounds 0.25, 0.5, 1, 2, 2... s; the uniform draw scales them."""
    r = DEFAULT_RATE_LIMIT_RETRY
    assert [r.delay(retry_after, a, 0.999999) for a in range(1, 7)] == pytest.approx(
        [0.25, 0.5, 1.0, 2.0, 2.0, 2.0], rel=1e-5
    )
    assert r.delay(retry_after, 3, 0.5) == 0.5
    assert r.delay(retry_after, 1, 0.0) == 0.0


def test_the_budget_counts_attempts_and_waiting() -> None:
    r = RateLimitRetry(max_attempts=3, max_wait=10.0)
    assert r.retries(1, 0.0, 1.0)
    assert r.retries(2, 1.0, 1.0)
    assert not r.retries(3, 2.0, 1.0)  # the third 429 goes to the engine
    assert r.retries(1, 0.0, 10.0)
    assert not r.retries(1, 0.0, 10.5)  # the wait itself would break the budget
    assert not r.retries(2, 6.0, 5.0)


@pytest.mark.parametrize(
    ("field", "value"), [("max_wait", 0.0), ("base", -1.0), ("cap", math.inf), ("base", math.nan)]
)
def test_bad_values_are_rejected(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^RateLimitRetry.{field} must be a finite number > 0"):
        RateLimitRetry(**{field: value})


def test_a_budget_of_one_attempt_never_retries() -> None:
    assert not RateLimitRetry(max_attempts=1).retries(1, 0.0, 0.0)
    with pytest.raises(ValueError, match="max_attempts"):
        RateLimitRetry(max_attempts=0)


@given(
    retry_after=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    attempt=st.integers(-5, 10_000),
    uniform=st.floats(-1.0, 2.0),
)
def test_a_delay_is_finite_and_bounded(
    retry_after: float | None, attempt: int, uniform: float
) -> None:
    r = DEFAULT_RATE_LIMIT_RETRY
    delay = r.delay(retry_after, attempt, uniform)
    assert math.isfinite(delay)
    assert delay >= 0.0
    usable = retry_after is not None and math.isfinite(retry_after) and retry_after > 0
    assert delay <= (retry_after if usable else r.cap)  # type: ignore[operator]
