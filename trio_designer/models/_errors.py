"""Turning what the wire says into our exception tree: the one classification boundary.

Everything the model client can see go wrong ends up here, and leaves as one of the
:mod:`trio_designer._exceptions` classes, whose *type* tells the scheduler what to do:

* :class:`~trio_designer._exceptions.ModelRateLimitedError` (429): the adaptive limiter cuts the
  model's concurrency and cools down; the scheduler defers the cell.
* :class:`~trio_designer._exceptions.ModelTimeoutError`,
  :class:`~trio_designer._exceptions.ModelServerError`,
  :class:`~trio_designer._exceptions.ModelConnectionError`: transient; the cell is deferred and
  re-run in a salvage round.
* :class:`~trio_designer._exceptions.ModelRequestError`: a retry cannot help (bad key, unknown
  model, prompt too long, quota exhausted, broken base URL); the row is dropped.

Two entry points: :func:`error_from_status` for a response with a non-success status, and
:func:`error_from_transport` for a failure of the HTTP layer (:mod:`._transport`). The latter
looks the exception's class up in :data:`TRANSPORT_ERROR_TABLE`, which names *every* failure
class that layer exports. Both transports raise only those classes: the native one translates
every exception its streams and h11 can raise, the httpx one every exception class httpx
exports (``tests/test_model_errors.py`` enumerates all of them, ``h11.__all__`` and
``httpx.__all__`` included), so a new h11, trio or httpx release cannot slip an unmapped error
past us. ``docs/errors.md`` is the human-readable version of the same tables.

Messages are one or two sentences: who failed (the model and provider, when the caller passes
``where``), the HTTP status or failure, what to do, and at most 300 characters of what the server
said. Every secret passed in ``secrets`` (the API key, sensitive extra headers) is replaced by
``***`` before anything is formatted, and so is any ``Bearer <token>`` a server echoes back.

Prior art: the reference engine classifies the same signals (quota checked first, 413 and
"context length" bodies as context-window errors, Retry-After as seconds or an HTTP date); it infers
transport failures from exception *names* (``"timeout" in name``), which is exactly what an
explicit table avoids.
"""

from __future__ import annotations

import http
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal, TypeAlias

import attrs

from .._core._firstcontact import SILENT_TIMEOUTS
from .._exceptions import (
    GenerationError,
    ModelConnectionError,
    ModelContentFilteredError,
    ModelRateLimitedError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
    ProviderError,
)
from ._transport import (
    ConnectFailed,
    ConnectionBroken,
    DecodingFailed,
    HTTPError,
    HTTPStatusError,
    InvalidRequest,
    ProtocolViolation,
    ProxyFailed,
    RequestTimedOut,
    ResponseTooLarge,
    ServerHungUp,
    UnsupportedEncoding,
)

__all__ = [
    "DEFAULT_WHERE",
    "EXCERPT_LIMIT",
    "MAX_RETRY_AFTER",
    "TRANSPORT_ERROR_TABLE",
    "TransportRule",
    "error_from_malformed_response",
    "error_from_status",
    "error_from_transport",
    "excerpt",
    "parse_retry_after",
    "provider_error",
    "redact",
    "requested_wait",
    "retry_after_from_headers",
    "transport_rule",
]

EXCERPT_LIMIT: Final = 300
"""The most characters of a server's error message quoted in one of our messages."""

DEFAULT_WHERE: Final = "the model endpoint"

MAX_RETRY_AFTER: Final = 60.0
"""The longest wait, in seconds, that a server's ``Retry-After`` / ``retry-after-ms`` can
impose on one request or one salvage round. A hostile or broken server can say anything
(``Retry-After: 1000000000``, a date in 2100): honoured as it stands, that parks the run for
years. A longer hint is cut to this (the message still quotes what the server asked); a server
that keeps refusing uses up the 429 budget of its cells, whose rows are then dropped, so the run
ends. 60 s is the patience of one request's in-place 429 retries
(:class:`~trio_designer._core._rate_retry.RateLimitRetry`'s ``max_wait``)."""

# --------------------------------------------------------------------------------------------
# Redaction and excerpts
# --------------------------------------------------------------------------------------------

_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;}\]]+")
_WHITESPACE = re.compile(r"\s+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret, and any ``Bearer <token>``, replaced by ``***``.

    Empty secrets are ignored (replacing ``""`` would scatter stars everywhere).
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text)


