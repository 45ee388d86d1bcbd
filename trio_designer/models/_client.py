"""An OpenAI-compatible HTTP client for trio: chat completions, embeddings, model listing.

One :class:`OpenAICompatibleClient` talks to one endpoint (a provider's ``base_url``) through
one transport (:mod:`trio_designer.models._transport`): by default our own pool of keep-alive
HTTP/1.1 connections (:mod:`._http`, h11 on trio streams), or ``transport="httpx"``
(:mod:`._httpx_transport`) for SOCKS or https proxies and HTTP/2. It works against anything
that speaks the OpenAI wire format — OpenAI, vLLM, NIM, Ollama, our simulator — chosen by base
URL alone::

    async with OpenAICompatibleClient(base_url="http://127.0.0.1:8000/v1", name="local") as client:
        reply = await client.chat(model="m", messages=[{"role": "user", "content": "Hi"}])
        print(reply.content, reply.usage.output_tokens)

What it does, and what it deliberately leaves to others:

* **Errors** leave through one boundary, :mod:`trio_designer.models._errors`, as our exception
  classes (``raise ... from exc``), with messages that name the model and provider and never
  contain the API key (it is redacted even from bodies a server echoes back).
* **Transport retries** cover the failures that are cheap and almost always transient: 502,
  503 and 504 answers and broken connections (refused, reset, or a keep-alive connection the
  server closed under us, which surfaces as ``RemoteProtocolError``/``ReadError``). The waits
  come from a :class:`~trio_designer._core._retry.BackoffPolicy` with seeded jitter; a 503's
  ``Retry-After`` lengthens the wait (up to the policy's cap).
* **Not retried here:** 429 (it must reach the adaptive limiter, which cuts the model's
  concurrency, and the scheduler, which defers the cell), timeouts (the attempt already cost a
  whole timeout while holding a limiter slot; the scheduler defers the cell instead), 500 (more
  often a bug triggered by this request than a blip), and 200s with an unusable body.
* **One deadline per request.** ``timeout`` bounds each request from the moment it has a
  connection (connect, send, wait, the last byte of the answer): a server that trickles its
  answer fails with :class:`ModelTimeoutError` after ``timeout``, however slowly it sends.
* **A size cap.** An answer whose body exceeds ``max_response_bytes`` is cut off while it
  streams in (memory stays flat) and fails with a non-retryable :class:`ModelRequestError`
  (``reason="response_too_large"``) naming the model, the limit and the setting to raise.
* **Failing fast** (``fail_fast=True``, as the model registry builds it for a run). Every
  request's final outcome feeds the provider's
  :class:`~trio_designer._core._firstcontact.FirstContact`: while no request has been answered,
  one that cannot connect (after the retries) or gets 401/403 raises
  :class:`~trio_designer.ProviderError` instead of a cell error, and the engine stops the run;
  so does a 404 for a model that has had no other answer (a wrong model id or base_url path).
  No extra request is ever sent for this.
* **Concurrency** is bounded by the caller (the per-model limiter); the transport holds
  ``max_connections`` connections, all of which may be kept alive. Requests beyond that wait
  for a connection in a FIFO without a deadline. The native pool costs the same per request
  whatever its size (see ``docs/benchmarks.md``, "The request path").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import attrs
import h11
import trio

from .._core._budget import RateLimits
from .._core._firstcontact import FirstContact, FirstContactStatistics, Outcome
from .._core._jsonenc import compact_text
from .._core._retry import BackoffPolicy
from .._exceptions import (
    ConfigError,
    GenerationError,
    ModelConnectionError,
    ModelRateLimitedError,
    ModelServerError,
    ModelTimeoutError,
)
from ._errors import (
    error_from_malformed_response,
    error_from_status,
    error_from_transport,
    provider_error,
    retry_after_from_headers,
)
from ._http import ConnectionPool, proxy_for
from ._ratelimits import parse_rate_limits
from ._transport import (
    DEFAULT_KEEPALIVE_EXPIRY,
    TRANSPORT_KINDS,
    ConnectFailed,
    DecodingFailed,
    HTTPError,
    HTTPStatusError,
    Origin,
    ProtocolViolation,
    ProxyFailed,
    Response,
    ResponseTooLarge,
    Transport,
    TransportStatistics,
    parse_origin,
)

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "BodyTemplate",
    "ChatBodies",
    "ChatResponse",
    "EmbeddingResponse",
    "OpenAICompatibleClient",
    "ProbeAnswer",
    "Usage",
    "encode_chat_body",
    "open_transport",
    "resolve_api_key",
]

logger = logging.getLogger("trio_designer.models")

RETRY_STATUSES: Final = frozenset({502, 503, 504})
"""Statuses the client retries itself (with backoff) before reporting them."""

DEFAULT_MAX_RESPONSE_BYTES: Final = 8 * 2**20
"""The default cap on an answer's body (8 MiB): far above any chat completion, far below what
would hurt a run's memory when many answers are in flight."""

_USER_AGENT: Final = "trio-designer"

_T = TypeVar("_T")

_SENSITIVE_HEADER_PARTS: Final = ("auth", "key", "token", "secret", "cookie", "password")


