"""The httpx transport: the contract of :mod:`._transport` kept on ``httpx.AsyncClient``.

Choose it per provider with ``transport: httpx`` when the native pool cannot do the job: a
SOCKS proxy (``ALL_PROXY=socks5://...``, with the ``socks`` extra), an ``https://`` proxy,
HTTP/2 (``http2: true``), or any proxy or TLS setup where httpx's mature handling matters more
than CPU. It costs 2-4x the CPU per request of the native pool (``docs/benchmarks.md``,
"The request path"), which matters only at hundreds of requests per second::

    transport = HttpxTransport(origin, max_connections=64)
    response = await transport.request("POST", "/v1/chat/completions", headers, body,
                                       timeout=60.0, max_body=8 * 2**20)

How it keeps the contract:

* **Several small pools.** httpcore's pool scans every connection for every queued request,
  so one big pool gets slower per request as it grows (``docs/benchmarks.md``). The
  connections are split over ``ceil(max_connections / 16)`` clients of at most 16 each, and a
  request goes to the client with the most free slots. A ``trio.CapacityLimiter`` in front
  admits at most ``max_connections`` requests, first come first served, so a client never has
  more requests than connections and nothing ever queues inside httpcore.
  Invariant: ``sum(self._free) == max_connections - self._slots.borrowed_tokens``, and each
  ``self._free[i]`` is between 0 and the size of client ``i`` (asserted in ``_take``; checked
  by ``test_connections_are_split_over_clients_of_at_most_16`` in
  ``tests/test_model_httpx_transport.py``).
* **One deadline, ours.** httpx's per-phase timeouts are off (``timeout=None``); one trio
  ``move_on_after`` covers connecting, TLS, sending, waiting and every byte of the answer, so
  a trickling server cannot stretch it.
* **The size cap while streaming.** The answer is streamed raw (``aiter_raw``) into the same
  :class:`~._transport.BodyReader` as the native pool's (httpx's own decoders would inflate a
  whole chunk at once). Crossing the cap *cancels* the read (a trio cancel scope) instead of
  abandoning it: httpx and httpcore then unwind through their own cancellation paths, which
  close the connection and finish their async generators (an abandoned one is a
  ``ResourceWarning`` under trio).
* **Reuse and the keep-alive race.** httpcore reuses a connection only after a complete
  exchange and closes one interrupted by anything. Its idle expiry (4 s, like ours) runs on the
  real clock, not trio's; a request that meets a reused connection the server closed under it
  (a hang-up, reset or failed write before the answer's head) is sent once more, at once: a
  ``trace`` hook tells whether this request opened its connection or reused one.
* **Our failures only.** Every exception class httpx exports is translated by
  :data:`HTTPX_ERROR_TABLE` into a :class:`~._transport.HTTPError` subclass
  (``tests/test_model_errors.py`` enumerates ``httpx.__all__``).

Proxies come from the environment exactly as httpx reads them (``HTTP_PROXY``, ``HTTPS_PROXY``,
``ALL_PROXY``, ``NO_PROXY``), except that loopback origins are never proxied (as with the native
pool). TLS verification uses the same context as the native pool
(:func:`~._transport.default_ssl_context`).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import httpx
import trio

from ._transport import (
    DEFAULT_KEEPALIVE_EXPIRY,
    BodyReader,
    ConnectFailed,
    ConnectionBroken,
    DecodingFailed,
    HTTPError,
    HTTPStatusError,
    InvalidRequest,
    Origin,
    ProtocolViolation,
    ProxyFailed,
    RequestTimedOut,
    Response,
    ServerHungUp,
    TransportStatistics,
    default_ssl_context,
    joined_headers,
)

__all__ = [
    "CLIENT_CONNECTIONS",
    "HTTPX_ERROR_TABLE",
    "HttpxTransport",
    "split_connections",
    "translate",
    "translated",
]

CLIENT_CONNECTIONS: Final = 16
"""The most connections one ``httpx.AsyncClient`` gets (``docs/benchmarks.md``: several
clients of at most 16 connections cost 0.7-1.4 ms per request at any concurrency, one big
client up to 3.9 ms)."""

_CLOSE_GRACE: Final = 1.0
"""Seconds ``aclose`` waits for the clients to close (shielded from cancellation)."""

_BUG: Final = "a bug in trio_designer's httpx transport; please report it"

HTTPX_ERROR_TABLE: Final[Mapping[type[Exception], tuple[type[HTTPError], str]]] = {
    # The request/transport tree. Base classes are listed too: a subclass missing from this
    # table is translated like its nearest listed ancestor.
    httpx.HTTPError: (HTTPError, "the HTTP request failed"),
    httpx.RequestError: (HTTPError, "the request failed"),
    httpx.TransportError: (ConnectionBroken, "the transport failed"),
    # Timeouts cannot happen (httpx's are off: ours is one trio deadline), but are ours if so.
    httpx.TimeoutException: (RequestTimedOut, "the request timed out"),
    httpx.ConnectTimeout: (RequestTimedOut, "timed out while connecting"),
    httpx.ReadTimeout: (RequestTimedOut, "timed out waiting for the answer"),
    httpx.WriteTimeout: (RequestTimedOut, "timed out while sending the request"),
    httpx.PoolTimeout: (RequestTimedOut, "timed out waiting for a connection"),
    httpx.NetworkError: (ConnectionBroken, "the connection broke"),
    httpx.ConnectError: (ConnectFailed, "could not connect to {host}:{port}"),
    httpx.ReadError: (ConnectionBroken, "reading the answer failed"),
    httpx.WriteError: (ConnectionBroken, "sending the request failed"),
    httpx.CloseError: (ConnectionBroken, "closing the connection failed"),
    httpx.ProtocolError: (ProtocolViolation, "the HTTP exchange broke the protocol"),
    httpx.RemoteProtocolError: (ProtocolViolation, "the server broke the HTTP protocol"),
    httpx.LocalProtocolError: (InvalidRequest, "the request is not valid HTTP"),
    httpx.ProxyError: (ProxyFailed, "the proxy failed"),
    httpx.UnsupportedProtocol: (InvalidRequest, "the URL's scheme is not supported"),
    httpx.DecodingError: (DecodingFailed, "the answer's body could not be decoded"),
    httpx.TooManyRedirects: (InvalidRequest, f"redirects were followed ({_BUG})"),
    httpx.HTTPStatusError: (HTTPStatusError, "the server answered with an error status"),
    # The stand-alone branches: URL parsing, cookie lookup, stream misuse.
    httpx.InvalidURL: (InvalidRequest, "the URL is not valid"),
    httpx.CookieConflict: (InvalidRequest, f"a cookie lookup was ambiguous ({_BUG})"),
    httpx.StreamError: (InvalidRequest, f"an HTTP stream was misused ({_BUG})"),
    httpx.StreamConsumed: (InvalidRequest, f"a stream was read twice ({_BUG})"),
    httpx.StreamClosed: (InvalidRequest, f"a closed stream was read ({_BUG})"),
    httpx.ResponseNotRead: (InvalidRequest, f"an answer was used unread ({_BUG})"),
    httpx.RequestNotRead: (InvalidRequest, f"a request was used unread ({_BUG})"),
}
"""Every exception class httpx exports → our failure class and what went wrong (a clause)."""

_HTTPX_EXCEPTIONS: Final = tuple(HTTPX_ERROR_TABLE)

_HUNG_UP: Final = "Server disconnected"  # httpcore's RemoteProtocolError text (HTTP/1.1, /2)


def translate(exc: Exception, *, origin: Origin, timeout: float) -> HTTPError:
    """Our failure for an exception httpx raised while calling ``origin``.

    The message names what failed and the cause at the bottom of the chain (the ``OSError``
    or TLS error behind httpx's and httpcore's wrappers). A hang-up before any answer is a
    :class:`~._transport.ServerHungUp`; a connect failure whose cause is a TLS error names the
    handshake.
    """
    target, what = _rule(type(exc))
    if target is RequestTimedOut:
        return RequestTimedOut(timeout=timeout)
    if isinstance(exc, httpx.HTTPStatusError):
        answer = exc.response
        try:
            body = answer.content
        except httpx.ResponseNotRead:
            body = b""
        response = Response(
            status=answer.status_code,
            headers=joined_headers(answer.headers.multi_items()),
            body=body,
        )
        return HTTPStatusError(f"HTTP {answer.status_code}", response=response)
    if isinstance(exc, httpx.RemoteProtocolError) and str(exc).startswith(_HUNG_UP):
        return ServerHungUp("the server closed the connection without sending an answer")
    if target is ConnectFailed and _cause(exc, ssl.SSLError) is not None:
        what = f"the TLS handshake with {origin} failed"
    return target(f"{what.format(host=origin.host, port=origin.port)}: {_describe(exc)}")


def _rule(exc_type: type[BaseException]) -> tuple[type[HTTPError], str]:
    for klass in exc_type.__mro__:
        rule = HTTPX_ERROR_TABLE.get(klass)
        if rule is not None:
            return rule
    return HTTPError, "the HTTP request failed"  # not an httpx exception: never passed here


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The deepest exception of type ``kind`` behind ``exc``.

    Follows ``__cause__``, else ``__context__``: httpcore re-raises some of trio's errors with
    the original only as the (suppressed) context.
    """
    found = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind):
            found = current
        current = current.__cause__ or current.__context__
    return found


