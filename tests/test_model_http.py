"""The model client's HTTP layer (``trio_designer/models/_http.py``) against real sockets.

The invariants its module docstring states, each against a server on 127.0.0.1 that does the
misbehaving (``tests/_loopback.py``), in virtual time: one deadline for the whole request (a
server trickling its answer), the size cap while streaming (memory stays flat), connection
reuse and expiry, the resend after a reused connection turns out closed, gzip, and proxies.
"""

from __future__ import annotations

import gzip
import json
import ssl
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import pytest
import trio
import trustme
from _loopback import (
    Reply,
    ScriptedApp,
    completion,
    http_response,
    raw_server,
    read_request,
    served,
)

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._core._retry import BackoffPolicy
from trio_designer._exceptions import (
    ConfigError,
    ModelConnectionError,
    ModelRequestError,
    ModelTimeoutError,
)
from trio_designer.models import _http
from trio_designer.models._client import OpenAICompatibleClient
from trio_designer.models._errors import error_from_transport

BIG = 10_000
NO_RETRY = BackoffPolicy(max_attempts=1)
MESSAGES = [{"role": "user", "content": "Say hi"}]
ANSWER = json.dumps(completion("a trickled answer")).encode()


# ---------------------------------------------------------------------------------------------
# One deadline for the whole request
# ---------------------------------------------------------------------------------------------


async def trickle(stream: trio.SocketStream, *, head_first: bool = True) -> None:
    """Answer every request one byte per second (a per-read timeout never fires)."""
    with suppress(trio.BrokenResourceError):  # the client giving up hangs up on us
        while await read_request(stream):
            answer = http_response(ANSWER)
            head_end = answer.index(b"\r\n\r\n") + 4
            if head_first:
                await stream.send_all(answer[:head_end])
                answer = answer[head_end:]
            for byte in answer:
                await trio.sleep(1.0)
                await stream.send_all(bytes([byte]))


@pytest.mark.parametrize("head_first", [True, False], ids=["body", "head-and-body"])
async def test_trickling_server_times_out_on_the_whole_request(
    head_first: bool, autojump_clock: Any
) -> None:
    """A byte a second: ModelTimeoutError at exactly `timeout`, not retried by the client."""
    with trio.fail_after(BIG):
        async with (
            raw_server(partial(trickle, head_first=head_first)) as url,
            OpenAICompatibleClient(base_url=url, name="slow", timeout=10.0) as client,
        ):
            start = trio.current_time()
            with pytest.raises(ModelTimeoutError, match=r"no complete answer within 10 s") as info:
                await client.chat(model="m", messages=MESSAGES)
            assert trio.current_time() - start == 10.0
            assert client.statistics()["idle"] == 0  # the interrupted connection was closed
            # A timeout long enough for the whole trickle succeeds.
            reply = await client.chat(model="m", messages=MESSAGES, timeout=len(ANSWER) + 300)
    assert reply.content == "a trickled answer"
    assert isinstance(info.value.__cause__, _http.RequestTimedOut)
    assert info.value.retryable
    assert str(info.value).startswith("Calling model 'm' at provider 'slow' failed: ")


async def test_waiting_for_a_connection_is_not_part_of_the_deadline(autojump_clock: Any) -> None:
    """max_connections=1, three 4 s requests with a 5 s timeout: all succeed (12 s in all)."""
    app = ScriptedApp(default=Reply(delay=4.0))
    with trio.fail_after(BIG):
        async with (
            served(app) as url,
            OpenAICompatibleClient(base_url=url, max_connections=1, timeout=5.0) as client,
        ):
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(partial(client.chat, model="m", messages=MESSAGES))
            assert trio.current_time() - start == 12.0
    assert app.peak == 1


# ---------------------------------------------------------------------------------------------
# The size cap
# ---------------------------------------------------------------------------------------------

MIB = 2**20


async def endless(sent: list[int], stream: trio.SocketStream, *, declare: bool) -> None:
    """Answer with an endless body (chunked), or one that announces 10 MiB; count bytes sent."""
    await read_request(stream)
    if declare:
        head = f"HTTP/1.1 200 OK\r\ncontent-length: {10 * MIB}\r\n\r\n".encode()
    else:
        head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    chunk = b"x" * 65536
    framed = chunk if declare else b"10000\r\n" + chunk + b"\r\n"
    try:
        await stream.send_all(head)
        while sent[0] < 100 * MIB:
            await stream.send_all(framed)
            sent[0] += len(chunk)
    except trio.BrokenResourceError:
        pass  # the client hung up: what we want
    finally:
        await stream.aclose()


