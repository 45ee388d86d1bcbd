"""The simulator's ASGI application: routing, request validation, admission, faults, answers.

A raw ASGI 3 callable, no web framework: the surface is six routes and the behaviour lives in
:mod:`._state` (admission, slots, stats) and :mod:`._content` (answers).

Life of a chat or embeddings request::

    read body ─ 400 bad JSON / fields ─ 404 unknown model
      └─ count it ─ hosted: capacity / RPM / TPM exceeded → 429 at once
           └─ draw a fault ─ 429 / 500 / 503 at once, or reset (close, no response)
                └─ in_flight ─ gpu: wait for a slot (FIFO) ─ sleep the service time (or hang)
                     └─ 200 with the answer (maybe emptied / malformed / truncated)

If the client disconnects while its request waits or is in service, the request stops at once
(status 499 in the request log), the way vLLM aborts requests of departed clients.

How the "connection reset" fault works: hypercorn answers 500 for an app that raises before
starting a response, so raising is no way to drop a connection. Instead the app sends a 1xx
informational head (``103``) and returns: the HTTP/1.1 response is then incomplete, so hypercorn
closes the connection, and httpx (which skips 1xx heads) reports
``RemoteProtocolError: Server disconnected without sending a response.`` — exactly what a
client sees when a server drops a connection before answering.
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, final

import attrs
import trio

from .._exceptions import ConfigError
from ._content import (
    Answer,
    ChatRequest,
    answer_chat,
    apply_content_fault,
    count_tokens,
    embedding,
    encode_base64,
)
from ._models import (
    RequestRecord,
    SimulatedModel,
    SimulatorStats,
    duplicate_name_problems,
)
from ._state import Header, ModelRuntime

Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_LOG_RECORDS = 1_000_000
"""The request log keeps the most recent this many records (a long CLI run stays bounded)."""

MAX_EMBEDDING_DIMENSIONS = 8192
HTTP_FAULTS = frozenset({"429", "500", "503", "reset"})
CONTENT_FAULTS = frozenset({"empty", "malformed", "truncated"})
STATUS_RESET = 0
STATUS_CLIENT_GONE = 499


class HTTPError(Exception):
    """An error answer: status plus an OpenAI-style ``{"error": {...}}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Sequence[Header] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = list(headers)


@attrs.frozen(kw_only=True)
class _Job:
    """What the shared admission/service path needs to know about one request."""

    runtime: ModelRuntime
    input_tokens: int
    output_tokens: int
    respond: Callable[[str | None], dict[str, Any]]  # fault -> 200 body
    output_tokens_after: Callable[[str | None], int]  # fault -> tokens actually sent


