"""``trio-designer cache stats|prune|clear``: look after the response cache (docs/cache.md)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime

from .._cache import KEY_VERSION, CacheStore, resolve_cache_dir
from ._errors import CommandError

__all__ = ["cmd_cache", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``"90m"``, ``"12h"``, ``"30d"``, ``"2w"`` (a number and one unit).

    Raises:
      CommandError: not such a duration (exit status 2; the message shows the form).
    """
    match = _DURATION.match(text.lower())
    if match is None:
        raise CommandError(
            f"--older-than: {text!r} is not a duration; write a number and a unit "
            "(s, m, h, d or w), such as 90m, 12h, 30d or 2w"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def cmd_cache(args: argparse.Namespace) -> int:
    directory = resolve_cache_dir(args.cache_dir)
    action: str = args.cache_action
    if action == "prune":
        seconds = parse_duration(args.older_than)
        with CacheStore(directory) as store:
            deleted = store.prune(seconds)
        print(f"deleted {deleted} entries older than {args.older_than} from {store.path}")
    elif action == "clear":
        with CacheStore(directory) as store:
            deleted = store.clear()
        print(f"deleted {deleted} entries from {store.path}")
    else:
        with CacheStore(directory) as store:
            stats = store.stats()
        print(f"cache:   {stats.path}")
        print(f"entries: {stats.entries}")
        print(f"size:    {_size(stats.bytes)} of answers")
        print(f"oldest:  {_when(stats.oldest)}")
        print(f"newest:  {_when(stats.newest)}")
        print(f"keys:    version {KEY_VERSION} (entries stored under older keys never match)")
        if stats.stale:
            print(f"stale:   {stats.stale} entries stored under older keys (see cache prune)")
    return 0


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
