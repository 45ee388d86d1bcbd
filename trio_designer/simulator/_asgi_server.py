"""A small HTTP/1.1 server for the simulator's ASGI app: trio + httptools (llhttp), nothing else.

Why not hypercorn: the simulator serves waves of small requests on loopback, on the same cores
as the client it is measured against, and every millisecond of its CPU per request delays the
last request of a wave. hypercorn (h11, HTTP/2, lifespan, task and timeout machinery per
request) cost ~0.8 ms of CPU per chat request; this server does only what the simulator needs
(``benches/small_runs.py`` and ``docs/benchmarks.md`` §9 and "Branch simfast" have the figures).
Requests are parsed by httptools (the C llhttp parser that uvicorn uses), answers' heads are
written by hand: h11 in pure Python was ~0.1 ms of CPU per request here.

What it does, per connection, one request at a time (keep-alive, no pipelining of answers):

* reads the request head and the whole body, and calls the ASGI app with an ``http`` scope
  (header names lower-cased, as h11 gave them); ``receive()`` returns the body once, then
  waits for the client to disconnect and returns ``http.disconnect`` (how the simulator aborts
  requests of departed clients). One task per connection reads the socket all along, so a
  departure is seen at once; the ``receive`` callable also has
  ``cancel_on_disconnect(scope)``, which ``_http.unless_disconnected`` uses to race work
  against a departure without a task;
* ``Expect: 100-continue`` (curl, for large bodies) gets ``100 Continue`` before the body;
* the answer's head is written with its first body chunk (one write for a whole answer);
  each later ``http.response.body`` chunk is written as it comes (the ``trickle`` fault).
  An answer without ``content-length`` is sent chunked (HTTP/1.1) or delimited by closing the
  connection (HTTP/1.0); a ``HEAD`` request's answer carries no body;
* an informational head (``1xx``) is written at once; an app that returns after one without a
  final answer gets its connection closed — the simulator's "connection reset"
  (``_http.send_reset``); an app that returns or raises before any answer gets a 500;
* a request whose client sent ``Connection: close`` (or spoke HTTP/1.0 without keep-alive)
  gets ``connection: close`` and the connection is closed after the answer; so is one that
  asked to upgrade the protocol (never granted);
* idle connections are closed after ``keep_alive`` seconds of trio's clock; a malformed request
  gets a 400, a head over ``MAX_HEAD`` bytes a 431, and the connection is closed.

No TLS, no HTTP/2, no lifespan events (the simulator's app needs none of them). Bytes a client
sends while its request is being served (pipelining) are parsed and queued without a bound:
this is a loopback test server, not one to face the internet.

The socket is read and written with ``os.read`` / ``os.write`` on its (non-blocking) file
descriptor, waiting with ``trio.lowlevel.wait_readable`` / ``wait_writable`` only when it would
block: trio's ``SocketStream`` tries each call first and then yields to the scheduler after a
success, which was two extra passes of the run loop per request. The invariants this needs:
only the connection's reader task reads the descriptor and waits for it to be readable, only
the request loop writes it and waits for it to be writable (trio allows one waiter of each kind
per descriptor), and nothing touches it after ``_serve_connection`` closes the socket.

A request's arrival (``_Request.arrived``, from which the simulator counts its latency) is when
its last byte reached this host: on Linux under the real clock the kernel stamps every segment
it receives (``SO_TIMESTAMPNS``) and the reader takes the stamp of the read that completed the
request, moved onto trio's clock. The server's own backlog — a wave of requests read while it is
busy with the ones before, a burst of new connections being accepted — then delays no answer:
every request is served exactly its latency after it arrived, as the simulator promises, whatever
the simulator's CPU. Elsewhere (another OS, or a virtual clock, where wall time means nothing)
the arrival is trio's clock when the reader parsed that byte.

Connections are accepted by one task per listening socket, which takes every pending
connection each time the socket is readable (a wave of clients connecting at once is one
wake-up, not one per connection), sets ``TCP_NODELAY`` and ``TCP_NOTSENT_LOWAT`` as trio's
``SocketStream`` did, and starts the connection's task; the client's address is the one
``accept`` returned (no ``getpeername`` per connection). Accept errors are handled as
``trio.serve_listeners`` did: out of descriptors or memory — wait 100 ms and try again; any
other (a connection aborted before it was taken) — skip it.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final
from urllib.parse import unquote

import httptools
import trio

__all__ = ["ASGIApp", "serve_asgi"]

ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]

RECEIVE_SIZE: Final = 65536
MAX_HEAD: Final = 64 * 1024
"""The largest request head accepted (a larger one gets 431, as h11's limit gave)."""

_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}
_CONNECTION_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_DISCONNECT: Final = {"type": "http.disconnect"}
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_ACCEPT_RETRY_DELAY: Final = 0.1

