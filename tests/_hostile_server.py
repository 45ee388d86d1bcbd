"""Hostile OpenAI-compatible servers: what real endpoints and the proxies in front of them do
that neither our simulator nor a well-behaved ASGI server ever does.

Each server is a plain ``trio.serve_tcp`` on 127.0.0.1 whose handler writes raw bytes, so a test
controls every byte of the answer: a ``Retry-After`` of a billion seconds, an HTML 429 page, a
body that says ``br``, a status line of garbage, a connection reset in the middle of the body,
an answer that never comes. Nothing here is the simulator; nothing patches the client.

* :func:`answer` builds the bytes of one HTTP answer (any version, status, headers, framing);
  :func:`completion` a chat completion body; :func:`chunked` chunked framing.
* Handlers (one connection each): :func:`answering` (the same bytes for every request on the
  connection, optionally closing after each), :func:`hanging` (reads the request, never
  answers), :func:`silent` (never even reads), :func:`trickling` (a byte at a time),
  :func:`resetting` (part of an answer, then a TCP reset), :func:`sequence` (one handler per
  request, in order, then the last one forever).
* :func:`hostile_server` serves a handler inside the test's ``trio.run`` (virtual time works:
  an IP literal, no threads) and yields a :class:`Hostile` with its ``/v1`` URL and what it saw;
  :class:`ThreadedHostile` serves one from a thread of its own, for command-line runs (whose
  ``main()`` starts its own ``trio.run``).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import _loopback as loopback
import attrs
import trio

Handler = Callable[[trio.SocketStream, "Hostile"], Awaitable[None]]
"""Serves one connection; records what it read in the :class:`Hostile` it is given."""


@attrs.define
class Hostile:
    """A running hostile server: its ``/v1`` base URL and what it was sent."""

    url: str = ""
    requests: list[bytes] = attrs.field(factory=list)
    connections: int = 0

    def authorization_headers(self) -> list[str]:
        """The ``Authorization`` header of every request (to check what the client sent)."""
        found = []
        for request in self.requests:
            for line in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"authorization":
                    found.append(value.strip().decode("latin-1"))
        return found


# -- bytes -----------------------------------------------------------------------------------


def completion(content: Any = "hi", **top: Any) -> bytes:
    """A chat completion body (``top`` replaces or adds top-level fields; ``None`` drops one)."""
    body: dict[str, Any] = {
        "id": "cmpl-hostile",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    body.update(top)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def answer(
    status: str = "200 OK",
    body: bytes = b"",
    *,
    headers: Sequence[tuple[str, str]] = (),
    version: str = "1.1",
    length: bool = True,
    content_type: str | None = "application/json",
) -> bytes:
    """The bytes of one HTTP answer; ``length=False`` leaves out ``Content-Length``."""
    head = f"HTTP/{version} {status}\r\n"
    if content_type:
        head += f"content-type: {content_type}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    if length:
        head += f"content-length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def chunked(body: bytes, size: int = 7) -> bytes:
    """``body`` in chunked framing, ``size`` bytes per chunk."""
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


# -- handlers --------------------------------------------------------------------------------


async def read_request(stream: trio.SocketStream, seen: Hostile) -> bool:
    """Read one whole request into ``seen.requests``; ``False`` at end of stream."""
    request = await loopback.read_request(stream)
    if request:
        seen.requests.append(request)
    return bool(request)


def answering(data: bytes, *, close: bool = False) -> Handler:
    """Answer every request on the connection with ``data``; ``close``: hang up after each."""

    async def handler(stream: trio.SocketStream, seen: Hostile) -> None:
        while await read_request(stream, seen):
            await stream.send_all(data)
            if close:
                return

    return handler


def hanging() -> Handler:
    """Read the request, then never answer (nor close)."""

    async def handler(stream: trio.SocketStream, seen: Hostile) -> None:
        await read_request(stream, seen)
        await trio.sleep_forever()

    return handler


def silent() -> Handler:
    """Accept the connection and never read from it."""

    async def handler(stream: trio.SocketStream, seen: Hostile) -> None:
        await trio.sleep_forever()

    return handler


def trickling(data: bytes, every: float) -> Handler:
    """Answer each request one byte every ``every`` seconds."""

    async def handler(stream: trio.SocketStream, seen: Hostile) -> None:
        while await read_request(stream, seen):
            for byte in data:
                await stream.send_all(bytes([byte]))
                await trio.sleep(every)

    return handler


def resetting(prefix: bytes) -> Handler:
    """Send ``prefix`` (part of an answer, or nothing), then reset the connection (RST)."""

    async def handler(stream: trio.SocketStream, seen: Hostile) -> None:
        await read_request(stream, seen)
        if prefix:
            await stream.send_all(prefix)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()

    return handler


def sequence(*steps: Handler) -> Handler:
    """Connection ``n`` (counting from 0) is served by ``steps[n]``, the last one ever after
    (pair it with answers that close the connection, so that each request is one step)."""

    async def handler(stream: trio.SocketStream, seen: Hostile) -> None:
        step = steps[min(seen.connections - 1, len(steps) - 1)]
        await step(stream, seen)

    return handler


# -- serving ---------------------------------------------------------------------------------


@asynccontextmanager
async def hostile_server(handler: Handler) -> AsyncIterator[Hostile]:
    """Serve ``handler`` on 127.0.0.1 inside the current ``trio.run``; yield the server."""
    seen = Hostile()

    async def serve_one(stream: trio.SocketStream) -> None:
        seen.connections += 1
        # The client may give up on us at any moment (a timeout, a reset of its own).
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            try:
                await handler(stream, seen)
            finally:
                stream.socket.close()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, serve_one, 0, host="127.0.0.1"))
        seen.url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}/v1"
        try:
            yield seen
        finally:
            nursery.cancel_scope.cancel()


class ThreadedHostile:
    """:func:`hostile_server` in a thread of its own (its own ``trio.run``), for CLI runs.

    Use as a context manager; ``url`` and ``seen`` are ready inside it.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self.seen = Hostile()
        self._failure: BaseException | None = None

    def _run(self) -> None:
        try:
            trio.run(_serve_threaded, self)
        except BaseException as exc:  # reported by __enter__
            self._failure = exc
            self._ready.set()

    @property
    def url(self) -> str:
        return self.seen.url

    def __enter__(self) -> ThreadedHostile:
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._failure is not None:
            raise RuntimeError(f"the hostile server did not start: {self._failure!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        assert self._stop is not None
        self._token.run_sync_soon(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the hostile server thread did not stop"


async def _serve_threaded(harness: ThreadedHostile) -> None:
    """The server thread's whole life: serve until told to stop (never past a test run)."""
    with trio.fail_after(600):
        harness._stop = trio.Event()
        async with hostile_server(harness._handler) as seen:
            harness.seen = seen
            harness._token = trio.lowlevel.current_trio_token()
            harness._ready.set()
            await harness._stop.wait()
