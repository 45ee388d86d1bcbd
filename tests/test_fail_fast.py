"""Failing fast where nothing can work: a dead base_url, an unknown host, a certificate the
client cannot verify, a rejected API key. Each stops the run with one ``ProviderError`` naming
the provider, its ``base_url`` and the remedy, within 3 s; a healthy endpoint pays nothing.

Real sockets on 127.0.0.1 (the simulator, small scripted servers, a port nobody listens on);
virtual time where nothing runs in a thread, the real clock (with a deadline) where the parquet
sink does.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trustme
from _loopback import Reply, ScriptedApp, served, status

from trio_designer import PipelineConfig, ProviderError, TrioDesigner
from trio_designer._core._firstcontact import FirstContact
from trio_designer._exceptions import ModelConnectionError
from trio_designer.models._client import OpenAICompatibleClient
from trio_designer.simulator import Latency, SimulatedModel, open_simulator

BIG = 10_000
MESSAGES = [{"role": "user", "content": "hi"}]


def dead_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def pipeline(base_url: str, *, api_key_env: str | None = None, rows_per_group: int = 4) -> Any:
    provider: dict[str, Any] = {"name": "local", "base_url": base_url}
    if api_key_env:
        provider["api_key_env"] = api_key_env
    return PipelineConfig.from_dict(
        {
            "providers": [provider],
            "models": [
                {"alias": "gen", "model": "m", "provider": "local", "max_parallel_requests": 8}
            ],
            "run": {"row_group_size": rows_per_group},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {"name": "text", "kind": "llm_text", "model": "gen", "prompt": "{{ topic }}"},
            ],
        }
    )


# -- the rule ------------------------------------------------------------------------------------


def test_a_provider_that_answered_once_is_never_stopped() -> None:
    contact = FirstContact()
    assert contact.record("inconclusive") is False  # a timeout proves nothing
    assert contact.record("unreachable") is True
    assert contact.record("rejected") is True
    assert contact.record("answered") is False
    assert contact.record("unreachable") is False
    assert contact.record("rejected") is False
    stats = contact.statistics()
    assert (stats.verified, stats.answered, stats.rejected, stats.unreachable) == (True, 1, 2, 2)


# -- dead endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["async", "sync"])
async def test_a_dead_base_url_stops_the_run_with_one_message(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture, engine: Any
) -> None:
    caplog.set_level(logging.INFO, logger="trio_designer")
    port = dead_port()
    url = f"http://127.0.0.1:{port}/v1"
    with trio.fail_after(BIG):
        with pytest.raises(ProviderError) as info:
            await TrioDesigner(engine=engine).preview(pipeline(url), num_records=8)
    assert trio.current_time() < 3  # the client's transport retries (~1.5 s), then the stop
    error = info.value
    assert (error.provider, error.base_url, error.reason) == ("local", url, "unreachable")
    assert str(error) == (
        f"Provider 'local' at {url} cannot be reached: could not connect to 127.0.0.1:{port}: "
        f"OSError: all attempts to connect to 127.0.0.1:{port} failed (3 attempts); nothing "
        f"sent to it has worked, so the run stops. Check that the server is running and "
        f"listening there, and the provider's base_url (scheme, host name, port)."
    )
    stops = [r for r in caplog.records if r.getMessage().startswith("stopping the run")]
    assert len(stops) == 1  # eight requests failed at once; one record, at info level
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing dropped


@pytest.mark.slow
def test_a_dead_base_url_keeps_what_was_written_and_records_failed(tmp_path: Path) -> None:
    """The real clock (the sink writes in threads): the run stops within 3 s of wall time, and
    metadata.json says ``failed`` with the one message."""
    url = f"http://127.0.0.1:{dead_port()}/v1"

    async def create() -> None:
        with trio.fail_after(30), pytest.raises(ProviderError):
            await TrioDesigner().create(pipeline(url), num_records=8, output_dir=tmp_path)

    start = time.monotonic()
    trio.run(create)
    elapsed = time.monotonic() - start
    assert elapsed < 3
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["status"] == "failed"
    stopped = meta["summary"]["stopped"]
    assert stopped["error_class"] == "ProviderError"
    assert stopped["message"].startswith(f"Provider 'local' at {url} cannot be reached")
    assert meta["row_groups"] == {}


@pytest.mark.slow
def test_an_unknown_host_names_the_host() -> None:
    """The real clock: name lookups run in a thread, which an autojumping clock would take
    for idleness."""
    url = "http://no-such-host.invalid/v1"

    async def preview() -> ProviderError:
        with trio.fail_after(30):
            with pytest.raises(ProviderError) as info:
                await TrioDesigner().preview(pipeline(url), num_records=2)
            return info.value

    start = time.monotonic()
    error = trio.run(preview)
    assert time.monotonic() - start < 3
    assert error.reason == "unreachable"
    info = pytest.ExceptionInfo.from_exception(error)
    assert str(info.value).startswith(
        f"Provider 'local' at {url} cannot be reached: could not connect to "
        f"no-such-host.invalid:80: gaierror: "
    )


@pytest.fixture
def ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> trustme.CA:
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return authority


@asynccontextmanager
async def tls_listener(ca: trustme.CA, name: str) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 whose certificate is for ``name``; yields its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)

    async def close(stream: trio.abc.Stream) -> None:
        with suppress(trio.BrokenResourceError):  # the client gives up in the handshake
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            partial(trio.serve_ssl_over_tcp, close, 0, context, host="127.0.0.1")
        )
        try:
            yield listener.transport_listener.socket.getsockname()[1]
        finally:
            nursery.cancel_scope.cancel()


async def test_a_certificate_that_does_not_verify_says_what_to_do(
    ca: trustme.CA, autojump_clock: Any
) -> None:
    with trio.fail_after(BIG):
        async with tls_listener(ca, "someone-else.test") as port:
            url = f"https://127.0.0.1:{port}/v1"
            with pytest.raises(ProviderError) as info:
                await TrioDesigner().preview(pipeline(url), num_records=2)
    message = str(info.value)
    assert message.startswith(f"Provider 'local' at {url} cannot be reached: the TLS handshake")
    assert "SSLCertVerificationError" in message
    assert message.endswith(
        "If the server uses a certificate of a private authority, point SSL_CERT_FILE at that "
        "authority's certificate; if it does not speak TLS, write http:// in the provider's "
        "base_url."
    )


# -- rejected credentials -----------------------------------------------------------------------


async def test_a_wrong_api_key_stops_at_the_first_answer(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TD_KEY", "sk-wrong-0123456789")
    with trio.fail_after(BIG):
        async with open_simulator([SimulatedModel(name="m")], api_key="sk-right") as sim:
            with pytest.raises(ProviderError) as info:
                await TrioDesigner().preview(pipeline(sim.url, api_key_env="TD_KEY"), num_records=4)
            assert trio.current_time() == 0  # a 401 is not retried: no waiting at all
            assert sim.stats().unauthorized <= 4
    error = info.value
    assert error.reason == "credentials"
    message = str(error)
    assert message.startswith(
        f"Provider 'local' at {sim.url} rejected the credentials (HTTP 401 Unauthorized); "
        f"nothing sent to it has worked, so the run stops. Check the API key in the environment "
        f"variable TD_KEY (api_key_env). Server said: Incorrect API key provided"
    )
    assert "sk-wrong-0123456789" not in message


async def test_no_api_key_where_one_is_needed(autojump_clock: Any) -> None:
    with trio.fail_after(BIG):
        async with open_simulator([SimulatedModel(name="m")], api_key="sk-right") as sim:
            with pytest.raises(ProviderError, match=r"The provider wants an API key: export it"):
                await TrioDesigner().preview(pipeline(sim.url), num_records=2)


async def test_a_forbidden_model_names_the_model(autojump_clock: Any) -> None:
    app = ScriptedApp(default=status(403))
    with trio.fail_after(BIG):
        async with served(app) as url:
            with pytest.raises(ProviderError) as info:
                await TrioDesigner().preview(pipeline(url), num_records=2)
    assert str(info.value) == (
        f"Provider 'local' at {url} rejected the credentials (HTTP 403 Forbidden); nothing "
        f"sent to it has worked, so the run stops. The API key is not allowed to use model "
        f"'m': check its permissions (and the organization or project it belongs to). Server "
        f"said: status 403"
    )


# -- healthy and once-healthy endpoints ----------------------------------------------------------


async def test_a_healthy_endpoint_gets_no_extra_request(autojump_clock: Any) -> None:
    model = SimulatedModel(name="m", latency=Latency(median=0.2))
    with trio.fail_after(BIG):
        async with open_simulator([model]) as sim:
            result = await TrioDesigner().preview(pipeline(sim.url), num_records=8)
            log = sim.request_log()
    assert result.num_records_written == 8
    assert result.elapsed == pytest.approx(0.2)  # one wave: nothing before the first request
    assert len(log) == 8  # one request per cell, no probe
    assert min(r.start for r in log) == pytest.approx(log[0].start)


async def test_after_an_answer_a_refused_connection_is_an_ordinary_failure(
    autojump_clock: Any,
) -> None:
    with trio.fail_after(BIG):
        async with OpenAICompatibleClient(
            base_url=f"http://127.0.0.1:{dead_port()}/v1", name="p", fail_fast=True
        ) as client:
            with pytest.raises(ProviderError):
                await client.chat(model="m", messages=MESSAGES)
        async with open_simulator([SimulatedModel(name="m", latency=Latency(median=0))]) as sim:
            client = OpenAICompatibleClient(base_url=sim.url, name="p", fail_fast=True)
            await client.chat(model="m", messages=MESSAGES)
        async with client:  # the simulator is gone: refused, but the provider worked before
            with pytest.raises(ModelConnectionError):
                await client.chat(model="m", messages=MESSAGES)
    assert client.first_contact().verified


# -- trio-designer check -------------------------------------------------------------------------


async def test_check_models_reports_each_endpoint(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_designer.models._check import EMBEDDED, check_models

    monkeypatch.setenv("TD_KEY", "sk-wrong-0123456789")
    dead = f"http://127.0.0.1:{dead_port()}/v1"
    budgeted = SimulatedModel(name="m", latency=Latency(median=0.3), rpm=600, tpm=100_000)
    with trio.fail_after(BIG):
        async with (
            open_simulator([budgeted]) as sim,
            open_simulator([SimulatedModel(name="m")], api_key="sk-right") as locked,
        ):
            config = PipelineConfig.from_dict(
                {
                    "providers": [
                        {"name": "api", "base_url": sim.url},
                        {"name": "locked", "base_url": locked.url, "api_key_env": "TD_KEY"},
                        {"name": "dead", "base_url": dead},
                    ],
                    "models": [
                        {"alias": "fast", "model": "m", "provider": "api"},
                        {"alias": "typo", "model": "no-such-model", "provider": "api"},
                        {"alias": "locked", "model": "m", "provider": "locked"},
                        {"alias": "dead", "model": "m", "provider": "dead"},
                        {"alias": "local", "model": "sim-gen"},
                    ],
                    "columns": [{"name": "t", "kind": "llm_text", "model": "fast", "prompt": "x"}],
                }
            )
            results = await check_models(config)
            # One request for the known model, no retry (the 404 never reaches a model).
            assert len(sim.request_log()) == 1
    fast, typo, key, down, local = results
    assert (fast.ok, fast.reachable, fast.auth_ok, fast.status) == (True, True, True, 200)
    assert fast.latency == pytest.approx(0.3)
    assert dict(fast.limits)["x-ratelimit-limit-requests"] == "600"
    assert dict(fast.limits)["x-ratelimit-limit-tokens"] == "100000"
    assert (typo.ok, typo.reachable, typo.auth_ok, typo.status) == (False, True, True, 404)
    assert typo.problem is not None
    assert "check the model name" in typo.problem
    assert (key.ok, key.auth_ok, key.status) == (False, False, 401)
    assert key.problem is not None
    assert "Check the API key in the environment variable TD_KEY" in key.problem
    assert "sk-wrong" not in key.problem
    assert (down.ok, down.reachable, down.auth_ok) == (False, False, None)
    assert down.problem is not None
    assert down.problem.startswith(f"Provider 'dead' at {dead} cannot be reached")
    assert (local.ok, local.base_url) == (True, EMBEDDED)


def test_check_limits_summary() -> None:
    from trio_designer.cli._check import limits_summary

    assert limits_summary({}) == "-"
    assert (
        limits_summary(
            {
                "x-ratelimit-limit-requests": "600",
                "x-ratelimit-remaining-requests": "599",
                "x-ratelimit-limit-tokens": "1000",
            }
        )
        == "requests: 599 of 600 left; tokens: 1000 left"
    )
    assert limits_summary({"ratelimit-policy": '"rpm";q=600;w=60'}) == 'policy "rpm";q=600;w=60'


def test_check_command_exits_1_unless_every_model_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trio_designer.cli import main

    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{dead_port()}/v1"
    (tmp_path / "good.yaml").write_text(
        "models: [{alias: gen, model: sim-gen}]\n"
        "columns: [{name: t, kind: llm_text, model: gen, prompt: hi}]\n"
    )
    (tmp_path / "bad.yaml").write_text(
        f"providers: [{{name: dead, base_url: '{dead}'}}]\n"
        "models: [{alias: gen, model: sim-gen}, {alias: gone, model: m, provider: dead}]\n"
        "columns: [{name: t, kind: llm_text, model: gen, prompt: hi}]\n"
    )
    assert main(["check", "good.yaml"]) == 0
    good = capsys.readouterr().out.splitlines()
    assert good[0].split() == [
        "model", "provider", "base_url", "reachable", "auth", "latency", "limits", "result"
    ]  # fmt: skip
    assert good[1].split()[:5] == ["gen", "simulator", "(embedded", "simulator)", "yes"]
    assert good[-1] == "1 of 1 model passed"
    assert main(["check", "bad.yaml"]) == 1
    bad = capsys.readouterr().out.splitlines()
    assert bad[2].split()[:4] == ["gone", "dead", dead, "no"]
    assert bad[2].split()[-1] == "failed"
    assert bad[3].startswith(f"gone: Provider 'dead' at {dead} cannot be reached")
    assert bad[-1] == "1 of 2 models passed"


@pytest.mark.slow
def test_run_command_prints_one_error_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A runtime failure, not a config error: exit 1, one ``error:`` line, status failed."""
    from trio_designer.cli import main

    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{dead_port()}/v1"
    (tmp_path / "dead.yaml").write_text(
        f"providers: [{{name: local, base_url: '{dead}'}}]\n"
        "models: [{alias: gen, model: m, provider: local}]\n"
        "columns: [{name: t, kind: llm_text, model: gen, prompt: hi}]\n"
    )
    start = time.monotonic()
    assert main(["run", "dead.yaml", "-n", "4", "--progress", "none"]) == 1
    assert time.monotonic() - start < 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"error: Provider 'local' at {dead} cannot be reached: could not connect to "
        f"{dead.removeprefix('http://').removesuffix('/v1')}: OSError: all attempts to connect "
        f"to {dead.removeprefix('http://').removesuffix('/v1')} failed (3 attempts); nothing "
        f"sent to it has worked, so the run stops. Check that the server is running and "
        f"listening there, and the provider's base_url (scheme, host name, port)."
    ]
    meta = json.loads((tmp_path / "out" / "dead" / "metadata.json").read_text())
    assert meta["status"] == "failed"


