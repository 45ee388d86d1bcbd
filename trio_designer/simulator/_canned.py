"""The canned endpoint: an OpenAI-compatible server that answers every chat completion at once
with a fixed text per model, spending as little CPU per request as a trio server can
(httptools' C parser — llhttp, node's — reads the requests; the answers are formatted bytes).

Why it exists: the full simulator (``_app.py``) computes a deterministic answer, latency,
capacity, faults and a log record per request, ~0.5-1 ms of CPU each. On a small machine it
shares the cores with the client it is measured against, so a bench of *client* throughput
(``benches/scaleout.py``, several worker processes) measures the cores, not the client. A
real endpoint's CPU is not on the client's cores; the canned endpoint is the closest a bench on
one machine gets to that: it is only an HTTP/1.1 exchange and one ``json.loads``. (h11, which
the full simulator's server uses, costs ~0.1 ms of CPU per exchange here; httptools ~1 µs.)

What it does:

* ``POST /v1/chat/completions`` with a JSON object whose ``model`` it serves: 200 and a
  ``chat.completion`` object (``id`` ``chatcmpl-canned-<n>``, ``created``, the model, one
  choice whose content is the model's fixed text and ``finish_reason`` ``stop``, ``usage``:
  the text's tokens as completion tokens and a rough prompt count, the body's bytes / 4 — the
  canned endpoint does not read the messages). Streaming (``"stream": true``) is refused
  with a 400; every other field is ignored (a JSON schema in ``response_format`` is not
  honoured: the text is the text);
* ``GET /v1/models`` and ``GET /v1/models/<name>``: the served models;
* ``GET /stats``: ``{"mode": "canned", "requests": n, "models": {name: n}, "first_arrival",
  "last_answer", "time"}`` (trio's clock; ``first_arrival``/``last_answer`` are ``null``
  before the first request) and ``POST /stats/reset``, which zeroes them;
* anything else: an OpenAI-shaped error (400 bad JSON, 404 unknown route or model, 405 wrong
  method). No API key, no latency, no capacity, no faults, no request log: for those, the
  full simulator.

HTTP/1.1 with keep-alive (requests pipelined in one read are answered in order). A connection
is closed after an answer to a request that asked for it (``Connection: close``), or to an
HTTP/1.0 one, after a 400 for a request httptools cannot parse (or a 413 for a body above
``MAX_BODY``), and when it has idled ``keep_alive`` seconds (up to 1.5 × that).
``Expect: 100-continue`` gets its ``100 Continue``.

Concurrency: the server is tasks in one trio run (one per connection). The counters are
updated synchronously, with no ``await`` between reading and writing them, so concurrent
requests are each counted exactly once (``tests/test_simulator_canned.py`` checks it with many
connections at once).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from http import HTTPStatus
from typing import Any, Final, final

import attrs
import httptools
import trio

from .._exceptions import ConfigError

__all__ = ["CannedEndpoint", "CannedModel", "open_canned", "serve_canned"]

RECEIVE_SIZE: Final = 65536
MAX_BODY: Final = 16 * 1024 * 1024
"""A request body larger than this gets a 413 (the canned endpoint keeps bodies in memory)."""


def default_text(name: str) -> str:
    return f"A canned answer from {name}."


@attrs.frozen
class CannedModel:
    """A model of the canned endpoint: its name and the text of every answer.

    ``completion_tokens`` is the text's token count as ``usage`` reports it (default: one per
    four characters, at least one).
    """

    name: str
    text: str = attrs.field(
        default=attrs.Factory(lambda self: default_text(self.name), takes_self=True)
    )
    completion_tokens: int = attrs.field(
        default=attrs.Factory(lambda self: max(1, len(self.text) // 4), takes_self=True)
    )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError(
                f"canned model: a name is a non-empty string without '/', got {self.name!r}"
            )


def parse_canned_spec(spec: str) -> CannedModel:
    """``NAME`` or ``NAME=TEXT`` (the command line's ``--canned``)."""
    name, sep, text = spec.partition("=")
    return CannedModel(name=name.strip(), text=text) if sep else CannedModel(name=name.strip())


def canned_models(models: Mapping[str, str] | Iterable[CannedModel]) -> tuple[CannedModel, ...]:
    """The models to serve (a mapping is name to text).

    Raises:
      ConfigError: no model, or two with the same name.
    """
    if isinstance(models, Mapping):
        chosen = tuple(CannedModel(name=n, text=t) for n, t in models.items())
    else:
        chosen = tuple(models)
    if not chosen:
        raise ConfigError("the canned endpoint needs at least one model")
    names = [m.name for m in chosen]
    if len(set(names)) != len(names):
        raise ConfigError(f"canned models: duplicate names in {names}")
    return chosen


@final
class _Model:
    """What a model's answers share, encoded once: the body around the id, time and usage."""

    def __init__(self, model: CannedModel) -> None:
        self.config = model
        # Both go into a %-format template: a "%" of theirs is doubled to stay a "%".
        name = json.dumps(model.name).replace("%", "%%")
        text = json.dumps(model.text).replace("%", "%%")
        self.card = json.dumps(
            {"id": model.name, "object": "model", "created": 0, "owned_by": "trio-designer-canned"}
        ).encode()
        # json.dumps of the whole object per request costs more than the rest of the exchange;
        # the parts that vary are formatted into this template (all of them integers).
        self.template = (
            '{"id":"chatcmpl-canned-%d","object":"chat.completion","created":%d,'
            f'"model":{name},"system_fingerprint":"trio-designer-canned","choices":[{{"index":0,'
            f'"message":{{"role":"assistant","content":{text}}},"finish_reason":"stop",'
            '"logprobs":null}],"usage":{"prompt_tokens":%d,"completion_tokens":%d,'
            '"total_tokens":%d}}'
        )
        self.requests = 0


@final
class CannedEndpoint:
    """A running canned endpoint (what :func:`serve_canned` hands to ``task_status``).

    Attributes:
      url: the OpenAI base URL, ``"http://HOST:PORT/v1"``.
      port: the bound port.
      models: the served models, in the order given.
      requests: chat completions answered (200) since the start or the last reset.
      first_arrival, last_answer: trio's clock at the first such request's arrival and the
        last one's answer (``None`` before one).
    """

    def __init__(self, models: tuple[CannedModel, ...]) -> None:
        self.models = models
        self._models = {m.name: _Model(m) for m in models}
        self.url = ""
        self.port = 0
        self.requests = 0
        self.first_arrival: float | None = None
        self.last_answer: float | None = None
        self._ids = 0

    def __repr__(self) -> str:
        return f"<CannedEndpoint {self.url} models={[m.name for m in self.models]}>"

    def stats(self) -> dict[str, Any]:
        return {
            "mode": "canned",
            "requests": self.requests,
            "models": {name: m.requests for name, m in self._models.items()},
            "first_arrival": self.first_arrival,
            "last_answer": self.last_answer,
            "time": trio.current_time(),
        }

    def reset(self) -> None:
        self.requests = 0
        self.first_arrival = self.last_answer = None
        for model in self._models.values():
            model.requests = 0

    # ----------------------------------------------------------------- answers

    def answer(
        self, method: bytes, target: bytes, body: bytes, arrival: float
    ) -> tuple[int, bytes]:
        """``(status, JSON body)`` of one request. Synchronous: no other request interleaves
        (the counters' invariant)."""
        path = target.partition(b"?")[0].rstrip(b"/")
        if path == b"/v1/chat/completions":
            if method != b"POST":
                return _error(405, "/v1/chat/completions only accepts POST.", "method_not_allowed")
            return self._chat(body, arrival)
        if path == b"/v1/models" or path.startswith(b"/v1/models/"):
            if method != b"GET":
                return _error(405, "/v1/models only accepts GET.", "method_not_allowed")
            if path == b"/v1/models":
                cards = b",".join(m.card for m in self._models.values())
                return 200, b'{"object":"list","data":[' + cards + b"]}"
            model = self._models.get(path.removeprefix(b"/v1/models/").decode("utf-8", "replace"))
            if model is None:
                return _error(404, "No such model.", "model_not_found")
            return 200, model.card
        if path == b"/stats":
            return 200, json.dumps(self.stats()).encode()
        if path == b"/stats/reset":
            if method != b"POST":
                return _error(405, "/stats/reset only accepts POST.", "method_not_allowed")
            self.reset()
            return 200, b'{"reset":true}'
        return _error(404, f"No route {path.decode('latin-1')}.", "unknown_url")

    def _chat(self, body: bytes, arrival: float) -> tuple[int, bytes]:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return _error(400, f"The request body is not valid JSON: {exc}.", "invalid_json")
        if not isinstance(data, dict):
            return _error(400, "The request body must be a JSON object.", "invalid_json")
        name = data.get("model")
        model = self._models.get(name) if isinstance(name, str) else None
        if model is None:
            served = ", ".join(self._models)
            return _error(
                404,
                f"The model {data.get('model')!r} is not served here ({served}).",
                "model_not_found",
            )
        if data.get("stream"):
            return _error(400, "The canned endpoint does not stream.", "unsupported")
        self._ids += 1
        self.requests += 1
        model.requests += 1
        if self.first_arrival is None:
            self.first_arrival = arrival
        prompt = len(body) // 4
        done = model.config.completion_tokens
        text = model.template % (self._ids, int(time.time()), prompt, done, prompt + done)
        return 200, text.encode()

    # ----------------------------------------------------------------- HTTP

    async def serve_connection(self, keep_alive: float, sock: socket.socket) -> None:
        """One client connection (a non-blocking socket, closed on return), until it closes,
        idles out or breaks the protocol.

        httptools parses what arrives (several requests in one read are answered in order);
        each answer, head and body, goes out in one ``send``. A request that is not HTTP/1.1
        with keep-alive gets ``connection: close`` and its connection is closed after the
        answer. The socket is driven with ``trio.lowlevel.wait_readable`` / ``wait_writable``
        and the socket's own ``recv`` / ``send``: trio's ``SocketStream`` layers cost more CPU
        per request than the rest of the exchange. Every read waits for readiness first, so
        the task yields to the others once per read however fast its client sends.
        """
        request = _Parsing()
        parser = httptools.HttpRequestParser(request)
        request.parser = parser
        try:
            with trio.CancelScope() as idle:  # its deadline moves on with every request
                idle.deadline = trio.current_time() + 1.5 * keep_alive
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    try:
                        data = sock.recv(RECEIVE_SIZE)
                    except BlockingIOError:
                        continue
                    if not data:
                        return  # the client closed its side
                    try:
                        parser.feed_data(data)
                    except httptools.HttpParserUpgrade:
                        await _send(sock, *_error(400, "No upgrades here.", "bad_request"), False)
                        return
                    except httptools.HttpParserError as error:
                        await _send(sock, *_error(400, str(error), "bad_request"), False)
                        return
                    if request.too_large:
                        await _send(sock, *_error(413, "Body too large.", "too_large"), False)
                        return
                    if request.expect_continue:
                        request.expect_continue = False
                        await _send_all(sock, b"HTTP/1.1 100 Continue\r\n\r\n")
                    if not request.done:
                        continue
                    arrival = trio.current_time()
                    if arrival + keep_alive > idle.deadline:
                        # Moved at most every keep_alive / 2 s (moving a deadline costs as
                        # much as a third of an exchange): a connection idles out after
                        # keep_alive to 1.5 × keep_alive seconds without a request.
                        idle.deadline = arrival + 1.5 * keep_alive
                    done, request.done = request.done, []
                    for method, target, body, keep in done:
                        try:
                            status, payload = self.answer(method, target, body, arrival)
                        except Exception:  # a bug of ours answers 500; it never ends the server
                            status, payload = _error(500, "Internal error.", "internal_error")
                            keep = False
                        await _send(sock, status, payload, keep)
                        if status == 200 and target.startswith(b"/v1/chat/completions"):
                            self.last_answer = trio.current_time()
                        if not keep:
                            return
        except OSError:
            pass  # the client went away (reset, broken pipe)
        finally:
            trio.lowlevel.notify_closing(sock)
            sock.close()


@final
class _Parsing:
    """httptools' callbacks for one connection: the requests completed so far, as
    ``(method, target, body, keep-alive)``."""

    def __init__(self) -> None:
        self.parser: Any = None
        self.url = b""
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = False
        self.expect_continue = False
        self.done: list[tuple[bytes, bytes, bytes, bool]] = []

    def on_message_begin(self) -> None:
        self.url = b""
        self.chunks = []
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_BODY:
            self.too_large = True
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        keep = parser.should_keep_alive() and parser.get_http_version() == "1.1"
        self.expect_continue = False
        self.done.append((parser.get_method(), self.url, b"".join(self.chunks), keep))


_HEAD: Final = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"


async def _send(sock: socket.socket, status: int, payload: bytes, keep: bool) -> None:
    """One whole answer (head and body, one write); ``connection: close`` unless ``keep``."""
    close = b"" if keep else b"connection: close\r\n"
    await _send_all(sock, _HEAD % (status, _reason(status), len(payload), close) + payload)


async def _send_all(sock: socket.socket, data: bytes) -> None:
    """Write all of ``data``, waiting for room when the socket's buffer is full. (A small
    answer on loopback nearly always goes in one ``send`` without waiting: no checkpoint
    then, which is fine, as every read of the connection loop waits.)"""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
        else:
            view = view[sent:]


_REASONS: Final = {int(s): s.phrase.encode() for s in HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"")


def _error(status: int, message: str, code: str) -> tuple[int, bytes]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return status, json.dumps(body).encode()


async def serve_canned(
    models: Mapping[str, str] | Iterable[CannedModel],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    keep_alive: float = 60.0,
    backlog: int = 1024,
    task_status: trio.TaskStatus[CannedEndpoint] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the canned models until cancelled; ``task_status`` gets the :class:`CannedEndpoint`.

    ``models``: :class:`CannedModel` values, or a mapping of name to text.

    Raises:
      ConfigError: no model, or two with the same name.
      OSError: the address cannot be bound.
    """
    endpoint = CannedEndpoint(canned_models(models))
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(backlog)
        listener.setblocking(False)
        endpoint.port = listener.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        endpoint.url = f"http://{shown}:{endpoint.port}/v1"
        async with trio.open_nursery() as nursery:
            task_status.started(endpoint)
            while True:
                await trio.lowlevel.wait_readable(listener)
                try:
                    client, _ = listener.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue
                except OSError:  # out of file descriptors, say: wait, then try again
                    await trio.sleep(0.01)
                    continue
                client.setblocking(False)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                nursery.start_soon(endpoint.serve_connection, keep_alive, client)
    finally:
        trio.lowlevel.notify_closing(listener)
        listener.close()


@asynccontextmanager
async def open_canned(
    models: Mapping[str, str] | Iterable[CannedModel], **kwargs: Any
) -> AsyncIterator[CannedEndpoint]:
    """Serve the canned models for the duration of the block (inside the caller's trio run)."""
    async with trio.open_nursery() as nursery:
        endpoint: CannedEndpoint = await nursery.start(partial(serve_canned, models, **kwargs))
        yield endpoint
        nursery.cancel_scope.cancel()
