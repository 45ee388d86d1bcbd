"""The OpenAI-compatible client: request shaping, parsing, transport retries, key hygiene.

Everything runs against real servers on 127.0.0.1 inside the test's ``trio.run``, in virtual
time: a tiny scripted ASGI app under hypercorn, or a raw TCP server that misbehaves
(``tests/_loopback.py``). The transports' own behaviour (deadline, size cap, connection reuse,
failures, proxies, TLS) is tested over both transports in ``tests/test_model_transport.py``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from _loopback import (
    Reply,
    ScriptedApp,
    completion,
    served,
    status,
)
from hypothesis import example, given
from hypothesis import strategies as st

from trio_designer._core._retry import BackoffPolicy
from trio_designer._exceptions import (
    ConfigError,
    ModelRateLimitedError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
)
from trio_designer.models import _transport
from trio_designer.models._client import (
    ChatResponse,
    OpenAICompatibleClient,
    Usage,
    resolve_api_key,
)

BIG = 10_000
NO_JITTER = BackoffPolicy(jitter=0.0)
MESSAGES = [{"role": "user", "content": "Say hi"}]


@asynccontextmanager
async def scripted(app: ScriptedApp, **kwargs: Any) -> AsyncIterator[OpenAICompatibleClient]:
    """A client named ``acme`` (no jitter) talking to ``app`` served on 127.0.0.1."""
    kwargs.setdefault("name", "acme")
    kwargs.setdefault("transport_retry", NO_JITTER)
    async with served(app) as url, OpenAICompatibleClient(base_url=url, **kwargs) as client:
        yield client


# ---------------------------------------------------------------------------------------------
# BackoffPolicy
# ---------------------------------------------------------------------------------------------


def test_backoff_grows_geometrically_up_to_the_cap() -> None:
    """Without jitter: base, base*factor, ... capped."""
    policy = BackoffPolicy(base=0.5, factor=2.0, cap=3.0, jitter=0.0)
    rng = random.Random(0)
    assert [policy.delay(n, rng) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(10**6, rng) == 3.0  # no OverflowError


def test_backoff_jitter_is_seeded_and_bounded() -> None:
    """Jitter stays within ±jitter of the nominal wait and repeats for the same seed."""
    policy = BackoffPolicy(base=1.0, factor=1.0, jitter=0.2)
    first = [policy.delay(1, random.Random(42)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = random.Random(7)
    draws = [policy.delay(1, rng) for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in draws)
    assert len(set(draws)) > 100


def test_backoff_rejects_bad_values() -> None:
    """Attempts count from 1; the policy's fields are validated."""
    with pytest.raises(
        ValueError, match=r"^attempt must be >= 1 \(attempts count from 1\), got 0$"
    ):
        BackoffPolicy().delay(0, random.Random(0))
    bad_values: list[dict[str, Any]] = [
        {"max_attempts": 0},
        {"jitter": 1.5},
        {"factor": 0.5},
        {"base": -1.0},
        {"cap": math.inf},
        {"base": math.nan},
    ]
    for bad in bad_values:
        with pytest.raises(ValueError, match="must be"):
            BackoffPolicy(**bad)


@given(
    base=st.floats(0, 100),
    factor=st.floats(1, 10),
    cap=st.floats(0, 1000),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 10_000),
    seed=st.integers(0, 2**32),
)
def test_backoff_delay_is_always_within_zero_and_cap(
    base: float, factor: float, cap: float, jitter: float, attempt: int, seed: int
) -> None:
    """For any valid policy and attempt, 0 <= delay <= cap, and it is finite."""
    policy = BackoffPolicy(base=base, factor=factor, cap=cap, jitter=jitter)
    delay = policy.delay(attempt, random.Random(seed))
    assert math.isfinite(delay)
    assert 0.0 <= delay <= cap


# ---------------------------------------------------------------------------------------------
# Construction, keys, repr
# ---------------------------------------------------------------------------------------------


