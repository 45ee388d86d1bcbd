"""Rate-limit headers (``trio_designer.models._ratelimits``): Go durations, OpenAI's
``x-ratelimit-*``, the IETF drafts' ``RateLimit`` fields, and garbage (ignored, never raised).
``Retry-After`` / ``retry-after-ms`` samples are checked here too (their parser lives in
``models/_errors.py``)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_designer._core._budget import BudgetReading, RateLimits
from trio_designer.models._errors import parse_retry_after, retry_after_from_headers
from trio_designer.models._ratelimits import MAX_WINDOW, parse_go_duration, parse_rate_limits

NOW = datetime(2026, 12, 6, 18, 30, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12ms", 0.012),
        ("1.5s", 1.5),
        ("6m0s", 360.0),
        ("1h2m3s", 3723.0),
        ("1h2m5.25s", 3725.25),
        ("59.9s", 59.9),
        ("0s", 0.0),
        ("2m59.56s", 179.56),  # Groq
        ("250us", 0.00025),
        ("3µs", 3e-6),
        ("7ns", 7e-9),
        (".5s", 0.5),
        ("20", 20.0),  # a plain number of seconds
        ("0.25", 0.25),
        (" 1s ", 1.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [None, "", " ", "-1s", "1x", "s", "1s2", "1 s", "abc", "1h-2m", "inf", "nan", "1e999s", "ms"],
)
def test_go_duration_garbage_is_none(text: str | None) -> None:
    assert parse_go_duration(text) is None


OPENAI = {
    "x-ratelimit-limit-requests": "600",
    "x-ratelimit-remaining-requests": "599",
    "x-ratelimit-reset-requests": "100ms",
    "x-ratelimit-limit-tokens": "100000",
    "x-ratelimit-remaining-tokens": "99900",
    "x-ratelimit-reset-tokens": "6m0s",
}


def test_openai_headers() -> None:
    assert parse_rate_limits(OPENAI) == RateLimits(
        requests=BudgetReading(limit=600, remaining=599, reset=0.1),
        tokens=BudgetReading(limit=100_000, remaining=99_900, reset=360.0),
    )


def test_openai_headers_any_case_and_one_budget_only() -> None:
    limits = parse_rate_limits(
        {"X-RateLimit-Limit-Requests": "60", "X-RateLimit-Remaining-Requests": "0"}
    )
    assert limits == RateLimits(requests=BudgetReading(limit=60, remaining=0, reset=None))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # A limit that does not parse: the remaining still counts.
        (
            {"x-ratelimit-limit-requests": "lots", "x-ratelimit-remaining-requests": "3"},
            RateLimits(requests=BudgetReading(limit=None, remaining=3)),
        ),
        # A reset that does not parse is unknown; the rest stands.
        (
            {
                "x-ratelimit-limit-tokens": "1000",
                "x-ratelimit-remaining-tokens": "10",
                "x-ratelimit-reset-tokens": "soon",
            },
            RateLimits(tokens=BudgetReading(limit=1000, remaining=10, reset=None)),
        ),
        # Negative or non-finite numbers say nothing.
        ({"x-ratelimit-remaining-requests": "-5"}, None),
        ({"x-ratelimit-limit-requests": "nan", "x-ratelimit-remaining-requests": "inf"}, None),
        # A reset alone is no budget.
        ({"x-ratelimit-reset-requests": "1s"}, None),
        ({}, None),
        ({"content-type": "application/json"}, None),
    ],
)
def test_openai_garbage_is_ignored(headers: dict[str, str], expected: RateLimits | None) -> None:
    assert parse_rate_limits(headers) == expected


def test_ietf_structured_fields() -> None:
    """draft-ietf-httpapi-ratelimit-headers-09 and later (what our simulator sends)."""
    limits = parse_rate_limits(
        {
            "RateLimit-Policy": '"rpm";q=600;w=60, "tpm";q=1000;qu="tokens";w=60',
            "RateLimit": '"rpm";r=599;t=1, "tpm";r=900;t=6',
        }
    )
    assert limits == RateLimits(
        requests=BudgetReading(limit=600, remaining=599, reset=1.0, window=60.0),
        tokens=BudgetReading(limit=1000, remaining=900, reset=6.0, window=60.0),
    )


def test_ietf_structured_several_policies_of_one_unit_take_the_tightest() -> None:
    limits = parse_rate_limits(
        {
            "RateLimit-Policy": '"burst";q=100;w=1, "daily";q=1000;w=86400',
            "RateLimit": '"burst";r=50;t=1, "daily";r=5;t=3600',
        }
    )
    assert limits == RateLimits(
        requests=BudgetReading(limit=1000, remaining=5, reset=3600.0, window=86400.0)
    )


def test_ietf_structured_ignores_other_units() -> None:
    limits = parse_rate_limits(
        {
            "RateLimit-Policy": '"bytes";q=1000;qu="content-bytes";w=60, "rq";q=10;w=1',
            "RateLimit": '"bytes";r=100;t=3, "rq";r=9;t=1',
        }
    )
    assert limits == RateLimits(requests=BudgetReading(limit=10, remaining=9, reset=1.0, window=1))


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit-Policy": '"rpm";q=10;w=1e300', "RateLimit": '"rpm";r=0;t=1'},
        {"RateLimit-Limit": "10, 10;w=1e300", "RateLimit-Remaining": "0"},
        {"RateLimit-Policy": "10;w=1e300", "RateLimit": "limit=10, remaining=0, reset=1"},
    ],
)
def test_a_window_beyond_a_day_is_read_as_a_day(headers: dict[str, str]) -> None:
    """Hostile-server check: ``w=1e300`` with nothing left held every request for ever."""
    limits = parse_rate_limits(headers)
    assert limits is not None
    assert limits.requests is not None
    assert limits.requests.window == MAX_WINDOW == 86400.0


def test_ietf_dictionary_draft_7() -> None:
    limits = parse_rate_limits({"RateLimit": "limit=100, remaining=50, reset=5"})
    assert limits == RateLimits(requests=BudgetReading(limit=100, remaining=50, reset=5.0))


def test_ietf_separate_fields_with_a_policy_window() -> None:
    limits = parse_rate_limits(
        {"RateLimit-Limit": "100, 100;w=3600", "RateLimit-Remaining": "5", "RateLimit-Reset": "30"}
    )
    assert limits == RateLimits(
        requests=BudgetReading(limit=100, remaining=5, reset=30.0, window=3600.0)
    )


def test_openai_headers_win_over_ietf_ones() -> None:
    limits = parse_rate_limits({**OPENAI, "RateLimit": "limit=1, remaining=0, reset=5"})
    assert limits is not None
    assert limits.requests == BudgetReading(limit=600, remaining=599, reset=0.1)


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit": "garbage"},
        {"RateLimit": '"rpm";r=abc;t=1'},
        {"RateLimit": ";;;,,,==="},
        {"RateLimit": '"unterminated;r=5'},
        {"RateLimit-Limit": "many", "RateLimit-Remaining": ""},
        {"RateLimit-Policy": '"rpm";q=600;w=60'},  # a policy without a reading
    ],
)
def test_ietf_garbage_is_ignored(headers: dict[str, str]) -> None:
    assert parse_rate_limits(headers) is None


@given(
    st.dictionaries(
        st.sampled_from(
            sorted(
                {
                    *OPENAI,
                    "ratelimit",
                    "ratelimit-policy",
                    "ratelimit-limit",
                    "ratelimit-remaining",
                    "ratelimit-reset",
                }
            )
        ),
        st.text(max_size=40),
    )
)
def test_any_header_text_parses_to_finite_non_negative_numbers(headers: dict[str, str]) -> None:
    limits = parse_rate_limits(headers)
    if limits is None:
        return
    for reading in (limits.requests, limits.tokens):
        if reading is None:
            continue
        for value in (reading.limit, reading.remaining, reading.reset, reading.window):
            assert value is None or (math.isfinite(value) and value >= 0)


@given(st.text(max_size=80))
def test_any_duration_text_is_a_finite_non_negative_number_or_none(text: str) -> None:
    seconds = parse_go_duration(text)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


# -- Retry-After (models/_errors.py) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({"retry-after": "45"}, 45.0),
        ({"retry-after": "120"}, 60.0),  # capped at MAX_RETRY_AFTER (hostile-server check)
        ({"Retry-After": "1000000000"}, 60.0),
        ({"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"}, 60.0),
        ({"retry-after-ms": "1e15"}, 60.0),
        ({"retry-after-ms": "-100", "Retry-After": "2"}, 2.0),  # a negative ms is garbage
        ({"Retry-After": "5, 7"}, 5.0),  # a repeated header, joined: the first
        ({"Retry-After": "Sun, 06 Dec 2026 18:30:09 GMT, x"}, 9.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "-3"}, 0.0),  # "come back now"
        ({"Retry-After": "Sun, 06 Dec 2026 18:30:07 GMT"}, 7.0),
        ({"Retry-After": "Sun, 06 Dec 2026 18:29:00 GMT"}, 0.0),  # in the past: now
        ({"retry-after-ms": "250", "Retry-After": "1"}, 0.25),  # the precise one wins
        ({"retry-after-ms": "oops", "Retry-After": "2"}, 2.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "Thu, 99 Foo 20xx"}, None),
        ({}, None),
    ],
)
def test_retry_after_samples(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_from_headers(headers, now=NOW) == seconds


@given(st.text(max_size=60))
def test_any_retry_after_text_is_a_finite_non_negative_number_or_none(text: str) -> None:
    seconds = parse_retry_after(text, now=NOW)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
