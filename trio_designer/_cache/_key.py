"""The key of a model request, and the stored form of its raw answer.

A key (``KEY_VERSION`` 2) is the SHA-256 of the cell's identity followed by the exact bytes of
the request's JSON body, as the client sends them::

    [2,"https://api.example.com/v1",run_seed,row,"column",request_seed]   # canonical JSON
    (a newline)
    {"model":"m","messages":[...],"temperature":0.7,...,"response_format":{...},"seed":12}

* The first line is the key version, the endpoint (the provider's ``base_url``; the built-in
  simulator: ``"simulator"``) and the cell: identical prompts in two rows are two samples and
  keep two keys; ``request_seed`` is the seed the column drew for this request (sent to the
  endpoint or not), so an empty answer asked again is another key. The line is JSON without
  whitespace, so it cannot contain a newline: the split between it and the body is
  unambiguous.
* The body is what the endpoint receives, byte for byte (model, messages, inference
  parameters, ``response_format``, ``extra_body`` with tools and ``seed``...): the client
  builds it once (``models/_client.py``, :class:`~trio_designer.models._client.ChatBodies`),
  the key hashes it and a miss sends the same bytes. Hashing the body as sent, instead of a
  canonical re-encoding of it, saves escaping every prompt a second time; the price is that
  the body's field order is part of the key (it is fixed by the code and by the order of
  ``extra_body``'s fields in the config).

API keys and headers never enter a key: they are not part of the body.

Version 1 keys hashed canonical JSON (sorted keys) of ``{"v", "endpoint", "request",
"cell"}``; their entries no longer match (they are misses, and ``cache prune``/``clear``
removes them).

The answer is stored *raw* (before any column parses it): content, reasoning, usage, finish
reason and the answering model, as compact JSON. A parser change therefore re-buys nothing.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from .._core._jsonenc import compact_text, quote, reusable_encoder

__all__ = [
    "KEY_VERSION",
    "CellKey",
    "RawAnswer",
    "cache_key",
    "cache_keys",
    "decode_answer",
    "decode_fields",
    "encode_answer",
    "encode_fields",
]

KEY_VERSION: Final = 2
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


_canonical_text = reusable_encoder(sort_keys=True, allow_nan=False)


def cache_key(endpoint: str, body: bytes, cell: CellKey) -> bytes:
    """The 32-byte key of the request whose JSON body is ``body`` (the bytes sent, without
    headers), sent to ``endpoint`` for ``cell`` (see the module docstring)."""
    run_seed, row, seed = cell.run_seed, cell.row, cell.request_seed
    opening, naming = _openings.get(endpoint), _namings.get(cell.column)
    if (
        opening is None
        or naming is None
        or type(run_seed) is not int
        or type(row) is not int
        or type(seed) is not int
    ):
        return _slow_key(endpoint, body, cell)
    # The canonical line written by hand, straight into the bytes hashed with the body (one
    # buffer, no str of the line): JSON of exact ints is their decimal repr, the endpoint's
    # and column's JSON strings are kept, encoded, from the first key that named them
    # (tests/test_cache_store.py compares the two for any cell).
    return _sha256(b"%b%d,%d%b%d]\n%b" % (opening, run_seed, row, naming, seed, body)).digest()


def cache_keys(
    endpoint: str,
    bodies: Sequence[bytes],
    run_seed: int,
    rows: Sequence[int],
    column: str,
    seeds: Sequence[int],
) -> list[bytes]:
    """:func:`cache_key` of each request ``bodies[i]`` of cell (``run_seed``, ``rows[i]``,
    ``column``, ``seeds[i]``), in one loop (the batched replay of a column's cached cells):
    the same keys, with the line's fixed parts looked up once."""
    opening, naming = _openings.get(endpoint), _namings.get(column)
    if opening is None or naming is None or type(run_seed) is not int:
        return [
            cache_key(endpoint, body, CellKey(run_seed, row, column, seed))
            for body, row, seed in zip(bodies, rows, seeds, strict=True)
        ]
    head, sha256 = b"%b%d," % (opening, run_seed), _sha256
    keys: list[bytes] = []
    for body, row, seed in zip(bodies, rows, seeds, strict=True):
        if type(row) is int and type(seed) is int:
            keys.append(sha256(b"%b%d%b%d]\n%b" % (head, row, naming, seed, body)).digest())
        else:
            keys.append(cache_key(endpoint, body, CellKey(run_seed, row, column, seed)))
    return keys


def _slow_key(endpoint: str, body: bytes, cell: CellKey) -> bytes:
    """:func:`cache_key` by the canonical encoder (a cell without a request seed, values of
    other types, names not seen yet); keeps the endpoint's and column's encoded JSON strings
    for the next keys."""
    head = _canonical_text(
        [KEY_VERSION, endpoint, cell.run_seed, cell.row, cell.column, cell.request_seed]
    )
    _keep(_openings, endpoint, "[%d,%s,", KEY_VERSION)
    _keep(_namings, cell.column, ",%s,", None)
    return _sha256(b"%b\n%b" % (head.encode("utf-8"), body)).digest()


def _keep(kept: dict[str, bytes], name: str, pattern: str, version: int | None) -> None:
    """Keep ``pattern`` around ``name``'s JSON string, encoded (not a name that cannot be
    encoded: its keys raise ``UnicodeEncodeError``, as the canonical line's do)."""
    if type(name) is not str or name in kept:
        return
    quoted = _canonical_text(name)
    try:
        text = (pattern % (version, quoted) if version is not None else pattern % quoted)
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        return
    if len(kept) >= _QUOTED_KEPT:
        kept.clear()
    kept[name] = encoded


_sha256 = hashlib.sha256
_quote = quote
_QUOTED_KEPT: Final = 1024
_openings: dict[str, bytes] = {}
"""``[2,"<endpoint>",`` by endpoint: the cell line's start (a run has a few endpoints)."""
_namings: dict[str, bytes] = {}
"""``,"<column>",`` by column: the cell line's column (a run has a few columns)."""


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
    """:func:`encode_answer` of the fields, without building a :class:`RawAnswer`.

    Written by hand when the fields have their usual types (strings quoted by the C
    encoder's own function, exact ints by their ``repr``, ``None`` as ``null``): the same
    text as the JSON encoder's, without its list and chunk machinery
    (``tests/test_cache_store.py`` compares the two on arbitrary fields)."""
    if (
        type(content) is str
        and type(model) is str
        and type(input_tokens) is int
        and type(output_tokens) is int
        and type(reasoning_tokens) is int
        and (reasoning is None or type(reasoning) is str)
        and (finish_reason is None or type(finish_reason) is str)
    ):
        text = (
            f"[{_quote(content)},{'null' if reasoning is None else _quote(reasoning)},"
            f"{input_tokens},{output_tokens},{reasoning_tokens},"
            f"{'null' if finish_reason is None else _quote(finish_reason)},{_quote(model)}]"
        )
    else:
        text = compact_text(
            [
                content,
                reasoning,
                input_tokens,
                output_tokens,
                reasoning_tokens,
                finish_reason,
                model,
            ]
        )
    return text.encode("utf-8")


def decode_answer(value: bytes) -> RawAnswer:
    """The answer :func:`encode_answer` stored.

    Raises:
      ValueError: ``value`` is not such an answer.
    """
    content, reasoning, tin, tout, treason, finish, model = decode_fields(value)
    return RawAnswer(
        content=content,
        reasoning=reasoning,
        input_tokens=tin,
        output_tokens=tout,
        reasoning_tokens=treason,
        finish_reason=finish,
        model=model,
    )


def decode_fields(
    value: bytes,
) -> tuple[str, str | None, int, int, int, str | None, str]:
    """:func:`decode_answer`'s fields, in :func:`encode_fields`' order, without building a
    :class:`RawAnswer` (a cache hit builds its response from them directly).

    Raises:
      ValueError: ``value`` is not a stored answer.
    """
    data = _loads(value)
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
    return content, reasoning, tin, tout, treason, finish, model


def _loads(value: bytes) -> Any:
    """``json.loads`` of stored bytes: UTF-8 (what :func:`encode_fields` writes), parsed by
    the C scanner directly (``json.loads`` adds encoding sniffing and two whitespace regex
    matches, a third of a hit's decoding; stored answers have no whitespace around them)."""
    try:
        text = value.decode("utf-8")
        data, end = _scan(text, 0)
    except (UnicodeDecodeError, StopIteration, RecursionError) as exc:
        raise ValueError("not a stored answer") from exc
    if end != len(text):
        raise ValueError("not a stored answer")
    return data


_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed names the class, not its argument
)
"""The JSON scanner (C when available): one value from an index; ``StopIteration`` if none."""
