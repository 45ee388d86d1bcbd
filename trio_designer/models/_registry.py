"""The model registry: one client per provider, one limiter per endpoint, usage per alias.

Columns name a model by *alias* (``model: gen``). The registry turns an alias into a
:class:`ModelHandle` that knows the model id, the provider's HTTP client, the endpoint's
limiter and where to count usage::

    async with open_model_registry(config) as registry:
        reply = await registry.model("gen").chat([{"role": "user", "content": "Hi"}])
        registry.usage()["gen"].output_tokens

How the pieces are shared, and why:

* **One client per provider.** A provider is one base URL, so its models share one
  connection pool. The pool holds the sum of the provider's endpoint limits (more
  connections could never be used at once), capped at :data:`MAX_POOL_CONNECTIONS` so a
  typo'd limit cannot exhaust the process's file descriptors (a pool's cost per request does
  not depend on its size).
* **One limiter per endpoint.** An endpoint is a (provider, model id) pair. Two aliases of the
  same endpoint (say ``gen`` and ``gen_cold``, the same model with other sampling parameters)
  share one limiter, because the endpoint's capacity does not care which alias asked; its
  ceiling is the smallest ``max_parallel_requests`` among them. A 429 on one endpoint never
  touches another endpoint's limiter.
* **Usage per alias.** Every request is counted for the alias that sent it: tokens (input,
  output, reasoning) of answered requests, and request counts by outcome. An answer that later
  fails to parse is still an answered request (its tokens were spent), so every re-ask of a
  structured column shows up here.

The built-in provider ``"simulator"`` needs no configuration: :func:`open_model_registry`
starts the simulated endpoint inside the current ``trio.run`` on a free ``127.0.0.1`` port,
serving every model id configured with that provider.

API keys are read from each provider's ``api_key_env`` variable when the registry opens (a
missing variable is a :class:`~trio_designer.ConfigError` naming the variable, before any
request), handed to the provider's client, and kept nowhere else.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast, final

import attrs
import trio

try:
    # What trio.testing.wait_all_tasks_blocked is (trio.testing re-exports it from here),
    # without importing trio.testing: that imports pytest when it is installed, ~0.25 s of
    # every process's start-up (each shard's child process pays it).
    from trio._core import wait_all_tasks_blocked  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - a trio that moved it
    from trio.testing import wait_all_tasks_blocked

from .._cache import CellKey, cache_key
from .._cache._key import cache_keys
from .._core._budget import EndpointBudget
from .._core._cellusage import CellUsage, request_cost
from .._core._rate_retry import DEFAULT_RATE_LIMIT_RETRY, RateLimitRetry
from .._core._suggest import did_you_mean
from .._exceptions import ConfigError, GenerationError, ModelRateLimitedError, ModelServerError
from ..config import SIMULATOR_PROVIDER, InferenceParams, ModelConfig, ModelProvider
from ..config._models import endpoint_name
from ._backlog import RestingTasks, use_resting_tasks
from ._cached import CacheMiss, ResponseCache, cache_only
from ._cellcalls import current as current_cell_usage
from ._client import (
    BodyTemplate,
    ChatBodies,
    ChatResponse,
    OpenAICompatibleClient,
    Usage,
    resolve_api_key,
)
from ._limiter import AdaptiveLimiter, ModelLimiter, StaticLimiter, _LimiterBase

_T = TypeVar("_T")

_Template = tuple[
    "InferenceParams | None", "Mapping[str, Any] | None", InferenceParams, "BodyTemplate | None"
]
"""A column's (inference, response format) objects, their merged parameters and body template
(``None``: every body of theirs is encoded in full)."""

_TEMPLATES_KEPT: Final = 64
"""(inference, response format) pairs a model handle keeps a template for (a run has one per
LLM column of the alias, plus a probe's)."""

if TYPE_CHECKING:
    from ..config import PipelineConfig
    from ..simulator import SimulatedModel, Simulator

__all__ = [
    "MAX_POOL_CONNECTIONS",
    "LimiterFactory",
    "ModelHandle",
    "ModelRegistry",
    "ModelUsage",
    "endpoint_name",
    "merge_inference",
    "open_model_registry",
]

_logger = logging.getLogger("trio_designer.models")

WARM_UP_CONNECTIONS: Final = 2
"""Connections :meth:`ModelRegistry.warm_up` opens per provider (at most its pool size): a
first wave of requests as wide as the default ``max_parallel_requests`` finds them ready."""

_TOP_UP_IDLE: Final = 0.001
_TOP_UP_TRIES: Final = 100

MAX_POOL_CONNECTIONS: Final = 512
"""The most connections one provider's client keeps, whatever its models' limits add up to."""

LimiterFactory = Callable[[str, int], ModelLimiter]
"""Builds an endpoint's limiter from (name, ceiling); :class:`AdaptiveLimiter` by default."""


@attrs.frozen(kw_only=True)
class ModelUsage:
    """What one model alias spent during a run.

    Attributes:
      input_tokens: prompt tokens of answered requests.
      output_tokens: completion tokens of answered requests (reasoning included).
      reasoning_tokens: the part of ``output_tokens`` spent on reasoning, when reported.
      requests_ok: requests the endpoint answered (including answers that failed to parse).
      requests_failed: requests that failed (timeouts, 5xx, connection errors, rejections).
      requests_rate_limited: requests answered with 429.
      cached_input_tokens: the part of ``input_tokens`` the provider served from its prompt
        cache, when reported.
      cost: what the answered requests cost at the alias's ``price`` (``0`` without a price;
        :func:`~trio_designer._core._cellusage.request_cost`).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    requests_rate_limited: int = 0
    cached_input_tokens: int = 0
    cost: float = 0.0

    @property
    def requests(self) -> int:
        """Every request sent, whatever its outcome."""
        return self.requests_ok + self.requests_failed + self.requests_rate_limited

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in _USAGE_FIELDS}
        )

    def to_dict(self) -> dict[str, Any]:
        """The counters as a plain dict (for metadata and reports)."""
        return attrs.asdict(self)


_USAGE_FIELDS = attrs.fields(ModelUsage)


class _UsageCounter:
    """The mutable tally behind one alias's :class:`ModelUsage` (one trio thread, no lock).

    Plain totals, added to in place (every answer adds to it, on the path from an answer to
    the next request: two frozen ``ModelUsage`` built per request cost more than the rest of
    the tally); the frozen value is built when it is read. The sums are the ones
    ``ModelUsage.__add__`` gives, in the same order (float ``cost`` included)."""

    __slots__ = ("_totals",)

    def __init__(self) -> None:
        self._totals: dict[str, Any] = {f.name: f.default for f in _USAGE_FIELDS}

    @property
    def usage(self) -> ModelUsage:
        return ModelUsage(**self._totals)

    def add(self, **counts: Any) -> None:
        totals = self._totals
        for name, value in counts.items():
            totals[name] += value

    def add_answer(self, usage: Usage, cost: float) -> None:
        """:meth:`add` of one answered request: its tokens, ``requests_ok=1`` and ``cost``."""
        totals = self._totals
        totals["input_tokens"] += usage.input_tokens
        totals["output_tokens"] += usage.output_tokens
        totals["reasoning_tokens"] += usage.reasoning_tokens
        totals["requests_ok"] += 1
        totals["cached_input_tokens"] += usage.cached_input_tokens
        totals["cost"] += cost


def merge_inference(base: InferenceParams, override: InferenceParams | None) -> InferenceParams:
    """A model's inference parameters overridden, field by field, by a column's.

    Fields the override leaves at ``None`` keep the model's value; ``extra_body`` dicts are
    merged, the override's keys winning.
    """
    if override is None:
        return base
    return InferenceParams(
        temperature=_first(override.temperature, base.temperature),
        top_p=_first(override.top_p, base.top_p),
        max_tokens=_first(override.max_tokens, base.max_tokens),
        extra_body={**base.extra_body, **override.extra_body},
    )


def _first(preferred: Any, fallback: Any) -> Any:
    return fallback if preferred is None else preferred


class TextBatch(Protocol):
    """Texts for one embeddings request, possibly still gathering (an embedding column's
    batch): :meth:`ModelHandle.embed` takes them only once its request holds a slot."""

    def chars(self) -> list[int]:
        """The lengths of the texts gathered so far (to size the request for the limiter)."""
        ...

    def take(self) -> Sequence[str]:
        """The texts, closing the batch; the same texts on every later call (a retry)."""
        ...


@attrs.frozen
class _FixedTexts:
    texts: list[str]

    def chars(self) -> list[int]:
        return [len(t) for t in self.texts]

    def take(self) -> Sequence[str]:
        return self.texts


@final
class ModelHandle:
    """One model alias, ready to call: its endpoint's client and limiter, its usage tally.

    Obtained from :meth:`ModelRegistry.model`; cheap to look up per call.
    """

    def __init__(
        self,
        config: ModelConfig,
        client: OpenAICompatibleClient,
        limiter: ModelLimiter,
        counter: _UsageCounter,
        rate_limit_retry: RateLimitRetry = DEFAULT_RATE_LIMIT_RETRY,
        resting: RestingTasks | None = None,
        budget: EndpointBudget | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self._limiter = limiter
        self._counter = counter
        # The endpoint's budgets, shared with its limiter: its token estimator sizes each
        # request before it is sent, and learns from the usage of the answers.
        self._budget = budget if budget is not None else EndpointBudget()
        self._retry = rate_limit_retry
        self._resting = resting if resting is not None else RestingTasks()
        self._endpoint = endpoint_name(config.provider, config.model)
        # Jitter for the waits after a 429 without Retry-After. Seeded from the alias (not
        # hash(), which changes between processes), so virtual-time runs repeat exactly.
        self._jitter = random.Random(zlib.crc32(config.alias.encode()))
        self._cache = cache
        # What the cache key calls the endpoint: the provider's base URL; the built-in
        # simulator's URL changes from run to run (a free port), so it is named instead.
        self._key_endpoint = (
            SIMULATOR_PROVIDER if config.provider == SIMULATOR_PROVIDER else client.base_url
        )
        self._bodies = ChatBodies()
        self._templates: dict[tuple[int, int], _Template] = {}

    @property
    def alias(self) -> str:
        """The alias columns use."""
        return self._config.alias

    @property
    def model(self) -> str:
        """The model id sent to the endpoint."""
        return self._config.model

    @property
    def provider(self) -> str:
        """The provider's name."""
        return self._config.provider

    @property
    def config(self) -> ModelConfig:
        """The alias's configuration."""
        return self._config

    @property
    def priced(self) -> bool:
        """Whether the alias has a ``price`` (its cost is then known)."""
        return self._config.price is not None

    @property
    def limiter(self) -> ModelLimiter:
        """The endpoint's limiter (shared with every alias of the same endpoint)."""
        return self._limiter

    def usage(self) -> ModelUsage:
        """This alias's usage so far."""
        return self._counter.usage

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        response_format: Mapping[str, Any] | None = None,
        inference: InferenceParams | None = None,
        seed: int | None = None,
        cell: CellKey | None = None,
    ) -> ChatResponse:
        """Send one chat request through the endpoint's limiter, and count it.

        Waits (parked) for a slot of the endpoint's limiter, sends the request with the
        alias's inference parameters overridden by ``inference``, reports the outcome to the
        limiter (success, 429 with its ``Retry-After``, or failure) and adds the request to
        this alias's usage. One call is one answer: parse re-asks call again.

        **A 429 is retried in place.** The request gives its slot back at once (the next
        waiting request takes it), waits out its own delay — the server's ``Retry-After``, or
        a short jittered backoff without one (:class:`~trio_designer._core._rate_retry.
        RateLimitRetry`) — asks for a slot again at the same priority, and goes again, up to
        the rule's budget of attempts and waiting; only then does the 429 reach the caller
        (the engine defers the cell, as for any retryable error). Every attempt counts as a
        request in the usage. The engine's other cells keep the slots busy meanwhile: the
        waiting task holds nothing.

        Args:
          messages: OpenAI chat messages.
          response_format: e.g. ``{"type": "json_schema", "json_schema": {...}}``.
          inference: per-call overrides (an LLM column's ``inference``).
          seed: OpenAI's ``seed`` request field (servers that honour it sample
            reproducibly); the LLM columns pass one derived from (run seed, row, column).
            Not sent when the model says ``send_seed: false``.
          cell: the request's place in the run (LLM columns pass it). With a response cache,
            the answer is looked up first (a hit is returned with ``cached=True`` and sends
            nothing, touches no limiter, counts no usage), and a paid answer is stored. Under
            the engine's cache-only pass a miss raises ``CacheMiss`` instead of sending.

        Returns:
          The answer (content, reasoning, usage, finish reason).

        Raises:
          ModelRateLimitedError: the last 429, once the retries in place are spent.
          ModelTimeoutError, ModelServerError, ModelConnectionError, ModelRequestError: as
            raised by the client.
        """
        tally = current_cell_usage()
        if tally is None:  # outside a cell (a probe, a generator called by hand)
            return await self._chat(messages, response_format, inference, seed, cell)
        start = trio.current_time()
        try:
            # A cache hit is looked up here, synchronously: no coroutine of its own (this is
            # the whole of a warm run's request path); a miss goes on in _paid.
            params, body, key, response = self._lookup(
                messages, response_format, inference, seed, cell
            )
            if response is None:
                if key is None:  # not cached: _paid would go straight to the retries
                    send = partial(self._send, messages, params, body)
                    response = await self._send_with_retries(send)
                else:
                    response = await self._paid(messages, params, body, key, cell)
        except Exception:
            tally.add_latency(trio.current_time() - start)  # its requests: counted by _send
            raise
        usage = response.usage
        config = self._config
        tally.add_answer(
            alias=config.alias,
            model=response.model,
            finish_reason=response.finish_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            latency=trio.current_time() - start,
            cost=(  # cost_of, without its call for an alias without a price (None)
                0.0
                if response.cached
                else None
                if config.price is None
                else self.cost_of(response)
            ),
            cached=response.cached,
        )
        return response

    def cost_of(self, response: ChatResponse) -> float | None:
        """What ``response`` cost at this alias's ``price`` (``None`` without a price)."""
        price = self._config.price
        if price is None:
            return None
        usage = response.usage
        return request_cost(
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            input_per_mtok=price.input_per_mtok,
            output_per_mtok=price.output_per_mtok,
            cached_input_per_mtok=price.cached_input_per_mtok,
        )

    async def _chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        response_format: Mapping[str, Any] | None,
        inference: InferenceParams | None,
        seed: int | None,
        cell: CellKey | None,
    ) -> ChatResponse:
        """:meth:`chat` without the cell's tally: the cache, then the retries of 429s in
        place."""
        params, body, key, response = self._lookup(
            messages, response_format, inference, seed, cell
        )
        if response is not None:
            return response
        return await self._paid(messages, params, body, key, cell)

    def _lookup(
        self,
        messages: Sequence[Mapping[str, Any]],
        response_format: Mapping[str, Any] | None,
        inference: InferenceParams | None,
        seed: int | None,
        cell: CellKey | None,
    ) -> tuple[InferenceParams, bytes, bytes | None, ChatResponse | None]:
        """The request's parameters, its body, its cache key (``None``: the request is not
        cached) and the cached answer (``None``: none)."""
        # The body is encoded once: the cache key hashes these bytes and a miss sends them.
        # A column's requests share their parameters and response format (the same objects,
        # call after call): their fixed text is kept, only messages and seed are written.
        params, template = self._template_of(inference, response_format)
        body = self._body(params, template, messages, seed, response_format)
        cache = self._cache
        if cache is None or cell is None:
            return params, body, None, None
        key = cache_key(self._key_endpoint, body, cell)
        return params, body, key, cache.get(key)

    def replay_cached(
        self,
        requests: Sequence[Sequence[Mapping[str, Any]]],
        seeds: Sequence[int],
        rows: Sequence[int],
        *,
        response_format: Mapping[str, Any] | None,
        inference: InferenceParams | None,
        run_seed: int,
        column: str,
    ) -> list[tuple[ChatResponse, CellUsage] | bool]:
        """The cached answers of many cells' first requests, looked up together: the batched
        replay of an LLM column's cached cells (``LLMGenerator.replay_cached``).

        Request ``i`` is the messages ``requests[i]`` with the seed ``seeds[i]``, of cell
        (``run_seed``, ``rows[i]``, ``column``): what :meth:`chat` would be called with. Its
        entry is the answer :meth:`chat` would return from the cache, with the cell's tally
        as :meth:`chat` would fill it (one cached answer, no cost); ``False`` when the answer
        is surely not cached; ``True`` when it cannot be said here (a stored value that does
        not read, a request that cannot be encoded: the per-cell path decides, and counts).
        The bodies, keys and look-ups are :meth:`_lookup`'s, each stage one loop over the
        requests. **Nothing is counted** (hits: the caller, for the cells it stores, with
        ``ResponseCache.count_hits``). A request's latency is its share of the look-up's time
        (every stage here is done for all the requests together)."""
        cache = self._cache
        if cache is None or not requests:
            return [True] * len(requests)
        start = trio.current_time()
        params, template = self._template_of(inference, response_format)
        bodies = [
            self._body(params, template, messages, seed, response_format)
            for messages, seed in zip(requests, seeds, strict=True)
        ]
        keys = cache_keys(self._key_endpoint, bodies, run_seed, rows, column, seeds)
        found = cache.peek_many(keys)
        latency = (trio.current_time() - start) / len(requests)
        alias, cached_tally = self.alias, CellUsage.of_cached_answer
        served: list[tuple[ChatResponse, CellUsage] | bool] = []
        for response in found:
            if type(response) is bool:
                served.append(response)
                continue
            usage = response.usage
            tally = cached_tally(
                alias,
                response.model,
                response.finish_reason,
                usage.input_tokens,
                usage.output_tokens,
                usage.reasoning_tokens,
                usage.cached_input_tokens,
                latency,
            )
            served.append((response, tally))
        return served

    def _template_of(
        self, inference: InferenceParams | None, response_format: Mapping[str, Any] | None
    ) -> tuple[InferenceParams, BodyTemplate | None]:
        """The merged parameters and the body template of a column's requests (kept per pair
        of objects, see :meth:`_template`)."""
        known = self._templates.get((id(inference), id(response_format)))
        if known is None or known[0] is not inference or known[1] is not response_format:
            known = self._template(inference, response_format)
        return known[2], known[3]

    def _body(
        self,
        params: InferenceParams,
        template: BodyTemplate | None,
        messages: Sequence[Mapping[str, Any]],
        seed: int | None,
        response_format: Mapping[str, Any] | None,
    ) -> bytes:
        """A request's body: from the column's template when it has one and the messages
        fit it, else encoded in full. The cache key hashes these bytes and a miss sends
        them."""
        body = None if template is None else template.body(messages, seed)
        if body is None:
            body = self._bodies.encode(
                self._config.model,
                messages,
                params.temperature,
                params.top_p,
                params.max_tokens,
                response_format,
                _with_seed(params.extra_body, seed if self._config.send_seed else None),
            )
        return body

    def _template(
        self, inference: InferenceParams | None, response_format: Mapping[str, Any] | None
    ) -> _Template:
        """The merged parameters and the body template of a column's requests, made once per
        (inference, response format) pair of objects and kept with them (alive, so their
        ``id`` cannot be reused while kept)."""
        params = merge_inference(self._config.inference, inference)
        template = self._bodies.template(
            self._config.model,
            params.temperature,
            params.top_p,
            params.max_tokens,
            response_format,
            params.extra_body,
            seeded=self._config.send_seed,
        )
        made = (inference, response_format, params, template)
        if len(self._templates) >= _TEMPLATES_KEPT:
            self._templates.clear()
        self._templates[(id(inference), id(response_format))] = made
        return made

    async def _paid(
        self,
        messages: Sequence[Mapping[str, Any]],
        params: InferenceParams,
        body: bytes,
        key: bytes | None,
        cell: CellKey | None,
    ) -> ChatResponse:
        """A request :meth:`_lookup` found no answer for: sent (429s retried in place) and,
        when cached, stored; under the engine's cache-only pass, ``CacheMiss`` instead."""
        cache = self._cache
        if cache is None or key is None or cell is None:
            return await self._send_with_retries(partial(self._send, messages, params, body))
        if cache_only.get():
            raise CacheMiss
        cache.missed()
        response = await self._send_with_retries(partial(self._send, messages, params, body))
        cache.put(key, cell, response)
        return response

    async def _send_with_retries(self, send: Callable[[], Awaitable[_T]]) -> _T:
        """``await send()`` (one request: :meth:`_send`, :meth:`_send_embed`), with a 429
        retried in place (see :meth:`chat`), and a 502/503/504 too: the slot is given back
        while the request waits out the server's ``Retry-After`` (or the client's backoff),
        so other cells keep it busy. (The client used to sleep those waits inside the slot:
        20 % of 503s with ``Retry-After: 1`` made a Wide run 2.9x slower where the same rate
        of 429s costs 1.24x; hostile review, hostile21.)

        Both rules in one coroutine (a layer each was a coroutine every request went
        through): a 502/503/504 retried in place starts the 429 rule's count and waiting
        afresh."""
        status_attempt = 1
        attempt, waited = 0, 0.0  # 429s since the last 502/503/504, and their waits
        while True:
            try:
                return await send()
            except ModelRateLimitedError as exc:
                attempt += 1
                delay = self._retry.delay(exc.retry_after, attempt, self._jitter.random())
                if not self._retry.retries(attempt, waited, delay):
                    raise
                _logger.debug(
                    "model '%s': 429 on attempt %d; retrying in %.2f s", self.alias, attempt, delay
                )
                waited += delay
            except ModelServerError as exc:
                status_delay = self._client.status_retry_delay(exc, status_attempt)
                if status_delay is None:
                    raise
                delay = status_delay
                _logger.info(
                    "Retrying the request in %.2f s (attempt %d of %d) after: %s",
                    delay,
                    status_attempt + 1,
                    self._client.transport_retry.max_attempts,
                    exc,
                )
                status_attempt += 1
                attempt, waited = 0, 0.0
            with self._resting.rest(self._endpoint):  # holds no backlog place meanwhile
                await trio.sleep(delay)

    async def embed(
        self, texts: Sequence[str] | TextBatch, *, dimensions: int | None = None
    ) -> list[Any]:
        """Embed texts in one ``/embeddings`` request through the endpoint's limiter (one
        request, one slot, however many texts), and count it; 429s are retried in place as
        for :meth:`chat`, and so are 502/503/504 (without holding the slot while they wait).

        Args:
          texts: the texts, or a :class:`TextBatch` still gathering them: it is taken (closed)
            only once the request holds its slot, so a batch waiting on a saturated endpoint
            keeps filling meanwhile.
          dimensions: the vector length to ask for.

        Returns:
          One vector (a list of floats) per text, in order.

        Raises:
          The errors of :meth:`chat`.
        """
        batch = _FixedTexts(list(texts)) if isinstance(texts, Sequence) else texts
        return await self._send_with_retries(partial(self._send_embed, batch, dimensions))

    async def _send(
        self, messages: Sequence[Mapping[str, Any]], params: InferenceParams, body: bytes
    ) -> ChatResponse:
        """One request: a slot, the call, the report to the limiter, the usage."""
        raw_prompt = _raw_prompt(messages)
        estimator = self._budget.estimator
        tokens = estimator.estimate_raw(raw_prompt, params.max_tokens)
        async with self._limiter.slot(tokens) as permit:
            try:
                response = await self._client.chat_encoded(
                    model=self._config.model,
                    body=body,
                    timeout=self._config.timeout,
                    max_response_bytes=self._config.max_response_bytes,
                    retry_statuses=False,  # retried by _send_with_retries, without the slot
                )
            except ModelRateLimitedError as exc:
                permit.rate_limited(exc.retry_after, rate_limits=exc.rate_limits)
                self._counter.add(requests_rate_limited=1)
                _count_failed_request(self.alias)
                raise
            except GenerationError:
                permit.failure()
                self._counter.add(requests_failed=1)
                _count_failed_request(self.alias)
                raise
            except Exception:  # not an endpoint signal: release the slot without a report
                self._counter.add(requests_failed=1)
                _count_failed_request(self.alias)
                raise
            usage = response.usage
            reported = usage.input_tokens + usage.output_tokens
            permit.success(tokens=reported or None, rate_limits=response.rate_limits)
        if reported:
            estimator.learn(raw_prompt, usage.input_tokens, usage.output_tokens)
        priced = self._config.price is not None  # cost_of is None without a price
        self._counter.add_answer(usage, (priced and self.cost_of(response)) or 0.0)
        return response

    async def _send_embed(self, batch: TextBatch, dimensions: int | None) -> list[Any]:
        """One embeddings request: a slot, the call, the report to the limiter, the usage."""
        tokens = self._budget.estimator.estimate(batch.chars(), 0)
        async with self._limiter.slot(tokens) as permit:
            texts = list(batch.take())
            try:
                response = await self._client.embed(
                    model=self._config.model,
                    inputs=texts,
                    dimensions=dimensions,
                    timeout=self._config.timeout,
                    max_response_bytes=self._config.max_response_bytes,
                    retry_statuses=False,  # retried by _send_with_retries, without the slot
                )
            except ModelRateLimitedError as exc:
                permit.rate_limited(exc.retry_after, rate_limits=exc.rate_limits)
                self._counter.add(requests_rate_limited=1)
                raise
            except GenerationError:
                permit.failure()
                self._counter.add(requests_failed=1)
                raise
            except Exception:  # not an endpoint signal: release the slot without a report
                self._counter.add(requests_failed=1)
                raise
            reported = response.usage.input_tokens
            permit.success(tokens=reported or None, rate_limits=response.rate_limits)
        self._counter.add(input_tokens=reported, requests_ok=1)
        return response.vectors

    async def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST ``body`` (JSON) to ``path`` below the provider's ``base_url`` through the
        endpoint's limiter, counted as a request of this alias (a remote validator's batch).

        Returns the parsed JSON answer. Raises the client's model errors; a 429 is reported to
        the limiter and raised (the engine defers the cell).
        """
        async with self._limiter.slot(0) as permit:
            try:
                answer = await self._client.post_json(
                    path, body, model=self._config.model, timeout=self._config.timeout
                )
            except ModelRateLimitedError as exc:
                permit.rate_limited(exc.retry_after, rate_limits=exc.rate_limits)
                self._counter.add(requests_rate_limited=1)
                raise
            except GenerationError:
                permit.failure()
                self._counter.add(requests_failed=1)
                raise
            except Exception:
                self._counter.add(requests_failed=1)
                raise
            permit.success(tokens=None, rate_limits=None)
        self._counter.add(requests_ok=1)
        return answer

    def __repr__(self) -> str:
        return f"<ModelHandle {self.alias!r}: model {self.model!r} at provider {self.provider!r}>"


def _count_failed_request(alias: str) -> None:
    """A request of the current cell (if any) failed: its tally counts it as the registry does."""
    tally = current_cell_usage()
    if tally is not None:
        tally.add_failed_request(alias)


@final
class ModelRegistry:
    """Every model alias of a run, with the clients and limiters behind them.

    Usually built by :func:`open_model_registry`, which also opens and closes the clients.

    Args:
      models: the model aliases (unique aliases).
      clients: provider name -> its client; every model's provider must have one.
      limiter_factory: builds each endpoint's limiter from (name, ceiling).
      simulator: the embedded simulator serving the ``"simulator"`` provider, if running.
      rate_limit_retry: how a request answered 429 is retried in place (see
        :meth:`ModelHandle.chat`).
      resting: the run's ledger of requests waiting out a 429 (see ``models/_backlog.py``);
        a new one when not given.

    Raises:
      ConfigError: a duplicate alias, or a model whose provider has no client.
    """

    def __init__(
        self,
        models: Sequence[ModelConfig],
        clients: Mapping[str, OpenAICompatibleClient],
        *,
        limiter_factory: LimiterFactory = AdaptiveLimiter,
        simulator: Simulator | None = None,
        rate_limit_retry: RateLimitRetry = DEFAULT_RATE_LIMIT_RETRY,
        resting: RestingTasks | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        _check_models(models, clients)
        self._resting = resting if resting is not None else RestingTasks()
        ceilings = endpoint_ceilings(models)
        self._budgets = {
            name: EndpointBudget(rpm=rpm, tpm=tpm)
            for name, (rpm, tpm) in endpoint_budgets(models).items()
        }
        self._limiters: dict[str, ModelLimiter] = {
            name: _build_limiter(limiter_factory, name, ceiling, self._budgets[name])
            for name, ceiling in ceilings.items()
        }
        self._handles: dict[str, ModelHandle] = {
            m.alias: ModelHandle(
                m,
                clients[m.provider],
                self._limiters[endpoint_name(m.provider, m.model)],
                _UsageCounter(),
                rate_limit_retry,
                self._resting,
                self._budgets[endpoint_name(m.provider, m.model)],
                cache,
            )
            for m in models
        }
        self._cache = cache
        self._simulator = simulator
        self._clients = dict(clients)

    @property
    def cache(self) -> ResponseCache | None:
        """The run's response cache, if any (shared by every alias)."""
        return self._cache

    def client(self, provider: str) -> OpenAICompatibleClient:
        """The HTTP client of ``provider`` (shared by its models)."""
        return self._clients[provider]

    async def warm_up(self, connections: int = WARM_UP_CONNECTIONS) -> None:
        """Open up to ``connections`` connections to every provider at once, before the first
        requests need them (see :meth:`OpenAICompatibleClient.warm_up`); returns when all are
        open or failed. The designer runs it beside the start of a run and cancels what is
        left when the run ends."""
        async with trio.open_nursery() as nursery:
            for client in self._clients.values():
                nursery.start_soon(client.warm_up, connections)

    async def top_up(self) -> None:
        """Open connections to every provider for the requests the first answers will start
        (see :meth:`OpenAICompatibleClient.top_up`); the designer runs it once, when the
        first wave of requests is out and the run waits for answers.

        "Out": :meth:`first_wave_out`'s test, so that its connects never compete with the
        first wave's own (that slowed the first requests).
        """
        if not await self.first_wave_out():
            return
        async with trio.open_nursery() as nursery:
            for client in self._clients.values():
                nursery.start_soon(client.top_up)

    async def first_wave_out(self) -> bool:
        """Wait until the requests the run has started are out and it waits for answers;
        ``True`` then, ``False`` if that was not seen in :data:`_TOP_UP_TRIES` tries.

        "Out": every task of the run blocked (the dispatcher has started what it can) and no
        request still connecting or writing — checked each time the run has been idle for
        :data:`_TOP_UP_IDLE` s (in real time, also under a ``MockClock``: trio wakes idle
        waiters before it jumps the clock). For work the first requests do not need, whose
        CPU would delay them: :meth:`top_up`'s connects, and the async engine's dispatch of
        the cells the first wave had no slot for (``EndpointBacklog.widen``).
        """
        for attempt in range(_TOP_UP_TRIES):
            await wait_all_tasks_blocked(_TOP_UP_IDLE if attempt else 0.0)
            if not any(client.sending() for client in self._clients.values()):
                return True
        return False

    @property
    def simulator(self) -> Simulator | None:
        """The embedded simulator, when some model uses the ``"simulator"`` provider."""
        return self._simulator

    def aliases(self) -> tuple[str, ...]:
        """Every alias, in configuration order."""
        return tuple(self._handles)

    def __contains__(self, alias: object) -> bool:
        return alias in self._handles

    def model(self, alias: str) -> ModelHandle:
        """The handle of ``alias``.

        Raises:
          ConfigError: no model has this alias (the message suggests the closest one).
        """
        try:
            return self._handles[alias]
        except KeyError:
            raise ConfigError(_unknown_alias(alias, self._handles)) from None

    def usage(self) -> dict[str, ModelUsage]:
        """Usage so far, per alias (in configuration order)."""
        return {alias: handle.usage() for alias, handle in self._handles.items()}

    def bound_contenders(self, endpoint: str, count: Callable[[], int] | None) -> None:
        """Give ``endpoint``'s limiter an upper bound on the tasks that may ask it for a slot
        (``None`` forgets it): see ``_LimiterBase.bound_contenders``. A limiter of another kind
        (a custom ``limiter_factory``'s) is left as it is."""
        limiter = self._limiters[endpoint]
        if isinstance(limiter, _LimiterBase):
            limiter.bound_contenders(count)

    def limiters(self) -> dict[str, ModelLimiter]:
        """Every endpoint's limiter, by endpoint name (``"provider:model"``)."""
        return dict(self._limiters)

    def __repr__(self) -> str:
        return f"<ModelRegistry aliases={list(self._handles)} endpoints={list(self._limiters)}>"


