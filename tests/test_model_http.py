"""What only the native transport (``trio_designer/models/_http.py``) does.

The transport contract both transports keep (deadline, size cap, reuse, failures, proxies,
TLS) is tested over both in ``tests/test_model_transport.py``. Here: how the native pool reads
proxies from the environment, what it refuses (and that the message names the httpx transport
as the remedy), and idle expiry on trio's clock.
"""

from __future__ import annotations

import socket
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from _loopback import Reply, ScriptedApp, http_response, raw_server, read_request, served

from trio_designer._core._retry import BackoffPolicy
from trio_designer._exceptions import ConfigError
from trio_designer.models import _http
from trio_designer.models._client import OpenAICompatibleClient
from trio_designer.models._transport import ProtocolViolation, parse_origin

BIG = 10_000
NO_RETRY = BackoffPolicy(max_attempts=1)
MESSAGES = [{"role": "user", "content": "Say hi"}]


def test_proxy_comes_from_the_environment() -> None:
    """HTTP_PROXY/HTTPS_PROXY/ALL_PROXY by scheme, NO_PROXY honoured, loopback never proxied."""
    origin, _ = parse_origin("https://api.example.com/v1")
    plain, _ = parse_origin("http://gpu-box:8000/v1")
    env = {"HTTPS_PROXY": "http://user:p%40ss@proxy:3128", "NO_PROXY": "internal.example"}
    proxy = _http.proxy_for(origin, env)
    assert proxy is not None
    assert (proxy.origin.host, proxy.origin.port) == ("proxy", 3128)
    assert proxy.authorization == b"Basic dXNlcjpwQHNz"  # user:p@ss
    assert "p@ss" not in repr(proxy)
    assert _http.proxy_for(plain, env) is None  # no HTTP_PROXY
    assert _http.proxy_for(plain, {"all_proxy": "proxy:8080"}) is not None
    assert _http.proxy_for(origin, {**env, "NO_PROXY": "example.com"}) is None
    loopback, _ = parse_origin("http://127.0.0.1:8000/v1")
    assert _http.proxy_for(loopback, {"HTTP_PROXY": "http://proxy:3128"}) is None