def _describe(exc: BaseException) -> str:
    """``Class: message`` of the OS or TLS error behind ``exc``, else of ``exc`` itself."""
    shown = _cause(exc, OSError) or exc
    text = str(shown).strip() or "no details"
    return f"{type(shown).__name__}: {text}"


@contextmanager
def translated(origin: Origin, timeout: float) -> Iterator[None]:
    """Turn every exception httpx raises into ours with :func:`translate` (``raise ... from``)."""
    try:
        yield
    except _HTTPX_EXCEPTIONS as exc:
        raise translate(exc, origin=origin, timeout=timeout) from exc


class _Stale(Exception):
    """A reused connection turned out closed before the answer's head."""


class HttpxTransport:
    """Keep-alive connections to one origin through httpx, at most ``max_connections``.

    Args:
      origin: where requests go.
      max_connections: connections open at once, split over clients of at most
        :data:`CLIENT_CONNECTIONS`; further requests wait (FIFO, no deadline) for a slot.
      keepalive_expiry: seconds an idle connection may be reused (httpcore's real clock).
      http2: offer HTTP/2 (ALPN, ``https`` origins only); needs the ``h2`` package.
      ssl_context: for ``https``; :func:`~._transport.default_ssl_context` when ``None``.

    Raises:
      ValueError: ``http2`` without the ``h2`` package, or a proxy in the environment that
        httpx cannot use (a SOCKS proxy without the ``socksio`` package, an unknown scheme).
        The message names the remedy, never the proxy URL (it may hold a password).

    Safe to share between tasks of one trio run. Close it with :meth:`aclose`. Implements
    :class:`~._transport.Transport`.
    """

    def __init__(
        self,
        origin: Origin,
        *,
        max_connections: int,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
        http2: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        sizes = split_connections(max_connections)
        context = default_ssl_context() if ssl_context is None else ssl_context
        self._origin = origin
        self._base = str(origin)
        self._sizes = sizes
        self._clients = [_client(origin, size, keepalive_expiry, http2, context) for size in sizes]
        self._free = list(sizes)  # free slots per client
        self._slots = trio.CapacityLimiter(max_connections)
        self._opened = 0

    @property
    def origin(self) -> Origin:
        return self._origin

    @property
    def client_sizes(self) -> tuple[int, ...]:
        """How many connections each of the ``httpx.AsyncClient`` s may open."""
        return tuple(self._sizes)

    def statistics(self) -> TransportStatistics:
        """Slots in use, requests waiting for one, connections opened so far."""
        return TransportStatistics(
            in_use=self._slots.borrowed_tokens,
            waiting=self._slots.statistics().tasks_waiting,
            opened=self._opened,
        )

    async def aclose(self) -> None:
        """Close every client's idle connections (shielded, for at most a second)."""
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GRACE):
            for client in self._clients:
                await client.aclose()
        await trio.lowlevel.checkpoint()

    async def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        # Not a caller's trio.fail_after: the deadline starts once a connection slot is ours.
        timeout: float,  # noqa: ASYNC109
        max_body: int,
    ) -> Response:
        """Send one request and read its whole answer (any status); see
        :meth:`~._transport.Transport.request`.

        Raises:
          HTTPError: one of :mod:`._transport`'s subclasses (never ``HTTPStatusError``).
        """
        url = self._base + path
        async with self._slots:
            index = self._take()
            try:
                with trio.move_on_after(timeout) as deadline:
                    return await self._send(index, method, url, headers, body, max_body, timeout)
            finally:
                self._free[index] += 1
            # The only cancellation that ends up here is our own deadline's.
            assert deadline.cancelled_caught
            raise RequestTimedOut(timeout=timeout)

    def _take(self) -> int:
        """A slot of the client with the most free ones (the first of equals)."""
        free = self._free
        index = max(range(len(free)), key=free.__getitem__)
        assert 0 < free[index] <= self._sizes[index]  # the limiter admitted us: one is free
        free[index] -= 1
        return index

    async def _send(
        self,
        index: int,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        max_body: int,
        timeout: float,  # noqa: ASYNC109 (for messages only; the deadline is the caller's)
    ) -> Response:
        client = self._clients[index]
        with translated(self._origin, timeout):
            try:
                return await self._exchange(client, method, url, headers, body, max_body)
            except _Stale:
                pass  # the server closed it while idle: once more, on a new connection
            return await self._exchange(client, method, url, headers, body, max_body)

    async def _exchange(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        max_body: int,
    ) -> Response:
        """One request/answer; httpcore pools the connection after, or closes it.

        Raises:
          _Stale: the connection was reused and the server closed it before the answer's head.
        """
        fresh = False

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            nonlocal fresh
            if event.endswith("connect_tcp.complete"):
                fresh = True
                self._opened += 1

        request = client.build_request(
            method, url, headers=headers, content=body, extensions={"trace": trace}
        )
        request.stream = _OneChunkBody(body)
        try:
            response = await client.send(request, stream=True)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            hung_up = not isinstance(exc, httpx.RemoteProtocolError) or _HUNG_UP in str(exc)
            if hung_up and not fresh:
                raise _Stale from exc
            raise
        try:
            return await _read(response, max_body)
        finally:
            await response.aclose()