@final
class SimulatorApp:
    """The ASGI app. Construct inside a trio run; serve with hypercorn's trio worker.

    Raises:
      ConfigError: no models, or two models with the same name.
    """

    def __init__(self, models: Sequence[SimulatedModel]) -> None:
        problems = duplicate_name_problems(models)
        if not models:
            problems.append("the simulator needs at least one model")
        if problems:
            raise ConfigError(problems)
        self.models = tuple(models)
        self.runtimes = {m.name: ModelRuntime(m) for m in models}
        self.log: collections.deque[RequestRecord] = collections.deque(maxlen=MAX_LOG_RECORDS)
        self._routes: dict[str, tuple[str, Callable[[bytes, Receive, Send], Awaitable[None]]]] = {
            "/v1/chat/completions": ("POST", self._chat),
            "/v1/embeddings": ("POST", self._embeddings),
            "/v1/models": ("GET", self._list_models),
            "/stats": ("GET", self._stats),
            "/stats/reset": ("POST", self._reset),
        }

    # ----------------------------------------------------------------- public state

    def stats(self) -> SimulatorStats:
        models = {name: rt.statistics() for name, rt in self.runtimes.items()}
        return SimulatorStats(models=models, time=trio.current_time())

    def reset(self) -> None:
        for runtime in self.runtimes.values():
            runtime.reset()
        self.log.clear()

    # ----------------------------------------------------------------- ASGI

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: Message, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:
            return  # the client left before sending its request
        try:
            handler = self._route(scope["method"], scope["path"])
            await handler(body, receive, send)
        except HTTPError as error:
            await send_json(send, error.status, error.body, error.headers)

    def _route(self, method: str, path: str) -> Callable[[bytes, Receive, Send], Awaitable[None]]:
        path = path.rstrip("/")
        if method == "GET" and path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            return lambda body, receive, send: self._one_model(name, send)
        if path not in self._routes:
            raise HTTPError(
                404, f"No route {method} {path}; see GET /v1/models.", code="unknown_url"
            )
        allowed, handler = self._routes[path]
        if method != allowed:
            raise HTTPError(
                405,
                f"{path} only accepts {allowed}.",
                code="method_not_allowed",
                headers=[(b"allow", allowed.encode())],
            )
        return handler

    # ----------------------------------------------------------------- small routes

    async def _list_models(self, body: bytes, receive: Receive, send: Send) -> None:
        await send_json(
            send, 200, {"object": "list", "data": [_model_card(m) for m in self.models]}
        )

    async def _one_model(self, name: str, send: Send) -> None:
        await send_json(send, 200, _model_card(self._runtime(name).config))

    async def _stats(self, body: bytes, receive: Receive, send: Send) -> None:
        await send_json(send, 200, self.stats().to_dict())

    async def _reset(self, body: bytes, receive: Receive, send: Send) -> None:
        self.reset()
        await send_json(send, 200, {"reset": True})

    def _runtime(self, name: object) -> ModelRuntime:
        if not isinstance(name, str) or not name:
            raise HTTPError(
                400, "The request needs a 'model' (a string).", param="model", code="missing_model"
            )
        runtime = self.runtimes.get(name)
        if runtime is None:
            served = ", ".join(sorted(self.runtimes))
            raise HTTPError(
                404,
                f"The model '{name}' does not exist; this simulator serves: {served}.",
                param="model",
                code="model_not_found",
            )
        return runtime

    # ----------------------------------------------------------------- model routes

    async def _chat(self, body: bytes, receive: Receive, send: Send) -> None:
        data = _json_object(body)
        runtime = self._runtime(data.get("model"))
        request = parse_chat_request(data, runtime.config.name)
        answer = answer_chat(request)
        prompt_tokens = request.prompt_tokens

        def respond(fault: str | None) -> dict[str, Any]:
            sent = apply_content_fault(answer, fault) if fault in CONTENT_FAULTS else answer
            return chat_body(runtime.config.name, sent, prompt_tokens)

        def tokens_after(fault: str | None) -> int:
            sent = apply_content_fault(answer, fault) if fault in CONTENT_FAULTS else answer
            return sent.completion_tokens

        job = _Job(
            runtime=runtime,
            input_tokens=prompt_tokens,
            output_tokens=answer.completion_tokens,
            respond=respond,
            output_tokens_after=tokens_after,
        )
        await self._serve(job, receive, send)

    async def _embeddings(self, body: bytes, receive: Receive, send: Send) -> None:
        data = _json_object(body)
        runtime = self._runtime(data.get("model"))
        texts, tokens = _embedding_inputs(data.get("input"))
        dimensions = _int_field(data, "dimensions", default=64, high=MAX_EMBEDDING_DIMENSIONS)
        encoding = data.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise HTTPError(
                400, "encoding_format must be 'float' or 'base64'.", param="encoding_format"
            )
        name = runtime.config.name

        def respond(fault: str | None) -> dict[str, Any]:
            vectors = [embedding(name, text, dimensions) for text in texts]
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": encode_base64(vec) if encoding == "base64" else vec,
                }
                for i, vec in enumerate(vectors)
            ]
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            return {"object": "list", "data": data, "model": name, "usage": usage}

        job = _Job(
            runtime=runtime,
            input_tokens=tokens,
            output_tokens=0,
            respond=respond,
            output_tokens_after=lambda fault: 0,
        )
        await self._serve(job, receive, send)

    # ----------------------------------------------------------------- the shared path

    async def _serve(self, job: _Job, receive: Receive, send: Send) -> None:
        """Admission, faults, service and the answer (see the module docstring's diagram)."""
        runtime, start = job.runtime, trio.current_time()
        runtime.requests += 1
        budget = job.input_tokens + job.output_tokens
        rejection = runtime.check_admission(start, budget)
        fault = None if rejection is not None else runtime.draw_fault()
        # Statistics and the log are updated *before* each answer goes out, so a client that
        # has its answer can rely on them.
        if rejection is not None or fault == "429":
            self._record(job, start, 429, fault=fault)
            await self._send_rate_limited(job, send, rejection.message if rejection else None)
            return
        runtime.record_admission(start, budget)
        if fault is not None:
            runtime.faults_sent += 1
        if fault in HTTP_FAULTS:
            self._record(job, start, STATUS_RESET if fault == "reset" else int(fault), fault=fault)
            await _send_http_fault(fault, runtime.config.name, send)
            return
        with runtime.admitted():
            queued_for = await _unless_disconnected(receive, self._service, job, fault)
        if queued_for is None:
            self._record(job, start, STATUS_CLIENT_GONE, fault=fault)
            return
        runtime.record_completion(job.input_tokens, job.output_tokens_after(fault))
        self._record(job, start, 200, queued_for=queued_for, fault=fault)
        headers = runtime.ratelimit_headers(trio.current_time())
        await send_json(send, 200, job.respond(fault), headers)

    async def _service(self, job: _Job, fault: str | None) -> float:
        """Wait for a slot, then hold it for the service time; returns the time queued."""
        runtime = job.runtime
        async with runtime.in_service() as queued_for:
            if fault == "hang":
                await trio.sleep(runtime.config.faults.hang_seconds)
            else:
                await trio.sleep(runtime.draw_service_time(job.output_tokens))
        return queued_for

    async def _send_rate_limited(self, job: _Job, send: Send, message: str | None) -> None:
        runtime = job.runtime
        runtime.rate_limited += 1
        if message is None:  # an injected 429
            runtime.faults_sent += 1
            message = f"Rate limit reached for '{runtime.config.name}' (simulated fault)."
        headers = runtime.ratelimit_headers(trio.current_time(), rejected=True)
        error = HTTPError(
            429,
            f"{message} Please retry after {runtime.config.retry_after:g}s.",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=headers,
        )
        await send_json(send, 429, error.body, error.headers)

    def _record(
        self,
        job: _Job,
        start: float,
        status: int,
        *,
        queued_for: float = 0.0,
        fault: str | None = None,
    ) -> None:
        self.log.append(
            RequestRecord(
                model=job.runtime.config.name,
                start=start,
                end=trio.current_time(),
                status=status,
                queued_for=queued_for,
                fault=fault,
            )
        )


