"""The simulator behaving like real, hostile endpoints: budgets and their headers, moving hidden
capacities, sporadic 429s, trickling / oversize / filtered / truncated answers, API keys and
outages (docs/simulator.md).

Everything goes through a real ``httpx.AsyncClient`` to the real server on 127.0.0.1 inside the
test's ``trio.run`` under ``autojump_clock``: latencies, budgets and schedules run on virtual
time, so waits are asserted exactly. Every test runs under a ``trio.fail_after`` sized (in
virtual seconds) to what it does.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

from trio_designer._exceptions import ConfigError
from trio_designer.simulator import (
    Faults,
    Latency,
    SimulatedModel,
    Simulator,
    open_simulator,
    parse_model_spec,
    read_profile,
)
from trio_designer.simulator import __main__ as cli
from trio_designer.simulator._budget import format_duration
from trio_designer.simulator._content import count_tokens

DOCS = Path(__file__).resolve().parents[1] / "docs" / "simulator.md"
ZERO = Latency(median=0.0)


@asynccontextmanager
async def simulated(
    *models: SimulatedModel,
    deadline: float,
    client_timeout: float | httpx.Timeout | None = 30.0,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    """A simulator on 127.0.0.1 and an httpx client pointed at it, under ``fail_after``."""
    with trio.fail_after(deadline):
        async with open_simulator(models, api_key=api_key) as sim:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(
                base_url=sim.url, timeout=client_timeout, limits=limits, headers=headers
            ) as client:
                yield sim, client


def chat(model: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/chat/completions", json=body)


def choice(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    first: dict[str, Any] = response.json()["choices"][0]
    return first


def ratelimit_names(response: httpx.Response) -> set[str]:
    return {name for name in response.headers if "ratelimit" in name}


# --------------------------------------------------------------------------- headers


def test_durations_are_printed_like_go() -> None:
    """Reset durations use Go's time.Duration style, rounded up to the millisecond."""
    cases = {
        0.0: "0s",
        0.012: "12ms",
        0.0121: "13ms",
        0.999: "999ms",
        1.0: "1s",
        1.5: "1.5s",
        59.5: "59.5s",
        59.9994: "1m0s",
        60.0: "1m0s",
        360.0: "6m0s",
        3725.25: "1h2m5.25s",
        -1.0: "0s",
    }
    assert {seconds: format_duration(seconds) for seconds in cases} == cases


async def test_a_budgeted_model_sends_openai_headers_on_every_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """rpm/tpm models send the x-ratelimit triples on 200s and on injected errors; a model
    without budgets and a gpu model send none (rpm/tpm are ignored in gpu mode)."""
    budgeted = SimulatedModel(name="api", rpm=600, tpm=1000, latency=ZERO)
    failing = SimulatedModel(name="bad", rpm=600, latency=ZERO, faults=Faults(rate_500=1.0))
    plain = SimulatedModel(name="plain", latency=ZERO)
    gpu = SimulatedModel(name="gpu", mode="gpu", rpm=600, tpm=1000, latency=ZERO)
    async with simulated(budgeted, failing, plain, gpu, deadline=60) as (_, client):
        ok = await post(client, chat("api", "x" * 40, max_tokens=90))  # charged 10 + 90
        error = await post(client, chat("bad", "hi"))
        unbudgeted = await post(client, chat("plain", "hi"))
        served = await post(client, chat("gpu", "hi"))
    assert dict((k, v) for k, v in ok.headers.items() if "ratelimit" in k) == {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "599",
        "x-ratelimit-reset-requests": "100ms",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "6s",
    }
    assert error.status_code == 500
    assert error.headers["x-ratelimit-remaining-requests"] == "599"
    assert ratelimit_names(unbudgeted) == ratelimit_names(served) == set()


