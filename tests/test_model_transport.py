"""The transport contract (``trio_designer/models/_transport.py``), over both transports.

Every test here takes ``make_client`` (or ``transport``) from ``tests/conftest.py`` and so runs
once with our own HTTP/1.1 pool (``[native]``) and once with httpx (``[httpx]``): the same
behaviour, the same exception classes, the same messages. Against real servers on 127.0.0.1
that do the misbehaving (``tests/_loopback.py``), in virtual time: one deadline for the whole
request (a server trickling its answer), the size cap while streaming (memory stays flat),
gzip, connection reuse, the resend after a reused connection turns out closed, proxies, TLS
with trustme, and every failure class the client maps.

What only one transport does is tested next to it: ``tests/test_model_http.py`` (native: its
proxy parsing, idle expiry on trio's clock) and ``tests/test_model_httpx_transport.py``
(httpx: SOCKS, HTTP/2, its pools of 16).
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import ssl
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
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

from conftest import ClientFactory
from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._core._retry import BackoffPolicy
from trio_designer._exceptions import (
    ModelConnectionError,
    ModelRateLimitedError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
)
from trio_designer.models import _transport
from trio_designer.models._client import resolve_api_key
from trio_designer.models._errors import error_from_transport

BIG = 10_000
NO_RETRY = BackoffPolicy(max_attempts=1)
NO_JITTER = BackoffPolicy(jitter=0.0)
MESSAGES = [{"role": "user", "content": "Say hi"}]
ANSWER = json.dumps(completion("a trickled answer")).encode()
MIB = 2**20


def test_every_transport_kind_has_a_factory() -> None:
    """The contract suite covers every transport a provider can choose, and only those."""
    from conftest import TRANSPORT_FACTORIES
    from trio_designer.config._models import TRANSPORTS

    assert tuple(TRANSPORT_FACTORIES) == _transport.TRANSPORT_KINDS == TRANSPORTS


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
@pytest.mark.deadline(600)
async def test_trickling_server_times_out_on_the_whole_request(
    make_client: ClientFactory, head_first: bool, autojump_clock: Any
) -> None:
    """A byte a second: ModelTimeoutError at exactly `timeout`, not retried by the client; the
    interrupted connection is not reused."""
    with trio.fail_after(BIG):
        async with (
            raw_server(partial(trickle, head_first=head_first)) as url,
            make_client(base_url=url, name="slow", timeout=10.0) as client,
        ):
            start = trio.current_time()
            with pytest.raises(ModelTimeoutError, match=r"no complete answer within 10 s") as info:
                await client.chat(model="m", messages=MESSAGES)
            assert trio.current_time() - start == 10.0
            # A timeout long enough for the whole trickle succeeds, on a new connection.
            reply = await client.chat(model="m", messages=MESSAGES, timeout=len(ANSWER) + 300)
            assert client.statistics().opened == 2
    assert reply.content == "a trickled answer"
    assert isinstance(info.value.__cause__, _transport.RequestTimedOut)
    assert info.value.retryable
    assert str(info.value).startswith("Calling model 'm' at provider 'slow' failed: ")


@pytest.mark.deadline(30)
async def test_a_silent_server_times_out_once_and_is_not_retried(
    make_client: ClientFactory, autojump_clock: Any
) -> None:
    """A server slower than the timeout: ModelTimeoutError after exactly one timeout."""
    app = ScriptedApp([Reply(delay=100.0)])
    with trio.fail_after(BIG):
        async with (
            served(app) as url,
            make_client(base_url=url, timeout=10.0, name="sim") as client,
        ):
            start = trio.current_time()
            with pytest.raises(ModelTimeoutError, match=r"no complete answer within 10 s"):
                await client.chat(model="m", messages=MESSAGES)
            assert trio.current_time() - start == 10.0
            reply = await client.chat(model="m", messages=MESSAGES, timeout=500.0)
            assert reply.content == "hi"
    assert len(app.requests) == 2


@pytest.mark.deadline(30)
async def test_waiting_for_a_connection_is_not_part_of_the_deadline(
    make_client: ClientFactory, autojump_clock: Any
) -> None:
    """max_connections=1, three 4 s requests with a 5 s timeout: all succeed (12 s in all)."""
    app = ScriptedApp(default=Reply(delay=4.0))
    with trio.fail_after(BIG):
        async with (
            served(app) as url,
            make_client(base_url=url, max_connections=1, timeout=5.0) as client,
        ):
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(partial(client.chat, model="m", messages=MESSAGES))
            assert trio.current_time() - start == 12.0
    assert app.peak == 1


async def test_pool_bounds_concurrent_connections(
    make_client: ClientFactory, autojump_clock: Any
) -> None:
    """max_connections=2: five 1 s requests run two at a time and take 3 s; the others wait
    in the transport's queue, counted by statistics()."""
    app = ScriptedApp(default=Reply(delay=1.0))
    with trio.fail_after(BIG):
        async with served(app) as url, make_client(base_url=url, max_connections=2) as client:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(partial(client.chat, model="m", messages=MESSAGES))
                await trio.testing.wait_all_tasks_blocked()
                assert client.statistics() == _transport.TransportStatistics(
                    in_use=2, waiting=3, opened=2
                )
            assert trio.current_time() - start == 3.0
    assert app.peak == 2