@attrs.frozen(kw_only=True)
class Usage:
    """Tokens spent by one request (or, summed with ``+``, by many).

    Attributes:
      input_tokens: prompt tokens (OpenAI ``prompt_tokens``).
      output_tokens: completion tokens, reasoning included (OpenAI ``completion_tokens``).
      reasoning_tokens: the part of ``output_tokens`` spent on reasoning, when reported.
      cached_input_tokens: the part of ``input_tokens`` the provider served from its prompt
        cache (OpenAI ``prompt_tokens_details.cached_tokens``), when reported.

    Counts the server did not report are ``0``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
        )


@attrs.frozen(kw_only=True)
class ProbeAnswer:
    """What one probe request got (:meth:`OpenAICompatibleClient.probe`).

    Attributes:
      status: the HTTP status, or ``None`` when none was read.
      headers: the response headers (names in lower case).
      elapsed: seconds from sending the request to the last byte of the answer (or the
        failure).
      error: what is wrong, or ``None`` for a usable answer: the error a chat request would
        have raised, or a :class:`~trio_designer.ProviderError` (whose message says what to
        do) for no connection and for 401/403.
      answered: the server sent an answer, usable or not: a status, or bytes that could not be
        read as one (not HTTP, a body we cannot decode, a body over the size limit). ``False``
        only when nothing came back (no connection, a timeout, a hang-up before any byte).
    """

    status: int | None
    headers: Mapping[str, str]
    elapsed: float
    error: Exception | None
    answered: bool = True


@attrs.frozen(kw_only=True)
class ChatResponse:
    """The first choice of a chat completion.

    Attributes:
      content: the assistant's text (``""`` when the server sent none, e.g. ``null``).
      reasoning: reasoning text from ``message.reasoning_content`` or ``message.reasoning``
        (vLLM, DeepSeek, OpenRouter...), or ``None``.
      usage: tokens spent.
      finish_reason: ``"stop"``, ``"length"``... as reported, or ``None``.
      model: the model that answered, as the server names it (the requested name if absent).
      rate_limits: what the answer's headers said about the endpoint's request and token
        budgets (``None``: nothing).
      cached: the answer was served from the response cache (``models/_cached.py``), not by
        the endpoint: no request was sent and nothing was paid for it.
      refusal: ``message.refusal`` (OpenAI's structured outputs: the model declined), or
        ``None``; the columns name it when the content is empty.
      tool_calls: how many ``message.tool_calls`` the answer carried (an answer that is only
        tool calls has no content); the columns name them when the content is empty.
    """

    content: str
    reasoning: str | None
    usage: Usage
    finish_reason: str | None
    model: str
    rate_limits: RateLimits | None = None
    cached: bool = False
    refusal: str | None = None
    tool_calls: int = 0


@attrs.frozen(kw_only=True)
class EmbeddingResponse:
    """The vectors of one embeddings request, one per input, in input order.

    Attributes:
      vectors: the embeddings, as lists of floats.
      usage: tokens spent (``input_tokens``; embeddings generate no output tokens).
      rate_limits: what the answer's headers said about the endpoint's budgets, or ``None``.
    """

    vectors: list[list[float]]
    usage: Usage
    rate_limits: RateLimits | None = None


def resolve_api_key(env_var: str | None) -> str | None:
    """Read an API key from the environment variable named ``env_var``.

    Args:
      env_var: the variable's *name* (a provider's ``api_key_env``), or ``None`` for endpoints
        that need no key.

    Returns:
      The key, or ``None`` when ``env_var`` is ``None``.

    Raises:
      ConfigError: if the variable is not set or is empty. The message names the variable,
        never a value.
    """
    if env_var is None:
        return None
    key = os.environ.get(env_var)
    if not key:
        state = "is not set" if key is None else "is empty"
        raise ConfigError(
            f"api_key_env: the environment variable {env_var!r} {state}; export the API key "
            f"in it, or remove api_key_env if the endpoint needs no key"
        )
    return key


class _MalformedResponse(Exception):
    """A success status whose body we cannot use; ``args[0]`` says what is wrong."""


class OpenAICompatibleClient:
    """A client for one OpenAI-compatible endpoint, safe to share between many tasks.

    Args:
      base_url: the API root, including the version segment (``"https://api.openai.com/v1"``,
        ``"http://127.0.0.1:8000/v1"``); requests go to ``<base_url>/chat/completions`` etc.
      api_key: sent as ``Authorization: Bearer <key>`` when given; see :func:`resolve_api_key`.
      max_connections: the connection pool's size; match it to the concurrency the limiters
        allow for this endpoint, so requests never queue for a connection.
      timeout: seconds allowed for each request, from connecting to the last byte of the
        answer (waiting for a free connection of the pool is not counted).
      max_response_bytes: the most bytes of answer body accepted (after decoding gzip).
      extra_headers: sent with every request (e.g. ``{"OpenAI-Organization": "..."}``).
        Values under names that look sensitive (``auth``, ``key``, ``token``...) are redacted
        from error messages like the key.
      transport_retry: how often and how patiently to retry 502/503/504 and broken
        connections; ``BackoffPolicy(max_attempts=1)`` turns these retries off.
      name: the provider's name, used in error messages and logs.
      transport: ``"native"`` (our HTTP/1.1 pool, the default) or ``"httpx"`` (for SOCKS
        or https proxies, HTTP/2); both keep the same contract (:mod:`._transport`).
      http2: offer HTTP/2 to ``https`` endpoints; only with ``transport="httpx"``.
      api_key_env: the name of the environment variable the key came from, for messages.
      fail_fast: raise :class:`~trio_designer.ProviderError` when a request cannot connect (or
        gets 401/403) before any request was answered (see the module docstring); without it
        those are the usual :class:`ModelConnectionError` / :class:`ModelRequestError`.

    Raises:
      ConfigError: if ``base_url`` is not an http(s) URL, ``max_connections < 1``,
        ``timeout <= 0``, ``max_response_bytes < 1``, an extra header is not valid HTTP, the
        transport is unknown, ``http2`` is asked of the native one, or the environment names
        a proxy the transport cannot use (the message names the remedy).

    Proxies from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``) are honoured except for loopback addresses, so the embedded simulator is
    always reached directly. Redirects are not followed: a 3xx means the base URL is wrong, and
    is reported as such. TLS certificates are verified (``SSL_CERT_FILE``/``SSL_CERT_DIR``,
    else certifi's bundle when installed, else the system's).

    Close it with :meth:`aclose`, or use it as an async context manager.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        max_connections: int = 16,
        timeout: float = 60.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        extra_headers: Mapping[str, str] | None = None,
        transport_retry: BackoffPolicy = BackoffPolicy(),  # noqa: B008 (frozen value)
        name: str = "",
        transport: str = "native",
        http2: bool = False,
        api_key_env: str | None = None,
        fail_fast: bool = False,
    ) -> None:
        where = _label_for(name, base_url)
        try:
            origin, self._base_path = parse_origin(base_url)
        except ValueError as exc:
            raise ConfigError(f"{where}: base_url {base_url!r} {_url_problem(exc)}") from exc
        _check_positive(
            name,
            max_connections=max_connections,
            timeout=timeout,
            max_response_bytes=max_response_bytes,
        )
        headers = [
            ("user-agent", _USER_AGENT),
            ("accept", "application/json"),
            ("accept-encoding", "gzip, deflate"),
            *(extra_headers or {}).items(),
        ]
        if api_key:
            headers.append(("authorization", f"Bearer {api_key}"))
        _check_request_parts(where, base_url, self._base_path, headers)
        self._get_headers: tuple[tuple[str, str], ...] = tuple(headers)
        self._post_headers = (*headers, ("content-type", "application/json"))
        self._name = name
        self._base_url = base_url
        self._api_key_env = api_key_env
        self._has_key = bool(api_key)
        self._contact = FirstContact()
        self._fail_fast = fail_fast
        self._max_connections = max_connections
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._policy = transport_retry
        self._secrets = _secrets(api_key, extra_headers or {})
        self._wheres: dict[str, str] = {}  # model -> _where(model), for chat_encoded
        self._rng = random.Random(_stable_seed(name, base_url))
        # Requests beyond the pool size wait in the transport for a connection (a FIFO of
        # parked tasks, no deadline: a local wait must never turn into a spurious timeout).
        self._transport = open_transport(
            transport, origin, max_connections=max_connections, http2=http2, where=where
        )

    def __repr__(self) -> str:
        key = "'***'" if self._has_key else "None"
        return (
            f"OpenAICompatibleClient(name={self._name!r}, base_url={self._base_url!r}, "
            f"api_key={key}, max_connections={self._max_connections})"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection. The client cannot be used afterwards.

        Always a checkpoint; the connections are closed first, so a cancellation cannot skip
        the cleanup.
        """
        await self._transport.aclose()

    @property
    def base_url(self) -> str:
        """The API root requests go to (as given)."""
        return self._base_url

    def statistics(self) -> TransportStatistics:
        """The transport's counts: slots ``in_use``, requests ``waiting``, connections
        ``opened``."""
        return self._transport.statistics()

    async def warm_up(self, connections: int) -> int:
        """Open up to ``connections`` connections (and TLS sessions) before the first request
        needs them; failures are left for the requests to meet. No request is sent. Returns
        how many were opened (see :meth:`~._http.ConnectionPool.open_idle`). Only the native
        transport opens connections ahead; the httpx one opens none (0)."""
        if isinstance(self._transport, ConnectionPool):
            return await self._transport.open_idle(connections, timeout=self._timeout)
        await trio.lowlevel.checkpoint()
        return 0

    def sending(self) -> int:
        """Requests connecting or writing (native transport; 0 for httpx)."""
        if isinstance(self._transport, ConnectionPool):
            return self._transport.sending
        return 0

    async def top_up(self) -> int:
        """Open connections during a run's first wait for answers (see
        :meth:`~._http.ConnectionPool.top_up`); the httpx transport opens none (0)."""
        if isinstance(self._transport, ConnectionPool):
            return await self._transport.top_up(timeout=self._timeout)
        await trio.lowlevel.checkpoint()
        return 0

    def first_contact(self) -> FirstContactStatistics:
        """How the provider's first requests went (see :meth:`_request`)."""
        return self._contact.statistics()

    # ----------------------------------------------------------------------------------------
    # Endpoints
    # ----------------------------------------------------------------------------------------

    async def chat(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        response_format: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        # Each attempt's whole-request deadline, not one for the whole call with its retries
        # (that would be the caller's trio.fail_after).
        timeout: float | None = None,  # noqa: ASYNC109
        max_response_bytes: int | None = None,
    ) -> ChatResponse:
        """Send one chat completion request and return its first choice.

        Parameters left at ``None`` are not sent, so the server's defaults apply.
        ``extra_body`` is merged into the JSON body last, so it can set anything the server
        understands (``{"seed": 1}``, ``{"chat_template_kwargs": ...}``) and overrides the
        fields above, like the OpenAI SDK's ``extra_body``.

        Args:
          model: the model name as the endpoint knows it (not our alias).
          messages: OpenAI chat messages (``{"role": ..., "content": ...}``).
          temperature: sampling temperature.
          top_p: nucleus sampling.
          max_tokens: the most tokens to generate.
          response_format: e.g. ``{"type": "json_schema", "json_schema": {...}}``.
          extra_body: extra JSON fields.
          timeout: seconds for each attempt (connect to last byte), instead of the client's.
          max_response_bytes: the cap on the answer's body, instead of the client's.

        Returns:
          The content, reasoning, usage, finish reason (``"length"``: cut off at
          ``max_tokens``) and answering model.

        Raises:
          ModelRateLimitedError: on 429 (never retried here).
          ModelTimeoutError: on 408, or no complete answer within ``timeout``.
          ModelServerError: on 5xx (502/503/504 after the transport retries), or a success
            status whose body is not a chat completion (``status`` is then 200).
          ModelConnectionError: when the connection failed on every attempt.
          ModelRequestError: when a retry cannot help (see ``reason``; an answer above
            ``max_response_bytes`` is ``"response_too_large"``).
        """
        body = encode_chat_body(
            model, messages, temperature, top_p, max_tokens, response_format, extra_body
        )
        return await self.chat_encoded(
            model=model, body=body, timeout=timeout, max_response_bytes=max_response_bytes
        )

    async def chat_encoded(
        self,
        *,
        model: str,
        body: bytes,
        timeout: float | None = None,  # noqa: ASYNC109 (see chat)
        max_response_bytes: int | None = None,
        retry_statuses: bool = True,
    ) -> ChatResponse:
        """:meth:`chat` with the JSON body already encoded (by :class:`ChatBodies` or
        :func:`encode_chat_body`): ``body`` is sent as it is, byte for byte. The model
        registry builds a body once and uses the same bytes for the response cache's key and,
        on a miss, for the request. ``model`` must be the body's ``model`` (it names the
        model in errors and stands in for an answer that names none). Raises as :meth:`chat`.

        ``retry_statuses=False``: a 502/503/504 is raised at once (a :class:`ModelServerError`
        carrying the server's ``Retry-After``), for a caller that waits without holding a
        limiter slot (:meth:`status_retry_delay` says how long); broken connections are still
        retried here.
        """
        where = self._wheres.get(model)
        if where is None:
            where = self._wheres[model] = self._where(model)
        response = await self._request(
            "POST",
            "/chat/completions",
            where,
            body,
            timeout,
            max_response_bytes,
            model,
            retry_statuses=retry_statuses,
        )
        # The usual answer (a JSON object with a text message) is read in one pass and built
        # once (_chat_reply); anything else, and every error, goes through the general parse.
        try:
            data = _decoded_json(response.body)
        except (ValueError, RecursionError):
            data = _NOT_READ
        rate_limits = parse_rate_limits(response.headers)
        reply = _chat_reply(data, model, rate_limits)
        if reply is None:
            reply = self._parse(response, where, lambda data: _chat_response(data, model))
            reply = attrs.evolve(reply, rate_limits=rate_limits)
        if self._secrets:
            reply = _without_secrets(reply, self._secrets)
        return reply

    async def probe(
        self,
        *,
        model: str,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (see chat)
        max_response_bytes: int | None = None,
    ) -> ProbeAnswer:
        """Send one small chat request, once (no retries), and report what came back.

        For checking an endpoint before a run (``trio-designer check``): the request is what a
        run sends for ``model`` (pass the model's inference parameters, timeout and size cap),
        with a prompt asking for one word. Never raises for what the endpoint does; every
        outcome is in the answer. Does not count towards failing fast.

        Returns:
          The status (``None`` without an answer), the response headers, the seconds from
          sending to the last byte, and the error a chat request would have raised (``None``
          for a usable chat completion).
        """
        body = _chat_body(model, _PROBE_MESSAGES, temperature, top_p, max_tokens, None, extra_body)
        where = self._where(model)
        start = trio.current_time()
        try:
            response = await self._transport.request(
                "POST",
                self._base_path + "/chat/completions",
                self._post_headers,
                _json_bytes(body),
                timeout=self._timeout if timeout is None else timeout,
                max_body=(
                    self._max_response_bytes if max_response_bytes is None else max_response_bytes
                ),
            )
        except HTTPError as exc:
            failure: Exception = error_from_transport(exc, where=where, secrets=self._secrets)
            if isinstance(exc, ConnectFailed | ProxyFailed):
                failure = self._provider_error(model, transport=exc, consequence="")
            return ProbeAnswer(
                status=exc.status if isinstance(exc, ResponseTooLarge) else None,
                headers={},
                elapsed=trio.current_time() - start,
                error=failure,
                answered=isinstance(exc, DecodingFailed | ProtocolViolation | ResponseTooLarge),
            )
        elapsed = trio.current_time() - start
        problem: Exception | None = None
        if response.status in (401, 403):
            problem = self._provider_error(
                model, status=response.status, body=response.text(), consequence=""
            )
        elif not response.is_success:
            problem = self._status_error(response, where, "/chat/completions")
        else:
            try:
                self._parse(response, where, lambda data: _chat_response(data, model))
            except GenerationError as exc:
                problem = exc
        return ProbeAnswer(
            status=response.status, headers=response.headers, elapsed=elapsed, error=problem
        )

    async def embeddings(
        self, *, model: str, inputs: Sequence[str], dimensions: int | None = None
    ) -> list[list[float]]:
        """Embed ``inputs``, returning one vector per input, in input order.

        An empty ``inputs`` returns ``[]`` without a request. Raises the same errors as
        :meth:`chat`; a success whose ``data`` does not hold one numeric vector per input is a
        :class:`ModelServerError` with status 200. :meth:`embed` also returns the usage.
        """
        return (await self.embed(model=model, inputs=inputs, dimensions=dimensions)).vectors

    async def embed(
        self,
        *,
        model: str,
        inputs: Sequence[str],
        dimensions: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (each attempt's deadline, as chat's)
        max_response_bytes: int | None = None,
        retry_statuses: bool = True,
    ) -> EmbeddingResponse:
        """One ``POST <base_url>/embeddings`` request: the vectors of ``inputs`` (in input
        order), the usage and the rate-limit headers. Errors as :meth:`embeddings`;
        ``retry_statuses`` as :meth:`chat_encoded`'s."""
        if not inputs:
            await trio.lowlevel.checkpoint()
            return EmbeddingResponse(vectors=[], usage=Usage())
        body: dict[str, Any] = {"model": model, "input": list(inputs)}
        if dimensions is not None:
            body["dimensions"] = dimensions
        where = self._where(model)
        response = await self._request(
            "POST",
            "/embeddings",
            where,
            body,
            timeout,
            max_response_bytes,
            model,
            retry_statuses=retry_statuses,
        )
        reply = self._parse(response, where, lambda data: _embedding_response(data, len(inputs)))
        return attrs.evolve(reply, rate_limits=parse_rate_limits(response.headers))

    async def post_json(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        model: str,
        timeout: float | None = None,  # noqa: ASYNC109 (each attempt's, as in chat)
    ) -> Any:
        """POST ``body`` as JSON to ``<base_url><path>`` and return the parsed JSON answer,
        through the same retries and error mapping as :meth:`chat` (a remote validator's
        batches). Raises the same errors as :meth:`chat`."""
        where = self._where(model)
        response = await self._request("POST", path, where, dict(body), timeout, None, model)
        return self._parse(response, where, lambda data: data)

    async def list_models(self) -> list[str]:
        """The model ids the endpoint serves (``GET <base_url>/models``), in its order."""
        where = self._label()
        response = await self._request("GET", "/models", where, None, None, None, None)
        return self._parse(response, where, _model_ids)

    # ----------------------------------------------------------------------------------------
    # The request loop
    # ----------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        where: str,
        body: Any,
        timeout: float | None,  # noqa: ASYNC109 (see chat)
        max_response_bytes: int | None,
        model: str | None,
        *,
        retry_statuses: bool = True,
    ) -> Response:
        """Send, retrying 502/503/504 (unless ``retry_statuses`` is false) and connection
        errors; return a success response.

        Every failure leaves through :mod:`._errors`, chained from the transport's exception
        (for error statuses, an :class:`~._transport.HTTPStatusError` carrying the response).
        Every answer, and every final connection failure, is shown to the provider's
        :class:`FirstContact`; when it says nothing can work, :class:`ProviderError` is raised
        instead (chained from the error the request would have raised).
        """
        # Bytes are an encoded body (chat_encoded), sent as they are.
        content = b"" if body is None else body if type(body) is bytes else _json_bytes(body)
        headers = self._get_headers if body is None else self._post_headers
        target = self._base_path + path
        deadline = self._timeout if timeout is None else timeout
        limit = self._max_response_bytes if max_response_bytes is None else max_response_bytes
        attempt = 1
        while True:
            try:
                response = await self._transport.request(
                    method, target, headers, content, timeout=deadline, max_body=limit
                )
            except HTTPError as exc:
                error = error_from_transport(exc, where=where, secrets=self._secrets)
                if not self._retries_transport_error(error, attempt):
                    self._judge_failure(exc, error, attempt, model, deadline)
                    raise error from exc
                delay = self._policy.delay(attempt, self._rng)
            else:
                self._judge_answer(response, model, path)
                if response.is_success:
                    return response
                error = self._status_error(response, where, path)
                if not retry_statuses and isinstance(error, ModelServerError):
                    if response.status in RETRY_STATUSES:
                        error.retry_after = retry_after_from_headers(
                            response.headers, now=datetime.now(UTC)
                        )
                    raise error from _status_exception(response)
                if not self._retries_status(error, response.status, attempt):
                    raise error from _status_exception(response)
                delay = self._status_delay(attempt, response.headers)
            logger.info(
                "Retrying the request in %.2f s (attempt %d of %d) after: %s",
                delay,
                attempt + 1,
                self._policy.max_attempts,
                error,
            )
            await trio.sleep(delay)
            attempt += 1

    def _judge_answer(self, response: Response, model: str | None, path: str) -> None:
        """Show an answer to :class:`FirstContact`; raise :class:`ProviderError` for a 401/403
        before anything worked, or a 404 before anything worked for ``model``."""
        status = response.status
        outcome: Outcome = (
            "rejected" if status in (401, 403) else "not_found" if status == 404 else "answered"
        )
        if self._contact.record(outcome, model) and self._fail_fast:
            raise self._provider_error(
                model,
                status=status,
                body=response.text(),
                url=self._base_url.rstrip("/") + path,
            ) from _status_exception(response)

    def _judge_failure(
        self,
        exc: HTTPError,
        error: GenerationError,
        attempt: int,
        model: str | None,
        timeout: float | None,
    ) -> None:
        """Show a final transport failure to :class:`FirstContact`; raise
        :class:`ProviderError` for no connection, or a third timeout, before anything
        worked."""
        outcome: Outcome = (
            "unreachable"
            if isinstance(exc, ConnectFailed | ProxyFailed)
            else "timed_out"
            if isinstance(error, ModelTimeoutError)
            else "inconclusive"
        )
        if self._contact.record(outcome) and self._fail_fast:
            if outcome == "timed_out":
                raise self._provider_error(model, silent_after=timeout) from error
            raise self._provider_error(model, transport=exc, attempts=attempt) from error

    def _provider_error(
        self,
        model: str | None,
        *,
        transport: HTTPError | None = None,
        status: int | None = None,
        body: str = "",
        attempts: int = 1,
        url: str | None = None,
        consequence: str = "nothing sent to it has worked, so the run stops",
        silent_after: float | None = None,
    ) -> Exception:
        return provider_error(
            silent_after=silent_after,
            url=url,
            consequence=consequence,
            provider=self._name,
            base_url=self._base_url,
            api_key_env=self._api_key_env,
            has_key=self._has_key,
            model=model,
            transport=transport,
            status=status,
            body=body,
            attempts=attempts,
            secrets=self._secrets,
        )

    def _retries_transport_error(self, error: GenerationError, attempt: int) -> bool:
        return isinstance(error, ModelConnectionError) and attempt < self._policy.max_attempts

    def _retries_status(self, error: GenerationError, status: int, attempt: int) -> bool:
        # The class check matters: a 503 whose body is about billing is a quota error.
        return (
            isinstance(error, ModelServerError)
            and status in RETRY_STATUSES
            and attempt < self._policy.max_attempts
        )

    @property
    def transport_retry(self) -> BackoffPolicy:
        """How often and how patiently 502/503/504 and broken connections are retried."""
        return self._policy

    def status_retry_delay(self, error: ModelServerError, attempt: int) -> float | None:
        """How long to wait before sending again a request answered ``error`` (raised with
        ``retry_statuses=False``) after ``attempt`` attempts: the backoff of the client's own
        retries, lengthened to the server's ``Retry-After`` (capped); ``None`` when it is not
        to be retried (not a 502/503/504, or the attempts are used up)."""
        if error.status not in RETRY_STATUSES or attempt >= self._policy.max_attempts:
            return None
        delay = self._policy.delay(attempt, self._rng)
        hint = error.retry_after
        return delay if hint is None else max(delay, min(hint, self._policy.cap))

    def _status_delay(self, attempt: int, headers: Mapping[str, str]) -> float:
        """Backoff, lengthened to the server's ``Retry-After`` (capped by the policy)."""
        delay = self._policy.delay(attempt, self._rng)
        hint = retry_after_from_headers(headers, now=datetime.now(UTC))
        return delay if hint is None else max(delay, min(hint, self._policy.cap))

    def _status_error(self, response: Response, where: str, path: str) -> GenerationError:
        error = error_from_status(
            response.status,
            response.text(),
            response.headers,
            now=datetime.now(UTC),
            where=where,
            secrets=self._secrets,
            url=self._base_url.rstrip("/") + path,
        )
        if isinstance(error, ModelRateLimitedError):
            error.rate_limits = parse_rate_limits(response.headers)
        return error

    def _parse(self, response: Response, where: str, parse: Callable[[Any], _T]) -> _T:
        """Apply ``parse`` to the JSON body; an unusable body is a retryable server error."""
        try:
            data = json.loads(response.body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            problem = _not_json_problem(response)
            raise self._malformed(response, where, problem) from exc
        except RecursionError as exc:  # [[[[...]]]] nested past Python's stack
            problem = "the body is JSON nested too deeply to read"
            raise self._malformed(response, where, problem) from exc
        try:
            return parse(data)
        except _MalformedResponse as exc:
            raise self._malformed(response, where, str(exc)) from exc

    def _malformed(self, response: Response, where: str, problem: str) -> GenerationError:
        return error_from_malformed_response(
            response.status, problem, response.text(), where=where, secrets=self._secrets
        )

    # ----------------------------------------------------------------------------------------
    # Names for messages
    # ----------------------------------------------------------------------------------------

    def _label(self) -> str:
        return f"provider {self._name!r}" if self._name else f"the endpoint at {self._base_url}"

    def _where(self, model: str) -> str:
        if self._name:
            return f"model {model!r} at provider {self._name!r}"
        return f"model {model!r} at {self._base_url}"


# --------------------------------------------------------------------------------------------
# Construction helpers
# --------------------------------------------------------------------------------------------


def open_transport(
    kind: str, origin: Origin, *, max_connections: int, http2: bool, where: str
) -> Transport:
    """The transport named ``kind`` for ``origin`` (``where`` names the provider in errors).

    Raises:
      ConfigError: ``kind`` is unknown, ``http2`` with the native transport, or the transport
        refuses the setup (a proxy it cannot use, a missing optional package); the message
        says what to do.
    """
    if kind not in TRANSPORT_KINDS:
        choices = " or ".join(repr(k) for k in TRANSPORT_KINDS)
        raise ConfigError(f"{where}: transport must be {choices}, got {kind!r}")
    try:
        if kind == "httpx":
            # Imported on use: httpx (and the rich it pulls in) is ~0.2 s of every process's
            # start-up, a shard's child included, and the native transport is the default.
            from ._httpx_transport import HttpxTransport

            return HttpxTransport(origin, max_connections=max_connections, http2=http2)
        if http2:
            raise ValueError(
                "http2 needs transport 'httpx' (the native transport speaks HTTP/1.1 only)"
            )
        return ConnectionPool(
            origin,
            max_connections=max_connections,
            keepalive_expiry=DEFAULT_KEEPALIVE_EXPIRY,
            proxy=proxy_for(origin),
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _label_for(name: str, base_url: str) -> str:
    return f"provider {name!r}" if name else f"the model endpoint at {base_url!r}"


def _url_problem(exc: ValueError) -> str:
    text = str(exc)
    if "scheme" in text or "no host" in text:
        return (
            "must be an http:// or https:// URL with a host, such as "
            "'https://api.openai.com/v1' or 'http://127.0.0.1:8000/v1'"
        )
    return f"is not a valid URL ({text})"


def _check_positive(
    name: str, *, max_connections: int, timeout: float, max_response_bytes: int
) -> None:
    where = _label_for(name, "")
    if max_connections < 1:
        raise ConfigError(f"{where}: max_connections must be >= 1, got {max_connections}")
    if not timeout > 0:
        raise ConfigError(f"{where}: timeout must be > 0 seconds, got {timeout}")
    if max_response_bytes < 1:
        raise ConfigError(f"{where}: max_response_bytes must be >= 1, got {max_response_bytes}")


def _check_request_parts(
    where: str, base_url: str, base_path: str, headers: Sequence[tuple[str, str]]
) -> None:
    """Let h11 validate the path and headers now, so a bad one is a ConfigError before any
    request. Messages name the header, never its value (it may be a secret)."""
    try:
        h11.Request(method="POST", target=f"{base_path}/chat/completions", headers=[("host", "x")])
    except h11.LocalProtocolError:
        raise ConfigError(
            f"{where}: base_url {base_url!r} has a path that is not valid in an HTTP request "
            f"(percent-encode spaces and other special characters)"
        ) from None
    for header, value in headers:
        try:
            h11.Request(method="GET", target="/", headers=[("host", "x"), (header, value)])
        except h11.LocalProtocolError:
            if header == "authorization":
                problem = "the API key contains characters that are not allowed in an HTTP header"
            else:
                problem = (
                    f"extra_headers: {header!r} is not a valid HTTP header name and value (no "
                    f"line breaks or control characters; names are letters, digits and "
                    f"-!#$%&'*+.^_`|~)"
                )
            raise ConfigError(f"{where}: {problem}") from None


def _secrets(api_key: str | None, extra_headers: Mapping[str, str]) -> tuple[str, ...]:
    """The strings never to show: the key, and values of sensitive-looking extra headers."""
    found = [api_key] if api_key else []
    for header, value in extra_headers.items():
        if value and any(part in header.lower() for part in _SENSITIVE_HEADER_PARTS):
            found.append(value)
            # "Bearer xyz" -> also hide "xyz" alone, in case a server echoes only the token.
            found.extend(word for word in value.split()[1:] if len(word) >= 8)
    # Longest first, so a secret containing another is replaced whole.
    return tuple(sorted(set(found), key=len, reverse=True))


def _stable_seed(name: str, base_url: str) -> int:
    digest = hashlib.blake2b(f"{name}\x00{base_url}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


_PROBE_MESSAGES: Final = ({"role": "user", "content": "Reply with the single word OK."},)


def _chat_body(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    temperature: float | None,
    top_p: float | None,
    max_tokens: int | None,
    response_format: Mapping[str, Any] | None,
    extra_body: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A chat completion request body; parameters left at ``None`` are not sent, and
    ``extra_body`` is merged last."""
    body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
    optional = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
    body.update({k: v for k, v in optional.items() if v is not None})
    if response_format is not None:
        body["response_format"] = dict(response_format)
    body.update(extra_body or {})
    return body


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def encode_chat_body(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    temperature: float | None,
    top_p: float | None,
    max_tokens: int | None,
    response_format: Mapping[str, Any] | None,
    extra_body: Mapping[str, Any] | None,
) -> bytes:
    """The bytes of a chat completion request body: compact JSON (UTF-8, no whitespace) of
    :func:`_chat_body`'s dictionary, fields in its order."""
    return _json_bytes(
        _chat_body(model, messages, temperature, top_p, max_tokens, response_format, extra_body)
    )


_BODY_FIELDS: Final = frozenset(
    {"model", "messages", "temperature", "top_p", "max_tokens", "response_format"}
)


class ChatBodies:
    """:func:`encode_chat_body`, byte for byte, built in one pass with the response formats'
    text kept.

    A body is written field by field with one reusable C encoder (no intermediate dictionary,
    no copy of the messages). A column passes the same ``response_format`` object (a schema,
    often the largest part of the body) with every request, so its text is kept by identity
    for the last few formats seen (the object is kept alive with its text, so its ``id``
    cannot be reused; callers never mutate a response format they pass: the generators build
    theirs once, read-only). Anything unusual — messages that are not a list of dicts, an
    ``extra_body`` that overrides one of the fields above, a value JSON cannot encode — takes
    :func:`encode_chat_body` itself. ``tests/test_cache_store.py`` compares the two.
    """

    _MEMO_SIZE: Final = 64

    def __init__(self) -> None:
        self._formats: dict[int, tuple[object, str]] = {}

    def encode(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        temperature: float | None,
        top_p: float | None,
        max_tokens: int | None,
        response_format: Mapping[str, Any] | None,
        extra_body: Mapping[str, Any] | None,
    ) -> bytes:
        """The body's bytes (see the class docstring)."""
        try:
            return self._encode(
                model, messages, temperature, top_p, max_tokens, response_format, extra_body
            )
        except (TypeError, ValueError):
            pass  # the general path below decides (and words any error)
        return encode_chat_body(
            model, messages, temperature, top_p, max_tokens, response_format, extra_body
        )

    def _encode(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        temperature: float | None,
        top_p: float | None,
        max_tokens: int | None,
        response_format: Mapping[str, Any] | None,
        extra_body: Mapping[str, Any] | None,
    ) -> bytes:
        if type(messages) is not list and type(messages) is not tuple:
            raise TypeError
        for message in messages:
            if type(message) is not dict:
                raise TypeError
        head, tail = self._parts(model, temperature, top_p, max_tokens, response_format, extra_body)
        return (head + compact_text(messages) + tail).encode("utf-8")

    def template(
        self,
        model: str,
        temperature: float | None,
        top_p: float | None,
        max_tokens: int | None,
        response_format: Mapping[str, Any] | None,
        extra_body: Mapping[str, Any] | None,
        *,
        seeded: bool,
    ) -> BodyTemplate | None:
        """The body's fixed parts, encoded once, for requests that differ only in their
        messages and (``seeded``) their ``seed``: everything but the messages when
        ``seeded`` is false; else ``extra_body`` without a ``seed`` field, to which each
        request's seed is added last, as :func:`_with_seed` in ``models/_registry.py`` adds
        it. ``None`` when such a body takes :func:`encode_chat_body`'s general path (an
        ``extra_body`` that overrides a field, a value the C encoder refuses) — or when the
        template does not give :meth:`encode`'s bytes for a sample request (checked here, once:
        a template is never trusted on its own reasoning alone).
        """
        if seeded and extra_body and "seed" in extra_body:
            return None  # the user's seed wins: not a per-request field
        probe: dict[str, Any] = dict(extra_body or {})
        if seeded:
            probe["seed"] = 0
        try:
            head, tail = self._parts(
                model, temperature, top_p, max_tokens, response_format, probe or None
            )
        except (TypeError, ValueError):
            return None
        if seeded:
            if not tail.endswith('"seed":0}'):
                return None
            tail = tail[:-2]  # up to the seed's value; the closing brace follows it
        made = BodyTemplate(head, tail, seeded=seeded)
        sample = [{"role": "user", "content": 'a "sample" \u2028 é \n'}]
        sample_extra = dict(extra_body or {})
        if seeded:
            sample_extra["seed"] = 1234567
        expected = self.encode(
            model, sample, temperature, top_p, max_tokens, response_format, sample_extra or None
        )
        if made.body(sample, 1234567 if seeded else None) != expected:
            return None
        return made

    def _parts(
        self,
        model: str,
        temperature: float | None,
        top_p: float | None,
        max_tokens: int | None,
        response_format: Mapping[str, Any] | None,
        extra_body: Mapping[str, Any] | None,
    ) -> tuple[str, str]:
        """:meth:`_encode`'s text before the messages' value and after it."""
        encode = compact_text
        head = '{"model":' + encode(model) + ',"messages":'
        parts: list[str] = []
        if temperature is not None:
            parts += (',"temperature":', encode(temperature))
        if top_p is not None:
            parts += (',"top_p":', encode(top_p))
        if max_tokens is not None:
            parts += (',"max_tokens":', encode(max_tokens))
        if response_format is not None:
            parts += (',"response_format":', self._format(response_format))
        if extra_body:
            if type(extra_body) is not dict or not _BODY_FIELDS.isdisjoint(extra_body):
                raise TypeError
            parts += (",", encode(extra_body)[1:])  # its fields, and the closing brace
        else:
            parts.append("}")
        return head, "".join(parts)

    def _format(self, response_format: Mapping[str, Any]) -> str:
        known = self._formats.get(id(response_format))
        if known is not None and known[0] is response_format:
            return known[1]
        text = compact_text(dict(response_format))
        if len(self._formats) >= self._MEMO_SIZE:
            self._formats.clear()
        self._formats[id(response_format)] = (response_format, text)
        return text


class BodyTemplate:
    """A chat body's fixed text (:meth:`ChatBodies.template`): per request only the messages
    are encoded (one C call) and the seed written, between the fixed text around them.

    ``body(messages, seed)`` is :meth:`ChatBodies.encode`'s bytes for the template's fields,
    those ``messages`` and, when seeded, ``extra_body`` plus ``{"seed": seed}`` — or ``None``
    for a request the template does not cover (messages that are not a list of dicts, a
    seed that is not an ``int``, a value the encoder refuses): the caller then encodes the
    body in full. ``tests/test_cache_store.py`` checks the equality for arbitrary text
    (hypothesis: unicode, quotes, control characters, lone surrogates).
    """

    __slots__ = ("_head", "_seeded", "_tail")

    def __init__(self, head: str, tail: str, *, seeded: bool) -> None:
        self._head = head
        self._tail = tail
        self._seeded = seeded

    def body(self, messages: Sequence[Mapping[str, Any]], seed: int | None) -> bytes | None:
        if type(messages) is not list and type(messages) is not tuple:
            return None
        for message in messages:
            if type(message) is not dict:
                return None
        try:
            text = compact_text(messages)
        except (TypeError, ValueError, RecursionError):
            return None
        if not self._seeded:
            full = self._head + text + self._tail
        elif type(seed) is int:
            full = f"{self._head}{text}{self._tail}{seed}}}"
        else:
            return None
        try:
            return full.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: the general path words the error
            return None


def _not_json_problem(response: Response) -> str:
    """What is wrong with a success body that is not JSON, as a clause; says so when the
    server streamed (server-sent events) although no stream was asked for."""
    content_type = response.headers.get("content-type", "").lower()
    if "text/event-stream" in content_type or response.body.lstrip().startswith(b"data:"):
        return (
            "the body is a stream of server-sent events, not one JSON answer (trio_designer "
            "never asks for a stream: check that the model's extra_body does not set 'stream', "
            "and the server or proxy does not force streaming)"
        )
    return "the body is not valid JSON"


def _without_secrets(reply: ChatResponse, secrets: Sequence[str]) -> ChatResponse:
    """``reply`` with every secret (the API key, sensitive extra headers) in its text replaced
    by ``***``: a server that echoes the request's headers into its answer must not put the key
    into the dataset. Only the exact secrets are replaced (unlike error messages, no
    ``Bearer <token>`` pattern: an answer may legitimately talk about one)."""
    content, reasoning = reply.content, reply.reasoning
    for secret in secrets:
        if secret in content:
            content = content.replace(secret, "***")
        if reasoning is not None and secret in reasoning:
            reasoning = reasoning.replace(secret, "***")
    if content is reply.content and reasoning is reply.reasoning:
        return reply
    return attrs.evolve(reply, content=content, reasoning=reasoning)


def _status_exception(response: Response) -> HTTPStatusError:
    """The exception our error for an error status is chained from: it carries the response."""
    return HTTPStatusError(f"HTTP {response.status}", response=response)


def _count(value: Any) -> int:
    """A token count, or 0 for anything that is not a non-negative integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


def _first_present(mapping: Mapping[str, Any], first: str, second: str) -> Any:
    """``mapping[first]`` unless it is missing or ``None``, else ``mapping.get(second)``."""
    value = mapping.get(first)
    return mapping.get(second) if value is None else value


def _is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, with decoded JSON's ``dict`` first (the ABC check costs
    about a microsecond, and an answer's parse makes half a dozen)."""
    return type(value) is dict or isinstance(value, Mapping)


def _usage(raw: Any) -> Usage:
    """Token counts from OpenAI (``prompt_tokens``) or Responses-style (``input_tokens``) names."""
    if not _is_mapping(raw):
        return Usage()
    details = _first_present(raw, "completion_tokens_details", "output_tokens_details")
    reasoning = details.get("reasoning_tokens") if _is_mapping(details) else None
    prompt_details = _first_present(raw, "prompt_tokens_details", "input_tokens_details")
    cached = prompt_details.get("cached_tokens") if _is_mapping(prompt_details) else None
    return Usage(
        input_tokens=_count(_first_present(raw, "prompt_tokens", "input_tokens")),
        output_tokens=_count(_first_present(raw, "completion_tokens", "output_tokens")),
        reasoning_tokens=_count(reasoning),
        cached_input_tokens=_count(cached),
    )


def _content(message: Mapping[str, Any]) -> str:
    """``message.content`` as text: a string, ``null`` (→ ``""``), or a list of text parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(_is_mapping(p) for p in content):
        return "".join(str(p["text"]) for p in content if isinstance(p.get("text"), str))
    raise _MalformedResponse("choices[0].message.content is neither text nor a list of parts")


def _reasoning(message: Mapping[str, Any]) -> str | None:
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _chat_response(data: Any, requested_model: str) -> ChatResponse:
    if not _is_mapping(data):
        raise _MalformedResponse("the body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not _is_mapping(choices[0]):
        raise _MalformedResponse("the body has no choices")
    message = choices[0].get("message")
    if not _is_mapping(message):
        raise _MalformedResponse("choices[0] has no message")
    finish_reason = choices[0].get("finish_reason")
    model = data.get("model")
    refusal = message.get("refusal")
    tool_calls = message.get("tool_calls")
    return ChatResponse(
        content=_content(message),
        reasoning=_reasoning(message),
        usage=_usage(data.get("usage")),
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        model=model if isinstance(model, str) and model else requested_model,
        refusal=refusal if isinstance(refusal, str) and refusal.strip() else None,
        tool_calls=len(tool_calls) if isinstance(tool_calls, list) else 0,
    )


# json.loads's scanner (in C) with its default settings; not in typeshed's JSONDecoder.
_SCAN_JSON: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decoded_json(body: bytes) -> Any:
    """``json.loads(body)``: a body that is a UTF-8 JSON object and nothing else (an answer)
    is read by the scanner ``json.loads`` ends in, without its Python layers (encoding
    detection, whitespace matching); anything else — and every error, worded — is
    ``json.loads``'s own. A body starting ``{`` and a non-zero byte is decoded as UTF-8 by
    ``json.loads`` too (``json.detect_encoding``), with ``surrogatepass`` as here
    (``tests/test_model_client.py::test_answers_are_decoded_as_json_loads_decodes_them``)."""
    if body[:1] == b"{":
        try:
            text = body.decode("utf-8", "surrogatepass")
            value, end = _SCAN_JSON(text, 0)
        except (ValueError, StopIteration):  # json.loads below decides, and words the error
            pass
        else:
            if end == len(text):
                return value
    return json.loads(body)


_NOT_READ: Final = object()
"""A body :func:`json.loads` refused: :meth:`OpenAICompatibleClient._parse` words the error."""


def _chat_reply(
    data: Any, requested_model: str, rate_limits: RateLimits | None
) -> ChatResponse | None:
    """:func:`_chat_response` (with ``rate_limits``) for the usual answer, read with direct
    ``dict`` access and built once; ``None`` for anything else (no JSON object, no choices, a
    content that is not text...), which the caller gives to the general parse, so every
    error is worded as before. ``data`` comes from :func:`json.loads`: only ``dict``,
    ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``, so the type checks here
    decide exactly as :func:`_chat_response`'s ``isinstance`` checks
    (``tests/test_client.py::test_the_usual_answer_is_read_as_the_general_parse_reads_it``)."""
    if type(data) is not dict:
        return None
    choices = data.get("choices")
    if type(choices) is not list or not choices:
        return None
    first = choices[0]
    if type(first) is not dict:
        return None
    message = first.get("message")
    if type(message) is not dict:
        return None
    content = message.get("content")
    if content is None:
        content = ""
    elif type(content) is not str:
        return None
    reasoning = message.get("reasoning_content")
    if type(reasoning) is not str or not reasoning:
        reasoning = message.get("reasoning")
        if type(reasoning) is not str or not reasoning:
            reasoning = None
    raw = data.get("usage")
    if type(raw) is dict:
        get = raw.get
        value = get("prompt_tokens")
        input_tokens = get("input_tokens") if value is None else value
        value = get("completion_tokens")
        output_tokens = get("output_tokens") if value is None else value
        details = get("completion_tokens_details")
        if details is None:
            details = get("output_tokens_details")
        reasoning_tokens = details.get("reasoning_tokens") if type(details) is dict else 0
        details = get("prompt_tokens_details")
        if details is None:
            details = get("input_tokens_details")
        cached = details.get("cached_tokens") if type(details) is dict else 0
        usage = Usage(
            input_tokens=input_tokens if type(input_tokens) is int and input_tokens >= 0 else 0,
            output_tokens=(
                output_tokens if type(output_tokens) is int and output_tokens >= 0 else 0
            ),
            reasoning_tokens=(
                reasoning_tokens if type(reasoning_tokens) is int and reasoning_tokens >= 0 else 0
            ),
            cached_input_tokens=cached if type(cached) is int and cached >= 0 else 0,
        )
    else:
        usage = Usage()
    finish_reason = first.get("finish_reason")
    model = data.get("model")
    refusal = message.get("refusal")
    tool_calls = message.get("tool_calls")
    return ChatResponse(
        content=content,
        reasoning=reasoning,
        usage=usage,
        finish_reason=finish_reason if type(finish_reason) is str else None,
        model=model if type(model) is str and model else requested_model,
        rate_limits=rate_limits,
        refusal=refusal if type(refusal) is str and refusal.strip() else None,
        tool_calls=len(tool_calls) if type(tool_calls) is list else 0,
    )


def _vector(item: Any) -> list[float]:
    embedding = item.get("embedding") if isinstance(item, Mapping) else None
    if not isinstance(embedding, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in embedding
    ):
        raise _MalformedResponse("an item of data has no numeric embedding")
    return [float(x) for x in embedding]


def _embedding_vectors(data: Any, expected: int) -> list[list[float]]:
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list) or len(items) != expected:
        count = len(items) if isinstance(items, list) else "no"
        raise _MalformedResponse(f"it holds {count} embeddings for {expected} inputs")
    indices = [item.get("index") if isinstance(item, Mapping) else None for item in items]
    if sorted(i for i in indices if isinstance(i, int)) == list(range(expected)):
        items = [item for _, item in sorted(zip(indices, items, strict=True))]
    return [_vector(item) for item in items]


def _embedding_response(data: Any, expected: int) -> EmbeddingResponse:
    vectors = _embedding_vectors(data, expected)  # data is a mapping from here on
    return EmbeddingResponse(vectors=vectors, usage=_usage(data.get("usage")))


def _model_ids(data: Any) -> list[str]:
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise _MalformedResponse("the body has no data list")
    ids = [item.get("id") if isinstance(item, Mapping) else None for item in items]
    if not all(isinstance(i, str) for i in ids):
        raise _MalformedResponse("an item of data has no string id")
    return [str(i) for i in ids]