def test_resolve_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """None means no key; a set variable is read; missing/empty is a ConfigError naming it."""
    monkeypatch.setenv("TD_TEST_KEY", "sk-abc")
    monkeypatch.setenv("TD_EMPTY_KEY", "")
    monkeypatch.delenv("TD_MISSING_KEY", raising=False)
    assert resolve_api_key(None) is None
    assert resolve_api_key("TD_TEST_KEY") == "sk-abc"
    with pytest.raises(
        ConfigError,
        match=r"^api_key_env: the environment variable 'TD_MISSING_KEY' is not set; export the "
        r"API key in it, or remove api_key_env if the endpoint needs no key$",
    ):
        resolve_api_key("TD_MISSING_KEY")
    with pytest.raises(ConfigError, match="'TD_EMPTY_KEY' is empty"):
        resolve_api_key("TD_EMPTY_KEY")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "ftp://example.com/v1"}, r"must be an http:// or https:// URL"),
        ({"base_url": "api.openai.com/v1"}, r"must be an http:// or https:// URL"),
        ({"base_url": "http://[::1/v1"}, r"is not a valid URL"),
        ({"base_url": "http://127.0.0.1:99999/v1"}, r"is not a valid URL"),
        ({"base_url": "http://127.0.0.1/v1", "max_connections": 0}, r"max_connections must be"),
        ({"base_url": "http://127.0.0.1/v1", "timeout": 0.0}, r"timeout must be > 0"),
        (
            {"base_url": "http://127.0.0.1/v1", "max_response_bytes": 0},
            r"max_response_bytes must be >= 1",
        ),
        (
            {"base_url": "http://127.0.0.1/v1", "extra_headers": {"X-Bad": "a\nb"}},
            r"extra_headers: 'X-Bad' is not a valid HTTP header",
        ),
        (
            {"base_url": "http://127.0.0.1/v1", "api_key": "sk-\r\nx"},
            r"the API key contains characters that are not allowed",
        ),
        ({"base_url": "http://127.0.0.1/my models/v1"}, r"has a path that is not valid"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    """Configuration mistakes fail at construction, naming the provider."""
    with pytest.raises(ConfigError, match=rf"^provider 'acme': .*{message}"):
        OpenAICompatibleClient(name="acme", **kwargs)


async def test_repr_never_shows_the_key() -> None:
    """repr says whether a key is set, never what it is."""
    async with OpenAICompatibleClient(
        base_url="http://127.0.0.1:9/v1", api_key="sk-very-secret", name="acme"
    ) as client:
        assert repr(client) == (
            "OpenAICompatibleClient(name='acme', base_url='http://127.0.0.1:9/v1', "
            "api_key='***', max_connections=16)"
        )
    keyless = OpenAICompatibleClient(base_url="http://127.0.0.1:9/v1")
    assert "api_key=None" in repr(keyless)
    await keyless.aclose()


# ---------------------------------------------------------------------------------------------
# Request shaping
# ---------------------------------------------------------------------------------------------


async def test_chat_sends_every_parameter_and_extra_body_wins(autojump_clock: Any) -> None:
    """All parameters are sent; extra_body is merged last, like the OpenAI SDK."""
    app = ScriptedApp()
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    async with scripted(app) as client:
        await client.chat(
            model="m",
            messages=MESSAGES,
            temperature=0.1,
            top_p=0.9,
            max_tokens=64,
            response_format=schema,
            extra_body={"seed": 3, "temperature": 0.7},
            timeout=12.5,
            max_response_bytes=4096,
        )
    [body] = app.bodies()
    assert body == {
        "model": "m",
        "messages": MESSAGES,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 64,
        "response_format": schema,
        "seed": 3,
    }


async def test_non_ascii_survives_the_round_trip(autojump_clock: Any) -> None:
    """Bodies are UTF-8 JSON both ways."""
    app = ScriptedApp([Reply(body=completion("Grüße, 世界"))])
    async with scripted(app) as client:
        reply = await client.chat(model="m", messages=[{"role": "user", "content": "Ça va?"}])
    assert reply.content == "Grüße, 世界"
    assert app.bodies()[0]["messages"][0]["content"] == "Ça va?"


# ---------------------------------------------------------------------------------------------
# Response parsing
# ---------------------------------------------------------------------------------------------


async def chat_with(body: Any, **kwargs: Any) -> ChatResponse:
    with trio.fail_after(BIG):
        async with scripted(ScriptedApp([Reply(body=body)])) as client:
            return await client.chat(model="asked", messages=MESSAGES, **kwargs)


async def test_parses_content_usage_and_reasoning(autojump_clock: Any) -> None:
    """OpenAI usage names, reasoning_content and reasoning token details are read."""
    usage = {
        "prompt_tokens": 11,
        "completion_tokens": 20,
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    reply = await chat_with(
        completion("answer", message_extra={"reasoning_content": "thinking"}, usage=usage)
    )
    assert reply == ChatResponse(
        content="answer",
        reasoning="thinking",
        usage=Usage(input_tokens=11, output_tokens=20, reasoning_tokens=5),
        finish_reason="stop",
        model="served-model",
    )


async def test_parses_alternative_shapes(autojump_clock: Any) -> None:
    """``reasoning``, input/output token names, null content, text parts, missing model."""
    usage = {
        "input_tokens": 3,
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 1},
    }
    reply = await chat_with(
        completion(
            None,
            message_extra={"reasoning": "hmm"},
            usage=usage,
            finish_reason="length",
            model=None,
        )
    )
    assert reply == ChatResponse(
        content="",
        reasoning="hmm",
        usage=Usage(input_tokens=3, output_tokens=4, reasoning_tokens=1),
        finish_reason="length",
        model="asked",
    )
    parts = [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]
    assert (await chat_with(completion(parts))).content == "ab"


async def test_missing_or_odd_usage_counts_are_zero(autojump_clock: Any) -> None:
    """Absent usage, negative or non-integer counts never crash; they count as 0."""
    assert (await chat_with(completion())).usage == Usage()
    odd = {"prompt_tokens": -1, "completion_tokens": "7", "completion_tokens_details": None}
    assert (await chat_with(completion(usage=odd))).usage == Usage()
    assert (await chat_with(completion(finish_reason=3))).finish_reason is None


def test_usage_adds_up() -> None:
    """Usage values sum field by field (every attempt of a cell counts)."""
    total = Usage(input_tokens=1, output_tokens=2, reasoning_tokens=3) + Usage(input_tokens=10)
    assert total == Usage(input_tokens=11, output_tokens=2, reasoning_tokens=3)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"choices": [{"message": {"content": "trunc', "the body is not valid JSON"),
        (b"<html>hello</html>", "the body is not valid JSON"),
        (b"\xff\xfe\x00", "the body is not valid JSON"),
        (b"[1, 2]", "the body is not a JSON object"),
        (b"{}", "the body has no choices"),
        (b'{"choices": []}', "the body has no choices"),
        (b'{"choices": [{"index": 0}]}', "choices[0] has no message"),
        (b'{"choices": [{"message": {"content": 5}}]}', "choices[0].message.content is neither"),
    ],
)
async def test_unusable_success_is_a_server_error_and_not_retried(
    body: bytes, problem: str, autojump_clock: Any
) -> None:
    """A 200 with a garbage body raises ModelServerError(status=200) after one request."""
    app = ScriptedApp([Reply(body=body)])
    async with scripted(app) as client:
        with pytest.raises(ModelServerError, match=rf"answered HTTP 200 but {re.escape(problem)}"):
            await client.chat(model="m", messages=MESSAGES)
    assert len(app.requests) == 1


async def test_embeddings_in_input_order(autojump_clock: Any) -> None:
    """Vectors come back in input order even when the server lists them shuffled."""
    data = [{"index": 1, "embedding": [0.5, 1]}, {"index": 0, "embedding": [2, 3.5]}]
    app = ScriptedApp([Reply(body={"data": data})])
    async with scripted(app) as client:
        vectors = await client.embeddings(model="e", inputs=["a", "b"], dimensions=2)
    assert vectors == [[2.0, 3.5], [0.5, 1.0]]
    assert app.bodies() == [{"model": "e", "input": ["a", "b"], "dimensions": 2}]
    assert app.requests[0]["path"] == "/v1/embeddings"


async def test_embeddings_of_nothing_sends_nothing(autojump_clock: Any) -> None:
    """No inputs, no request (but still a checkpoint)."""
    app = ScriptedApp()
    async with scripted(app) as client:
        with trio.testing.assert_checkpoints():
            assert await client.embeddings(model="e", inputs=[]) == []
    assert app.requests == []


@pytest.mark.parametrize(
    "payload",
    [
        {"data": [{"index": 0, "embedding": [1.0]}]},
        {"data": [{"embedding": [1.0]}, {"embedding": ["x"]}]},
        {"data": [{"embedding": [1.0]}, {"embedding": [True]}]},
        {"nothing": []},
    ],
)
async def test_bad_embeddings_are_server_errors(
    payload: dict[str, Any], autojump_clock: Any
) -> None:
    """Wrong counts or non-numeric vectors are a retryable server error with status 200."""
    async with scripted(ScriptedApp([Reply(body=payload)])) as client:
        with pytest.raises(ModelServerError) as info:
            await client.embeddings(model="e", inputs=["a", "b"])
    assert info.value.status == 200


async def test_list_models(autojump_clock: Any) -> None:
    """GET <base_url>/models returns the ids in order; a bad body is a server error."""
    app = ScriptedApp(
        [Reply(body={"data": [{"id": "a"}, {"id": "b"}]}), Reply(body={"data": [{"name": "a"}]})]
    )
    async with scripted(app) as client:
        assert await client.list_models() == ["a", "b"]
        with pytest.raises(ModelServerError, match=r"^Provider 'acme' answered HTTP 200 but"):
            await client.list_models()
    assert [r["path"] for r in app.requests] == ["/v1/models"] * 2
    assert app.requests[0]["method"] == "GET"
    assert app.requests[0]["body"] == b""


# ---------------------------------------------------------------------------------------------
# Transport retries (virtual time)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [502, 503, 504])
async def test_gateway_errors_are_retried_with_backoff(code: int, autojump_clock: Any) -> None:
    """502/503/504 are retried after 0.5 s, then 1 s; the third attempt succeeds."""
    app = ScriptedApp([status(code), status(code)])
    with trio.fail_after(BIG):
        async with scripted(app) as client:
            reply = await client.chat(model="m", messages=MESSAGES)
    assert reply.content == "hi"
    assert app.times() == [0.0, 0.5, 1.5]


async def test_gateway_errors_give_up_after_max_attempts(autojump_clock: Any) -> None:
    """After max_attempts the mapped error is raised, chained from an HTTPStatusError."""
    app = ScriptedApp([status(503)] * 5)
    with trio.fail_after(BIG):
        async with scripted(app) as client:
            with pytest.raises(ModelServerError) as info:
                await client.chat(model="m", messages=MESSAGES)
    assert info.value.status == 503
    assert isinstance(info.value.__cause__, _transport.HTTPStatusError)
    assert info.value.__cause__.response.status == 503
    assert len(app.requests) == 3


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (status(429, **{"Retry-After": "3"}), ModelRateLimitedError),
        (status(500), ModelServerError),
        (status(408), ModelTimeoutError),
        (status(400), ModelRequestError),
        (Reply(delay=100.0), ModelTimeoutError),
    ],
    ids=["429", "500", "408", "400", "timeout"],
)
@pytest.mark.deadline(30)
async def test_other_failures_are_not_retried_here(
    reply: Reply, error: type[Exception], autojump_clock: Any
) -> None:
    """429 goes straight to the limiter; timeouts, 500, 408 and 4xx go to the scheduler."""
    app = ScriptedApp([reply, Reply()])
    with trio.fail_after(BIG):
        async with scripted(app, timeout=10.0) as client:
            with pytest.raises(error) as info:
                await client.chat(model="m", messages=MESSAGES)
    assert len(app.requests) == 1
    assert info.value.__cause__ is not None
    if isinstance(info.value, ModelRateLimitedError):
        assert info.value.retry_after == 3.0