# ---------------------------------------------------------------------------------------------
# The size cap
# ---------------------------------------------------------------------------------------------


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


# Virtual time that waits out real socket transfers: a body moving through kernel buffers looks
# idle to trio, and the default clock would jump past the client's timeout on a loaded machine.
OVERSIZE_CLOCK = 0.1


@pytest.mark.parametrize("declare", [False, True], ids=["streamed", "announced"])
async def test_oversize_answer_is_cut_off_while_streaming(
    make_client: ClientFactory, declare: bool, autojump_clock: Any
) -> None:
    """A 1 MiB cap against an endless body: a non-retryable error naming model, cap, remedy;
    the connection is dropped at the cap and the client's memory never holds much more."""
    autojump_clock.autojump_threshold = OVERSIZE_CLOCK
    sent = [0]
    tracemalloc.start()
    try:
        with trio.fail_after(BIG):
            async with (
                raw_server(partial(endless, sent, declare=declare)) as url,
                make_client(base_url=url, name="big", max_response_bytes=MIB) as c,
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
    assert isinstance(error.__cause__, _transport.ResponseTooLarge)
    assert peak < 3 * MIB
    assert sent[0] < 32 * MIB  # the server was stopped long before its 100 MiB


async def test_gzip_answers_are_decoded_and_capped_after_decoding(
    make_client: ClientFactory, autojump_clock: Any
) -> None:
    """gzip is asked for and decoded; a small gzip that inflates past the cap is refused."""
    requests: list[bytes] = []

    async def gzipped(stream: trio.SocketStream) -> None:
        with suppress(trio.BrokenResourceError):
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
            make_client(base_url=url, max_response_bytes=MIB) as client,
        ):
            assert (await client.chat(model="m", messages=MESSAGES)).content == "unzipped"
            with pytest.raises(ModelRequestError, match="larger than max_response_bytes"):
                await client.chat(model="bomb", messages=MESSAGES)
    assert b"accept-encoding: gzip, deflate" in requests[0].lower()


async def test_corrupt_gzip_is_a_connection_error(
    make_client: ClientFactory, autojump_clock: Any
) -> None:
    """A body that says gzip but is not: DecodingFailed → retryable ModelConnectionError."""

    async def corrupt(stream: trio.SocketStream) -> None:
        with suppress(trio.BrokenResourceError):
            while await read_request(stream):
                body = http_response(b"not gzip", extra="content-encoding: gzip\r\n")
                await stream.send_all(body)

    with trio.fail_after(BIG):
        async with (
            raw_server(corrupt) as url,
            make_client(base_url=url, transport_retry=NO_RETRY) as client,
        ):
            with pytest.raises(ModelConnectionError, match="gzip body is corrupt") as info:
                await client.chat(model="m", messages=MESSAGES)
    assert isinstance(info.value.__cause__, _transport.DecodingFailed)


# ---------------------------------------------------------------------------------------------
# Connections: reuse, close, the keep-alive race, cancellation
# ---------------------------------------------------------------------------------------------


