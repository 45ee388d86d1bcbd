"""Rate-limit budgets (RPM/TPM) and the headers that advertise them. Pure: time is an argument.

A budget is a **token bucket**: it holds at most ``limit`` units and refills continuously at
``limit`` units per :data:`WINDOW_SECONDS`; a request is admitted when the bucket holds what it
costs, and the cost is taken at once. This is how OpenAI describes its limits — the reset header
is "the time until the rate limit resets to its initial state", and its documented example (60
RPM, 59 remaining, reset ``1s``) is a bucket refilling one request per second. Consequences a
client can rely on:

* in any interval of ``d`` seconds at most ``limit + limit × d / 60`` units are admitted (a full
  bucket allows one burst of ``limit``, then the steady rate);
* a client that spends at most ``limit`` per 60 s *at an even pace* is never refused;
* ``remaining`` is the whole units in the bucket now; ``reset`` is the time until it is full
  again; a refused request is told exactly how long until the bucket holds its cost.

Header formats (one function each, all returning ``(name, value)`` byte pairs):

* OpenAI: ``x-ratelimit-limit-requests: 600``, ``x-ratelimit-remaining-requests: 599``,
  ``x-ratelimit-reset-requests: 100ms`` and the ``-tokens`` triple; durations in Go's
  ``time.Duration`` style (``12ms``, ``1.5s``, ``6m0s``, ``1h0m0s``), rounded *up* to the
  millisecond so a client that waits them out is never early;
* IETF (draft-ietf-httpapi-ratelimit-headers-11): ``RateLimit-Policy: "rpm";q=600;w=60,
  "tpm";q=100000;qu="tokens";w=60`` and ``RateLimit: "rpm";r=599;t=1, "tpm";r=99000;t=1``,
  where ``t`` is the whole seconds (rounded up) until the quota is full again. (The draft
  registers the units ``requests``, ``content-bytes`` and ``concurrent-requests``; ``tokens`` is
  ours.)
* ``Retry-After``: whole seconds rounded up (HTTP's ``delay-seconds``) plus OpenAI's
  ``retry-after-ms``; or an HTTP date (and no ``retry-after-ms``); or nothing.
"""

from __future__ import annotations

import math
from email.utils import formatdate
from typing import final

WINDOW_SECONDS = 60.0
"""A budget of ``limit`` refills at ``limit`` units per this many seconds."""

EPSILON = 1e-9
"""Slack for float round-off: a client that waits exactly the advertised time is admitted."""

Header = tuple[bytes, bytes]


@final
class TokenBucket:
    """A budget of ``limit`` units per :data:`WINDOW_SECONDS`, refilled continuously.

    Invariant: ``0 <= level <= limit`` after every call (``take`` is only called with what
    :meth:`wait_for` said fits), and a request that waits what :meth:`wait_for` said is admitted
    (``test_hosted_rpm_budget_refills_one_request_every_60_over_rpm_seconds``). Starts full.
    """

    def __init__(self, limit: int, now: float) -> None:
        self.limit = limit
        self.rate = limit / WINDOW_SECONDS
        self._level = float(limit)
        self._mark = now

    def level(self, now: float) -> float:
        """Units in the bucket at ``now`` (refilling up to that moment)."""
        if now > self._mark:
            self._level = min(float(self.limit), self._level + (now - self._mark) * self.rate)
            self._mark = now
        return self._level

    def remaining(self, now: float) -> int:
        """Whole units available now (what the ``remaining`` headers say)."""
        return max(0, math.floor(self.level(now) + EPSILON))

    def wait_for(self, amount: int, now: float) -> float:
        """Seconds until the bucket holds ``amount`` (0 if it does now; inf if never)."""
        if amount > self.limit:
            return math.inf
        missing = amount - self.level(now)
        return 0.0 if missing <= EPSILON else missing / self.rate

    def take(self, amount: int, now: float) -> None:
        """Spend ``amount`` units now (the caller checked :meth:`wait_for` first)."""
        self._level = max(0.0, self.level(now) - amount)

    def until_full(self, now: float) -> float:
        """Seconds until the bucket is full again (what the ``reset`` headers say)."""
        return (self.limit - self.level(now)) / self.rate


def format_duration(seconds: float) -> str:
    """A duration the way Go's ``time.Duration`` prints it, rounded up to the millisecond.

    ``0`` → ``"0s"``, ``0.0121`` → ``"13ms"``, ``1.5`` → ``"1.5s"``, ``60`` → ``"1m0s"``,
    ``360`` → ``"6m0s"``, ``3725.25`` → ``"1h2m5.25s"``.
    """
    millis = max(0, math.ceil(seconds * 1000 - 1e-6))
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def openai_headers(rpm: TokenBucket | None, tpm: TokenBucket | None, now: float) -> list[Header]:
    """OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` for the budgets set."""
    headers: list[Header] = []
    for bucket, unit in ((rpm, b"requests"), (tpm, b"tokens")):
        if bucket is not None:
            headers += [
                (b"x-ratelimit-limit-" + unit, str(bucket.limit).encode()),
                (b"x-ratelimit-remaining-" + unit, str(bucket.remaining(now)).encode()),
                (b"x-ratelimit-reset-" + unit, format_duration(bucket.until_full(now)).encode()),
            ]
    return headers


def ietf_policy(rpm: TokenBucket | None, tpm: TokenBucket | None) -> bytes:
    """The IETF draft's ``RateLimit-Policy`` value (constant for a model)."""
    window = int(WINDOW_SECONDS)
    items = []
    if rpm is not None:
        items.append(f'"rpm";q={rpm.limit};w={window}')
    if tpm is not None:
        items.append(f'"tpm";q={tpm.limit};qu="tokens";w={window}')
    return ", ".join(items).encode()


def ietf_headers(
    rpm: TokenBucket | None, tpm: TokenBucket | None, policy: bytes, now: float
) -> list[Header]:
    """The IETF draft's ``RateLimit-Policy`` and ``RateLimit`` fields for the budgets set."""
    items = []
    for bucket, name in ((rpm, "rpm"), (tpm, "tpm")):
        if bucket is not None:
            reset = math.ceil(bucket.until_full(now) - 1e-6)
            items.append(f'"{name}";r={bucket.remaining(now)};t={max(0, reset)}')
    return [(b"ratelimit-policy", policy), (b"ratelimit", ", ".join(items).encode())]


def retry_after_headers(style: str, seconds: float, wall_now: float) -> list[Header]:
    """How a 429 says "come back in ``seconds``", in ``style`` (see the module docstring).

    Args:
      style: ``"seconds"``, ``"http-date"`` or ``"none"``.
      seconds: the wait, >= 0 and finite.
      wall_now: ``time.time()``: HTTP dates are wall-clock times even under a virtual clock.
    """
    if style == "none":
        return []
    if style == "http-date":
        when = math.ceil(wall_now + seconds)
        return [(b"retry-after", formatdate(when, usegmt=True).encode())]
    whole = max(0, math.ceil(seconds - 1e-6))
    millis = max(0, math.ceil(seconds * 1000 - 1e-6))
    return [(b"retry-after", str(whole).encode()), (b"retry-after-ms", str(millis).encode())]
