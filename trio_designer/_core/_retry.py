"""Retry decisions, pure arithmetic: no trio, no httpx, no sleeping.

Two levels retry, for different reasons, and each has one frozen policy value here:

* :class:`RetryPolicy`: **cell retries**, decided by the scheduler. A generator raised a
  retryable error (429, timeout, 5xx, connection error, a user's
  ``RetryableGenerationError``): the task is deferred and re-run in a salvage round after a
  pause, until its budget is spent and its row is dropped. Built once per run from
  ``RunConfig.salvage_max_rounds`` and read by both engines (the completion tracker for the
  async engine, the column passes of the sync one). This is the only place that reads an
  exception's retryability (:attr:`GenerationError.retryable
  <trio_designer.GenerationError.retryable>`).
* :class:`BackoffPolicy`: **transport retries**, inside one model request. The model client
  retries 502/503/504 and broken connections a few times before it reports a failure, and
  this decides how long to wait between those attempts.

BackoffPolicy's mental model: capped exponential backoff with proportional jitter. The n-th
wait is ``base * factor ** (n - 1)``, never more than ``cap``, then spread by up to
``± jitter`` of itself so that many clients that failed together do not retry together::

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

from .._exceptions import GenerationError, ModelRateLimitedError

__all__ = [
    "DEFAULT_RATE_LIMIT_PAUSE",
    "RATE_LIMITED_RETRIES_FLOOR",
    "SALVAGE_BACKOFF",
    "BackoffPolicy",
    "RetryPolicy",
]


def _finite(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"'{attribute.name}' must be a finite number of seconds: {value!r}")


#: Pause before a salvage round re-runs an ordinary retryable failure, by attempt (seconds);
#: the last value repeats.
SALVAGE_BACKOFF: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
#: Pause before re-running a cell after a 429 that carried no ``Retry-After`` (seconds). The
#: model limiters' default cooldown has the same value (``_core._aimd.LimiterPolicy.cooldown``).
DEFAULT_RATE_LIMIT_PAUSE = 2.0
#: A cell deferred by 429s may be retried at least this many times, whatever
#: ``salvage_max_rounds`` says: a 429 means "later", not "never" (reference bug #575:
#: sustained 429s must not turn into a zero-record run).
RATE_LIMITED_RETRIES_FLOOR = 20


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often, and after how long, the scheduler re-runs a cell that failed retryably.

    One value per run, built by :meth:`from_salvage_max_rounds`; both engines read it and
    nothing else decides a cell retry.

    Attributes:
      max_retries: how many times an ordinary retryable failure (timeout, 5xx, connection
        error) may be deferred before its row is dropped (``RunConfig.salvage_max_rounds``).
      max_rate_limited_retries: the same budget for rate-limited (429) failures.
      backoff: the pause before retry number ``n`` (1-based) of an ordinary failure is
        ``backoff[n - 1]``; the last value repeats.
      default_rate_limit_pause: the pause after a 429 without ``Retry-After``.

    Example::

        >>> policy = RetryPolicy.from_salvage_max_rounds(2)
        >>> policy.max_retries, policy.max_rate_limited_retries
        (2, 20)
        >>> [policy.delay(n) for n in (1, 2, 7, 8)]
        [0.5, 1.0, 16.0, 16.0]
    """

    max_retries: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    max_rate_limited_retries: int = attrs.field(
        default=RATE_LIMITED_RETRIES_FLOOR, validator=attrs.validators.ge(0)
    )
    backoff: tuple[float, ...] = attrs.field(
        default=SALVAGE_BACKOFF, validator=attrs.validators.min_len(1)
    )
    default_rate_limit_pause: float = attrs.field(
        default=DEFAULT_RATE_LIMIT_PAUSE, validator=[_finite, attrs.validators.ge(0.0)]
    )

    @classmethod
    def from_salvage_max_rounds(cls, salvage_max_rounds: int) -> RetryPolicy:
        """The run's policy from ``RunConfig.salvage_max_rounds``: that many retries for
        ordinary failures, at least :data:`RATE_LIMITED_RETRIES_FLOOR` for 429s."""
        return cls(
            max_retries=salvage_max_rounds,
            max_rate_limited_retries=max(salvage_max_rounds, RATE_LIMITED_RETRIES_FLOOR),
        )

    @staticmethod
    def is_retryable(exc: BaseException) -> bool:
        """Whether ``exc`` defers its cell (``GenerationError.retryable``) rather than dropping
        its row. Any exception that is not a :class:`GenerationError` (a user function's
        ``KeyError``) is not retryable."""
        return isinstance(exc, GenerationError) and exc.retryable

    @staticmethod
    def is_rate_limited(exc: BaseException) -> bool:
        """Whether ``exc`` is a 429 (it then has the larger budget)."""
        return isinstance(exc, ModelRateLimitedError)

    def budget(self, *, rate_limited: bool) -> int:
        """How many times a cell may be deferred; deferral number ``budget + 1`` drops its
        row."""
        return self.max_rate_limited_retries if rate_limited else self.max_retries

    def delay(self, attempt: int, exc: BaseException | None = None) -> float:
        """The pause before a salvage round may re-run a cell whose attempt number
        ``attempt`` (1-based) failed with ``exc``.

        A 429 waits its ``Retry-After`` (or :attr:`default_rate_limit_pause`); anything else
        waits ``backoff[attempt - 1]``, the last value repeating.
        """
        if isinstance(exc, ModelRateLimitedError):
            if exc.retry_after is not None:
                return exc.retry_after
            return self.default_rate_limit_pause
        return self.backoff[min(attempt, len(self.backoff)) - 1]


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
