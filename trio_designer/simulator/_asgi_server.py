"""A small HTTP/1.1 server for the simulator's ASGI app: trio streams + h11, nothing else.

Why not hypercorn: the simulator serves waves of small requests on loopback, on the same cores
as the client it is measured against, and every millisecond of its CPU per request delays the
last request of a wave. hypercorn (h11, HTTP/2, lifespan, task and timeout machinery per
request) cost ~0.8 ms of CPU per chat request; this server does only what the simulator needs
(``benches/small_runs.py`` and ``docs/benchmarks.md`` §9 have the figures).

What it does, per connection, one request at a time (keep-alive, no pipelining of answers):

* reads the request head and the whole body with h11, and calls the ASGI app with an ``http``
  scope; ``receive()`` returns the body once, then waits for the client to disconnect and
  returns ``http.disconnect`` (how the simulator aborts requests of departed clients). One
  task per connection reads the socket all along, so a departure is seen at once; the
  ``receive`` callable also has ``cancel_on_disconnect(scope)``, which
  ``_http.unless_disconnected`` uses to race work against a departure without a task;
* the answer's head is written with its first body chunk (one ``send`` for a whole answer);
  each later ``http.response.body`` chunk is written as it comes (the ``trickle`` fault);
* an informational head (``1xx``) is written at once; an app that returns after one without a
  final answer gets its connection closed — the simulator's "connection reset"
  (``_http.send_reset``); an app that returns or raises before any answer gets a 500;
* idle connections are closed after ``keep_alive`` seconds of trio's clock; a malformed request
  gets a 400 and the connection is closed.

No TLS, no HTTP/2, no lifespan events (the simulator's app needs none of them). Bytes a client
sends while its request is being served (pipelining) are buffered without a bound: this is a
loopback test server, not one to face the internet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Final
from urllib.parse import unquote

import h11
import trio

__all__ = ["ASGIApp", "serve_asgi"]

ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]

RECEIVE_SIZE: Final = 65536
MAX_HEAD: Final = 64 * 1024
"""The largest request head accepted (h11's ``max_incomplete_event_size``)."""

_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}
_CONNECTION_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_DISCONNECT: Final = {"type": "http.disconnect"}


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
    async with trio.open_nursery() as nursery:
        task_status.started(f"http://{shown}:{bound_port}")
        await trio.serve_listeners(handler, listeners, handler_nursery=nursery)


async def _serve_connection(
    app: ASGIApp, keep_alive: float, server: tuple[str, int], stream: trio.SocketStream
) -> None:
    connection = _Connection(stream)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.read_until_closed)
            await connection.serve(app, keep_alive, server)
            nursery.cancel_scope.cancel()
    except (*_CONNECTION_ERRORS, h11.ProtocolError):
        pass  # the client went away or spoke nonsense: nothing left to answer
    finally:
        await trio.aclose_forcefully(stream)


