"""The native transport: a small HTTP/1.1 pool on trio streams, h11 and httptools.

The model client sends thousands of small JSON requests to one origin, many at once. This module
does exactly that and nothing else: ``POST``/``GET`` to one ``http://`` or ``https://`` origin
(optionally through an HTTP proxy), bodies in memory, answers read whole into memory up to a
limit. The HTTP protocol itself is other people's: a request's head is validated by `h11
<https://h11.readthedocs.io>`_ (the state machine httpcore also uses) once per distinct head
and written as the bytes h11 writes; answers are parsed by httptools (llhttp, in C: ~0.1 ms of
CPU less per exchange than h11 in pure Python, ``docs/benchmarks.md``, branch ``firstwave``),
and a malformed one is described in h11's words (:func:`_diagnose`). This module owns only
the connections::

    origin, base_path = parse_origin("http://127.0.0.1:8000/v1")   # base_path == "/v1"
    pool = ConnectionPool(origin, max_connections=16, proxy=proxy_for(origin))
    response = await pool.request("POST", f"{base_path}/chat/completions", headers, body,
                                  timeout=60.0, max_body=8 * 2**20)
    await pool.aclose()

It is one of the two implementations of :class:`~._transport.Transport` (the other is
:mod:`._httpx_transport`), and the default. Why a pool of our own: measured in
``benches/client_cpu.py`` (numbers in ``docs/benchmarks.md``), httpx + httpcore cost 1.3-3.9 ms
of CPU per request and got *slower* as connections were added, because httpcore's pool scans
every connection for every queued request on each request and each response. This pool costs
O(1) per request: a LIFO stack of idle connections. What it does not do: SOCKS or ``https://``
proxies, HTTP/2 (choose ``transport: httpx`` for those).

The contract of :mod:`._transport` holds here (``tests/test_model_transport.py`` checks it
over both transports); how this pool keeps it:

* **One deadline per request**: one cancel scope (``trio.move_on_after``'s, written out)
  around connecting, TLS, sending, waiting and reading the last byte, entered once the request
  has a connection slot.
* **Flat memory**: at most ``max_body`` plus one receive buffer is ever held
  (:class:`~._transport.BodyReader`), and the first :data:`_KEPT_FOR_ERRORS` bytes of the
  answer (to describe a malformed one).
* **A connection is reused only in a known-clean state**: after a complete exchange that both
  sides allow to continue (the whole request sent, the final answer parsed to its end, the
  server keeping the connection alive, no byte after the answer); any exception, the deadline
  or a cancellation closes it (``_exchange``).
* **Connections opened ahead** (:meth:`ConnectionPool.open_idle`) count as the pool's
  connections: in use + idle never exceed ``max_connections``; like reused ones, the server
  may have closed them while they waited (``_Stale``).
* **Idle connections expire** after ``keepalive_expiry`` seconds of *trio's* clock, before the
  usual 5 s of servers (``test_idle_connections_expire_on_trios_clock`` in
  ``tests/test_model_http.py``), and one the server has closed (readable while idle) is
  dropped before use. A request that still meets a reused connection the server closed under
  it, before any byte of the answer, raises ``_Stale`` and is sent once more on a fresh
  connection.

Failures leave as the :class:`~._transport.HTTPError` subclasses (never as ``OSError``, trio,
h11 or httptools exceptions): :data:`LOW_LEVEL_ERRORS` lists what the streams, h11 and
httptools raise,
:func:`translated` turns them into ours, and ``tests/test_model_errors.py`` checks that every
such exception class is translated.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket as stdlib_socket
import ssl
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Final, NoReturn
from urllib.parse import unquote, urlsplit

import attrs
import h11
import httptools
import trio

from ._transport import (
    DEFAULT_KEEPALIVE_EXPIRY,
    BodyReader,
    ConnectFailed,
    ConnectionBroken,
    HTTPError,
    InvalidRequest,
    Origin,
    ProtocolViolation,
    ProxyFailed,
    RequestTimedOut,
    Response,
    ServerHungUp,
    TransportStatistics,
    default_ssl_context,
)

__all__ = [
    "LOW_LEVEL_ERRORS",
    "ConnectionPool",
    "Proxy",
    "proxy_for",
    "translated",
]

_RECEIVE_SIZE: Final = 65536

_MAX_HEAD_BYTES: Final = 100 * 1024
"""The longest status line and headers of an answer. h11's default (16 KiB) failed answers
with long headers only when they happened to arrive in several reads; 100 KiB is httpcore's
(so both transports accept the same answers)."""

LOW_LEVEL_ERRORS: Final = (
    OSError,  # refused, reset, DNS (socket.gaierror), TLS (ssl.SSLError), timeouts...
    trio.BrokenResourceError,  # a stream broke under us (also wraps ssl.SSLError)
    trio.ClosedResourceError,
    trio.BusyResourceError,
    h11.ProtocolError,  # LocalProtocolError, RemoteProtocolError
    httptools.HttpParserError,  # and its subclasses: the answer is not valid HTTP
    httptools.HttpParserUpgrade,  # an answer switching protocols, never asked for
)
"""Every exception the streams, h11 and httptools raise; each is translated into an
:class:`HTTPError`."""


# --------------------------------------------------------------------------------------------
# Proxies
# --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Proxy:
    """An HTTP proxy: where it is and the ``Proxy-Authorization`` value, if any."""

    origin: Origin
    authorization: bytes | None = attrs.field(default=None, repr=False)


def proxy_for(origin: Origin, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``)
    sets for ``origin``, or ``None``. Loopback origins are never proxied.

    Raises:
      ValueError: the proxy URL is not an ``http://`` URL (SOCKS and TLS-to-the-proxy are
        not supported here); the message names the variable, never its value (it may hold a
        password), and the remedy: the httpx transport, which supports both.
    """
    if origin.is_loopback:
        return None
    env = os.environ if environ is None else environ
    proxies = _env_proxies(env)
    url = proxies.get(origin.scheme) or proxies.get("all")
    if not url or _bypassed(origin.host, proxies.get("no", "")):
        return None
    variable = f"{origin.scheme.upper()}_PROXY" if origin.scheme in proxies else "ALL_PROXY"
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ValueError(
            f"{variable} must be an http:// proxy URL for the native transport (it supports "
            f"neither SOCKS nor https:// proxies); set 'transport: httpx' on the provider "
            f"(for SOCKS, install trio_designer[socks] too), or point {variable} at an HTTP "
            f"proxy"
        )
    authorization = None
    if parts.username is not None:
        import base64

        user, password = unquote(parts.username), unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}".encode("ascii")
    proxy_origin = Origin(scheme="http", host=parts.hostname, port=parts.port or 80)
    return Proxy(origin=proxy_origin, authorization=authorization)


