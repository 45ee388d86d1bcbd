"""Real servers on 127.0.0.1 for the model client's tests, inside the test's own ``trio.run``.

* :class:`ScriptedApp` + :func:`served`: a tiny ASGI app under hypercorn answering from a script
  (status, body, headers, delay), recording every request (method, path, headers, body, time,
  the client's address and the HTTP version) and the peak number of requests in service.
* :func:`raw_server`: a plain ``trio.serve_tcp`` server whose handler gets each connection's
  stream, for what a well-behaved HTTP server never does (hang up, trickle, send garbage).

Both yield the ``/v1`` base URL to point a client at. Fakes with a scenario, never a patched
client: every request crosses a real socket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, cast

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve


def completion(
    content: Any = "hi",
    *,
    message_extra: dict[str, Any] | None = None,
    usage: Any = None,
    finish_reason: Any = "stop",
    model: Any = "served-model",
) -> dict[str, Any]:
    """A chat completion body in OpenAI's shape."""
    message = {"role": "assistant", "content": content, **(message_extra or {})}
    body: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


@attrs.frozen(kw_only=True)
class Reply:
    """One scripted answer of the ASGI app."""

    status: int = 200
    body: Any = attrs.field(factory=completion)  # JSON-able, or bytes sent verbatim
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    echo_headers: bool = False  # put the request headers into the body


def status(code: int, **headers: str) -> Reply:
    """An OpenAI-style error answer."""
    return Reply(
        status=code,
        body={"error": {"message": f"status {code}"}},
        headers=tuple(headers.items()),
    )


@attrs.define
class ScriptedApp:
    """An ASGI app answering from a script; records requests and peak concurrency."""

    script: list[Reply] = attrs.field(factory=list)
    default: Reply = attrs.field(factory=Reply)
    requests: list[dict[str, Any]] = attrs.field(factory=list)
    active: int = 0
    peak: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append(
            {
                "method": scope["method"],
                "path": scope["path"],
                "headers": headers,
                "body": body,
                "time": trio.current_time(),
                "client": tuple(scope["client"]),
                "http_version": scope["http_version"],
            }
        )
        reply = self.script.pop(0) if self.script else self.default
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await trio.sleep(reply.delay)
        finally:
            self.active -= 1
        await _respond(send, reply, headers)

    def connections(self) -> int:
        """How many connections the requests came on (distinct client addresses)."""
        return len({r["client"] for r in self.requests})

    def bodies(self) -> list[Any]:
        return [json.loads(r["body"]) for r in self.requests]

    def times(self) -> list[float]:
        """Arrival times, relative to the first request."""
        first = self.requests[0]["time"]
        return [r["time"] - first for r in self.requests]


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Any, reply: Reply, request_headers: dict[str, str]) -> None:
    body = reply.body
    if reply.echo_headers:
        body = {"error": {"message": f"rejected request with headers {request_headers}"}}
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = [(b"content-type", b"application/json")]
    headers += [(k.encode(), v.encode()) for k, v in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@asynccontextmanager
async def served(
    app: ScriptedApp, *, keep_alive: float = 60.0, tls: tuple[str, str] | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` with hypercorn on 127.0.0.1; yield the ``/v1`` base URL.

    ``tls`` is ``(certfile, keyfile)`` to serve https (hypercorn offers HTTP/2 by ALPN).
    """
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.backlog = 1024
    config.keep_alive_timeout = keep_alive
    config.errorlog = config.accesslog = None
    if tls is not None:
        config.certfile, config.keyfile = tls
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        # hypercorn types apps with its TypedDict events; ours reads plain dicts.
        asgi_app = cast(Any, app)
        (url,) = await nursery.start(partial(serve, asgi_app, config, shutdown_trigger=stop.wait))
        try:
            yield f"{url}/v1"
        finally:
            stop.set()


@asynccontextmanager
async def raw_server(
    handler: Callable[[trio.SocketStream], Awaitable[None]],
) -> AsyncIterator[str]:
    """Serve ``handler`` on raw TCP at 127.0.0.1; yield the ``/v1`` base URL."""
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            nursery.cancel_scope.cancel()


async def read_request(stream: trio.abc.Stream) -> bytes:
    """Read one whole request (head and Content-Length body) from ``stream``; ``b""`` when the
    stream ends before the request does."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:  # the client left mid-body
            return b""
        body += chunk
    return head + b"\r\n\r\n" + body


def http_response(body: bytes, *, status: str = "200 OK", extra: str = "") -> bytes:
    """A complete HTTP/1.1 answer with a Content-Length."""
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
