"""What the model client needs from HTTP: one small interface, two implementations.

The model client sends small JSON requests to one origin, many at once, and reads each answer
whole into memory. That is all it asks of a transport (:class:`Transport`)::

    response = await transport.request("POST", "/v1/chat/completions", headers, body,
                                       timeout=60.0, max_body=8 * 2**20)
    response.status, response.headers["content-type"], response.body
    transport.statistics()          # TransportStatistics(in_use=..., waiting=..., opened=...)
    await transport.aclose()

Two transports implement it, chosen per provider (``transport: native | httpx``):

* ``native`` (:class:`~._http.ConnectionPool`, the default): our own HTTP/1.1 pool, h11 on trio
  streams. O(1) CPU per request at any pool size; HTTP proxies only.
* ``httpx`` (:class:`~._httpx_transport.HttpxTransport`): ``httpx.AsyncClient`` pools of at
  most 16 connections each. 2-4x the CPU per request (``docs/benchmarks.md``, "The request
  path"), but httpx's proxy handling (SOCKS with the ``socks`` extra), HTTP/2 and TLS
  handling.

The contract both keep, each point checked over both transports by the named test in
``tests/test_model_transport.py`` (every test there runs ``[native]`` and ``[httpx]``):

* **One deadline per request** (``test_trickling_server_times_out_on_the_whole_request``):
  ``timeout`` covers the request from the moment it has a connection slot to the last byte of
  the answer, as one trio cancel scope; running out raises :class:`RequestTimedOut`. Waiting
  for a slot is not covered (``test_waiting_for_a_connection_is_not_part_of_the_deadline``: a
  local queue must never look like a slow server), and never happens inside the HTTP library:
  requests beyond ``max_connections`` wait, first come first served, in a
  ``trio.CapacityLimiter`` in front (``test_pool_bounds_concurrent_connections``).
* **A size cap while streaming** (``test_oversize_answer_is_cut_off_while_streaming``,
  ``test_gzip_answers_are_decoded_and_capped_after_decoding``): a body above ``max_body``
  bytes (announced in ``Content-Length``, or counted after decoding gzip/deflate as it streams
  in) raises :class:`ResponseTooLarge` as soon as the limit is crossed, and the connection is
  closed. Both transports decode with :class:`BodyReader`, which never inflates more than the
  limit.
* **A connection is reused only after a complete exchange** (``test_connections_are_reused``,
  ``test_connection_close_is_honoured``); one interrupted by an error, the deadline or a
  cancellation is closed (``test_cancelled_request_closes_its_connection``).
* **A reused connection the server closed under us**, found out before any byte of the answer,
  costs no backoff: the request is sent once more, at once, on a fresh connection
  (``test_a_reused_connection_closed_by_the_server_is_resent_at_once``,
  ``test_idle_keepalive_gaps_never_fail_a_request``).
* **Failures leave as the** :class:`HTTPError` **subclasses below** and nothing else, the
  same class for the same failure
  (``test_connection_error_after_max_attempts_chains_the_transport_error``), so
  :mod:`._errors` maps one set of classes (``tests/test_model_errors.py`` enumerates what each
  transport's layers can raise: h11, trio and ``OSError`` for native, ``httpx.__all__`` for
  httpx).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal, Protocol, TypeAlias
from urllib.parse import SplitResult, urlsplit

import attrs

__all__ = [
    "DEFAULT_KEEPALIVE_EXPIRY",
    "TRANSPORT_KINDS",
    "BodyReader",
    "ConnectFailed",
    "ConnectionBroken",
    "DecodingFailed",
    "HTTPError",
    "HTTPStatusError",
    "InvalidRequest",
    "Origin",
    "ProtocolViolation",
    "ProxyFailed",
    "RequestTimedOut",
    "Response",
    "ResponseTooLarge",
    "ServerHungUp",
    "Transport",
    "TransportKind",
    "TransportStatistics",
    "UnsupportedEncoding",
    "default_ssl_context",
    "joined_headers",
    "parse_origin",
]

TransportKind: TypeAlias = Literal["native", "httpx"]
TRANSPORT_KINDS: Final[tuple[TransportKind, ...]] = ("native", "httpx")
"""The transports a provider can choose (``transport:``); the first is the default."""

DEFAULT_KEEPALIVE_EXPIRY: Final = 4.0
"""Seconds an idle connection is kept. Below the 5 s of httpx, hypercorn, uvicorn (and so
vLLM), so we close first instead of racing the server's close."""


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------


