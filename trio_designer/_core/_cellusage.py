"""What one cell's model calls cost: a small mutable tally, filled by the model layer.

The engine gives each LLM-bound cell one :class:`CellUsage` (through a context variable of
``models/_cellcalls.py``); every answered request of that cell adds to it. The sink turns the
tallies of a row group into its provenance sidecar (``_sink/_provenance.py``). Pure data: no
trio, no clock (the caller passes durations).
"""

from __future__ import annotations

__all__ = ["CellUsage", "request_cost"]


class CellUsage:
    """The model calls of one cell, summed over its requests and attempts.

    Attributes:
      requests: answered requests (answers the response cache served included).
      failed_requests: requests that raised (timeouts, 5xx, every 429, also those retried in
        place), so ``requests + failed_requests`` is what reached (or tried to reach) the
        endpoint plus the cache hits.
      input_tokens, output_tokens, reasoning_tokens, cached_input_tokens: as the answers
        reported them (``cached_input_tokens``: prompt tokens the provider served from its
        prompt cache, when it says so).
      latency: seconds spent in model calls (waiting for a slot included).
      cost: what the answers cost at the configured prices; ``None`` when no price is known
        for a model the cell called.
      answers_cached: answers served by the response cache (they cost nothing).
      cached_answer_tokens: input + output tokens of those answers (not paid for).
      alias, model, finish_reason: of the last answer.
    """

    __slots__ = (
        "alias",
        "answers_cached",
        "cached_answer_tokens",
        "cached_input_tokens",
        "cost",
        "failed_requests",
        "finish_reason",
        "input_tokens",
        "latency",
        "model",
        "output_tokens",
        "reasoning_tokens",
        "requests",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.failed_requests = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.reasoning_tokens = 0
        self.cached_input_tokens = 0
        self.latency = 0.0
        self.cost: float | None = 0.0
        self.answers_cached = 0
        self.cached_answer_tokens = 0
        self.alias: str | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None

    @property
    def all_cached(self) -> bool:
        """Every answer came from the response cache (and there was at least one)."""
        return self.requests > 0 and self.answers_cached == self.requests

    def add_answer(
        self,
        *,
        alias: str,
        model: str,
        finish_reason: str | None,
        input_tokens: int,
        output_tokens: int,
        reasoning_tokens: int,
        cached_input_tokens: int,
        latency: float,
        cost: float | None,
        cached: bool,
    ) -> None:
        """Count one answered request."""
        self.requests += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.reasoning_tokens += reasoning_tokens
        self.cached_input_tokens += cached_input_tokens
        self.latency += latency
        self.cost = None if cost is None or self.cost is None else self.cost + cost
        if cached:
            self.answers_cached += 1
            self.cached_answer_tokens += input_tokens + output_tokens
        self.alias, self.model, self.finish_reason = alias, model, finish_reason

    @classmethod
    def of_cached_answer(
        cls,
        alias: str,
        model: str,
        finish_reason: str | None,
        input_tokens: int,
        output_tokens: int,
        reasoning_tokens: int,
        cached_input_tokens: int,
        latency: float,
    ) -> CellUsage:
        """A new tally holding one answer served by the response cache: what
        :meth:`add_answer` (``cost=0.0, cached=True``) makes of a new tally, its fields set
        directly (the batched replay makes one a cell; ``tests/test_replay_columnwise.py``
        compares the two)."""
        tally = _new_usage(cls)
        tally.requests = 1
        tally.failed_requests = 0
        tally.input_tokens = input_tokens
        tally.output_tokens = output_tokens
        tally.reasoning_tokens = reasoning_tokens
        tally.cached_input_tokens = cached_input_tokens
        tally.latency = 0.0 + latency
        tally.cost = 0.0
        tally.answers_cached = 1
        tally.cached_answer_tokens = input_tokens + output_tokens
        tally.alias, tally.model, tally.finish_reason = alias, model, finish_reason
        return tally

    def merge(self, other: CellUsage) -> None:
        """Add ``other``'s calls to this tally (a cache-only pass that served the cell, counted
        into a scratch tally so that a pass ending in a miss counts nothing)."""
        self.requests += other.requests
        self.failed_requests += other.failed_requests
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.latency += other.latency
        self.cost = None if other.cost is None or self.cost is None else self.cost + other.cost
        self.answers_cached += other.answers_cached
        self.cached_answer_tokens += other.cached_answer_tokens
        if other.alias is not None:
            self.alias, self.model, self.finish_reason = (
                other.alias,
                other.model,
                other.finish_reason,
            )

    def add_failed_request(self, alias: str) -> None:
        """Count one request that raised (each HTTP attempt: 429s retried in place too)."""
        self.failed_requests += 1
        if self.alias is None:
            self.alias = alias

    def add_latency(self, seconds: float) -> None:
        """Time spent in a model call that ended without an answer."""
        self.latency += seconds

    @property
    def paid_requests(self) -> int:
        """Requests that reached (or tried to reach) the endpoint: cache hits left out."""
        return self.requests - self.answers_cached + self.failed_requests

    @property
    def paid_tokens(self) -> int:
        """Input + output tokens of answers the endpoint sent (cache hits left out)."""
        return self.input_tokens + self.output_tokens - self.cached_answer_tokens


_new_usage = object.__new__


def request_cost(
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int,
    *,
    input_per_mtok: float,
    output_per_mtok: float,
    cached_input_per_mtok: float | None,
) -> float:
    """The price of one answer, in the currency of the prices (per million tokens).

    Prompt tokens the provider served from its prompt cache are charged at
    ``cached_input_per_mtok`` when it is given (else at the input price).

    >>> request_cost(1_000_000, 500_000, 0, input_per_mtok=2.0, output_per_mtok=8.0,
    ...              cached_input_per_mtok=None)
    6.0
    >>> request_cost(1_000_000, 0, 400_000, input_per_mtok=2.0, output_per_mtok=8.0,
    ...              cached_input_per_mtok=0.5)
    1.4
    """
    cached = min(max(cached_input_tokens, 0), input_tokens)
    cached_price = input_per_mtok if cached_input_per_mtok is None else cached_input_per_mtok
    return (
        (input_tokens - cached) * input_per_mtok
        + cached * cached_price
        + output_tokens * output_per_mtok
    ) / 1_000_000
