"""LLM columns end to end: CellContext -> generator -> registry -> real simulator on 127.0.0.1.

Everything runs in virtual time (``autojump_clock``), so the duration of a cell (one request
or several re-asks of 0.5 s each) is asserted exactly. A small spy wraps the registry to record
the conversation each generator sends; the requests still go over HTTP to the simulator.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import pyarrow as pa
import pytest
import trio

from trio_designer import TrioDesigner
from trio_designer._core._jsonschema import validate
from trio_designer._core._limits import LimiterPolicy
from trio_designer._core._rate_retry import DEFAULT_RATE_LIMIT_RETRY
from trio_designer._exceptions import (
    ConfigError,
    ModelContentFilteredError,
    ModelOutputError,
    ModelRateLimitedError,
    ModelServerError,
    NonRetryableGenerationError,
)
from trio_designer.config import (
    CategorySampler,
    InferenceParams,
    LLMCodeColumn,
    LLMColumnConfig,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
    ModelConfig,
    PipelineConfig,
    Rubric,
)
from trio_designer.generators import CellContext
from trio_designer.generators._base import CellOutput
from trio_designer.generators._llm import (
    LLMCodeGenerator,
    LLMGenerator,
    LLMJudgeGenerator,
    LLMStructuredGenerator,
    LLMTextGenerator,
    ParseFailure,
    extract_code,
    judge_schema,
    parse_json,
)
from trio_designer.generators._registry import build_generator
from trio_designer.models._client import ChatResponse, Usage
from trio_designer.models._limiter import AdaptiveLimiter
from trio_designer.models._registry import ModelRegistry, open_model_registry
from trio_designer.simulator import Faults, Latency, SimulatedModel

BIG = 10_000
LATENCY = 0.5
ROW = {"topic": "jazz", "persona": "a music critic"}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "year": {"type": "integer", "minimum": 1900, "maximum": 2030},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "mood": {"enum": ["happy", "sad"]},
    },
    "required": ["title", "year", "tags", "mood"],
    "additionalProperties": False,
}
RUBRICS = (
    Rubric(
        name="quality",
        description="How good the text is.",
        scores={"1": "poor", "2": "fair", "3": "good", "4": "great", "5": "excellent"},
    ),
    Rubric(name="tone", description="The text's tone.", scores={"calm": "calm", "angry": "angry"}),
)


def text_column(**overrides: Any) -> LLMTextColumn:
    return LLMTextColumn(
        **{"name": "t", "model": "gen", "prompt": "Write about {{ topic }}.", **overrides}
    )


def code_column(**overrides: Any) -> LLMCodeColumn:
    return LLMCodeColumn(
        **{"name": "code", "model": "gen", "prompt": "Code about {{ topic }}.", **overrides}
    )


def structured_column(**overrides: Any) -> LLMStructuredColumn:
    fields = {
        "name": "facts",
        "model": "gen",
        "prompt": "Facts about {{ topic }}.",
        "schema": SCHEMA,
    }
    return LLMStructuredColumn(**{**fields, **overrides})


def judge_column(**overrides: Any) -> LLMJudgeColumn:
    fields = {"name": "verdict", "model": "gen", "prompt": "Judge: {{ topic }}", "rubrics": RUBRICS}
    return LLMJudgeColumn(**{**fields, **overrides})


# --------------------------------------------------------------------------- harness


@attrs.define
class Call:
    messages: list[dict[str, Any]]
    response_format: Mapping[str, Any] | None
    inference: InferenceParams | None


@attrs.define
class SpyHandle:
    """Records each chat call, then sends it through the real handle."""

    handle: Any
    calls: list[Call]

    @property
    def config(self) -> ModelConfig:
        config: ModelConfig = self.handle.config
        return config

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        response_format: Mapping[str, Any] | None = None,
        inference: InferenceParams | None = None,
        seed: int | None = None,
        cell: Any = None,
    ) -> ChatResponse:
        self.calls.append(
            Call(copy.deepcopy([dict(m) for m in messages]), response_format, inference)
        )
        response: ChatResponse = await self.handle.chat(
            messages, response_format=response_format, inference=inference, seed=seed, cell=cell
        )
        return response


@attrs.define
class Spy:
    """A registry look-alike that records calls (what ``ctx.models`` is in these tests)."""

    registry: ModelRegistry
    calls: list[Call] = attrs.field(factory=list)

    def model(self, alias: str) -> SpyHandle:
        return SpyHandle(self.registry.model(alias), self.calls)

    def __contains__(self, alias: object) -> bool:
        return alias in self.registry


@asynccontextmanager
async def simulated(
    column: LLMColumnConfig,
    *,
    model: str = "gen",
    faults: Faults | None = None,
    seed: int = 0,
    max_parallel_requests: int = 4,
) -> AsyncIterator[Spy]:
    """A registry whose alias ``gen`` is the simulated model ``model``."""
    config = PipelineConfig(
        columns=[column],
        models=[ModelConfig(alias="gen", model=model, max_parallel_requests=max_parallel_requests)],
    )
    simulated_model = SimulatedModel(
        name=model, latency=Latency(median=LATENCY), faults=faults or Faults(), seed=seed
    )
    factory = partial(AdaptiveLimiter, policy=LimiterPolicy(latency_signal=False))
    with trio.fail_after(BIG):
        async with open_model_registry(
            config, simulator_models=[simulated_model], limiter_factory=factory
        ) as registry:
            yield Spy(registry)


def context(spy: Spy | None, column: str, *, row_index: int = 0) -> CellContext:
    return CellContext(column=column, row_index=row_index, row=ROW, models=spy)


def requests_seen(spy: Spy) -> int:
    simulator = spy.registry.simulator
    assert simulator is not None
    return sum(s.requests for s in simulator.stats().models.values())


def response(content: str, finish_reason: str = "stop") -> ChatResponse:
    return ChatResponse(
        content=content, reasoning=None, usage=Usage(), finish_reason=finish_reason, model="m"
    )


# --------------------------------------------------------------------------- building


@pytest.mark.parametrize(
    ("column", "cls"),
    [
        (text_column(), LLMTextGenerator),
        (code_column(), LLMCodeGenerator),
        (structured_column(), LLMStructuredGenerator),
        (judge_column(), LLMJudgeGenerator),
    ],
    ids=["text", "code", "structured", "judge"],
)
def test_build_generator_dispatches_llm_kinds(column: LLMColumnConfig, cls: type[Any]) -> None:
    generator = build_generator(column)
    assert type(generator) is cls
    assert generator.strategy == "cell"
    assert generator.llm_bound is True
    nested = cls in (LLMStructuredGenerator, LLMJudgeGenerator)  # struct columns (issue 14)
    assert pa.types.is_struct(generator.arrow_type()) is nested
    assert generator.extra_columns() == ()
    with_reasoning = build_generator(attrs.evolve(column, extract_reasoning=True))
    assert with_reasoning.extra_columns() == (f"{column.name}__reasoning",)


def test_template_syntax_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"column 't': system_prompt has a Jinja syntax error"):
        build_generator(text_column(system_prompt="{{ persona "))


async def test_build_checks_the_alias_when_the_registry_is_open(autojump_clock: Any) -> None:
    async with simulated(text_column()) as spy:
        assert isinstance(build_generator(text_column(), models=spy.registry), LLMTextGenerator)
        with pytest.raises(
            ConfigError, match=r"^column 't': no model has the alias 'gne'; did you mean 'gen'\?$"
        ):
            build_generator(text_column(model="gne"), models=spy.registry)


# --------------------------------------------------------------------------- each kind


async def test_text_column_end_to_end(autojump_clock: Any) -> None:
    column = text_column(
        system_prompt="You are {{ persona }}.", inference=InferenceParams(temperature=0.3)
    )
    async with simulated(column) as spy:
        value = await build_generator(column).agenerate(context(spy, "t"))
        assert trio.current_time() == LATENCY
        usage = spy.registry.usage()["gen"]
    assert isinstance(value, str)
    assert value
    assert value == value.strip()
    [call] = spy.calls
    assert call.messages == [
        {"role": "system", "content": "You are a music critic."},
        {"role": "user", "content": "Write about jazz."},
    ]
    assert call.response_format is None
    assert call.inference == InferenceParams(temperature=0.3)
    assert usage.requests_ok == 1
    assert usage.output_tokens > 0


async def test_code_column_extracts_the_fenced_python(autojump_clock: Any) -> None:
    column = code_column()
    async with simulated(column) as spy:
        value = await build_generator(column).agenerate(context(spy, "code"))
    assert "```" not in value
    compile(value, "<llm>", "exec")  # real Python, not the prose around it
    [call] = spy.calls
    assert "```python" in call.messages[-1]["content"]
    assert call.messages[-1]["content"].startswith("Code about jazz.\n\n")


async def test_structured_column_validates_against_the_schema(autojump_clock: Any) -> None:
    column = structured_column()
    async with simulated(column) as spy:
        value = await build_generator(column).agenerate(context(spy, "facts"))
    assert isinstance(value, dict)
    assert validate(value, SCHEMA) == []
    [call] = spy.calls
    # minLength, minimum, maxItems: a strict structured-output mode would answer 400, so the
    # schema goes without strict (the answer is still validated here, every keyword).
    assert call.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "facts", "schema": SCHEMA, "strict": False},
    }
    prompt = call.messages[-1]["content"]
    match = re.search(r"<response_schema>(.*)</response_schema>", prompt, re.DOTALL)
    assert match is not None
    assert json.loads(match.group(1)) == SCHEMA


async def test_judge_column_scores_every_rubric(autojump_clock: Any) -> None:
    column = judge_column()
    values = []
    async with simulated(column) as spy:
        generator = build_generator(column)
        for row_index in range(6):
            values.append(await generator.agenerate(context(spy, "verdict", row_index=row_index)))
    for value in values:
        assert set(value) == {"quality", "tone"}
        assert isinstance(value["quality"]["score"], int)
        assert value["quality"]["score"] in range(1, 6)
        assert value["tone"]["score"] in ("calm", "angry")
        assert all(isinstance(v["reasoning"], str) for v in value.values())
    prompt = spy.calls[0].messages[-1]["content"]
    assert "- quality: How good the text is." in prompt
    assert "score 5: excellent" in prompt


async def test_extract_reasoning_fills_the_side_column(autojump_clock: Any) -> None:
    column = text_column(extract_reasoning=True)
    async with simulated(column, model="sim-reasoner") as spy:  # the simulator reasons
        output = await build_generator(column).agenerate(context(spy, "t"))
        usage = spy.registry.usage()["gen"]
    assert isinstance(output, CellOutput)
    assert isinstance(output.value, str)
    assert output.value
    reasoning = output.extras["t__reasoning"]
    assert isinstance(reasoning, str)
    assert reasoning
    assert reasoning not in output.value
    assert usage.reasoning_tokens > 0


async def test_extract_reasoning_without_reasoning_gives_none(autojump_clock: Any) -> None:
    column = structured_column(extract_reasoning=True)
    async with simulated(column) as spy:
        output = await build_generator(column).agenerate(context(spy, "facts"))
    assert isinstance(output, CellOutput)
    assert validate(output.value, SCHEMA) == []
    assert output.extras == {"facts__reasoning": None}


async def test_cells_share_the_endpoint_limit(autojump_clock: Any) -> None:
    column = structured_column()
    ends: list[float] = []
    async with simulated(column, max_parallel_requests=2) as spy:
        generator = build_generator(column)

        async def cell(row_index: int) -> None:
            value = await generator.agenerate(context(spy, "facts", row_index=row_index))
            assert validate(value, SCHEMA) == []
            ends.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for row_index in range(8):
                nursery.start_soon(cell, row_index)
        simulator = spy.registry.simulator
        assert simulator is not None
        assert simulator.stats()["gen"].peak_concurrency == 2
    assert sorted(ends) == [0.5, 0.5, 1.0, 1.0, 1.5, 1.5, 2.0, 2.0]


# --------------------------------------------------------------------------- re-asks


@pytest.mark.parametrize(
    ("make_column", "fault", "reason", "problem"),
    [
        (text_column, "empty", "empty", "the last answer was empty."),
        (code_column, "empty", "empty", "the last answer was empty."),
        (code_column, "malformed", "unparsable", "no complete fenced code block"),
        (code_column, "truncated", "truncated", "cut off at the server's token limit"),
        (structured_column, "empty", "empty", "the last answer was empty."),
        (structured_column, "malformed", "unparsable", "the answer is not valid JSON"),
        (structured_column, "truncated", "truncated", "cut off at the server's token limit"),
        (judge_column, "malformed", "unparsable", "the answer is not valid JSON"),
        (judge_column, "truncated", "truncated", "cut off at the server's token limit"),
        (text_column, "truncated", "truncated", "cut off at the server's token limit"),
    ],
)
@pytest.mark.parametrize("retries", [0, 2])
async def test_unusable_answers_are_reasked_then_fail(
    autojump_clock: Any, make_column: Any, fault: str, reason: str, problem: str, retries: int
) -> None:
    column: LLMColumnConfig = make_column(max_parse_retries=retries)
    faults = Faults(**{f"rate_{fault}": 1.0})
    async with simulated(column, faults=faults) as spy:
        with pytest.raises(ModelOutputError) as info:
            await build_generator(column).agenerate(context(spy, column.name, row_index=7))
        assert trio.current_time() == LATENCY * (retries + 1)
        assert requests_seen(spy) == retries + 1
        usage = spy.registry.usage()["gen"]
    error = info.value
    assert error.requests == retries + 1
    assert error.reason == reason
    assert (error.column, error.row) == (column.name, 7)
    assert not error.retryable
    assert str(error).startswith(
        f"column {column.name!r}: model 'gen' gave no usable answer in {retries + 1} request"
    )
    assert problem in str(error)
    assert usage.requests_ok == retries + 1  # every request counts
    assert usage.input_tokens > 0
    if fault == "empty":  # nothing to correct: the same conversation again
        assert [len(call.messages) for call in spy.calls] == [1] * (retries + 1)
    else:  # the answer and the problem are appended each time
        assert [len(call.messages) for call in spy.calls] == [1 + 2 * i for i in range(retries + 1)]
    if fault == "truncated":
        assert "No max_tokens is set" in str(error)


async def test_reask_conversation_names_the_problem(autojump_clock: Any) -> None:
    column = structured_column(max_parse_retries=1)
    async with simulated(column, faults=Faults(rate_malformed=1.0)) as spy:
        with pytest.raises(ModelOutputError):
            await build_generator(column).agenerate(context(spy, "facts"))
    first, second = spy.calls
    assert second.messages[0] == first.messages[0]
    assistant, again = second.messages[1:]
    assert assistant["role"] == "assistant"
    assert assistant["content"]  # the malformed answer, sent back verbatim
    assert parse_fails(assistant["content"])
    assert again["role"] == "user"
    assert again["content"].startswith(
        "Your answer could not be used: the answer is not valid JSON"
    )
    assert "<response_schema>" in again["content"]  # the format instructions are repeated
    assert second.response_format == first.response_format


def parse_fails(text: str) -> bool:
    try:
        parse_json(text)
    except ParseFailure:
        return True
    return False


async def test_truncated_json_is_reasked_until_complete(autojump_clock: Any) -> None:
    # With this seed the simulator truncates the first two answers and sends the third whole.
    column = structured_column(max_parse_retries=5)
    async with simulated(column, faults=Faults(rate_truncated=0.5), seed=2) as spy:
        value = await build_generator(column).agenerate(context(spy, "facts"))
        simulator = spy.registry.simulator
        assert simulator is not None
        log = simulator.request_log()
        usage = spy.registry.usage()["gen"]
        assert trio.current_time() == LATENCY * len(log)
    assert validate(value, SCHEMA) == []
    assert [r.fault for r in log] == ["truncated", "truncated", None]
    assert len(spy.calls) == 3
    reask = spy.calls[1].messages[-1]["content"]
    assert reask.startswith(
        "Your answer could not be used: the answer was cut off at the server's token limit "
        "before it was complete (finish_reason 'length'). Answer the request again, more briefly."
    )
    assert usage.requests_ok == 3


# --------------------------------------------------------------------------- finish reasons


@asynccontextmanager
async def simulated_with_limit(
    column: LLMColumnConfig, max_tokens: int, *, faults: Faults | None = None
) -> AsyncIterator[Spy]:
    """Like :func:`simulated`, with the model's ``max_tokens`` set (the simulator cuts an
    answer that reaches it, and says ``finish_reason: "length"``)."""
    config = PipelineConfig(
        columns=[column],
        models=[
            ModelConfig(
                alias="gen",
                model="gen",
                max_parallel_requests=4,
                inference=InferenceParams(max_tokens=max_tokens),
            )
        ],
    )
    model = SimulatedModel(name="gen", latency=Latency(median=LATENCY), faults=faults or Faults())
    with trio.fail_after(BIG):
        async with open_model_registry(config, simulator_models=[model]) as registry:
            yield Spy(registry)


async def test_a_cut_answer_that_parses_is_still_reasked(autojump_clock: Any) -> None:
    """The first answer is exactly max_tokens long: complete JSON, but finish_reason "length"
    (the simulator cannot tell an answer that would have stopped there). It is not taken."""
    column = structured_column(max_parse_retries=0)
    async with simulated(column) as spy:
        first = await build_generator(column).agenerate(context(spy, "facts"))
    whole = json.dumps(first, ensure_ascii=False, separators=(", ", ": "))
    limit = -(-len(whole) // 4)
    async with simulated_with_limit(column, limit) as spy:
        simulator = spy.registry.simulator
        assert simulator is not None
        with pytest.raises(ModelOutputError) as info:
            await build_generator(column).agenerate(context(spy, "facts"))
        [record] = simulator.request_log()
    assert record.completion_tokens == limit  # the whole answer arrived, marked "length"
    assert info.value.reason == "truncated"
    assert info.value.requests == 1
    assert str(info.value) == (
        f"column 'facts': model 'gen' gave no usable answer in 1 request (row 0; "
        f"max_parse_retries=0); the last answer was cut off at max_tokens ({limit}) before "
        f"it was complete (finish_reason 'length'). Raise max_tokens (now {limit}) for "
        f"model 'gen' or in the column's inference.max_tokens, or ask for a shorter answer."
    )


async def test_the_column_max_tokens_is_the_one_named(autojump_clock: Any) -> None:
    column = text_column(inference=InferenceParams(max_tokens=3), max_parse_retries=1)
    async with simulated_with_limit(column, 500) as spy:
        with pytest.raises(ModelOutputError, match=r"Raise max_tokens \(now 3\)"):
            await build_generator(column).agenerate(context(spy, "t"))
        assert requests_seen(spy) == 2


async def test_text_keep_stores_the_cut_answer_and_marks_it(autojump_clock: Any) -> None:
    column = text_column(on_truncated="keep", extract_reasoning=True)
    generator = build_generator(column)
    assert generator.extra_columns() == ("t__reasoning", "t__truncated")
    assert generator.extra_arrow_types() == {"t__truncated": pa.bool_()}
    async with simulated_with_limit(column, 5) as spy:
        cut = await generator.agenerate(context(spy, "t"))
        assert requests_seen(spy) == 1
    async with simulated(column) as spy:
        whole = await generator.agenerate(context(spy, "t"))
    assert isinstance(cut, CellOutput)
    assert cut.truncated is True
    assert cut.extras == {"t__reasoning": None, "t__truncated": True}
    assert 0 < len(cut.value) <= 20  # 5 tokens of 4 characters, stripped
    assert isinstance(whole, CellOutput)
    assert whole.truncated is False
    assert whole.extras["t__truncated"] is False
    assert whole.value.startswith(cut.value)  # the cut answer is a prefix of the whole one


async def test_text_drop_drops_at_the_first_cut_answer(autojump_clock: Any) -> None:
    column = text_column(on_truncated="drop", max_parse_retries=3)
    async with simulated_with_limit(column, 5) as spy:
        with pytest.raises(ModelOutputError) as info:
            await build_generator(column).agenerate(context(spy, "t", row_index=4))
        assert requests_seen(spy) == 1
    assert info.value.reason == "truncated"
    assert info.value.requests == 1
    assert str(info.value) == (
        "column 't': model 'gen' answered row 4 with an answer cut off at max_tokens (5) before "
        "it was complete (finish_reason 'length'), and on_truncated is 'drop'. Raise max_tokens "
        "(now 5) for model 'gen' or in the column's inference.max_tokens, or ask for a shorter "
        "answer."
    )


async def test_text_retry_is_the_default(autojump_clock: Any) -> None:
    column = text_column()
    assert column.on_truncated == "retry"
    assert build_generator(column).extra_columns() == ()
    async with simulated(column, faults=Faults(rate_truncated=0.5), seed=2) as spy:
        value = await build_generator(column).agenerate(context(spy, "t"))
        simulator = spy.registry.simulator
        assert simulator is not None
        faults = [r.fault for r in simulator.request_log()]
    assert faults[-1] is None
    assert faults[:-1]
    assert all(f == "truncated" for f in faults[:-1])
    assert isinstance(value, str)  # no side column, no mark


@pytest.mark.parametrize("make_column", [text_column, code_column, structured_column, judge_column])
async def test_content_filter_drops_the_row_without_a_retry(
    autojump_clock: Any, make_column: Any
) -> None:
    column: LLMColumnConfig = make_column(max_parse_retries=3)
    async with simulated(column, faults=Faults(rate_content_filter=1.0)) as spy:
        with pytest.raises(ModelContentFilteredError) as info:
            await build_generator(column).agenerate(context(spy, column.name, row_index=2))
        assert requests_seen(spy) == 1
        usage = spy.registry.usage()["gen"]
    error = info.value
    assert not error.retryable
    assert (error.column, error.row, error.status) == (column.name, 2, 200)
    assert str(error).startswith(
        f"column {column.name!r}: the content filter of model 'gen' stopped its answer for "
        f"row 2 (finish_reason 'content_filter', request 1); the row is dropped without a retry"
    )
    assert usage.requests_ok == 1  # the endpoint answered; its tokens were spent


async def test_an_empty_answer_is_sent_again_unchanged(autojump_clock: Any) -> None:
    column = structured_column(max_parse_retries=2)
    async with simulated(column, faults=Faults(rate_empty=0.5), seed=1) as spy:
        value = await build_generator(column).agenerate(context(spy, "facts"))
        simulator = spy.registry.simulator
        assert simulator is not None
        faults = [r.fault for r in simulator.request_log()]
    assert validate(value, SCHEMA) == []
    assert faults[0] == "empty"
    assert faults[-1] is None
    assert all(call.messages == spy.calls[0].messages for call in spy.calls)


# --------------------------------------------------------------------------- other failures


@pytest.mark.parametrize(
    ("faults", "error"),
    [(Faults(rate_429=1.0), ModelRateLimitedError), (Faults(rate_500=1.0), ModelServerError)],
)
async def test_endpoint_errors_propagate_without_reask(
    autojump_clock: Any, faults: Faults, error: type[Exception]
) -> None:
    """No re-ask for an endpoint error; a 429 is first retried in place by the model handle,
    up to its budget of attempts."""
    column = structured_column()
    async with simulated(column, faults=faults) as spy:
        with pytest.raises(error) as info:
            await build_generator(column).agenerate(context(spy, "facts", row_index=7))
        in_place = DEFAULT_RATE_LIMIT_RETRY.max_attempts
        assert requests_seen(spy) == (in_place if error is ModelRateLimitedError else 1)
    assert getattr(info.value, "column", None) == "facts"
    assert getattr(info.value, "row", None) == 7


async def test_undefined_template_variable_sends_nothing(autojump_clock: Any) -> None:
    column = text_column(prompt="About {{ topik }}")
    async with simulated(column) as spy:
        with pytest.raises(NonRetryableGenerationError, match=r"prompt references 'topik'"):
            await build_generator(column).agenerate(context(spy, "t"))
        assert requests_seen(spy) == 0


async def test_no_registry_is_a_non_retryable_error() -> None:
    with pytest.raises(NonRetryableGenerationError, match=r"the run has no model registry"):
        await build_generator(text_column()).agenerate(context(None, "t"))


# --------------------------------------------------------------------------- parsing (pure)


def test_extract_code_takes_the_last_block_of_the_language() -> None:
    text = (
        "First:\n```python\nx = 1\n```\nIn JS:\n```js\nlet y;\n```\nFinally:\n"
        "```Python\n\n    indented = True\n\n```\nDone."
    )
    assert extract_code(text, "python") == "    indented = True"
    assert extract_code("```\nplain\n```", "python") == "plain"
    with pytest.raises(ParseFailure, match=r"^the answer's code blocks are in js, not python\.$"):
        extract_code("```js\nlet y;\n```", "python")
    with pytest.raises(ParseFailure, match=r"no complete fenced code block"):
        extract_code("```python\nx = 1\n", "python")  # never closed (truncated)
    with pytest.raises(ParseFailure, match=r"code block is empty"):
        extract_code("```python\n\n```", "python")


def test_parse_json_accepts_bare_and_fenced_json() -> None:
    assert parse_json(' {"a": 1} ') == {"a": 1}
    assert parse_json('Sure!\n```json\n{"a": 1}\n```\nand\n```json\n[2]\n```') == [2]
    assert parse_json("```\n3\n```") == 3
    with pytest.raises(ParseFailure, match=r"^the JSON in the answer's code block is not valid"):
        parse_json('```json\n{"a" 1}\n```')
    with pytest.raises(ParseFailure, match=r"^the answer is not valid JSON: Expecting"):
        parse_json('{"a": ')


def test_judge_accepts_lenient_scores_and_rejects_unknown_ones() -> None:
    generator = LLMJudgeGenerator(judge_column())

    def answer(quality: Any, tone: Any) -> str:
        return json.dumps(
            {
                "quality": {"reasoning": "fine", "score": quality},
                "tone": {"reasoning": "even", "score": tone},
            }
        )

    for quality in (4, 4.0, "4", " 4 ", "+4"):
        value = generator.parse(response(answer(quality, "Calm")))
        assert value == {
            "quality": {"reasoning": "fine", "score": 4},
            "tone": {"reasoning": "even", "score": "calm"},
        }
    with pytest.raises(ParseFailure, match=r"\$\.quality\.score: '6' is not one of \['1', '2'"):
        generator.parse(response(answer(6, "calm")))
    with pytest.raises(ParseFailure, match=r"\$\.tone\.score: True is not of type 'string'"):
        generator.parse(response(answer(1, True)))
    with pytest.raises(ParseFailure, match=r"\$: 'tone' is a required property"):
        generator.parse(response(json.dumps({"quality": {"reasoning": "", "score": "1"}})))


def test_judge_schema_is_closed_and_complete() -> None:
    schema = judge_schema(RUBRICS)
    assert schema["required"] == ["quality", "tone"]
    assert schema["additionalProperties"] is False
    quality = schema["properties"]["quality"]
    assert quality["properties"]["score"] == {"type": "string", "enum": ["1", "2", "3", "4", "5"]}
    assert quality["required"] == ["reasoning", "score"]
    assert quality["additionalProperties"] is False


def test_structured_schema_mismatch_lists_the_problems() -> None:
    generator = LLMStructuredGenerator(structured_column())
    bad = {"title": "", "year": 1800, "tags": ["a", "b", "c", 4], "mood": "meh", "x": 1}
    with pytest.raises(ParseFailure) as info:
        generator.parse(response(json.dumps(bad)))
    message = str(info.value)
    assert message == (
        "the JSON does not match the schema: $: Additional properties are not allowed ('x' was "
        "unexpected); $.mood: 'meh' is not one of ['happy', 'sad']; $.tags: ['a', 'b', 'c', 4] "
        "is too long; $.title: '' should be non-empty; $.year: 1800 is less than the minimum "
        "of 1900 (and 1 more)."
    )


async def test_a_strict_compatible_schema_is_sent_strict(autojump_clock: Any) -> None:
    closed = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "mood": {"enum": ["happy", "sad"]}},
        "required": ["title", "mood"],
        "additionalProperties": False,
    }
    column = structured_column(schema=closed)
    async with simulated(column) as spy:
        await build_generator(column).agenerate(context(spy, "facts"))
    [call] = spy.calls
    assert call.response_format["json_schema"]["strict"] is True


def test_llm_generator_is_abstract_about_parsing() -> None:
    generator = LLMGenerator(text_column())
    with pytest.raises(NotImplementedError):
        generator.parse(response("x"))


# --------------------------------------------------------------------------- in the engine


async def test_the_engine_hands_each_llm_task_over_once_however_many_requests(
    autojump_clock: Any,
) -> None:
    """The LLM-wait handoff has one owner, the engine: it moves each LLM task to the LLM-wait
    pool once, before calling the generator; re-asks after unparseable answers are further
    requests of the same task, not further handoffs."""
    config = PipelineConfig(
        columns=(
            CategorySampler(name="topic", values=("jazz", "chess")),
            structured_column(max_parse_retries=5),
        ),
        models=(ModelConfig(alias="gen", model="gen"),),
    )
    model = SimulatedModel(
        name="gen", latency=Latency(median=LATENCY), faults=Faults(rate_malformed=0.5), seed=1
    )
    with trio.fail_after(BIG):
        result = await TrioDesigner(simulator_models=[model]).preview(config, num_records=10)
    assert result.slots is not None
    # One slot move per cell of "facts": handed off from the submission pool, or passed on
    # by the task of a cell that just finished (branch llmhop: with 8 of the 10 dispatched at
    # once, the last two follow in the tasks of the first to end).
    assert result.slots.handoffs + result.slots.passed_on == 10
    # Some cells needed re-asks. (Which ones, and whether one runs out of re-asks, depends on
    # the order requests reach the simulator, which draws its faults by arrival: not asserted.)
    assert result.usage["gen"]["requests_ok"] > 10


async def test_prepare_builds_a_judges_per_run_work_ahead(autojump_clock: Any) -> None:
    """``_prepare_ahead`` (called by ``create()`` once the first requests are out) builds the
    judge's instructions, response format and validator, which the first cell would otherwise
    build on its own path; the requests and values are the same as an unprepared
    generator's."""
    from trio_designer.generators._llm import LLMJudgeGenerator

    column = judge_column()
    prepared, plain = build_generator(column), build_generator(column)
    assert isinstance(prepared, LLMJudgeGenerator)
    prepared._prepare_ahead()
    assert {"_instructions", "_response_format"} <= set(vars(prepared))
    assert prepared._checker is not None
    assert "_instructions" not in vars(plain)
    outcomes = []
    for generator in (prepared, plain):
        async with simulated(column) as spy:
            value = await generator.agenerate(context(spy, "verdict", row_index=3))
        outcomes.append((value, [(c.messages, c.response_format) for c in spy.calls]))
    assert outcomes[0] == outcomes[1]