_SO_TIMESTAMPNS: Final = 35
"""Linux's ``SO_TIMESTAMPNS`` (``asm-generic/socket.h``; not exported by Python's ``socket``):
each read then carries the kernel's receive time of its data, a ``struct timespec`` in
``CLOCK_REALTIME``."""
_TIMESPEC: Final = struct.Struct("@qq")
_ANCILLARY_SIZE: Final = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
_MAX_BACKDATE: Final = 1.0
"""Seconds an arrival may be moved back from the moment the reader saw it; a stamp further
back (a wall clock stepped meanwhile) is not trusted and the reader's own moment is used."""


def _enable_kernel_stamps(listening: socket.socket) -> bool:
    """Turn on the kernel's receive stamps for every connection ``listening`` accepts (they
    inherit the option, so even the bytes that arrive before ``accept`` are stamped); returns
    whether arrivals are to be read from them: on Linux, under trio's real clock, if the
    option could be set. A ``trio.testing.MockClock`` run (looked up, not imported: importing
    ``trio.testing`` imports pytest when it is installed) keeps trio's clock: wall time says
    nothing about virtual time."""
    if not sys.platform.startswith("linux") or not _ANCILLARY_SIZE:
        return False
    testing = sys.modules.get("trio.testing")
    if testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock):
        return False
    try:
        listening.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