async def test_connections_are_reused(make_client: ClientFactory, autojump_clock: Any) -> None:
    """Ten sequential requests use one connection; a burst of eight opens seven more, and a
    second burst reuses all eight (counted by the client and by the server)."""
    app = ScriptedApp()
    with trio.fail_after(BIG):
        async with served(app) as url, make_client(base_url=url) as client:
            for _ in range(10):
                await client.chat(model="m", messages=MESSAGES)
            assert client.statistics() == _transport.TransportStatistics(
                in_use=0, waiting=0, opened=1
            )
            for _ in range(2):
                async with trio.open_nursery() as nursery:
                    for _ in range(8):
                        nursery.start_soon(partial(client.chat, model="m", messages=MESSAGES))
                assert client.statistics().opened == 8
    assert len(app.requests) == 26
    assert app.connections() == 8


async def test_connection_close_is_honoured(
    make_client: ClientFactory, autojump_clock: Any
) -> None:
    """An answer with `Connection: close` ends that connection; the next request opens one."""
    connections = [0]

    async def closing(stream: trio.SocketStream) -> None:
        connections[0] += 1
        await read_request(stream)
        body = json.dumps(completion()).encode()
        await stream.send_all(http_response(body, extra="connection: close\r\n"))
        await stream.aclose()

    with trio.fail_after(BIG):
        async with raw_server(closing) as url, make_client(base_url=url) as client:
            for _ in range(3):
                await client.chat(model="m", messages=MESSAGES)
            assert client.statistics().opened == 3
    assert connections[0] == 3


async def test_a_reused_connection_closed_by_the_server_is_resent_at_once(
    make_client: ClientFactory, autojump_clock: Any
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
            make_client(base_url=url, transport_retry=NO_RETRY) as client,
        ):
            start = trio.current_time()
            for _ in range(5):
                await client.chat(model="m", messages=MESSAGES)
            assert trio.current_time() - start == 0.0
    assert seen[0] == 5


@pytest.mark.deadline(240)
async def test_idle_keepalive_gaps_never_fail_a_request(
    make_client: ClientFactory, autojump_clock: Any
) -> None:
    """Requests 5 s apart against a server that closes idle connections after 5 s, with no
    transport retries: none fails (the native pool expires its connections at 4 s of trio's
    clock; httpx's expiry runs on the real clock, so it meets the race, and the resend of a
    reused connection absorbs it)."""
    app = ScriptedApp()
    with trio.fail_after(BIG):
        async with (
            served(app, keep_alive=5.0) as url,
            make_client(base_url=url, transport_retry=NO_RETRY) as client,
        ):
            for _ in range(20):
                await client.chat(model="m", messages=MESSAGES)
                await trio.sleep(5.0)
    assert len(app.requests) == 20


async def test_cancelled_request_closes_its_connection(
    make_client: ClientFactory, autojump_clock: Any
) -> None:
    """A caller's cancel scope mid-request: its slot is freed and its half-read connection is
    not pooled, so the next request opens a new one."""
    app = ScriptedApp([Reply(delay=10.0)])
    with trio.fail_after(BIG):
        async with served(app) as url, make_client(base_url=url) as client:
            with trio.move_on_after(1.0):
                await client.chat(model="m", messages=MESSAGES)
            assert client.statistics() == _transport.TransportStatistics(
                in_use=0, waiting=0, opened=1
            )
            assert (await client.chat(model="m", messages=MESSAGES)).content == "hi"
            assert client.statistics().opened == 2


async def test_async_methods_always_checkpoint(
    make_client: ClientFactory, autojump_clock: Any
) -> None:
    """chat and aclose are checkpoints (trio's API grammar), whatever the transport."""
    with trio.fail_after(BIG):
        async with served(ScriptedApp()) as url:
            client = make_client(base_url=url)
            with trio.testing.assert_checkpoints():
                await client.chat(model="m", messages=MESSAGES)
            with trio.testing.assert_checkpoints():
                await client.aclose()


