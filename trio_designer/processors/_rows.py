"""Rows of an Arrow table as templates see them: JSON-text columns decoded."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

__all__ = ["template_rows"]


def template_rows(table: pa.Table, json_columns: frozenset[str]) -> Iterator[dict[str, Any]]:
    """Each row of ``table`` as a dict, the values of ``json_columns`` parsed from JSON text
    (a value that does not parse stays text)."""
    decode = [name for name in table.column_names if name in json_columns]
    for row in table.to_pylist():
        for name in decode:
            value = row[name]
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    row[name] = json.loads(value)
        yield row