async def test_quota_503_is_not_retried(autojump_clock: Any) -> None:
    """A 503 whose body is about billing is a quota error: reported at once, not retried."""
    app = ScriptedApp([Reply(status=503, body=b"billing account suspended")])
    with trio.fail_after(BIG):
        async with scripted(app) as client:
            with pytest.raises(ModelRequestError) as info:
                await client.chat(model="m", messages=MESSAGES)
    assert info.value.reason == "quota"
    assert len(app.requests) == 1


async def test_max_attempts_one_disables_retries(autojump_clock: Any) -> None:
    """BackoffPolicy(max_attempts=1): the first 503 is reported at once."""
    app = ScriptedApp([status(503)])
    with trio.fail_after(BIG):
        async with scripted(app, transport_retry=BackoffPolicy(max_attempts=1)) as c:
            with pytest.raises(ModelServerError):
                await c.chat(model="m", messages=MESSAGES)
    assert len(app.requests) == 1


@pytest.mark.deadline(60)
@pytest.mark.parametrize(("retry_after", "expected_wait"), [("5", 5.0), ("0", 0.5), ("999", 30.0)])
async def test_retry_after_on_503_lengthens_the_wait(
    retry_after: str, expected_wait: float, autojump_clock: Any
) -> None:
    """A 503's Retry-After is honoured if longer than the backoff, up to the policy cap."""
    app = ScriptedApp([status(503, **{"Retry-After": retry_after})])
    with trio.fail_after(BIG):
        async with scripted(app) as client:
            await client.chat(model="m", messages=MESSAGES)
    assert app.times() == [0.0, expected_wait]


