"""The simulator's ASGI application: routing, authentication, admission, faults, answers.

A raw ASGI 3 callable, no web framework: the surface is seven routes and the behaviour lives in
:mod:`._state` (admission, slots, stats), :mod:`._budget` (RPM/TPM and their headers),
:mod:`._content` (answers), :mod:`._requests` (validation, bodies) and :mod:`._http` (ASGI
plumbing).

Life of a chat or embeddings request::

    read body ─ 401 without the API key ─ 400 bad JSON / fields ─ 404 unknown model
      └─ count it, draw its fault (one draw per request, whatever the load)
           └─ outage window open → 503 at once
                └─ injected 429 ─ hosted: capacity / RPM / TPM exceeded → 429 at once
                     └─ charge the budgets ─ injected 500 / 503 at once, or reset (close)
                          └─ in_flight ─ gpu: wait for a slot (FIFO) ─ sleep the service time
                               │  (or hang); an outage starting now drops it (close)
                               └─ 200 with the answer (maybe emptied / malformed / truncated /
                                  filtered / oversize), or trickled one byte at a time

If the client disconnects while its request waits or is in service, the request stops at once
(status 499 in the request log), the way vLLM aborts requests of departed clients.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, final

import attrs
import trio

from .._exceptions import ConfigError
from ._content import answer_chat, apply_content_fault, embedding, encode_base64
from ._http import (
    Gone,
    Message,
    Receive,
    Send,
    authorized,
    json_response,
    lifespan,
    prepare_json,
    read_body,
    send_bytes,
    send_json,
    send_prepared,
    send_reset,
    send_trickled,
    unauthorized_error,
    unless_disconnected,
)
from ._models import LimitedBy, RequestRecord, SimulatedModel, SimulatorStats
from ._profile import duplicate_name_problems
from ._requests import (
    MAX_EMBEDDING_DIMENSIONS,
    HTTPError,
    chat_json,
    embedding_inputs,
    int_field,
    json_object,
    model_card,
    oversize_chat_body,
    parse_chat_request,
)
from ._state import ModelRuntime, Rejection
from ._validate import validation_records, validation_results

MAX_LOG_RECORDS = 1_000_000
"""The request log keeps the most recent this many records (a long CLI run stays bounded)."""

SERVER_FAULTS = frozenset({"500", "503", "reset"})
CHAT_FAULTS = frozenset({"429", "500", "503", "reset", "hang", "trickle"}) | {
    "empty",
    "malformed",
    "truncated",
    "oversize",
    "content_filter",
}
EMBEDDING_FAULTS = frozenset({"429", "500", "503", "reset", "hang", "trickle"})
STATUS_CLOSED = 0
STATUS_CLIENT_GONE = 499

Handler = Callable[[bytes, float, Receive, Send], Awaitable[None]]


@attrs.frozen(kw_only=True)
class _Job:
    """What the shared admission/service path needs to know about one request.

    Attributes:
      runtime: the model's live state.
      prompt_tokens: the request's prompt tokens.
      charge: tokens charged to the TPM budget at admission (see docs/simulator.md).
      output_tokens: completion tokens of the normal answer (for ``per_output_token``).
      faults: the fault kinds this kind of request can suffer; others are ignored.
      body: fault → (response body, completion tokens it carries).
      received: when the request's body had been read (``trio.current_time()``): its arrival,
        from which its service time counts (see ``SimulatorApp._serve``).
    """

    runtime: ModelRuntime
    prompt_tokens: int
    charge: int
    output_tokens: int
    faults: frozenset[str]
    body: Callable[[str | None], tuple[bytes, int]]
    received: float


@final
class SimulatorApp:
    """The ASGI app. Construct inside a trio run; serve with hypercorn's trio worker, and run
    :meth:`follow_schedules` next to it when a model has a ``capacity_schedule``.

    Args:
      models: the simulated models (unique names).
      api_key: when set, every request must carry ``Authorization: Bearer <api_key>``.

    Raises:
      ConfigError: no models, two models with the same name, or an empty API key.
    """

    def __init__(self, models: Sequence[SimulatedModel], *, api_key: str | None = None) -> None:
        problems = duplicate_name_problems(models)
        if not models:
            problems.append("the simulator needs at least one model")
        if api_key is not None and not api_key.strip():
            problems.append("the simulator's api_key is empty; pass None to accept every request")
        if problems:
            raise ConfigError(problems)
        self.models = tuple(models)
        self.epoch = trio.current_time()
        self.runtimes = {m.name: ModelRuntime(m, epoch=self.epoch) for m in models}
        self.log: collections.deque[RequestRecord] = collections.deque(maxlen=MAX_LOG_RECORDS)
        self.unauthorized = 0
        self._key = api_key.strip().encode() if api_key is not None else None
        self._routes: dict[str, tuple[str, Handler]] = {
            "/v1/chat/completions": ("POST", self._chat),
            "/v1/embeddings": ("POST", self._embeddings),
            "/v1/validate": ("POST", self._validate),
            "/v1/models": ("GET", self._list_models),
            "/stats": ("GET", self._stats),
            "/stats/reset": ("POST", self._reset),
            "/log": ("GET", self._log),
        }

    def __repr__(self) -> str:  # never shows the key
        return f"<SimulatorApp models={[m.name for m in self.models]}>"

    # ----------------------------------------------------------------- public state

    def stats(self) -> SimulatorStats:
        models = {name: rt.statistics() for name, rt in self.runtimes.items()}
        return SimulatorStats(
            models=models, time=trio.current_time(), unauthorized=self.unauthorized
        )

    def reset(self) -> None:
        for runtime in self.runtimes.values():
            runtime.reset()
        self.unauthorized = 0
        self.log.clear()

    async def follow_schedules(self) -> None:
        """Apply every ``capacity_schedule`` step at its moment (returns after the last one).

        Hosted admission reads the schedule itself; this task is what wakes queued gpu requests
        when a capacity rises with no request arriving or finishing.
        """
        steps = sorted(
            (when, name) for name, rt in self.runtimes.items() for when in rt.schedule_times()
        )
        for when, name in steps:
            await trio.sleep_until(when)
            self.runtimes[name].follow_schedule(trio.current_time())

    # ----------------------------------------------------------------- ASGI

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: Message, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if body is None:
            return  # the client left before sending its request
        # The request's arrival: its latency counts from here. Our server says when its reader
        # read the body (``receive.arrived``); under another server, now.
        arrived: float | None = getattr(receive, "arrived", None)
        received = trio.current_time() if arrived is None else arrived
        try:
            if not authorized(scope, self._key):
                self.unauthorized += 1
                raise unauthorized_error(scope)
            handler = self._route(scope["method"], scope["path"])
            await handler(body, received, receive, send)
        except HTTPError as error:
            await send_json(send, error.status, error.body, error.headers)

    def _route(self, method: str, path: str) -> Handler:
        path = path.rstrip("/")
        if method == "GET" and path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            return lambda body, received, receive, send: self._one_model(name, send)
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

    async def _list_models(
        self, body: bytes, received: float, receive: Receive, send: Send
    ) -> None:
        await send_json(send, 200, {"object": "list", "data": [model_card(m) for m in self.models]})

    async def _one_model(self, name: str, send: Send) -> None:
        await send_json(send, 200, model_card(self._runtime(name).config))

    async def _stats(self, body: bytes, received: float, receive: Receive, send: Send) -> None:
        await send_json(send, 200, self.stats().to_dict())

    async def _log(self, body: bytes, received: float, receive: Receive, send: Send) -> None:
        records = [attrs.asdict(record) for record in self.log]
        await send_json(send, 200, {"time": trio.current_time(), "records": records})

    async def _reset(self, body: bytes, received: float, receive: Receive, send: Send) -> None:
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

    async def _chat(self, body: bytes, received: float, receive: Receive, send: Send) -> None:
        data = json_object(body)
        runtime = self._runtime(data.get("model"))
        name = runtime.config.name
        request = parse_chat_request(data, name)
        answer = answer_chat(request)
        prompt_tokens = request.prompt_tokens

        def respond(fault: str | None) -> tuple[bytes, int]:
            if fault == "oversize":
                size = runtime.config.faults.oversize_bytes
                return oversize_chat_body(name, answer, prompt_tokens, size)
            sent = apply_content_fault(answer, fault) if fault is not None else answer
            return chat_json(name, sent, prompt_tokens), sent.completion_tokens

        reserved = request.max_tokens
        job = _Job(
            runtime=runtime,
            prompt_tokens=prompt_tokens,
            charge=prompt_tokens + (answer.completion_tokens if reserved is None else reserved),
            output_tokens=answer.completion_tokens,
            faults=CHAT_FAULTS,
            received=received,
            body=respond,
        )
        await self._serve(job, receive, send)

    async def _embeddings(self, body: bytes, received: float, receive: Receive, send: Send) -> None:
        data = json_object(body)
        runtime = self._runtime(data.get("model"))
        texts, tokens = embedding_inputs(data.get("input"))
        dimensions = int_field(data, "dimensions", default=64, high=MAX_EMBEDDING_DIMENSIONS)
        encoding = data.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise HTTPError(
                400, "encoding_format must be 'float' or 'base64'.", param="encoding_format"
            )
        name = runtime.config.name

        def respond(fault: str | None) -> tuple[bytes, int]:
            vectors = [embedding(name, text, dimensions) for text in texts]
            items = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": encode_base64(vec) if encoding == "base64" else vec,
                }
                for i, vec in enumerate(vectors)
            ]
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            return json_response(
                {"object": "list", "data": items, "model": name, "usage": usage}
            ), 0

        job = _Job(
            runtime=runtime,
            prompt_tokens=tokens,
            charge=tokens,
            output_tokens=0,
            faults=EMBEDDING_FAULTS,
            received=received,
            body=respond,
        )
        await self._serve(job, receive, send)

    async def _validate(self, body: bytes, received: float, receive: Receive, send: Send) -> None:
        """A remote validator's batch (:mod:`._validate`), served like an embeddings call."""
        data = json_object(body)
        runtime = self._runtime(data.get("model"))
        records = validation_records(data)

        def respond(fault: str | None) -> tuple[bytes, int]:
            return json_response({"results": validation_results(records)}), 0

        job = _Job(
            runtime=runtime,
            prompt_tokens=len(records),
            charge=len(records),
            output_tokens=0,
            faults=EMBEDDING_FAULTS,
            received=received,
            body=respond,
        )
        await self._serve(job, receive, send)

    # ----------------------------------------------------------------- the shared path

    async def _serve(self, job: _Job, receive: Receive, send: Send) -> None:
        """Admission, faults, service and the answer (see the module docstring's diagram).

        Statistics and the log are updated, and ``in_flight`` released, *before* each answer
        goes out, so a client that has its answer can rely on them (a trickled answer is
        recorded just before its last byte, and released after it).

        Timing: a request's service time counts from its arrival (``job.received``, its body
        read), plus whatever it queued for a slot — not from after this process parsed it and
        drew its answer: that CPU is the simulator's, and with a burst of requests on one
        thread it would make each later request of the burst late by the work on the ones
        before it (the small-runs chain diagnostic: "send side"). For the same reason the
        usual answer's body is built before the wait, so after it only the headers and the
        write are left. The log's ``start`` is that arrival.
        """
        # One linear story per request, step for step the module docstring's diagram: split
        # further it would hide the order of the checks, which is the behaviour.
        runtime = job.runtime
        start = runtime.arrival(job.received)
        fault = runtime.arrive(start)
        if fault not in job.faults:
            fault = None
        if runtime.in_outage(start):
            runtime.unavailable += 1
            self._record(job, start, 503, fault="outage")
            await send_json(send, 503, _outage_error(runtime.config.name).body)
            return
        if fault == "429":
            rejection: Rejection | None = _injected_429(runtime)
        else:
            rejection = runtime.check_admission(start, job.charge)
        if rejection is not None:
            await self._send_rate_limited(job, start, rejection, send)
            return
        runtime.admit(start, job.charge)
        if fault is not None:
            runtime.faults_sent += 1
        if fault in SERVER_FAULTS:
            status = STATUS_CLOSED if fault == "reset" else int(fault)
            self._record(job, start, status, fault=fault, charged=job.charge)
            await _send_server_fault(fault, runtime, send)
            return
        if fault == "hang":
            service_time = runtime.config.faults.hang_seconds
        else:
            service_time = runtime.draw_service_time(job.output_tokens)
        # The usual answer, built while the request waits (see the docstring); framed too, by
        # our server, when its headers cannot change meanwhile (no RPM/TPM budgets).
        ready = job.body(fault) if fault is None else None
        prepared = None
        if ready is not None and not runtime.has_budgets():
            prepared = prepare_json(send, 200, ready[0], [])
        runtime.enter_flight()
        try:
            outcome: float | Gone | None
            if service_time == 0 and runtime.has_free_slot():
                # it cannot wait: no need to watch for departures
                outcome = await self._service(runtime, service_time, start)
            else:
                watch = getattr(receive, "cancel_on_disconnect", None)
                if watch is not None and runtime.next_outage(trio.current_time()) == math.inf:
                    outcome = await self._watched_service(runtime, service_time, start, watch)
                else:
                    service = partial(self._service, runtime, service_time, start)
                    outcome = await unless_disconnected(receive, service)
            if fault == "trickle" and isinstance(outcome, float):
                await self._trickle(job, start, outcome, receive, send)  # still in flight
                return
        finally:
            runtime.leave_flight()
        if outcome is Gone.CLIENT:
            self._record(job, start, STATUS_CLIENT_GONE, fault=fault, charged=job.charge)
        elif outcome is None:  # an outage began while it waited or was in service
            runtime.unavailable += 1
            self._record(job, start, STATUS_CLOSED, fault="outage", charged=job.charge)
            await send_reset(send)
        else:
            payload, completion_tokens = job.body(fault) if ready is None else ready
            self._record_success(job, start, outcome, fault, completion_tokens)
            if prepared is not None:
                await send_prepared(send, prepared)
            else:
                headers = runtime.ratelimit_headers(trio.current_time())
                await send_bytes(send, 200, payload, headers)

    async def _trickle(
        self, job: _Job, start: float, queued_for: float, receive: Receive, send: Send
    ) -> None:
        """Send the 200 one byte per ``trickle_interval``, recorded just before its last byte
        (so a client that has its answer can rely on the log, as for every answer)."""
        runtime = job.runtime
        payload, completion_tokens = job.body("trickle")
        headers = runtime.ratelimit_headers(trio.current_time())
        recorded: list[bool] = []

        def before_last() -> None:
            recorded.append(True)
            self._record_success(job, start, queued_for, "trickle", completion_tokens)

        interval = runtime.config.faults.trickle_interval
        trickle = partial(send_trickled, send, payload, headers, interval, before_last)
        gone = await unless_disconnected(receive, trickle) is Gone.CLIENT
        if gone and not recorded:  # the client left before the last byte
            self._record(job, start, STATUS_CLIENT_GONE, fault="trickle", charged=job.charge)

    def _record_success(
        self,
        job: _Job,
        start: float,
        queued_for: float,
        fault: str | None,
        completion_tokens: int,
    ) -> None:
        job.runtime.record_completion(job.prompt_tokens, completion_tokens)
        self._record(
            job,
            start,
            200,
            queued_for=queued_for,
            fault=fault,
            charged=job.charge,
            completion_tokens=completion_tokens,
        )

    async def _service(
        self, runtime: ModelRuntime, service_time: float, arrived: float
    ) -> float | None:
        """Wait for a slot, then hold it until ``service_time`` after the request ``arrived``
        plus the time it queued; returns the time queued, or None when an outage window opened
        first (the request is dropped)."""
        outage = runtime.next_outage(trio.current_time())
        if outage == math.inf:  # the common case: no scope needed (a few µs per request)
            queued_for = _queued(arrived, await runtime.enter_service())
            try:
                await _sleep_until(arrived + queued_for + service_time)
            finally:
                runtime.leave_service()
            return queued_for
        with trio.move_on_at(outage):
            async with runtime.in_service() as waited:
                queued_for = _queued(arrived, waited)
                await _sleep_until(arrived + queued_for + service_time)
            return queued_for
        return None

    async def _watched_service(
        self,
        runtime: ModelRuntime,
        service_time: float,
        arrived: float,
        cancel_on_disconnect: Callable[[trio.CancelScope], Any],
    ) -> float | Gone:
        """:meth:`_service` raced against the client's departure, for the usual case under
        the simulator's own server (``cancel_on_disconnect`` from its ``receive``) with no
        outage ahead: one cancel scope is both the service's timer (its deadline, the moment
        the answer is due) and what the server cancels when the client leaves — instead of
        ``unless_disconnected``'s scope around ``trio.sleep_until``'s own. Returns the time
        queued, or ``Gone.CLIENT`` when the departure came first (the watch's ``fired``: a
        deadline already passed means the request was served).

        Invariant (as in :meth:`_service`): a slot taken is given back on every way out.
        """
        queued = runtime.may_queue()
        scope = trio.CancelScope() if queued else trio.CancelScope(deadline=arrived + service_time)
        with scope, cancel_on_disconnect(scope) as watch:
            queued_for = _queued(arrived, await runtime.enter_service())
            try:
                if queued:
                    scope.deadline = arrived + queued_for + service_time
                await trio.sleep_forever()
            finally:
                runtime.leave_service()
        if watch.fired:
            return Gone.CLIENT
        return queued_for

    async def _send_rate_limited(
        self, job: _Job, start: float, rejection: Rejection, send: Send
    ) -> None:
        runtime = job.runtime
        runtime.reject(rejection.limited_by)
        injected = rejection.limited_by == "injected"
        self._record(
            job, start, 429, fault="429" if injected else None, limited_by=rejection.limited_by
        )
        error = HTTPError(
            429,
            rejection.message,
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=runtime.rejection_headers(start, rejection.retry_after),
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
        limited_by: LimitedBy | None = None,
        charged: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        end = trio.current_time()
        job.runtime.settle(end)
        self.log.append(
            RequestRecord(
                model=job.runtime.config.name,
                start=start,
                end=end,
                status=status,
                queued_for=queued_for,
                fault=fault,
                limited_by=limited_by,
                prompt_tokens=job.prompt_tokens,
                completion_tokens=completion_tokens,
                charged_tokens=charged,
            )
        )


# --------------------------------------------------------------------------- helpers


def _injected_429(runtime: ModelRuntime) -> Rejection:
    config = runtime.config
    return Rejection(
        limited_by="injected",
        message=f"Rate limit reached for '{config.name}' (simulated fault). "
        f"Please retry after {config.retry_after:g}s.",
        retry_after=config.retry_after,
    )


def _outage_error(model: str) -> HTTPError:
    return HTTPError(
        503,
        f"The model '{model}' is unavailable: the server is restarting (simulated outage).",
        type="server_error",
        code="service_unavailable",
    )


async def _send_server_fault(fault: str, runtime: ModelRuntime, send: Send) -> None:
    """Send an injected 500 / 503, or drop the connection for ``"reset"``."""
    if fault == "reset":
        await send_reset(send)
        return
    model = runtime.config.name
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
    headers = runtime.ratelimit_headers(trio.current_time())
    await send_json(send, error.status, error.body, headers)


async def _sleep_until(deadline: float) -> None:
    """``trio.sleep_until``, but a deadline already past (a zero-latency model) is a plain
    checkpoint, as ``trio.sleep(0)`` was, not a cancel scope that fires at once."""
    if deadline <= trio.current_time():
        await trio.lowlevel.checkpoint()
    else:
        await trio.sleep_until(deadline)


def _queued(arrived: float, queued_for: float) -> float:
    """The time a request that ``arrived`` queued for its service slot, given the
    ``queued_for`` seconds :meth:`ModelRuntime.enter_service` waited (gpu mode; 0: a slot was
    free), called right after the slot was granted: counted from the arrival, so that
    ``arrived + queued`` is the grant. The server may read a request after it arrived (see
    ``_asgi_server``, kernel stamps), and the wait counts from the read: added to the earlier
    arrival it would cut the slot's service short and log the service as started before the
    slot was free. Under a virtual clock (arrival = read) it is ``queued_for``."""
    if not queued_for:
        return 0.0
    return trio.current_time() - arrived