@pytest.mark.parametrize("declare", [False, True], ids=["streamed", "announced"])
async def test_oversize_answer_is_cut_off_while_streaming(
    declare: bool, autojump_clock: Any
) -> None:
    """A 1 MiB cap against an endless body: a non-retryable error naming model, cap, remedy;
    the connection is dropped at the cap and the client's memory never holds much more."""
    sent = [0]
    tracemalloc.start()
    try:
        with trio.fail_after(BIG):
            async with (
                raw_server(partial(endless, sent, declare=declare)) as url,
                OpenAICompatibleClient(base_url=url, name="big", max_response_bytes=MIB) as c,
            ):
                tracemalloc.reset_peak()
                with pytest.raises(ModelRequestError) as info:
                    await c.chat(model="m", messages=MESSAGES)
                _, peak = tracemalloc.get_traced_memory()
                await trio.sleep(1)  # let the server notice the hang-up
    finally:
        tracemalloc.stop()
    error = info.value
    assert error.reason == "response_too_large"
    assert not error.retryable
    assert error.status == 200
    assert "Model 'm' at provider 'big' sent an answer larger than max_response_bytes" in str(error)
    assert "1,048,576 bytes" in str(error)
    assert "raise max_response_bytes for this model" in str(error)
    assert ("announced 10,485,760 bytes" in str(error)) == declare
    assert peak < 3 * MIB
    assert sent[0] < 32 * MIB  # the server was stopped long before its 100 MiB


async def test_gzip_answers_are_decoded_and_capped_after_decoding(autojump_clock: Any) -> None:
    """gzip is asked for and decoded; a small gzip that inflates past the cap is refused."""
    requests: list[bytes] = []

    async def gzipped(stream: trio.SocketStream) -> None:
        while request := await read_request(stream):
            requests.append(request)
            size = 2 * MIB if b"bomb" in request else 0
            body = json.dumps(completion("z" * size or "unzipped")).encode()
            await stream.send_all(
                http_response(gzip.compress(body), extra="content-encoding: gzip\r\n")
            )

    with trio.fail_after(BIG):
        async with (
            raw_server(gzipped) as url,
            OpenAICompatibleClient(base_url=url, max_response_bytes=MIB) as client,
        ):
            assert (await client.chat(model="m", messages=MESSAGES)).content == "unzipped"
            with pytest.raises(ModelRequestError, match="larger than max_response_bytes"):
                await client.chat(model="bomb", messages=MESSAGES)
    assert b"accept-encoding: gzip, deflate" in requests[0].lower()


async def test_corrupt_gzip_is_a_connection_error(autojump_clock: Any) -> None:
    """A body that says gzip but is not: DecodingFailed → retryable ModelConnectionError."""

    async def corrupt(stream: trio.SocketStream) -> None:
        while await read_request(stream):
            await stream.send_all(http_response(b"not gzip", extra="content-encoding: gzip\r\n"))

    with trio.fail_after(BIG):
        async with (
            raw_server(corrupt) as url,
            OpenAICompatibleClient(base_url=url, transport_retry=NO_RETRY) as client,
        ):
            with pytest.raises(ModelConnectionError, match="gzip body is corrupt") as info:
                await client.chat(model="m", messages=MESSAGES)
    assert isinstance(info.value.__cause__, _http.DecodingFailed)


# ---------------------------------------------------------------------------------------------
# Connections: reuse, expiry, the keep-alive race
# ---------------------------------------------------------------------------------------------


async def test_connections_are_reused(autojump_clock: Any) -> None:
    """Ten sequential requests use one connection; 4 s of idleness expire it."""
    app = ScriptedApp()
    with trio.fail_after(BIG):
        async with served(app) as url, OpenAICompatibleClient(base_url=url) as client:
            for _ in range(10):
                await client.chat(model="m", messages=MESSAGES)
            assert client.statistics() == {"idle": 1, "in_use": 0, "waiting": 0, "opened": 1}
            await trio.sleep(4.0)
            await client.chat(model="m", messages=MESSAGES)
            assert client.statistics()["opened"] == 2
            # Many at once: one connection each, all pooled afterwards.
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(partial(client.chat, model="m", messages=MESSAGES))
            assert client.statistics()["idle"] == 8
    assert len(app.requests) == 19