async def test_ietf_style_sends_the_current_drafts_two_fields(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ratelimit_headers="ietf" sends RateLimit-Policy (constant) and RateLimit (r = whole units
    left, t = whole seconds until the quota is full again), and no x-ratelimit headers."""
    model = SimulatedModel(name="api", rpm=600, tpm=1000, ratelimit_headers="ietf", latency=ZERO)
    async with simulated(model, deadline=60) as (_, client):
        ok = await post(client, chat("api", "x" * 40, max_tokens=90))
    assert ok.headers["ratelimit-policy"] == '"rpm";q=600;w=60, "tpm";q=1000;qu="tokens";w=60'
    assert ok.headers["ratelimit"] == '"rpm";r=599;t=1, "tpm";r=900;t=6'
    assert ratelimit_names(ok) == {"ratelimit-policy", "ratelimit"}


async def test_ratelimit_headers_none_hides_the_budgets_but_not_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ratelimit_headers="none" sends no budget header; a budget 429 still says when to retry."""
    model = SimulatedModel(name="api", rpm=1, ratelimit_headers="none", latency=ZERO)
    async with simulated(model, deadline=60) as (_, client):
        ok = await post(client, chat("api", "hi"))
        refused = await post(client, chat("api", "hi"))
    assert ratelimit_names(ok) == ratelimit_names(refused) == set()
    assert (refused.status_code, refused.headers["retry-after-ms"]) == (429, "60000")


async def test_retry_after_as_an_http_date(autojump_clock: trio.testing.MockClock) -> None:
    """retry_after_header="http-date" puts a wall-clock date (rounded up) in Retry-After and
    sends no retry-after-ms, so a client must parse the date."""
    model = SimulatedModel(name="api", capacity=1, retry_after=30.0, retry_after_header="http-date")
    async with simulated(model, deadline=60) as (_, client), trio.open_nursery() as nursery:
        nursery.start_soon(post, client, chat("api", "slow"))
        await trio.testing.wait_all_tasks_blocked()
        wall_before = time.time()
        refused = await post(client, chat("api", "hi"))
        wall_after = time.time()
    assert refused.status_code == 429
    assert "retry-after-ms" not in refused.headers
    when = email.utils.parsedate_to_datetime(refused.headers["retry-after"]).timestamp()
    assert wall_before + 30 <= when <= math.ceil(wall_after + 30)


async def test_retry_after_none_sends_no_hint_at_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """retry_after_header="none" drops Retry-After and retry-after-ms from every 429: an
    injected one, a capacity one and a budget one."""
    limited = SimulatedModel(
        name="api", capacity=1, rpm=1, latency=Latency(median=1.0), retry_after_header="none"
    )
    injecting = SimulatedModel(name="noisy", retry_after_header="none", faults=Faults(rate_429=1.0))
    async with simulated(limited, injecting, deadline=60) as (sim, client):
        refused = [await post(client, chat("noisy", "hi"))]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post, client, chat("api", "first"))
            await trio.testing.wait_all_tasks_blocked()
            refused.append(await post(client, chat("api", "at capacity")))
        refused.append(await post(client, chat("api", "over the rpm budget")))
        causes = [r.limited_by for r in sim.request_log() if r.status == 429]
    assert causes == ["injected", "capacity", "rpm"]
    for response in refused:
        assert response.status_code == 429
        assert "retry-after" not in response.headers
        assert "retry-after-ms" not in response.headers


# --------------------------------------------------------------------------- budgets


async def test_a_request_larger_than_the_token_budget_is_told_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A charge above the whole TPM budget can never fit: 429 naming both numbers."""
    model = SimulatedModel(name="api", tpm=100, latency=ZERO)
    async with simulated(model, deadline=60) as (sim, client):
        refused = await post(client, chat("api", "x" * 40, max_tokens=200))
    message = refused.json()["error"]["message"]
    assert refused.status_code == 429
    assert "needs 210 tokens" in message
    assert "100 TPM" in message
    assert sim.stats()["api"].limited_by_tpm == 1


async def test_without_max_tokens_the_charge_is_the_real_completion(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With no max_tokens a request is charged prompt + the completion tokens it gets."""
    model = SimulatedModel(name="api", tpm=10_000, latency=ZERO)
    async with simulated(model, deadline=60) as (sim, client):
        response = await post(client, chat("api", "Tell me about owls."))
    usage = response.json()["usage"]
    [record] = sim.request_log()
    assert record.charged_tokens == usage["total_tokens"]
    assert response.headers["x-ratelimit-remaining-tokens"] == str(10_000 - usage["total_tokens"])
    assert sim.stats()["api"].charged_tokens == usage["total_tokens"]


