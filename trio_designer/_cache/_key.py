"""The key of a model request, and the stored form of its raw answer.

A key is the SHA-256 of canonical JSON (sorted keys, no whitespace, UTF-8) of everything that
determines an answer::

    {"v": 1,
     "endpoint": "https://api.example.com/v1" | "simulator",   # the provider's base_url
     "request": {...},                # the JSON body sent: model, messages, parameters,
                                      # response_format, tools, seed ...
     "cell": [run_seed, row, column, request_seed]}

``cell`` is the cell's identity in the run: identical prompts in two rows are two samples and
keep two keys. ``request_seed`` is the seed the column drew for this request (sent to the
endpoint or not), so an empty answer asked again is another key. API keys and headers never
enter a key: they are not part of the body.

The answer is stored *raw* (before any column parses it): content, reasoning, usage, finish
reason and the answering model, as compact JSON. A parser change therefore re-buys nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = [
    "KEY_VERSION",
    "CellKey",
    "RawAnswer",
    "cache_key",
    "decode_answer",
    "encode_answer",
    "encode_fields",
]

KEY_VERSION: Final = 1
"""Bumped when what a key covers changes: old entries then simply stop matching."""


@attrs.frozen(slots=True)
class CellKey:
    """Where a request belongs in a run: the run seed, the global row index, the column, and
    the seed the column drew for this request."""

    run_seed: int
    row: int
    column: str
    request_seed: int | None = None


@attrs.frozen(slots=True, kw_only=True)
class RawAnswer:
    """An answer as the endpoint gave it, before any parsing by a column."""

    content: str
    reasoning: str | None
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    finish_reason: str | None
    model: str


_canonical_text = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
"""Canonical JSON (sorted keys, no whitespace); one encoder, built once (``json.dumps`` with
options builds a new one per call, a third of a key's cost)."""

_compact_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _canonical(value: Any) -> bytes:
    return _canonical_text(value).encode("utf-8")


def cache_key(endpoint: str, request: Mapping[str, Any], cell: CellKey) -> bytes:
    """The 32-byte key of ``request`` sent to ``endpoint`` for ``cell`` (see the module
    docstring). ``request`` is the JSON body, without headers."""
    basis = {
        "v": KEY_VERSION,
        "endpoint": endpoint,
        "request": request,
        "cell": [cell.run_seed, cell.row, cell.column, cell.request_seed],
    }
    return hashlib.sha256(_canonical(basis)).digest()


def encode_answer(answer: RawAnswer) -> bytes:
    """Compact JSON of ``answer`` (what the store keeps, checksummed)."""
    return encode_fields(
        answer.content,
        answer.reasoning,
        answer.input_tokens,
        answer.output_tokens,
        answer.reasoning_tokens,
        answer.finish_reason,
        answer.model,
    )


def encode_fields(
    content: str,
    reasoning: str | None,
    input_tokens: int,
    output_tokens: int,
    reasoning_tokens: int,
    finish_reason: str | None,
    model: str,
) -> bytes:
    """:func:`encode_answer` of the fields, without building a :class:`RawAnswer`."""
    return _compact_text(
        [content, reasoning, input_tokens, output_tokens, reasoning_tokens, finish_reason, model]
    ).encode("utf-8")


def decode_answer(value: bytes) -> RawAnswer:
    """The answer :func:`encode_answer` stored.

    Raises:
      ValueError: ``value`` is not such an answer.
    """
    data = json.loads(value)
    if type(data) is not list or len(data) != 7:
        raise ValueError("not a stored answer")
    content, reasoning, tin, tout, treason, finish, model = data
    if not (
        type(content) is str
        and (reasoning is None or type(reasoning) is str)
        and type(tin) is int
        and type(tout) is int
        and type(treason) is int
        and (finish is None or type(finish) is str)
        and type(model) is str
    ):
        raise ValueError("not a stored answer")
    return RawAnswer(
        content=content,
        reasoning=reasoning,
        input_tokens=tin,
        output_tokens=tout,
        reasoning_tokens=treason,
        finish_reason=finish,
        model=model,
    )
