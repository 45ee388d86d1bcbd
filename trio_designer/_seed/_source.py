"""What a seed source offers: its rows' count and schema, and rows taken by index."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class SeedSource(Protocol):
    """Rows of a seed, addressed by their 0-based index.

    ``take`` may be slow (disk, decompression): the engine calls it in a worker thread, and
    it must be safe to call from several threads at once.
    """

    @property
    def num_rows(self) -> int:
        """How many rows the seed holds."""
        ...

    @property
    def schema(self) -> Any:
        """The seed's ``pyarrow.Schema``."""
        ...

    def take(self, rows: Sequence[int], columns: Sequence[str]) -> Any:
        """A ``pyarrow.Table`` of ``columns`` for ``rows``, in the order of ``rows`` (which
        may repeat and be in any order)."""
        ...

    def identity(self) -> Mapping[str, str]:
        """What identifies the content, for the resume fingerprint (``{}``: the config's own
        fields and file hashes say it all)."""
        ...