class HeaderPacer:
    """A client-side pacer that knows nothing but what the headers and ``usage`` say.

    It keeps its own picture of each bucket (limit and remaining from the last response,
    refilled at limit / 60 per second, debited when it sends) and sends a request only when
    both buckets hold its charge: 1 request and (prompt estimate + max_tokens) tokens. The
    prompt estimate starts at ``ceil(chars / 4)`` and is replaced by ``usage.prompt_tokens``.
    """

    def __init__(self) -> None:
        self.limits: dict[str, float] = {}
        self.levels: dict[str, float] = {}
        self.mark = 0.0
        self.prompt_tokens: int | None = None

    def _refill(self, now: float) -> None:
        for unit, limit in self.limits.items():
            self.levels[unit] = min(limit, self.levels[unit] + (now - self.mark) * limit / 60)
        self.mark = now

    def wait(self, charges: Mapping[str, int], now: float) -> float:
        self._refill(now)
        waits = [
            (charges[u] - self.levels[u]) / (self.limits[u] / 60)
            for u in self.limits
            if self.levels[u] < charges[u] - 1e-6  # no endless sub-nanosecond sleeps
        ]
        return max(waits, default=0.0)

    def spend(self, charges: Mapping[str, int]) -> None:
        for unit in self.limits:
            self.levels[unit] -= charges[unit]

    def observe(self, response: httpx.Response, now: float) -> None:
        self._refill(now)
        for unit in ("requests", "tokens"):
            limit = response.headers.get(f"x-ratelimit-limit-{unit}")
            if limit is not None:
                remaining = float(response.headers[f"x-ratelimit-remaining-{unit}"])
                self.limits[unit] = float(limit)
                self.levels[unit] = min(self.levels.get(unit, remaining), remaining)
        if response.status_code == 200:
            self.prompt_tokens = response.json()["usage"]["prompt_tokens"]