# -- a wrong model id or base_url path ------------------------------------------------------------


def test_a_404_stops_only_a_model_that_was_never_found() -> None:
    contact = FirstContact()
    assert contact.record("not_found", "typo") is True
    assert contact.record("answered", "real") is False
    assert contact.record("not_found", "real") is False  # answered once: an ordinary failure
    assert contact.record("not_found", "typo") is True  # another model's answers say nothing
    assert contact.record("unreachable", "typo") is False  # but the provider is verified
    assert contact.statistics().verified is True


async def test_a_wrong_model_id_stops_at_the_first_404(autojump_clock: Any) -> None:
    """The simulator serves model ``m`` only; the config asks for ``mm``: one message naming
    the model, the URL and the remedy, at once (a 404 is not retried), nothing generated."""
    with trio.fail_after(BIG):
        async with open_simulator([SimulatedModel(name="mm-other")]) as sim:
            with pytest.raises(ProviderError) as info:
                await TrioDesigner().preview(pipeline(sim.url), num_records=8)
            assert trio.current_time() == 0
    error = info.value
    assert (error.provider, error.reason) == ("local", "not_found")
    message = str(error)
    assert message.startswith(
        f"Provider 'local' at {sim.url} answered HTTP 404 Not Found at "
        f"{sim.url.rstrip('/')}/chat/completions for model 'm', which no request has got "
        f"another answer for; nothing sent to it has worked, so the run stops. Check the model "
        f"name against the server's model list (GET <base_url>/models)"
    )


async def test_a_base_url_without_v1_stops_at_the_first_404(autojump_clock: Any) -> None:
    with trio.fail_after(BIG):
        async with open_simulator([SimulatedModel(name="m")]) as sim:
            root = sim.url.rstrip("/").removesuffix("/v1")
            with pytest.raises(ProviderError, match=r"base_url usually ends in /v1"):
                await TrioDesigner().preview(pipeline(root), num_records=4)


async def test_a_model_found_once_is_never_stopped_by_a_later_404(autojump_clock: Any) -> None:
    """A server that answers the first request and, a second later, 404s the others: ordinary
    cell failures (their rows dropped), not a stopped run."""
    app = ScriptedApp(script=[Reply()], default=attrs.evolve(status(404), delay=1.0))
    with trio.fail_after(BIG):
        async with served(app) as url:
            result = await TrioDesigner().preview(pipeline(url), num_records=3)
    assert (result.num_records_written, result.num_rows_dropped) == (1, 2)
    assert {f.error_class for f in result.failures} == {"ModelRequestError"}
