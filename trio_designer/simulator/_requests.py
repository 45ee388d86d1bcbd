"""Reading requests and writing response bodies: validation (400s naming the field), the chat
completion and oversize bodies. Pure: no trio, no I/O.

Every validation error is an :class:`HTTPError` carrying OpenAI's error body, so the app can send
it as it is.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ._budget import Header
from ._content import Answer, ChatRequest, count_tokens
from ._models import SimulatedModel

MAX_EMBEDDING_DIMENSIONS = 8192


class HTTPError(Exception):
    """An error answer: status plus an OpenAI-style ``{"error": {...}}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Sequence[Header] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = list(headers)


def model_card(model: SimulatedModel) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": 0,
        "owned_by": "trio-designer-simulator",
    }


def json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise HTTPError(
            400, f"The request body is not valid JSON: {exc}.", code="invalid_json"
        ) from exc
    if not isinstance(data, dict):
        raise HTTPError(400, "The request body must be a JSON object.", code="invalid_json")
    return data


def int_field(data: Mapping[str, Any], name: str, *, default: int, high: int) -> int:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise HTTPError(
            400, f"'{name}' must be a whole number between 1 and {high}, got {value!r}.", param=name
        )
    return value


def parse_chat_request(data: Mapping[str, Any], model: str) -> ChatRequest:
    """Validate a chat completion body.

    Raises:
      HTTPError: 400 naming the offending field.
    """
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HTTPError(400, "'messages' must be a non-empty list of messages.", param="messages")
    for i, message in enumerate(messages):
        _check_message(i, message)
    if data.get("stream"):
        raise HTTPError(
            400, "Streaming is not supported by the simulator; send stream=false.", param="stream"
        )
    if data.get("n", 1) != 1:
        raise HTTPError(400, "The simulator returns one choice; send n=1.", param="n")
    limit_key = "max_completion_tokens" if "max_completion_tokens" in data else "max_tokens"
    max_tokens = None
    if data.get(limit_key) is not None:
        max_tokens = int_field(data, limit_key, default=0, high=10**9)
    seed = data.get("seed")
    return ChatRequest(
        model=model,
        messages=messages,
        response_format=_response_format(data.get("response_format")),
        max_tokens=max_tokens,
        reasoning=_wants_reasoning(data, model),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
    )


def _wants_reasoning(data: Mapping[str, Any], model: str) -> bool:
    """``"reasoning": true`` at the top level (how OpenAI clients send ``extra_body``) or
    inside a literal ``extra_body`` object, or a model whose name contains "reason"."""
    extra = data.get("extra_body")
    nested = isinstance(extra, dict) and extra.get("reasoning") is True
    return data.get("reasoning") is True or nested or "reason" in model.lower()


def _check_message(index: int, message: object) -> None:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise HTTPError(
            400,
            f"messages[{index}] must be an object with a 'role' string.",
            param=f"messages[{index}]",
        )
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        raise HTTPError(
            400,
            f"messages[{index}].content must be a string or a list of content parts.",
            param=f"messages[{index}].content",
        )


def _response_format(value: object) -> Mapping[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise HTTPError(
            400,
            "response_format must be an object whose 'type' is 'text', "
            "'json_object' or 'json_schema'.",
            param="response_format",
        )
    assert isinstance(value, dict)
    json_schema = value.get("json_schema")
    if kind == "json_schema" and not (
        isinstance(json_schema, dict) and isinstance(json_schema.get("schema", {}), dict | bool)
    ):
        raise HTTPError(
            400,
            "response_format.json_schema must be an object with a 'schema' object.",
            param="response_format.json_schema",
        )
    return value


def embedding_inputs(value: object) -> tuple[list[str], int]:
    """(texts, prompt tokens) of an embeddings ``input``: a string, strings, or token lists."""
    if isinstance(value, str):
        return [value], count_tokens(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value), sum(count_tokens(v) for v in value)
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [json.dumps(value)], len(value)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value)
    ):
        return [json.dumps(v) for v in value], sum(len(v) for v in value)
    raise HTTPError(
        400, "'input' must be a non-empty string, list of strings, or token lists.", param="input"
    )


_IDS = random.Random()  # seeded from the OS: completion ids differ between processes
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def completion_id() -> str:
    """A new ``chatcmpl-`` id: 32 random hex digits (not from the answers' seeded draws)."""
    return f"chatcmpl-{_IDS.getrandbits(128):032x}"


def chat_body(
    model: str,
    answer: Answer,
    prompt_tokens: int,
    *,
    id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object carrying ``answer`` (a new ``id`` and the current
    ``created`` unless given)."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.reasoning is not None:
        message["reasoning_content"] = answer.reasoning
    completion_tokens = answer.completion_tokens
    return {
        "id": completion_id() if id is None else id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "system_fingerprint": "trio-designer-simulator",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": answer.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
        },
    }


def chat_json(
    model: str,
    answer: Answer,
    prompt_tokens: int,
    *,
    id: str | None = None,
    created: int | None = None,
) -> bytes:
    """``json.dumps(chat_body(...), ensure_ascii=False).encode()``, byte for byte, written
    from a template: the answer's strings through the C string encoder, the rest fixed text
    (``tests/test_simulator_content_fast.py`` compares the two)."""
    reasoning = answer.reasoning
    reasoning_tokens = count_tokens(reasoning) if reasoning is not None else 0
    completion_tokens = count_tokens(answer.content) + reasoning_tokens
    extra = "" if reasoning is None else ', "reasoning_content": ' + _encode_string(reasoning)
    return (
        f'{{"id": {_encode_string(completion_id() if id is None else id)}, '
        f'"object": "chat.completion", '
        f'"created": {int(time.time()) if created is None else created}, '
        f'"model": {_encode_string(model)}, "system_fingerprint": "trio-designer-simulator", '
        f'"choices": [{{"index": 0, "message": {{"role": "assistant", '
        f'"content": {_encode_string(answer.content)}{extra}}}, '
        f'"finish_reason": {_encode_string(answer.finish_reason)}, "logprobs": null}}], '
        f'"usage": {{"prompt_tokens": {prompt_tokens}, "completion_tokens": {completion_tokens}, '
        f'"total_tokens": {prompt_tokens + completion_tokens}, '
        f'"completion_tokens_details": {{"reasoning_tokens": {reasoning_tokens}}}}}}}'
    ).encode()


_NOT_PLAIN = re.compile(r"[^A-Za-z0-9 .,]")


def oversize_chat_body(
    model: str, answer: Answer, prompt_tokens: int, size: int
) -> tuple[bytes, int]:
    """A valid ``chat.completion`` body of exactly ``size`` bytes (the oversize fault), and the
    completion tokens its ``usage`` reports.

    The message content is the answer's text repeated until the body is ``size`` bytes long
    (only characters JSON writes as one byte each); ``usage`` counts the padded content. If the
    plain body is already larger than ``size``, it is returned as it is.
    """
    unit = _NOT_PLAIN.sub(" ", answer.content).strip() or "padding"
    unit += " "
    filler = 0
    for _ in range(8):  # the usage digits change the length a little: converges in 2-3 rounds
        padded = attrs.evolve(answer, content=(unit * (filler // len(unit) + 1))[:filler])
        payload = json.dumps(chat_body(model, padded, prompt_tokens)).encode()
        if len(payload) == size or (filler == 0 and len(payload) > size):
            break
        filler = max(0, filler + size - len(payload))
    return payload, padded.completion_tokens
