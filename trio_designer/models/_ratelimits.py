"""Rate-limit headers: what an endpoint says about its request and token budgets.

Pure functions from response headers to :class:`~trio_designer._core._budget.RateLimits`; the
budget (``_core/_budget.py``) decides what they mean. Three dialects are read:

* **OpenAI** (and the many servers that copy it): ``x-ratelimit-limit-requests``,
  ``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and the same for
  ``-tokens``; resets are Go durations (``12ms``, ``1.5s``, ``6m0s``, ``1h2m3s``), budgets are
  per minute.
* **The IETF draft** (draft-ietf-httpapi-ratelimit-headers, versions 9 and later): structured
  fields ``RateLimit-Policy: "rpm";q=600;w=60, "tpm";q=1000;qu="tokens";w=60`` and
  ``RateLimit: "rpm";r=599;t=1, "tpm";r=900;t=6``; ``qu`` says the unit (``requests`` when
  absent; ``tokens`` is read as the token budget; other units such as ``content-bytes`` are
  ignored).
* **Older IETF drafts**: ``RateLimit-Limit`` / ``RateLimit-Remaining`` / ``RateLimit-Reset``
  (seconds), or one ``RateLimit: limit=100, remaining=50, reset=5``, both read as the request
  budget (``RateLimit-Limit: 100, 100;w=60`` gives the window).

``Retry-After`` (seconds or an HTTP date) and ``retry-after-ms`` stay in
:func:`~trio_designer.models._errors.retry_after_from_headers`.

Garbage is ignored, never raised: a value that does not parse leaves its field unknown (a
header that lies cannot stop a run; one that says nothing usable is as good as absent). A
window longer than :data:`MAX_WINDOW` (a day) is read as a day.
Invariants (``tests/test_ratelimits.py``, including a property test over arbitrary text): every
number returned is finite and at least 0; parsing never raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from .._core._budget import DEFAULT_WINDOW, BudgetReading, RateLimits

__all__ = ["MAX_WINDOW", "parse_go_duration", "parse_rate_limits"]

_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|μs|ns)")
_UNIT_SECONDS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ns": 1e-9,
}


def parse_go_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration (``"12ms"``, ``"1.5s"``, ``"6m0s"``, ``"1h2m3.5s"``), or
    a plain number of seconds (``"20"``, ``"0.5"``); ``None`` for anything else.

    Examples: ``"6m0s"`` -> 360.0, ``"1h2m3s"`` -> 3723.0, ``"250ms"`` -> 0.25, ``"-1s"`` ->
    ``None`` (a wait cannot be negative), ``"soon"`` -> ``None``.
    """
    if text is None:
        return None
    value = text.strip()
    if not value or len(value) > 64:
        return None
    number = _number(value)
    if number is not None:
        return number
    position, total = 0, 0.0
    for match in _GO_PART.finditer(value):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(value) or position == 0:
        return None
    return total if math.isfinite(total) else None


def parse_rate_limits(headers: Mapping[str, str]) -> RateLimits | None:
    """The budgets ``headers`` describe, in any of the three dialects; ``None`` if none.

    OpenAI's headers win over the IETF ones when both are present. Lookups are
    case-insensitive (plain dicts too).
    """
    for name in headers:
        if "ratelimit" in str(name).lower():
            break
    else:  # every header read below has "ratelimit" in its name: an answer without any
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    openai = _openai(lowered)
    if openai is not None:
        return openai
    return _ietf(lowered)


# -- OpenAI ---------------------------------------------------------------------------------------


def _openai(headers: Mapping[str, str]) -> RateLimits | None:
    requests = _openai_reading(headers, "requests")
    tokens = _openai_reading(headers, "tokens")
    if requests is None and tokens is None:
        return None
    return RateLimits(requests=requests, tokens=tokens)


def _openai_reading(headers: Mapping[str, str], kind: str) -> BudgetReading | None:
    limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
    remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
    reset = parse_go_duration(headers.get(f"x-ratelimit-reset-{kind}"))
    if limit is None and remaining is None:
        return None
    return BudgetReading(limit=limit or None, remaining=remaining, reset=reset)


# -- IETF -----------------------------------------------------------------------------------------


def _ietf(headers: Mapping[str, str]) -> RateLimits | None:
    current = headers.get("ratelimit")
    if current is not None and "=" in current and not _looks_structured(current):
        return _ietf_dictionary(current, headers.get("ratelimit-policy"))
    if current is not None:
        structured = _ietf_structured(current, headers.get("ratelimit-policy"))
        if structured is not None:
            return structured
    return _ietf_fields(headers)


