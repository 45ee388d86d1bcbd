"""The canned endpoint (``simulator/_canned.py``, ``python -m trio_designer.simulator
--canned``): valid chat completions for our client, the counters under concurrency, the
HTTP/1.1 edges (keep-alive, pipelining, close, 100-continue, malformed requests, idle expiry).

Served inside the test's own ``trio.run`` under ``autojump_clock``; real HTTP on loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from trio_designer._exceptions import ConfigError
from trio_designer.models._client import OpenAICompatibleClient
from trio_designer.simulator.__main__ import main as simulator_main
from trio_designer.simulator._canned import CannedModel, open_canned, parse_canned_spec

MESSAGES = [{"role": "user", "content": "Say something."}]


async def _read_answer(stream: trio.SocketStream, data: bytes = b"") -> tuple[bytes, bytes]:
    """One answer (by Content-Length) from ``stream``: ``(it, the bytes after it)``; ``it`` is
    what came before EOF if the connection closed first."""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.lower().split(b"\r\n")
            length = next(int(x.split(b":")[1]) for x in lines if x.startswith(b"content-length:"))
            if len(rest) >= length:
                end = len(head) + 4 + length
                return data[:end], data[end:]
        chunk = await stream.receive_some(65536)
        if not chunk:
            return data, b""
        data += chunk


def _body(answer: bytes) -> Any:
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def _post(path: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST " + path + b" HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


async def test_our_client_gets_a_valid_completion(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        open_canned(
            [CannedModel(name="gen", text="Hello there, 100% %d sure."), CannedModel(name="judge")]
        ) as endpoint,
        OpenAICompatibleClient(base_url=endpoint.url) as client,
    ):
        answer = await client.chat(model="gen", messages=MESSAGES)
        assert answer.content == "Hello there, 100% %d sure."
        assert answer.finish_reason == "stop"
        assert answer.model == "gen"
        assert (
            answer.usage.output_tokens
            == CannedModel(name="g", text="Hello there, 100% %d sure.").completion_tokens
        )
        assert answer.usage.input_tokens > 0
        other = await client.chat(model="judge", messages=MESSAGES)
        assert other.content == "A canned answer from judge."
        stats = endpoint.stats()
        assert stats["requests"] == 2
        assert stats["models"] == {"gen": 1, "judge": 1}
        assert stats["first_arrival"] <= stats["last_answer"]
        assert client.statistics().opened == 1  # one kept-alive connection


@pytest.mark.deadline(30)
async def test_concurrent_requests_are_each_counted_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """200 requests on up to 64 connections at once: every one answered and counted once
    (the counters' invariant: updated with no ``await`` between read and write)."""
    async with (
        open_canned({"gen": "x"}) as endpoint,
        OpenAICompatibleClient(base_url=endpoint.url, max_connections=64) as client,
    ):
        contents: list[str] = []

        async def one() -> None:
            contents.append((await client.chat(model="gen", messages=MESSAGES)).content)

        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(one)
        assert contents == ["x"] * 200
        assert endpoint.requests == 200
        assert client.statistics().opened > 1
        endpoint.reset()
        assert endpoint.stats()["requests"] == 0
        assert endpoint.stats()["first_arrival"] is None


async def test_routes_and_errors_keep_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_canned({"gen": "x"}) as endpoint,
        await trio.open_tcp_stream("127.0.0.1", endpoint.port) as stream,
    ):
        await stream.send_all(b"GET /v1/models HTTP/1.1\r\nhost: h\r\n\r\n")
        answer, _ = await _read_answer(stream)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert [m["id"] for m in _body(answer)["data"]] == ["gen"]
        await stream.send_all(b"GET /v1/models/gen HTTP/1.1\r\nhost: h\r\n\r\n")
        assert _body((await _read_answer(stream))[0])["id"] == "gen"
        cases = [
            (_post(b"/v1/chat/completions", b'{"model": "nope"}'), 404, "model_not_found"),
            (_post(b"/v1/chat/completions", b'{"model": ["gen"]}'), 404, "model_not_found"),
            (_post(b"/v1/chat/completions", b"[" * 100_000), 400, "invalid_json"),
            (_post(b"/v1/chat/completions", b"{not json"), 400, "invalid_json"),
            (_post(b"/v1/chat/completions", b"[1]"), 400, "invalid_json"),
            (_post(b"/v1/chat/completions", b'{"model":"gen","stream":true}'), 400, "unsupported"),
            (b"GET /v1/chat/completions HTTP/1.1\r\nhost: h\r\n\r\n", 405, "method_not_allowed"),
            (b"GET /v1/elsewhere HTTP/1.1\r\nhost: h\r\n\r\n", 404, "unknown_url"),
            (b"GET /v1/models/nope HTTP/1.1\r\nhost: h\r\n\r\n", 404, "model_not_found"),
        ]
        for request, status, code in cases:
            await stream.send_all(request)
            answer, _ = await _read_answer(stream)
            assert answer.startswith(b"HTTP/1.1 %d " % status), answer
            assert _body(answer)["error"]["code"] == code
        # ... and the same connection still serves
        await stream.send_all(_post(b"/v1/chat/completions", b'{"model": "gen"}'))
        answer, _ = await _read_answer(stream)
        completion = _body(answer)
        assert completion["object"] == "chat.completion"
        assert completion["choices"][0]["message"] == {"role": "assistant", "content": "x"}
        assert completion["choices"][0]["finish_reason"] == "stop"
        usage = completion["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert endpoint.requests == 1  # errors are not counted
        await stream.send_all(_post(b"/stats/reset", b""))
        assert _body((await _read_answer(stream))[0]) == {"reset": True}
        await stream.send_all(b"GET /stats HTTP/1.1\r\nhost: h\r\n\r\n")
        stats = _body((await _read_answer(stream))[0])
        assert stats["mode"] == "canned"
        assert stats["requests"] == 0


async def test_pipelining_close_continue_and_nonsense(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = _post(b"/v1/chat/completions", b'{"model": "gen"}')
    async with open_canned({"gen": "x"}) as endpoint:
        async with await trio.open_tcp_stream("127.0.0.1", endpoint.port) as stream:
            await stream.send_all(chat + chat)  # two requests in one write: two answers
            first, rest = await _read_answer(stream)
            second, rest = await _read_answer(stream, rest)
            assert _body(first)["id"] != _body(second)["id"]
            assert rest == b""
        async with await trio.open_tcp_stream("127.0.0.1", endpoint.port) as stream:
            await stream.send_all(
                _post(b"/v1/chat/completions", b'{"model": "gen"}', b"connection: close\r\n")
            )
            answer, _ = await _read_answer(stream)
            assert b"\r\nconnection: close\r\n" in answer
            assert await stream.receive_some(10) == b""  # closed after the answer
        async with await trio.open_tcp_stream("127.0.0.1", endpoint.port) as stream:
            await stream.send_all(b"GET /v1/models HTTP/1.0\r\n\r\n")
            answer, _ = await _read_answer(stream)
            assert answer.startswith(b"HTTP/1.1 200")
            assert await stream.receive_some(10) == b""  # HTTP/1.0: closed
        async with await trio.open_tcp_stream("127.0.0.1", endpoint.port) as stream:
            body = b'{"model": "gen"}'
            head = _post(b"/v1/chat/completions", b"", b"expect: 100-continue\r\n")
            head = head.replace(b"content-length: 0", b"content-length: %d" % len(body))
            await stream.send_all(head)
            assert (await stream.receive_some(1000)) == b"HTTP/1.1 100 Continue\r\n\r\n"
            await stream.send_all(body)
            assert (await _read_answer(stream))[0].startswith(b"HTTP/1.1 200")
        async with await trio.open_tcp_stream("127.0.0.1", endpoint.port) as stream:
            await stream.send_all(b"NONSENSE\r\n\r\n")
            answer, _ = await _read_answer(stream)
            assert answer.startswith(b"HTTP/1.1 400")
            assert await stream.receive_some(10) == b""
        assert endpoint.requests == 4


async def test_idle_connections_are_closed(autojump_clock: trio.testing.MockClock) -> None:
    """Idle for ``keep_alive`` to 1.5 × ``keep_alive`` seconds: closed (virtual time)."""
    async with (
        open_canned({"gen": "x"}, keep_alive=2.0) as endpoint,
        await trio.open_tcp_stream("127.0.0.1", endpoint.port) as stream,
    ):
        start = trio.current_time()
        await stream.send_all(b"GET /v1/models HTTP/1.1\r\nhost: h\r\n\r\n")
        await _read_answer(stream)
        assert await stream.receive_some(10) == b""
        assert 2.0 <= trio.current_time() - start <= 3.0 + 1e-6


def test_specs_and_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_canned_spec("gen") == CannedModel(name="gen", text="A canned answer from gen.")
    assert parse_canned_spec("judge=Yes, =ok").text == "Yes, =ok"
    assert CannedModel(name="m", text="").completion_tokens == 1
    with pytest.raises(ConfigError):
        parse_canned_spec("=text")
    with pytest.raises(SystemExit) as info:
        simulator_main(["--canned", "gen", "--model", "other"])
    assert info.value.code == 2
    assert "cannot be combined" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        simulator_main(["--canned", "gen", "--canned", "gen"])
    assert info.value.code == 2
    assert "duplicate" in capsys.readouterr().err
