"""Variations of issue 11's scenarios found by the hostile release review (branch hostile21).

Each test is a variation that misbehaved before its fix: real HTTP (the simulator, or a raw-bytes
server of ``tests/_hostile_server.py`` for what the simulator cannot say), virtual time, a
deadline. The table of every variation tried, with the ones that held, is in
``docs/benchmarks.md`` ("Branch `hostile21`: scenario variations").
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _hostile_server import Hostile, answer, answering, completion, hostile_server

from trio_designer import PipelineConfig, RunResult, TrioDesigner

BIG = 10_000  # virtual seconds


def pipeline(url: str, *, parallel: int = 4) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "providers": [{"name": "hostile", "base_url": url}],
            "models": [
                {
                    "alias": "gen",
                    "model": "m",
                    "provider": "hostile",
                    "max_parallel_requests": parallel,
                    "timeout": 5,
                }
            ],
            "run": {"row_group_size": 10},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "{{ topic }}"},
            ],
        }
    )


async def preview(server: Hostile, rows: int) -> tuple[RunResult, float]:
    start = trio.current_time()
    with trio.fail_after(BIG):
        result = await TrioDesigner(cache=False).preview(pipeline(server.url), num_records=rows)
    return result, trio.current_time() - start


def budget_answer(*headers: tuple[str, str]) -> bytes:
    return answer(body=completion("fine"), headers=headers)


# -- rate-limit headers whose reset says the budget is back sooner than a minute ---------------


@pytest.mark.deadline(2 * BIG)
@pytest.mark.parametrize(
    "headers",
    [
        # Spent, and full again now (a per-second budget's answer just after its reset).
        [
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "0s"),
        ],
        # Five of 100 left, full again in half a second: a per-second window.
        [
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-requests", "5"),
            ("x-ratelimit-reset-requests", "500ms"),
        ],
        # The token budget, likewise.
        [
            ("x-ratelimit-limit-tokens", "10000"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ],
        # The IETF draft: nothing left, restored now.
        [("RateLimit-Policy", '"r";q=100;w=60'), ("RateLimit", '"r";r=0;t=0')],
    ],
    ids=["openai-0s", "openai-500ms", "openai-tokens-20ms", "ietf-t0"],
)
async def test_a_reset_sooner_than_a_minute_is_believed(
    autojump_clock: Any, headers: list[tuple[str, str]]
) -> None:
    """Before: the bucket refilled per minute whatever ``reset`` said, so 60 requests at a
    server whose every answer said ``remaining: 0, reset: 0s`` (of 100) took 36 virtual
    seconds; now the bucket's window is what the reset implies, and the run does not wait."""
    async with hostile_server(answering(budget_answer(*headers))) as server:
        result, elapsed = await preview(server, 60)
    assert result.num_records_written == 60
    assert not result.failures
    assert elapsed < 2.0, elapsed


@pytest.mark.deadline(2 * BIG)
async def test_a_per_minute_reset_still_paces_the_run(autojump_clock: Any) -> None:
    """The control: a reading consistent with a per-minute bucket (nothing left of 100, full
    again in 36 s — a window of 36 x 100 / 99 s, more than half a minute) paces the run at
    100 per minute, as before."""
    headers = [
        ("x-ratelimit-limit-requests", "100"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "36s"),
    ]
    async with hostile_server(answering(budget_answer(*headers))) as server:
        result, elapsed = await preview(server, 30)
    assert result.num_records_written == 30
    # The first answer empties the bucket; the other 29 wait 0.6 s each (a few were sent
    # before the first reading came back).
    assert elapsed >= 0.6 * (30 - 4 - 1), elapsed


# -- a server that accepts and never answers ---------------------------------------------------


@pytest.mark.deadline(2 * BIG)
async def test_a_simulator_that_hangs_every_request_stops_the_run_in_one_timeout(
    autojump_clock: Any,
) -> None:
    """Before: Wide-like columns, 20 rows, 16 in flight, every request hanging, the default
    60 s timeout: 960 virtual seconds of timeouts and salvage rounds, then an early shutdown
    (4.3 hours at 4 in flight and 100 rows). Now the third timeout with nothing answered
    stops the run: one timeout, since the first wave's requests went out together."""
    from trio_designer import ProviderError
    from trio_designer.simulator import Faults, SimulatedModel, open_simulator

    hung = SimulatedModel(name="m", faults=Faults(rate_hang=1.0, hang_seconds=3_600))
    async with open_simulator([hung]) as sim:
        config = pipeline(sim.url, parallel=16).to_dict()
        config["models"][0].pop("timeout")  # the default, 60 s
        with trio.fail_after(BIG), pytest.raises(ProviderError) as info:
            await TrioDesigner(cache=False).preview(
                PipelineConfig.from_dict(config), num_records=20
            )
        assert trio.current_time() <= 61
    assert info.value.reason == "silent"
    assert "completed none of the first 3 answers within the timeout of 60 s" in str(info.value)