# --------------------------------------------------------------------------- helpers


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _unless_disconnected(
    receive: Receive,
    fn: Callable[[_Job, str | None], Awaitable[float]],
    job: _Job,
    fault: str | None,
) -> float | None:
    """``await fn(job, fault)``, abandoned (returning None) if the client disconnects first."""
    result: list[float] = []
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            nursery.cancel_scope.cancel()

        async def work() -> None:
            result.append(await fn(job, fault))
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        nursery.start_soon(work)
    return result[0] if result else None


async def send_json(send: Send, status: int, body: object, headers: Sequence[Header] = ()) -> None:
    """Send one complete JSON response."""
    payload = json.dumps(body, ensure_ascii=False).encode()
    all_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def _send_http_fault(fault: str, model: str, send: Send) -> None:
    """Send an injected 500 / 503, or drop the connection for ``"reset"``."""
    if fault == "reset":
        # An informational head and no final response: hypercorn closes the connection.
        await send({"type": "http.response.start", "status": 103, "headers": []})
        return
    messages = {
        "500": (
            f"The server had an error while processing the request to '{model}' (simulated fault).",
            "internal_error",
        ),
        "503": (
            f"The model '{model}' is overloaded or unavailable (simulated fault).",
            "service_unavailable",
        ),
    }
    message, code = messages[fault]
    error = HTTPError(int(fault), message, type="server_error", code=code)
    await send_json(send, error.status, error.body)