def _env_proxies(env: Mapping[str, str]) -> dict[str, str]:
    """``{"http": url, "https": url, "all": url, "no": hosts}`` from the environment,
    lower-case names winning (as ``urllib`` does)."""
    found: dict[str, str] = {}
    for name, value in env.items():
        lowered = name.lower()
        if value and lowered.endswith("_proxy"):
            key = lowered[: -len("_proxy")]
            if name == lowered or key not in found:
                found[key] = value
    return found


def _bypassed(host: str, no_proxy: str) -> bool:
    if not no_proxy:
        return False
    if no_proxy.strip() == "*":
        return True
    # Public but missing from typeshed; NO_PROXY's rules are urllib's, the same as requests'.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    return bool(bypass(host, {"no": no_proxy}))


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


@contextmanager
def translated(failure: Callable[[str], HTTPError], what: str) -> Iterator[None]:
    """Turn the streams' and h11's exceptions into :class:`HTTPError` s (``raise ... from``)."""
    try:
        yield
    except h11.LocalProtocolError as exc:
        raise InvalidRequest(f"the request is not valid HTTP: {exc}") from exc
    except h11.RemoteProtocolError as exc:
        if "Receive buffer too long" in str(exc):
            raise ProtocolViolation(
                f"the server broke the HTTP protocol: the answer's status line and headers "
                f"are longer than {_MAX_HEAD_BYTES // 1024} KiB"
            ) from exc
        raise ProtocolViolation(f"the server broke the HTTP protocol: {exc}") from exc
    except httptools.HttpParserUpgrade as exc:
        raise ProtocolViolation(
            "the server broke the HTTP protocol: it switched protocols (101) unasked"
        ) from exc
    except httptools.HttpParserError as exc:
        raise ProtocolViolation(f"the server broke the HTTP protocol: {exc}") from exc
    except LOW_LEVEL_ERRORS as exc:
        raise failure(f"{what}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    """``Class: message`` of ``exc``, looking through trio's wrapper to the OS/TLS cause."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else None
    shown = cause if cause is not None else exc
    text = str(shown).strip() or "no details"
    return f"{type(shown).__name__}: {text}"


async def _open_tcp(
    host: str, port: int
) -> tuple[trio.SocketStream, stdlib_socket.socket | None]:
    """A TCP connection to ``host``:``port``. A numeric address (the simulator, a local
    server by IP) is connected directly: one socket, one non-blocking ``connect`` — the same
    socket ``trio.open_tcp_stream`` would make for it, without its name lookup, nursery and
    task (happy eyeballs has only one address to try there). It sits on the path of every
    request that opens a connection (the first wave: most of its requests). A name goes
    through ``trio.open_tcp_stream`` (lookup, every address tried). Raises ``OSError`` (for a
    numeric address worded as ``open_tcp_stream`` words it, the OS's error as its cause).
    Also returns the plain socket under the stream when we made it (a numeric address), for
    :func:`_send_raw` / :func:`_receive_raw`; ``None`` for a name."""
    try:
        family = _NUMERIC_FAMILIES[ipaddress.ip_address(host).version]
    except ValueError:
        return await trio.open_tcp_stream(host, port), None
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    # The plain socket trio's socket wraps (it made it non-blocking). Read from trio's private
    # attribute, with a fallback: a custom socket factory's socket (or another trio) has no
    # such plain socket, and the connection then goes through trio's stream as before.
    raw = getattr(sock, "_sock", None)
    if not isinstance(raw, stdlib_socket.socket):
        raw = None
    try:
        if raw is None:
            await sock.connect((host, port))
        else:
            await _connect_raw(raw, (host, port))
    except OSError as exc:
        sock.close()
        # open_tcp_stream's words, so a failure reads as it always did (the fail-fast message
        # quotes it); the OS's own error is the cause.
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise OSError(f"all attempts to connect to {where} failed") from exc
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock), raw


