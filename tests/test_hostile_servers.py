"""The release check against hostile OpenAI-compatible servers (issue 11: real endpoints).

Each scenario is a server of ``tests/_hostile_server.py`` — raw bytes on 127.0.0.1, not our
simulator — doing one thing real endpoints and proxies do: odd ``Retry-After`` values, HTML
error pages, bodies that are not completions, encodings nobody asked for, answers that are cut,
reset, trickled or never sent. A run against it must end (virtual time, under a deadline) with
rows either generated or dropped with a clear message of our exception tree, never a stray
Python exception, and never the API key in a message. The command-line tests at the end check
the exit status, the output and that nothing already written is lost, on the real clock.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from _cli_harness import run_cli
from _hostile_server import (
    Handler,
    Hostile,
    ThreadedHostile,
    answer,
    answering,
    chunked,
    completion,
    hanging,
    hostile_server,
    read_request,
    resetting,
    sequence,
    silent,
    trickling,
)

from trio_designer import PipelineConfig, ProviderError, RunResult, TrioDesigner

BIG = 100_000  # virtual seconds: far beyond what any scenario may take
KEY = "sk-hostile-canary-0123456789abcdef"
KEY_ENV = "TD_HOSTILE_KEY"


def pipeline(
    url: str, *, timeout: float = 5, rows_per_group: int = 2, transport: str = "native"
) -> PipelineConfig:
    provider = {"name": "hostile", "base_url": url, "api_key_env": KEY_ENV, "transport": transport}
    return PipelineConfig.from_dict(
        {
            "providers": [provider],
            "models": [
                {
                    "alias": "gen",
                    "model": "m",
                    "provider": "hostile",
                    "max_parallel_requests": 2,
                    "timeout": timeout,
                }
            ],
            "run": {"row_group_size": rows_per_group},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "{{ topic }}"},
            ],
        }
    )


@attrs.frozen
class Ends:
    """How a scenario must end: ``rows`` generated with ``value``, or every row dropped with
    ``error`` (a class name) and a message containing ``says``, within ``within`` virtual s."""

    error: str | None = None
    says: str = ""
    value: str = "hi"
    within: float = 3_600.0
    native_says: str = ""  # with the native transport, the message also says this


def ok(value: str = "hi") -> Ends:
    return Ends(value=value)


def dropped(error: str, says: str, within: float = 3_600.0) -> Ends:
    return Ends(error=error, says=says, within=within)


ERROR = b'{"error": {"message": "slow down"}}'
TOO_MANY = "429 Too Many Requests"


def with_429(*headers: tuple[str, str], body: bytes = ERROR, content_type: str = "") -> Handler:
    return answering(
        answer(TOO_MANY, body, headers=headers, content_type=content_type or "application/json")
    )


def long_head_in_pieces() -> Handler:
    """A 50 KiB header sent in two writes, so the client reads the head in several pieces
    (h11's 16 KiB default refused exactly that, and only then)."""
    data = answer(body=completion(), headers=[("x-padding", "p" * 50_000)])

    async def handler(stream: trio.SocketStream, seen: Hostile) -> None:
        while await read_request(stream, seen):
            await stream.send_all(data[:20_000])
            await trio.sleep(0.01)
            await stream.send_all(data[20_000:])

    return handler


def echoing(status: str) -> Handler:
    """Answer with the request's own head (the Authorization header included) as the body."""

    async def handler(stream: trio.SocketStream, seen: Hostile) -> None:
        while await read_request(stream, seen):
            body = seen.requests[-1].split(b"\r\n\r\n", 1)[0]
            await stream.send_all(answer(status, body, content_type="text/plain"))

    return handler


def choices(message: Any, finish_reason: Any = "stop") -> bytes:
    return json.dumps({"choices": [{"message": message, "finish_reason": finish_reason}]}).encode()


CONTEXT = json.dumps(
    {
        "error": {
            "message": "This model's maximum context length is 4096 tokens. However, you "
            "requested 5000 tokens (1000 in the messages, 4000 in the completion).",
            "code": "context_length_exceeded",
        }
    }
).encode()
OK = answer(body=completion())

#: scenario -> (server, how the run must end)
SCENARIOS: dict[str, tuple[Callable[[], Handler], Ends]] = {
    # -- Retry-After and rate-limit headers
    "retry-after as a past HTTP date": (
        lambda: with_429(("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")),
        dropped("ModelRateLimitedError", "(the server asks to wait 0 s)"),
    ),
    "retry-after of a billion seconds": (
        lambda: with_429(("retry-after", "1000000000")),
        dropped(
            "ModelRateLimitedError",
            "(the server asks to wait 1e+09 s; each retry waits at most 60 s, and the row is "
            "dropped once its 429 budget is used up)",
        ),
    ),
    "retry-after as a date in 2100": (
        lambda: with_429(("retry-after", "Fri, 01 Jan 2100 00:00:00 GMT")),
        dropped("ModelRateLimitedError", "each retry waits at most 60 s"),
    ),
    "retry-after-ms of 1e15": (
        lambda: with_429(("retry-after-ms", "1e15")),
        dropped("ModelRateLimitedError", "the server asks to wait 1e+12 s"),
    ),
    "retry-after negative": (
        lambda: with_429(("retry-after", "-5")),
        dropped("ModelRateLimitedError", "(the server asks to wait 0 s)"),
    ),
    "retry-after garbage": (
        lambda: with_429(("retry-after", "soonish")),
        dropped("ModelRateLimitedError", "rate limited. Server said: slow down"),
    ),
    "429 with an HTML page": (
        lambda: with_429(
            body=b"<html><h1>429 Too Many Requests</h1></html>", content_type="text/html"
        ),
        dropped(
            "ModelRateLimitedError", "Server said: <html><h1>429 Too Many Requests</h1></html>"
        ),
    ),
    "429 whose budget never resets": (
        lambda: with_429(
            ("x-ratelimit-limit-requests", "10"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "999999h"),
        ),
        dropped("ModelRateLimitedError", "rate limited"),
    ),
    "odd x-ratelimit formats on success": (
        lambda: answering(
            answer(
                body=completion(),
                headers=[
                    ("x-ratelimit-limit-requests", "60.5"),
                    ("x-ratelimit-remaining-requests", "59"),
                    ("x-ratelimit-reset-requests", "1m30s"),
                    ("x-ratelimit-limit-tokens", "abc"),
                    ("x-ratelimit-remaining-tokens", "-4"),
                    ("x-ratelimit-reset-tokens", "6ms"),
                ],
            )
        ),
        ok(),
    ),
    "a RateLimit window of 1e300 s, nothing left": (
        lambda: answering(
            answer(
                body=completion(),
                headers=[
                    ("ratelimit-policy", '"rpm";q=10;w=1e300'),
                    ("ratelimit", '"rpm";r=0;t=1'),
                ],
            )
        ),
        attrs.evolve(ok(), within=2 * 86400 / 10),  # 10 a day, as the server claims: it ends
    ),
    # -- 5xx
    "503 without a body": (
        lambda: answering(answer("503 Service Unavailable")),
        dropped("ModelServerError", "HTTP 503 Service Unavailable: a server-side failure"),
    ),
    "502 with an HTML page": (
        lambda: answering(answer("502 Bad Gateway", b"<html>bad</html>", content_type="text/html")),
        dropped("ModelServerError", "Server said: <html>bad</html>"),
    ),
    "504 with a JSON body": (
        lambda: answering(answer("504 Gateway Timeout", b'{"error": "upstream timeout"}')),
        dropped("ModelServerError", "Server said: upstream timeout"),
    ),
    "503 asking to wait a billion seconds": (
        lambda: answering(answer("503 Service Unavailable", headers=[("retry-after", "1e9")])),
        dropped("ModelServerError", "HTTP 503"),
    ),
    # -- a 200 that is not a completion
    "200 with an HTML page": (
        lambda: answering(answer(body=b"<html>Just a moment...</html>", content_type="text/html")),
        dropped("ModelServerError", "answered HTTP 200 but the body is not valid JSON"),
    ),
    "200 without choices": (
        lambda: answering(answer(body=b'{"id": "x"}')),
        dropped("ModelServerError", "the body has no choices"),
    ),
    "200 with empty choices": (
        lambda: answering(answer(body=b'{"choices": []}')),
        dropped("ModelServerError", "the body has no choices"),
    ),
    "200 with a null message": (
        lambda: answering(answer(body=choices(None))),
        dropped("ModelServerError", "choices[0] has no message"),
    ),
    "200 with content as a list of parts": (
        lambda: answering(
            answer(body=choices({"content": [{"type": "text", "text": "he"}, {"text": "llo"}]}))
        ),
        ok("hello"),
    ),
    "200 with content as a mapping": (
        lambda: answering(answer(body=choices({"content": {"a": 1}}))),
        dropped("ModelServerError", "content is neither text nor a list of parts"),
    ),
    "200 streamed as server-sent events": (
        lambda: answering(
            answer(
                body=b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\ndata: [DONE]\n\n',
                content_type="text/event-stream",
            )
        ),
        dropped("ModelServerError", "the body is a stream of server-sent events"),
    ),
    "200 with JSON nested 100,000 deep": (
        lambda: answering(answer(body=b"[" * 100_000 + b"]" * 100_000)),
        dropped("ModelServerError", "the body is JSON nested too deeply to read"),
    ),
    "500 with JSON nested 100,000 deep": (
        lambda: answering(answer("500 Internal Server Error", b"[" * 100_000 + b"]" * 100_000)),
        dropped("ModelServerError", "HTTP 500 Internal Server Error: a server-side failure"),
    ),
    "200 with invalid UTF-8": (
        lambda: answering(answer(body=b'{"choices": [{"message": {"content": "\xff\xfe"}}]}')),
        dropped("ModelServerError", "the body is not valid JSON"),
    ),
    "204 No Content": (
        lambda: answering(answer("204 No Content", length=False)),
        dropped("ModelServerError", "answered HTTP 204 but the body is not valid JSON"),
    ),
    # -- usage and finish_reason
    "usage missing": (lambda: answering(answer(body=completion(usage=None))), ok()),
    "usage negative and strings": (
        lambda: answering(
            answer(body=completion(usage={"prompt_tokens": -5, "completion_tokens": "7"}))
        ),
        ok(),
    ),
    "usage NaN and huge": (
        lambda: answering(
            answer(
                body=b'{"choices": [{"message": {"content": "hi"}}], '
                b'"usage": {"prompt_tokens": NaN, "completion_tokens": 1e400}}'
            )
        ),
        ok(),
    ),
    "finish_reason unknown": (
        lambda: answering(answer(body=choices({"content": "hi"}, "eos_token_weird"))),
        ok(),
    ),
    "finish_reason a number": (
        lambda: answering(answer(body=choices({"content": "hi"}, 7))),
        ok(),
    ),
    # -- encodings and framing
    "gzip": (
        lambda: answering(
            answer(body=gzip.compress(completion()), headers=[("content-encoding", "gzip")])
        ),
        ok(),
    ),
    "deflate": (
        lambda: answering(
            answer(body=zlib.compress(completion()), headers=[("content-encoding", "deflate")])
        ),
        ok(),
    ),
    "br (never asked for)": (
        lambda: answering(answer(body=b"\x0b\x02\x80hi\x03", headers=[("content-encoding", "br")])),
        dropped(
            "ModelRequestError",
            "the answer uses Content-Encoding 'br', which we never asked for (we ask for gzip "
            "or deflate); configure the server, or the proxy in front of it, to send gzip, "
            "deflate or no compression",
            within=0,  # not retried: the server does it every time
        ),
    ),
    "gzip cut short": (
        lambda: answering(
            answer(body=gzip.compress(completion())[:20], headers=[("content-encoding", "gzip")])
        ),
        dropped("ModelConnectionError", "the gzip body ends before its compressed data does"),
    ),
    "gzip bomb": (
        lambda: answering(
            answer(body=gzip.compress(b" " * 50_000_000), headers=[("content-encoding", "gzip")])
        ),
        dropped("ModelRequestError", "sent an answer larger than max_response_bytes", within=0),
    ),
    "chunked": (
        lambda: answering(
            answer(
                body=chunked(completion()), headers=[("transfer-encoding", "chunked")], length=False
            )
        ),
        ok(),
    ),
    "chunked with a bad chunk size": (
        lambda: answering(
            answer(
                body=b"zz\r\nhello\r\n0\r\n\r\n",
                headers=[("transfer-encoding", "chunked")],
                length=False,
            )
        ),
        dropped("ModelConnectionError", "illegal chunk header"),
    ),
    "conflicting Content-Length": (
        lambda: answering(answer(body=completion(), headers=[("content-length", "3")])),
        dropped("ModelConnectionError", "conflicting Content-Length headers"),
    ),
    "closes the connection after each answer": (
        lambda: answering(answer(body=completion(), headers=[("connection", "close")]), close=True),
        ok(),
    ),
    "closes keep-alive connections without saying so": (
        lambda: answering(OK, close=True),
        ok(),
    ),
    "HTTP/1.0": (lambda: answering(answer(body=completion(), version="1.0"), close=True), ok()),
    "HTTP/1.0 without Content-Length": (
        lambda: answering(answer(body=completion(), version="1.0", length=False), close=True),
        ok(),
    ),
    "100 Continue and 103 Early Hints first": (
        lambda: answering(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + OK
        ),
        ok(),
    ),
    "a 50 KiB header read in pieces": (long_head_in_pieces, ok()),
    "a 200 KiB header": (
        lambda: answering(answer(body=completion(), headers=[("x-junk", "j" * 200_000)])),
        attrs.evolve(
            dropped("ModelConnectionError", "the server broke the HTTP protocol"),
            native_says="the answer's status line and headers are longer than 100 KiB",
        ),
    ),
    "a NUL in a header": (
        lambda: answering(b"HTTP/1.1 200 OK\r\nx-bad: a\x00b\r\ncontent-length: 2\r\n\r\n{}"),
        dropped("ModelConnectionError", "illegal header line"),
    ),
    "a status line of garbage": (
        lambda: answering(b"HELLO WORLD\r\n\r\n"),
        dropped("ModelConnectionError", "illegal status line"),
    ),
    "status 999": (
        lambda: answering(answer("999 Weird", b"{}")),
        dropped("ModelServerError", "answered HTTP 999 (non-standard status)"),
    ),
    "a redirect": (
        lambda: answering(
            answer("301 Moved Permanently", headers=[("location", "https://example.com/v1")])
        ),
        dropped("ModelRequestError", "it redirects to https://example.com/v1", within=0),
    ),
    # -- broken and silent connections
    "reset in the middle of the body": (
        lambda: resetting(OK[:-10]),
        dropped("ModelConnectionError", "Connection reset by peer"),
    ),
    "closed in the middle of the body": (
        lambda: answering(OK[:-10], close=True),
        dropped("ModelConnectionError", "peer closed connection without sending complete"),
    ),
    "reset before any answer": (
        lambda: resetting(b""),
        dropped("ModelConnectionError", "Connection reset by peer"),
    ),
    # Servers that never answer at all (hangs, silence, trickled headers) stop the run:
    # test_a_server_that_never_answers_stops_the_run below.
    # -- 4xx
    "400 context length exceeded": (
        lambda: answering(answer("400 Bad Request", CONTEXT)),
        dropped(
            "ModelRequestError",
            "the prompt does not fit the model's context window; shorten the prompt or lower "
            "max_tokens. Server said: This model's maximum context length is 4096 tokens",
            within=0,
        ),
    ),
    "400 echoing the request headers": (
        lambda: echoing("400 Bad Request"),
        dropped("ModelRequestError", "authorization: Bearer ***", within=0),
    ),
    "200 echoing the request headers": (
        lambda: echoing("200 OK"),
        dropped("ModelServerError", "authorization: Bearer ***"),
    ),
}


async def preview(server: Hostile, transport: str = "native") -> tuple[RunResult, float]:
    start = trio.current_time()
    config = pipeline(server.url, transport=transport)
    with trio.fail_after(BIG):
        result = await TrioDesigner(cache=False).preview(config, num_records=2)
    return result, trio.current_time() - start


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.mark.deadline(2 * BIG)  # virtual seconds (the autojump clock)
@pytest.mark.parametrize("transport", ["native", "httpx"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_a_hostile_server_ends_the_run_cleanly(
    autojump_clock: Any, scenario: str, transport: str
) -> None:
    """Every row is generated, or dropped with a message of our exception tree; in time; over
    either transport."""
    make, ends = SCENARIOS[scenario]
    async with hostile_server(make()) as server:
        result, elapsed = await preview(server, transport)
    assert set(server.authorization_headers()) <= {f"Bearer {KEY}"}
    assert elapsed <= ends.within, elapsed
    assert result.status == "complete"
    if ends.error is None:
        assert not result.failures
        assert [row["text"] for row in result.table.to_pylist()] == [ends.value] * 2
        return
    assert result.num_records_written == 0
    assert {f.error_class for f in result.failures} == {ends.error}
    message = result.failures[0].message
    assert ends.says.replace("URL", server.url) in message, message
    if transport == "native":
        assert ends.native_says in message, message
    assert KEY not in json.dumps([attrs.asdict(f) for f in result.failures], default=str)


@pytest.mark.parametrize(
    ("status", "reason", "says"),
    [
        ("401 Unauthorized", "credentials", "rejected the credentials"),
        ("403 Forbidden", "credentials", "rejected the credentials"),
        ("404 Not Found", "not_found", "answered HTTP 404 Not Found at URL/chat/completions"),
    ],
)
async def test_rejected_credentials_or_an_unknown_model_stop_the_run_at_once(
    autojump_clock: Any, status: str, reason: str, says: str
) -> None:
    body = b'{"error": {"message": "The model `m` does not exist", "code": "model_not_found"}}'
    async with hostile_server(answering(answer(status, body))) as server:
        with pytest.raises(ProviderError) as info:
            await preview(server)
        assert trio.current_time() == 0
    assert info.value.reason == reason
    assert KEY not in str(info.value)
    assert str(info.value).startswith(
        f"Provider 'hostile' at {server.url} " + says.replace("URL", server.url.rstrip("/"))
    )


SILENT: dict[str, Callable[[], Handler]] = {
    "never answers": hanging,
    "never even reads the request": silent,
    "trickles its headers": lambda: trickling(OK, every=0.5),
}


@pytest.mark.deadline(2 * BIG)
@pytest.mark.parametrize("transport", ["native", "httpx"])
@pytest.mark.parametrize("scenario", list(SILENT))
async def test_a_server_that_never_answers_stops_the_run(
    autojump_clock: Any, scenario: str, transport: str
) -> None:
    """Nothing answered, and the third request times out: the provider is silent and the run
    stops with one message (it used to wait out every cell's timeout through the salvage
    rounds: hours at the default 60 s; see _core/_firstcontact.py)."""
    async with hostile_server(SILENT[scenario]()) as server:
        with pytest.raises(ProviderError) as info:
            await preview(server, transport)
        elapsed = trio.current_time()
    assert info.value.reason == "silent"
    assert elapsed <= 3 * 5, elapsed  # at most three timeouts of 5 s one after another
    assert str(info.value).startswith(
        f"Provider 'hostile' at {server.url} completed none of the first 3 answers within "
        "the timeout of 5 s"
    )
    assert KEY not in str(info.value)


# -- the command line, on the real clock -----------------------------------------------------


def write_config(folder: Path, url: str, **model: Any) -> Path:
    config = pipeline(url, timeout=0.5).to_dict()
    config["models"][0].update(model)
    path = folder / "hostile.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("handler", "says"),
    [
        (
            lambda: answering(answer(body=b"\x0b\x02", headers=[("content-encoding", "br")])),
            "Content-Encoding 'br'",
        ),
    ],
    ids=["br"],
)
def test_cli_run_against_a_hostile_server_reports_and_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handler: Callable[[], Handler], says: str
) -> None:
    """Every row dropped by a non-retryable answer: the run says why, in one line per row
    group, writes its metadata, never prints a traceback or the key, and exits 1 in seconds
    (nothing was generated: no success to report)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("TRIO_DESIGNER_CACHE", "off")
    with ThreadedHostile(handler()) as server:
        path = write_config(tmp_path, server.url)
        outcome = run_cli(["run", path.name, "-n", "4", "--progress", "none"], deadline=30)
    assert outcome.status == 1, outcome
    assert "status: complete" in outcome.out
    assert "rows: 0 written of 4 requested (4 dropped)" in outcome.out
    assert "error: every row was dropped (4 of 4 requested rows failed)" in outcome.err
    assert says in outcome.out + outcome.err
    assert "Traceback" not in outcome.out + outcome.err
    assert KEY not in outcome.out + outcome.err
    meta = json.loads((tmp_path / "out" / "hostile" / "metadata.json").read_text())
    assert meta["status"] == "complete"


@pytest.mark.slow
def test_cli_run_against_an_unknown_model_stops_with_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 404 before the model ever answered: the run stops at once (exit 1), one message
    naming the model, the URL and the remedy; metadata says failed; no traceback, no key."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("TRIO_DESIGNER_CACHE", "off")
    not_found = answer("404 Not Found", b'{"error": {"message": "no such model"}}')
    with ThreadedHostile(answering(not_found)) as server:
        path = write_config(tmp_path, server.url)
        outcome = run_cli(["run", path.name, "-n", "4", "--progress", "none"], deadline=30)
    assert outcome.status == 1, outcome
    said = outcome.out + outcome.err
    assert "answered HTTP 404 Not Found" in said
    assert "for model 'm'" in said
    assert "base_url usually ends in /v1" in said
    assert "Traceback" not in said
    assert KEY not in said
    meta = json.loads((tmp_path / "out" / "hostile" / "metadata.json").read_text())
    assert meta["status"] == "failed"


@pytest.mark.slow
def test_what_was_written_survives_a_server_that_starts_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two answers (one row group), then a server that accepts and never answers: the run
    ends within its timeouts, the finished row group is on disk, the rest is dropped."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("TRIO_DESIGNER_CACHE", "off")
    closing_ok = answering(answer(body=completion(), headers=[("connection", "close")]), close=True)
    with ThreadedHostile(sequence(closing_ok, closing_ok, hanging())) as server:
        path = write_config(tmp_path, server.url, max_parallel_requests=1)
        outcome = run_cli(["run", path.name, "-n", "4", "--progress", "none"], deadline=60)
    assert outcome.status == 0, outcome
    assert "rows: 2 written of 4 requested (2 dropped)" in outcome.out, outcome.out
    assert "ModelTimeoutError" in outcome.out
    assert "Traceback" not in outcome.out + outcome.err
    meta = json.loads((tmp_path / "out" / "hostile" / "metadata.json").read_text())
    assert meta["rows_written"] == 2
    import pyarrow.dataset as ds

    table = ds.dataset(tmp_path / "out" / "hostile" / "parquet-files").to_table()
    assert table.column("text").to_pylist() == ["hi", "hi"]


# -- answers that are completions, but hostile ones ------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def llm_column(kind: str) -> dict[str, Any]:
    column: dict[str, Any] = {"name": "x", "kind": kind, "model": "gen", "prompt": "{{ topic }}"}
    if kind == "llm_structured":
        column["schema"] = {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
            "additionalProperties": False,
        }
    elif kind == "llm_judge":
        column["rubrics"] = [{"name": "q", "description": "d", "scores": {1: "bad", 2: "good"}}]
    elif kind == "llm_embedding":
        column = {"name": "x", "kind": kind, "model": "gen", "text": "{{ topic }}"}
    return column


@pytest.mark.parametrize(
    ("kind", "body", "error", "says"),
    [
        ("llm_structured", completion(DEEP), "ModelOutputError", "nested too deeply to read"),
        ("llm_judge", completion(DEEP), "ModelOutputError", "nested too deeply to read"),
        (
            "llm_structured",
            completion('{"name": ' + "9" * 5000 + "}"),
            "ModelOutputError",
            "the answer is not valid JSON",
        ),
        (
            "llm_embedding",
            b'{"data": ' + DEEP.encode() + b"}",
            "ModelServerError",
            "the body is JSON nested too deeply to read",
        ),
    ],
    ids=["structured-deep", "judge-deep", "structured-huge-int", "embedding-deep"],
)
async def test_hostile_content_is_a_parse_failure(
    autojump_clock: Any, kind: str, body: bytes, error: str, says: str
) -> None:
    """A model answer nested past Python's stack is re-asked, then dropped as the column's
    own failure (it used to escape as a bare RecursionError)."""
    async with hostile_server(answering(answer(body=body))) as server:
        config = PipelineConfig.from_dict(
            {
                "providers": [{"name": "h", "base_url": server.url}],
                "models": [{"alias": "gen", "model": "m", "provider": "h"}],
                "columns": [
                    {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                    llm_column(kind),
                ],
            }
        )
        with trio.fail_after(BIG):
            result = await TrioDesigner(cache=False).preview(config, num_records=2)
    assert result.num_records_written == 0
    assert {f.error_class for f in result.failures} == {error}
    assert says in result.failures[0].message


@pytest.mark.slow
def test_a_server_echoing_the_key_into_its_answers_never_puts_it_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12's secrets promise against a hostile server: an answer that quotes the API key
    is stored with ``***`` in its place; no byte of the output directory holds the key."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("TRIO_DESIGNER_CACHE", "off")
    body = json.dumps(
        {
            "choices": [
                {
                    "message": {"content": f"the key is {KEY}.", "reasoning_content": KEY},
                    "finish_reason": "stop",
                }
            ]
        }
    ).encode()
    with ThreadedHostile(answering(answer(body=body))) as server:
        path = write_config(tmp_path, server.url)
        outcome = run_cli(["run", path.name, "-n", "2", "--progress", "none"], deadline=30)
    assert outcome.status == 0, outcome
    leaks = [
        p for p in (tmp_path / "out").rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()
    ]
    assert leaks == []
    import pyarrow.dataset as ds

    table = ds.dataset(tmp_path / "out" / "hostile" / "parquet-files").to_table()
    assert table.column("text").to_pylist() == ["the key is ***."] * 2


async def test_a_tls_server_behind_an_http_url_says_to_write_https(autojump_clock: Any) -> None:
    """A TLS server that hangs up on plaintext: the message names the likely cause."""
    import ssl
    from contextlib import suppress
    from functools import partial

    import trustme

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)

    async def handshake(stream: trio.SSLStream[trio.SocketStream]) -> None:
        with suppress(trio.BrokenResourceError):  # plaintext is no ClientHello
            await stream.do_handshake()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            partial(trio.serve_ssl_over_tcp, handshake, 0, context, host="127.0.0.1")
        )
        port = listener.transport_listener.socket.getsockname()[1]
        with trio.fail_after(BIG):
            config = pipeline(f"http://127.0.0.1:{port}/v1")
            result = await TrioDesigner(cache=False).preview(config, num_records=2)
        nursery.cancel_scope.cancel()
    assert {f.error_class for f in result.failures} == {"ModelConnectionError"}
    assert (
        "the server closed the connection without sending an answer (if it speaks TLS, the "
        "base_url must start with https://)" in result.failures[0].message
    )


async def test_check_calls_a_server_reachable_whatever_it_answers(autojump_clock: Any) -> None:
    """``check``'s "reachable" means the server answered, not that its answer was usable: an
    encoding we never asked for, bytes that are not HTTP and an oversized body are reachable
    servers with a problem; only silence (here: a server that never answers) is unreachable."""
    from trio_designer.models._check import check_models

    brotli = answer(body=b"\x1b\x00", headers=[("content-encoding", "br")])
    servers = {
        "brotli": answering(brotli),
        "garbage": answering(b"SSH-2.0-OpenSSH_9.6 not http\r\n\r\n"),
        "huge": answering(answer(body=completion("x" * 2_000))),
        "silent": hanging(),
    }
    with trio.fail_after(BIG):
        async with (
            hostile_server(servers["brotli"]) as brotli_server,
            hostile_server(servers["garbage"]) as garbage_server,
            hostile_server(servers["huge"]) as huge_server,
            hostile_server(servers["silent"]) as silent_server,
        ):
            urls = [brotli_server.url, garbage_server.url, huge_server.url, silent_server.url]
            config = PipelineConfig.from_dict(
                {
                    "providers": [
                        {"name": name, "base_url": url}
                        for name, url in zip(servers, urls, strict=True)
                    ],
                    "models": [
                        {
                            "alias": name,
                            "model": "m",
                            "provider": name,
                            "timeout": 5,
                            "max_response_bytes": 1_000,
                        }
                        for name in servers
                    ],
                    "columns": [
                        {"name": "t", "kind": "llm_text", "model": "brotli", "prompt": "x"}
                    ],
                }
            )
            results = {r.alias: r for r in await check_models(config)}
    for name in ("brotli", "garbage", "huge"):
        assert (results[name].reachable, results[name].ok) == (True, False), name
    assert results["huge"].status == 200
    assert "Content-Encoding 'br'" in (results["brotli"].problem or "")
    assert "larger than max_response_bytes (1,000 bytes" in (results["huge"].problem or "")
    silent = results["silent"]
    assert (silent.reachable, silent.ok, silent.status) == (False, False, None)
    assert "no complete answer within 5 s" in (silent.problem or "")