def _model_card(model: SimulatedModel) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": 0,
        "owned_by": "trio-designer-simulator",
    }


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise HTTPError(
            400, f"The request body is not valid JSON: {exc}.", code="invalid_json"
        ) from exc
    if not isinstance(data, dict):
        raise HTTPError(400, "The request body must be a JSON object.", code="invalid_json")
    return data


def _int_field(data: Mapping[str, Any], name: str, *, default: int, high: int) -> int:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise HTTPError(
            400, f"'{name}' must be a whole number between 1 and {high}, got {value!r}.", param=name
        )
    return value


def parse_chat_request(data: Mapping[str, Any], model: str) -> ChatRequest:
    """Validate a chat completion body.

    Raises:
      HTTPError: 400 naming the offending field.
    """
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HTTPError(400, "'messages' must be a non-empty list of messages.", param="messages")
    for i, message in enumerate(messages):
        _check_message(i, message)
    if data.get("stream"):
        raise HTTPError(
            400, "Streaming is not supported by the simulator; send stream=false.", param="stream"
        )
    if data.get("n", 1) != 1:
        raise HTTPError(400, "The simulator returns one choice; send n=1.", param="n")
    limit_key = "max_completion_tokens" if "max_completion_tokens" in data else "max_tokens"
    max_tokens = None
    if data.get(limit_key) is not None:
        max_tokens = _int_field(data, limit_key, default=0, high=10**9)
    seed = data.get("seed")
    return ChatRequest(
        model=model,
        messages=messages,
        response_format=_response_format(data.get("response_format")),
        max_tokens=max_tokens,
        reasoning=_wants_reasoning(data, model),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
    )


def _wants_reasoning(data: Mapping[str, Any], model: str) -> bool:
    """``"reasoning": true`` at the top level (how OpenAI clients send ``extra_body``) or
    inside a literal ``extra_body`` object, or a model whose name contains "reason"."""
    extra = data.get("extra_body")
    nested = isinstance(extra, dict) and extra.get("reasoning") is True
    return data.get("reasoning") is True or nested or "reason" in model.lower()


def _check_message(index: int, message: object) -> None:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise HTTPError(
            400,
            f"messages[{index}] must be an object with a 'role' string.",
            param=f"messages[{index}]",
        )
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        raise HTTPError(
            400,
            f"messages[{index}].content must be a string or a list of content parts.",
            param=f"messages[{index}].content",
        )


def _response_format(value: object) -> Mapping[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise HTTPError(
            400,
            "response_format must be an object whose 'type' is 'text', "
            "'json_object' or 'json_schema'.",
            param="response_format",
        )
    assert isinstance(value, dict)
    json_schema = value.get("json_schema")
    if kind == "json_schema" and not (
        isinstance(json_schema, dict) and isinstance(json_schema.get("schema", {}), dict | bool)
    ):
        raise HTTPError(
            400,
            "response_format.json_schema must be an object with a 'schema' object.",
            param="response_format.json_schema",
        )
    return value


def _embedding_inputs(value: object) -> tuple[list[str], int]:
    """(texts, prompt tokens) of an embeddings ``input``: a string, strings, or token lists."""
    if isinstance(value, str):
        return [value], count_tokens(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value), sum(count_tokens(v) for v in value)
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [json.dumps(value)], len(value)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value)
    ):
        return [json.dumps(v) for v in value], sum(len(v) for v in value)
    raise HTTPError(
        400, "'input' must be a non-empty string, list of strings, or token lists.", param="input"
    )


def chat_body(model: str, answer: Answer, prompt_tokens: int) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object carrying ``answer``."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.reasoning is not None:
        message["reasoning_content"] = answer.reasoning
    completion_tokens = answer.completion_tokens
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "trio-designer-simulator",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": answer.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
        },
    }
