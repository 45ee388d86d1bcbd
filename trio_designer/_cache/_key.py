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
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

__all__ = [
    "KEY_VERSION",
    "CellKey",
    "EndpointKeys",
    "RawAnswer",
    "cache_key",
    "decode_answer",
    "decode_fields",
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


def _reusable(*, sort_keys: bool, allow_nan: bool) -> Callable[[Any], str]:
    """``json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, ...).encode``, but with
    the C encoder object made once: ``encode`` makes a new one per call (~2 µs, more than
    encoding a short value). Without circular-reference markers (a shared marker table could
    keep a stale entry after an error); request bodies and answers are trees."""
    fallback = json.JSONEncoder(
        sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan
    ).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    quote = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or quote is None:  # an interpreter without the C accelerator
        return fallback
    chunks = make(None, _not_json, quote, None, ":", ",", sort_keys, False, allow_nan)
    join = "".join

    def encode(value: Any) -> str:
        if type(value) is str:
            return quote(value)  # type: ignore[no-any-return]
        return join(chunks(value, 0))

    return encode


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_canonical_text = _reusable(sort_keys=True, allow_nan=False)
"""Canonical JSON (sorted keys, no whitespace); one encoder, built once (``json.dumps`` with
options builds a new one per call, a third of a key's cost)."""

_compact_text = _reusable(sort_keys=False, allow_nan=True)


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


class EndpointKeys:
    """:func:`cache_key` for one endpoint, byte for byte, with the constant parts encoded once.

    A request's canonical JSON is most of a key's cost, and most of that is the
    ``response_format`` (a schema, its keys sorted at every level), which is the same object
    for every request of a column. :meth:`key` takes the request *without* it and the
    ``response_format`` apart, and keeps the canonical text of the last few response formats
    it saw, by identity (the object is kept alive with its text, so its ``id`` cannot be
    reused; callers never mutate a response format they pass: the generators build theirs
    once, read-only). Everything else is encoded as :func:`cache_key` does. The key is the
    same (``tests/test_cache_store.py`` compares them).
    """

    _MEMO_SIZE: Final = 64

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._endpoint = ',"endpoint":' + _canonical_text(endpoint) + ',"request":{'
        self._formats: dict[int, tuple[object, str]] = {}

    def key(
        self,
        request: Mapping[str, Any],
        response_format: Mapping[str, Any] | None,
        cell: CellKey,
    ) -> bytes:
        """``cache_key(endpoint, body, cell)`` where ``body`` is ``request`` with
        ``"response_format": dict(response_format)`` added (unless ``request`` has one, which
        then wins, or ``response_format`` is ``None``)."""
        encode = _canonical_text
        names = list(request)
        if response_format is not None and "response_format" not in request:
            names.append("response_format")
        try:
            names.sort()
            fields = ",".join(
                [
                    f"{_quote(name)}:{self._format(response_format)}"
                    if name == "response_format" and name not in request
                    else f"{_quote(name)}:{encode(request[name])}"
                    for name in names
                ]
            )
        except TypeError:  # a field name that is not a string (JSON would coerce it): rare
            return self._slow(request, response_format, cell)
        seed, row, run_seed = cell.request_seed, cell.row, cell.run_seed
        if type(run_seed) is int and type(row) is int and (seed is None or type(seed) is int):
            cell_text = f"[{run_seed},{row},{_quote(cell.column)},{_null(seed)}]"
        else:
            cell_text = encode([run_seed, row, cell.column, seed])
        text = f'{{"cell":{cell_text}{self._endpoint}{fields}}},"v":{KEY_VERSION}}}'
        return hashlib.sha256(text.encode("utf-8")).digest()

    def _slow(
        self, request: Mapping[str, Any], response_format: Mapping[str, Any] | None, cell: CellKey
    ) -> bytes:
        body = dict(request)
        if response_format is not None:
            body.setdefault("response_format", dict(response_format))
        return cache_key(self.endpoint, body, cell)

    def _format(self, response_format: Any) -> str:
        known = self._formats.get(id(response_format))
        if known is not None and known[0] is response_format:
            return known[1]
        text = _canonical_text(dict(response_format))
        if len(self._formats) >= self._MEMO_SIZE:
            self._formats.clear()
        self._formats[id(response_format)] = (response_format, text)
        return text


def _null(value: int | None) -> str:
    return "null" if value is None else str(value)


_quote: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) or (
    json.encoder.py_encode_basestring
)
"""A JSON string (``ensure_ascii=False``), as the canonical encoder writes one."""


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
    """``json.loads`` of stored bytes: UTF-8 (what :func:`encode_fields` writes), decoded and
    parsed without ``json.loads``' sniffing of the encoding."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("not a stored answer") from exc
    return _decode(text)


_decode = json.JSONDecoder().decode
