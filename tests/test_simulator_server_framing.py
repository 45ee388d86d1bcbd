"""The simulator's HTTP/1.1 server (``simulator/_asgi_server.py``) on httptools: the framing
and closing rules it took over from h11 — ``Connection: close``, HTTP/1.0, ``HEAD``, answers
without ``content-length`` (chunked), pipelined requests, an oversized head (431), and a client
that leaves while its request is in service."""

from __future__ import annotations

from functools import partial
from typing import Any

import trio
import trio.testing

from trio_designer.simulator._asgi_server import MAX_HEAD, serve_asgi

_LEFT: list[str] = []


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = (await receive())["body"]
    if scope["path"] == "/wait":  # holds its answer until the client leaves
        assert (await receive())["type"] == "http.disconnect"
        _LEFT.append("gone")
        return
    text = f"{scope['method']} {scope['path']} {len(body)}".encode()
    headers = [] if scope["path"] == "/chunked" else [(b"content-length", b"%d" % len(text))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": text})


async def _read_all(stream: trio.SocketStream) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def _serve(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    await serve_asgi(_app, "127.0.0.1", 0, task_status=task_status)


def _run(test: Any) -> None:
    async def main() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                root: str = await nursery.start(_serve)
                await test(int(root.rsplit(":", 1)[1]))
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_connection_close_http10_and_head() -> None:
    async def test(port: int) -> None:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"GET /a HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
            answer = await _read_all(stream)  # the server closes after the answer
            assert answer.startswith(b"HTTP/1.1 200 \r\n")
            assert b"connection: close\r\n" in answer
            assert answer.endswith(b"\r\n\r\nGET /a 0")
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"GET /b HTTP/1.0\r\n\r\n")
            answer = await _read_all(stream)
            assert b"connection: close\r\n" in answer
            assert answer.endswith(b"GET /b 0")
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"HEAD /c HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
            answer = await _read_all(stream)
            assert b"content-length: 9\r\n" in answer  # "HEAD /c 0"
            assert answer.endswith(b"\r\n\r\n")  # the head only

    _run(test)


def test_chunked_answers_and_pipelined_requests() -> None:
    async def test(port: int) -> None:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(
                b"POST /chunked HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n0\r\n\r\n"
                b"GET /last HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n"
            )
            answer = await _read_all(stream)
            first, _, second = answer.partition(b"0\r\n\r\n")
            assert b"transfer-encoding: chunked\r\n" in first
            assert first.endswith(b"\r\n\r\nf\r\nPOST /chunked 3\r\n")  # 15 bytes
            assert second.startswith(b"HTTP/1.1 200 \r\n")
            assert second.endswith(b"GET /last 0")

    _run(test)


def test_an_oversized_head_gets_431() -> None:
    async def test(port: int) -> None:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nx-big: " + b"a" * (MAX_HEAD + 10))
            answer = await _read_all(stream)
            assert answer.startswith(b"HTTP/1.1 431 ")

    _run(test)


def test_a_client_leaving_mid_request_is_seen_at_once() -> None:
    async def test(port: int) -> None:
        _LEFT.clear()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /wait HTTP/1.1\r\nhost: h\r\n\r\n")
        await trio.sleep(1)
        assert _LEFT == []
        await stream.aclose()
        await trio.sleep(0.001)
        assert _LEFT == ["gone"]

    _run(test)


def test_a_request_asking_to_upgrade_is_answered_with_its_body() -> None:
    async def test(port: int) -> None:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(
                b"POST /u HTTP/1.1\r\nhost: h\r\nconnection: Upgrade, HTTP2-Settings\r\n"
                b"upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
                b"content-length: 5\r\n\r\nhel"
            )
            await trio.sleep(0.01)
            await stream.send_all(b"lo")
            answer = await _read_all(stream)  # answered (no switch), then closed
            assert answer.startswith(b"HTTP/1.1 200 \r\n")
            assert answer.endswith(b"POST /u 5")

    _run(test)


_ARRIVALS: list[tuple[float, float]] = []


async def _late_reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads its request 50 ms (virtual) after being called: ``receive.arrived`` must still be
    when the server read the bytes, not when the app asked for them."""
    await trio.sleep(0.05)
    await receive()
    _ARRIVALS.append((receive.arrived, trio.current_time()))
    headers = [(b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def test_arrival_is_when_the_reader_read_the_request() -> None:
    async def main() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                root: str = await nursery.start(partial(serve_asgi, _late_reader, "127.0.0.1", 0))
                port = int(root.rsplit(":", 1)[1])
                async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                    sent = trio.current_time()
                    request = b"POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\nhi"
                    await stream.send_all(request)
                    assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 \r\n")
                nursery.cancel_scope.cancel()
            [(arrived, read)] = _ARRIVALS
            assert sent <= arrived < sent + 0.01
            assert read >= arrived + 0.05

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_burst_of_connections_is_accepted_and_served() -> None:
    """Thirty clients connecting at once (one wake-up of the accept loop takes them all)."""

    async def test(port: int) -> None:
        answers: list[bytes] = []

        async def client(i: int) -> None:
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                head = b"GET /%d HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n" % i
                await stream.send_all(head)
                answers.append(await _read_all(stream))

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(client, i)
        assert sorted(answers) == sorted(
            b"HTTP/1.1 200 \r\ncontent-length: %d\r\nconnection: close\r\n\r\nGET /%d 0"
            % (len(b"GET /%d 0" % i), i)
            for i in range(30)
        )

    _run(test)


async def _prepared_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers as ``_app`` does, but framed ahead with ``send.prepare`` (the simulator's usual
    answer) when the path says so."""
    body = (await receive())["body"]
    text = f"{scope['method']} {scope['path']} {len(body)}".encode()
    headers = [] if "chunked" in scope["path"] else [(b"content-length", b"%d" % len(text))]
    if scope["path"].startswith("/prep"):
        prepared = send.prepare(200, headers, text)
        await trio.sleep(0.01)
        await send.send_prepared(prepared)
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": text})


def test_a_prepared_answer_is_framed_as_a_sent_one() -> None:
    """HTTP/1.1 keep-alive, ``Connection: close``, HTTP/1.0, ``HEAD`` and chunked: the bytes
    of a prepared answer are those of the same answer sent as ASGI messages."""
    heads = [
        b"GET /%s HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
        b"GET /%s HTTP/1.0\r\n\r\n",
        b"HEAD /%s HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
        b"GET /%s-chunked HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
    ]

    async def main() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                root: str = await nursery.start(partial(serve_asgi, _prepared_app, "127.0.0.1", 0))
                port = int(root.rsplit(":", 1)[1])
                for head in heads:
                    answers = []
                    for kind in (b"prep", b"sent"):
                        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                            await stream.send_all(head % kind)
                            answers.append(await _read_all(stream))
                    assert answers[0].replace(b"prep", b"sent") == answers[1], head
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