async def test_chat_request_shape(make_client: ClientFactory, autojump_clock: Any) -> None:
    """Path under base_url, JSON and our headers, bearer only with a key, the same body."""
    app = ScriptedApp()
    with trio.fail_after(BIG):
        async with (
            served(app) as url,
            make_client(base_url=url, api_key="sk-1", extra_headers={"X-Team": "a"}) as client,
        ):
            await client.chat(model="m", messages=MESSAGES, temperature=0.5)
    [request] = app.requests
    headers = request["headers"]
    assert (request["method"], request["path"]) == ("POST", "/v1/chat/completions")
    assert headers["authorization"] == "Bearer sk-1"
    assert headers["x-team"] == "a"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["accept-encoding"] == "gzip, deflate"
    assert headers["user-agent"] == "trio-designer"
    assert headers["host"] == url.split("/")[2]
    assert headers["content-length"] == str(len(request["body"]))
    assert json.loads(request["body"]) == {"model": "m", "messages": MESSAGES, "temperature": 0.5}


# ---------------------------------------------------------------------------------------------
# Failures: each class, retried or not, chained and named
# ---------------------------------------------------------------------------------------------


async def flaky(actions: list[str], stream: trio.SocketStream) -> None:
    """A raw server: each connection pops an action; ``ok`` answers every request on it."""
    action = actions.pop(0) if actions else "ok"
    if action == "hang_up":  # read the request, close without a byte
        await read_request(stream)
    elif action == "reset":  # RST instead of FIN
        await read_request(stream)
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    elif action == "garbage":
        await read_request(stream)
        await stream.send_all(b"this is not HTTP\r\n\r\n")
    elif action == "truncated":  # announces 100 bytes, sends 10, closes
        await read_request(stream)
        await stream.send_all(http_response(b"x" * 100)[:-90])
    else:
        with suppress(trio.BrokenResourceError):
            while await read_request(stream):
                await stream.send_all(http_response(json.dumps(completion()).encode()))
    await stream.aclose()


@pytest.mark.parametrize("action", ["hang_up", "reset", "garbage", "truncated"])
async def test_connection_errors_are_retried(
    make_client: ClientFactory, action: str, autojump_clock: Any
) -> None:
    """A server hanging up, resetting, or breaking HTTP: retried with backoff, then fine."""
    actions = [action, action]
    with trio.fail_after(BIG):
        async with (
            raw_server(partial(flaky, actions)) as url,
            make_client(base_url=url, transport_retry=NO_JITTER) as client,
        ):
            start = trio.current_time()
            assert (await client.chat(model="m", messages=MESSAGES)).content == "hi"
            assert trio.current_time() - start == 1.5
    assert actions == []