@pytest.mark.deadline(2 * BIG)
async def test_a_slow_first_answer_is_not_silence(autojump_clock: Any) -> None:
    """Two requests time out, then the server answers: it is verified, and later timeouts
    (however many) are ordinary cell failures, never a stop."""
    from trio_designer._core._firstcontact import FirstContact
    from trio_designer.simulator import Latency, SimulatedModel, open_simulator

    # The rule on outcomes (the simulator cannot turn fast in the middle of a run).

    contact = FirstContact()
    assert not contact.record("timed_out")
    assert not contact.record("timed_out")
    assert not contact.record("answered")
    assert not any(contact.record("timed_out") for _ in range(10))
    fresh = FirstContact()
    assert not fresh.record("timed_out")
    assert not fresh.record("inconclusive")
    assert not fresh.record("timed_out")
    assert fresh.record("timed_out")  # the third: silent
    assert fresh.statistics().timed_out == 3

    # And over real HTTP: answers slower than the timeout for some requests only (lognormal
    # spread) never stop a run whose other requests are answered.
    spread = SimulatedModel(name="m", latency=Latency(median=2.0, sigma=1.0))
    async with open_simulator([spread]) as sim:
        with trio.fail_after(BIG):
            result = await TrioDesigner(cache=False).preview(
                pipeline(sim.url, parallel=2), num_records=20
            )
    assert result.num_records_written + len(result.failures) == 20


# -- a 503 with Retry-After waits without its slot ---------------------------------------------


_CLOSE = [("connection", "close")]


def _busy_once_then(ok: bytes, arrivals: list[float]) -> Any:
    """A server whose first connection is answered 503 with ``Retry-After: 10`` and every
    later one with ``ok`` (one request a connection); each arrival's time in ``arrivals``."""
    from _hostile_server import Handler, sequence

    def timed(step: Handler) -> Handler:
        async def handler(stream: trio.SocketStream, seen: Hostile) -> None:
            arrivals.append(trio.current_time())
            await step(stream, seen)

        return handler

    busy = answer(
        "503 Service Unavailable",
        b'{"error": {"message": "overloaded", "type": "server_error"}}',
        headers=[*_CLOSE, ("retry-after", "10")],
    )
    return sequence(timed(answering(busy, close=True)), timed(answering(ok, close=True)))




@pytest.mark.deadline(2 * BIG)
async def test_a_503_waits_out_its_retry_after_without_holding_the_slot(
    autojump_clock: Any,
) -> None:
    """One slot; the first request is answered 503 with ``Retry-After: 10``, the rest 200.
    Before: the client slept the 10 s inside the limiter slot, so nothing else was sent until
    the retry (the second request reached the server at t = 10). Now the slot is given back
    while the request waits, as for a 429: the other rows go at once, the retry at t = 10."""
    arrivals: list[float] = []
    handler = _busy_once_then(answer(body=completion("fine"), headers=_CLOSE), arrivals)
    async with hostile_server(handler) as server:
        start = trio.current_time()
        config = pipeline(server.url, parallel=1)
        with trio.fail_after(BIG):
            result = await TrioDesigner(cache=False).preview(config, num_records=4)
    assert result.num_records_written == 4
    sent = [round(t - start, 3) for t in arrivals]
    assert len(sent) == 5, sent  # four rows, one of them twice
    assert sent[1] < 1.0, sent  # the second row did not wait for the first one's retry
    assert sent[-1] >= 10.0, sent  # the retry waited out the Retry-After