async def serve_asgi(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    backlog: int = 1024,
    keep_alive: float = 60.0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``task_status`` gets the root URL
    (``"http://HOST:PORT"``, the real port when ``port`` is 0).

    Raises:
      OSError: the address cannot be bound.
    """
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    bound_port = listeners[0].socket.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    handler = partial(_serve_connection, app, keep_alive, (host, bound_port))
    try:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept_connections, listener.socket, handler, nursery)
            task_status.started(f"http://{shown}:{bound_port}")
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)


async def _accept_connections(
    listening: trio.socket.SocketType,
    handler: Callable[[socket.socket, Any, bool], Awaitable[None]],
    nursery: trio.Nursery,
) -> None:
    """Accept connections on ``listening`` for ever, each served by ``handler`` in ``nursery``
    (see the module docstring). The listening socket is trio's, already non-blocking; it is
    used through a duplicate of its descriptor, closed here."""
    raw = socket.socket(fileno=os.dup(listening.fileno()))
    raw.setblocking(False)
    stamps = _enable_kernel_stamps(raw)
    try:
        while True:
            await trio.lowlevel.wait_readable(raw)
            while True:
                try:
                    client, address = raw.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                        await trio.sleep(_ACCEPT_RETRY_DELAY)
                    continue
                client.setblocking(False)
                try:
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if hasattr(socket, "TCP_NOTSENT_LOWAT"):
                        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 2**14)
                except OSError:
                    pass
                nursery.start_soon(handler, client, address, stamps)
    finally:
        trio.lowlevel.notify_closing(raw)
        raw.close()


async def _serve_connection(
    app: ASGIApp,
    keep_alive: float,
    server: tuple[str, int],
    client: socket.socket,
    address: Any,
    stamped: bool = False,
) -> None:
    connection = _Connection(client, address, stamped=stamped)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.read_until_closed, keep_alive)
            await connection.serve(app, server)
            nursery.cancel_scope.cancel()
    except _CONNECTION_ERRORS:
        pass  # the client went away: nothing left to answer
    finally:
        trio.lowlevel.notify_closing(client)
        client.close()


def _stamp_of(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The kernel's receive time (wall clock, seconds) in a read's ancillary data, if any."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return float(seconds + nanoseconds * 1e-9)
    return None


class _Request:
    """One request as the parser saw it: its head, its body so far, whether it is whole."""

    __slots__ = (
        "arrived",
        "body",
        "complete",
        "expects_continue",
        "headers",
        "keep_alive",
        "method",
        "target",
        "version",
    )

    def __init__(self) -> None:
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = "GET"
        self.version = "1.1"
        self.expects_continue = False
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = True
        self.arrived = 0.0  # trio's clock when its last byte arrived (set when complete)


class _Connection:
    """One client connection: httptools' parser fed by one reader task.

    The reader (:meth:`read_until_closed`) reads the socket for the connection's whole life
    and feeds the parser, whose callbacks queue the requests in ``self.requests`` (oldest
    first); the request loop (:meth:`serve`) parks until what it needs has come (a head, a
    whole request, or the end). So a client that disconnects is noticed at once,
    mid-request, without a task or a cancellation per request: the scopes registered with
    :meth:`cancel_on_disconnect` are cancelled and ``receive()`` returns ``http.disconnect``.
    Invariant: the reader unparks the loop whenever a head or a whole request is queued, the
    parser fails, or the stream ends; the loop re-checks its condition after every wake-up.
    """

    def __init__(self, client: socket.socket, address: Any, *, stamped: bool = False) -> None:
        self.fd = client.fileno()
        # With kernel receive stamps (see the module docstring): the socket read with
        # recvmsg, and the wall-clock stamp of the data being parsed (None: none came).
        self._stamped_socket = client if stamped else None
        self._stamp: float | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.requests: collections.deque[_Request] = collections.deque()
        self.parsing: _Request | None = None  # the request whose head is being read
        self.head_bytes = 0  # bytes read while a head was incomplete
        self.error: int | None = None  # the status a malformed request gets (400 / 431)
        self.upgrade_body_left = 0  # body bytes still due of a request asking to upgrade
        self.closed = False  # the client closed its side (or the socket failed)
        self.serving = False  # the request loop is in the app
        self.last_active = trio.current_time()  # when the last answer was done (or opened)
        self._arrivals = trio.lowlevel.ParkingLot()
        self._watches: set[_CancelOnDisconnect] = set()
        peer = address[:2] if isinstance(address, tuple) else None
        self.client: tuple[str, int] | None = peer

    # ----------------------------------------------------------- the parser's callbacks

    def on_message_begin(self) -> None:
        self.parsing = _Request()
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self.parsing.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        request, parser = self.parsing, self.parser
        assert request is not None
        self.parsing = None
        request.method = parser.get_method().decode("ascii")
        request.version = parser.get_http_version()
        request.expects_continue = request.version == "1.1" and any(
            name == b"expect" and value.lower() == b"100-continue"
            for name, value in request.headers
        )
        self.requests.append(request)
        self._arrivals.unpark_all()

    def on_body(self, body: bytes) -> None:
        self.requests[-1].body.append(body)

    def on_message_complete(self) -> None:
        request = self.requests[-1]
        request.complete = True
        request.arrived = self._arrival()
        request.keep_alive = self.parser.should_keep_alive() and not self.parser.should_upgrade()
        self._arrivals.unpark_all()

    # ----------------------------------------------------------- reading

    async def read_until_closed(self, keep_alive: float) -> None:
        """Read the socket until the client closes it, or until the connection has been idle
        ``keep_alive`` seconds (trio's clock).

        Idle expiry is kept here, not in the request loop, so that serving a request moves no
        deadline (moving one costs about as much as a third of a small exchange): the loop
        only notes when it finished its last answer (``last_active``) and whether it is
        serving. This task's scope carries a deadline that is checked when it passes: a
        connection with no request queued or in service since ``last_active + keep_alive``
        is closed; otherwise the deadline is set again (to that moment, or while a request is
        in service to ``keep_alive`` from now). Invariant: a connection is never expired
        while a request is queued or served, and an idle one is closed exactly
        ``keep_alive`` after its last answer (or its opening); a request read in the same
        instant as the expiry is either queued first (no expiry) or never read.
        """
        try:
            while True:
                with trio.CancelScope(deadline=self._idle_deadline(keep_alive)):
                    await self._read()
                    break  # the client closed its side
                idle = not self.requests and not self.serving
                if idle and trio.current_time() >= self.last_active + keep_alive:
                    break  # idle too long
        except _CONNECTION_ERRORS:
            pass
        self.closed = True
        self._arrivals.unpark_all()
        for watch in list(self._watches):
            watch.fire()

    def _arrival(self) -> float:
        """When the data just read arrived, on trio's clock: the kernel's stamp of it when
        there is one (and it is no more than :data:`_MAX_BACKDATE` back), else now."""
        now = trio.current_time()
        stamp = self._stamp
        if stamp is None:
            return now
        ago = time.time() - stamp
        return now - ago if 0.0 < ago < _MAX_BACKDATE else now

    def _idle_deadline(self, keep_alive: float) -> float:
        if self.requests or self.serving:
            return trio.current_time() + keep_alive
        return self.last_active + keep_alive

    async def _read(self) -> None:
        """Feed the parser until the stream ends."""
        fd, feed, stamped = self.fd, self.parser.feed_data, self._stamped_socket
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                if stamped is None:
                    data = os.read(fd, RECEIVE_SIZE)
                else:
                    data, ancillary, _, _ = stamped.recvmsg(RECEIVE_SIZE, _ANCILLARY_SIZE)
                    self._stamp = _stamp_of(ancillary)
            except BlockingIOError:
                continue
            if not data:
                break
            if self.error is not None:
                if self.upgrade_body_left:
                    self._take_upgrade_body(data)
                continue  # a malformed request, or an upgrade: only wait for the end
            try:
                feed(data)
            except httptools.HttpParserUpgrade as upgrade:
                # llhttp stops at the end of the head of a request asking to upgrade the
                # protocol (never granted: the loop closes after the answer); its body,
                # if it has a content-length, is read here.
                self.error = 0
                self._start_upgrade_body(data[upgrade.args[0] :])
            except httptools.HttpParserError:
                self.error = 400
                self._arrivals.unpark_all()
                continue
            if self.parsing is not None:
                self.head_bytes += len(data)
                if self.head_bytes > MAX_HEAD:
                    self.error = 431
                    self._arrivals.unpark_all()

    def _start_upgrade_body(self, rest: bytes) -> None:
        request = self.requests[-1] if self.requests else None
        if request is None:
            return
        length = next((v for n, v in request.headers if n == b"content-length"), b"0")
        try:
            self.upgrade_body_left = int(length)
        except ValueError:
            self.upgrade_body_left = 0
        if self.upgrade_body_left > 0:
            request.complete = False
            self._take_upgrade_body(rest)

    def _take_upgrade_body(self, data: bytes) -> None:
        piece = data[: self.upgrade_body_left]
        self.requests[-1].body.append(piece)
        self.upgrade_body_left -= len(piece)
        if not self.upgrade_body_left:
            self.requests[-1].complete = True
            self.requests[-1].arrived = self._arrival()
            self._arrivals.unpark_all()

    def cancel_on_disconnect(self, scope: trio.CancelScope) -> _CancelOnDisconnect:
        """Cancel ``scope`` if the client disconnects while the block runs (or already has);
        the handle's ``fired`` says afterwards whether the departure cancelled it."""
        return _CancelOnDisconnect(self, scope)

    async def wait_for_disconnect(self) -> None:
        while not self.closed:
            await self._arrivals.park()

    # ----------------------------------------------------------- the request loop

    async def serve(self, app: ASGIApp, server: tuple[str, int]) -> None:
        """The request loop: one request at a time, until the connection closes (the reader
        ends it when the client leaves or the connection idles out: ``read_until_closed``)."""
        requests = self.requests
        while True:
            if requests:
                await trio.lowlevel.checkpoint()  # a pipelined request: let others run first
            else:
                while not requests and not self.closed and self.error is None:
                    await self._arrivals.park()
                if not requests:
                    if self.error:
                        await self._send_error(self.error)
                    return  # closed, or nonsense before any head
            request = requests[0]
            if not request.complete:
                if request.expects_continue and not request.body and self.error is None:
                    await self.write(b"HTTP/1.1 100 \r\n\r\n")
                while not request.complete and not self.closed and not self.error:  # 0: an upgrade
                    await self._arrivals.park()
                if not request.complete:
                    if self.error:
                        await self._send_error(self.error)
                    return  # the client left in the middle of its body, or sent nonsense
            requests.popleft()
            exchange = _Exchange(self, request)
            self.serving = True
            try:
                await app(self._scope(request, server), exchange.receive, exchange)
            except Exception:  # an app bug answers 500, as hypercorn did; it never ends the server
                if not exchange.started:
                    await self._send_error(500)
                return
            finally:
                self.serving = False
                self.last_active = trio.current_time()
            if not exchange.complete:
                if not exchange.started:
                    await self._send_error(500)
                return  # no final answer (the 1xx "reset" trick): close the connection
            if exchange.must_close or self.closed:
                return

    def _scope(self, request: _Request, server: tuple[str, int]) -> dict[str, Any]:
        path, _, query = request.target.partition(b"?")
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": request.version,
            "method": request.method,
            "scheme": "http",
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": request.headers,
            "client": self.client,
            "server": server,
        }

    async def _send_error(self, status: int) -> None:
        """A bodiless error answer, if the connection can still carry one."""
        if not self.closed:
            try:
                await self.write(
                    b"HTTP/1.1 %d \r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % status
                )
            except _CONNECTION_ERRORS:
                self.closed = True

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting only when the socket's buffer is full."""
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self.fd, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.fd)
                continue
            view = view[sent:]