def endpoint_budgets(models: Sequence[ModelConfig]) -> dict[str, tuple[int | None, int | None]]:
    """Endpoint name -> (rpm, tpm): the smallest configured among its aliases (``None`` when
    no alias sets one)."""
    budgets: dict[str, tuple[int | None, int | None]] = {}
    for m in models:
        name = endpoint_name(m.provider, m.model)
        rpm, tpm = budgets.get(name, (None, None))
        budgets[name] = (_smallest(rpm, m.rpm), _smallest(tpm, m.tpm))
    return budgets


def _smallest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def takes_budget(factory: LimiterFactory) -> bool:
    """Whether ``factory(name, ceiling, budget=...)`` works: ``AdaptiveLimiter``,
    ``StaticLimiter``, a ``functools.partial`` of either that leaves ``budget`` free, or the
    factory ``open_model_registry(on_limit_change=...)`` builds."""
    if isinstance(factory, _ReportingFactory):
        return True
    wrapped = factory.func if isinstance(factory, partial) else factory
    bound = factory.keywords if isinstance(factory, partial) else {}
    return wrapped in (AdaptiveLimiter, StaticLimiter) and "budget" not in bound


def _build_limiter(
    factory: LimiterFactory, name: str, ceiling: int, budget: EndpointBudget
) -> ModelLimiter:
    """The endpoint's limiter, enforcing ``budget`` when the factory can take it.

    Raises:
      ConfigError: ``rpm``/``tpm`` are configured but the factory cannot take a budget.
    """
    if takes_budget(factory):
        return cast("Callable[..., ModelLimiter]", factory)(name, ceiling, budget=budget)
    if budget.limited:
        raise ConfigError(
            f"models: endpoint {name!r} has rpm/tpm set, but the limiter_factory cannot enforce "
            "them; use AdaptiveLimiter or StaticLimiter (or a functools.partial of them), or "
            "remove rpm/tpm"
        )
    return factory(name, ceiling)