async def test_jittered_waits_are_reproducible(autojump_clock: Any) -> None:
    """Two clients for the same provider draw the same jitter sequence (seeded rng)."""
    app = ScriptedApp([status(503), status(503), Reply(), status(503), status(503)])
    with trio.fail_after(BIG):
        async with served(app) as url:
            for _ in range(2):
                async with OpenAICompatibleClient(base_url=url, name="acme") as client:
                    await client.chat(model="m", messages=MESSAGES)
    times = app.times()
    first = [times[1] - times[0], times[2] - times[1]]
    second = [times[4] - times[3], times[5] - times[4]]
    assert first == pytest.approx(second, abs=1e-9)  # differences of absolute times
    assert first != pytest.approx([0.5, 1.0])
    assert 0.4 <= first[0] <= 0.6


async def test_retries_are_logged_without_the_key(
    caplog: pytest.LogCaptureFixture, autojump_clock: Any
) -> None:
    """Each retry logs one line naming the model, the status and the wait."""
    key = "sk-log-test-123456789"
    app = ScriptedApp([Reply(status=503, body=f"upstream said: Bearer {key}".encode())])
    caplog.set_level(logging.INFO, logger="trio_designer.models")
    with trio.fail_after(BIG):
        async with scripted(app, api_key=key) as client:
            await client.chat(model="m", messages=MESSAGES)
    [record] = caplog.records
    assert record.getMessage().startswith(
        "Retrying the request in 0.50 s (attempt 2 of 3) after: Model 'm' at provider 'acme' "
        "answered HTTP 503 Service Unavailable"
    )
    assert "Bearer ***" in record.getMessage()
    assert key not in caplog.text