class _CancelOnDisconnect:
    """:meth:`_Connection.cancel_on_disconnect`'s context manager (a class: a generator-based
    one cost a few µs more per request).

    ``fired`` is True when the client's departure cancelled the scope: it left while the block
    ran (or before), and the scope had not been cancelled already — by its own deadline
    either, which lets the app use one scope as both its timer and its departure watch
    (``SimulatorApp._service``): a deadline that passed first means the work was done.
    """

    __slots__ = ("_connection", "_scope", "fired")

    def __init__(self, connection: _Connection, scope: trio.CancelScope) -> None:
        self._connection, self._scope = connection, scope
        self.fired = False

    def __enter__(self) -> _CancelOnDisconnect:
        if self._connection.closed:
            self.fire()
        self._connection._watches.add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._connection._watches.discard(self)

    def fire(self) -> None:
        """The client left: cancel the scope (unless it was cancelled already)."""
        if not self._scope.cancel_called:
            self.fired = True
            self._scope.cancel()


class _Receive:
    """An exchange's ASGI ``receive``; ``cancel_on_disconnect`` is the fast path that
    ``_http.unless_disconnected`` looks for (no watcher task), and ``arrived`` is when the
    connection's reader read the request's last byte (trio's clock): its arrival, which the
    app counts its latency from. Taken by the reader, it does not include the time the
    request then waited for the request loops of other connections (a burst of requests is
    read in one pass of the run loop, then answered one after another)."""

    def __init__(self, connection: _Connection, body: bytes, arrived: float) -> None:
        self.arrived = arrived
        self.body: bytes | None = body
        self.cancel_on_disconnect = connection.cancel_on_disconnect
        self._connection = connection

    async def __call__(self) -> dict[str, Any]:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._connection.wait_for_disconnect()
        return _DISCONNECT