def endpoint_ceilings(models: Sequence[ModelConfig]) -> dict[str, int]:
    """Endpoint name -> the smallest ``max_parallel_requests`` among its aliases."""
    ceilings: dict[str, int] = {}
    for m in models:
        name = endpoint_name(m.provider, m.model)
        ceilings[name] = min(ceilings.get(name, m.max_parallel_requests), m.max_parallel_requests)
    return ceilings


def _check_models(
    models: Sequence[ModelConfig], clients: Mapping[str, OpenAICompatibleClient]
) -> None:
    problems: list[str] = []
    seen: set[str] = set()
    for index, m in enumerate(models):
        if m.alias in seen:
            problems.append(
                f"models[{index}].alias: {m.alias!r} is used by another model; aliases must be "
                f"unique"
            )
        seen.add(m.alias)
        if m.provider not in clients:
            problems.append(_unknown_provider(index, m.provider, clients))
    if problems:
        raise ConfigError(problems)


def _unknown_provider(index: int, provider: str, known: Mapping[str, object]) -> str:
    hint = did_you_mean(
        provider,
        known,
        otherwise=f"add it to 'providers', or use the built-in {SIMULATOR_PROVIDER!r}",
    )
    return f"models[{index}].provider: no provider named {provider!r}; {hint}"


