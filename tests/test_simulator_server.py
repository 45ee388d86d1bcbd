"""The simulator's own HTTP/1.1 server (``simulator/_asgi_server.py``): what the simulator's
behaviour tests do not reach — malformed requests, apps that fail, keep-alive, idle expiry."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
import trio
import trio.testing

from trio_designer.simulator._asgi_server import serve_asgi


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    if scope["path"] == "/boom":
        raise RuntimeError("a bug in the app")
    if scope["path"] == "/nothing":
        return
    body = f"{scope['method']} {scope['path']} {scope['query_string'].decode()}".encode()
    length = str(len(body)).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}
    )
    await send({"type": "http.response.body", "body": body})


async def _exchange(stream: trio.SocketStream, request: bytes) -> bytes:
    """Send ``request``; read until the answer's end (by Content-Length) or EOF."""
    await stream.send_all(request)
    data = b""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(rest) >= length:
                return data
        chunk = await stream.receive_some(65536)
        if not chunk:
            return data
        data += chunk


async def test_answers_keep_alive_and_fail_safely() -> None:
    get = b"GET /a%20b?x=1 HTTP/1.1\r\nhost: h\r\n\r\n"
    async with trio.open_nursery() as nursery:
        root: str = await nursery.start(serve_asgi, _app, "127.0.0.1", 0)
        port = int(root.rsplit(":", 1)[1])
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            first = await _exchange(stream, get)
            assert first.startswith(b"HTTP/1.1 200")
            assert first.endswith(b"GET /a b x=1")
            second = await _exchange(stream, get)  # the same connection, kept alive
            assert second.startswith(b"HTTP/1.1 200")
            failed = await _exchange(stream, b"GET /boom HTTP/1.1\r\nhost: h\r\n\r\n")
            assert failed.startswith(b"HTTP/1.1 500")
            assert await stream.receive_some(10) == b""  # closed after the failure
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            head = (
                b"POST /e HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n"
            )
            await stream.send_all(head)
            assert (await stream.receive_some(1000)).startswith(b"HTTP/1.1 100 ")
            answer = await _exchange(stream, b"{}")
            assert answer.endswith(b"POST /e ")
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            silent = await _exchange(stream, b"GET /nothing HTTP/1.1\r\nhost: h\r\n\r\n")
            assert silent.startswith(b"HTTP/1.1 500")
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            bad = await _exchange(stream, b"NONSENSE\r\n\r\n")
            assert bad.startswith(b"HTTP/1.1 400")
            assert await stream.receive_some(10) == b""
        nursery.cancel_scope.cancel()


def test_idle_connections_close_after_keep_alive() -> None:
    async def main() -> None:
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                root: str = await nursery.start(
                    lambda task_status: serve_asgi(
                        _app, "127.0.0.1", 0, keep_alive=30, task_status=task_status
                    )
                )
                port = int(root.rsplit(":", 1)[1])
                async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                    start = trio.current_time()
                    assert await stream.receive_some(10) == b""
                    assert trio.current_time() - start == 30
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def _slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await trio.sleep(float(scope["path"].strip("/")))
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def test_idle_expiry_counts_from_the_last_answer_and_spares_long_requests() -> None:
    """keep_alive 30 s: a request served for 50 s is not cut; the connection then closes 30 s
    after that answer, and 30 s after the next one (whatever the deadline had been)."""

    async def main() -> None:
        with trio.fail_after(500):
            async with trio.open_nursery() as nursery:
                root: str = await nursery.start(
                    lambda task_status: serve_asgi(
                        _slow_app, "127.0.0.1", 0, keep_alive=30, task_status=task_status
                    )
                )
                port = int(root.rsplit(":", 1)[1])
                async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                    start = trio.current_time()
                    await stream.send_all(b"GET /50 HTTP/1.1\r\nhost: h\r\n\r\n")
                    assert (await stream.receive_some(1000)).endswith(b"\r\n\r\nok")
                    assert trio.current_time() - start == 50
                    await trio.sleep(20)
                    await stream.send_all(b"GET /5 HTTP/1.1\r\nhost: h\r\n\r\n")
                    assert (await stream.receive_some(1000)).endswith(b"\r\n\r\nok")
                    answered = trio.current_time()
                    assert answered - start == 75
                    assert await stream.receive_some(10) == b""
                    assert trio.current_time() - answered == 30
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def _stamps_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    body = f"{receive.arrived!r} {trio.current_time()!r}".encode()
    length = str(len(body)).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}
    )
    await send({"type": "http.response.body", "body": body})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel receive stamps: Linux")
async def test_a_request_read_late_arrived_when_its_bytes_came() -> None:
    """Real clock: a request's arrival is the kernel's stamp of its last bytes, so a server
    that was busy when they came (here its whole run loop is blocked for 0.3 s) still counts
    the request's latency from then — on a kept-alive connection, and on a new one whose
    bytes came before it was even accepted. With the reader's own moment (the old stamp)
    the arrival would be after the block, and this fails."""
    get = b"GET /x HTTP/1.1\r\nhost: h\r\n\r\n"

    async def late(stream: trio.SocketStream) -> tuple[float, float, float]:
        # Linux turns receive stamps on for the whole stack in a deferred work item when the
        # first socket asks (and off when the last closes): right after a server starts, a
        # segment can still come unstamped, and its arrival is the read. So a few tries; an
        # unstamped server fails them all.
        for _ in range(5):
            sent = trio.current_time()
            await stream.send_all(get)
            time.sleep(0.3)  # noqa: ASYNC251  (the point: nobody in this run loop reads)
            answer = await _exchange(stream, b"")
            arrived, read = (float(x) for x in answer.rpartition(b"\r\n\r\n")[2].split())
            if arrived - sent < 0.15:
                break
        return sent, arrived, read

    async with trio.open_nursery() as nursery:
        root: str = await nursery.start(serve_asgi, _stamps_app, "127.0.0.1", 0)
        port = int(root.rsplit(":", 1)[1])
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            assert (await _exchange(stream, get)).startswith(b"HTTP/1.1 200")  # accepted
            sent, arrived, read = await late(stream)
            assert arrived - sent < 0.15
            assert read - arrived >= 0.25
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            sent, arrived, read = await late(stream)
            assert arrived - sent < 0.15
            assert read - arrived >= 0.25
        nursery.cancel_scope.cancel()


def test_under_a_virtual_clock_arrival_is_the_read() -> None:
    """MockClock: wall-clock stamps mean nothing, so a request arrives when it is read (the
    simulator's virtual-time latencies stay exact)."""

    async def main() -> None:
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                root: str = await nursery.start(serve_asgi, _stamps_app, "127.0.0.1", 0)
                port = int(root.rsplit(":", 1)[1])
                async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                    await trio.sleep(5)
                    answer = await _exchange(stream, b"GET /x HTTP/1.1\r\nhost: h\r\n\r\n")
                    arrived, read = answer.rpartition(b"\r\n\r\n")[2].split()
                    assert float(arrived) == float(read) == 5.0
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