@pytest.mark.parametrize(
    ("action", "cause", "message"),
    [
        ("hang_up", _transport.ServerHungUp, r"closed the connection without sending an answer"),
        ("reset", _transport.ConnectionBroken, r"reading the answer failed: ConnectionResetError"),
        ("garbage", _transport.ProtocolViolation, r"the server broke the HTTP protocol"),
        ("truncated", _transport.ProtocolViolation, r"the server broke the HTTP protocol"),
    ],
)
async def test_connection_error_after_max_attempts_chains_the_transport_error(
    make_client: ClientFactory,
    action: str,
    cause: type[Exception],
    message: str,
    autojump_clock: Any,
) -> None:
    """The last attempt's failure is the cause of the ModelConnectionError, and named in it;
    both transports raise the same class for the same failure."""
    with trio.fail_after(BIG):
        async with (
            raw_server(partial(flaky, [action] * 3)) as url,
            make_client(base_url=url, name="p", transport_retry=NO_JITTER) as client,
        ):
            with pytest.raises(ModelConnectionError, match=message) as info:
                await client.chat(model="m", messages=MESSAGES)
    assert type(info.value.__cause__) is cause
    assert str(info.value).startswith("Calling model 'm' at provider 'p' failed: ")


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused(make_client: ClientFactory, autojump_clock: Any) -> None:
    """Nobody listening: three attempts, then ModelConnectionError naming the provider."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    with trio.fail_after(BIG):
        async with make_client(base_url=url, name="down", transport_retry=NO_JITTER) as client:
            start = trio.current_time()
            with pytest.raises(
                ModelConnectionError,
                match=r"^Calling model 'm' at provider 'down' failed: could not connect to "
                r"127\.0\.0\.1:\d+: ",
            ) as info:
                await client.chat(model="m", messages=MESSAGES)
            assert trio.current_time() - start == 1.5
    assert type(info.value.__cause__) is _transport.ConnectFailed


async def test_unresolvable_host_is_a_connect_failure(make_client: ClientFactory) -> None:
    """DNS failure: ConnectFailed naming the host (``.invalid`` never resolves, RFC 6761).

    Real time: name resolution runs in a worker thread, which an autojump clock would race.
    """
    with trio.fail_after(30):
        async with make_client(
            base_url="http://no-such-host.invalid/v1", timeout=20.0, transport_retry=NO_RETRY
        ) as client:
            with pytest.raises(ModelConnectionError, match=r"no-such-host\.invalid:80") as info:
                await client.chat(model="m", messages=MESSAGES)
    assert isinstance(info.value.__cause__, _transport.ConnectFailed)
    assert isinstance(error_from_transport(info.value.__cause__), ModelConnectionError)


async def test_server_hanging_up_is_retried_then_a_connection_error(
    make_client: ClientFactory, autojump_clock: Any
) -> None:
    """A server that reads each request and closes without answering: three fresh
    connections, then ModelConnectionError from ServerHungUp."""
    counter: list[int] = []

    async def hang_up(stream: trio.SocketStream) -> None:
        counter.append(1)
        await stream.receive_some(65536)
        await stream.aclose()

    with trio.fail_after(BIG):
        async with (
            raw_server(hang_up) as url,
            make_client(base_url=url, transport_retry=NO_JITTER) as client,
        ):
            with pytest.raises(ModelConnectionError) as info:
                await client.chat(model="m", messages=MESSAGES)
    assert isinstance(info.value.__cause__, _transport.ServerHungUp)
    assert len(counter) == 3


@pytest.mark.parametrize(
    ("faults", "error", "requests"),
    [
        ({"rate_503": 1.0}, ModelServerError, 3),
        ({"rate_500": 1.0}, ModelServerError, 1),
        ({"rate_429": 1.0}, ModelRateLimitedError, 1),
        ({"rate_reset": 1.0}, ModelConnectionError, 3),
        ({"rate_hang": 1.0}, ModelTimeoutError, 1),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
@pytest.mark.deadline(60)
async def test_simulator_faults_are_classified(
    make_client: ClientFactory,
    faults: dict[str, float],
    error: type[Exception],
    requests: int,
    autojump_clock: Any,
) -> None:
    """Injected faults map to our classes; only 503 and resets are retried by the client."""
    from trio_designer.simulator import Faults, Latency, SimulatedModel, open_simulator

    model = SimulatedModel(
        name="m", latency=Latency(median=0.2), faults=Faults(**faults), retry_after=2.0
    )
    with trio.fail_after(BIG):
        async with (
            open_simulator([model]) as sim,
            make_client(
                base_url=sim.url, name="simulator", timeout=30.0, transport_retry=NO_JITTER
            ) as client,
        ):
            with pytest.raises(error, match=r"(?i)model 'm' at provider 'simulator'") as info:
                await client.chat(model="m", messages=MESSAGES)
            assert sim.stats()["m"].requests == requests
    if isinstance(info.value, ModelRateLimitedError):
        assert info.value.retry_after == 2.0


def exception_texts(exc: BaseException) -> Iterator[str]:
    """str, repr and args of an exception and of everything it is chained to."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from (repr(arg) for arg in current.args)
        current = current.__cause__ or current.__context__