async def test_connection_close_is_honoured(autojump_clock: Any) -> None:
    """An answer with `Connection: close` ends that connection; the next request opens one."""
    connections = [0]

    async def closing(stream: trio.SocketStream) -> None:
        connections[0] += 1
        await read_request(stream)
        body = json.dumps(completion()).encode()
        await stream.send_all(http_response(body, extra="connection: close\r\n"))
        await stream.aclose()

    with trio.fail_after(BIG):
        async with raw_server(closing) as url, OpenAICompatibleClient(base_url=url) as client:
            for _ in range(3):
                await client.chat(model="m", messages=MESSAGES)
            assert client.statistics()["idle"] == 0
    assert connections[0] == 3


async def test_a_reused_connection_closed_by_the_server_is_resent_at_once(
    autojump_clock: Any,
) -> None:
    """The server closes each connection after one answer without saying so: the next request
    finds the pooled connection dead and goes out again on a new one, without backoff."""
    seen = [0]

    async def one_then_close(stream: trio.SocketStream) -> None:
        seen[0] += 1
        await read_request(stream)
        await stream.send_all(http_response(json.dumps(completion()).encode()))
        await read_request(stream)  # a second request on this connection: hang up on it
        await stream.aclose()

    with trio.fail_after(BIG):
        async with (
            raw_server(one_then_close) as url,
            OpenAICompatibleClient(base_url=url, transport_retry=NO_RETRY) as client,
        ):
            start = trio.current_time()
            for _ in range(5):
                await client.chat(model="m", messages=MESSAGES)
            assert trio.current_time() - start == 0.0
    assert seen[0] == 5


async def test_idle_keepalive_gaps_never_fail_a_request(autojump_clock: Any) -> None:
    """Requests 5 s apart against a server that closes idle connections after 5 s: ours
    expire at 4 s (trio's clock, like the server's), so no request meets a closed one."""
    app = ScriptedApp()
    with trio.fail_after(BIG):
        async with (
            served(app, keep_alive=5.0) as url,
            OpenAICompatibleClient(base_url=url, transport_retry=NO_RETRY) as client,
        ):
            for _ in range(20):
                await client.chat(model="m", messages=MESSAGES)
                await trio.sleep(5.0)
            assert client.statistics()["opened"] == 20
    assert len(app.requests) == 20


async def test_cancelled_request_closes_its_connection(autojump_clock: Any) -> None:
    """A caller's cancel scope mid-request: no half-read connection goes back to the pool."""
    app = ScriptedApp([Reply(delay=10.0)])
    with trio.fail_after(BIG):
        async with served(app) as url, OpenAICompatibleClient(base_url=url) as client:
            with trio.move_on_after(1.0):
                await client.chat(model="m", messages=MESSAGES)
            assert client.statistics() == {"idle": 0, "in_use": 0, "waiting": 0, "opened": 1}
            assert (await client.chat(model="m", messages=MESSAGES)).content == "hi"


# ---------------------------------------------------------------------------------------------
# Proxies
# ---------------------------------------------------------------------------------------------


def test_proxy_comes_from_the_environment() -> None:
    """HTTP_PROXY/HTTPS_PROXY/ALL_PROXY by scheme, NO_PROXY honoured, loopback never proxied."""
    origin, _ = _http.parse_origin("https://api.example.com/v1")
    plain, _ = _http.parse_origin("http://gpu-box:8000/v1")
    env = {"HTTPS_PROXY": "http://user:p%40ss@proxy:3128", "NO_PROXY": "internal.example"}
    proxy = _http.proxy_for(origin, env)
    assert proxy is not None
    assert (proxy.origin.host, proxy.origin.port) == ("proxy", 3128)
    assert proxy.authorization == b"Basic dXNlcjpwQHNz"  # user:p@ss
    assert "p@ss" not in repr(proxy)
    assert _http.proxy_for(plain, env) is None  # no HTTP_PROXY
    assert _http.proxy_for(plain, {"all_proxy": "proxy:8080"}) is not None
    assert _http.proxy_for(origin, {**env, "NO_PROXY": "example.com"}) is None
    loopback, _ = _http.parse_origin("http://127.0.0.1:8000/v1")
    assert _http.proxy_for(loopback, {"HTTP_PROXY": "http://proxy:3128"}) is None


