"""Tests of the simulated OpenAI-compatible endpoint (trio_designer.simulator).

Everything HTTP goes through a real ``httpx.AsyncClient`` to the real server on 127.0.0.1,
running inside the test's own ``trio.run`` under ``autojump_clock``, so latencies are virtual
and makespans are asserted exactly.
"""

from __future__ import annotations

import base64
import json
import math
import random
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer._exceptions import ConfigError
from trio_designer.simulator import (
    Faults,
    Latency,
    SimulatedModel,
    Simulator,
    load_profile,
    open_simulator,
    parse_model_spec,
    serve_simulator,
)
from trio_designer.simulator import __main__ as cli
from trio_designer.simulator._content import count_tokens, schema_instance

BIG = 100_000
REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- helpers


@asynccontextmanager
async def simulated(
    *models: SimulatedModel, client_timeout: float | None = 30.0
) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    """A simulator on 127.0.0.1 and an httpx client pointed at it, under a deadlock guard."""
    with trio.fail_after(BIG):
        async with open_simulator(models) as sim:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(
                base_url=sim.url, timeout=client_timeout, limits=limits
            ) as client:
                yield sim, client


def chat(model: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


def content_of(response: httpx.Response) -> str:
    response.raise_for_status()
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


def fenced_json(text: str) -> Any:
    assert text.startswith("```json\n"), text
    assert text.endswith("\n```"), text
    return json.loads(text.removeprefix("```json\n").removesuffix("\n```"))


def repeated_sum(step: float, times: int, start: float = 0.0) -> float:
    """``start + step + step + ...`` in the same order trio's deadlines add up."""
    total = start
    for _ in range(times):
        total += step
    return total


# --------------------------------------------------------------------------- a tiny validator


def schema_errors(instance: Any, schema: Any, root: Any = None, path: str = "$") -> list[str]:
    """JSON-schema validation for the keywords the simulator supports (a test oracle)."""
    root = schema if root is None else root
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{path}: false schema"]
    if "$ref" in schema:
        target: Any = root
        for part in filter(None, schema["$ref"][1:].split("/")):
            target = target[part]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return schema_errors(instance, target, root, path) + schema_errors(
            instance, rest, root, path
        )
    errors = _type_errors(instance, schema, path)
    if errors:
        return errors
    errors += _combinator_errors(instance, schema, root, path)
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{path}: {instance!r} != const {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} not in enum")
    if isinstance(instance, dict):
        errors += _object_errors(instance, schema, root, path)
    elif isinstance(instance, list):
        errors += _array_errors(instance, schema, root, path)
    elif isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than minLength")
        if len(instance) > schema.get("maxLength", math.inf):
            errors.append(f"{path}: longer than maxLength")
    elif isinstance(instance, int | float) and not isinstance(instance, bool):
        errors += _number_errors(instance, schema, path)
    return errors


def _is_type(instance: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(instance, int) and not isinstance(instance, bool)
    if kind == "number":
        return isinstance(instance, int | float) and not isinstance(instance, bool)
    python = {"string": str, "boolean": bool, "null": type(None), "object": dict, "array": list}
    return isinstance(instance, python[kind])


def _type_errors(instance: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    kinds = schema.get("type")
    if kinds is None:
        return []
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if any(_is_type(instance, kind) for kind in kinds):
        return []
    return [f"{path}: {instance!r} is not of type {kinds}"]


def _combinator_errors(instance: Any, schema: Mapping[str, Any], root: Any, path: str) -> list[str]:
    errors = []
    for sub in schema.get("allOf", []):
        errors += schema_errors(instance, sub, root, path)
    if "anyOf" in schema and all(schema_errors(instance, s, root, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches no anyOf branch")
    if "oneOf" in schema:
        matches = sum(not schema_errors(instance, s, root, path) for s in schema["oneOf"])
        if matches != 1:
            errors.append(f"{path}: matches {matches} oneOf branches")
    return errors


def _object_errors(
    instance: dict[str, Any], schema: Mapping[str, Any], root: Any, path: str
) -> list[str]:
    errors = [f"{path}: missing {r}" for r in schema.get("required", []) if r not in instance]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, value in instance.items():
        sub = properties.get(key, extra)
        errors += schema_errors(value, sub, root, f"{path}.{key}")
    if not schema.get("minProperties", 0) <= len(instance) <= schema.get("maxProperties", math.inf):
        errors.append(f"{path}: wrong number of properties")
    return errors


def _array_errors(
    instance: list[Any], schema: Mapping[str, Any], root: Any, path: str
) -> list[str]:
    errors = []
    if not schema.get("minItems", 0) <= len(instance) <= schema.get("maxItems", math.inf):
        errors.append(f"{path}: {len(instance)} items")
    prefix = schema.get("prefixItems", [])
    for i, item in enumerate(instance):
        sub = prefix[i] if i < len(prefix) else schema.get("items", True)
        errors += schema_errors(item, sub, root, f"{path}[{i}]")
    if schema.get("uniqueItems"):
        keys = [json.dumps(item, sort_keys=True) for item in instance]
        if len(set(keys)) != len(keys):
            errors.append(f"{path}: items not unique")
    return errors


def _number_errors(value: float, schema: Mapping[str, Any], path: str) -> list[str]:
    checks: list[tuple[str, Callable[[float], bool]]] = [
        ("minimum", lambda b: value >= b),
        ("maximum", lambda b: value <= b),
        ("exclusiveMinimum", lambda b: value > b),
        ("exclusiveMaximum", lambda b: value < b),
        ("multipleOf", lambda b: (value / b).is_integer()),
    ]
    return [
        f"{path}: {value!r} violates {k}" for k, ok in checks if k in schema and not ok(schema[k])
    ]


def test_the_validator_oracle_rejects_bad_instances() -> None:
    """The oracle itself can fail: each keyword rejects a violating instance."""
    cases = [
        ("x", {"type": "integer"}),
        (True, {"type": "integer"}),
        (3, {"minimum": 4}),
        (4, {"exclusiveMaximum": 4}),
        (0.3, {"multipleOf": 0.2}),
        ("abc", {"maxLength": 2}),
        ([1, 1], {"uniqueItems": True}),
        ([], {"minItems": 1}),
        ({"a": 1}, {"required": ["b"]}),
        ({"a": 1}, {"additionalProperties": False}),
        ("b", {"enum": ["a"]}),
        ("b", {"const": "a"}),
        ("s", {"oneOf": [{"type": "string"}, {"maxLength": 3}]}),
        (None, {"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        (1, {"$ref": "#/$defs/S", "$defs": {"S": {"type": "string"}}}),
    ]
    for instance, schema in cases:
        assert schema_errors(instance, schema), (instance, schema)


# --------------------------------------------------------------------------- capacity & time


async def test_gpu_mode_queues_64_requests_through_16_slots_in_exactly_four_latencies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """64 × 0.2 s requests through 16 GPU slots take exactly 0.8 s, and never 429."""
    model = SimulatedModel(name="gpu", mode="gpu", capacity=16, latency=Latency(median=0.2))
    async with simulated(model) as (sim, client):
        start = trio.current_time()
        statuses: list[int] = []

        async def one() -> None:
            statuses.append(
                (await client.post("/chat/completions", json=chat("gpu", "hi"))).status_code
            )

        async with trio.open_nursery() as nursery:
            for _ in range(64):
                nursery.start_soon(one)
        assert trio.current_time() == repeated_sum(0.2, 4, start)
        assert statuses == [200] * 64
        stats = sim.stats()["gpu"]
        assert (stats.requests, stats.completed, stats.rate_limited) == (64, 64, 0)
        assert (stats.peak_concurrency, stats.in_flight, stats.queued) == (64, 0, 0)
        assert stats.busy_time == pytest.approx(0.8)
        waits = sorted({round(r.queued_for, 9) for r in sim.request_log()})
        assert waits == [0.0, 0.2, 0.4, 0.6]


@pytest.mark.deadline(15)
async def test_gpu_mode_never_serves_more_than_capacity_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The request log's service intervals never overlap more than ``capacity`` deep."""
    model = SimulatedModel(
        name="gpu", mode="gpu", capacity=3, latency=Latency(median=1.0, sigma=0.5)
    )
    async with simulated(model) as (sim, client):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(
                    partial(client.post, "/chat/completions", json=chat("gpu", f"q{i}"))
                )
        events = sorted(
            [(r.start + r.queued_for, 1) for r in sim.request_log()]
            + [(r.end, -1) for r in sim.request_log()]
        )
        depth = peak = 0
        for _, delta in events:
            depth += delta
            peak = max(peak, depth)
        assert peak == 3
        assert sim.stats()["gpu"].queued == 0


async def test_hosted_mode_answers_429_beyond_capacity_and_keeps_the_capacity_hidden(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Beyond ``capacity`` concurrent requests a hosted model answers 429 at once, with
    ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms``, but no budget headers:
    the capacity is a hidden limit."""
    model = SimulatedModel(name="api", capacity=4, retry_after=2.5, latency=Latency(median=1.0))
    async with simulated(model) as (sim, client):
        start = trio.current_time()
        responses: list[tuple[float, httpx.Response]] = []

        async def one() -> None:
            response = await client.post("/chat/completions", json=chat("api", "hi"))
            responses.append((trio.current_time() - start, response))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(one)
        limited = [(t, r) for t, r in responses if r.status_code == 429]
        assert len(limited) == 6
        assert all(t == 0 for t, _ in limited)
        assert sorted(r.status_code for _, r in responses) == [200] * 4 + [429] * 6
        headers = limited[0][1].headers
        assert headers["retry-after"] == "3"
        assert headers["retry-after-ms"] == "2500"
        assert not [name for name in headers if "ratelimit" in name]
        assert not [name for name in responses[0][1].headers if "ratelimit" in name]
        assert limited[0][1].json()["error"]["code"] == "rate_limit_exceeded"
        stats = sim.stats()["api"]
        assert (stats.requests, stats.rate_limited, stats.completed, stats.faults_sent) == (
            10,
            6,
            4,
            0,
        )
        assert (stats.limited_by_capacity, stats.peak_concurrency, stats.capacity) == (6, 4, 4)
        assert {r.limited_by for r in sim.request_log() if r.status == 429} == {"capacity"}


@pytest.mark.deadline(120)
async def test_hosted_rpm_budget_refills_one_request_every_60_over_rpm_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """rpm=3 is a bucket of 3 refilled at one request per 20 s: a burst of 3, then a 429 that
    says exactly when the next request fits; reset says when the bucket is full again."""
    model = SimulatedModel(name="api", rpm=3, latency=Latency(median=0.0))
    async with simulated(model) as (sim, client):
        body = chat("api", "hi")
        first = [(await client.post("/chat/completions", json=body)) for _ in range(3)]
        assert [r.headers["x-ratelimit-limit-requests"] for r in first] == ["3"] * 3
        assert [r.headers["x-ratelimit-remaining-requests"] for r in first] == ["2", "1", "0"]
        assert [r.headers["x-ratelimit-reset-requests"] for r in first] == ["20s", "40s", "1m0s"]
        refused = await client.post("/chat/completions", json=body)
        assert refused.status_code == 429
        assert (refused.headers["retry-after"], refused.headers["retry-after-ms"]) == (
            "20",
            "20000",
        )
        assert refused.headers["x-ratelimit-reset-requests"] == "1m0s"
        await trio.sleep(19)
        refused = await client.post("/chat/completions", json=body)
        assert (refused.status_code, refused.headers["retry-after-ms"]) == (429, "1000")
        await trio.sleep(1)
        assert (await client.post("/chat/completions", json=body)).status_code == 200
        stats = sim.stats()["api"]
        assert (stats.rate_limited, stats.limited_by_rpm, stats.admitted) == (2, 2, 4)
        assert stats.rpm_remaining == 0


async def test_hosted_tpm_budget_charges_prompt_plus_max_tokens_at_admission(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A request is charged prompt tokens + max_tokens; one that does not fit gets 429 with
    token headers and the exact wait until the bucket holds its charge."""
    model = SimulatedModel(name="api", tpm=100, latency=Latency(median=0.0))
    async with simulated(model) as (sim, client):
        body = chat("api", "x" * 200, max_tokens=30)  # 50 prompt + 30 reserved = 80 charged
        ok = await client.post("/chat/completions", json=body)
        usage = ok.json()["usage"]
        assert usage["prompt_tokens"] == 50
        assert ok.headers["x-ratelimit-remaining-tokens"] == "20"
        refused = await client.post("/chat/completions", json=body)
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-limit-tokens"] == "100"
        assert refused.headers["retry-after-ms"] == "36000"  # 60 missing tokens at 100/60 s
        assert "TPM" in refused.json()["error"]["message"]
        [first, second] = sim.request_log()
        assert (first.charged_tokens, first.prompt_tokens) == (80, 50)
        assert first.completion_tokens == usage["completion_tokens"]
        assert (second.limited_by, second.charged_tokens) == ("tpm", 0)


async def test_latency_is_median_plus_per_output_token_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With sigma 0 the service time is exactly median + per_output_token × completion tokens."""
    latency = Latency(median=0.5, per_output_token=0.01)
    async with simulated(SimulatedModel(name="m", latency=latency)) as (_, client):
        start = trio.current_time()
        response = await client.post("/chat/completions", json=chat("m", "hello there"))
        tokens = response.json()["usage"]["completion_tokens"]
        assert trio.current_time() == start + (0.5 + 0.01 * tokens)


@pytest.mark.deadline(40)
async def test_lognormal_latency_is_seeded(autojump_clock: trio.testing.MockClock) -> None:
    """The same seed gives the same sequence of latencies; another seed gives another."""

    async def durations(seed: int) -> list[float]:
        model = SimulatedModel(name="m", latency=Latency(median=1.0, sigma=0.5), seed=seed)
        async with simulated(model) as (sim, client):
            for _ in range(5):
                (await client.post("/chat/completions", json=chat("m", "hi"))).raise_for_status()
            return [r.end - r.start for r in sim.request_log()]

    first, again, other = await durations(1), await durations(1), await durations(2)
    assert first == pytest.approx(again, rel=1e-9, abs=0)
    assert first != other
    assert len(set(first)) == 5
    assert all(d > 0 for d in first)


# --------------------------------------------------------------------------- faults


def only(kind: str, **extra: Any) -> SimulatedModel:
    return SimulatedModel(
        name="f", latency=Latency(median=1.0), faults=Faults(**{f"rate_{kind}": 1.0}, **extra)
    )


SCHEMA_BODY = chat(
    "f",
    "Give a city.",
    response_format={
        "type": "json_schema",
        "json_schema": {
            "name": "city",
            "schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_injected_http_errors_reach_the_client_at_once(
    autojump_clock: trio.testing.MockClock, status: int
) -> None:
    """Injected 429/500/503s answer immediately with an OpenAI error body."""
    async with simulated(only(str(status))) as (sim, client):
        start = trio.current_time()
        response = await client.post("/chat/completions", json=SCHEMA_BODY)
        assert trio.current_time() == start
        assert response.status_code == status
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert ("retry-after" in response.headers) == (status == 429)
        stats = sim.stats()["f"]
        assert (stats.faults_sent, stats.rate_limited, stats.completed) == (
            1,
            int(status == 429),
            0,
        )
        assert sim.request_log()[0].fault == str(status)


async def test_injected_reset_drops_the_connection_without_a_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A reset fault closes the connection; httpx sees a RemoteProtocolError."""
    async with simulated(only("reset")) as (sim, client):
        with pytest.raises(
            httpx.RemoteProtocolError, match=r"^Server disconnected without sending a response\.$"
        ):
            await client.post("/chat/completions", json=SCHEMA_BODY)
        [record] = sim.request_log()
        assert (record.status, record.fault) == (0, "reset")


@pytest.mark.deadline(20)
async def test_injected_hang_outlasts_the_client_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A hang holds the request past the client's timeout; the server notices the departure."""
    async with simulated(only("hang", hang_seconds=3600), client_timeout=10.0) as (sim, client):
        start = trio.current_time()
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/chat/completions", json=SCHEMA_BODY)
        assert trio.current_time() == start + 10.0
        await trio.testing.wait_all_tasks_blocked()
        [record] = sim.request_log()
        assert (record.status, record.fault) == (499, "hang")
        assert sim.stats()["f"].in_flight == 0


@pytest.mark.deadline(90)
async def test_injected_hang_answers_after_hang_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A patient client gets a normal answer after ``hang_seconds`` instead of the latency."""
    async with simulated(only("hang", hang_seconds=42.0), client_timeout=None) as (_, client):
        start = trio.current_time()
        response = await client.post("/chat/completions", json=SCHEMA_BODY)
        assert trio.current_time() == start + 42.0
        assert json.loads(content_of(response))["city"]


async def test_injected_empty_content(autojump_clock: trio.testing.MockClock) -> None:
    """An empty-content fault is a 200 with ``content == ""`` and zero completion tokens."""
    async with simulated(only("empty")) as (sim, client):
        response = await client.post("/chat/completions", json=SCHEMA_BODY)
        assert content_of(response) == ""
        assert response.json()["usage"]["completion_tokens"] == 0
        assert sim.stats()["f"].completed == 1


@pytest.mark.parametrize("body", [SCHEMA_BODY, chat("f", "Tell me about owls.")])
async def test_injected_malformed_content_is_not_json(
    autojump_clock: trio.testing.MockClock, body: dict[str, Any]
) -> None:
    """A malformed-content fault is a 200 whose content no JSON parser accepts."""
    async with simulated(only("malformed")) as (_, client):
        text = content_of(await client.post("/chat/completions", json=body))
        assert text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)


async def test_injected_truncation_cuts_json_and_says_length(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A truncation fault halves the content and sets finish_reason to "length"."""
    async with simulated(SimulatedModel(name="f")) as (_, client):
        full = content_of(await client.post("/chat/completions", json=SCHEMA_BODY))
    async with simulated(only("truncated")) as (_, client):
        response = await client.post("/chat/completions", json=SCHEMA_BODY)
    assert response.json()["choices"][0]["finish_reason"] == "length"
    assert content_of(response) == full[: len(full) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(content_of(response))


async def test_fault_rates_mix_deterministically(autojump_clock: trio.testing.MockClock) -> None:
    """Partial rates inject roughly that share of faults, identically for the same seed."""

    async def statuses(seed: int) -> list[int]:
        model = SimulatedModel(
            name="f",
            latency=Latency(median=0.0),
            seed=seed,
            faults=Faults(rate_500=0.3, rate_503=0.2),
        )
        async with simulated(model) as (_, client):
            return [
                (await client.post("/chat/completions", json=chat("f", "x"))).status_code
                for _ in range(100)
            ]

    first = await statuses(7)
    assert first == await statuses(7)
    assert 15 <= first.count(500) <= 45
    assert 8 <= first.count(503) <= 35
    assert first.count(200) + first.count(500) + first.count(503) == 100


def test_fault_rates_must_not_add_up_to_more_than_one() -> None:
    """Rates are laid end to end on [0, 1), so their sum is capped at 1."""
    with pytest.raises(
        ValueError, match=r"^the fault rates add up to 1\.2; their sum must be at most 1$"
    ):
        Faults(rate_500=0.6, rate_reset=0.6)


# --------------------------------------------------------------------------- content


PYDANTIC_SCHEMA: dict[str, Any] = {
    "$defs": {
        "Address": {
            "properties": {
                "street": {"title": "Street", "type": "string", "minLength": 3},
                "zip": {"pattern": "^[0-9]{5}$", "title": "Zip", "type": "string", "maxLength": 5},
            },
            "required": ["street"],
            "title": "Address",
            "type": "object",
        },
        "Node": {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
            "required": ["label", "children"],
        },
    },
    "properties": {
        "name": {"title": "Name", "type": "string", "maxLength": 12},
        "age": {"title": "Age", "type": "integer", "minimum": 18, "exclusiveMaximum": 21},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "multipleOf": 0.05},
        "kind": {"enum": ["cat", "dog"]},
        "version": {"const": 2},
        "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "home": {"$ref": "#/$defs/Address"},
        "work": {"allOf": [{"$ref": "#/$defs/Address"}], "description": "old pydantic style"},
        "tags": {
            "type": "array",
            "items": {"type": "string", "enum": ["a", "b", "c"]},
            "minItems": 2,
            "maxItems": 3,
            "uniqueItems": True,
        },
        "pair": {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "boolean"}],
            "items": False,
            "minItems": 2,
        },
        "either": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
        "tree": {"$ref": "#/$defs/Node"},
        "maybe": {"type": ["null", "boolean"]},
    },
    "required": ["name", "age", "score", "kind", "version", "home", "tags", "pair", "tree"],
    "additionalProperties": False,
    "title": "Person",
    "type": "object",
}

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        name: {
            "type": "object",
            "properties": {
                "reasoning": {"type": "string"},
                "score": {"enum": ["1", "2", "3", "4"]},
            },
            "required": ["reasoning", "score"],
        }
        for name in ("accuracy", "style")
    },
    "required": ["accuracy", "style"],
}


def test_pydantic_style_schema_instances_validate() -> None:
    """Instances of a schema with $defs, $ref, recursion, anyOf/oneOf/allOf, bounds validate."""
    for seed in range(200):
        instance = schema_instance(PYDANTIC_SCHEMA, random.Random(seed), words=["owl", "forest"])
        assert schema_errors(instance, PYDANTIC_SCHEMA) == [], instance


def schema_strategy() -> st.SearchStrategy[dict[str, Any]]:
    """Random schemas built only from keywords the simulator promises to honour."""
    scalar = st.one_of(st.integers(-5, 5), st.text(max_size=4), st.booleans(), st.none())
    leaves = st.one_of(
        st.builds(
            lambda lo, extra: {"type": "string", "minLength": lo, "maxLength": lo + extra},
            st.integers(0, 30),
            st.integers(0, 10),
        ),
        st.just({"type": "string", "format": "date-time"}),
        st.builds(
            _integer_schema,
            st.integers(-50, 50),
            st.integers(2, 40),
            st.booleans(),
            st.sampled_from([None, 1, 3, 7]),
        ),
        st.builds(
            _number_schema,
            st.integers(-50, 50),
            st.integers(1, 40),
            st.booleans(),
            st.sampled_from([None, 0.5, 0.1, 0.25]),
        ),
        st.just({"type": "boolean"}),
        st.just({"type": "null"}),
        st.builds(
            lambda values: {"enum": values},
            st.lists(scalar, min_size=1, max_size=4, unique_by=json.dumps),
        ),
        st.builds(lambda value: {"const": value}, scalar),
    )

    def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        props = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), children, max_size=4)
        return st.one_of(
            st.builds(_object_schema, props, st.data(), st.booleans()),
            st.builds(
                lambda items, lo, extra: {
                    "type": "array",
                    "items": items,
                    "minItems": lo,
                    "maxItems": lo + extra,
                },
                children,
                st.integers(0, 3),
                st.integers(0, 3),
            ),
            st.builds(lambda child: {"anyOf": [child, {"type": "null"}]}, children),
            st.builds(lambda child: {"$defs": {"D": child}, "$ref": "#/$defs/D"}, children),
        )

    return st.recursive(leaves, extend, max_leaves=12)


def _integer_schema(low: int, gap: int, exclusive: bool, step: int | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    schema.update(
        {"exclusiveMinimum": low, "exclusiveMaximum": low + gap + (step or 0)}
        if exclusive
        else {"minimum": low, "maximum": low + gap + (step or 0)}
    )
    if step:
        schema["multipleOf"] = step
    return schema


def _number_schema(low: int, gap: int, exclusive: bool, step: float | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    high = low + gap / 10
    schema.update(
        {"exclusiveMinimum": low, "exclusiveMaximum": high}
        if exclusive
        else {"minimum": low, "maximum": high}
    )
    if step and not exclusive:
        schema["multipleOf"] = step
    return schema


def _object_schema(props: dict[str, Any], data: st.DataObject, closed: bool) -> dict[str, Any]:
    required = data.draw(st.lists(st.sampled_from(sorted(props)), unique=True)) if props else []
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": not closed,
    }


@settings(max_examples=300, deadline=None)
@given(schema=schema_strategy(), seed=st.integers(0, 2**32))
def test_generated_schema_instances_validate(schema: dict[str, Any], seed: int) -> None:
    """For any schema built from the supported keywords, the instance validates."""
    # $ref targets live under the subschema that declares them: make them reachable from root.
    root = _hoist_defs(schema)
    instance = schema_instance(root, random.Random(seed))
    assert schema_errors(instance, root) == []


def _hoist_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Rename every nested ``$defs`` entry uniquely and move it to the root."""
    defs: dict[str, Any] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = {k: walk(v) for k, v in node.items()}
        if "$defs" in node:
            name = f"D{len(defs)}"
            defs[name] = node.pop("$defs")["D"]
            node["$ref"] = f"#/$defs/{name}"
        return node

    walked = walk(schema)
    return {**walked, "$defs": {**walked.get("$defs", {}), **defs}} if defs else walked


async def test_response_format_json_schema_returns_bare_valid_json(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """response_format json_schema → bare JSON that validates (judge-style enums included)."""
    async with simulated(SimulatedModel(name="m")) as (_, client):
        for schema in (PYDANTIC_SCHEMA, JUDGE_SCHEMA):
            body = chat(
                "m",
                "Judge the answer.",
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": schema},
                },
            )
            instance = json.loads(content_of(await client.post("/chat/completions", json=body)))
            assert schema_errors(instance, schema) == []


async def test_schema_in_the_prompt_returns_fenced_valid_json(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A schema between <response_schema> tags → a ```json fenced instance."""
    prompt = f"Rate it.\n<response_schema>\n{json.dumps(JUDGE_SCHEMA)}\n</response_schema>"
    async with simulated(SimulatedModel(name="m")) as (_, client):
        text = content_of(await client.post("/chat/completions", json=chat("m", prompt)))
        assert schema_errors(fenced_json(text), JUDGE_SCHEMA) == []
        body = chat("m", prompt, response_format={"type": "json_object"})
        bare = content_of(await client.post("/chat/completions", json=body))
        assert schema_errors(json.loads(bare), JUDGE_SCHEMA) == []


async def test_json_object_without_schema_returns_an_object(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """json_object mode with no schema anywhere still returns a bare JSON object."""
    async with simulated(SimulatedModel(name="m")) as (_, client):
        body = chat("m", "Facts about owls, as JSON.", response_format={"type": "json_object"})
        assert isinstance(
            json.loads(content_of(await client.post("/chat/completions", json=body))), dict
        )


@pytest.mark.parametrize("language", ["python", "sql", "rust", "haskell"])
async def test_code_requests_get_a_block_fenced_in_their_language(
    autojump_clock: trio.testing.MockClock, language: str
) -> None:
    """A fence opener in the prompt → a code block fenced with that language."""
    prompt = f"Write a function that counts words.\n```{language}\n"
    async with simulated(SimulatedModel(name="m")) as (_, client):
        text = content_of(await client.post("/chat/completions", json=chat("m", prompt)))
    opener = f"```{language}\n"
    assert opener in text
    assert text.endswith("```")
    code = text.split(opener, 1)[1].removesuffix("```")
    assert code.strip()
    if language == "python":
        compile(code, "<simulated>", "exec")


async def test_plain_text_uses_the_prompt_words(autojump_clock: trio.testing.MockClock) -> None:
    """Plain answers are sentences that reuse the prompt's content words."""
    async with simulated(SimulatedModel(name="m")) as (_, client):
        prompts = [f"Write about volcanoes and glaciers, variant {i}" for i in range(10)]
        texts = [
            content_of(await client.post("/chat/completions", json=chat("m", p))) for p in prompts
        ]
    assert all(t.endswith(".") for t in texts)
    assert all(t[0].isupper() for t in texts)
    assert any("volcanoes" in t or "glaciers" in t for t in texts)


@pytest.mark.deadline(250)
async def test_same_request_gets_the_same_content(autojump_clock: trio.testing.MockClock) -> None:
    """Content depends only on model name, messages and schema: not on time, order or server."""
    bodies = [
        chat("m", "Tell me about owls."),
        SCHEMA_BODY | {"model": "m"},
        chat("m", "Code:\n```python"),
    ]

    async def contents() -> list[str]:
        async with simulated(SimulatedModel(name="m", seed=99)) as (_, client):
            return [content_of(await client.post("/chat/completions", json=b)) for b in bodies]

    first = await contents()
    await trio.sleep(123)
    assert first == await contents()
    async with simulated(SimulatedModel(name="m")) as (_, client):
        other = content_of(
            await client.post("/chat/completions", json=chat("m", "Tell me about bats."))
        )
    assert other != first[0]


async def test_request_seed_varies_the_content_deterministically(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """OpenAI's ``seed`` field picks another answer to the same prompt, the same one each time."""
    async with simulated(SimulatedModel(name="m")) as (_, client):

        async def ask(**extra: Any) -> str:
            body = chat("m", "Tell me about owls.", **extra)
            return content_of(await client.post("/chat/completions", json=body))

        unseeded, one, two = await ask(), await ask(seed=1), await ask(seed=2)
        assert len({unseeded, one, two}) == 3
        assert await ask(seed=1) == one


async def test_max_tokens_too_small_sets_finish_reason_length(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A max_tokens below the answer's length cuts it and reports 'length'."""
    async with simulated(SimulatedModel(name="m")) as (_, client):
        response = await client.post(
            "/chat/completions", json=chat("m", "Tell me about owls.", max_tokens=2)
        )
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "length"
        assert response.json()["usage"]["completion_tokens"] == 2
        roomy = await client.post(
            "/chat/completions", json=chat("m", "Tell me about owls.", max_completion_tokens=500)
        )
        assert roomy.json()["choices"][0]["finish_reason"] == "stop"


async def test_reasoning_content_only_when_asked_or_for_reasoning_models(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """reasoning_content appears only on request or for *reason* models, and is counted."""
    async with simulated(SimulatedModel(name="plain"), SimulatedModel(name="deep-reasoner")) as (
        _,
        client,
    ):
        plain = (await client.post("/chat/completions", json=chat("plain", "Why?"))).json()
        asked = (
            await client.post("/chat/completions", json=chat("plain", "Why?", reasoning=True))
        ).json()
        model = (await client.post("/chat/completions", json=chat("deep-reasoner", "Why?"))).json()
    assert "reasoning_content" not in plain["choices"][0]["message"]
    assert plain["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    for body in (asked, model):
        reasoning = body["choices"][0]["message"]["reasoning_content"]
        usage = body["usage"]
        assert usage["completion_tokens_details"]["reasoning_tokens"] == count_tokens(reasoning) > 0
        content_tokens = count_tokens(body["choices"][0]["message"]["content"])
        assert usage["completion_tokens"] == content_tokens + count_tokens(reasoning)
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_chat_response_follows_the_openai_schema(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The chat completion body has OpenAI's fields and ceil(chars/4) token counts."""
    async with simulated(SimulatedModel(name="m")) as (_, client):
        body = (await client.post("/chat/completions", json=chat("m", "Hello"))).json()
    assert {"id", "object", "created", "model", "choices", "usage"} <= set(body)
    assert body["object"] == "chat.completion"
    assert body["model"] == "m"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["prompt_tokens"] == count_tokens("Hello") == 2


# --------------------------------------------------------------------------- other endpoints


async def test_embeddings_are_deterministic_unit_vectors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Embeddings are unit vectors of the requested size, stable per text, float or base64."""
    async with simulated(SimulatedModel(name="emb", latency=Latency(median=0.0))) as (sim, client):
        default = (await client.post("/embeddings", json={"model": "emb", "input": "owl"})).json()
        many = (
            await client.post(
                "/embeddings", json={"model": "emb", "input": ["owl", "bat"], "dimensions": 8}
            )
        ).json()
        again = (
            await client.post(
                "/embeddings", json={"model": "emb", "input": ["owl"], "dimensions": 8}
            )
        ).json()
        b64 = (
            await client.post(
                "/embeddings",
                json={"model": "emb", "input": "owl", "dimensions": 8, "encoding_format": "base64"},
            )
        ).json()
    assert len(default["data"][0]["embedding"]) == 64
    vectors = [d["embedding"] for d in many["data"]]
    assert [len(v) for v in vectors] == [8, 8]
    assert vectors[0] != vectors[1]
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in vectors)
    assert again["data"][0]["embedding"] == vectors[0]
    decoded = struct.unpack("<8f", base64.b64decode(b64["data"][0]["embedding"]))
    assert decoded == pytest.approx(vectors[0], rel=1e-6)
    assert many["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert sim.stats()["emb"].completed == 4


async def test_models_endpoint_lists_every_model(autojump_clock: trio.testing.MockClock) -> None:
    """GET /v1/models lists the models; /v1/models/{id} finds one or 404s."""
    async with simulated(SimulatedModel(name="a"), SimulatedModel(name="b")) as (_, client):
        listing = (await client.get("/models")).json()
        one = await client.get("/models/b")
        missing = await client.get("/models/zzz")
    assert [m["id"] for m in listing["data"]] == ["a", "b"]
    assert one.json()["id"] == "b"
    assert missing.status_code == 404


async def test_stats_endpoint_and_reset(autojump_clock: trio.testing.MockClock) -> None:
    """GET /stats serves the same numbers as stats(); both resets zero them."""
    async with simulated(SimulatedModel(name="m", latency=Latency(median=0.5))) as (sim, client):
        for _ in range(3):
            await client.post("/chat/completions", json=chat("m", "hi"))
        root = sim.url.removesuffix("/v1")
        served = (await client.get(f"{root}/stats")).json()["models"]["m"]
        assert served == attrs.asdict(sim.stats()["m"])
        assert (served["requests"], served["completed"], served["busy_time"]) == (3, 3, 1.5 / 64)
        assert served["input_tokens"] == 3
        assert served["output_tokens"] > 0
        assert len(sim.request_log()) == 3
        assert (await client.post(f"{root}/stats/reset")).json() == {"reset": True}
        after = sim.stats()["m"]
        zeroed = (after.requests, after.completed, after.busy_time, after.input_tokens)
        assert zeroed == (0, 0, 0.0, 0)
        assert (after.output_tokens, after.peak_concurrency) == (0, 0)
        assert sim.request_log() == ()
        await client.post("/chat/completions", json=chat("m", "hi"))
        sim.reset()
        assert sim.stats()["m"].completed == 0


async def test_log_endpoint_serves_the_request_log(autojump_clock: trio.testing.MockClock) -> None:
    """GET /log serves request_log() and the simulator's clock, for clients in other processes."""
    async with simulated(SimulatedModel(name="m", latency=Latency(median=0.5))) as (sim, client):
        await client.post("/chat/completions", json=chat("m", "hi"))
        await trio.sleep(1)
        root = sim.url.removesuffix("/v1")
        served = (await client.get(f"{root}/log")).json()
    assert served["time"] == 1.5
    assert served["records"] == [attrs.asdict(r) for r in sim.request_log()]
    assert (served["records"][0]["start"], served["records"][0]["end"]) == (0.0, 0.5)


@pytest.mark.deadline(20)
async def test_reset_keeps_live_gauges(autojump_clock: trio.testing.MockClock) -> None:
    """A reset mid-request keeps in_flight and restarts peak from it."""
    async with simulated(SimulatedModel(name="m", latency=Latency(median=10.0))) as (sim, client):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(client.post, "/chat/completions", json=chat("m", "hi")))
            await trio.sleep(1)
            sim.reset()
            stats = sim.stats()["m"]
            assert (stats.in_flight, stats.peak_concurrency, stats.requests) == (1, 1, 0)
        assert sim.stats()["m"].busy_time == 9.0 / 64


def _raw(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


_ONE = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/chat/completions", b"{not json", 400, "invalid_json"),
        ("POST", "/chat/completions", b"[1]", 400, "invalid_json"),
        ("POST", "/chat/completions", _raw(model="nope", messages=[]), 404, "model_not_found"),
        ("POST", "/chat/completions", _raw(messages=[]), 400, "missing_model"),
        ("POST", "/chat/completions", _raw(model="m", messages=[]), 400, None),
        (
            "POST",
            "/chat/completions",
            _raw(model="m", messages=[{"role": "user", "content": 5}]),
            400,
            None,
        ),
        ("POST", "/chat/completions", _raw(model="m", messages=_ONE, stream=True), 400, None),
        ("POST", "/chat/completions", _raw(model="m", messages=_ONE, max_tokens=0), 400, None),
        ("POST", "/chat/completions", _raw(model="m", messages=_ONE, n=2), 400, None),
        (
            "POST",
            "/chat/completions",
            _raw(model="m", messages=_ONE, response_format={"type": "xml"}),
            400,
            None,
        ),
        ("POST", "/embeddings", _raw(model="m", input=[]), 400, None),
        ("POST", "/embeddings", _raw(model="m", input="x", dimensions=0), 400, None),
        ("POST", "/embeddings", _raw(model="m", input="x", encoding_format="hex"), 400, None),
        ("GET", "/chat/completions", b"", 405, "method_not_allowed"),
        ("POST", "/completions", b"{}", 404, "unknown_url"),
    ],
)
async def test_bad_requests_get_openai_style_errors(
    autojump_clock: trio.testing.MockClock,
    method: str,
    path: str,
    body: bytes,
    status: int,
    code: str | None,
) -> None:
    """Invalid requests get 4xx with an OpenAI error body and never reach a model."""
    async with simulated(SimulatedModel(name="m")) as (sim, client):
        response = await client.request(method, path, content=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"].endswith(".")
    assert error["code"] == code or code is None
    assert sim.stats()["m"].completed == 0


@pytest.mark.deadline(30)
async def test_client_leaving_the_gpu_queue_frees_its_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A queued request whose client times out leaves the queue (vLLM aborts it too)."""
    model = SimulatedModel(name="gpu", mode="gpu", capacity=1, latency=Latency(median=10.0))
    async with simulated(model, client_timeout=15.0) as (sim, client):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(partial(_post_ignoring_timeouts, client, chat("gpu", "x")))
            await trio.sleep(12)
            assert (sim.stats()["gpu"].in_flight, sim.stats()["gpu"].queued) == (2, 1)
        await trio.testing.wait_all_tasks_blocked()
        statuses = sorted(r.status for r in sim.request_log())
        assert statuses == [200, 499, 499]
        assert (sim.stats()["gpu"].in_flight, sim.stats()["gpu"].queued) == (0, 0)


async def _post_ignoring_timeouts(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    with suppress(httpx.TimeoutException):
        await client.post("/chat/completions", json=body)


async def test_serve_simulator_hands_back_a_handle_and_stops_on_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """nursery.start(serve_simulator) returns a live handle; cancelling closes the port."""
    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            sim: Simulator = await nursery.start(
                partial(serve_simulator, [SimulatedModel(name="m")], port=0)
            )
            assert sim.url == f"http://127.0.0.1:{sim.port}/v1"
            assert sim.port > 0
            async with httpx.AsyncClient(base_url=sim.url) as client:
                assert (await client.get("/models")).status_code == 200
            nursery.cancel_scope.cancel()
        async with httpx.AsyncClient(base_url=sim.url) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("/models")


async def test_duplicate_or_missing_models_are_config_errors() -> None:
    """Serving no models or two of the same name is a ConfigError, raised unwrapped."""
    with pytest.raises(
        ConfigError, match=r"^model name 'a' is used more than once; give each model its own name$"
    ):
        async with open_simulator([SimulatedModel(name="a"), SimulatedModel(name="a")]):
            pass
    with pytest.raises(ConfigError, match=r"^the simulator needs at least one model$"):
        async with open_simulator([]):
            pass


# --------------------------------------------------------------------------- profiles & CLI


def test_load_profile_reads_nested_latency_and_faults(tmp_path: Path) -> None:
    """A YAML profile builds SimulatedModels with nested latency and faults."""
    profile = tmp_path / "sim.yaml"
    profile.write_text(
        "models:\n"
        "  - name: gen\n"
        "    mode: gpu\n"
        "    capacity: 16\n"
        "    latency: {median: 0.5, sigma: 0.3, per_output_token: 0.002}\n"
        "  - name: judge\n"
        "    rpm: 600\n"
        "    faults: {rate_429: 0.05, rate_500: 0.01}\n"
    )
    gen, judge = load_profile(profile)
    assert gen == SimulatedModel(
        name="gen",
        mode="gpu",
        capacity=16,
        latency=Latency(median=0.5, sigma=0.3, per_output_token=0.002),
    )
    assert judge == SimulatedModel(
        name="judge", rpm=600, faults=Faults(rate_429=0.05, rate_500=0.01)
    )


def test_load_profile_lists_every_problem(tmp_path: Path) -> None:
    """A bad profile raises one ConfigError listing every problem with its path."""
    profile = tmp_path / "bad.yaml"
    profile.write_text(
        "models:\n"
        "  - name: gen\n"
        "    latency: {medain: 0.5}\n"
        "  - name: api\n"
        "    capacity: 0\n"
        "  - mode: gpu\n"
        "  - name: gen\n"
    )
    with pytest.raises(ConfigError) as info:
        load_profile(profile)
    assert info.value.problems == (
        "models[0].latency.medain: unknown field; did you mean 'median'?",
        "models[1]: 'capacity' must be >= 1: 0",
        "models[2].name: missing; every simulated model needs a name",
        "model name 'gen' is used more than once; give each model its own name",
    )


def test_parse_model_spec_reads_the_cli_form() -> None:
    """The CLI's NAME:key=value form maps flat keys onto the nested config."""
    model = parse_model_spec(
        "gen:latency=0.5,sigma=0.3,capacity=16,mode=gpu,rate_429=0.05,rpm=none"
    )
    assert model == SimulatedModel(
        name="gen",
        mode="gpu",
        capacity=16,
        latency=Latency(median=0.5, sigma=0.3),
        faults=Faults(rate_429=0.05),
    )
    assert parse_model_spec("bare") == SimulatedModel(name="bare")
    with pytest.raises(
        ConfigError,
        match=r"^model spec 'g:capacty=3': unknown key 'capacty'; did you mean 'capacity'\?$",
    ):
        parse_model_spec("g:capacty=3")


def test_cli_rejects_a_bad_model_spec_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid --model exits with code 2 and names the problem."""
    with pytest.raises(SystemExit) as info:
        cli.main(["--model", "g:mode=tpu"])
    assert info.value.code == 2
    assert "mode" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_serves_one_request_and_exits_cleanly_on_sigint() -> None:
    """The CLI prints its URL, answers, and exits 0 on Ctrl-C (real process, real time)."""
    command = [
        sys.executable,
        "-m",
        "trio_designer.simulator",
        "--port",
        "0",
        "--model",
        "m:latency=0",
    ]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        assert url.endswith("/v1"), url
        response = httpx.post(f"{url}/chat/completions", json=chat("m", "Hello"), timeout=10)
        assert response.status_code == 200
        assert content_of(response)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        watchdog.cancel()
        process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_statistics_snapshot_is_a_frozen_value() -> None:
    """SimulatorStats and ModelStats are frozen attrs values (safe to hand around)."""
    from trio_designer.simulator import ModelStats, SimulatorStats

    stats = SimulatorStats(models={"m": ModelStats(requests=1)}, time=0.0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.models["m"].requests = 2  # type: ignore[misc]
    assert stats["m"].requests == 1
    assert stats.to_dict() == {
        "time": 0.0,
        "unauthorized": 0,
        "models": {"m": attrs.asdict(ModelStats(requests=1))},
    }
