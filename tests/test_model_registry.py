"""The model registry: clients per provider, one limiter per endpoint, usage, API keys.

Everything runs against the real simulator on 127.0.0.1 inside the test's ``trio.run``, in
virtual time (``autojump_clock``), so makespans are asserted exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import Any

import pytest
import trio

from trio_designer._core._limits import LimitChange, LimiterPolicy
from trio_designer._core._rate_retry import DEFAULT_RATE_LIMIT_RETRY, RateLimitRetry
from trio_designer._exceptions import (
    ConfigError,
    ModelRateLimitedError,
    ModelTimeoutError,
    ProviderError,
)
from trio_designer.config import (
    InferenceParams,
    LLMTextColumn,
    ModelConfig,
    ModelProvider,
    PipelineConfig,
)
from trio_designer.models._limiter import AdaptiveLimiter
from trio_designer.models._registry import (
    MAX_POOL_CONNECTIONS,
    ModelRegistry,
    ModelUsage,
    merge_inference,
    open_model_registry,
    pool_sizes,
)
from trio_designer.simulator import Faults, Latency, SimulatedModel, open_simulator

BIG = 10_000
HI = [{"role": "user", "content": "Say something about jazz."}]
KEY_VAR = "TRIO_DESIGNER_TEST_KEY"
SECRET = "sk-test-0123456789abcdefSECRET"

# Latency-aware probing halves admissions now and then; these tests pin exact makespans, so
# they use the 429-only policy (the latency signal has its own tests).
NO_LATENCY = partial(AdaptiveLimiter, policy=LimiterPolicy(latency_signal=False))


def pipeline(*models: ModelConfig, providers: Sequence[ModelProvider] = ()) -> PipelineConfig:
    aliases = [m.alias for m in models] or ["gen"]
    columns = [LLMTextColumn(name=f"c{i}", model=a, prompt="hi") for i, a in enumerate(aliases)]
    return PipelineConfig(columns=columns, models=models, providers=providers)


def sim(name: str, *, latency: float = 0.5, **kwargs: Any) -> SimulatedModel:
    return SimulatedModel(name=name, latency=Latency(median=latency), **kwargs)


# --------------------------------------------------------------------------- pure helpers


def test_merge_inference_overrides_field_by_field() -> None:
    base = InferenceParams(temperature=0.7, max_tokens=100, extra_body={"seed": 1, "top_k": 5})
    assert merge_inference(base, None) is base
    merged = merge_inference(base, InferenceParams(max_tokens=10, extra_body={"seed": 2}))
    assert merged == InferenceParams(
        temperature=0.7, max_tokens=10, extra_body={"seed": 2, "top_k": 5}
    )


def test_pool_size_sums_endpoint_ceilings_and_is_capped() -> None:
    models = [
        ModelConfig(alias="a", model="m1", max_parallel_requests=8),
        ModelConfig(alias="b", model="m1", max_parallel_requests=3),  # same endpoint as a
        ModelConfig(alias="c", model="m2", max_parallel_requests=5),
        ModelConfig(alias="d", model="x", provider="big", max_parallel_requests=300),
        ModelConfig(alias="e", model="y", provider="big", max_parallel_requests=300),
    ]
    assert pool_sizes(models) == {"simulator": 3 + 5, "big": MAX_POOL_CONNECTIONS}


def test_usage_adds_up() -> None:
    one = ModelUsage(input_tokens=1, output_tokens=2, requests_ok=1)
    two = ModelUsage(reasoning_tokens=3, requests_failed=1, requests_rate_limited=2)
    total = one + two
    assert total.requests == 4
    assert total.total_tokens == 3
    assert total.to_dict() == {
        "input_tokens": 1,
        "output_tokens": 2,
        "reasoning_tokens": 3,
        "requests_ok": 1,
        "requests_failed": 1,
        "requests_rate_limited": 2,
        "cached_input_tokens": 0,
        "cost": 0.0,
    }


def test_duplicate_alias_and_missing_client_are_config_errors() -> None:
    models = [ModelConfig(alias="a", model="m"), ModelConfig(alias="a", model="n", provider="p")]
    with pytest.raises(ConfigError) as info:
        ModelRegistry(models, {})
    assert info.value.problems == (
        "models[0].provider: no provider named 'simulator'; add it to 'providers', or use the "
        "built-in 'simulator'",
        "models[1].alias: 'a' is used by another model; aliases must be unique",
        "models[1].provider: no provider named 'p'; add it to 'providers', or use the built-in "
        "'simulator'",
    )


# --------------------------------------------------------------------------- the simulator


async def test_embedded_simulator_serves_every_model_and_counts_usage(autojump_clock: Any) -> None:
    config = pipeline(
        ModelConfig(alias="gen", model="sim-gen"),
        ModelConfig(alias="judge", model="sim-judge"),
    )
    with trio.fail_after(BIG):
        async with open_model_registry(
            config, simulator_models=[sim("sim-gen", latency=0.25)]
        ) as registry:
            assert registry.simulator is not None
            assert registry.simulator.url.startswith("http://127.0.0.1:")
            served = {m.name: m for m in registry.simulator.models}
            assert set(served) == {"sim-gen", "sim-judge"}
            assert served["sim-gen"].latency.median == 0.25  # as listed
            assert served["sim-judge"] == SimulatedModel(name="sim-judge")  # defaults
            start = trio.current_time()
            reply = await registry.model("gen").chat(HI)
            assert trio.current_time() - start == 0.25
            await registry.model("judge").chat(HI)
            await registry.model("judge").chat(HI)
            stats = registry.simulator.stats()
            usage = registry.usage()
    assert list(usage) == ["gen", "judge"]
    assert reply.content
    assert usage["gen"] == ModelUsage(
        input_tokens=reply.usage.input_tokens,
        output_tokens=reply.usage.output_tokens,
        requests_ok=1,
    )
    assert usage["judge"].requests_ok == 2
    for alias, model in (("gen", "sim-gen"), ("judge", "sim-judge")):
        assert usage[alias].input_tokens == stats[model].input_tokens > 0
        assert usage[alias].output_tokens == stats[model].output_tokens > 0


async def test_no_simulator_without_simulator_models(autojump_clock: Any) -> None:
    config = pipeline(
        ModelConfig(alias="gen", model="m", provider="local"),
        providers=[ModelProvider(name="local", base_url="http://127.0.0.1:9/v1")],
    )
    async with open_model_registry(config, simulator_models=[sim("m")]) as registry:
        assert registry.simulator is None
        assert list(registry.limiters()) == ["local:m"]


async def test_unknown_alias_suggests_the_closest(autojump_clock: Any) -> None:
    async with open_model_registry(pipeline(ModelConfig(alias="gen", model="m"))) as registry:
        assert "gen" in registry
        assert registry.aliases() == ("gen",)
        expected = r"^no model has the alias 'gne'; did you mean 'gen'\?$"
        with pytest.raises(ConfigError, match=expected):
            registry.model("gne")


async def test_inference_parameters_reach_the_endpoint(autojump_clock: Any) -> None:
    config = pipeline(
        ModelConfig(
            alias="gen",
            model="m",
            inference=InferenceParams(max_tokens=3, extra_body={"reasoning": True}),
        )
    )
    with trio.fail_after(BIG):
        async with open_model_registry(config) as registry:
            handle = registry.model("gen")
            short = await handle.chat(HI)
            long = await handle.chat(HI, inference=InferenceParams(max_tokens=4000))
    assert short.finish_reason == "length"  # the simulator cut the answer at 3 tokens
    assert long.finish_reason == "stop"
    assert short.reasoning  # extra_body {"reasoning": true} was sent
    assert long.reasoning
    assert handle.usage().reasoning_tokens == (
        short.usage.reasoning_tokens + long.usage.reasoning_tokens
    )
    assert handle.usage().reasoning_tokens > 0


@pytest.mark.deadline(64)
async def test_model_timeout_is_per_request_and_counted_as_failure(autojump_clock: Any) -> None:
    # Both aliases share the simulator's client; each request carries its own model's timeout.
    config = pipeline(
        ModelConfig(alias="gen", model="m", timeout=2.0),
        ModelConfig(alias="patient", model="m", timeout=30.0),
    )
    hang = sim("m", faults=Faults(rate_hang=1.0, hang_seconds=1000.0))
    with trio.fail_after(BIG):
        async with open_model_registry(
            config, simulator_models=[hang], limiter_factory=NO_LATENCY
        ) as registry:
            handle = registry.model("gen")
            with pytest.raises(ModelTimeoutError):
                await handle.chat(HI)
            assert trio.current_time() == 2.0
            with pytest.raises(ModelTimeoutError):
                await registry.model("patient").chat(HI)
            assert trio.current_time() == 2.0 + 30.0
            stats = handle.limiter.statistics()
    assert handle.usage() == ModelUsage(requests_failed=1)
    assert registry.usage()["patient"] == ModelUsage(requests_failed=1)
    assert (stats.failures, stats.in_flight, stats.successes) == (2, 0, 0)


# --------------------------------------------------------------------------- limiters


async def test_aliases_of_one_endpoint_share_one_limiter_with_the_smallest_ceiling(
    autojump_clock: Any,
) -> None:
    config = pipeline(
        ModelConfig(alias="fast", model="gen", max_parallel_requests=8),
        ModelConfig(alias="careful", model="gen", max_parallel_requests=3),
        ModelConfig(alias="other", model="judge", max_parallel_requests=5),
    )
    ends: list[float] = []
    with trio.fail_after(BIG):
        async with open_model_registry(
            config, simulator_models=[sim("gen"), sim("judge")], limiter_factory=NO_LATENCY
        ) as registry:
            limiters = registry.limiters()
            assert list(limiters) == ["simulator:gen", "simulator:judge"]
            assert registry.model("fast").limiter is registry.model("careful").limiter
            assert registry.model("other").limiter is limiters["simulator:judge"]
            assert limiters["simulator:gen"].statistics().ceiling == 3
            assert limiters["simulator:judge"].statistics().ceiling == 5

            async def call(alias: str) -> None:
                await registry.model(alias).chat(HI)
                ends.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                for i in range(12):
                    nursery.start_soon(call, "fast" if i % 2 else "careful")
            assert registry.simulator is not None
            stats = registry.simulator.stats()["gen"]
    # 12 requests, 3 at a time, 0.5 s each: four waves.
    assert sorted(ends) == [0.5] * 3 + [1.0] * 3 + [1.5] * 3 + [2.0] * 3
    assert stats.peak_concurrency == 3
    usage = registry.usage()
    assert usage["fast"].requests_ok == usage["careful"].requests_ok == 6
    assert usage["other"] == ModelUsage()


@pytest.mark.deadline(45)
async def test_a_429_storm_on_one_model_never_slows_the_other(autojump_clock: Any) -> None:
    config = pipeline(
        ModelConfig(alias="storm", model="storm", max_parallel_requests=8),
        ModelConfig(alias="calm", model="calm", max_parallel_requests=4),
    )
    changes: dict[str, list[LimitChange]] = defaultdict(list)

    def factory(name: str, ceiling: int) -> AdaptiveLimiter:
        return AdaptiveLimiter(
            name,
            ceiling,
            policy=LimiterPolicy(latency_signal=False),
            on_change=changes[name].append,
        )

    storm = sim("storm", faults=Faults(rate_429=1.0), retry_after=1.0)
    calm_ends: list[float] = []
    retry_afters: list[float | None] = []
    with trio.fail_after(BIG):
        async with open_model_registry(
            config, simulator_models=[storm, sim("calm")], limiter_factory=factory
        ) as registry:

            async def hammer() -> None:
                for _ in range(5):
                    try:
                        await registry.model("storm").chat(HI)
                    except ModelRateLimitedError as exc:
                        retry_afters.append(exc.retry_after)

            async def calm() -> None:
                await registry.model("calm").chat(HI)
                calm_ends.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(hammer)
                for _ in range(16):
                    nursery.start_soon(calm)
            storm_stats = registry.limiters()["simulator:storm"].statistics()
            calm_stats = registry.limiters()["simulator:calm"].statistics()
    # The calm model ran at its full ceiling the whole time: 16 requests / 4 slots x 0.5 s.
    assert max(calm_ends) == 2.0
    assert changes["simulator:calm"] == []
    assert (calm_stats.limit, calm_stats.rate_limited, calm_stats.successes) == (4, 0, 16)
    # The storm model: every request and every retry in place turned away; runs of 429s on
    # its slots are load, each cut to what was still in flight, down to the floor.
    assert storm_stats.limit == 1
    storm_changes = changes["simulator:storm"]
    assert {c.reason for c in storm_changes} == {"rate_limited"}
    assert all(c.new == max(1, c.concurrency - 1) for c in storm_changes)
    assert [c.old for c in storm_changes] == [8] + [c.new for c in storm_changes[:-1]]
    assert storm_stats.rate_limited == 8 * 5 * DEFAULT_RATE_LIMIT_RETRY.max_attempts
    assert retry_afters == [1.0] * 40
    usage = registry.usage()
    assert usage["storm"] == ModelUsage(requests_rate_limited=storm_stats.rate_limited)
    assert usage["calm"].requests_ok == 16


# --------------------------------------------------------------------------- API keys


def keyed_pipeline(base_url: str = "http://127.0.0.1:9/v1") -> PipelineConfig:
    return pipeline(
        ModelConfig(alias="gen", model="gen", provider="hosted"),
        ModelConfig(alias="ghost", model="no-such-model", provider="hosted"),
        providers=[ModelProvider(name="hosted", base_url=base_url, api_key_env=KEY_VAR)],
    )


@pytest.mark.parametrize(("value", "state"), [(None, "is not set"), ("", "is empty")])
async def test_missing_api_key_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str | None, state: str
) -> None:
    if value is None:
        monkeypatch.delenv(KEY_VAR, raising=False)
    else:
        monkeypatch.setenv(KEY_VAR, value)
    monkeypatch.setenv("UNRELATED_SECRET", SECRET)
    with pytest.raises(ConfigError) as info:
        async with open_model_registry(keyed_pipeline()):
            pytest.fail("the registry opened without its API key")
    message = str(info.value)
    assert message.startswith(
        f"provider 'hosted': api_key_env: the environment variable '{KEY_VAR}' {state}"
    )
    assert SECRET not in message


async def test_unknown_provider_is_a_config_error() -> None:
    config = pipeline(ModelConfig(alias="gen", model="m", provider="hostd"))
    config = PipelineConfig(
        columns=config.columns,
        models=config.models,
        providers=[ModelProvider(name="hosted", base_url="http://127.0.0.1:9/v1")],
    )
    with pytest.raises(ConfigError, match=r"no provider named 'hostd'; did you mean 'hosted'\?"):
        async with open_model_registry(config):
            pytest.fail("opened")


async def test_api_key_never_appears_in_errors_usage_or_reprs(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VAR, SECRET)
    storm = sim("gen", faults=Faults(rate_429=1.0))
    shown: list[str] = []
    with trio.fail_after(BIG):
        async with (
            open_simulator([storm]) as simulator,
            open_model_registry(keyed_pipeline(simulator.url)) as registry,
        ):
            assert registry.simulator is None  # a provider with a base URL, not the embedded one
            with pytest.raises(ModelRateLimitedError) as limited:
                await registry.model("gen").chat(HI)
            # A model the server does not know stops the run at its first 404 (fail fast).
            with pytest.raises(ProviderError) as missing:
                await registry.model("ghost").chat(HI)
            assert missing.value.reason == "not_found"
            shown += [str(limited.value), str(missing.value), repr(limited.value)]
            shown += [repr(registry), repr(registry.model("gen")), repr(registry.limiters())]
            shown += [repr(registry.usage()), repr(registry.model("gen").limiter.statistics())]
            # A 429 is retried in place up to its budget before the caller sees it.
            assert simulator.stats()["gen"].requests == DEFAULT_RATE_LIMIT_RETRY.max_attempts
    assert registry.usage()["gen"] == ModelUsage(
        requests_rate_limited=DEFAULT_RATE_LIMIT_RETRY.max_attempts
    )
    assert registry.usage()["ghost"] == ModelUsage(requests_failed=1)
    assert all(SECRET not in text for text in shown)


# --------------------------------------------------------------------------- 429s retried in place


async def test_a_429_is_retried_in_place_after_its_retry_after(autojump_clock: Any) -> None:
    """An endpoint that turns every request away with Retry-After 1.5: the request goes again
    after exactly 1.5 s, each time, until its budget of attempts is spent; then the caller
    sees the 429. No endpoint pause, no limit change from three 429s spread over seconds."""
    config = pipeline(ModelConfig(alias="gen", model="gen", max_parallel_requests=4))
    storm = sim("gen", faults=Faults(rate_429=1.0), retry_after=1.5)
    with trio.fail_after(BIG):
        async with open_model_registry(
            config,
            simulator_models=[storm],
            limiter_factory=NO_LATENCY,
            rate_limit_retry=RateLimitRetry(max_attempts=3),
        ) as registry:
            with pytest.raises(ModelRateLimitedError) as info:
                await registry.model("gen").chat(HI)
            assert trio.current_time() == 3.0  # two waits of 1.5 s
            assert registry.simulator is not None
            assert registry.simulator.stats()["gen"].requests == 3
    assert info.value.retry_after == 1.5
    assert registry.usage()["gen"] == ModelUsage(requests_rate_limited=3)


@pytest.mark.deadline(30)
async def test_the_waits_of_one_request_are_bounded(autojump_clock: Any) -> None:
    """Retry-After 10 s and a budget of 15 s of waiting: one wait, then the 429 is raised
    (a second wait would make 20 s)."""
    config = pipeline(ModelConfig(alias="gen", model="gen"))
    storm = sim("gen", faults=Faults(rate_429=1.0), retry_after=10.0)
    with trio.fail_after(BIG):
        async with open_model_registry(
            config,
            simulator_models=[storm],
            rate_limit_retry=RateLimitRetry(max_wait=15.0),
        ) as registry:
            with pytest.raises(ModelRateLimitedError):
                await registry.model("gen").chat(HI)
            assert trio.current_time() == 10.0
    assert registry.usage()["gen"].requests_rate_limited == 2


async def test_a_request_waiting_out_its_429_holds_no_slot(autojump_clock: Any) -> None:
    """Limit 1: while the rejected request waits out its Retry-After (1 s), the endpoint's
    only slot is free for anyone else, at once."""
    config = pipeline(ModelConfig(alias="gen", model="gen", max_parallel_requests=1))
    storm = sim("gen", faults=Faults(rate_429=1.0), retry_after=1.0)
    granted: list[float] = []
    with trio.fail_after(BIG):
        async with open_model_registry(
            config,
            simulator_models=[storm],
            limiter_factory=NO_LATENCY,
            rate_limit_retry=RateLimitRetry(max_attempts=2),
        ) as registry:
            limiter = registry.model("gen").limiter

            async def rejected() -> None:
                with pytest.raises(ModelRateLimitedError):
                    await registry.model("gen").chat(HI)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(rejected)
                await trio.sleep(0.5)  # the request is waiting out its first 429
                assert limiter.statistics().in_flight == 0
                async with limiter.slot() as permit:
                    granted.append(trio.current_time())
                    permit.success()
    assert granted == [0.5]