class _Exchange:
    """The ASGI ``receive`` and ``send`` of one request (the exchange itself is ``send``).

    The answer's framing follows the head the app sends: ``content-length`` when given (the
    simulator always gives it), else chunked for HTTP/1.1 or until close for HTTP/1.0; a
    ``HEAD`` request's and a 204/304's answer has no body.

    Besides ASGI's messages, ``send`` offers :meth:`prepare` and :meth:`send_prepared`
    (``_http.prepare_json`` / ``send_prepared`` look for them): a whole answer framed ahead
    of time, written later with one call — the app builds its usual answer while the request
    waits, so that after the wait only the write is left.
    """

    def __init__(self, connection: _Connection, request: _Request) -> None:
        self.connection = connection
        body = request.body
        whole = body[0] if len(body) == 1 else b"".join(body)
        self.receive = _Receive(connection, whole, request.arrived)
        self.version = request.version
        self.keep_alive = request.keep_alive
        self.bodiless = request.method == "HEAD"
        self.head: bytes | None = None  # a final head not written yet
        self.chunked = False
        self.started = False  # a head (final or informational) went out
        self.complete = False
        self.must_close = not request.keep_alive

    def prepare(self, status: int, headers: Any, body: bytes) -> bytes:
        """The bytes of a whole final answer (head and body, framed as :meth:`send` would
        frame ``http.response.start`` + one ``http.response.body``), to be written later
        with :meth:`send_prepared`; call it at most once, and send nothing else meanwhile."""
        head = self._final_head(status, headers)
        if self.bodiless:
            body = b""
        elif self.chunked:
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        return head + body

    async def send_prepared(self, data: bytes) -> None:
        """Write an answer :meth:`prepare` framed (nothing if the client has gone)."""
        connection = self.connection
        if connection.closed or self.complete:
            return
        self.complete = self.started = True
        try:
            await connection.write(data)
        except _CONNECTION_ERRORS:
            connection.closed = True

    async def send(self, message: Any) -> None:
        connection = self.connection
        if connection.closed or self.complete:
            return  # nobody to tell; the app finds out through receive()
        kind = message["type"]
        try:
            if kind == "http.response.start":
                status = int(message["status"])
                headers = message.get("headers", ())
                if status < 200:
                    self.started = True
                    await connection.write(_head(status, headers))
                else:
                    self.head = self._final_head(status, headers)
            elif kind == "http.response.body":
                body = b"" if self.bodiless else message.get("body", b"")
                more = message.get("more_body", False)
                if self.chunked and body:
                    body = b"%x\r\n%s\r\n" % (len(body), body)
                if not more:
                    self.complete = True
                    if self.chunked:
                        body += b"0\r\n\r\n"
                if self.head is not None:
                    body = self.head + body
                    self.head, self.started = None, True
                if body:
                    await connection.write(body)
        except _CONNECTION_ERRORS:
            connection.closed = True

    __call__ = send  # the exchange is the app's ``send``

    def _final_head(self, status: int, headers: Any) -> bytes:
        has_length = has_connection = False
        for name, _ in headers:
            lowered = bytes(name).lower()
            if lowered == b"content-length" or lowered == b"transfer-encoding":
                has_length = True
            elif lowered == b"connection":
                has_connection = True
        extra: list[tuple[bytes, bytes]] = []
        if status in _NO_BODY_STATUSES:
            self.bodiless = True
        elif not has_length and not self.bodiless:
            if self.version == "1.1":
                self.chunked = True
                extra.append((b"transfer-encoding", b"chunked"))
            else:
                self.must_close = True  # the body ends where the connection does
        if self.must_close and not has_connection:
            extra.append((b"connection", b"close"))
        return _head(status, [*headers, *extra] if extra else headers)


def _head(status: int, headers: Any) -> bytes:
    """``HTTP/1.1 <status> `` and the headers, as h11 wrote them (no reason phrase)."""
    lines = [b"HTTP/1.1 %d \r\n" % status]
    lines += [b"%s: %s\r\n" % (name, value) for name, value in headers]
    lines.append(b"\r\n")
    return b"".join(lines)