# ---------------------------------------------------------------------------------------------
# Real servers on loopback
# ---------------------------------------------------------------------------------------------


async def test_chat_over_loopback(autojump_clock: Any) -> None:
    """A real round trip: path, JSON body, parsed reply."""
    app = ScriptedApp()
    with trio.fail_after(BIG):
        async with served(app) as url, OpenAICompatibleClient(base_url=url, name="sim") as client:
            reply = await client.chat(model="m", messages=MESSAGES, max_tokens=5)
    assert reply.content == "hi"
    [request] = app.requests
    assert request["path"] == "/v1/chat/completions"
    assert json.loads(request["body"]) == {"model": "m", "messages": MESSAGES, "max_tokens": 5}


async def test_503s_are_retried_over_loopback(autojump_clock: Any) -> None:
    """Two 503s then success: three requests reach the server; 1.5 s of backoff pass."""
    app = ScriptedApp([Reply(status=503, body={"error": "busy"})] * 2)
    with trio.fail_after(BIG):
        async with (
            served(app) as url,
            OpenAICompatibleClient(base_url=url, transport_retry=NO_JITTER) as client,
        ):
            start = trio.current_time()
            await client.chat(model="m", messages=MESSAGES)
            assert trio.current_time() - start == 1.5
    assert len(app.requests) == 3


async def test_extra_header_secrets_are_redacted_too(autojump_clock: Any) -> None:
    """Sensitive-looking extra headers (x-api-key) are redacted like the bearer key."""
    secret = "azure-key-abcdef123456"
    app = ScriptedApp(default=Reply(status=401, echo_headers=True))
    with trio.fail_after(BIG):
        async with (
            served(app) as url,
            OpenAICompatibleClient(
                base_url=url, extra_headers={"api-key": secret, "X-Trace": "visible-trace"}
            ) as client,
        ):
            with pytest.raises(ModelRequestError) as info:
                await client.chat(model="m", messages=MESSAGES)
    assert info.value.reason == "authentication"
    assert secret not in str(info.value)
    assert "visible-trace" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Against the packaged simulator
# ---------------------------------------------------------------------------------------------


