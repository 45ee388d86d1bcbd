"""ASGI plumbing: reading bodies, sending JSON, trickling, dropping connections, watching for
departed clients, checking the API key.

How the "connection reset" works: hypercorn answers 500 for an app that raises before starting a
response, so raising is no way to drop a connection. Instead :func:`send_reset` sends a 1xx
informational head (``103``) and returns: the HTTP/1.1 response is then incomplete, so hypercorn
closes the connection, and httpx (which skips 1xx heads) reports ``RemoteProtocolError: Server
disconnected without sending a response.`` — what a client sees when a server drops a
connection before answering.
"""

from __future__ import annotations

import enum
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import trio

from ._budget import Header
from ._requests import HTTPError

Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
T = TypeVar("T")


class Gone(enum.Enum):
    """The client disconnected before the work finished."""

    CLIENT = "client"


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body  # the common case: one message
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def unless_disconnected(receive: Receive, work: Callable[[], Awaitable[T]]) -> T | Gone:
    """``await work()``, abandoned (returning ``Gone.CLIENT``) if the client disconnects first.

    Under the simulator's own server (``_asgi_server.py``), ``receive`` offers
    ``cancel_on_disconnect(scope)``: the work runs in this task, in a scope the server cancels
    when the client leaves. Any other ASGI server: a task watches ``receive()`` meanwhile.

    Invariant: a request whose client left stops at once — its service slot is freed — the way
    vLLM aborts requests of departed clients (checked by
    ``test_client_leaving_the_gpu_queue_frees_its_place``).
    """
    cancel_on_disconnect = getattr(receive, "cancel_on_disconnect", None)
    if cancel_on_disconnect is not None:  # our server's fast path: no watcher task
        with trio.CancelScope() as scope, cancel_on_disconnect(scope):
            return await work()
        return Gone.CLIENT
    result: list[T] = []
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            nursery.cancel_scope.cancel()

        async def run() -> None:
            result.append(await work())
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        nursery.start_soon(run)
    return result[0] if result else Gone.CLIENT


def json_response(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


async def send_json(send: Send, status: int, body: object, headers: Sequence[Header] = ()) -> None:
    """Send one complete JSON response."""
    await send_bytes(send, status, json_response(body), headers)


async def send_bytes(send: Send, status: int, payload: bytes, headers: Sequence[Header]) -> None:
    """Send one complete ``application/json`` response whose body is ``payload``."""
    all_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def prepare_json(
    send: Send, status: int, payload: bytes, headers: Sequence[Header]
) -> object | None:
    """What :func:`send_bytes` would send, framed now by the server to be written later with
    :func:`send_prepared` — or None when the server cannot (any server but the simulator's
    own): then call :func:`send_bytes` when the time comes. Nothing is sent here."""
    prepare = getattr(send, "prepare", None)
    if prepare is None:
        return None
    all_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *headers,
    ]
    prepared: object = prepare(status, all_headers, payload)
    return prepared


async def send_prepared(send: Send, prepared: object) -> None:
    """Send what :func:`prepare_json` prepared."""
    await send.send_prepared(prepared)  # type: ignore[attr-defined]


async def send_trickled(
    send: Send,
    payload: bytes,
    headers: Sequence[Header],
    interval: float,
    before_last: Callable[[], None],
) -> None:
    """A 200 whose head goes out at once and whose body follows one byte per ``interval``.

    Each byte is its own ASGI ``http.response.body`` message with ``more_body`` until the last,
    so hypercorn writes it to the socket as it comes: the whole body takes
    ``len(payload) × interval`` seconds, and a client whose timeout only bounds each read never
    times out. ``before_last`` runs just before the last byte goes out (to record the request
    while the client cannot have its answer yet).
    """
    all_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": all_headers})
    last = len(payload) - 1
    for i in range(len(payload)):
        await trio.sleep(interval)
        if i == last:
            before_last()
        await send(
            {"type": "http.response.body", "body": payload[i : i + 1], "more_body": i < last}
        )


async def send_reset(send: Send) -> None:
    """Close the connection without a response (see the module docstring)."""
    await send({"type": "http.response.start", "status": 103, "headers": []})


def authorized(scope: Message, expected: bytes | None) -> bool:
    """Whether the request carries ``Authorization: Bearer <expected>`` (always, without a key).

    The comparison takes the same time wherever the keys differ; neither key is ever logged.
    """
    if expected is None:
        return True
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = bytes(value).strip().partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), expected)
    return False


def unauthorized_error(scope: Message) -> HTTPError:
    """OpenAI's 401 for a missing or wrong key (never echoing what was sent)."""
    sent = any(name == b"authorization" for name, _ in scope["headers"])
    message = (
        "Incorrect API key provided. Send the simulator's key as 'Authorization: Bearer <key>'."
        if sent
        else "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
    )
    return HTTPError(
        401,
        message,
        code="invalid_api_key",
        headers=[(b"www-authenticate", b'Bearer realm="trio-designer-simulator"')],
    )