@pytest.mark.parametrize("code", [400, 401, 403, 404, 413, 422, 429, 500, 503, 200])
async def test_api_key_never_leaks_into_errors(
    make_client: ClientFactory,
    code: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: Any,
) -> None:
    """A server echoing our headers (key included) into its error body: the key never shows."""
    key = "sk-leak-canary-0123456789abcdef"
    monkeypatch.setenv("TD_LEAK_TEST_KEY", key)
    caplog.set_level(logging.DEBUG)
    app = ScriptedApp(default=Reply(status=code, echo_headers=True))
    with trio.fail_after(BIG):
        async with (
            served(app) as url,
            make_client(
                base_url=url, api_key=resolve_api_key("TD_LEAK_TEST_KEY"), name="echo"
            ) as client,
        ):
            with pytest.raises(Exception) as info:  # noqa: PT011 (any class; we check text)
                await client.chat(model="m", messages=MESSAGES)
    assert app.requests[0]["headers"]["authorization"] == f"Bearer {key}"  # it was sent
    assert key in json.dumps(app.requests[0]["headers"])
    texts = list(exception_texts(info.value))
    assert any("***" in text for text in texts)  # the echo was there, redacted
    assert not [text for text in texts if key in text]
    assert key not in caplog.text
    assert key not in repr(client)


# ---------------------------------------------------------------------------------------------
# Proxies from the environment
# ---------------------------------------------------------------------------------------------


def use_proxy(monkeypatch: pytest.MonkeyPatch, variable: str, url: str) -> None:
    """Set one proxy variable; clear NO_PROXY and the other proxy variables."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv(variable, url)


def port_of(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


async def test_plain_http_goes_through_a_forward_proxy(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, autojump_clock: Any
) -> None:
    """Through HTTP_PROXY a request carries the absolute URL and the proxy's credentials."""
    requests: list[bytes] = []

    async def proxy(stream: trio.SocketStream) -> None:
        with suppress(trio.BrokenResourceError):
            while request := await read_request(stream):
                requests.append(request)
                await stream.send_all(http_response(json.dumps(completion("proxied")).encode()))

    with trio.fail_after(BIG):
        async with raw_server(proxy) as proxy_url:
            use_proxy(monkeypatch, "HTTP_PROXY", f"http://me:pw@127.0.0.1:{port_of(proxy_url)}")
            async with make_client(base_url="http://models.test:8000/v1") as client:
                reply = await client.chat(model="m", messages=MESSAGES)
    assert reply.content == "proxied"
    [request] = requests
    assert request.startswith(b"POST http://models.test:8000/v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nproxy-authorization: basic bwu6chc=\r\n" in request.lower()
    assert b"\r\nhost: models.test:8000\r\n" in request.lower()


async def test_a_proxy_refusing_the_tunnel_is_a_connection_error(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, autojump_clock: Any
) -> None:
    """HTTPS through a proxy that answers CONNECT with 403: ProxyFailed, named as such."""
    requests: list[bytes] = []

    async def refusing(stream: trio.SocketStream) -> None:
        requests.append(await read_request(stream))
        await stream.send_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await stream.aclose()

    with trio.fail_after(BIG):
        async with raw_server(refusing) as proxy_url:
            use_proxy(monkeypatch, "HTTPS_PROXY", f"http://127.0.0.1:{port_of(proxy_url)}")
            async with make_client(
                base_url="https://api.example.com/v1", name="p", transport_retry=NO_RETRY
            ) as client:
                with pytest.raises(ModelConnectionError, match=r"403 Forbidden") as info:
                    await client.chat(model="m", messages=MESSAGES)
    assert isinstance(info.value.__cause__, _transport.ProxyFailed)
    assert requests[0].startswith(b"CONNECT api.example.com:443 HTTP/1.1\r\n")


async def test_loopback_is_never_proxied(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, autojump_clock: Any
) -> None:
    """The embedded simulator (127.0.0.1) is reached directly even when a proxy is set."""
    app = ScriptedApp()
    use_proxy(monkeypatch, "ALL_PROXY", f"http://127.0.0.1:{free_port()}")
    with trio.fail_after(BIG):
        async with served(app) as url, make_client(base_url=url) as client:
            assert (await client.chat(model="m", messages=MESSAGES)).content == "hi"
    assert len(app.requests) == 1


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


async def test_https_round_trip(
    make_client: ClientFactory, ca: trustme.CA, autojump_clock: Any
) -> None:
    """Certificate verified against SSL_CERT_FILE; the connection is reused over TLS."""
    with trio.fail_after(BIG):
        async with (
            tls_server(ca, "127.0.0.1", answer_all) as port,
            make_client(base_url=f"https://127.0.0.1:{port}/v1") as client,
        ):
            for _ in range(3):
                assert (await client.chat(model="m", messages=MESSAGES)).content == "secure"
            assert client.statistics().opened == 1


async def test_a_certificate_for_another_name_fails_to_connect(
    make_client: ClientFactory, ca: trustme.CA, autojump_clock: Any
) -> None:
    """A wrong certificate is a ConnectFailed naming the TLS failure, never a silent success."""
    with trio.fail_after(BIG):
        async with (
            tls_server(ca, "someone-else.test", answer_all) as port,
            make_client(
                base_url=f"https://127.0.0.1:{port}/v1", transport_retry=NO_RETRY
            ) as client,
        ):
            with pytest.raises(ModelConnectionError, match=r"TLS handshake") as info:
                await client.chat(model="m", messages=MESSAGES)
    assert isinstance(info.value.__cause__, _transport.ConnectFailed)
    assert "SSLCertVerificationError" in str(info.value)


async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        if isinstance(sink, trio.SocketStream):
            await sink.send_eof()


async def test_https_through_a_connect_proxy(
    make_client: ClientFactory,
    ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: Any,
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
            use_proxy(monkeypatch, "HTTPS_PROXY", f"http://127.0.0.1:{port_of(proxy_url)}")
            async with make_client(base_url="https://api.test/v1") as client:
                reply = await client.chat(model="m", messages=MESSAGES)
    assert reply.content == "secure"
    assert tunnels[0].startswith(b"CONNECT api.test:443 HTTP/1.1\r\n")


# ---------------------------------------------------------------------------------------------
# Whole runs with the provider's `transport:` setting: the failure rules apply, the run ends
# ---------------------------------------------------------------------------------------------


def one_column_pipeline(url: str, transport: str, **model: Any) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": "odd", "base_url": url, "transport": transport}],
            "models": [{"alias": "gen", "model": "m", "provider": "odd", **model}],
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "On {{ topic }}."},
            ],
        }
    )