def test_unsupported_proxy_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SOCKS proxy fails when the client is built, naming the variable, not its value."""
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:secret@proxy:1080")
    with pytest.raises(ConfigError, match=r"HTTPS_PROXY must be an http:// proxy URL") as info:
        OpenAICompatibleClient(base_url="https://api.example.com/v1", name="p")
    assert "secret" not in str(info.value)


async def test_plain_http_goes_through_a_forward_proxy(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: Any
) -> None:
    """Through HTTP_PROXY a request carries the absolute URL and the proxy's credentials."""
    requests: list[bytes] = []

    async def proxy(stream: trio.SocketStream) -> None:
        while request := await read_request(stream):
            requests.append(request)
            await stream.send_all(http_response(json.dumps(completion("proxied")).encode()))

    with trio.fail_after(BIG):
        async with raw_server(proxy) as proxy_url:
            port = proxy_url.split(":")[2].split("/")[0]
            monkeypatch.setenv("HTTP_PROXY", f"http://me:pw@127.0.0.1:{port}")
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            async with OpenAICompatibleClient(base_url="http://models.test:8000/v1") as client:
                reply = await client.chat(model="m", messages=MESSAGES)
    assert reply.content == "proxied"
    [request] = requests
    assert request.startswith(b"POST http://models.test:8000/v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nproxy-authorization: Basic bWU6cHc=\r\n" in request
    assert b"\r\nhost: models.test:8000\r\n" in request


async def test_a_proxy_refusing_the_tunnel_is_a_connection_error(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: Any
) -> None:
    """HTTPS through a proxy that answers CONNECT with 403: ProxyFailed, named as such."""
    requests: list[bytes] = []

    async def refusing(stream: trio.SocketStream) -> None:
        requests.append(await read_request(stream))
        await stream.send_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await stream.aclose()

    with trio.fail_after(BIG):
        async with raw_server(refusing) as proxy_url:
            port = proxy_url.split(":")[2].split("/")[0]
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            async with OpenAICompatibleClient(
                base_url="https://api.example.com/v1", name="p", transport_retry=NO_RETRY
            ) as client:
                with pytest.raises(ModelConnectionError, match=r"403 Forbidden") as info:
                    await client.chat(model="m", messages=MESSAGES)
    assert isinstance(info.value.__cause__, _http.ProxyFailed)
    assert requests[0].startswith(b"CONNECT api.example.com:443 HTTP/1.1\r\n")


# ---------------------------------------------------------------------------------------------
# Connect failures
# ---------------------------------------------------------------------------------------------


async def test_unresolvable_host_is_a_connect_failure() -> None:
    """DNS failure: ConnectFailed naming the host (``.invalid`` never resolves, RFC 6761).

    Real time: name resolution runs in a worker thread, which an autojump clock would race.
    """
    with trio.fail_after(30):
        async with OpenAICompatibleClient(
            base_url="http://no-such-host.invalid/v1", timeout=20.0, transport_retry=NO_RETRY
        ) as client:
            with pytest.raises(ModelConnectionError, match=r"no-such-host\.invalid:80") as info:
                await client.chat(model="m", messages=MESSAGES)
    assert isinstance(info.value.__cause__, _http.ConnectFailed)
    assert isinstance(error_from_transport(info.value.__cause__), ModelConnectionError)


# ---------------------------------------------------------------------------------------------
# Whole runs: the usual failure rules apply and the run ends
# ---------------------------------------------------------------------------------------------


def one_column_pipeline(url: str, **model: Any) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": "odd", "base_url": url}],
            "models": [{"alias": "gen", "model": "m", "provider": "odd", **model}],
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "On {{ topic }}."},
            ],
        }
    )


async def test_a_run_against_an_oversize_server_drops_its_rows_and_ends(
    autojump_clock: Any,
) -> None:
    """Every answer is endless: each row is dropped once (no retry), the message says why."""
    sent = [0]
    with trio.fail_after(BIG):
        async with raw_server(partial(endless, sent, declare=False)) as url:
            config = one_column_pipeline(url, max_response_bytes=65536)
            result = await TrioDesigner().preview(config, num_records=3)
    assert result.num_records_written == 0
    assert result.num_rows_dropped == 3
    assert {f.error_class for f in result.failures} == {"ModelRequestError"}
    assert all(f.attempts == 1 for f in result.failures)
    assert "max_response_bytes (65,536 bytes)" in result.failures[0].message