class HTTPError(Exception):
    """A request failed below the HTTP status level; the base of every transport's failures.

    The message says what failed, as a clause ("could not connect to 127.0.0.1:9: ...").
    """


class ConnectFailed(HTTPError):
    """No connection: refused, unreachable, DNS failure, or the TLS handshake failed."""


class ConnectionBroken(HTTPError):
    """The connection broke while sending the request or reading the answer."""


class ServerHungUp(ConnectionBroken):
    """The server closed the connection without sending a single byte of an answer."""


class ProtocolViolation(HTTPError):
    """The server's bytes are not valid HTTP (or the body ended early)."""


class InvalidRequest(HTTPError):
    """Our request cannot be sent as it is: not valid HTTP (an illegal character in a header,
    say), or a misuse of the HTTP library (a bug)."""


class ProxyFailed(HTTPError):
    """The proxy refused or failed to open a tunnel to the origin."""


class DecodingFailed(HTTPError):
    """The body's compressed data is corrupt or cut short."""


class UnsupportedEncoding(DecodingFailed):
    """The body's ``Content-Encoding`` is not one we asked for (``br``, ``zstd``...): the server
    will send it that way every time, so a retry cannot help."""


@attrs.frozen(kw_only=True, auto_exc=True)
class RequestTimedOut(HTTPError):
    """No complete answer within ``timeout`` seconds of getting a connection slot."""

    timeout: float

    def __str__(self) -> str:
        return (
            f"no complete answer within {self.timeout:g} s (the timeout covers the whole "
            f"request, from connecting to the last byte of the answer)"
        )


@attrs.frozen(kw_only=True, auto_exc=True)
class ResponseTooLarge(HTTPError):
    """The answer's body exceeds ``limit`` bytes; it was not read past the limit.

    Attributes:
      limit: the limit in bytes.
      status: the answer's HTTP status.
      declared: the ``Content-Length`` the server announced, if it did.
    """

    limit: int
    status: int
    declared: int | None = None

    def __str__(self) -> str:
        size = (
            f"announced {self.declared:,} bytes"
            if self.declared is not None
            else "sent more than that"
        )
        return f"the answer's body is larger than {self.limit:,} bytes ({size})"


class HTTPStatusError(HTTPError):
    """An answer with a status that is not a success; carries the whole :class:`Response`.

    Raised by no transport: the model client builds one to chain its own error from.
    """

    def __init__(self, message: str, *, response: Response) -> None:
        super().__init__(message)
        self.response = response


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Origin:
    """Where requests go: scheme, host and port (the path is the caller's)."""

    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """Whether the host is this machine (never proxied by either transport)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}"


def parse_origin(url: str) -> tuple[Origin, str]:
    """Split an ``http(s)://`` URL into its origin and its path (without a trailing ``/``).

    Raises:
      ValueError: the URL does not parse, is not http(s), has no host or a bad port.
    """
    parts: SplitResult = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"the scheme must be http or https, not {scheme or 'missing'!r}")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    port = parts.port or (443 if scheme == "https" else 80)  # .port raises for a bad port
    return Origin(scheme=scheme, host=host, port=port), parts.path.rstrip("/")


@attrs.frozen(kw_only=True)
class Response:
    """A complete answer.

    Attributes:
      status: the HTTP status code.
      headers: header names in lower case → values (repeated headers joined with ``", "``).
      body: the decoded body.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        """The body as text (UTF-8; undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")


def joined_headers(raw: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{name: value}`` from ``(lower-case name, value)`` pairs, repeats joined by ``", "``."""
    headers: dict[str, str] = {}
    for key, text in raw:
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


@attrs.frozen(kw_only=True)
class TransportStatistics:
    """What a transport is doing now, and has done.

    Attributes:
      in_use: requests holding a connection slot (at most ``max_connections``).
      waiting: requests waiting for a slot (first come, first served; no deadline).
      opened: connections opened so far (TCP connects, proxied or not). Requests minus
        ``opened`` is how often a kept-alive connection was reused.
    """

    in_use: int
    waiting: int
    opened: int


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


