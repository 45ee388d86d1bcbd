"""``POST /v1/validate``: a tiny remote validator, for ``validator: remote`` columns.

The request is ``{"model": "<id>", "records": [{...}, ...]}``; the answer
``{"results": [{"is_valid": bool, "messages": [...]}, ...]}``, one per record, in order. A
record is valid when every value is a non-empty string that parses as Python (``ast``); the
messages say which value does not, and why. Deterministic, so tests can predict it.
"""

from __future__ import annotations

import ast
from typing import Any

from ._requests import HTTPError

__all__ = ["validation_records", "validation_results"]

MAX_RECORDS = 1024


def validation_records(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a validation request.

    Raises:
      HTTPError: 400, when ``records`` is not a list of objects (at most 1,024).
    """
    records = data.get("records")
    if (
        not isinstance(records, list)
        or len(records) > MAX_RECORDS
        or not all(isinstance(r, dict) for r in records)
    ):
        raise HTTPError(
            400,
            f"'records' must be a list of at most {MAX_RECORDS} objects.",
            param="records",
        )
    return records


def validation_results(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``{"is_valid", "messages"}`` per record (see the module docstring)."""
    results = []
    for record in records:
        messages = []
        for key, value in record.items():
            if not isinstance(value, str) or not value.strip():
                messages.append(f"{key}: not a non-empty string")
                continue
            try:
                ast.parse(value)
            except SyntaxError as exc:
                messages.append(f"{key}: line {exc.lineno}: {exc.msg}")
            except (ValueError, RecursionError) as exc:
                messages.append(f"{key}: {type(exc).__name__}")
        results.append({"is_valid": not messages, "messages": messages})
    return results