@pytest.mark.slow
@pytest.mark.deadline(400)
async def test_a_client_pacing_by_the_headers_uses_90_percent_of_the_budget_without_429s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Item 2 of issue 11, from the simulator's side: the headers and usage are consistent
    enough that a client pacing by them alone draws no 429 and, after the first minute, is
    charged at least 90 % of the token budget per minute (tokens bind here: 150 per request
    against 30k TPM is 200 requests/min, under the 600 RPM)."""
    model = SimulatedModel(name="api", rpm=600, tpm=30_000, latency=Latency(median=0.5))
    prompt = "owls and bats " * 28 + "ok"  # 394 characters: 99 tokens
    pacer, lock = HeaderPacer(), trio.Lock()
    async with simulated(model, deadline=400) as (sim, client):
        first = await post(client, chat("api", prompt, max_tokens=50))
        pacer.observe(first, trio.current_time())

        async def worker() -> None:
            while trio.current_time() < 180:
                async with lock:  # one request decides at a time: the pacer is shared
                    estimate = pacer.prompt_tokens or math.ceil(len(prompt) / 4)
                    charges = {"requests": 1, "tokens": estimate + 50}
                    # A pacing loop (the wait is recomputed after other workers' answers).
                    while (delay := pacer.wait(charges, trio.current_time())) > 0:  # noqa: ASYNC110
                        await trio.sleep(delay)
                    pacer.spend(charges)
                response = await post(client, chat("api", prompt, max_tokens=50))
                pacer.observe(response, trio.current_time())

        async with trio.open_nursery() as nursery:
            for _ in range(32):
                nursery.start_soon(worker)
        log = sim.request_log()
    assert [r.status for r in log if r.status != 200] == []
    for minute in (1, 2):
        charged = sum(r.charged_tokens for r in log if 60 * minute <= r.start < 60 * minute + 60)
        assert 0.9 * 30_000 <= charged <= 30_000


# --------------------------------------------------------------------------- sporadic 429s


@pytest.mark.slow
@pytest.mark.deadline(160)
async def test_injected_429s_do_not_depend_on_load(autojump_clock: trio.testing.MockClock) -> None:
    """Faults are drawn once per request on arrival: 100 requests one at a time, all at once
    into ample capacity, or all at once into a capacity of 5 draw the same injected 429s."""

    async def injected(capacity: int, concurrent: bool) -> tuple[int, int]:
        model = SimulatedModel(
            name="api",
            capacity=capacity,
            latency=Latency(median=1.0),
            faults=Faults(rate_429=0.3),
            seed=11,
        )
        async with simulated(model, deadline=1000) as (sim, client):
            if concurrent:
                async with trio.open_nursery() as nursery:
                    for i in range(100):
                        nursery.start_soon(post, client, chat("api", f"q{i}"))
            else:
                for i in range(100):
                    await post(client, chat("api", f"q{i}"))
            stats = sim.stats()["api"]
            return stats.limited_by_injected, stats.limited_by_capacity

    alone, crowd, squeezed = (
        await injected(1000, False),
        await injected(1000, True),
        await injected(5, True),
    )
    assert alone[0] == crowd[0] == squeezed[0]
    assert 15 <= alone[0] <= 45
    assert (alone[1], crowd[1]) == (0, 0)
    assert squeezed[1] > 50


# --------------------------------------------------------------------------- moving capacity


async def _post_status(
    client: httpx.AsyncClient, body: dict[str, Any], statuses: list[int]
) -> None:
    statuses.append((await post(client, body)).status_code)


@pytest.mark.deadline(60)
async def test_hosted_capacity_follows_its_schedule(autojump_clock: trio.testing.MockClock) -> None:
    """capacity_schedule [[0, 4], [10, 2], [20, 6]]: six concurrent requests get 4, 2, then 6
    answers in the three periods; the rest get 429 for capacity."""
    model = SimulatedModel(
        name="api", capacity_schedule=[[0, 4], [10, 2], [20, 6]], latency=Latency(median=1.0)
    )
    async with simulated(model, deadline=100) as (sim, client):
        served = []
        for at in (0, 10, 20):
            await trio.sleep_until(at)
            assert sim.stats()["api"].capacity == {0: 4, 10: 2, 20: 6}[at]
            statuses: list[int] = []
            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(_post_status, client, chat("api", f"q{i}"), statuses)
            served.append(statuses.count(200))
        assert served == [4, 2, 6]
        assert sim.stats()["api"].limited_by_capacity == 6


@pytest.mark.deadline(30)
async def test_gpu_capacity_rising_wakes_the_queue_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """gpu [[0, 2], [5, 8]]: eight 10 s requests at t=0; two start at once, six wait and start
    at exactly t=5 (no request arrives or ends then: the schedule wakes them)."""
    model = SimulatedModel(
        name="gpu", mode="gpu", capacity_schedule=[[0, 2], [5, 8]], latency=Latency(median=10.0)
    )
    async with simulated(model, deadline=100) as (sim, client):
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(post, client, chat("gpu", f"q{i}"))
        assert sorted(r.queued_for for r in sim.request_log()) == [0, 0] + [5.0] * 6
        assert trio.current_time() == 15.0


@pytest.mark.deadline(120)
async def test_gpu_capacity_falling_lets_running_requests_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """gpu [[0, 4], [5, 1]]: four start at t=0 and finish at 10; the other four then run one at
    a time (10, 20, 30, 40), and busy_time divides by the capacity in force."""
    model = SimulatedModel(
        name="gpu", mode="gpu", capacity_schedule=[[0, 4], [5, 1]], latency=Latency(median=10.0)
    )
    async with simulated(model, deadline=100, client_timeout=None) as (sim, client):
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(post, client, chat("gpu", f"q{i}"))
        ends = sorted(r.end for r in sim.request_log())
        assert ends == [10.0] * 4 + [20.0, 30.0, 40.0, 50.0]
        # 0-5: 4 of 4 busy; 5-10: 4 in service over capacity 1; 10-50: 1 of 1.
        assert sim.stats()["gpu"].busy_time == pytest.approx(5 + 4 * 5 + 40)


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "prompt",
    [
        "Tell me about owls, bats and the night.",
        "Write it in ```python please.",
        '<response_schema>{"type": "object", "properties": {"a": {"type": "string"}}, '
        '"required": ["a"]}</response_schema>',
    ],
    ids=["text", "code", "fenced_json"],
)
async def test_answers_reaching_max_tokens_are_cut_there_and_say_length(
    autojump_clock: trio.testing.MockClock, prompt: str
) -> None:
    """An answer is cut to exactly max_tokens tokens by the simulator's own count and says
    "length"; an answer of exactly max_tokens tokens says "length" too (it reached the limit);
    one token more of room says "stop"."""
    async with simulated(SimulatedModel(name="m", latency=ZERO), deadline=60) as (_, client):
        full = choice(await post(client, chat("m", prompt)))["message"]["content"]
        natural = count_tokens(full)
        cut = await post(client, chat("m", prompt, max_tokens=natural // 2))
        exact = await post(client, chat("m", prompt, max_tokens=natural))
        roomy = await post(client, chat("m", prompt, max_completion_tokens=natural + 1))
    assert choice(cut)["finish_reason"] == "length"
    assert choice(cut)["message"]["content"] == full[: 4 * (natural // 2)]
    assert cut.json()["usage"]["completion_tokens"] == natural // 2
    assert (choice(exact)["finish_reason"], choice(exact)["message"]["content"]) == ("length", full)
    assert (choice(roomy)["finish_reason"], choice(roomy)["message"]["content"]) == ("stop", full)


async def test_reasoning_and_content_share_max_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Reasoning counts toward max_tokens first: a limit below the reasoning leaves no content."""
    async with simulated(SimulatedModel(name="m", latency=ZERO), deadline=60) as (_, client):
        body = chat("m", "Why do owls hoot?", reasoning=True)
        full = choice(await post(client, body))["message"]
        reasoning = count_tokens(full["reasoning_content"])
        some = await post(client, {**body, "max_tokens": reasoning + 3})
        none = await post(client, {**body, "max_tokens": reasoning - 2})
    assert choice(some)["message"]["content"] == full["content"][:12]
    assert some.json()["usage"]["completion_tokens"] == reasoning + 3
    assert choice(none)["message"]["content"] == ""
    assert (
        choice(none)["message"]["reasoning_content"]
        == full["reasoning_content"][: 4 * (reasoning - 2)]
    )
    assert choice(none)["finish_reason"] == "length"
    assert none.json()["usage"]["completion_tokens"] == reasoning - 2


