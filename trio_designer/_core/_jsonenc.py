"""Compact JSON encoders built once (request bodies, cache keys, stored answers).

``json.dumps(value, separators=(",", ":"), ensure_ascii=False, ...)`` builds a new encoder
object on every call (~2 µs, more than encoding a short value). :func:`reusable_encoder`
makes the C encoder once; its text is byte for byte ``json.dumps``' with the same options.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

__all__ = ["compact_text", "indented_text", "quote", "reusable_encoder"]


def reusable_encoder(*, sort_keys: bool, allow_nan: bool) -> Callable[[Any], str]:
    """``json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, ...).encode``, but with
    the C encoder object made once. Without circular-reference markers (a shared marker table
    could keep a stale entry after an error): callers encode trees (request bodies, answers);
    a cycle ends in ``RecursionError`` instead of ``ValueError``."""
    fallback = json.JSONEncoder(
        sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan
    ).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    c_quote = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or c_quote is None:  # an interpreter without the C accelerator
        return fallback
    chunks = make(None, _not_json, c_quote, None, ":", ",", sort_keys, False, allow_nan)
    join = "".join

    def encode(value: Any) -> str:
        if type(value) is str:
            return c_quote(value)  # type: ignore[no-any-return]
        return join(chunks(value, 0))

    return encode


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


compact_text = reusable_encoder(sort_keys=False, allow_nan=True)
"""``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``, made once."""

quote: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) or (
    json.encoder.py_encode_basestring
)
"""A JSON string (``ensure_ascii=False``), as the encoders above write one."""


def indented_text(value: Any, *, ensure_ascii: bool = False, allow_nan: bool = True) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=..., allow_nan=...)``, character for character.

    The standard encoder writes indented JSON in pure Python (its C encoder cannot indent); this
    walk writes the JSON types (and tuples, as ``json.dumps`` does) with the C string encoder,
    and hands anything else — another type, a key that is not a string, a non-finite float
    without ``allow_nan``, a value nested deeper than :data:`_INDENT_DEPTH` (a circular one) —
    to ``json.dumps`` itself, which writes it or raises its own error
    (``tests/test_simulator_content_fast.py`` and ``tests/test_sink_record.py`` compare the
    two). For the simulator's JSON answers, a judge's or structured column's schema in its
    prompt (the defaults), and the run's record (``ensure_ascii=True, allow_nan=False``,
    ``_sink/_metadata.py``).
    """
    parts: list[str] = []
    try:
        _INDENTERS[ensure_ascii, allow_nan](value, parts, "\n", 0)
    except _NotPlainJSON:
        return json.dumps(value, indent=2, ensure_ascii=ensure_ascii, allow_nan=allow_nan)
    return "".join(parts)


_INDENT_DEPTH = 100
"""Deeper values go to ``json.dumps`` (a circular one raises its ``ValueError`` there)."""


class _NotPlainJSON(Exception):
    """A value an indenter leaves to ``json.dumps``."""


_Indenter = Callable[[object, list[str], str, int], None]


def _indenter(quote_string: Callable[[str], str], allow_nan: bool) -> _Indenter:
    """The walk of :func:`indented_text` for one set of options: ``indent(value, parts,
    newline, depth)`` appends ``value`` indented by two spaces a level (``newline`` is
    ``"\n"`` and the current level's indent), or raises :class:`_NotPlainJSON`."""

    def scalar(value: object) -> str:
        if isinstance(value, str):
            return quote_string(value)
        if value is None:
            return "null"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if isinstance(value, int):
            return int.__repr__(value)
        if isinstance(value, float):
            if value != value or value in (math.inf, -math.inf):
                if not allow_nan:
                    raise _NotPlainJSON  # json.dumps raises its ValueError
                return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
            return float.__repr__(value)
        raise _NotPlainJSON

    def indent(value: object, parts: list[str], newline: str, depth: int) -> None:
        if depth > _INDENT_DEPTH:
            raise _NotPlainJSON
        if isinstance(value, list | tuple):
            if not value:
                parts.append("[]")
                return
            inner = newline + "  "
            opening = "["
            for item in value:
                parts.append(opening + inner)
                opening = ","
                indent(item, parts, inner, depth + 1)
            parts.append(newline + "]")
        elif isinstance(value, dict):
            if not value:
                parts.append("{}")
                return
            inner = newline + "  "
            opening = "{"
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _NotPlainJSON  # json.dumps converts such keys; let it
                parts.append(opening + inner + quote_string(key) + ": ")
                opening = ","
                indent(item, parts, inner, depth + 1)
            parts.append(newline + "}")
        else:
            parts.append(scalar(value))

    return indent


_quote_ascii: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring_ascii", None) or (
    json.encoder.py_encode_basestring_ascii
)
_INDENTERS: dict[tuple[bool, bool], _Indenter] = {
    (ascii_only, nan): _indenter(_quote_ascii if ascii_only else quote, nan)
    for ascii_only in (False, True)
    for nan in (False, True)
}
