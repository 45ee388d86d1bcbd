"""Backoff timing for transport-level retries: pure arithmetic, no trio, no httpx.

The model client retries a few transient failures (502/503/504 and broken connections) before it
reports them; this module decides *how long* to wait between those attempts. It does not sleep and
does not decide *whether* to retry: the caller owns both, so the arithmetic can be tested without
a clock.

Mental model: capped exponential backoff with proportional jitter. The n-th wait is
``base * factor ** (n - 1)``, never more than ``cap``, then spread by up to ``± jitter`` of itself
so that many clients that failed together do not retry together::

    >>> import random
    >>> policy = BackoffPolicy(jitter=0.0)
    >>> [policy.delay(n, random.Random(0)) for n in (1, 2, 3, 4)]
    [0.5, 1.0, 2.0, 4.0]

Prior art: the reference engine retries 502/503/504 with ``backoff_factor=2`` and ``jitter=0.2``
(httpx-retries), and later without jitter (2 s, 4 s, 8 s). httpx-retries sleeps with
``asyncio.sleep`` and fails under trio, which is why the loop lives in our client and only the
timing lives here.
"""

from __future__ import annotations

import math
import random

import attrs

__all__ = ["BackoffPolicy"]


def _finite(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"'{attribute.name}' must be a finite number of seconds: {value!r}")


@attrs.frozen(kw_only=True)
class BackoffPolicy:
    """How many times to try a request, and how long to wait between tries.

    Attributes:
      base: the wait after the first failed attempt, in seconds (before jitter).
      factor: each further wait is this many times the previous one (``1.0`` = constant waits).
      cap: no wait is ever longer than this many seconds, jitter included.
      jitter: the fraction by which a wait is randomly stretched or shrunk; ``0.2`` spreads a
        1 s wait uniformly over [0.8 s, 1.2 s]. ``0.0`` makes waits deterministic.
      max_attempts: attempts in total, the first one included; ``1`` disables retries, the
        default ``3`` means one try and at most two retries.

    The policy is a frozen value, safe to share between clients and tasks; randomness comes
    from the ``random.Random`` passed to :meth:`delay`, never from global state.
    """

    base: float = attrs.field(default=0.5, validator=[_finite, attrs.validators.ge(0.0)])
    factor: float = attrs.field(default=2.0, validator=[_finite, attrs.validators.ge(1.0)])
    cap: float = attrs.field(default=30.0, validator=[_finite, attrs.validators.ge(0.0)])
    jitter: float = attrs.field(
        default=0.2, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    max_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait, in seconds, after failed attempt number ``attempt`` and before the next.

        ``attempt`` counts from 1: ``delay(1, rng)`` is the pause between the first try and the
        first retry. The result is ``min(cap, base * factor ** (attempt - 1))``, multiplied by
        a factor drawn uniformly from ``[1 - jitter, 1 + jitter]`` and clamped to
        ``[0, cap]`` again (so near the cap, jitter only shortens waits). Exactly one number is
        drawn from ``rng`` per call, so a seeded ``rng`` gives a reproducible sequence.

        The caller decides whether another attempt is allowed (``attempt < max_attempts``);
        this method answers for any ``attempt >= 1`` and never overflows: very large attempt
        numbers simply give ``cap``.

        Args:
          attempt: the number of the attempt that just failed, 1-based.
          rng: the source of jitter.

        Returns:
          The wait in seconds, ``0 <= wait <= cap``.

        Raises:
          ValueError: if ``attempt < 1``.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1 (attempts count from 1), got {attempt}")
        spread = rng.uniform(-self.jitter, self.jitter)
        return min(self.cap, max(0.0, self._undithered(attempt) * (1.0 + spread)))

    def _undithered(self, attempt: int) -> float:
        try:
            grown = self.base * self.factor ** (attempt - 1)
        except OverflowError:  # factor ** huge: the cap applies anyway
            return self.cap
        return min(self.cap, grown)