def only(kind: str, **extra: Any) -> SimulatedModel:
    return SimulatedModel(
        name="f", latency=Latency(median=1.0), faults=Faults(**{f"rate_{kind}": 1.0}, **extra)
    )


async def test_content_filter_sends_a_partial_answer_and_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """content_filter: a 200 with finish_reason "content_filter" and the first quarter of the
    content, counted in usage."""
    prompt = "Tell me about owls, bats and the night."
    async with simulated(SimulatedModel(name="f"), deadline=60) as (_, client):
        full = choice(await post(client, chat("f", prompt)))["message"]["content"]
    async with simulated(only("content_filter"), deadline=60) as (sim, client):
        response = await post(client, chat("f", prompt))
    assert choice(response)["finish_reason"] == "content_filter"
    assert choice(response)["message"]["content"] == full[: len(full) // 4]
    assert response.json()["usage"]["completion_tokens"] == count_tokens(full[: len(full) // 4])
    assert sim.request_log()[0].fault == "content_filter"


@pytest.fixture
def patient_clock() -> trio.testing.MockClock:
    """Virtual time that jumps only after 0.1 s of real idleness: moving 10 MiB through the
    kernel's socket buffers looks idle to a zero-threshold autojump, which then jumps to the
    client's timeout (seen flaking on a loaded machine)."""
    return trio.testing.MockClock(autojump_threshold=0.1)


async def test_oversize_sends_exactly_10_mib_of_valid_json(
    patient_clock: trio.testing.MockClock,
) -> None:
    """oversize (default 10 MiB): the body is exactly oversize_bytes long, parses, and its
    usage counts the padded content."""
    async with simulated(only("oversize"), deadline=60) as (sim, client):
        response = await post(client, chat("f", "Tell me about owls."))
    assert len(response.content) == 10 * 1024 * 1024
    content = choice(response)["message"]["content"]
    assert response.json()["usage"]["completion_tokens"] == count_tokens(content)
    assert sim.request_log()[0].completion_tokens == count_tokens(content)


async def test_a_client_cutting_an_oversize_body_short_leaves_the_server_serving(
    patient_clock: trio.testing.MockClock,
) -> None:
    """A client that stops reading an oversize body after 64 KiB and closes the connection
    (what a size cap does) costs the server nothing: the next request is served. (A raw
    socket, so the client really stops reading mid-body.)"""
    async with simulated(only("oversize"), deadline=60) as (sim, client):
        payload = json.dumps(chat("f", "hi")).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        received = b""
        async with await trio.open_tcp_stream("127.0.0.1", sim.port) as stream:
            await stream.send_all(head + payload)
            while len(received) < 65536:
                received += await stream.receive_some(65536)
        await trio.testing.wait_all_tasks_blocked()
        [record] = sim.request_log()
        after = await client.get("/models")
    assert received.startswith(b"HTTP/1.1 200")
    assert b"content-length: 10485760" in received.lower()
    assert (record.status, record.fault) == (200, "oversize")
    assert after.status_code == 200
    assert sim.stats()["f"].in_flight == 0


@pytest.mark.deadline(800)
async def test_a_trickled_answer_takes_one_interval_per_byte(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """trickle: the head comes after the service time, then one byte per trickle_interval; a
    client whose timeout bounds each read (5 s here) waits len(body) intervals and gets a
    complete, valid answer."""
    model = only("trickle", trickle_interval=0.5)
    async with simulated(model, deadline=5000, client_timeout=5.0) as (sim, client):
        start = trio.current_time()
        response = await post(client, chat("f", "hi"))
        took = trio.current_time() - start
        [record] = sim.request_log()
    assert took == pytest.approx(1.0 + 0.5 * len(response.content))
    assert choice(response)["message"]["content"]
    assert (record.status, record.fault, record.end) == (200, "trickle", pytest.approx(took))


@pytest.mark.deadline(60)
async def test_a_client_leaving_a_trickle_stops_it(autojump_clock: trio.testing.MockClock) -> None:
    """A client that gives up on a trickling body closes the connection; the server stops
    sending and logs 499 (it does not keep trickling into the void)."""
    async with simulated(only("trickle"), deadline=5000, client_timeout=5.0) as (sim, client):
        with trio.move_on_after(30):
            await post(client, chat("f", "hi"))
        await trio.testing.wait_all_tasks_blocked()
        [record] = sim.request_log()
        stats = sim.stats()["f"]
    assert (record.status, record.fault, record.end) == (499, "trickle", 30.0)
    assert (stats.in_flight, stats.completed) == (0, 0)


async def test_embeddings_ignore_content_faults(autojump_clock: trio.testing.MockClock) -> None:
    """Embedding requests only suffer transport faults: an oversize rate of 1 leaves them be."""
    async with simulated(only("oversize"), deadline=60) as (sim, client):
        response = await client.post("/embeddings", json={"model": "f", "input": "owl"})
    assert len(response.json()["data"][0]["embedding"]) == 64
    assert sim.request_log()[0].fault is None


# --------------------------------------------------------------------------- API key


async def test_an_api_key_guards_every_route_and_is_never_echoed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With api_key set, requests without it, or with another, get OpenAI's 401 (naming neither
    key); with it, chat and GET /v1/models work. 401s reach no model and are counted apart."""
    key, wrong = "sk-sim-correct-horse", "sk-my-real-openai-key"
    model = SimulatedModel(name="m", latency=ZERO)
    async with simulated(model, deadline=60, api_key=key) as (sim, client):
        missing = await post(client, chat("m", "hi"))
        other = await client.post(
            "/chat/completions",
            json=chat("m", "hi"),
            headers={"Authorization": f"Bearer {wrong}"},
        )
        listing = await client.get("/models")
        good = {"Authorization": f"Bearer {key}"}
        ok = await client.post("/chat/completions", json=chat("m", "hi"), headers=good)
        models = await client.get("/models", headers=good)
        stats = sim.stats()
        shown = repr(sim)
    for refused in (missing, other, listing):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert key not in refused.text
        assert wrong not in refused.text
    assert "didn't provide" in missing.json()["error"]["message"]
    assert "Incorrect API key" in other.json()["error"]["message"]
    assert (ok.status_code, [m["id"] for m in models.json()["data"]]) == (200, ["m"])
    assert (stats.unauthorized, stats["m"].requests) == (3, 1)
    assert key not in shown


def test_the_cli_reads_the_key_from_an_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--api-key-env (or the profile's api_key_env) names the variable; an unset one is a
    config error naming the variable, never a value."""
    profile = tmp_path / "sim.yaml"
    profile.write_text("api_key_env: SIM_PROFILE_KEY\nmodels:\n  - name: m\n")
    monkeypatch.setenv("SIM_FLAG_KEY", "flag-secret")
    monkeypatch.setenv("SIM_PROFILE_KEY", "profile-secret")
    parser = cli.build_parser()
    assert cli.api_key_from_args(parser.parse_args(["--api-key-env", "SIM_FLAG_KEY"])) == (
        "flag-secret"
    )
    assert cli.api_key_from_args(parser.parse_args(["--profile", str(profile)])) == (
        "profile-secret"
    )
    assert cli.api_key_from_args(parser.parse_args([])) is None
    monkeypatch.delenv("SIM_PROFILE_KEY")
    with pytest.raises(ConfigError, match=r"^the API key variable SIM_PROFILE_KEY is not set"):
        cli.api_key_from_args(parser.parse_args(["--profile", str(profile)]))


# --------------------------------------------------------------------------- outages


@pytest.mark.deadline(30)
async def test_an_outage_refuses_new_requests_and_drops_running_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """outages [[5, 10]]: a request in service at t=5 loses its connection, one arriving at 6
    gets 503 at once, one at 10 is served again."""
    model = SimulatedModel(name="m", outages=[[5, 10]], latency=Latency(median=2.0))
    async with simulated(model, deadline=100) as (sim, client):
        before = await post(client, chat("m", "a"))  # 0 -> 2
        await trio.sleep_until(4)
        with pytest.raises(httpx.RemoteProtocolError):
            await post(client, chat("m", "b"))  # 4 -> dropped at 5
        await trio.sleep_until(6)
        during = await post(client, chat("m", "c"))
        await trio.sleep_until(10)
        after = await post(client, chat("m", "d"))
        log = sim.request_log()
        stats = sim.stats()["m"]
    assert (before.status_code, during.status_code, after.status_code) == (200, 503, 200)
    assert during.json()["error"]["code"] == "service_unavailable"
    assert [(r.status, r.fault, r.end) for r in log] == [
        (200, None, 2.0),
        (0, "outage", 5.0),
        (503, "outage", 6.0),
        (200, None, 12.0),
    ]
    assert (stats.unavailable, stats.in_flight) == (2, 0)


async def test_an_outage_empties_the_gpu_queue(autojump_clock: trio.testing.MockClock) -> None:
    """In gpu mode requests waiting for a slot are dropped by an outage as well."""
    model = SimulatedModel(
        name="g", mode="gpu", capacity=1, outages=[[1, 2]], latency=Latency(median=5.0)
    )
    async with simulated(model, deadline=100) as (sim, client):

        async def one(i: int) -> None:
            with pytest.raises(httpx.RemoteProtocolError):
                await post(client, chat("g", f"q{i}"))

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(one, i)
        assert [(r.status, r.end) for r in sim.request_log()] == [(0, 1.0)] * 3
        assert (sim.stats()["g"].queued, sim.stats()["g"].in_flight) == (0, 0)


# --------------------------------------------------------------------------- configuration


def test_new_settings_read_the_same_from_python_yaml_and_the_cli(tmp_path: Path) -> None:
    """Every new setting has the same meaning in SimulatedModel, a YAML profile and --model."""
    expected = SimulatedModel(
        name="api",
        rpm=600,
        tpm=100_000,
        capacity_schedule=((0, 32), (30, 8), (60, 32)),
        outages=((10, 15), (40, 42.5)),
        ratelimit_headers="ietf",
        retry_after_header="http-date",
        faults=Faults(
            rate_trickle=0.1,
            trickle_interval=2.0,
            rate_oversize=0.1,
            oversize_bytes=8192,
            rate_content_filter=0.1,
        ),
    )
    profile = tmp_path / "sim.yaml"
    profile.write_text(
        "models:\n"
        "  - name: api\n"
        "    rpm: 600\n"
        "    tpm: 100000\n"
        "    capacity_schedule: [[0, 32], [30, 8], [60, 32]]\n"
        "    outages: [[10, 15], [40, 42.5]]\n"
        "    ratelimit_headers: ietf\n"
        "    retry_after_header: http-date\n"
        "    faults: {rate_trickle: 0.1, trickle_interval: 2, rate_oversize: 0.1,\n"
        "             oversize_bytes: 8192, rate_content_filter: 0.1}\n"
    )
    spec = (
        "api:rpm=600,tpm=100000,capacity_schedule=0:32/30:8/60:32,outages=10:15/40:42.5,"
        "ratelimit_headers=ietf,retry_after_header=http-date,rate_trickle=0.1,"
        "trickle_interval=2,rate_oversize=0.1,oversize_bytes=8192,rate_content_filter=0.1"
    )
    assert read_profile(profile).models == (expected,)
    assert parse_model_spec(spec) == expected


_PAIRS = "[seconds >= 0, capacity >= 1] pairs (on the command line: 0:32/30:8)"
_WINDOWS = "[start, end] pairs with 0 <= start < end (on the command line: 10:15/40:42)"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (
            "m:capacity_schedule=0:32/10",
            f"capacity_schedule must be a list of {_PAIRS}, got ((0, 32), (10,))",
        ),
        (
            "m:capacity_schedule=10:4/5:8",
            "capacity_schedule times must increase strictly, got [10, 5]",
        ),
        ("m:capacity_schedule=0:0", f"capacity_schedule must be a list of {_PAIRS}, got ((0, 0),)"),
        ("m:outages=5:5", f"outages must be a list of {_WINDOWS}, got ((5, 5),)"),
        (
            "m:outages=0:10/5:20",
            "outages must be in order and must not overlap, got ((0, 10), (5, 20))",
        ),
        (
            "m:ratelimit_headers=x-ratelimit",
            "'ratelimit_headers' must be in ('openai', 'ietf', 'none') (got 'x-ratelimit')",
        ),
        (
            "m:retry_after_header=date",
            "'retry_after_header' must be in ('seconds', 'http-date', 'none') (got 'date')",
        ),
        (
            "m:trickle_interval=0",
            ".faults: trickle_interval must be a finite number > 0, got 0",
        ),
        ("m:oversize_bytes=100", ".faults: oversize_bytes must be a whole number >= 4096, got 100"),
    ],
)
def test_bad_new_settings_are_config_errors(spec: str, problem: str) -> None:
    """Each new setting rejects bad values with one message naming the field and the value."""
    separator = "" if problem.startswith(".") else ": "
    expected = f"model spec '{spec}'{separator}{problem}"
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        parse_model_spec(spec)


def test_profile_api_key_env_must_be_a_variable_name(tmp_path: Path) -> None:
    """A profile's api_key_env is a variable name; unknown top-level keys are listed too."""
    profile = tmp_path / "sim.yaml"
    profile.write_text("api_key: sk-123\napi_key_env: 5\nmodels: [{name: m}]\n")
    with pytest.raises(ConfigError) as info:
        read_profile(profile)
    assert info.value.problems[0].endswith(".api_key: unknown field; did you mean 'api_key_env'?")
    assert info.value.problems[1].endswith(
        ".api_key_env: expected the name of an environment variable, got 5"
    )


def test_the_docs_examples_load(tmp_path: Path) -> None:
    """docs/simulator.md's YAML profiles load and its --model specs parse."""
    text = DOCS.read_text(encoding="utf-8")
    profiles = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    specs = [s for s in re.findall(r"--model (\S+)", text) if not s.startswith("NAME")]
    assert profiles
    assert specs
    for i, profile in enumerate(profiles):
        path = tmp_path / f"profile-{i}.yaml"
        path.write_text(profile)
        assert read_profile(path).models
    for spec in specs:
        parse_model_spec(spec.strip("`"))


def test_request_records_default_to_no_tokens() -> None:
    """RequestRecord's new fields default so older call sites keep working."""
    from trio_designer.simulator import RequestRecord

    record = RequestRecord(model="m", start=0.0, end=1.0, status=200)
    assert (record.limited_by, record.prompt_tokens, record.charged_tokens) == (None, 0, 0)
    assert attrs.asdict(record)["completion_tokens"] == 0
    assert json.dumps(attrs.asdict(record))
