"""The response cache's store: every paid model answer, kept on disk, found again by a key.

Trio-free and synchronous (the engine calls it from worker threads, batched; see
``models/_cached.py``). One idea per module:

=================  ==========================================================================
``_key``           the key of a request (sha256 over canonical JSON) and a stored answer's form
``_location``      where the store lives: ``cache_dir``, ``$XDG_CACHE_HOME/trio_designer``
``_store``         :class:`CacheStore`: SQLite (WAL) shared by processes; checksummed values
=================  ==========================================================================
"""

from ._key import CellKey, EndpointKeys, RawAnswer, cache_key, decode_answer, encode_answer
from ._location import CACHE_ENV, CACHE_FILE, default_cache_dir, resolve_cache_dir
from ._store import CacheStats, CacheStore, StoredAnswer

__all__ = [
    "CACHE_ENV",
    "CACHE_FILE",
    "CacheStats",
    "CacheStore",
    "CellKey",
    "EndpointKeys",
    "RawAnswer",
    "StoredAnswer",
    "cache_key",
    "decode_answer",
    "default_cache_dir",
    "encode_answer",
    "resolve_cache_dir",
]