async def test_a_run_against_an_oversize_server_drops_its_rows_and_ends(
    transport: str, autojump_clock: Any
) -> None:
    """Every answer is endless: each row is dropped once (no retry), the message says why."""
    autojump_clock.autojump_threshold = OVERSIZE_CLOCK
    sent = [0]
    with trio.fail_after(BIG):
        async with raw_server(partial(endless, sent, declare=False)) as url:
            config = one_column_pipeline(url, transport, max_response_bytes=65536)
            result = await TrioDesigner().preview(config, num_records=3)
    assert result.num_records_written == 0
    assert result.num_rows_dropped == 3
    assert {f.error_class for f in result.failures} == {"ModelRequestError"}
    assert all(f.attempts == 1 for f in result.failures)
    assert "max_response_bytes (65,536 bytes)" in result.failures[0].message


@pytest.mark.deadline(40)
async def test_a_run_against_a_trickling_server_salvages_then_drops_and_ends(
    transport: str, autojump_clock: Any
) -> None:
    """The first answer comes whole, every later one trickles: each trickled cell times out
    once per round (first try and two salvage rounds), then its row is dropped as a timeout,
    and the run ends. (A server that never answered anything stops the run at its third
    timeout instead: test_hostile_servers.py::test_a_server_that_never_answers_stops_the_run.)
    """
    answered = False

    async def first_whole_then_trickle(stream: trio.SocketStream) -> None:
        nonlocal answered
        if not answered:
            answered = True
            with suppress(trio.BrokenResourceError):
                if await read_request(stream):
                    await stream.send_all(http_response(ANSWER))
        await trickle(stream)

    with trio.fail_after(BIG):
        async with raw_server(first_whole_then_trickle) as url:
            config = one_column_pipeline(url, transport, timeout=5.0)
            start = trio.current_time()
            result = await TrioDesigner().preview(config, num_records=3)
            elapsed = trio.current_time() - start
    assert result.num_records_written == 1
    assert result.num_rows_dropped == 2
    assert {f.error_class for f in result.failures} == {"ModelTimeoutError"}
    assert all(f.attempts == 3 for f in result.failures)
    assert "no complete answer within 5 s" in result.failures[0].message
    assert elapsed < 60  # three rounds of 5 s timeouts (plus salvage waits), not forever
