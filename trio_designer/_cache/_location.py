"""Where the response cache lives.

In order: an explicit directory (``TrioDesigner(cache_dir=...)``, ``--cache-dir``, the config's
``run.cache_dir``), else ``$XDG_CACHE_HOME/trio_designer``, else ``~/.cache/trio_designer``.
The store is one SQLite file in it, :data:`CACHE_FILE`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

__all__ = ["CACHE_ENV", "CACHE_FILE", "default_cache_dir", "resolve_cache_dir"]

CACHE_FILE: Final = "responses.sqlite3"
"""The store's file name inside the cache directory."""

CACHE_ENV: Final = "TRIO_DESIGNER_CACHE"
"""Set to ``off`` (or ``0``, ``false``, ``no``) to make the cache off by default (CI, test
suites); an explicit ``TrioDesigner(cache=True)`` still turns it on."""

_OFF: Final = frozenset({"off", "0", "false", "no"})


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/trio_designer``, or ``~/.cache/trio_designer`` without it."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "trio_designer"


def resolve_cache_dir(explicit: str | os.PathLike[str] | None) -> Path:
    """The cache directory: ``explicit`` (``~`` expanded) or :func:`default_cache_dir`."""
    if explicit is not None:
        return Path(explicit).expanduser()
    return default_cache_dir()


def cache_on_by_default() -> bool:
    """Whether the cache is on when nobody said (``TRIO_DESIGNER_CACHE`` not ``off``)."""
    return os.environ.get(CACHE_ENV, "").strip().lower() not in _OFF