class Transport(Protocol):
    """Keep-alive connections to one origin, at most ``max_connections`` of them at once.

    Safe to share between the tasks of one trio run. Implementations: ``_http.ConnectionPool``
    (native) and ``_httpx_transport.HttpxTransport``; the module docstring states the contract.
    """

    async def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 (a deadline starting once a slot is ours)
        max_body: int,
    ) -> Response:
        """Send one request and read its whole answer (any status).

        Args:
          method: ``"GET"`` or ``"POST"``.
          path: the path (and query) on the origin, starting with ``/``.
          headers: headers besides ``Host`` and ``Content-Length`` (the transport adds those).
          body: the request body (``b""`` for none).
          timeout: seconds for the whole request once it has a connection slot.
          max_body: the most bytes of (decoded) answer body to accept.

        Raises:
          HTTPError: one of this module's subclasses (never ``HTTPStatusError``).
        """
        ...

    def statistics(self) -> TransportStatistics:
        """Slots in use, requests waiting, connections opened."""
        ...

    async def aclose(self) -> None:
        """Close idle connections; those in use close when their request ends. A checkpoint."""
        ...


# --------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------


def default_ssl_context() -> ssl.SSLContext:
    """Verifying TLS context: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set, else certifi's
    bundle when installed, else the system's store. ALPN offers HTTP/1.1 (httpx sets its own
    ALPN list on each connection)."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:
            pass
    context = ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    context.set_alpn_protocols(["http/1.1"])
    return context


# --------------------------------------------------------------------------------------------
# Bodies: decoded and counted against the cap as they stream in
# --------------------------------------------------------------------------------------------


class BodyReader:
    """Collects a body while decoding it and counting it against the limit.

    Fed the raw (still content-encoded) bytes as they arrive; raises :class:`ResponseTooLarge`
    the moment the decoded size crosses ``limit``, and never inflates more than ``limit + 1``
    bytes of a compressed chunk, so a small gzip bomb cannot blow up memory either.
    """

    __slots__ = ("_chunks", "_decoder", "_limit", "_size", "headers", "status")

    def __init__(
        self, headers: dict[str, str], status: int, limit: int, decoder: _Decoder | None
    ) -> None:
        self.headers = headers
        self.status = status
        self._limit = limit
        self._decoder = decoder
        self._chunks: list[bytes] = []
        self._size = 0

    @classmethod
    def start(cls, status: int, headers: dict[str, str], limit: int) -> BodyReader:
        """A reader for an answer with these (lower-case) headers.

        Raises:
          ResponseTooLarge: ``Content-Length`` announces more than ``limit``.
          UnsupportedEncoding: the ``Content-Encoding`` is not one we asked for.
        """
        declared = headers.get("content-length")
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge(limit=limit, status=status, declared=int(declared))
        decoder = None if encoding in ("", "identity") else _Decoder.for_encoding(encoding)
        return cls(headers, status, limit, decoder)

    def feed(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decode(data, self._limit - self._size + 1)
        self._add(data)

    def finish(self) -> Response:
        if self._decoder is not None:
            self._add(self._decoder.flush(self._limit - self._size + 1))
        return Response(status=self.status, headers=self.headers, body=b"".join(self._chunks))

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise ResponseTooLarge(limit=self._limit, status=self.status)
        if data:
            self._chunks.append(data)


class _Decoder:
    """gzip or deflate, streamed, never inflating more than asked for at a time."""

    __slots__ = ("_encoding", "_fed", "_zlib")

    def __init__(self, encoding: str, wbits: int) -> None:
        self._encoding = encoding
        self._zlib = zlib.decompressobj(wbits)
        self._fed = False

    @classmethod
    def for_encoding(cls, encoding: str) -> _Decoder:
        if encoding in ("gzip", "x-gzip"):
            return cls(encoding, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return cls(encoding, zlib.MAX_WBITS)
        raise UnsupportedEncoding(
            f"the answer uses Content-Encoding {encoding!r}, which we never asked for (we ask "
            f"for gzip or deflate); configure the server, or the proxy in front of it, to send "
            f"gzip, deflate or no compression"
        )

    def decode(self, data: bytes, at_most: int) -> bytes:
        self._fed = self._fed or bool(data)
        try:
            out = self._zlib.decompress(data, at_most)
        except zlib.error as exc:
            raise DecodingFailed(f"the {self._encoding} body is corrupt: {exc}") from exc
        if self._zlib.unconsumed_tail:  # more than ``at_most`` inflated: over the limit anyway
            return out + b"\0"
        return out

    def flush(self, at_most: int) -> bytes:
        out = self.decode(b"", at_most)
        if self._fed and not self._zlib.eof:  # an empty body (a 204) is no stream at all
            raise DecodingFailed(
                f"the {self._encoding} body ends before its compressed data does (cut short)"
            )
        return out