async def test_simulator_round_trip(autojump_clock: Any) -> None:
    """Chat, embeddings and model listing against the simulator; latency is virtual."""
    from trio_designer.simulator import Latency, SimulatedModel, open_simulator

    model = SimulatedModel(name="m", latency=Latency(median=0.25))
    with trio.fail_after(BIG):
        async with (
            open_simulator([model]) as sim,
            OpenAICompatibleClient(base_url=sim.url, name="simulator") as client,
        ):
            start = trio.current_time()
            reply = await client.chat(model="m", messages=MESSAGES)
            assert trio.current_time() - start == 0.25
            assert reply.content
            assert reply.usage.input_tokens > 0
            assert reply.usage.output_tokens > 0
            vectors = await client.embeddings(model="m", inputs=["a", "b", "c"])
            assert await client.list_models() == ["m"]
    assert len(vectors) == 3
    assert len({len(v) for v in vectors}) == 1


# -- the usual answer's one-pass read (_chat_reply) against the general parse ---------------

_JSON_LEAF = st.none() | st.booleans() | st.integers(-3, 10**12) | st.floats() | st.text(max_size=5)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
_COUNTS = st.dictionaries(
    st.sampled_from(
        [
            "prompt_tokens",
            "input_tokens",
            "completion_tokens",
            "output_tokens",
            "completion_tokens_details",
            "output_tokens_details",
            "prompt_tokens_details",
            "input_tokens_details",
        ]
    ),
    _JSON_LEAF
    | st.dictionaries(st.sampled_from(["reasoning_tokens", "cached_tokens"]), _JSON_LEAF),
)
_MESSAGE = st.dictionaries(
    st.sampled_from(["content", "reasoning_content", "reasoning", "refusal", "tool_calls", "x"]),
    _JSON,
)
_ANSWER = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(
            st.fixed_dictionaries(
                {}, optional={"message": _MESSAGE | _JSON, "finish_reason": _JSON}
            ),
            max_size=2,
        )
        | _JSON,
        "usage": _COUNTS | _JSON,
        "model": _JSON,
    },
)


@example(
    answer={
        "choices": [{"message": {"content": "hi", "reasoning": "r"}, "finish_reason": "stop"}],
        "usage": {"input_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": {}},
        "model": "m",
    }
)
@given(answer=_ANSWER | _JSON)
def test_the_usual_answer_is_read_as_the_general_parse_reads_it(answer: Any) -> None:
    """``_chat_reply`` (the one-pass read of a usual answer) gives :func:`_chat_response`'s
    reply, rate limits added, for any decoded JSON; or ``None``, and then the general parse
    decides (it raises, or reads a list of content parts)."""
    from trio_designer._core._budget import BudgetReading, RateLimits
    from trio_designer.models._client import _chat_reply, _chat_response, _MalformedResponse

    data = json.loads(json.dumps(answer))  # what json.loads gives: plain types only
    limits = RateLimits(requests=BudgetReading(limit=10, remaining=5, reset=None))
    fast = _chat_reply(data, "asked", limits)
    try:
        general: ChatResponse | None = _chat_response(data, "asked")
    except _MalformedResponse:
        general = None
    if fast is None:
        if general is not None:  # only content parts take the general path successfully
            assert isinstance(data["choices"][0]["message"]["content"], list)
        return
    assert general is not None
    assert fast == attrs.evolve(general, rate_limits=limits)


@example(body=b'{"a": 1}  \n')
@example(body=b'{\x00"\x00}\x00')
@example(body=b'{"a": "\xed\xa0\x80"}')
@example(body=b"{" * 5000 + b"}" * 5000)
@given(
    body=st.one_of(
        _JSON.map(lambda v: json.dumps({"v": v}, ensure_ascii=False).encode()),
        _JSON.map(lambda v: json.dumps({"v": v}).encode("utf-16")),
        st.binary(max_size=12).map(lambda b: b"{" + b),
        st.binary(max_size=12),
    )
)
def test_answers_are_decoded_as_json_loads_decodes_them(body: bytes) -> None:
    """``_decoded_json`` (an answer's fast read) returns what ``json.loads`` returns, and
    raises what it raises, for any bytes."""
    from trio_designer.models._client import _decoded_json

    def outcome(read: Any) -> Any:
        try:
            return ("value", json.dumps(read(body), sort_keys=True))
        except (ValueError, RecursionError) as exc:
            return ("error", type(exc), str(exc))

    assert outcome(_decoded_json) == outcome(json.loads)