@pytest.mark.parametrize(
    "url", ["socks5://user:secret@proxy:1080", "https://user:secret@proxy:3128"]
)
def test_a_proxy_the_native_pool_cannot_use_names_the_httpx_transport(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SOCKS or https:// proxy fails when the client is built, naming the variable (not its
    value) and the remedy: the httpx transport."""
    monkeypatch.setenv("HTTPS_PROXY", url)
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleClient(base_url="https://api.example.com/v1", name="p")
    assert str(info.value) == (
        "provider 'p': HTTPS_PROXY must be an http:// proxy URL for the native transport (it "
        "supports neither SOCKS nor https:// proxies); set 'transport: httpx' on the provider "
        "(for SOCKS, install trio_designer[socks] too), or point HTTPS_PROXY at an HTTP proxy"
    )
    assert "secret" not in str(info.value)


@pytest.mark.deadline(240)
async def test_idle_connections_expire_on_trios_clock(autojump_clock: Any) -> None:
    """After 4 s of (virtual) idleness the pooled connection is dropped: the next request
    opens a new one. So requests 5 s apart against a server closing idle connections at 5 s
    never meet one it is closing: 20 requests, 20 connections, no retry needed."""
    app = ScriptedApp()
    with trio.fail_after(BIG):
        async with served(app) as url, OpenAICompatibleClient(base_url=url) as client:
            await client.chat(model="m", messages=MESSAGES)
            await trio.sleep(3.9)
            await client.chat(model="m", messages=MESSAGES)
            assert client.statistics().opened == 1
            await trio.sleep(4.0)
            await client.chat(model="m", messages=MESSAGES)
            assert client.statistics().opened == 2
        async with (
            served(app, keep_alive=5.0) as url,
            OpenAICompatibleClient(base_url=url, transport_retry=NO_RETRY) as client,
        ):
            for _ in range(20):
                await client.chat(model="m", messages=MESSAGES)
                await trio.sleep(5.0)
            assert client.statistics().opened == 20


async def test_top_up_doubles_the_connections_of_the_requests_in_flight(
    autojump_clock: Any,
) -> None:
    """While 3 requests wait for their answers, ``top_up`` opens 3 idle connections (twice the
    requests in flight); a pool of 4 opens 1 (its size bounds it); the next requests reuse
    them instead of connecting."""
    for size, added in ((16, 3), (4, 1)):
        app = ScriptedApp(default=Reply(delay=1.0))
        with trio.fail_after(BIG):
            async with served(app) as url:
                origin, base = parse_origin(url)
                pool = _http.ConnectionPool(origin, max_connections=size)
                try:
                    async with trio.open_nursery() as nursery:
                        for _ in range(3):
                            nursery.start_soon(_chat_on, pool, base)
                        await trio.testing.wait_all_tasks_blocked()
                        assert pool.statistics().in_use == 3
                        assert pool.sending == 0  # all three sent, waiting for answers
                        assert await pool.top_up(timeout=10) == added
                        assert pool.statistics().opened == 3 + added
                    assert await pool.top_up(timeout=10) == 0  # nothing in flight
                    async with trio.open_nursery() as nursery:
                        for _ in range(3 + added):
                            nursery.start_soon(_chat_on, pool, base)
                    assert pool.statistics().opened == 3 + added  # all reused
                    assert pool.sending == 0
                finally:
                    await pool.aclose()


async def _chat_on(pool: _http.ConnectionPool, base: str) -> None:
    headers = [("content-type", "application/json")]
    response = await pool.request(
        "POST", f"{base}/chat/completions", headers, b"{}", timeout=60, max_body=1 << 20
    )
    assert response.status == 200


@pytest.mark.parametrize("proxied", [False, True])
def test_request_heads_are_validated_once(proxied: bool) -> None:
    """The request built from the validated cache holds the bytes h11 sends for the request
    validated whole (``Content-Length`` before a proxy's ``Proxy-Authorization``), for each
    request of a repeated head; a head h11 refuses is refused each time, never cached."""
    import h11

    from trio_designer.models._transport import InvalidRequest

    origin, _ = parse_origin("http://example.com:8080/v1")
    proxy = _http.Proxy(origin=origin, authorization=b"Basic dTpw") if proxied else None
    pool = _http.ConnectionPool(origin, max_connections=1, proxy=proxy)
    headers = (("accept", "application/json"), ("content-type", "application/json"))
    for method, body in (("POST", b'{"a": 1}'), ("POST", b"{}"), ("GET", b""), ("POST", b"")):
        full = [("host", origin.host_header), *headers]
        if method != "GET" or body:
            full.append(("content-length", str(len(body))))
        if proxied:
            full.append(("proxy-authorization", "Basic dTpw"))
        expected = h11.Request(method=method, target=pool.target("/v1/x"), headers=full)
        writer = h11.Connection(h11.CLIENT)
        sent = writer.send(expected) + (writer.send(h11.Data(data=body)) or b"")
        sent += writer.send(h11.EndOfMessage()) or b""
        for _ in range(2):
            assert pool._request_bytes(method, "/v1/x", headers, body) == sent
    bad = (("x-bad", "new\r\nline"),)
    for _ in range(2):
        with pytest.raises(InvalidRequest):
            pool._request_bytes("POST", "/v1/x", bad, b"{}")


# ---------------------------------------------------------------------------------------------
# Reading answers (httptools' parser): what the hostile-server tests do not cover
# ---------------------------------------------------------------------------------------------


async def test_informational_answers_are_skipped_and_stray_bytes_end_reuse(
    autojump_clock: Any,
) -> None:
    """A ``100 Continue`` before the answer is skipped, byte by byte too; the connection is
    reused after a clean answer, and not after one followed by bytes nobody asked for."""
    body = b'{"ok": 1}'
    connections: list[int] = []

    async def server(stream: trio.SocketStream) -> None:
        connections.append(1)
        while await read_request(stream):
            answer = b"HTTP/1.1 100 Continue\r\n\r\n" + http_response(body)
            if len(connections) == 1:
                for i in range(len(answer)):  # one byte a read
                    await stream.send_all(answer[i : i + 1])
                    await trio.sleep(0.001)
            else:
                await stream.send_all(answer + b"HTTP/1.1 200 OK\r\n")  # stray bytes after it
        await stream.aclose()

    with trio.fail_after(BIG):
        async with raw_server(server) as url:
            origin, base = parse_origin(url)
            pool = _http.ConnectionPool(origin, max_connections=1)
            try:
                for _ in range(2):
                    response = await pool.request(
                        "GET", f"{base}/models", [], b"", timeout=60, max_body=1 << 20
                    )
                    assert (response.status, response.body) == (200, body)
                assert pool.statistics().opened == 1  # reused
                assert len(pool._idle) == 1  # kept for the next request
                await pool.aclose()
                pool = _http.ConnectionPool(origin, max_connections=1)
                for _ in range(2):
                    response = await pool.request(
                        "GET", f"{base}/models", [], b"", timeout=60, max_body=1 << 20
                    )
                    assert response.body == body
                assert pool.statistics().opened == 2  # the stray bytes closed the first
            finally:
                await pool.aclose()


async def test_a_malformed_answer_is_described_as_h11_describes_it(autojump_clock: Any) -> None:
    """The native pool parses answers with httptools but names what is wrong with one in
    h11's words (the httpx transport's parser), whether the problem is in the head, in a
    chunk, or a body cut short."""
    answers = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n0123456789",
        b"HELLO WORLD\r\n\r\n",
    ]
    says = [
        "illegal chunk header",
        r"peer closed connection without sending complete message body \(received 10 bytes, "
        r"expected 20\)",
        "illegal status line",
    ]

    async def server(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(answers.pop(0))
        await stream.aclose()

    with trio.fail_after(BIG):
        async with raw_server(server) as url:
            origin, base = parse_origin(url)
            pool = _http.ConnectionPool(origin, max_connections=1)
            try:
                for expected in says:
                    with pytest.raises(ProtocolViolation, match=expected):
                        await pool.request(
                            "GET", f"{base}/models", [], b"", timeout=60, max_body=1 << 20
                        )
            finally:
                await pool.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\ncontent-length: 9\n\n",  # bare LF line ends
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\n  2\r\ncontent-length: 9\r\n\r\n",  # an obs-fold
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
        b"9\r\n",  # chunked wins
    ],
    ids=["bare LF", "obs-fold", "chunked and Content-Length"],
)
async def test_answers_h11_accepted_are_still_accepted(answer: bytes, autojump_clock: Any) -> None:
    """What llhttp refuses but h11 (the parser before it) accepted is read with h11: the
    answer arrives whole, and the connection is reused after it when h11 allows."""
    body = b'{"ok": 1}'
    chunked = b"transfer-encoding" in answer

    async def server(stream: trio.SocketStream) -> None:
        while await read_request(stream):
            await stream.send_all(answer + body + (b"\r\n0\r\n\r\n" if chunked else b""))
        await stream.aclose()

    with trio.fail_after(BIG):
        async with raw_server(server) as url:
            origin, base = parse_origin(url)
            pool = _http.ConnectionPool(origin, max_connections=1)
            try:
                for _ in range(2):
                    response = await pool.request(
                        "GET", f"{base}/models", [], b"", timeout=60, max_body=1 << 20
                    )
                    assert (response.status, response.body) == (200, body)
                assert pool.statistics().opened == 1
            finally:
                await pool.aclose()


def _peek(fd: int) -> bytes:
    """The first byte waiting on socket ``fd``, without taking it (``b""``: nothing yet)."""
    sock = socket.socket(fileno=fd)
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""
    finally:
        sock.detach()


async def test_a_request_with_a_free_slot_leaves_before_any_other_task_runs(
    autojump_clock: Any,
) -> None:
    """On an idle connection with a free slot, the request's bytes are on the wire before the
    request yields to the scheduler (``ConnectionPool.request`` takes a free slot without
    one): the first other task to run finds them at the server (were there a schedule point
    before the send, one of twenty tasks would surely run first). The server does not read
    meanwhile (it waits for them)."""
    server_sockets: list[int] = []
    let_it_read = trio.Event()

    async def server(stream: trio.SocketStream) -> None:
        server_sockets.append(stream.socket.fileno())
        await read_request(stream)
        await stream.send_all(http_response(b"{}"))
        await let_it_read.wait()
        await read_request(stream)
        await stream.send_all(http_response(b"{}"))
        await stream.aclose()

    seen: list[bytes] = []

    async def other_task() -> None:
        seen.append(_peek(server_sockets[0]))
        if len(seen) == 20:
            let_it_read.set()

    with trio.fail_after(BIG):
        async with raw_server(server) as url:
            origin, base = parse_origin(url)
            pool = _http.ConnectionPool(origin, max_connections=1)
            try:
                await pool.request("GET", f"{base}/models", [], b"", timeout=60, max_body=1 << 20)
                async with trio.open_nursery() as nursery:
                    for _ in range(20):
                        nursery.start_soon(other_task)
                    response = await pool.request(
                        "GET", f"{base}/models", [], b"", timeout=60, max_body=1 << 20
                    )
                assert response.status == 200
                assert pool.statistics().opened == 1
                assert seen[0] == b"G"  # "GET /v1/models ..." was already there
            finally:
                await pool.aclose()


async def test_a_cancelled_request_takes_no_slot_and_sends_nothing(autojump_clock: Any) -> None:
    requests: list[bytes] = []

    async def server(stream: trio.SocketStream) -> None:
        while request := await read_request(stream):
            requests.append(request)
            await stream.send_all(http_response(b"{}"))
        await stream.aclose()

    with trio.fail_after(BIG):
        async with raw_server(server) as url:
            origin, base = parse_origin(url)
            pool = _http.ConnectionPool(origin, max_connections=1)
            try:
                with trio.CancelScope() as scope:
                    scope.cancel()
                    await pool.request("GET", f"{base}/a", [], b"", timeout=60, max_body=1 << 20)
                assert scope.cancelled_caught
                assert pool.statistics().in_use == 0
                response = await pool.request(
                    "GET", f"{base}/b", [], b"", timeout=60, max_body=1 << 20
                )  # the slot is free: a leaked one would park this forever (fail_after)
                assert response.status == 200
                assert [r.split(b" ")[1] for r in requests] == [b"/v1/b"]
            finally:
                await pool.aclose()


async def test_a_numeric_address_is_connected_directly() -> None:
    """``_open_tcp``: an IP address gets one socket and one ``connect`` (a refusal worded as
    ``open_tcp_stream`` words it, the OS's error as its cause); a name still goes through
    ``open_tcp_stream``; both give a working stream. On the real clock: the name's lookup runs
    in a worker thread, which an autojumping clock would jump past the deadline."""

    async def server(stream: trio.SocketStream) -> None:
        while await read_request(stream):
            await stream.send_all(http_response(b"{}"))
        await stream.aclose()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with trio.fail_after(BIG):
        refused = rf"^all attempts to connect to 127\.0\.0\.1:{closed_port} failed$"
        with pytest.raises(OSError, match=refused) as info:
            await _http._open_tcp("127.0.0.1", closed_port)
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
        async with raw_server(server) as url:
            port = parse_origin(url)[0].port
            for host in ("127.0.0.1", "localhost"):
                stream, raw = await _http._open_tcp(host, port)
                # The plain socket under the stream comes along only when we made it.
                assert (raw is not None) == (host == "127.0.0.1")
                try:
                    await stream.send_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
                    assert (await stream.receive_some(1024)).startswith(b"HTTP/1.1 200")
                finally:
                    await stream.aclose()


async def test_a_cancelled_connect_raises_before_it_connects() -> None:
    """``_open_tcp`` on an IP address (our own non-blocking ``connect``, which skips trio's
    schedule point when the connection is up at once): a task whose scope is already
    cancelled raises ``Cancelled`` before any connection is made."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        with trio.fail_after(BIG):
            with trio.CancelScope() as scope:
                scope.cancel()
                await _http._open_tcp("127.0.0.1", port)
            assert scope.cancelled_caught
            with pytest.raises(BlockingIOError):
                listener.accept()  # nobody connected
            stream, _ = await _http._open_tcp("127.0.0.1", port)
            try:
                accepted, _ = listener.accept()  # connected, once not cancelled
                accepted.close()
            finally:
                await stream.aclose()


class _Steps(trio.abc.Instrument):
    """Counts the scheduler steps of one task."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_a_plain_connection_sends_and_reads_on_its_socket() -> None:
    """A connection the pool opened to a numeric address sends its request and reads its
    answer on the plain socket (``_send_raw`` / ``_receive_raw``): a send that goes out at
    once and a read that finds data yield nothing, so a request takes fewer scheduler steps
    than through trio's stream (the same server by name, which goes through
    ``open_tcp_stream``): 1 against 2 on a reused connection; the answer is the same. On
    the real clock (the name's lookup runs in a worker thread)."""

    async def server(stream: trio.SocketStream) -> None:
        while await read_request(stream):
            await stream.send_all(http_response(b'{"ok": true}'))
        await stream.aclose()

    steps: dict[str, int] = {}
    with trio.fail_after(BIG):
        async with raw_server(server) as url:
            origin, base = parse_origin(url)
            for host in ("127.0.0.1", "localhost"):
                named = attrs.evolve(origin, host=host)
                pool = _http.ConnectionPool(named, max_connections=1)
                try:
                    for _ in range(2):  # the second goes on the open connection
                        counter = _Steps(trio.lowlevel.current_task())
                        trio.lowlevel.add_instrument(counter)
                        try:
                            response = await pool.request(
                                "GET", f"{base}/models", [], b"", timeout=60, max_body=1 << 20
                            )
                        finally:
                            trio.lowlevel.remove_instrument(counter)
                        assert (response.status, response.body) == (200, b'{"ok": true}')
                    assert (pool._idle[0].raw is not None) == (host == "127.0.0.1")
                    steps[host] = counter.steps
                finally:
                    await pool.aclose()
    assert steps["127.0.0.1"] < steps["localhost"], steps


async def test_a_custom_socket_factory_is_still_consulted() -> None:
    """A numeric address is connected with ``trio.socket.socket``, so a custom socket
    factory (``trio.socket.set_custom_socket_factory``, e.g. a fake network in a user's
    tests) still makes the socket; the plain-socket path is taken only when the socket it
    made wraps a plain one. On the real clock."""

    async def server(stream: trio.SocketStream) -> None:
        while await read_request(stream):
            await stream.send_all(http_response(b"{}"))
        await stream.aclose()

    made: list[Any] = []

    class Factory(trio.abc.SocketFactory):
        def socket(self, family: Any = None, type: Any = None, proto: Any = 0) -> Any:
            sock = trio.socket.from_stdlib_socket(socket.socket(family, type, proto))
            made.append(sock)
            return sock

    with trio.fail_after(BIG):
        async with raw_server(server) as url:
            port = parse_origin(url)[0].port
            previous = trio.socket.set_custom_socket_factory(Factory())
            try:
                stream, raw = await _http._open_tcp("127.0.0.1", port)
            finally:
                trio.socket.set_custom_socket_factory(previous)
            try:
                assert made
                assert stream.socket is made[0]
                assert raw is not None
                assert raw.fileno() == stream.socket.fileno()
            finally:
                await stream.aclose()
