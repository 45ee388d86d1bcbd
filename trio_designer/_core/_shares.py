"""How a sharded run divides itself: row groups per shard, and each shard's share of a limit.

Pure arithmetic (no trio, no I/O), used by :mod:`trio_designer._scaleout`.

* **Row groups.** A run of ``G`` row groups in ``n`` shards gives shard ``i`` the contiguous
  global ids ``[i*G // n, (i+1)*G // n)``. Every row group keeps its global id, so its rows,
  their per-cell randomness (seeded by the global row index) and its cache keys do not depend
  on ``n``; the shards' ranges are disjoint and cover ``0..G-1`` for any ``n`` (a shard may be
  empty when ``n > G``).
* **Limits.** A total ``T`` (a model's ``max_parallel_requests``, ``rpm`` or ``tpm``) is the
  ceiling of the *whole run*: shard ``i`` gets ``T // n``, plus one for the first ``T % n``
  shards, so the shares sum to ``T`` exactly. A share is never below 1 (a shard with a limit of
  0 could not run): with ``n > T`` the shares sum to ``n``, not ``T``; :func:`oversubscribed`
  says when that happens so the caller can warn.
"""

from __future__ import annotations

__all__ = ["limit_share", "oversubscribed", "shard_row_groups"]


def shard_row_groups(num_row_groups: int, shard: int, num_shards: int) -> range:
    """The global row-group ids of ``shard`` (``0 <= shard < num_shards``).

    >>> [list(shard_row_groups(7, i, 3)) for i in range(3)]
    [[0, 1], [2, 3], [4, 5, 6]]
    """
    _check(shard, num_shards)
    if num_row_groups < 0:
        raise ValueError(f"num_row_groups must be >= 0, got {num_row_groups}")
    return range(shard * num_row_groups // num_shards, (shard + 1) * num_row_groups // num_shards)


def limit_share(total: int, shard: int, num_shards: int) -> int:
    """Shard ``shard``'s share of a run-wide limit ``total``: floor or ceiling of
    ``total / num_shards``, summing to ``total`` over the shards (never below 1).

    >>> [limit_share(10, i, 3) for i in range(3)]
    [4, 3, 3]
    """
    _check(shard, num_shards)
    if total < 1:
        raise ValueError(f"a limit must be >= 1, got {total}")
    return max(1, total // num_shards + (1 if shard < total % num_shards else 0))


def oversubscribed(total: int, num_shards: int) -> bool:
    """Whether the shares of ``total`` sum to more than ``total`` (each shard needs 1)."""
    return num_shards > total


def _check(shard: int, num_shards: int) -> None:
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in 0..{num_shards - 1}, got {shard}")