def _unknown_alias(alias: str, known: Mapping[str, object]) -> str:
    if known:
        otherwise = f"the models are {', '.join(map(repr, known))}"
    else:
        otherwise = "the pipeline configures no models; add one under 'models'"
    hint = did_you_mean(alias, known, otherwise=otherwise)
    return f"no model has the alias {alias!r}; {hint}"


# ---------------------------------------------------------------------------------------------
# Opening a registry from a pipeline configuration
# ---------------------------------------------------------------------------------------------


def pool_sizes(models: Sequence[ModelConfig]) -> dict[str, int]:
    """Provider name -> connection pool size: its endpoints' ceilings summed, capped."""
    sizes: dict[str, int] = {}
    providers = {endpoint_name(m.provider, m.model): m.provider for m in models}
    for name, ceiling in endpoint_ceilings(models).items():
        provider = providers[name]
        sizes[provider] = sizes.get(provider, 0) + ceiling
    return {p: min(size, MAX_POOL_CONNECTIONS) for p, size in sizes.items()}


def _provider_timeouts(models: Sequence[ModelConfig]) -> dict[str, float]:
    """Provider -> the longest model timeout (each request passes its own model's timeout)."""
    timeouts: dict[str, float] = {}
    for m in models:
        timeouts[m.provider] = max(timeouts.get(m.provider, 0.0), m.timeout)
    return timeouts


