"""LLM columns: a prompt rendered per row, sent to a model, the answer parsed and checked.

Four kinds, one conversation loop (:class:`LLMGenerator`)::

    render prompt (+ system prompt) with the row
    repeat up to 1 + max_parse_retries times:
        answer = await ctx.models.model(alias).chat(messages, ...)
        finish_reason "content_filter"  -> raise ModelContentFilteredError (row dropped)
        finish_reason "length"          -> truncated: re-ask ("your answer was cut off"),
                                           or, for text columns, keep/drop (on_truncated)
        empty content                   -> send the same messages again
        parse(answer) -> value          # ok: done
        otherwise append the answer and a user message naming the problem, and ask again
    raise ModelOutputError(requests=..., reason=...)  # non-retryable: the row is dropped

What each kind asks for and accepts:

==================  =====================================================  ================
kind                request                                                value
==================  =====================================================  ================
``llm_text``        the prompt                                             the answer,
                                                                           stripped; empty
                                                                           is a failure
``llm_code``        the prompt + "one fenced block: ```<language>"          the code of the
                                                                           last block tagged
                                                                           with the language
                                                                           (or untagged)
``llm_structured``  the prompt + the schema in ``<response_schema>`` tags,  the parsed JSON,
                    and ``response_format`` ``json_schema`` (strict)       schema-valid
``llm_judge``       the prompt + the rubrics + a generated schema           ``{rubric:
                    (``{rubric: {reasoning, score}}``)                     {"reasoning",
                                                                           "score"}}``
==================  =====================================================  ================

The schema goes both ways because endpoints differ: servers with structured output honour
``response_format``; others (and models behind proxies that drop it) still read the prompt.
Answers are accepted as bare JSON or inside a ```` ```json ```` fence.

Judge scores: when every score key of a rubric is an integer literal (``"1"`` .. ``"5"``), the
score is returned as an ``int``; otherwise as the key string. Models that answer ``4``, ``4.0``
or ``" 4 "`` for the key ``"4"`` are accepted.

LLM generators are ``llm_bound``: the engine moves their task to the LLM-wait pool before it
calls :meth:`LLMGenerator.agenerate`, once, however many re-asks follow (see
:mod:`trio_designer.generators._base`).

**Finish reasons.** An answer cut off at ``max_tokens`` (``finish_reason == "length"``) is
never taken as complete by code, structured and judge columns, even when the cut text happens to
parse (a JSON array cut after its third item still parses): it is re-asked like a parse
failure, telling the model its answer was cut off, and the last failure's message says to raise
``max_tokens`` (``ModelOutputError.reason == "truncated"``). Text columns follow their
``on_truncated`` setting: ``retry`` (the same, the default), ``keep`` (the cut text is the
value; the cell is marked, see :class:`~trio_designer.generators._base.CellOutput`, and the side
column ``<name>__truncated`` says which rows), or ``drop`` (the row is dropped at once). An
answer stopped by the provider's content filter (``"content_filter"``) raises
:class:`~trio_designer.ModelContentFilteredError` at once: the same prompt would meet the same
filter. An empty answer (not cut off) says nothing a correction could address, so the same
messages are sent again (a new ``seed``), as one attempt of the same budget
(``reason == "empty"`` if every attempt is empty).

Every attempt is a real request, so every attempt counts in the model's usage (the registry
counts them). Endpoint errors (429, timeouts, 5xx...) are not parse failures: they propagate
at once, with the column and row filled in, for the scheduler to defer or drop.

Reasoning: with ``extract_reasoning=True`` the value stays the answer, and the model's
reasoning text (``reasoning_content``) goes to the side column ``<name>__reasoning`` (``None``
when the endpoint sent none), via :class:`~trio_designer.generators._base.CellOutput`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs
import pyarrow as pa

from .._cache import CellKey
from .._core._jsonenc import indented_text
from .._core._jsonschema import SchemaChecker, strict_problems
from .._exceptions import (
    ConfigError,
    GenerationError,
    ModelContentFilteredError,
    ModelOutputError,
    NonRetryableGenerationError,
)
from .._sink._nested import arrow_type_for_schema, value_fits
from ._base import MISSED, CellContext, CellOutput, ColumnGenerator, Replayed, first_draws
from ._templates import check_template, render, render_column

if TYPE_CHECKING:
    from ..config import (
        LLMCodeColumn,
        LLMColumnConfig,
        LLMJudgeColumn,
        LLMStructuredColumn,
        LLMTextColumn,
        Rubric,
    )
    from ..models._client import ChatResponse

__all__ = [
    "REASONING_SUFFIX",
    "TRUNCATED_SUFFIX",
    "LLMCodeGenerator",
    "LLMGenerator",
    "LLMJudgeGenerator",
    "LLMStructuredGenerator",
    "LLMTextGenerator",
    "ParseFailure",
    "build_llm_generator",
    "extract_code",
    "judge_schema",
    "parse_json",
]

REASONING_SUFFIX: Final = "__reasoning"
"""Suffix of the side column that holds a column's reasoning trace."""