_NUMERIC_FAMILIES: Final = {4: trio.socket.AF_INET, 6: trio.socket.AF_INET6}

_CONNECT_PENDING: Final = frozenset({errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK})


async def _connect_raw(raw: stdlib_socket.socket, address: tuple[str, int]) -> None:
    """``trio.socket.connect`` on the plain (non-blocking) socket, without its schedule
    point when the connection is already up once ``connect`` returns — as on loopback, where
    the handshake completes inside the call. trio waits for the socket to become writable
    through a scheduler round in every case: in a run's first wave, each new connection's
    request then left only after the whole batch of the wave's other cells had run (the
    simulator's clock: 2 requests on warm connections, then 14 together ~10 ms later). A
    connection still in progress waits as trio does (``wait_writable``); a cancelled task
    still raises ``Cancelled`` first. Raises ``OSError`` with the OS's error."""
    await trio.lowlevel.checkpoint_if_cancelled()
    err = raw.connect_ex(address)
    if err in _CONNECT_PENDING:
        _, writable, _ = select.select((), (raw,), (), 0)
        if not writable:
            await trio.lowlevel.wait_writable(raw)
        err = raw.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


async def _send_raw(raw: stdlib_socket.socket, data: bytes | memoryview) -> None:
    """``SocketStream.send_all`` on the plain socket of a connection we opened ourselves
    (:func:`_open_tcp`), without its schedule point after a send that went out at once.

    trio's ``send`` ends every send that did not block with a full schedule point (and
    ``receive_some`` every receive that found data): on the path from an answer to the next
    request, and from an answer's arrival to its parse, each let the whole rest of a wave's
    batch run first. Here a send that completes yields nothing (the request's read of its
    answer parks right after); one that blocks waits for the socket as trio does. Errors are
    trio's: ``BrokenResourceError`` from the OS's error, ``ClosedResourceError`` on a closed
    socket (see :func:`_stream_error`).
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    view = memoryview(data)
    try:
        while True:
            try:
                sent = raw.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(raw)
                continue
            if sent >= len(view):
                return
            view = view[sent:]
    except OSError as exc:
        raise _stream_error(exc) from exc


async def _receive_raw(raw: stdlib_socket.socket) -> bytes:
    """``SocketStream.receive_some(_RECEIVE_SIZE)`` on our own plain socket (see
    :func:`_send_raw`): parks until the socket is readable, and returns what arrived without
    a further schedule point, so the answer is parsed in the batch that found it."""
    await trio.lowlevel.checkpoint_if_cancelled()
    while True:
        try:
            return raw.recv(_RECEIVE_SIZE)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(raw)
        except OSError as exc:
            raise _stream_error(exc) from exc


def _stream_error(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """The stream error trio's ``SocketStream`` raises for ``exc`` (its
    ``_translate_socket_errors_to_stream_errors``): the caller raises it ``from exc``, so
    :func:`_describe` words it as before."""
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


class _Answer:
    """What has arrived of the current answer on one connection: the callbacks of httptools'
    response parser (llhttp, in C). The callbacks only collect (an exception raised in one
    would reach the caller wrapped); :meth:`ConnectionPool._round_trip` reads what they
    collected after each ``feed``.

    ``complete``: the final answer's last byte has been parsed (1xx answers are skipped);
    ``keep_alive``: the server lets the connection be reused after it; ``extra``: bytes
    followed it (the connection is then not reused); ``head_size``: the status line and
    headers' bytes so far, for the :data:`_MAX_HEAD_BYTES` limit.
    """

    __slots__ = (
        "body",
        "complete",
        "extra",
        "head_done",
        "head_size",
        "headers",
        "keep_alive",
        "parser",
        "status",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.start()

    def start(self) -> None:
        """Ready for the next answer."""
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.head_done = self.complete = self.keep_alive = self.extra = False
        self.head_size = 0

    def feed(self, data: bytes | bytearray) -> None:
        """Parse ``data``. Raises httptools' errors (in :data:`LOW_LEVEL_ERRORS`)."""
        self.parser.feed_data(data)

    def body_framed(self) -> bool:
        """Whether the answer's end is marked (by ``Content-Length`` or chunked framing)
        rather than by the connection closing."""
        framing = (b"content-length", b"transfer-encoding")
        return any(name.lower() in framing for name, _ in self.headers)

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True

    def on_status(self, status: bytes) -> None:
        self.head_size += len(status) + 15  # "HTTP/1.1 200 " ... CRLF

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:
            self.head_size += len(name) + len(value) + 4
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if not self.complete:
            self.status = self.parser.get_status_code()
            self.head_done = True

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if 100 <= self.status < 200:  # informational: skipped, the answer follows
            self.status, self.headers, self.head_done, self.head_size = 0, [], False, 0
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()