async def _read(response: httpx.Response, max_body: int) -> Response:
    """The whole answer, decoded and capped while it streams in.

    A failure of the body (too large, corrupt gzip) cancels the read rather than abandoning
    it, so httpx and httpcore close the connection and finish their generators.
    """
    headers = joined_headers(response.headers.multi_items())
    reader = BodyReader.start(response.status_code, headers, max_body)
    failure: HTTPError | None = None
    with trio.CancelScope() as cut_off:
        async for chunk in response.aiter_raw():
            if failure is None:
                try:
                    reader.feed(chunk)
                except HTTPError as exc:  # ResponseTooLarge, DecodingFailed
                    failure = exc
                    cut_off.cancel()
    if failure is not None:
        raise failure
    return reader.finish()


def split_connections(max_connections: int) -> list[int]:
    """``max_connections`` split over as few clients of at most :data:`CLIENT_CONNECTIONS` as
    possible, sizes differing by at most one (40 → 14, 13, 13)."""
    count = -(-max_connections // CLIENT_CONNECTIONS)
    return [
        max_connections // count + (1 if i < max_connections % count else 0) for i in range(count)
    ]


def _client(
    origin: Origin, size: int, keepalive_expiry: float, http2: bool, context: ssl.SSLContext
) -> httpx.AsyncClient:
    """One ``httpx.AsyncClient`` of ``size`` connections; ``ValueError`` for what it refuses."""
    try:
        return httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=size,
                max_keepalive_connections=size,
                keepalive_expiry=keepalive_expiry,
            ),
            timeout=None,  # the deadline is ours (one trio cancel scope per request)
            follow_redirects=False,
            trust_env=not origin.is_loopback,  # proxies from the environment, never for loopback
            verify=context,
            http2=http2,
        )
    except ImportError as exc:
        raise ValueError(_missing_package(str(exc))) from None
    except (ValueError, httpx.InvalidURL):
        # httpx's message may quote the proxy URL, password included: never show it.
        raise ValueError(
            "the proxy set in the environment (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) is not "
            "one httpx can use; it takes http://, https://, socks5:// and socks5h:// proxy URLs"
        ) from None


def _missing_package(message: str) -> str:
    if "socksio" in message:
        return (
            "the environment sets a SOCKS proxy, which needs the socksio package; install "
            "trio_designer[socks]"
        )
    if "h2" in message:
        return "http2: true needs the h2 package; install trio_designer[http2]"
    return f"the httpx transport cannot start: {message}"


class _OneChunkBody(httpx.AsyncByteStream):
    """A request body whose iterator is a plain object, not an async generator.

    httpx's own ``ByteStream`` yields the body from an async generator. When a write fails
    half-way (the server closed a keep-alive connection under us), httpcore abandons that
    generator un-exhausted and trio's async-generator finalizer warns about it
    (``ResourceWarning``, an error under ``filterwarnings = error``). An iterator object has
    nothing to finalize.
    """

    def __init__(self, content: bytes) -> None:
        self._content = content

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _OneChunk(self._content)


class _OneChunk:
    def __init__(self, content: bytes) -> None:
        self._content: bytes | None = content

    def __aiter__(self) -> _OneChunk:
        return self

    async def __anext__(self) -> bytes:
        if self._content is None:
            raise StopAsyncIteration
        content, self._content = self._content, None
        return content
