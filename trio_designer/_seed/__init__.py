"""Reading a pipeline's seed rows: parquet (streamed), CSV, JSONL, Hugging Face datasets.

:func:`open_seed` turns a :class:`~trio_designer.config.SeedConfig` into an :class:`OpenSeed`:
the source (what it holds), the run order (:class:`~trio_designer._core._seedorder.SeedOrder`)
and the seed's identity for the resume fingerprint. Everything that can go wrong with the input
(a missing file, an unreadable format, an empty seed, a hub dataset outside the offline
cache) is a :class:`~trio_designer.ConfigError` here, before any request.
"""

from __future__ import annotations

from ._open import OpenSeed, open_seed
from ._source import SeedSource

__all__ = ["OpenSeed", "SeedSource", "open_seed"]