class _Connection:
    """One client connection: h11's state machine over a trio stream.

    One task reads the socket for the connection's whole life (:meth:`read_until_closed`) and
    feeds h11; the request loop (:meth:`serve`) parks until the bytes it needs have come. So
    a client that disconnects is noticed at once, mid-request, without a task or a
    cancellation per request: the scopes registered with :meth:`cancel_on_disconnect` are
    cancelled and ``receive()`` returns ``http.disconnect``.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.closed = False  # the client closed its side (or the socket failed)
        self._arrivals = trio.lowlevel.ParkingLot()  # unparked on every read
        self._scopes: set[trio.CancelScope] = set()
        try:
            self.client: tuple[str, int] | None = stream.socket.getpeername()[:2]
        except OSError:
            self.client = None

    async def read_until_closed(self) -> None:
        try:
            while data := await self.stream.receive_some(RECEIVE_SIZE):
                self.h11.receive_data(data)
                self._arrivals.unpark_all()
        except _CONNECTION_ERRORS:
            pass
        self.closed = True
        self.h11.receive_data(b"")
        self._arrivals.unpark_all()
        for scope in self._scopes:
            scope.cancel()

    @contextmanager
    def cancel_on_disconnect(self, scope: trio.CancelScope) -> Iterator[None]:
        """Cancel ``scope`` if the client disconnects while the block runs (or already has)."""
        if self.closed:
            scope.cancel()
        self._scopes.add(scope)
        try:
            yield
        finally:
            self._scopes.discard(scope)

    async def wait_for_disconnect(self) -> None:
        while not self.closed:
            await self._arrivals.park()

    async def _next_event(self) -> Any:
        while (event := self.h11.next_event()) is h11.NEED_DATA:
            await self._arrivals.park()
        return event

    async def serve(self, app: ASGIApp, keep_alive: float, server: tuple[str, int]) -> None:
        while True:
            try:
                request: Any = None  # a connection that idles out before its first request
                with trio.move_on_after(keep_alive):
                    request = await self._next_event()
                if not isinstance(request, h11.Request):
                    return  # idle too long, or closed (ConnectionClosed)
                if self.h11.they_are_waiting_for_100_continue:  # curl, for large bodies
                    await self.write(
                        self.h11.send(h11.InformationalResponse(status_code=100, headers=[]))
                    )
                chunks: list[bytes] = []
                while True:
                    event = await self._next_event()
                    if isinstance(event, h11.Data):
                        chunks.append(bytes(event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return  # the client left in the middle of its body
            except h11.RemoteProtocolError as error:
                await self._send_error(error.error_status_hint)
                return
            exchange = _Exchange(self, b"".join(chunks))
            try:
                await app(self._scope(request, server), exchange.receive, exchange.send)
            except Exception:  # an app bug answers 500, as hypercorn did; it never ends the server
                if not exchange.started:
                    await self._send_error(500)
                return
            if not exchange.complete:
                if not exchange.started:
                    await self._send_error(500)
                return  # no final answer (the 1xx "reset" trick): close the connection
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return  # MUST_CLOSE (the client asked to close, or HTTP/1.0)
            self.h11.start_next_cycle()

    def _scope(self, request: h11.Request, server: tuple[str, int]) -> dict[str, Any]:
        target = bytes(request.target)
        path, _, query = target.partition(b"?")
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": request.http_version.decode(),
            "method": request.method.decode(),
            "scheme": "http",
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": [(bytes(name), bytes(value)) for name, value in request.headers],
            "client": self.client,
            "server": server,
        }

    async def _send_error(self, status: int) -> None:
        """A bodiless error answer, if the connection can still carry one."""
        if self.closed or self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        head = h11.Response(
            status_code=status, headers=[("content-length", "0"), ("connection", "close")]
        )
        await self.write(self.h11.send(head) + (self.h11.send(h11.EndOfMessage()) or b""))

    async def write(self, data: bytes | None) -> None:
        if data:
            await self.stream.send_all(data)


class _Receive:
    """An exchange's ASGI ``receive``; ``cancel_on_disconnect`` is the fast path that
    ``_http.unless_disconnected`` looks for (no watcher task)."""

    def __init__(self, connection: _Connection, body: bytes) -> None:
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
    """The ASGI ``receive`` and ``send`` of one request."""

    def __init__(self, connection: _Connection, body: bytes) -> None:
        self.connection = connection
        self.receive = _Receive(connection, body)
        self.head: h11.Response | None = None
        self.started = False  # a head (final or informational) went out
        self.complete = False

    async def send(self, message: Any) -> None:
        connection = self.connection
        if connection.closed or self.complete:
            return  # nobody to tell; the app finds out through receive()
        conn = connection.h11
        kind = message["type"]
        try:
            if kind == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                if status < 200:
                    self.started = True
                    event = h11.InformationalResponse(status_code=status, headers=headers)
                    await connection.write(conn.send(event))
                else:
                    self.head = h11.Response(status_code=status, headers=headers)
            elif kind == "http.response.body":
                out = bytearray()
                if self.head is not None:
                    out += conn.send(self.head) or b""
                    self.head, self.started = None, True
                body = message.get("body", b"")
                if body:
                    out += conn.send(h11.Data(data=body)) or b""
                if not message.get("more_body", False):
                    out += conn.send(h11.EndOfMessage()) or b""
                    self.complete = True
                await connection.write(bytes(out))
        except _CONNECTION_ERRORS:
            connection.closed = True