def _declared_providers(
    models: Sequence[ModelConfig], providers: Sequence[ModelProvider]
) -> dict[str, ModelProvider]:
    """The providers the models use, by name; ConfigError for unknown or keyless ones.

    Checks every API-key variable now, so a missing key fails before any request (and before
    the simulator starts). The keys read here are dropped; the clients read them again.
    """
    declared = {p.name: p for p in providers}
    used: dict[str, ModelProvider] = {}
    problems: list[str] = []
    for index, m in enumerate(models):
        if m.provider == SIMULATOR_PROVIDER or m.provider in used:
            continue
        provider = declared.get(m.provider)
        if provider is None:
            problems.append(_unknown_provider(index, m.provider, declared))
            continue
        used[m.provider] = provider
        try:
            resolve_api_key(provider.api_key_env)
        except ConfigError as exc:
            problems.extend(f"provider {provider.name!r}: {p}" for p in exc.problems)
    if problems:
        raise ConfigError(problems)
    return used


def _simulated_models(
    models: Sequence[ModelConfig], listed: Sequence[SimulatedModel] | None
) -> list[SimulatedModel]:
    """Every simulator model id, as listed in ``listed`` or with the simulator's defaults."""
    from ..simulator import SimulatedModel

    by_name = {m.name: m for m in listed or ()}
    wanted = dict.fromkeys(m.model for m in models if m.provider == SIMULATOR_PROVIDER)
    served = [by_name.get(name) or SimulatedModel(name=name) for name in wanted]
    served.extend(m for name, m in by_name.items() if name not in wanted)
    return served


