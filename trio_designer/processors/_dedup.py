"""``dedup``: remove duplicate rows across the whole dataset; the first occurrence stays.

It runs after the run, over the written row groups in order, keeping only what it needs to
recognise a row seen before:

* **exact** (``columns``): a 16-byte BLAKE2b digest of the chosen columns' values (canonical
  JSON), in a set: 16 bytes and a set entry per distinct row;
* **near-duplicate** (``near_duplicate: <text column>``): a MinHash of the text's word
  ``ngram``-shingles, looked up in (and added to) a MinHash LSH index tuned for ``threshold``
  (``datasketch``, the ``dedup`` extra). Only rows that are kept enter the index, so running the
  processor again over its own output changes nothing (idempotent), and a row is compared with
  the rows that are in the dataset, not with rows already removed.

A row is a duplicate when either test says so; the exact test is applied first.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pyarrow as pa

from .._exceptions import ConfigError
from ..config._processors import DedupProcessor
from ._base import Batch, ColumnSet
from ._columns import require_columns

__all__ = ["DedupRows"]

_WORD = re.compile(r"\w+", re.UNICODE)


def _import_datasketch() -> Any:
    try:
        import datasketch  # type: ignore[import-untyped]
    except ImportError:
        return None
    return datasketch


class DedupRows:
    def __init__(self, config: DedupProcessor, label: str) -> None:
        self.label = label
        self.config = config
        self._seen: set[bytes] = set()
        self._lsh: Any = None
        self._keys = 0

    def check(self, columns: ColumnSet) -> ColumnSet:
        wanted = list(self.config.columns)
        if self.config.near_duplicate is not None:
            wanted.append(self.config.near_duplicate)
            if _import_datasketch() is None:
                raise ConfigError(
                    f"processor {self.label!r}: near_duplicate needs the 'datasketch' package; "
                    "install it with pip install 'trio_designer[dedup]'"
                )
        require_columns(self.label, "columns", wanted, columns)
        return columns

    def _shingles(self, text: Any) -> set[bytes]:
        words = _WORD.findall(str(text or "").lower())
        n = self.config.ngram
        if len(words) <= n:
            return {" ".join(words).encode()}
        return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}

    def process(self, batch: Batch) -> pa.Table:
        table = batch.table
        if table.num_rows == 0:
            return table
        duplicate = [False] * table.num_rows
        reasons: dict[int, str] = {}
        if self.config.columns:
            values = table.select(list(self.config.columns)).to_pylist()
            for index, row in enumerate(values):
                key = json.dumps(list(row.values()), sort_keys=True, default=str).encode()
                digest = hashlib.blake2b(key, digest_size=16).digest()
                if digest in self._seen:
                    duplicate[index] = True
                    reasons[index] = "exact duplicate of " + ", ".join(self.config.columns)
                else:
                    self._seen.add(digest)
        if self.config.near_duplicate is not None:
            self._near(table, duplicate, reasons)
        removed = [i for i, dup in enumerate(duplicate) if dup]
        by_reason: dict[str, list[int]] = {}
        for index in removed:
            by_reason.setdefault(reasons[index], []).append(index)
        for reason, rows in by_reason.items():
            batch.remove(table.take(pa.array(rows, pa.int64())), reason)
        return table.filter(pa.array([not dup for dup in duplicate], type=pa.bool_()))

    def _near(self, table: pa.Table, duplicate: list[bool], reasons: dict[int, str]) -> None:
        datasketch = _import_datasketch()
        num_perm = self.config.num_perm
        if self._lsh is None:
            self._lsh = datasketch.MinHashLSH(threshold=self.config.threshold, num_perm=num_perm)
        column = self.config.near_duplicate
        assert column is not None
        texts = table.column(column).to_pylist()
        candidates = [i for i, dup in enumerate(duplicate) if not dup]
        hashes = datasketch.MinHash.bulk(
            [self._shingles(texts[i]) for i in candidates], num_perm=num_perm
        )
        reason = f"near-duplicate {column} (similarity >= {self.config.threshold})"
        for index, minhash in zip(candidates, hashes, strict=True):
            if self._lsh.query(minhash):
                duplicate[index] = True
                reasons[index] = reason
            else:
                self._lsh.insert(f"r{self._keys}", minhash)
                self._keys += 1