class _Connection:
    """One open connection: its stream, its answer parser, and when it went idle."""

    __slots__ = (
        "ahead",
        "answer",
        "exchanges",
        "idle_since",
        "raw",
        "reusable",
        "socket",
        "stream",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        socket: trio.socket.SocketType,
        raw: stdlib_socket.socket | None = None,
    ) -> None:
        self.stream = stream
        self.socket = socket
        # The plain socket under ``stream`` when the stream is our own plain TCP stream
        # (no TLS): the round trip then sends and receives on it directly (_send_raw).
        self.raw = raw
        self.answer = _Answer()
        # Opened before any request needed it (open_idle): like a reused one, the server may
        # have closed it while it waited (a request then goes again on a new connection).
        self.ahead = False
        # Set by the round trip: the exchange ended cleanly and both sides allow another.
        self.reusable = False
        self.idle_since = 0.0
        self.exchanges = 0  # completed request/answer pairs

    def close(self) -> None:
        """Close at once (no TLS close-notify; never blocks, never checkpoints)."""
        self.socket.close()


class ConnectionPool:
    """Keep-alive connections to one origin, at most ``max_connections`` at once.

    Args:
      origin: where requests go.
      max_connections: connections open at once; further requests wait (FIFO, no deadline)
        for a slot.
      keepalive_expiry: seconds an idle connection may be reused.
      proxy: an HTTP proxy to go through (see :func:`proxy_for`), or ``None``.
      ssl_context: for ``https`` origins; :func:`default_ssl_context` when ``None``.

    Safe to share between tasks of one trio run. Close it with :meth:`aclose`. Implements
    :class:`~._transport.Transport`.
    """

    def __init__(
        self,
        origin: Origin,
        *,
        max_connections: int,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
        proxy: Proxy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._origin = origin
        self._slots = trio.CapacityLimiter(max_connections)
        self._expiry = keepalive_expiry
        self._proxy = proxy
        self._ssl_context = ssl_context
        # Most recently used last; idle_since ascends from the front.
        self._idle: list[_Connection] = []
        self._closed = False
        self._opened = 0
        self._sending = 0  # requests with a slot, before their last byte is sent
        # (method, path, headers) -> the validated head's bytes, before and after the place
        # of Content-Length.
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[bytes, bytes]] = {}

    @property
    def origin(self) -> Origin:
        return self._origin

    def statistics(self) -> TransportStatistics:
        """Slots in use, requests waiting for one, connections opened so far."""
        return TransportStatistics(
            in_use=self._slots.borrowed_tokens,
            waiting=self._slots.statistics().tasks_waiting,
            opened=self._opened,
        )

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        await trio.lowlevel.checkpoint()

    async def open_idle(self, count: int, *, timeout: float) -> int:  # noqa: ASYNC109
        """Open up to ``count`` connections ahead of any request and keep them idle, so the
        first requests find them ready (connecting, and for https the TLS handshake, done
        while the caller was still starting up). Each holds a connection slot while it
        connects, so the pool never holds more than ``max_connections``. Failures (and
        ``timeout`` seconds without a connection) are ignored: the requests that follow meet
        them again and report them. Returns how many connections were added.
        """
        added = 0

        async def one() -> None:
            nonlocal added
            async with self._slots:
                with trio.move_on_after(timeout):
                    try:
                        connection = await self._connect()
                    except HTTPError:
                        return
                    if self._closed:
                        connection.close()
                        return
                    connection.idle_since = trio.current_time()
                    connection.ahead = True
                    self._idle.append(connection)
                    added += 1

        async with trio.open_nursery() as nursery:
            for _ in range(min(count, int(self._slots.total_tokens))):
                nursery.start_soon(one)
        return added

    async def top_up(self, *, timeout: float) -> int:  # noqa: ASYNC109
        """Open idle connections so that those in use plus the idle ones reach twice the
        requests in flight (at most ``max_connections``); returns how many were added.

        For the moment a run's first wave of requests is out and it waits for the answers:
        each answer can start more than one request (the next column of its row, and a cell
        the first wave had no slot for), and a request that finds no idle connection connects
        on the critical path, costing both sides CPU while answers arrive (Dual-model in
        ``benches/small_runs.py``: 14 connects in its second wave). Connecting during the
        wait moves that work to idle time; see :meth:`open_idle` for failures.
        """
        in_use = int(self._slots.borrowed_tokens)
        target = min(int(self._slots.total_tokens), 2 * in_use)
        missing = target - in_use - len(self._idle)
        if missing <= 0:
            await trio.lowlevel.checkpoint()
            return 0
        return await self.open_idle(missing, timeout=timeout)

    def target(self, path: str) -> str:
        """The request target for ``path``: absolute through a forward proxy (plain http)."""
        if self._proxy is not None and self._origin.scheme == "http":
            return f"{self._origin}{path}"
        return path

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
        """Send one request and read its whole answer (any status).

        Args:
          method: ``"GET"`` or ``"POST"``.
          path: the path (and query) on the origin, starting with ``/``.
          headers: headers besides ``Host`` and ``Content-Length`` (added here).
          body: the request body (``b""`` for none).
          timeout: seconds for the whole request once it has a connection slot.
          max_body: the most bytes of (decoded) answer body to accept.

        Raises:
          HTTPError: one of :mod:`._transport`'s subclasses (never ``HTTPStatusError``).
        """
        request = self._request_bytes(method, path, headers, body)
        # A connection slot (FIFO behind anyone waiting). A free one is taken *without* a
        # schedule point (a cancelled task still raises Cancelled first): this is the path
        # from a granted request to its bytes on the wire, and ``async with`` on the limiter
        # yielded there, letting every other runnable task of the batch go first — with a
        # wave of requests, each one's send waited for the others' work
        # (benches/small_runs_chain.py, "send side"). The request checkpoints right after its
        # bytes leave and while it waits for the answer. (Written out here, not in a
        # coroutine of its own: one layer less on every request's path.)
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._slots.acquire_nowait()  # refuses while anyone waits: FIFO is kept
        except trio.WouldBlock:
            await self._slots.acquire()
        try:
            sending = _Sending(self)
            try:
                # move_on_after(timeout), with the clock read once for the deadline and the
                # idle connections' expiry (_checkout).
                now = trio.current_time()
                with trio.CancelScope(deadline=now + timeout) as deadline:
                    return await self._send(request, max_body, sending, now)
            finally:
                sending.done()
            # The only cancellation that ends up here is our own deadline's.
            assert deadline.cancelled_caught
            raise RequestTimedOut(timeout=timeout)
        finally:
            self._slots.release()

    def _request_bytes(
        self, method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> bytes:
        """The whole request as bytes. Its fixed part (method, target, ``Host``, the caller's
        headers, a proxy's authorization) is validated by h11 once per distinct value and kept
        as the bytes h11 writes for it; each request then adds only its ``Content-Length``
        and its body. h11's header validation was the largest single share of the client's
        CPU per request (``benches/small_runs.py``); the bytes are those h11 sends for the
        same request (``tests/test_model_http.py::test_request_heads_are_validated_once``)."""
        key = (method, path, headers if isinstance(headers, tuple) else tuple(headers))
        fixed = self._heads.get(key)
        if fixed is None:
            proxy = self._proxy
            tail = []
            if proxy is not None and proxy.authorization and self._origin.scheme == "http":
                tail.append(("proxy-authorization", proxy.authorization.decode()))
            with translated(InvalidRequest, "the request could not be built"):
                checked = h11.Request(
                    method=method,
                    target=self.target(path),
                    headers=[("host", self._origin.host_header), *headers, *tail],
                )
            raw = list(checked.headers.raw_items())
            cut = len(raw) - len(tail)
            # h11 writes Host first (RFC 9112 asks for it right after the request line).
            first = [line for line in raw[:cut] if line[0].lower() == b"host"]
            rest = [line for line in raw[:cut] if line[0].lower() != b"host"]
            prefix = b"%s %s HTTP/1.1\r\n" % (checked.method, checked.target)
            prefix += b"".join(b"%s: %s\r\n" % line for line in (*first, *rest))
            suffix = b"".join(b"%s: %s\r\n" % line for line in raw[cut:]) + b"\r\n"
            fixed = (prefix, suffix)
            if len(self._heads) >= _HEADS_KEPT:
                self._heads.clear()
            self._heads[key] = fixed
        prefix, suffix = fixed
        if method != "GET" or body:  # where h11 puts it: before a proxy's header
            return b"%scontent-length: %d\r\n%s%s" % (prefix, len(body), suffix, body)
        return prefix + suffix + body

    @property
    def sending(self) -> int:
        """Requests that hold a connection slot and have not sent their last byte yet
        (connecting, or writing): what ``ModelRegistry.top_up`` waits out."""
        return self._sending

    async def _send(
        self, request: bytes, max_body: int, sending: _Sending, now: float
    ) -> Response:
        """:meth:`_exchange` on an idle connection, or on a new one (once more on a new one
        when the idle one turns out closed by the server); :meth:`_exchange` written out for
        the idle one, the usual case (one coroutine less on every request's path)."""
        connection = self._checkout(now)
        if connection is not None:
            reused = connection.exchanges > 0 or connection.ahead
            try:
                response = await self._round_trip(connection, request, max_body, reused, sending)
            except _Stale:
                connection.close()  # closed by the server while idle: again on a new one
            except BaseException:
                connection.close()
                raise
            else:
                self._checkin(connection)
                return response
        # A fresh connection never raises _Stale (only reused ones do).
        return await self._exchange(await self._connect(), request, max_body, sending)

    def _checkout(self, now: float) -> _Connection | None:
        """The most recently used idle connection that is neither expired nor closed by the
        server, or ``None``. Expired ones are closed on the way (``now``: the current time)."""
        while self._idle:
            connection = self._idle.pop()
            if now - connection.idle_since >= self._expiry:
                connection.close()  # ... and every older one: they expired earlier
                self._drop_expired(now)
                return None
            if connection.socket.is_readable():  # EOF or stray bytes: unusable
                connection.close()
                continue
            return connection
        return None

    def _drop_expired(self, now: float) -> None:
        """Close idle connections past their expiry (they sit at the front)."""
        expired = 0
        for connection in self._idle:
            if now - connection.idle_since < self._expiry:
                break
            connection.close()
            expired += 1
        del self._idle[:expired]

    def _checkin(self, connection: _Connection) -> None:
        if self._closed or not connection.reusable:
            connection.close()
            return
        connection.reusable = False
        connection.exchanges += 1
        now = trio.current_time()
        connection.idle_since = now
        idle = self._idle
        if idle and now - idle[0].idle_since >= self._expiry:  # the oldest expired
            self._drop_expired(now)
        idle.append(connection)

    async def _connect(self) -> _Connection:
        target = self._proxy.origin if self._proxy is not None else self._origin
        where = f"could not connect to {target.host}:{target.port}"
        with translated(ConnectFailed, where):
            tcp, raw = await _open_tcp(target.host, target.port)
        self._opened += 1
        stream: trio.abc.Stream = tcp
        try:
            if self._proxy is not None and self._origin.scheme == "https":
                await self._tunnel(tcp)
            if self._origin.scheme == "https":
                if self._ssl_context is None:
                    self._ssl_context = default_ssl_context()
                tls = trio.SSLStream(tcp, self._ssl_context, server_hostname=self._origin.host)
                with translated(ConnectFailed, f"the TLS handshake with {self._origin} failed"):
                    await tls.do_handshake()
                stream = tls
        except BaseException:
            tcp.socket.close()
            raise
        return _Connection(stream, tcp.socket, raw if stream is tcp else None)

    async def _tunnel(self, tcp: trio.SocketStream) -> None:
        """Ask the proxy to ``CONNECT`` us to the origin; raise unless it answers 2xx."""
        assert self._proxy is not None
        host = self._origin.host
        authority = (
            f"[{host}]:{self._origin.port}" if ":" in host else f"{host}:{self._origin.port}"
        )
        headers = [("host", authority)]
        if self._proxy.authorization:
            headers.append(("proxy-authorization", self._proxy.authorization.decode()))
        proxy = h11.Connection(h11.CLIENT)
        where = f"the proxy {self._proxy.origin.host}:{self._proxy.origin.port} failed"
        with translated(ProxyFailed, where):
            data = proxy.send(h11.Request(method="CONNECT", target=authority, headers=headers))
            await tcp.send_all(data + (proxy.send(h11.EndOfMessage()) or b""))
            while True:
                event = proxy.next_event()
                if event is h11.NEED_DATA:
                    proxy.receive_data(await tcp.receive_some(_RECEIVE_SIZE))
                elif isinstance(event, h11.Response):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ProxyFailed(f"{where}: it closed the connection")
        if not 200 <= event.status_code < 300:
            reason = event.reason.decode("latin-1", errors="replace")
            raise ProxyFailed(f"{where}: CONNECT {authority} answered {event.status_code} {reason}")

    async def _exchange(
        self,
        connection: _Connection,
        request: bytes,
        max_body: int,
        sending: _Sending,
    ) -> Response:
        """One request/answer on ``connection``; pool it after, or close it on any failure.

        Raises:
          _Stale: the server closed the connection before answering and the request may be
            sent again (on a new connection).
        """
        reused = connection.exchanges > 0 or connection.ahead
        try:
            response = await self._round_trip(connection, request, max_body, reused, sending)
        except BaseException:
            connection.close()
            raise
        self._checkin(connection)
        return response

    async def _round_trip(
        self,
        connection: _Connection,
        request: bytes,
        max_body: int,
        reused: bool,
        sending: _Sending,
    ) -> Response:
        stream = connection.stream
        raw = connection.raw
        try:
            if raw is not None:  # _send_raw's first send, inline; the rest (rare) in it
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    sent = raw.send(request)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    raise _stream_error(exc) from exc
                if sent < len(request):
                    await _send_raw(raw, memoryview(request)[sent:])
            else:
                await stream.send_all(request)
        except LOW_LEVEL_ERRORS as exc:
            if reused:
                raise _Stale from exc
            raise ConnectionBroken(f"sending the request failed: {_describe(exc)}") from exc
        sending.done()

        answer = connection.answer
        answer.start()
        received = 0
        kept: list[bytes | bytearray] = []  # the answer's first bytes, to name a failure
        reader: BodyReader | None = None
        while True:
            chunk: bytes | bytearray
            try:
                if raw is not None:
                    chunk = await _receive_raw(raw)
                else:
                    chunk = await stream.receive_some(_RECEIVE_SIZE)
            except LOW_LEVEL_ERRORS as exc:
                if reused and received == 0:
                    raise _Stale from exc
                raise ConnectionBroken(f"reading the answer failed: {_describe(exc)}") from exc
            if not chunk:
                if received == 0:
                    if reused:
                        raise _Stale
                    hint = (
                        " (if it speaks TLS, the base_url must start with https://)"
                        if self._origin.scheme == "http"
                        else ""
                    )
                    raise ServerHungUp(
                        f"the server closed the connection without sending an answer{hint}"
                    )
                if answer.head_done and not answer.body_framed() and reader is not None:
                    break  # an answer that ends with the connection: complete, not reusable
                _diagnose(kept, received, eof=True, parsed=None)
            received += len(chunk)
            if received <= _KEPT_FOR_ERRORS:
                kept.append(chunk)
            try:
                answer.parser.feed_data(chunk)  # answer.feed, without its call
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                if received > _KEPT_FOR_ERRORS:
                    _diagnose(kept, received, eof=False, parsed=exc)
                connection.answer = _Answer()  # this one stays in its error state
                return await self._read_with_h11(connection, kept, max_body)
            if answer.head_size > _MAX_HEAD_BYTES or (
                not answer.head_done and received > _MAX_HEAD_BYTES
            ):
                raise ProtocolViolation(
                    f"the server broke the HTTP protocol: the answer's status line and headers "
                    f"are longer than {_MAX_HEAD_BYTES // 1024} KiB"
                )
            if reader is None:
                if not answer.head_done:
                    continue
                reader = _start_body(answer.status, answer.headers, max_body)
            if answer.body:
                for piece in answer.body:
                    reader.feed(piece)
                answer.body.clear()
            if answer.complete:
                connection.reusable = answer.keep_alive and not answer.extra
                break
        return reader.finish()


    async def _read_with_h11(
        self, connection: _Connection, kept: list[bytes | bytearray], max_body: int
    ) -> Response:
        """Read an answer httptools refused with h11, from its first byte (``kept``).

        h11 decided what the native transport accepted before httptools did, and still
        decides for the httpx transport; it is more lenient than llhttp here and there (bare
        LF line ends, an obs-folded header, ``Transfer-Encoding`` beside ``Content-Length``)
        and names what it refuses in its own words ("illegal chunk header", "conflicting
        Content-Length headers"), which the tests of both transports expect. So an answer
        llhttp refuses is read again, and on to its end, by h11: accepted exactly when it was
        before, refused with the same message. Slow, and only for such answers.
        """
        replay = _h11_replay()
        stream = connection.stream
        reader: BodyReader | None = None
        with translated(ConnectionBroken, "reading the answer failed"):
            replay.receive_data(b"".join(kept))
            while True:
                event = replay.next_event()
                if event is h11.NEED_DATA:
                    replay.receive_data(bytes(await stream.receive_some(_RECEIVE_SIZE)))
                    continue
                kind = type(event)
                if kind is h11.Data:
                    assert reader is not None
                    reader.feed(event.data)  # type: ignore[union-attr]
                elif kind is h11.Response:
                    reader = _start_body(
                        event.status_code,  # type: ignore[union-attr]
                        list(event.headers),  # type: ignore[union-attr]
                        max_body,
                    )
                elif kind is h11.EndOfMessage:
                    break
                elif kind is h11.ConnectionClosed:
                    raise ProtocolViolation("the server closed the connection mid-answer")
                # h11.InformationalResponse (1xx): skipped
        assert reader is not None  # EndOfMessage comes after a Response
        connection.reusable = replay.their_state is h11.DONE
        return reader.finish()


def _h11_replay() -> h11.Connection:
    """An h11 client connection that has sent a request and waits for its answer."""
    replay = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)
    replay.send(h11.Request(method="POST", target="/", headers=[("host", "h"), *_EMPTY]))
    replay.send(h11.EndOfMessage())
    return replay