def excerpt(body: str, secrets: Iterable[str] = ()) -> str:
    """A short, single-line, redacted quote of a server's error body.

    If the body is JSON in one of the usual error shapes (``{"error": {"message": ...}}``,
    ``{"error": "..."}``, ``{"detail": ...}``, ``{"message": ...}``) the message is quoted, else
    the body itself. Whitespace runs collapse to one space; the result has at most
    :data:`EXCERPT_LIMIT` characters, ending in ``…`` when cut. The body is redacted *before*
    it is cut, so a secret straddling the cut cannot leak a prefix.
    """
    text = _WHITESPACE.sub(" ", redact(_server_message(body), secrets)).strip()
    if not text:
        return "(empty body)"
    if len(text) > EXCERPT_LIMIT:
        text = text[: EXCERPT_LIMIT - 1].rstrip() + "…"
    return text


def _server_message(body: str) -> str:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON; JSON nested past the stack
        return body
    found = _find_message(data)
    return body if found is None else found


def _find_message(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    for key in ("error", "detail", "message", "msg"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, dict):
            nested = _find_message(value)
            if nested is not None:
                return nested
        if isinstance(value, list) and value:  # FastAPI-style validation details
            return json.dumps(value, ensure_ascii=False)
    return None


def _sentence_start(where: str) -> str:
    return where[:1].upper() + where[1:]


# --------------------------------------------------------------------------------------------
# Retry-After
# --------------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or ``None``.

    HTTP allows two forms (RFC 9110 §10.2.3): a number of seconds (``"120"``; we also accept
    decimals such as ``"1.5"``) and an HTTP date (``"Wed, 21 Oct 2015 07:28:00 GMT"``), which
    is turned into ``date - now``. Either way the result is clamped to ``>= 0`` — a date in the
    past means "now". There is no upper clamp here (this is the server's word, quoted in
    messages); :func:`retry_after_from_headers`, which the client acts on, caps it at
    :data:`MAX_RETRY_AFTER`.

    Args:
      value: the header value, or ``None`` when the header is absent.
      now: the current wall-clock time; a naive datetime is taken to be UTC.

    Returns:
      The delay in seconds, or ``None`` if the value is absent, empty, not finite, or neither
      a number nor a date.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        when = _seconds_until_http_date(text, now)
        if when is None and "," in text:  # a repeated header, joined: "5, 7"
            return parse_retry_after(text.split(",", 1)[0], now=now)
        return when
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _seconds_until_http_date(text: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, (_as_utc(when) - _as_utc(now)).total_seconds())


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that also works for plain dicts."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def retry_after_from_headers(headers: Mapping[str, str], *, now: datetime) -> float | None:
    """The wait the client honours, in seconds: the server's hint
    (:func:`requested_wait`) capped at :data:`MAX_RETRY_AFTER`; ``None`` without one."""
    wait = requested_wait(headers, now=now)
    return None if wait is None else min(wait, MAX_RETRY_AFTER)


def requested_wait(headers: Mapping[str, str], *, now: datetime) -> float | None:
    """The server's wait hint in seconds, as it said it: ``retry-after-ms`` (OpenAI's precise
    variant) first, then ``Retry-After`` (see :func:`parse_retry_after`); ``None`` without
    either. A ``retry-after-ms`` that is not a finite number ``>= 0`` counts as absent."""
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value / 1000.0
    return parse_retry_after(_header(headers, "retry-after"), now=now)


# --------------------------------------------------------------------------------------------
# Status codes
# --------------------------------------------------------------------------------------------

# Billing and credits: a retry cannot help, whatever the status. Checked first.
_QUOTA_STRONG = re.compile(
    r"insufficient[_ ]quota|insufficient[_ ](credits?|funds|balance)|credit balance"
    r"|out of credits|billing|exceeded your current quota|payment required"
)
# A bare "quota" is a quota error too -- except on a 429, where providers say "quota" for
# per-minute limits ("Quota exceeded for requests per minute") that pass by themselves.
_QUOTA_WEAK = re.compile(r"quota")
_CONTEXT_WINDOW = re.compile(
    r"context[_ ]length|context[_ ]window|maximum context|too many tokens"
    r"|prompt is too long|input is too long|exceeds? the (model's )?(maximum )?context"
)

# A prompt refused by the provider's content filter (Azure OpenAI: code "content_filter",
# "...content management policy").
_CONTENT_FILTER = re.compile(r"content[_ ]filter|content management policy")

_REQUEST_REASONS: Final[Mapping[int, str]] = {
    401: "authentication",
    402: "quota",
    403: "permission",
    404: "not_found",
    413: "too_large",
    422: "unprocessable",
}
# Which statuses may turn out to be context-window errors when the body says so.
_CONTEXT_STATUSES: Final = frozenset({400, 413, 422})

_ADVICE: Final[Mapping[str, str]] = {
    "quota": "the account's quota or credits are used up; top up or raise the quota, "
    "then resume the run",
    "authentication": "check the API key (the environment variable named by the provider's "
    "api_key_env)",
    "permission": "the API key is not allowed to use this model; check its permissions",
    "not_found": "check the model name and the provider's base_url",
    "context_window": "the prompt does not fit the model's context window; shorten the "
    "prompt or lower max_tokens",
    "too_large": "the request body is larger than the server accepts; shorten the prompt",
    "unprocessable": "the server could not process the request's parameters; check the "
    "model's inference parameters and extra_body",
    "bad_request": "the server rejected the request; check the model's inference parameters "
    "and extra_body",
}


def error_from_status(
    status: int,
    body: str,
    headers: Mapping[str, str],
    *,
    now: datetime,
    where: str = DEFAULT_WHERE,
    secrets: Iterable[str] = (),
    url: str | None = None,
) -> GenerationError:
    """Classify a response whose status is not a success.

    The rules, in order (``docs/errors.md`` has the same table):

    1. a body about billing or credits (any status), or about a "quota" (any status but 429),
       or status 402 → :class:`ModelRequestError` ``reason="quota"``;
    2. 429 → :class:`ModelRateLimitedError` with ``retry_after`` from ``retry-after-ms`` or
       ``Retry-After`` (seconds or HTTP date, clamped ``>= 0``);
    3. 408 → :class:`ModelTimeoutError`;
    4. 5xx → :class:`ModelServerError` carrying the status;
    5. 400, 413 or 422 whose body mentions the context length/window or too many tokens →
       ``reason="context_window"``;
    6. 400 whose body says the content filter refused the prompt (``content_filter``,
       "content management policy") → :class:`ModelContentFilteredError`;
    7. 401 ``authentication``, 403 ``permission``, 404 ``not_found``, 413 ``too_large``,
       422 ``unprocessable``; 3xx (a redirect: the base URL is wrong) and every other 4xx →
       ``bad_request``;
    8. anything else (1xx, 2xx, >= 600) → :class:`ModelServerError`: the server said something
       we cannot use.

    Args:
      status: the HTTP status code.
      body: the response body as text (it is redacted and quoted, never parsed beyond JSON).
      headers: the response headers; plain dicts are looked up case-insensitively.
      now: the current wall-clock time, for HTTP-date ``Retry-After`` values.
      where: who answered, as a noun phrase (``"model 'm' at provider 'p'"``).
      secrets: strings to replace with ``***`` before quoting the body.
      url: the URL the request went to; a 404's message names it (a wrong model name and a
        base_url missing its ``/v1`` both answer 404).

    Returns:
      The error to raise (the caller raises it, chained ``from`` the original exception).
    """
    body = redact(body, secrets)
    lowered = body.lower()
    said = f"Server said: {excerpt(body)}"
    head = f"{_sentence_start(where)} answered HTTP {status} {_phrase(status)}"

    if _is_quota(status, lowered):
        return _request_error(head, said, status, "quota")
    if status == 429:
        return _rate_limited(head, said, headers, now)
    if status == 408:
        return ModelTimeoutError(
            f"{head}: the server gave up waiting for the request (a transient failure). {said}"
        )
    if 500 <= status <= 599 or not 300 <= status <= 499:
        return ModelServerError(
            f"{head}: a server-side failure (transient). {said}",
            status=status,
        )
    if status in _CONTEXT_STATUSES and _CONTEXT_WINDOW.search(lowered):
        return _request_error(head, said, status, "context_window")
    if status == 400 and _CONTENT_FILTER.search(lowered):
        return ModelContentFilteredError(
            f"{head}: the provider's content filter refused the prompt; the row is dropped "
            f"without a retry. Check the prompt against the provider's content policy. {said}",
            status=status,
        )
    if status < 400:
        location = excerpt(_header(headers, "location") or "an unknown location", secrets)
        return ModelRequestError(
            f"{head}: it redirects to {location}; check the provider's base_url "
            f"(redirects are not followed). {said}",
            status=status,
            reason="bad_request",
        )
    reason = _REQUEST_REASONS.get(status, "bad_request")
    if reason == "not_found" and url is not None:
        return ModelRequestError(
            f"{head}: {_ADVICE[reason]} (the request went to {excerpt(url, secrets)}; "
            f"OpenAI-compatible servers answer at <base_url>/chat/completions, so base_url "
            f"usually ends in /v1). {said}",
            status=status,
            reason=reason,
        )
    return _request_error(head, said, status, reason)


def _is_quota(status: int, lowered_body: str) -> bool:
    if _QUOTA_STRONG.search(lowered_body):
        return True
    return status != 429 and _QUOTA_WEAK.search(lowered_body) is not None


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "(non-standard status)"


def _rate_limited(
    head: str, said: str, headers: Mapping[str, str], now: datetime
) -> ModelRateLimitedError:
    retry_after = retry_after_from_headers(headers, now=now)
    asked = requested_wait(headers, now=now)
    if retry_after is None or asked is None:
        hint = ""
    elif asked > retry_after:
        hint = (
            f" (the server asks to wait {asked:g} s; each retry waits at most "
            f"{MAX_RETRY_AFTER:g} s, and the row is dropped once its 429 budget is used up)"
        )
    else:
        hint = f" (the server asks to wait {retry_after:g} s)"
    return ModelRateLimitedError(
        f"{head}: rate limited{hint}. {said}",
        retry_after=retry_after,
    )


def _request_error(head: str, said: str, status: int, reason: str) -> ModelRequestError:
    return ModelRequestError(f"{head}: {_ADVICE[reason]}. {said}", status=status, reason=reason)


def error_from_malformed_response(
    status: int,
    problem: str,
    body: str,
    *,
    where: str = DEFAULT_WHERE,
    secrets: Iterable[str] = (),
) -> ModelServerError:
    """The error for a success status whose body we cannot use.

    A 200 carrying a truncated or non-JSON body, or JSON without ``choices``, is the server's
    fault and may well not happen again, so it is a retryable :class:`ModelServerError` that
    carries the (successful) status. It is *not* retried inside the client; the scheduler
    defers the cell like any other server error.

    Args:
      status: the status of the response (normally 200).
      problem: what is wrong, as a clause (``"the body is not JSON"``).
      body: the response body, quoted (redacted, trimmed) in the message.
      where: who answered, as a noun phrase.
      secrets: strings to replace with ``***`` before quoting the body.
    """
    return ModelServerError(
        f"{_sentence_start(where)} answered HTTP {status} but {problem} (a server-side fault, "
        f"transient). Body: {excerpt(body, secrets)}",
        status=status,
    )


# --------------------------------------------------------------------------------------------
# Failures of the HTTP layer
# --------------------------------------------------------------------------------------------

_TRANSIENT: Final = "A transient failure"

TransportKind: TypeAlias = Literal["timeout", "connection", "request", "too_large", "status"]


@attrs.frozen(kw_only=True)
class TransportRule:
    """How one failure class of the HTTP layer (:mod:`._transport`) is classified.

    Attributes:
      kind: ``"timeout"`` → :class:`ModelTimeoutError`, ``"connection"`` →
        :class:`ModelConnectionError`, ``"request"`` → non-retryable :class:`ModelRequestError`
        (``reason="bad_request"``: a configuration problem or a bug, not the server's answer),
        ``"too_large"`` → non-retryable :class:`ModelRequestError`
        (``reason="response_too_large"``), ``"status"`` → classified by the response's status
        with :func:`error_from_status`.
      what: what went wrong, as a clause completing "Calling <model> failed: ..." (used when
        the exception carries no text of its own).
    """

    kind: TransportKind
    what: str


def _rule(kind: TransportKind, what: str) -> TransportRule:
    return TransportRule(kind=kind, what=what)


TRANSPORT_ERROR_TABLE: Final[Mapping[type[Exception], TransportRule]] = {
    HTTPError: _rule("connection", "the HTTP request failed"),
    ConnectFailed: _rule("connection", "could not connect to the server"),
    ConnectionBroken: _rule("connection", "the connection broke"),
    ServerHungUp: _rule(
        "connection",
        "the server closed the connection without answering (often a keep-alive connection "
        "the server had just closed)",
    ),
    ProtocolViolation: _rule("connection", "the server broke the HTTP protocol"),
    ProxyFailed: _rule(
        "connection", "the HTTP proxy failed (check HTTP_PROXY / HTTPS_PROXY / ALL_PROXY)"
    ),
    DecodingFailed: _rule(
        "connection", "the response body could not be decoded (corrupt content encoding)"
    ),
    UnsupportedEncoding: _rule(
        "request", "the response uses a content encoding we never asked for"
    ),
    RequestTimedOut: _rule("timeout", "the request timed out"),
    InvalidRequest: _rule(
        "request",
        "the request itself is not valid HTTP (check the provider's extra_headers for "
        "illegal characters)",
    ),
    ResponseTooLarge: _rule("too_large", "the answer is larger than max_response_bytes"),
    HTTPStatusError: _rule("status", "the server answered with an error status"),
}
"""Every failure class :mod:`._transport` exports → how it is classified (whichever transport
raised it). See :class:`TransportRule`."""


def transport_rule(exc_type: type[BaseException]) -> TransportRule | None:
    """The rule for ``exc_type``: its own entry, else its nearest listed ancestor's."""
    for klass in exc_type.__mro__:
        rule = TRANSPORT_ERROR_TABLE.get(klass)
        if rule is not None:
            return rule
    return None


def error_from_transport(
    exc: HTTPError, *, where: str = DEFAULT_WHERE, secrets: Iterable[str] = ()
) -> GenerationError:
    """Classify a failure of the HTTP layer while calling the endpoint.

    Timeouts (no complete answer within the model's ``timeout``) become
    :class:`ModelTimeoutError`; connection, protocol, proxy and decoding failures become
    :class:`ModelConnectionError` (both retryable); an answer above ``max_response_bytes``
    becomes a non-retryable :class:`ModelRequestError` with ``reason="response_too_large"``;
    a request that is not valid HTTP becomes a non-retryable :class:`ModelRequestError` with
    ``reason="bad_request"`` and no status; an :class:`~._transport.HTTPStatusError` is classified
    by its response with :func:`error_from_status`. The mapping is
    :data:`TRANSPORT_ERROR_TABLE`.

    Args:
      exc: the failure, one of :mod:`._transport`'s classes.
      where: who was being called, as a noun phrase (``"model 'm' at provider 'p'"``).
      secrets: strings to replace with ``***`` in the quoted exception text.

    Returns:
      The error to raise, ``from exc``.
    """
    if isinstance(exc, HTTPStatusError):
        response = exc.response
        return error_from_status(
            response.status,
            response.text(),
            response.headers,
            now=datetime.now(UTC),
            where=where,
            secrets=secrets,
        )
    if isinstance(exc, ResponseTooLarge):
        return _too_large(exc, where)
    rule = transport_rule(type(exc))
    if rule is None or rule.kind in ("status", "too_large"):  # unreachable for HTTPError
        rule = _rule("connection", "an unexpected HTTP error occurred")
    detail = excerpt(str(exc), secrets) if str(exc).strip() else rule.what
    message = f"Calling {where} failed: {detail}"
    return _TRANSPORT_BUILDERS[rule.kind](message)


def _too_large(exc: ResponseTooLarge, where: str) -> GenerationError:
    announced = "" if exc.declared is None else f"; it announced {exc.declared:,} bytes"
    return ModelRequestError(
        f"{_sentence_start(where)} sent an answer larger than max_response_bytes "
        f"({exc.limit:,} bytes{announced}); it was cut off there and the cell fails without "
        f"a retry. If answers this long are expected, raise max_response_bytes for this model; "
        f"otherwise lower max_tokens or check what the server sends.",
        status=exc.status,
        reason="response_too_large",
    )


def _timeout(message: str) -> GenerationError:
    return ModelTimeoutError(
        f"{message}. {_TRANSIENT}; if this persists, raise the model's timeout."
    )


def _connection(message: str) -> GenerationError:
    return ModelConnectionError(
        f"{message}. {_TRANSIENT}; if this persists, check that the server is up."
    )


def _misconfigured(message: str) -> GenerationError:
    return ModelRequestError(f"{message}.", status=None, reason="bad_request")


_TRANSPORT_BUILDERS: Final[Mapping[str, Callable[[str], GenerationError]]] = {
    "timeout": _timeout,
    "connection": _connection,
    "request": _misconfigured,
}


# --------------------------------------------------------------------------------------------
# A provider that cannot work at all (see trio_designer/_core/_firstcontact.py)
# --------------------------------------------------------------------------------------------


def provider_error(
    *,
    provider: str,
    base_url: str,
    api_key_env: str | None,
    has_key: bool,
    model: str | None,
    transport: HTTPError | None = None,
    status: int | None = None,
    body: str = "",
    attempts: int = 1,
    secrets: Iterable[str] = (),
    url: str | None = None,
    consequence: str = "nothing sent to it has worked, so the run stops",
    silent_after: float | None = None,
) -> ProviderError:
    """The one message that stops a run whose provider cannot work (no connection, or the
    credentials rejected before any request succeeded): who, where, what happened, what to do.

    Args:
      provider: the provider's name (``""`` for a client built without one).
      base_url: its base URL.
      api_key_env: the name of the variable holding its API key, if configured.
      has_key: whether a key was sent.
      model: the model the failing request was for.
      transport: the connection failure (for ``"unreachable"``).
      status: the HTTP status, 401 or 403 (for ``"credentials"``), 404 (``"not_found"``).
      body: the answer's body, quoted (redacted, trimmed).
      attempts: how many times the client tried to connect.
      secrets: strings to replace with ``***``.
      url: the URL a 404 answered (named in its message).
      consequence: what follows, as a clause (``""``: nothing said).
      silent_after: the timeout (s) of requests that all went unanswered (for ``"silent"``:
        the server accepts connections and answers nothing).
    """
    who = f"Provider {provider!r} at {base_url}" if provider else f"The endpoint at {base_url}"
    stops = f"; {consequence}" if consequence else ""
    if silent_after is not None:
        return ProviderError(
            f"{who} completed none of the first {SILENT_TIMEOUTS} answers within the timeout "
            f"of {silent_after:g} s{stops}. It accepts connections but sends no whole answer: "
            f"the server may be hung, trickling, still loading the model, or a proxy whose "
            f"backends are down. Check the server; if its first answers are really that "
            f"slow, raise the model's timeout.",
            provider=provider,
            base_url=base_url,
            reason="silent",
        )
    if transport is not None:
        detail = excerpt(str(transport), secrets)
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        if "TLS handshake" in detail:
            remedy = (
                "If the server uses a certificate of a private authority, point SSL_CERT_FILE "
                "at that authority's certificate; if it does not speak TLS, write http:// in "
                "the provider's base_url."
            )
        else:
            remedy = (
                "Check that the server is running and listening there, and the provider's "
                "base_url (scheme, host name, port)."
            )
        return ProviderError(
            f"{who} cannot be reached: {detail}{tries}{stops}. {remedy}",
            provider=provider,
            base_url=base_url,
            reason="unreachable",
        )
    said = f"Server said: {excerpt(redact(body, secrets))}"
    phrase = _phrase(status or 0)
    if status == 404:
        target = f"model {model!r}" if model else "this endpoint"
        went = f" at {excerpt(url, secrets)}" if url else ""
        return ProviderError(
            f"{who} answered HTTP 404 Not Found{went} for {target}, which no request has got "
            f"another answer for{stops}. Check the model name against the server's model list "
            f"(GET <base_url>/models) and the provider's base_url: OpenAI-compatible servers "
            f"answer at <base_url>/chat/completions, so base_url usually ends in /v1. {said}",
            provider=provider,
            base_url=base_url,
            reason="not_found",
        )
    if status == 403:
        target = f"model {model!r}" if model else "this endpoint"
        remedy = (
            f"The API key is not allowed to use {target}: check its permissions (and the "
            f"organization or project it belongs to)."
        )
    elif not has_key:
        remedy = (
            "The provider wants an API key: export it and name the variable in the provider's "
            "api_key_env."
        )
    elif api_key_env:
        remedy = f"Check the API key in the environment variable {api_key_env} (api_key_env)."
    else:
        remedy = "Check the API key (the provider's api_key_env)."
    return ProviderError(
        f"{who} rejected the credentials (HTTP {status} {phrase}){stops}. {remedy} {said}",
        provider=provider,
        base_url=base_url,
        reason="credentials",
    )