@asynccontextmanager
async def open_model_registry(
    config: PipelineConfig,
    *,
    simulator_models: Sequence[SimulatedModel] | None = None,
    limiter_factory: LimiterFactory = AdaptiveLimiter,
    on_limit_change: Callable[[str, Any], None] | None = None,
    rate_limit_retry: RateLimitRetry = DEFAULT_RATE_LIMIT_RETRY,
    cache: ResponseCache | None = None,
) -> AsyncIterator[ModelRegistry]:
    """Open clients (and the embedded simulator, if used) for ``config``'s models.

    Args:
      config: the pipeline; only its ``models`` and ``providers`` are read.
      simulator_models: how to simulate model ids of the ``"simulator"`` provider; ids not
        listed get :class:`~trio_designer.simulator.SimulatedModel` defaults. Ignored when no
        model uses the simulator.
      limiter_factory: builds each endpoint's limiter from (name, ceiling); the default is an
        :class:`~trio_designer.models._limiter.AdaptiveLimiter` with the default policy.
      on_limit_change: called as ``on_limit_change(endpoint_name, change)`` with every
        :class:`~trio_designer._core._limits.LimitChange` of an endpoint's adaptive limiter (in
        the task that reported the outcome; see ``AdaptiveLimiter``'s ``on_change``). Needs
        ``limiter_factory`` to be ``AdaptiveLimiter`` or a ``functools.partial`` of it (say
        with another policy); a custom factory wires ``on_change`` itself.
      rate_limit_retry: how a request answered 429 is retried in place before the caller
        sees the 429 (:meth:`ModelHandle.chat`).
      cache: the run's response cache (``models/_cached.py``), consulted by every alias for
        requests that name their cell; ``None``: no cache.

    Yields:
      The registry. On exit every client is closed and the simulator is stopped.

    Raises:
      ConfigError: a model names an unknown provider, a provider's ``api_key_env`` variable is
        unset or empty (the message names the variable, never a value), or a base URL is
        invalid. Raised before any request is sent.
      TypeError: ``on_limit_change`` together with another kind of ``limiter_factory``.
    """
    if on_limit_change is not None:
        limiter_factory = _reporting_factory(limiter_factory, on_limit_change)
    models = config.models
    providers = _declared_providers(models, config.providers)
    pools = pool_sizes(models)
    timeouts = _provider_timeouts(models)
    async with AsyncExitStack() as stack:
        clients: dict[str, OpenAICompatibleClient] = {}
        for name, provider in providers.items():
            client = OpenAICompatibleClient(
                base_url=provider.base_url,
                api_key=resolve_api_key(provider.api_key_env),
                max_connections=pools[name],
                timeout=timeouts[name],
                extra_headers=provider.extra_headers,
                name=name,
                transport=provider.transport,
                http2=provider.http2,
                api_key_env=provider.api_key_env,
                fail_fast=True,
            )
            stack.push_async_callback(client.aclose)
            clients[name] = client
        simulator = None
        if SIMULATOR_PROVIDER in pools:
            from ..simulator import open_simulator

            served = _simulated_models(models, simulator_models)
            simulator = await stack.enter_async_context(open_simulator(served))
            client = OpenAICompatibleClient(
                base_url=simulator.url,
                max_connections=pools[SIMULATOR_PROVIDER],
                timeout=timeouts[SIMULATOR_PROVIDER],
                name=SIMULATOR_PROVIDER,
                fail_fast=True,
            )
            stack.push_async_callback(client.aclose)
            clients[SIMULATOR_PROVIDER] = client
        resting = RestingTasks()
        registry = ModelRegistry(
            models,
            clients,
            limiter_factory=limiter_factory,
            simulator=simulator,
            rate_limit_retry=rate_limit_retry,
            resting=resting,
            cache=cache,
        )
        # A backlog built while the registry is open counts its resting tasks (see
        # models/_backlog.py: the engine builds it inside this block).
        with use_resting_tasks(resting):
            yield registry


