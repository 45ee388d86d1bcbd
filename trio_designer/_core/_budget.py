"""Request and token budgets (RPM / TPM) of one model endpoint: pure bookkeeping, ``now`` given.

A hosted API sells an account a number of requests and of tokens per minute. Above that it
answers 429 whatever our concurrency: those 429s are neither load nor noise, and the way to
draw none is not to send what the budget cannot pay. :class:`EndpointBudget` keeps one
:class:`TokenBucket` per budget and tells the limiter, for the next request and its estimated
tokens, how long to wait (:meth:`EndpointBudget.wait`); admissions are charged
(:meth:`~EndpointBudget.take`), corrected by the usage the answer reports
(:meth:`~EndpointBudget.settle`), refunded when the server refused them
(:meth:`~EndpointBudget.refund`), and reconciled with what the server says in its headers
(:meth:`~EndpointBudget.observe`).

Design note
-----------
**A token bucket**, because that is how OpenAI describes its limits ("the time until the rate
limit resets to its initial state"; 60 RPM, 59 remaining, reset ``1s``: a bucket refilling one
request a second) and how our simulator enforces them: it holds at most ``limit`` units, starts
full and refills at ``limit`` per window (60 s). A request waits until the bucket holds its
cost. A client that only ever spends what its own bucket holds never overdraws a server's
bucket of the same size that started no later.

**Where the numbers come from.** Configured ``rpm`` / ``tpm`` set a bucket from the start. The
headers of every answer (``x-ratelimit-*``, the IETF ``RateLimit`` fields) set one when none is
configured (the first answers teach the limit: a run without configuration may draw 429s in its
first window, none after), and lower a configured one that the server says is smaller.

**The server knows best, downwards.** Each reading of ``remaining`` that is a whole unit below
our own level (another process spends the same account, a run before this one did, our
estimate of tokens was short) brings our level down to it, less what the requests sent after
the one that carried the reading and still unanswered cost (the server may not have seen
them yet); a reading
above ours is ignored, because our own level already counts requests the server has not seen
yet. A ``reset`` that says the budget is full again much sooner than a per-minute bucket
would refill it (``remaining: 5`` of 100, ``reset: 500ms``; ``0s``; an IETF ``t=0``) means the
server's window is shorter, and the bucket takes the window that reset implies (see
:func:`_window_of`). A request refused by the budget (the headers say ``remaining`` cannot
pay it) is refunded: the server charged nothing.

**Tokens before the answer.** A request's tokens are not known until it is answered, but the
budget is charged when it is admitted. The estimate (see :class:`TokenEstimator`): the prompt as
``ceil(characters / 4)`` per message plus 3 per message and 3 for the reply (OpenAI's counting
recipe), scaled by what the answers' ``usage.prompt_tokens`` showed so far; plus ``max_tokens``
when the request sets one (providers reserve it), else a generous guess of the completion (the
decayed mean of the answers' completion tokens plus two standard deviations; 256 before any).
Every answer's usage corrects the charge (too much comes back, too little is taken).

Invariants (``tests/test_budget.py``): a bucket's level is never above its limit; ``wait`` is 0
exactly when the bucket holds the cost (a cost above the limit waits for a full bucket), and
finite; after ``observe`` the level is at most the reading; ``take`` after a ``wait`` of 0 never
leaves the level negative.
"""

from __future__ import annotations

import math

import attrs

__all__ = [
    "DEFAULT_WINDOW",
    "BudgetReading",
    "EndpointBudget",
    "RateLimits",
    "TokenBucket",
    "TokenEstimator",
]

DEFAULT_WINDOW = 60.0
"""The window of a per-minute budget, in seconds."""

# Units a bucket may be short of a cost and still pay it (floating-point rounding).
_ROUNDING = 1e-6