def _looks_structured(value: str) -> bool:
    """Whether a ``RateLimit`` value is the draft-9+ list (``"name";r=..``) rather than the
    older dictionary (``limit=.., remaining=..``)."""
    first = value.split(",", 1)[0].strip()
    return ";" in first or first.startswith('"')


def _ietf_dictionary(value: str, policy: str | None) -> RateLimits | None:
    """``RateLimit: limit=100, remaining=50, reset=5`` (draft 7 and thereabouts)."""
    fields: dict[str, str] = {}
    for part in value.split(","):
        key, _, raw = part.partition("=")
        fields[key.strip().lower()] = raw.strip()
    limit = _number(fields.get("limit"))
    remaining = _number(fields.get("remaining"))
    if limit is None and remaining is None:
        return None
    window = _policy_window(policy) or DEFAULT_WINDOW
    reading = BudgetReading(
        limit=limit or None,
        remaining=remaining,
        reset=_number(fields.get("reset")),
        window=window,
    )
    return RateLimits(requests=reading)


def _ietf_fields(headers: Mapping[str, str]) -> RateLimits | None:
    """``RateLimit-Limit: 100[, 100;w=60]``, ``RateLimit-Remaining``, ``RateLimit-Reset``."""
    raw_limit = headers.get("ratelimit-limit")
    limit = _number(raw_limit.split(",", 1)[0]) if raw_limit is not None else None
    remaining = _number(headers.get("ratelimit-remaining"))
    if limit is None and remaining is None:
        return None
    window = _policy_window(raw_limit) or _policy_window(headers.get("ratelimit-policy"))
    reading = BudgetReading(
        limit=limit or None,
        remaining=remaining,
        reset=_number(headers.get("ratelimit-reset")),
        window=window or DEFAULT_WINDOW,
    )
    return RateLimits(requests=reading)


def _policy_window(value: str | None) -> float | None:
    """The first ``w=`` parameter of a policy list such as ``100, 100;w=60``."""
    if value is None:
        return None
    for member in _members(value):
        window = _window(member[1].get("w"))
        if window:
            return window
    return None


MAX_WINDOW = 86400.0
"""The longest budget window believed, in seconds: a day (the longest policy of the IETF
draft's examples, a daily quota). A header saying ``w=1e300`` with nothing left would hold every
request until the window refills: forever, in effect (a run against such a server hung). A
longer window is read as a day's: the run then ends, at the pace the server claims."""


def _window(text: str | None) -> float | None:
    """A window in seconds (``w=``), at most :data:`MAX_WINDOW`; ``None`` for 0 or garbage."""
    window = _number(text)
    return min(window, MAX_WINDOW) if window else None


def _ietf_structured(current: str, policy: str | None) -> RateLimits | None:
    """``RateLimit-Policy: "rpm";q=600;w=60, "tpm";q=1000;qu="tokens";w=60`` and
    ``RateLimit: "rpm";r=599;t=1, "tpm";r=900;t=6`` (draft 9 and later)."""
    policies = {name: params for name, params in _members(policy or "")}
    readings: dict[str, BudgetReading] = {}
    for name, params in _members(current):
        remaining = _number(params.get("r"))
        if remaining is None:
            continue
        described = policies.get(name, {})
        unit = (described.get("qu") or params.get("qu") or "requests").lower()
        if unit not in ("requests", "tokens"):
            continue
        reading = BudgetReading(
            limit=_number(described.get("q")) or None,
            remaining=remaining,
            reset=_number(params.get("t")),
            window=_window(described.get("w")) or DEFAULT_WINDOW,
        )
        earlier = readings.get(unit)
        if earlier is None or (earlier.remaining or 0.0) > remaining:
            readings[unit] = reading  # several policies of one unit: the tightest now
    if not readings:
        return None
    return RateLimits(requests=readings.get("requests"), tokens=readings.get("tokens"))


def _members(value: str) -> list[tuple[str, dict[str, str]]]:
    """A structured-field list, leniently: ``name;k=v;k="v", ...`` -> [(name, params)]. Quotes
    are stripped; a member without parameters keeps an empty dict."""
    members = []
    for member in _split_outside_quotes(value, ","):
        parts = _split_outside_quotes(member, ";")
        if not parts:
            continue
        name = parts[0].strip().strip('"')
        params: dict[str, str] = {}
        for param in parts[1:]:
            key, _, raw = param.partition("=")
            params[key.strip().lower()] = raw.strip().strip('"')
        members.append((name, params))
    return members


def _split_outside_quotes(value: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _number(text: str | None) -> float | None:
    """A finite number >= 0, or ``None``."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