def reports_limit_changes(factory: LimiterFactory) -> bool:
    """Whether ``open_model_registry(on_limit_change=...)`` can wire ``factory``:
    ``AdaptiveLimiter``, or a ``functools.partial`` of it that leaves ``on_change`` free."""
    wrapped = factory.func if isinstance(factory, partial) else factory
    bound = factory.keywords if isinstance(factory, partial) else {}
    return wrapped is AdaptiveLimiter and "on_change" not in bound


def _reporting_factory(
    factory: LimiterFactory, on_limit_change: Callable[[str, Any], None]
) -> LimiterFactory:
    """``factory`` (``AdaptiveLimiter``, or a ``functools.partial`` of it such as one fixing
    the policy) with every limiter's ``on_change`` reporting to ``on_limit_change`` under its
    endpoint's name."""
    if not reports_limit_changes(factory):
        raise TypeError(
            "open_model_registry: on_limit_change needs limiter_factory to be AdaptiveLimiter "
            "(or a functools.partial of it without on_change); a custom factory can pass "
            "on_change to the limiters it builds."
        )
    return _ReportingFactory(cast("Callable[..., ModelLimiter]", factory), on_limit_change)


@final
class _ReportingFactory:
    """An adaptive limiter factory whose limiters report their changes under their names."""

    def __init__(
        self, factory: Callable[..., ModelLimiter], on_limit_change: Callable[[str, Any], None]
    ) -> None:
        self._factory = factory
        self._on_limit_change = on_limit_change

    def __call__(
        self, name: str, ceiling: int, *, budget: EndpointBudget | None = None
    ) -> ModelLimiter:
        return self._factory(
            name, ceiling, on_change=partial(self._on_limit_change, name), budget=budget
        )


def _raw_prompt(messages: Sequence[Mapping[str, Any]]) -> int:
    """``TokenEstimator.raw_prompt`` of the messages' content lengths, in one loop."""
    total = 3
    for message in messages:
        content = message.get("content")
        chars = len(content) if type(content) is str else len(_content_text(content))
        total += -(-chars // 4) + 3
    return total


def _content_text(content: object) -> str:
    """The text of a message's ``content`` (a string, or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _with_seed(extra_body: Mapping[str, Any] | None, seed: int | None) -> dict[str, Any] | None:
    """The request's extra body fields, with ``seed`` unless the user set one."""
    if not extra_body:  # the usual case: no extra fields, a fresh dict of the seed alone
        return None if seed is None else {"seed": seed}
    body = dict(extra_body)
    if seed is not None:
        body.setdefault("seed", seed)
    return body or None