@attrs.frozen(kw_only=True)
class BudgetReading:
    """What an endpoint said about one budget in one answer's headers.

    Attributes:
      limit: the budget per window (requests or tokens), if said.
      remaining: what is left now, if said.
      reset: seconds until the budget is full again (OpenAI) or until ``remaining`` resets
        (IETF), if said.
      window: the budget's window in seconds (60 for OpenAI's per-minute budgets; the IETF
        ``w`` parameter).
    """

    limit: float | None = None
    remaining: float | None = None
    reset: float | None = None
    window: float = DEFAULT_WINDOW


@attrs.frozen(kw_only=True)
class RateLimits:
    """The budgets one answer's headers described (either may be missing)."""

    requests: BudgetReading | None = None
    tokens: BudgetReading | None = None


class TokenBucket:
    """At most ``limit`` units, refilled continuously at ``limit / window`` per second.

    Args:
      limit: the capacity (> 0).
      window: seconds to refill from empty to full (> 0).
      now: the current time; the bucket starts full unless ``level`` says otherwise.
      level: the starting level (clamped to ``[-inf, limit]``).
    """

    def __init__(
        self, limit: float, window: float, now: float, level: float | None = None
    ) -> None:
        if not (limit > 0 and math.isfinite(limit) and window > 0 and math.isfinite(window)):
            raise ValueError(f"a budget needs a finite limit and window > 0, got {limit}/{window}")
        self._limit = float(limit)
        self._window = float(window)
        # Invariant: _level <= _limit; it is the level at time _at.
        self._level = self._limit if level is None else min(float(level), self._limit)
        self._at = now

    @property
    def limit(self) -> float:
        return self._limit

    @property
    def window(self) -> float:
        return self._window

    @property
    def rate(self) -> float:
        """Units refilled per second."""
        return self._limit / self._window

    def level(self, now: float) -> float:
        """Units in the bucket at ``now`` (``now`` earlier than the last event counts as it)."""
        return min(self._limit, self._level + max(0.0, now - self._at) * self.rate)

    def wait(self, cost: float, now: float) -> float:
        """Seconds until the bucket holds ``cost`` (a cost above the limit: until it is full).
        A shortfall below a millionth of a unit is rounding, not a wait: a wait so short that
        ``now + wait == now`` would never be woken up."""
        short = min(cost, self._limit) - self.level(now)
        return 0.0 if short <= _ROUNDING else short / self.rate

    def take(self, cost: float, now: float) -> None:
        """Charge ``cost`` now (the level may go negative: a debt refilled before anything
        else is admitted)."""
        self._level = self.level(now) - cost
        self._at = now

    def give(self, amount: float, now: float) -> None:
        """Credit ``amount`` back (negative: charge more), never above the limit."""
        self._level = min(self._limit, self.level(now) + amount)
        self._at = now

    def lower_to(self, remaining: float, now: float) -> None:
        """The server says ``remaining`` is left (in whole units, rounded down): if that is a
        whole unit less than we think, believe it."""
        if remaining <= self.level(now) - 1.0:
            self._level = remaining
            self._at = now

    def resize(self, limit: float, window: float, now: float) -> None:
        """Take a new limit and window (the level keeps what it has, up to the new limit)."""
        level = self.level(now)
        self._limit, self._window = float(limit), float(window)
        self._level = min(level, self._limit)
        self._at = now


