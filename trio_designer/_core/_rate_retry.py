"""What a request turned away with a 429 does: wait out its own delay and go again, no trio.

The adaptive limit (:mod:`trio_designer._core._aimd`) decides what a 429 means for the
*endpoint*: load cuts the limit, noise changes nothing, and only a spent budget pauses it. The
rejected *request* is another matter: it gives its slot back, waits, and asks for a slot again
at the same priority, without going back to the engine (whose salvage rounds would re-offer it
only once its whole row group stalls, leaving slots idle meanwhile). :class:`RateLimitRetry` is
that request's rule: how long it waits, and when it gives up and lets the engine see the 429.

Design note
-----------
**How long.** The server's own word first: ``Retry-After`` (or ``retry-after-ms``), which a
hosted API sets for the rejected request. Without one, a short *full-jitter* backoff (the AWS
architecture blog's "Exponential Backoff And Jitter"): a uniform draw in ``[0, min(cap, base ×
2^(attempt − 1))]`` — 0.25 s, 0.5 s, 1 s, then 2 s at most. Short, because this wait is not
what protects the endpoint (the limit is: load cuts it, and a waiting request takes a slot
again only when the limit has room), and because a sporadic 429 costs its request the whole
wait: in simulation (500 requests at 16, 30 % sporadic 429s, ``tests/test_aimd_sim.py``) a
backoff starting at 1 s and doubling to 8 s made runs 2.6× slower than without 429s, this one
1.2×. Jittered, so that the survivors of a burst do not come back in lockstep.

**When to give up.** After ``max_attempts`` 429s in a row for one request, or once its waits
add up to more than ``max_wait`` seconds: then the 429 goes to the engine, which defers the
cell as before (its salvage rounds, its retry budget). At 30 % sporadic 429s, 8 attempts in a
row happen to one request in 15,000; a server that keeps refusing one request for a minute has
something to say that the engine should hear.

Invariants (``tests/test_rate_retry.py``): a delay is finite, at least 0 and at most
``max(retry_after, cap)``; a request is retried only while ``attempt < max_attempts`` and the
waits so far plus the next stay within ``max_wait``.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["DEFAULT_RATE_LIMIT_RETRY", "RateLimitRetry"]


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"RateLimitRetry.{attribute.name} must be a finite number > 0, got {value}"
        )


@attrs.frozen(kw_only=True)
class RateLimitRetry:
    """How one request rejected with a 429 is retried in place.

    Attributes:
      max_attempts: 429s in a row one request may take before the engine sees the last one
        (1 sends every 429 to the engine at once).
      max_wait: seconds of waiting, all retries of one request together, after which the next
        429 goes to the engine.
      base: the first backoff's upper bound, in seconds, when the 429 carried no usable
        ``Retry-After``; it doubles with every attempt.
      cap: the largest backoff upper bound, in seconds.

    Raises:
      ValueError: if a value is out of range.
    """

    max_attempts: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    max_wait: float = attrs.field(default=60.0, validator=_positive)
    base: float = attrs.field(default=0.25, validator=_positive)
    cap: float = attrs.field(default=2.0, validator=_positive)

    def delay(self, retry_after: float | None, attempt: int, uniform: float) -> float:
        """Seconds to wait before attempt ``attempt + 1`` of a request whose attempt
        ``attempt`` (1, 2, ...) was answered 429.

        Args:
          retry_after: the server's ``Retry-After`` in seconds, or ``None``; a negative, zero
            or non-finite value counts as none.
          attempt: how many 429s this request has taken so far, at least 1.
          uniform: a number drawn uniformly from ``[0, 1)`` (the caller's seeded RNG), for
            the jitter.
        """
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            return retry_after
        bound = min(self.cap, self.base * 2.0 ** min(max(attempt, 1) - 1, 60))
        return bound * min(max(uniform, 0.0), 1.0)

    def retries(self, attempt: int, waited: float, delay: float) -> bool:
        """Whether a request that took its ``attempt``-th 429 in a row, after waiting
        ``waited`` seconds in all, goes again after ``delay`` more (rather than raising)."""
        return attempt < self.max_attempts and waited + delay <= self.max_wait


DEFAULT_RATE_LIMIT_RETRY = RateLimitRetry()
"""The rule used when none is given."""