def test_prepare_never_raises_the_cell_does() -> None:
    """What fails in ``_prepare_ahead`` fails again, as before, in the cell that needs it."""
    from trio_designer.generators._llm import LLMJudgeGenerator

    class Broken(LLMJudgeGenerator):
        def format_instructions(self) -> str:
            raise RuntimeError("no instructions")

    generator = Broken(judge_column())
    generator._prepare_ahead()  # swallowed
    with pytest.raises(RuntimeError, match="no instructions"):
        generator._instructions  # noqa: B018


def test_the_run_prepares_generators_through_a_private_hook_only() -> None:
    """``create()``'s ``_prepare_generators`` calls ``_prepare_ahead`` (best effort), never a
    generator's own public method of a similar name (a plugin's ``prepare``)."""
    from trio_designer._designer import _prepare_generators
    from trio_designer.generators._base import ColumnGenerator

    calls: list[str] = []

    class Plugin(ColumnGenerator):
        def prepare(self) -> None:
            calls.append("prepare")

        def _prepare_ahead(self) -> None:
            calls.append("ahead")
            raise RuntimeError("swallowed")

    judge = build_generator(judge_column())
    _prepare_generators({"plugin": Plugin(), "verdict": judge})
    assert calls == ["ahead"]
    assert "_instructions" in vars(judge)
