"""The response cache's store: every paid model answer, kept on disk, found again by a key.

Trio-free and synchronous (the engine calls it from worker threads, batched; see
``models/_cached.py``). One idea per module:

=================  ==========================================================================
``_key``           the key (sha256 of the cell and the body sent), an answer's stored form
``_location``      where the store lives: ``cache_dir``, ``$XDG_CACHE_HOME/trio_designer``
``_store``         :class:`CacheStore`: SQLite (WAL) shared by processes; checksummed values
=================  ==========================================================================
"""

from ._key import KEY_VERSION, CellKey, RawAnswer, cache_key, decode_answer, encode_answer
from ._location import CACHE_ENV, CACHE_FILE, default_cache_dir, resolve_cache_dir
from ._store import CacheStats, CacheStore, StoredAnswer

__all__ = [
    "CACHE_ENV",
    "CACHE_FILE",
    "KEY_VERSION",
    "CacheStats",
    "CacheStore",
    "CellKey",
    "RawAnswer",
    "StoredAnswer",
    "cache_key",
    "decode_answer",
    "default_cache_dir",
    "encode_answer",
    "resolve_cache_dir",
]