@pytest.mark.deadline(2 * BIG)
async def test_an_embedding_503_waits_out_its_retry_after_without_holding_the_slot(
    autojump_clock: Any,
) -> None:
    """The same for ``/embeddings`` (hostile21 left it holding its slot): one slot, batches
    of one text; the first request is answered 503 with ``Retry-After: 10``; the other rows'
    requests go at once, the retry at t = 10, and every row gets its vector."""
    import json

    arrivals: list[float] = []
    vectors = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
        "model": "m",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    handler = _busy_once_then(answer(body=json.dumps(vectors).encode(), headers=_CLOSE), arrivals)
    config = PipelineConfig.from_dict(
        {
            "providers": [{"name": "hostile", "base_url": "http://127.0.0.1:1/v1"}],
            "models": [
                {"alias": "emb", "model": "m", "provider": "hostile", "max_parallel_requests": 1}
            ],
            "run": {"row_group_size": 10},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {
                    "name": "vec",
                    "kind": "llm_embedding",
                    "model": "emb",
                    "text": "{{ topic }}",
                    "batch_size": 1,
                },
            ],
        }
    )
    async with hostile_server(handler) as server:
        config = config.to_dict() | {"providers": [{"name": "hostile", "base_url": server.url}]}
        start = trio.current_time()
        with trio.fail_after(BIG):
            result = await TrioDesigner(cache=False).preview(
                PipelineConfig.from_dict(config), num_records=4
            )
    assert result.num_records_written == 4
    assert [row["vec"] for row in result.table.to_pylist()] == [[0.5, 0.25]] * 4
    sent = [round(t - start, 3) for t in arrivals]
    assert len(sent) == 5, sent  # four rows, one of them twice
    assert sent[1] < 1.0, sent  # the second row did not wait for the first one's retry
    assert sent[-1] >= 10.0, sent  # the retry waited out the Retry-After


# -- a load cut counts the answers that raced the 429 ------------------------------------------


def test_a_load_cut_counts_answers_that_raced_the_429() -> None:
    """A hidden limit of 4 behind a ceiling of 6. Four requests fill the server; three more in
    a row on one slot are refused (load). The server answered one of the four just after
    refusing the third, and the client read that answer first: 3 are left in flight when the
    429 is read. The cut used to go to those 3 (below the hidden 4: seen for 3 s in a real
    run); the answer that raced the 429 is counted, and the cut lands on 4."""
    from trio_designer._core._aimd import AimdController
    from trio_designer._core._limits import LimiterPolicy

    ctl = AimdController(6, LimiterPolicy(latency_signal=False))
    held = [ctl.admit(0.0) for _ in range(4)]
    first = ctl.admit(0.1)
    assert ctl.record_rate_limited(first, 0.1005) is None
    second = ctl.admit(0.1005)
    assert second.chain == 2
    assert ctl.record_rate_limited(second, 0.101) is None
    third = ctl.admit(0.101)
    assert third.chain == 3
    ctl.record_success(held[0], 0.1012)  # answered after the refusal, read before it
    change = ctl.record_rate_limited(third, 0.1015)
    assert change is not None
    assert (change.old, change.new) == (6, 4)
    assert ctl.cliff == 5


# -- answers without content that say why ------------------------------------------------------


def choice_body(message: dict[str, Any], finish_reason: str) -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", **message}}
    return completion(choices=[{**choice, "finish_reason": finish_reason}])


@pytest.mark.deadline(2 * BIG)
@pytest.mark.parametrize(
    ("message", "finish_reason", "reason", "said"),
    [
        (
            {
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": "{}"},
                    }
                ],
            },
            "tool_calls",
            "tool_calls",
            "the last answer was only 1 tool call and no content, finish_reason 'tool_calls'. "
            "This column sends no tools",
        ),
        (
            {"content": None, "refusal": "I can't help with that."},
            "stop",
            "refused",
            "the last answer was a refusal, with no content: the model refused: "
            "\"I can't help with that.\"",
        ),
        ({"content": ""}, "stop", "empty", "the last answer was empty."),
    ],
)
async def test_an_answer_without_content_says_what_it_was(
    autojump_clock: Any, message: dict[str, Any], finish_reason: str, reason: str, said: str
) -> None:
    """Before: tool-call-only answers and refusals were dropped as "the last answer was
    empty" (hostile21, row 17)."""
    data = answer(body=choice_body(message, finish_reason))
    async with hostile_server(answering(data)) as server:
        result, _ = await preview(server, 2)
    assert result.num_records_written == 0
    assert {f.error_class for f in result.failures} == {"ModelOutputError"}
    assert said in result.failures[0].message, result.failures[0].message
    assert ("empty" in result.failures[0].message) == (reason == "empty")