async def test_a_run_against_a_trickling_server_salvages_then_drops_and_ends(
    autojump_clock: Any,
) -> None:
    """Every answer trickles: each cell times out once per round (first try and two salvage
    rounds), then its row is dropped as a timeout, and the run ends."""
    with trio.fail_after(BIG):
        async with raw_server(trickle) as url:
            config = one_column_pipeline(url, timeout=5.0)
            start = trio.current_time()
            result = await TrioDesigner().preview(config, num_records=2)
            elapsed = trio.current_time() - start
    assert result.num_records_written == 0
    assert result.num_rows_dropped == 2
    assert {f.error_class for f in result.failures} == {"ModelTimeoutError"}
    assert all(f.attempts == 3 for f in result.failures)
    assert "no complete answer within 5 s" in result.failures[0].message
    assert elapsed < 60  # three rounds of 5 s timeouts (plus salvage waits), not forever


# ---------------------------------------------------------------------------------------------
# TLS (certificates from trustme, a throwaway CA trusted through SSL_CERT_FILE)
# ---------------------------------------------------------------------------------------------


@asynccontextmanager
async def tls_server(
    ca: trustme.CA, name: str, handler: Callable[[trio.abc.Stream], Awaitable[None]]
) -> AsyncIterator[int]:
    """A raw HTTP handler behind TLS on 127.0.0.1 with a certificate for ``name``; yields the
    port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            partial(trio.serve_ssl_over_tcp, handler, 0, context, host="127.0.0.1")
        )
        try:
            yield listener.transport_listener.socket.getsockname()[1]
        finally:
            nursery.cancel_scope.cancel()


async def answer_all(stream: trio.abc.Stream) -> None:
    with suppress(trio.BrokenResourceError):
        while await read_request(stream):
            await stream.send_all(http_response(json.dumps(completion("secure")).encode()))


@pytest.fixture
def ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> trustme.CA:
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return authority


async def test_https_round_trip(ca: trustme.CA, autojump_clock: Any) -> None:
    """Certificate verified against SSL_CERT_FILE; the connection is reused over TLS."""
    with trio.fail_after(BIG):
        async with tls_server(ca, "127.0.0.1", answer_all) as port:
            client = OpenAICompatibleClient(base_url=f"https://127.0.0.1:{port}/v1")
            async with client:
                for _ in range(3):
                    assert (await client.chat(model="m", messages=MESSAGES)).content == "secure"
                assert client.statistics()["opened"] == 1


async def test_a_certificate_for_another_name_fails_to_connect(
    ca: trustme.CA, autojump_clock: Any
) -> None:
    """A wrong certificate is a ConnectFailed naming the TLS failure, never a silent success."""
    with trio.fail_after(BIG):
        async with tls_server(ca, "someone-else.test", answer_all) as port:
            client = OpenAICompatibleClient(
                base_url=f"https://127.0.0.1:{port}/v1", transport_retry=NO_RETRY
            )
            async with client:
                with pytest.raises(ModelConnectionError, match=r"TLS handshake") as info:
                    await client.chat(model="m", messages=MESSAGES)
    assert isinstance(info.value.__cause__, _http.ConnectFailed)
    assert "SSLCertVerificationError" in str(info.value)


async def test_https_through_a_connect_proxy(
    ca: trustme.CA, monkeypatch: pytest.MonkeyPatch, autojump_clock: Any
) -> None:
    """HTTPS_PROXY: CONNECT api.test:443 to the proxy, then TLS end to end through the tunnel
    (the proxy pipes bytes to the real TLS server; the client never resolves api.test)."""
    tunnels: list[bytes] = []

    async def connect_proxy(tls_port: int, client: trio.SocketStream) -> None:
        tunnels.append(await read_request(client))
        await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        upstream = await trio.open_tcp_stream("127.0.0.1", tls_port)
        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(pipe, client, upstream)
            nursery.start_soon(pipe, upstream, client)

    with trio.fail_after(BIG):
        async with (
            tls_server(ca, "api.test", answer_all) as tls_port,
            raw_server(partial(connect_proxy, tls_port)) as proxy_url,
        ):
            port = proxy_url.split(":")[2].split("/")[0]
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            async with OpenAICompatibleClient(base_url="https://api.test/v1") as client:
                reply = await client.chat(model="m", messages=MESSAGES)
    assert reply.content == "secure"
    assert tunnels[0].startswith(b"CONNECT api.test:443 HTTP/1.1\r\n")


async def pipe(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await sink.send_eof()