class TokenEstimator:
    """Estimates a request's tokens before it is sent, and learns from the answers' usage.

    ``estimate`` = the prompt (``ceil(chars / 4)`` per message, 3 per message and 3 for the
    reply, times the learnt prompt scale) + ``max_tokens`` if the request sets it, else the
    completion guess (decayed mean + 2 standard deviations of the answers' completion tokens;
    256 before any answer).
    """

    _MEMORY = 50.0  # answers; the decay of the completion statistics and the prompt scale
    _FIRST_GUESS = 256.0

    def __init__(self) -> None:
        self._prompt_scale = 1.0
        self._mean = self._FIRST_GUESS
        self._var = 0.0
        self._answers = 0

    @staticmethod
    def raw_prompt(message_chars: list[int]) -> int:
        """The unscaled prompt estimate of messages with these content lengths."""
        return sum(-(-chars // 4) + 3 for chars in message_chars) + 3

    def prompt(self, message_chars: list[int]) -> int:
        return math.ceil(self.raw_prompt(message_chars) * self._prompt_scale)

    def completion(self, max_tokens: int | None) -> int:
        if max_tokens is not None:
            return max_tokens
        return math.ceil(self._mean + 2.0 * math.sqrt(self._var))

    def estimate(self, message_chars: list[int], max_tokens: int | None) -> int:
        """The tokens a request with these message lengths will probably cost."""
        return self.prompt(message_chars) + self.completion(max_tokens)

    def estimate_raw(self, raw_prompt: int, max_tokens: int | None) -> int:
        """:meth:`estimate` from the messages' :meth:`raw_prompt` (computed once by a caller
        that also :meth:`learn` s from it)."""
        return math.ceil(raw_prompt * self._prompt_scale) + (
            max_tokens if max_tokens is not None else self.completion(None)
        )

    def learn(self, raw_prompt: int, prompt_tokens: int, completion_tokens: int) -> None:
        """An answer reported its usage."""
        alpha = 1.0 / min(self._answers + 1, self._MEMORY)
        self._answers += 1
        if raw_prompt > 0 and prompt_tokens > 0:
            scale = prompt_tokens / raw_prompt
            self._prompt_scale += alpha * (scale - self._prompt_scale)
        delta = completion_tokens - self._mean
        self._mean += alpha * delta
        self._var = (1.0 - alpha) * (self._var + alpha * delta * delta)


class EndpointBudget:
    """The request and token budgets of one endpoint (see the module docstring).

    Args:
      rpm: requests per minute, if configured.
      tpm: tokens per minute, if configured.
      now: the current time (a configured bucket starts full then).
    """

    def __init__(self, *, rpm: int | None = None, tpm: int | None = None, now: float = 0.0) -> None:
        self._configured = (rpm, tpm)
        self.requests = None if rpm is None else TokenBucket(rpm, DEFAULT_WINDOW, now)
        self.tokens = None if tpm is None else TokenBucket(tpm, DEFAULT_WINDOW, now)
        self.estimator = TokenEstimator()
        # The tokens charged to every admitted request not yet answered, refused or given up,
        # by ticket, in admission order: a reading carried by one request's answer is discounted
        # by what the requests sent after it still have outstanding.
        self._outstanding: dict[int, int] = {}
        self._next_ticket = 0

    @property
    def limited(self) -> bool:
        """Whether any budget is known (configured or read from headers)."""
        return self.requests is not None or self.tokens is not None

    def wait(self, tokens: int, now: float) -> float:
        """Seconds until a request of ``tokens`` estimated tokens fits both budgets."""
        wait = 0.0
        if self.requests is not None:
            wait = self.requests.wait(1, now)
        if self.tokens is not None:
            wait = max(wait, self.tokens.wait(tokens, now))
        return wait

    def take(self, tokens: int, now: float) -> int:
        """Charge an admitted request of ``tokens`` estimated tokens; returns its ticket, for
        exactly one of :meth:`settle`, :meth:`refund` or :meth:`release` (and any number of
        :meth:`observe` before it)."""
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None:
            self.tokens.take(tokens, now)
        ticket = self._next_ticket
        self._next_ticket += 1
        self._outstanding[ticket] = tokens
        return ticket

    def settle(self, ticket: int, used: int | None, now: float) -> None:
        """The request was answered; its usage reported ``used`` tokens (``None``: not
        reported, the estimate stands)."""
        charged = self._outstanding.pop(ticket, 0)
        if self.tokens is not None and used is not None:
            self.tokens.give(charged - used, now)

    def refund(self, ticket: int, now: float) -> None:
        """The server refused the request (a budget 429): it cost nothing."""
        charged = self._outstanding.pop(ticket, 0)
        if self.requests is not None:
            self.requests.give(1, now)
        if self.tokens is not None:
            self.tokens.give(charged, now)

    def release(self, ticket: int) -> None:
        """The request ended otherwise (an error, a cancellation): its charge stands."""
        self._outstanding.pop(ticket, None)

    def spent(self, limits: RateLimits | None, tokens: int) -> bool:
        """Whether ``limits`` (a 429's headers) say a budget cannot pay a request of ``tokens``:
        then that 429 was the budget's, not load's or noise."""
        if limits is None:
            return False
        requests, token_reading = limits.requests, limits.tokens
        if requests is not None and requests.remaining is not None and requests.remaining < 1:
            return True
        return (
            token_reading is not None
            and token_reading.remaining is not None
            and token_reading.remaining < tokens
        )

    def observe(self, limits: RateLimits | None, now: float, ticket: int = -1) -> None:
        """Take in what the headers of request ``ticket``'s answer said about the budgets (the
        requests sent after it and still outstanding are discounted from its readings)."""
        if limits is None:
            return
        rpm, tpm = self._configured
        after = [tokens for t, tokens in self._outstanding.items() if t > ticket]
        self.requests = _observed(self.requests, limits.requests, rpm, now, len(after))
        self.tokens = _observed(self.tokens, limits.tokens, tpm, now, sum(after))


def _observed(
    bucket: TokenBucket | None,
    reading: BudgetReading | None,
    configured: int | None,
    now: float,
    charged_after: float,
) -> TokenBucket | None:
    """``bucket`` updated with ``reading`` (created if the reading reveals a limit)."""
    if reading is None:
        return bucket
    limit = reading.limit
    if limit is not None and configured is not None:
        limit = min(limit, configured)
    if bucket is None:
        if limit is None or limit <= 0:
            return None
        level = None if reading.remaining is None else reading.remaining - charged_after
        return TokenBucket(limit, _window_of(reading, limit, None), now, level=level)
    if limit is not None and limit > 0:
        window = _window_of(reading, limit, bucket.window)
        if limit != bucket.limit or window != bucket.window:
            bucket.resize(limit, window, now)
    if reading.remaining is not None:
        bucket.lower_to(reading.remaining - charged_after, now)
    return bucket


_MIN_WINDOW = 1e-3
"""The shortest window a reset may imply (a reset of ``0s``: the budget is full again now)."""


def _window_of(reading: BudgetReading, limit: float, current: float | None) -> float:
    """The window of a budget of ``limit`` that ``reading`` describes.

    The reading's own window (60 s for OpenAI's per-minute budgets, ``w`` for the IETF's),
    unless its ``reset`` says the budget is full again much sooner than that window would
    refill it: the server's window is then shorter (a per-second budget under OpenAI's header
    names, an IETF ``t=0``), and a bucket refilling per minute would pace the run at a fraction
    of what the server allows (issue 11's hostile review: ``remaining: 5, reset: 500ms`` of
    100 ran 20x slower than the server allowed). The window implied is ``reset x limit /
    (limit - remaining - 1)`` — ``remaining`` is whole units, rounded down, so this is the
    longest window the reading allows — and is believed only below half the reading's window
    (rounding of ``reset`` cannot get there). A reading that implies nothing (no ``reset``, or
    ``remaining`` within one of the limit) keeps a window learnt so far (``current``).
    """
    remaining, reset = reading.remaining, reading.reset
    if remaining is not None and reset is not None and limit - remaining - 1.0 > 0:
        implied = reset * limit / (limit - remaining - 1.0)
        if implied < reading.window / 2:
            return max(implied, _MIN_WINDOW)
        return reading.window
    if current is not None and current < reading.window:
        return current
    return reading.window