TRUNCATED_SUFFIX: Final = "__truncated"
"""Suffix of the side column that marks kept answers cut off at ``max_tokens`` (text columns
with ``on_truncated: keep``)."""

_MAX_ERRORS_SHOWN: Final = 5
_MAX_ERROR_CHARS: Final = 600

# A fenced block: an opening fence (``` plus an optional info string) at the start of a line,
# then everything up to a closing fence on a line of its own.
_FENCE = re.compile(
    r"^[ \t]*```[ \t]*(?P<tag>[^\s`]*)[^\n]*\n(?P<body>.*?)^[ \t]*```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
_INTEGER_LITERAL = re.compile(r"^[+-]?\d+$")
_BoundMethod = types.MethodType


class ParseFailure(Exception):
    """An answer that cannot be used; ``str(exc)`` says why, in words for the model."""


# ---------------------------------------------------------------------------------------------
# The conversation loop
# ---------------------------------------------------------------------------------------------


class LLMGenerator(ColumnGenerator):
    """The shared loop of every LLM column: render, call, parse, re-ask.

    Subclasses set what to ask (:meth:`format_instructions`, :meth:`response_format`) and how
    to read an answer (:meth:`parse`).

    Args:
      column: the LLM column's config.

    Raises:
      ConfigError: the prompt or system prompt has a Jinja syntax error.
    """

    llm_bound: ClassVar[bool] = True
    replays_from_cache: ClassVar[bool] = True

    def __init__(self, column: LLMColumnConfig) -> None:
        check_template(column.prompt, column=column.name, field="prompt")
        if column.system_prompt is not None:
            check_template(column.system_prompt, column=column.name, field="system_prompt")
        self.column = column

    # -- what subclasses define ----------------------------------------------------------------

    def format_instructions(self) -> str | None:
        """Text appended to the user prompt saying how to answer (``None``: nothing)."""
        return None

    def response_format(self) -> Mapping[str, Any] | None:
        """The request's ``response_format`` (``None``: not sent)."""
        return None

    def parse(self, response: ChatResponse) -> Any:
        """The cell value from one answer.

        Raises:
          ParseFailure: the answer cannot be used; the message is shown to the model.
        """
        raise NotImplementedError

    def on_truncated(self) -> str:
        """What to do with an answer cut off at ``max_tokens``: ``"retry"`` (re-ask like a
        parse failure), ``"keep"`` or ``"drop"``. Only text columns choose."""
        return "retry"

    # -- the interface the engine calls --------------------------------------------------------

    def extra_columns(self) -> tuple[str, ...]:
        """``<name>__reasoning`` when the column extracts reasoning, ``<name>__truncated``
        when it keeps cut-off answers; else nothing."""
        extras: tuple[str, ...] = ()
        if self.column.extract_reasoning:
            extras += (self.column.name + REASONING_SUFFIX,)
        if self.on_truncated() == "keep":
            extras += (self.column.name + TRUNCATED_SUFFIX,)
        return extras

    def extra_arrow_types(self) -> Mapping[str, Any]:
        """The truncation mark is a boolean column."""
        if self.on_truncated() == "keep":
            return {self.column.name + TRUNCATED_SUFFIX: pa.bool_()}
        return {}

    def arrow_type(self) -> Any:
        """``pa.string()`` for text and code (structured and judge columns override it)."""
        return pa.string()

    async def agenerate(self, ctx: CellContext) -> Any:
        """Ask the model until an answer parses, or ``max_parse_retries`` re-asks are spent.

        Returns:
          The value, or a :class:`CellOutput` carrying side columns (reasoning, the
          truncation mark) and, for a kept cut-off answer, ``truncated=True``.

        Raises:
          ModelOutputError: no attempt produced a usable answer (non-retryable); ``reason``
            says what was wrong with the last one.
          ModelContentFilteredError: the provider's content filter stopped an answer.
          NonRetryableGenerationError: a template failed to render, or the run has no models.
          ConfigError: the column's model alias is unknown.
          GenerationError: endpoint errors, as raised by the model layer, with ``column`` and
            ``row`` filled in.
        """
        messages = self._first_messages(ctx)
        handle = self._handle(ctx)
        requests = self.column.max_parse_retries + 1
        problem, reason = "", "unparsable"
        for request in range(1, requests + 1):
            # One request (written out here, not in a coroutine of its own: one layer less
            # on every request's path): its own seed, and the cell's key for the cache.
            seed = ctx.rng.getrandbits(31)
            try:
                response: ChatResponse = await handle.chat(
                    messages,
                    response_format=self._response_format,
                    inference=self.column.inference,
                    seed=seed,
                    cell=CellKey(ctx.seed, ctx.row_index, self.column.name, seed),
                )
            except GenerationError as exc:
                exc.column = exc.column or self.column.name
                exc.row = ctx.row_index if exc.row is None else exc.row
                raise
            if response.finish_reason == "content_filter":
                raise self._filtered(ctx, request)
            if response.finish_reason == "length":
                kept = self._truncated(response, handle, ctx, request)
                if kept is not None:
                    return kept
                cut = _cut_off(_max_tokens(handle, self.column))
                problem, reason = f"the answer was {cut}.", "truncated"
                messages.extend(self._re_ask(response, problem))
                continue
            if not response.content.strip():
                # Nothing to correct: the same messages again (each attempt has its own seed).
                problem, reason = _empty_answer(response)
                continue
            try:
                value = self.parse(response)
            except ParseFailure as exc:
                problem, reason = _explain(exc), "unparsable"
                messages.extend(self._re_ask(response, problem))
                continue
            return self._output(value, response)
        # "requests", not "attempts": an attempt is one run of the cell by the engine (the
        # trace's ``attempt``, ``failures.jsonl``'s ``attempts``); these requests are one attempt.
        raise self._no_usable_answer(ctx, handle, requests, problem, reason)

    def replay_cached(
        self, rows: Sequence[Mapping[str, Any]], indices: Sequence[int], *, seed: int, models: Any
    ) -> list[Replayed]:
        """Many cells of the column served from the response cache at once (the batched
        replay, ``_engine/_replay.py``; see :meth:`ColumnGenerator.replay_cached`).

        The usual warm cell — its first answer cached, not cut off, not filtered, not empty,
        and it parses — takes :meth:`agenerate`'s path a stage at a time for every row: the
        prompts rendered in one loop (:func:`render_column`), the messages, the requests'
        seeds (each cell's first draw, :func:`first_draws`), the bodies, keys and look-ups
        (``ModelHandle.replay_cached``), then the parsing. Each stage computes what
        :meth:`agenerate` computes, so the value and tally are its own. Any other cell gets
        ``None`` (the per-cell path runs it: its re-asks, its error) or ``MISSED``.
        """
        count = len(rows)
        column = self.column
        try:
            if models is None:
                return [None] * count
            handle = models.model(column.model)
            if not isinstance(getattr(handle, "replay_cached", None), _BoundMethod):
                return [None] * count
            prompts = render_column(column.prompt, rows)
            system = column.system_prompt
            systems = render_column(system, rows) if system is not None else None
            instructions = self._instructions
            positions: list[int] = []
            requests: list[list[dict[str, Any]]] = []
            for position, prompt in enumerate(prompts):
                if prompt is None:
                    continue
                if instructions:
                    prompt = f"{prompt}\n\n{instructions}"
                if systems is None:
                    requests.append([{"role": "user", "content": prompt}])
                else:
                    text = systems[position]
                    if text is None:
                        continue
                    requests.append(
                        [{"role": "system", "content": text}, {"role": "user", "content": prompt}]
                    )
                positions.append(position)
            cells = [indices[p] for p in positions]
            seeds = first_draws(seed, cells, column.name, 31)
            found = handle.replay_cached(
                requests,
                seeds,
                cells,
                response_format=self._response_format,
                inference=column.inference,
                run_seed=seed,
                column=column.name,
            )
        except Exception:  # the per-cell path meets it again, and says what it is
            return [None] * count
        results: list[Replayed] = [None] * count
        parse, output = self.parse, self._output
        for position, entry in zip(positions, found, strict=True):
            if entry is False:
                results[position] = MISSED
                continue
            if entry is True:
                continue
            response, tally = entry
            finish = response.finish_reason
            if finish == "content_filter" or finish == "length" or not response.content.strip():
                continue
            try:
                value = parse(response)
            except Exception:  # a re-ask, or the cell's error: the per-cell path
                continue
            results[position] = (output(value, response), tally)
        return results

    # -- helpers -------------------------------------------------------------------------------

    def _prepare_ahead(self) -> None:
        """The prompt's instructions and the response format, built now (a judge's rubrics
        and schema as indented JSON, the schema's strictness check: on the first cell's path
        otherwise, in the middle of a wave)."""
        try:
            self._instructions  # noqa: B018 (a cached property, computed here)
            self._response_format  # noqa: B018
        except Exception:  # raised again, as before, by the cell that needs it
            return

    @functools.cached_property
    def _instructions(self) -> str | None:
        """:meth:`format_instructions`, computed once: it depends on the column only (a judge's
        rubrics and schema as indented JSON cost more than the rest of a cell's CPU)."""
        return self.format_instructions()

    @functools.cached_property
    def _response_format(self) -> Mapping[str, Any] | None:
        """:meth:`response_format`, built once (read-only: the client copies it)."""
        return self.response_format()

    def _first_messages(self, ctx: CellContext) -> list[dict[str, Any]]:
        column = self.column
        row, name, index = ctx.row, column.name, ctx.row_index
        prompt = render(column.prompt, row, column=name, field="prompt", row_index=index)
        instructions = self._instructions
        if instructions:
            prompt = f"{prompt}\n\n{instructions}"
        messages: list[dict[str, Any]] = []
        if column.system_prompt is not None:
            system = render(
                column.system_prompt, row, column=name, field="system_prompt", row_index=index
            )
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return messages

    def _handle(self, ctx: CellContext) -> Any:
        if ctx.models is None:
            raise NonRetryableGenerationError(
                f"column {self.column.name!r} calls model {self.column.model!r}, but the run "
                f"has no model registry; run the pipeline through the engine, or pass "
                f"models=... in the cell context.",
                column=self.column.name,
                row=ctx.row_index,
            )
        return ctx.models.model(self.column.model)

    def _re_ask(self, response: ChatResponse, problem: str) -> list[dict[str, Any]]:
        """The assistant's answer and a user message naming its problem (a cut-off answer that
        is empty, all its tokens spent on reasoning, is not sent back)."""
        how = "again, more briefly" if response.finish_reason == "length" else "again"
        again = f"Your answer could not be used: {problem} Answer the request {how}."
        instructions = self._instructions
        if instructions:
            again = f"{again}\n\n{instructions}"
        answer = [{"role": "assistant", "content": response.content}] if response.content else []
        return [*answer, {"role": "user", "content": again}]

    def _truncated(
        self, response: ChatResponse, handle: Any, ctx: CellContext, request: int
    ) -> Any | None:
        """A cut-off answer: the kept output (``on_truncated: keep``), ``None`` to re-ask, or
        :class:`ModelOutputError` raised (``drop``)."""
        choice = self.on_truncated()
        if choice == "drop":
            limit = _max_tokens(handle, self.column)
            raise ModelOutputError(
                f"column {self.column.name!r}: model {self.column.model!r} answered row "
                f"{ctx.row_index} with an answer {_cut_off(limit)}, and on_truncated is 'drop'. "
                f"{_raise_max_tokens(self.column, limit)}",
                requests=request,
                reason="truncated",
                column=self.column.name,
                row=ctx.row_index,
            )
        if choice == "keep":
            try:
                value = self.parse(response)
            except ParseFailure:
                return None  # nothing usable was cut off (an empty answer): ask again
            return self._output(value, response, truncated=True)
        return None

    def _output(self, value: Any, response: ChatResponse, *, truncated: bool = False) -> Any:
        extras: dict[str, Any] = {}
        if self.column.extract_reasoning:
            extras[self.column.name + REASONING_SUFFIX] = response.reasoning
        if self.on_truncated() == "keep":
            extras[self.column.name + TRUNCATED_SUFFIX] = truncated
        if not extras:
            return value
        return CellOutput(value, extras=extras, truncated=truncated)

    def _filtered(self, ctx: CellContext, request: int) -> ModelContentFilteredError:
        return ModelContentFilteredError(
            f"column {self.column.name!r}: the content filter of model {self.column.model!r} "
            f"stopped its answer for row {ctx.row_index} (finish_reason 'content_filter', "
            f"request {request}); the row is dropped without a retry, since the same prompt "
            f"meets the same filter. Check the prompt against the provider's content policy.",
            status=200,
            column=self.column.name,
            row=ctx.row_index,
        )

    def _no_usable_answer(
        self, ctx: CellContext, handle: Any, requests: int, problem: str, reason: str
    ) -> ModelOutputError:
        column = self.column
        head = (
            f"column {column.name!r}: model {column.model!r} gave no usable answer in "
            f"{requests} request{'s' if requests != 1 else ''} (row {ctx.row_index}; "
            f"max_parse_retries={column.max_parse_retries});"
        )
        if reason == "truncated":
            limit = _max_tokens(handle, column)
            message = (
                f"{head} the last answer was {_cut_off(limit)}. {_raise_max_tokens(column, limit)}"
            )
        elif reason == "empty":
            message = (
                f"{head} the last answer was empty. Check the endpoint (an empty answer is "
                f"usually the server's doing), or raise max_parse_retries."
            )
        elif reason == "refused":
            message = (
                f"{head} the last answer was a refusal, with no content: {problem} Change the "
                f"prompt, or use another model."
            )
        elif reason == "tool_calls":
            message = (
                f"{head} {problem} This column sends no tools: check the model and the "
                f"endpoint (a chat template or proxy that forces tool use), or use another "
                f"model."
            )
        else:
            message = (
                f"{head} the last problem: {problem} Raise max_parse_retries, simplify the "
                f"prompt or schema, or use a stronger model."
            )
        return ModelOutputError(
            message, requests=requests, reason=reason, column=column.name, row=ctx.row_index
        )


def _empty_answer(response: ChatResponse) -> tuple[str, str]:
    """What an answer without content was, and its ``ModelOutputError.reason``: a refusal
    (``message.refusal``: ``"refused"``), only tool calls (``"tool_calls"``), or nothing at
    all (``"empty"``)."""
    refusal = response.refusal
    if refusal:
        quoted = refusal.strip()
        if len(quoted) > _MAX_ERROR_CHARS:
            quoted = quoted[: _MAX_ERROR_CHARS - 3] + "..."
        return f"the model refused: {quoted!r}.", "refused"
    calls = response.tool_calls
    if calls:
        plural = "call" if calls == 1 else "calls"
        finish = response.finish_reason
        said = f", finish_reason {finish!r}" if finish else ""
        return (
            f"the last answer was only {calls} tool {plural} and no content{said}.",
            "tool_calls",
        )
    return "the answer was empty.", "empty"


def _explain(exc: ParseFailure) -> str:
    """The parse problem as one sentence, cut to a length the model can take."""
    problem = str(exc)
    if len(problem) > _MAX_ERROR_CHARS:
        problem = problem[: _MAX_ERROR_CHARS - 3] + "..."
    return problem


def _max_tokens(handle: Any, column: LLMColumnConfig) -> int | None:
    """The ``max_tokens`` the request was sent with: the column's, else the model's."""
    if column.inference is not None and column.inference.max_tokens is not None:
        return column.inference.max_tokens
    config = getattr(handle, "config", None)
    inference = getattr(config, "inference", None)
    limit = getattr(inference, "max_tokens", None)
    return limit if isinstance(limit, int) else None


def _cut_off(limit: int | None) -> str:
    """How an answer was cut off, as told to the model and in messages."""
    where = f"max_tokens ({limit})" if limit is not None else "the server's token limit"
    return f"cut off at {where} before it was complete (finish_reason 'length')"


def _raise_max_tokens(column: LLMColumnConfig, limit: int | None) -> str:
    if limit is None:
        return (
            f"No max_tokens is set, so the server applied its own limit: set max_tokens for "
            f"model {column.model!r} (or the column's inference.max_tokens), or ask for a "
            f"shorter answer."
        )
    return (
        f"Raise max_tokens (now {limit}) for model {column.model!r} or in the column's "
        f"inference.max_tokens, or ask for a shorter answer."
    )


# ---------------------------------------------------------------------------------------------
# Text and code
# ---------------------------------------------------------------------------------------------


class LLMTextGenerator(LLMGenerator):
    """``llm_text``: the answer's text, stripped. An empty answer is asked again; a cut-off one
    follows the column's ``on_truncated``."""

    def __init__(self, column: LLMTextColumn) -> None:
        super().__init__(column)
        self._on_truncated = column.on_truncated

    def on_truncated(self) -> str:
        return self._on_truncated

    def parse(self, response: ChatResponse) -> str:
        text = response.content.strip()
        if not text:
            raise ParseFailure("the answer was empty.")
        return text


class LLMCodeGenerator(LLMGenerator):
    """``llm_code``: the code of the answer's last fenced block in the column's language."""

    def __init__(self, column: LLMCodeColumn) -> None:
        super().__init__(column)
        self.language = column.language

    def format_instructions(self) -> str:
        return (
            f"Answer with exactly one fenced code block in {self.language}, opened with "
            f"```{self.language} and closed with ```."
        )

    def parse(self, response: ChatResponse) -> str:
        return extract_code(response.content, self.language)


def extract_code(text: str, language: str) -> str:
    """The code of the last fenced block tagged ``language`` (any case) or untagged.

    Leading blank lines and trailing whitespace are removed; indentation is kept.

    Raises:
      ParseFailure: no such block, only blocks in other languages, or the block is empty.
    """
    blocks = [(m.group("tag"), m.group("body")) for m in _FENCE.finditer(text)]
    if not blocks:
        raise ParseFailure(f"the answer has no complete fenced code block (```{language} ... ```).")
    wanted = language.lower()
    matching = [body for tag, body in blocks if tag.lower() in ("", wanted)]
    if not matching:
        tags = ", ".join(sorted({tag for tag, _ in blocks}))
        raise ParseFailure(f"the answer's code blocks are in {tags}, not {language}.")
    code = matching[-1].rstrip().lstrip("\n")
    if not code.strip():
        raise ParseFailure(f"the answer's {language} code block is empty.")
    return code


# ---------------------------------------------------------------------------------------------
# Structured output and judges
# ---------------------------------------------------------------------------------------------


def parse_json(text: str) -> Any:
    """JSON from an answer: the whole text, else the last ```json (or untagged) fenced block.

    Raises:
      ParseFailure: empty, or no JSON document could be read.
    """
    stripped = text.strip()
    if not stripped:
        raise ParseFailure("the answer was empty; it must be a JSON document.")
    try:
        return json.loads(stripped)
    except ValueError as exc:
        first_error: Exception = exc
    except RecursionError as exc:  # [[[[...]]]] past Python's stack: a hostile answer
        raise ParseFailure("the answer's JSON is nested too deeply to read.") from exc
    fenced = [
        m.group("body") for m in _FENCE.finditer(stripped) if m.group("tag").lower() in ("", "json")
    ]
    if fenced:
        try:
            return json.loads(fenced[-1])
        except ValueError as exc:
            raise ParseFailure(f"the JSON in the answer's code block is not valid: {exc}.") from exc
        except RecursionError as exc:
            raise ParseFailure("the answer's JSON is nested too deeply to read.") from exc
    raise ParseFailure(f"the answer is not valid JSON: {first_error}.")


def _schema_problems(value: Any, checker: SchemaChecker) -> None:
    errors = checker.errors(value)
    if errors:
        shown = "; ".join(errors[:_MAX_ERRORS_SHOWN])
        more = len(errors) - _MAX_ERRORS_SHOWN
        tail = f" (and {more} more)" if more > 0 else ""
        raise ParseFailure(f"the JSON does not match the schema: {shown}{tail}.")


class _SchemaGenerator(LLMGenerator):
    """Ask for JSON matching ``schema`` (prompt + ``response_format``), parse and validate."""

    schema: Mapping[str, Any]
    _checker: SchemaChecker | None = None

    @property
    def strict(self) -> bool:
        """Whether the schema is sent with ``strict: true``: only when a strict structured-output
        mode accepts it (:func:`~trio_designer._core._jsonschema.strict_problems`), so a strict
        provider never answers 400 to a schema it cannot enforce."""
        return not strict_problems(self.schema)

    def _prepare_ahead(self) -> None:
        """:meth:`LLMGenerator._prepare_ahead`, and the answers' validator (:meth:`checker`)."""
        super()._prepare_ahead()
        try:
            self.checker()
        except Exception:  # raised again, as before, by the first parse
            return

    def checker(self) -> SchemaChecker:
        """The validator of answers (built once per generator)."""
        if self._checker is None:
            self._checker = SchemaChecker(self.schema)
        return self._checker

    def format_instructions(self) -> str:
        schema_text = indented_text(self.schema)  # json.dumps(..., indent=2, ensure_ascii=False)
        return (
            "Respond with a JSON value that validates against this JSON schema:\n"
            f"<response_schema>\n{schema_text}\n</response_schema>\n"
            "Return only the JSON, bare or in a ```json fenced block."
        )

    def response_format(self) -> Mapping[str, Any]:
        return {
            "type": "json_schema",
            "json_schema": {"name": self.column.name, "schema": self.schema, "strict": self.strict},
        }

    def parse(self, response: ChatResponse) -> Any:
        value = self.normalize(parse_json(response.content))
        _schema_problems(value, self.checker())
        value = self.finish(value)
        stored = self._stored_type
        if stored is not None:
            problem = value_fits(value, stored)
            if problem is not None:  # an integer beyond int64, say: ask again, never fail
                raise ParseFailure(f"{problem}; answer with values of ordinary size.")
        return value

    def storage_schema(self) -> Any:
        """The schema whose Arrow type the column is stored with (:meth:`arrow_type`): the
        column's schema by default."""
        return self.schema

    @functools.cached_property
    def _stored_type(self) -> pa.DataType | None:
        """The column's nested Arrow type, or ``None`` when it is stored as JSON text."""
        return arrow_type_for_schema(self.storage_schema())

    def arrow_type(self) -> Any:
        """The Arrow type the schema maps to (a struct for an object schema, see
        :mod:`trio_designer._sink._nested`), or ``pa.string()``: JSON text, for schemas that
        do not map."""
        return self._stored_type or pa.string()

    def normalize(self, value: Any) -> Any:
        """Lenient fixes applied before validation (none by default)."""
        return value

    def finish(self, value: Any) -> Any:
        """The cell value from a valid instance (the instance by default)."""
        return value


class LLMStructuredGenerator(_SchemaGenerator):
    """``llm_structured``: a JSON value validated against the column's schema.

    The value stays a ``dict`` (or list...) during the run, so downstream templates can use
    ``{{ answer.field }}``; the sink stores it as the Arrow type the schema maps to (a struct
    for an object schema), or as JSON text when the schema does not map
    (:mod:`trio_designer._sink._nested`).
    """

    def __init__(self, column: LLMStructuredColumn) -> None:
        super().__init__(column)
        self.schema = column.schema


@attrs.frozen
class _RubricScores:
    """One rubric's score keys, and whether they are all integer literals."""

    keys: tuple[str, ...]
    integers: bool


class LLMJudgeGenerator(_SchemaGenerator):
    """``llm_judge``: ``{rubric: {"reasoning": str, "score": key}}`` for every rubric."""

    def __init__(self, column: LLMJudgeColumn) -> None:
        super().__init__(column)
        self.rubrics = column.rubrics
        self.schema = judge_schema(column.rubrics)
        self._scores = {
            r.name: _RubricScores(
                keys=tuple(r.scores),
                integers=all(_INTEGER_LITERAL.match(k.strip()) for k in r.scores),
            )
            for r in column.rubrics
        }

    def format_instructions(self) -> str:
        lines = ["Judge the answer on each of these criteria:"]
        for rubric in self.rubrics:
            lines.append(f"- {rubric.name}: {rubric.description}")
            lines.extend(f"    score {key}: {meaning}" for key, meaning in rubric.scores.items())
        lines.append(
            "For each criterion give your reasoning first, then the score (one of the score "
            "values listed)."
        )
        return "\n".join(lines) + "\n\n" + super().format_instructions()

    def normalize(self, value: Any) -> Any:
        """Map scores such as ``4``, ``4.0`` or ``" 4 "`` onto the key ``"4"``."""
        if not isinstance(value, dict):
            return value
        for name, scores in self._scores.items():
            entry = value.get(name)
            if isinstance(entry, dict) and "score" in entry:
                entry["score"] = _score_key(entry["score"], scores.keys)
        return value

    def storage_schema(self) -> Any:
        """The judge schema with the score of an integer-keyed rubric an ``integer`` (the
        value :meth:`finish` returns), so the column is a struct of ``{reasoning: string,
        score: int64 | string}`` structs, one per rubric."""
        schema: dict[str, Any] = copy.deepcopy(dict(self.schema))
        for name, scores in self._scores.items():
            if scores.integers:
                schema["properties"][name]["properties"]["score"] = {"type": "integer"}
        return schema

    def finish(self, value: Any) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for name, scores in self._scores.items():
            score: Any = value[name]["score"]
            result[name] = {
                "reasoning": value[name]["reasoning"],
                "score": int(score) if scores.integers else score,
            }
        return result


def _score_key(score: Any, keys: Sequence[str]) -> Any:
    """The score key ``score`` stands for (``4``, ``4.0``, ``" 4 "`` -> ``"4"``; any case).

    A number or string matching no key comes back as text, so that validation reports it
    against the allowed keys; other values (booleans, objects) come back unchanged.
    """
    if isinstance(score, bool) or not isinstance(score, int | float | str):
        return score
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    text = str(score).strip()
    for key in keys:
        if text == key.strip() or text.lower() == key.strip().lower():
            return key
    if _INTEGER_LITERAL.match(text):
        for key in keys:
            if _INTEGER_LITERAL.match(key.strip()) and int(key) == int(text):
                return key
    return text  # no such key: validation names the allowed ones


def judge_schema(rubrics: Sequence[Rubric]) -> dict[str, Any]:
    """The JSON schema of a judge's answer: every rubric, each ``{reasoning, score}``.

    The score is an ``enum`` of the rubric's score keys (strings). Closed objects with every
    property required, so strict structured-output modes accept the schema.
    """
    properties = {
        r.name: {
            "type": "object",
            "description": r.description,
            "properties": {
                "reasoning": {"type": "string"},
                "score": {"type": "string", "enum": list(r.scores)},
            },
            "required": ["reasoning", "score"],
            "additionalProperties": False,
        }
        for r in rubrics
    }
    return {
        "type": "object",
        "properties": properties,
        "required": [r.name for r in rubrics],
        "additionalProperties": False,
    }


_GENERATORS: Final[Mapping[str, type[LLMGenerator]]] = {
    "llm_text": LLMTextGenerator,
    "llm_code": LLMCodeGenerator,
    "llm_structured": LLMStructuredGenerator,
    "llm_judge": LLMJudgeGenerator,
}


def build_llm_generator(column: LLMColumnConfig, *, models: Any = None) -> LLMGenerator:
    """The generator of an LLM column.

    Args:
      column: an ``llm_text``, ``llm_code``, ``llm_structured`` or ``llm_judge`` config.
      models: the run's model registry, if already open: then the column's alias is checked
        now rather than at the first cell.

    Raises:
      ConfigError: a template has a syntax error, or ``models`` has no such alias.
    """
    generator = _GENERATORS[column.kind](column)
    if models is not None and column.model not in models:
        try:
            models.model(column.model)
        except ConfigError as exc:
            raise ConfigError(f"column {column.name!r}: {exc}") from None
        raise ConfigError(f"column {column.name!r}: no model has the alias {column.model!r}")
    return generator
