"""Compact JSON encoders built once (request bodies, cache keys, stored answers).

``json.dumps(value, separators=(",", ":"), ensure_ascii=False, ...)`` builds a new encoder
object on every call (~2 µs, more than encoding a short value). :func:`reusable_encoder`
makes the C encoder once; its text is byte for byte ``json.dumps``' with the same options.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["compact_text", "quote", "reusable_encoder"]


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
