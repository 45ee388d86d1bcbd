"""What only the httpx transport (``trio_designer/models/_httpx_transport.py``) does.

The contract both transports keep is tested over both in ``tests/test_model_transport.py``.
Here: the reasons to choose httpx (a SOCKS proxy, HTTP/2), its split into clients of at most
16 connections, and what it refuses when the client is built.
"""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from _loopback import Reply, ScriptedApp, raw_server, served
from test_model_transport import MESSAGES, pipe, port_of, use_proxy

from trio_designer._exceptions import ConfigError
from trio_designer.models._client import OpenAICompatibleClient
from trio_designer.models._httpx_transport import HttpxTransport, split_connections
from trio_designer.models._transport import TransportStatistics, parse_origin

BIG = 10_000


async def receive_exactly(stream: trio.SocketStream, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            raise EOFError("the client hung up during the SOCKS handshake")
        data += chunk
    return data


async def socks5_proxy(
    targets: list[tuple[str, int]], upstream_port: int, client: trio.SocketStream
) -> None:
    """A SOCKS5 proxy (no authentication, CONNECT only) that records where each client asked
    to go and connects every one of them to 127.0.0.1:``upstream_port``."""
    _version, methods = await receive_exactly(client, 2)
    await receive_exactly(client, methods)
    await client.send_all(b"\x05\x00")  # no authentication
    _version, _command, _reserved, kind = await receive_exactly(client, 4)
    if kind == 3:  # a domain name
        (length,) = await receive_exactly(client, 1)
        host = (await receive_exactly(client, length)).decode()
    else:  # an IPv4 or IPv6 address
        packed = await receive_exactly(client, 4 if kind == 1 else 16)
        host = socket.inet_ntop(socket.AF_INET if kind == 1 else socket.AF_INET6, packed)
    port = int.from_bytes(await receive_exactly(client, 2), "big")
    targets.append((host, port))
    await client.send_all(b"\x05\x00\x00\x01" + bytes(6))  # granted
    upstream = await trio.open_tcp_stream("127.0.0.1", upstream_port)
    async with upstream, trio.open_nursery() as nursery:
        nursery.start_soon(pipe, client, upstream)
        nursery.start_soon(pipe, upstream, client)


async def test_requests_go_through_a_socks5_proxy(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: Any
) -> None:
    """ALL_PROXY=socks5://...: the proxy is asked for the origin by name (the client never
    resolves it) and the request arrives through the tunnel, connection kept alive."""
    app = ScriptedApp()
    targets: list[tuple[str, int]] = []
    with trio.fail_after(BIG):
        async with served(app) as upstream:
            handler = partial(socks5_proxy, targets, port_of(upstream))
            async with raw_server(handler) as proxy_url:
                use_proxy(monkeypatch, "ALL_PROXY", f"socks5://127.0.0.1:{port_of(proxy_url)}")
                async with OpenAICompatibleClient(
                    base_url="http://models.test:8000/v1", transport="httpx"
                ) as client:
                    for _ in range(2):
                        assert (await client.chat(model="m", messages=MESSAGES)).content == "hi"
                    assert client.statistics().opened == 1
    assert targets == [("models.test", 8000)]
    assert [r["headers"]["host"] for r in app.requests] == ["models.test:8000"] * 2


@pytest.mark.parametrize("http2", [True, False], ids=["http2", "http1.1"])
async def test_http2_is_negotiated_when_asked_for(
    http2: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, autojump_clock: Any
) -> None:
    """http2=True against an https server offering h2 (hypercorn): every request is HTTP/2,
    multiplexed on one connection; without it, HTTP/1.1."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    tls = (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    app = ScriptedApp(default=Reply(delay=1.0))
    with trio.fail_after(BIG):
        async with served(app, tls=tls) as url:
            https = url.replace("http://", "https://")
            async with OpenAICompatibleClient(
                base_url=https, transport="httpx", http2=http2
            ) as client:
                async with trio.open_nursery() as nursery:
                    for _ in range(4):
                        nursery.start_soon(partial(client.chat, model="m", messages=MESSAGES))
                opened = client.statistics().opened
    assert {r["http_version"] for r in app.requests} == ({"2"} if http2 else {"1.1"})
    assert opened == (1 if http2 else 4)


async def test_connections_are_split_over_clients_of_at_most_16(autojump_clock: Any) -> None:
    """max_connections=40 → clients of 14, 13 and 13 connections; 40 requests of 1 s at once
    all run together (none queues inside httpcore) and take 1 s."""
    app = ScriptedApp(default=Reply(delay=1.0))
    with trio.fail_after(BIG):
        async with served(app) as url:
            origin, _ = parse_origin(url)
            transport = HttpxTransport(origin, max_connections=40)
            assert transport.client_sizes == (14, 13, 13)
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(40):
                    nursery.start_soon(
                        partial(
                            transport.request,
                            "GET",
                            "/v1/models",
                            [],
                            b"",
                            timeout=10.0,
                            max_body=2**20,
                        )
                    )
            assert trio.current_time() - start == 1.0
            assert transport.statistics() == TransportStatistics(in_use=0, waiting=0, opened=40)
            await transport.aclose()
    assert app.peak == 40
    assert [split_connections(n) for n in (1, 16, 17, 32, 33, 512)] == [
        [1],
        [16],
        [9, 8],
        [16, 16],
        [11, 11, 11],
        [16] * 32,
    ]


def test_a_proxy_httpx_cannot_use_is_a_config_error_without_its_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unknown proxy scheme fails when the client is built; the URL (and its password)
    never shows."""
    use_proxy(monkeypatch, "ALL_PROXY", "ftp://user:secret@proxy:21")
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleClient(base_url="https://api.example.com/v1", name="p", transport="httpx")
    assert str(info.value) == (
        "provider 'p': the proxy set in the environment (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) "
        "is not one httpx can use; it takes http://, https://, socks5:// and socks5h:// proxy "
        "URLs"
    )
    assert "secret" not in repr(info.value.__cause__)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"transport": "curl"},
            "provider 'p': transport must be 'native' or 'httpx', got 'curl'",
        ),
        (
            {"http2": True},
            "provider 'p': http2 needs transport 'httpx' (the native transport speaks HTTP/1.1 "
            "only)",
        ),
    ],
)
def test_bad_transport_settings_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    """An unknown transport, or HTTP/2 asked of the native one, fails at construction."""
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleClient(base_url="https://api.example.com/v1", name="p", **kwargs)
    assert str(info.value) == message
