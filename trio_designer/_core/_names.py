"""The bound on a name, shared by the config's checks and the seed reader's.

A config must never grow without bound when parsed: every column name is repeated in the
templates' namespaces, provenance records, cache keys and parquet schemas, so a 200 KB name
costs 200 KB many times over. Plain numbers: no trio.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_NAME_LENGTH"]

MAX_NAME_LENGTH: Final = 128
"""Characters of a column's, processor's or category's name, a rename's target, or a seed
file's column that the pipeline reads."""