_KEPT_FOR_ERRORS: Final = 256 * 1024
"""An answer's first bytes kept while it is read, so that a malformed or cut-short answer is
described as h11 describes it (:func:`_diagnose`); answers are rarely longer."""


def _diagnose(
    kept: list[bytes | bytearray],
    received: int,
    *,
    eof: bool,
    parsed: httptools.HttpParserError | httptools.HttpParserUpgrade | None,
) -> NoReturn:
    """Raise :class:`ProtocolViolation` for an answer that ended with the connection before it
    was complete (``eof``), or that httptools refused (``parsed``) past its first
    :data:`_KEPT_FOR_ERRORS` bytes. In h11's words when the bytes are at hand: they are
    replayed through h11 (the parser of the httpx transport too), so both transports name
    the same problem the same way ("peer closed connection without sending complete message
    body: received 10 bytes, expected 20"); otherwise in llhttp's.
    """
    if received <= _KEPT_FOR_ERRORS:
        replay = _h11_replay()
        with translated(ProtocolViolation, "reading the answer failed"):
            replay.receive_data(b"".join(kept))
            if eof:
                replay.receive_data(b"")
            while True:  # h11 raises on what it refuses; else it ends at one of these
                event = replay.next_event()
                if event in (h11.NEED_DATA, h11.PAUSED) or isinstance(
                    event, (h11.EndOfMessage, h11.ConnectionClosed)
                ):
                    break
    if parsed is not None:
        with translated(ProtocolViolation, "reading the answer failed"):
            raise parsed
    raise ProtocolViolation(
        f"the server broke the HTTP protocol: peer closed connection without sending complete "
        f"message body ({received} bytes received)"
    )


_EMPTY: Final = (("content-length", "0"),)

_HEADS_KEPT: Final = 64
"""Validated request heads a pool keeps (a client sends a handful of distinct ones)."""


class _Sending:
    """One request in :attr:`ConnectionPool.sending` until :meth:`done` (idempotent: when its
    last byte is sent, or when it ends without being sent)."""

    __slots__ = ("_pool",)

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool: ConnectionPool | None = pool
        pool._sending += 1

    def done(self) -> None:
        if self._pool is not None:
            self._pool._sending -= 1
            self._pool = None


class _Stale(Exception):
    """A reused connection turned out closed before any byte of the answer."""


def _start_body(status: int, headers: list[tuple[bytes, bytes]], limit: int) -> BodyReader:
    """A :class:`~._transport.BodyReader` for an answer whose head has been parsed."""
    joined: dict[str, str] = {}  # joined_headers, written out
    for name, value in headers:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        joined[key] = f"{joined[key]}, {text}" if key in joined else text
    return BodyReader.start(status, joined, limit)
