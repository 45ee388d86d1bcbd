"""Which seed row feeds which row of a run: a pure function, the same in every process.

A run's row ``r`` (its global row id, 0-based over the whole run) reads seed row
``SeedOrder.seed_row(r)``. The answer depends only on

* the seed's size (rows),
* the selection: a row range ``[start, stop)`` of the seed, and/or the ``index``-th of
  ``count`` contiguous partitions of that range,
* the sampling mode and the dataset seed (the run's ``seed``),

so a row group reads exactly its own rows, in any order, on any machine, after any resume;
and shards of a scaled-out run that select partitions ``0..n-1`` read disjoint, contiguous
slices whose concatenation is the whole seed, in order.

Sampling, over the ``m`` selected rows ``lo .. lo+m-1``:

``ordered``
    ``lo + r % m``: the selection in order, cycling when the run is longer.
``shuffle``
    a seeded permutation of the selection per cycle (cycle ``r // m``): every row once per
    cycle, in an order that changes from cycle to cycle. The permutation is a Feistel network
    over the next power of two with cycle walking, so nothing of size ``m`` is ever built: a
    100-million-row seed costs no memory to shuffle.
``with_replacement``
    each run row draws a selected row uniformly and independently.

Everything keys on blake2b of decimal text, never on ``hash()``: stable across processes and
Python versions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final, Literal, TypeAlias, get_args

import attrs

__all__ = ["SAMPLING_MODES", "Sampling", "SeedOrder", "partition_range", "selected_range"]

Sampling: TypeAlias = Literal["ordered", "shuffle", "with_replacement"]
SAMPLING_MODES: Final[tuple[str, ...]] = get_args(Sampling)

_ROUNDS: Final = 4


def partition_range(start: int, stop: int, index: int, count: int) -> tuple[int, int]:
    """The ``index``-th of ``count`` contiguous, balanced parts of ``[start, stop)``.

    Part sizes differ by at most one; the parts in order tile the range exactly.

    Raises:
      ValueError: ``count < 1`` or ``index`` not in ``[0, count)``.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"partition index must be in [0, {count}) and count >= 1: {index}")
    size = stop - start
    return start + index * size // count, start + (index + 1) * size // count


def selected_range(
    size: int,
    *,
    start: int | None = None,
    stop: int | None = None,
    partition: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The seed rows ``[lo, hi)`` a selection names, in a seed of ``size`` rows.

    ``start``/``stop`` default to the whole seed; ``partition`` (``(index, count)``) then
    takes one contiguous part of that range.

    Raises:
      ValueError: the range lies outside the seed or is empty (the message says why, in a
        user's words).
    """
    lo = 0 if start is None else start
    hi = size if stop is None else stop
    if not 0 <= lo <= size:
        raise ValueError(f"selection start {lo} is outside the seed's {size} rows")
    if hi > size:
        raise ValueError(f"selection stop {hi} is past the end of the seed ({size} rows)")
    if hi <= lo:
        raise ValueError(f"selection [{lo}, {hi}) holds no row of the seed ({size} rows)")
    if partition is not None:
        lo, hi = partition_range(lo, hi, *partition)
        if hi <= lo:
            index, count = partition
            raise ValueError(
                f"partition {index} of {count} holds no row: the selection has only "
                f"{_rows(start, stop, size)} rows; use fewer partitions"
            )
    return lo, hi


def _rows(start: int | None, stop: int | None, size: int) -> int:
    """Rows in ``[start, stop)`` with the defaults of :func:`selected_range`."""
    return (size if stop is None else stop) - (0 if start is None else start)


def _digest(*parts: object) -> int:
    text = "\x00".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


@attrs.frozen
class SeedOrder:
    """The mapping run row -> seed row (see the module docstring).

    Attributes:
      lo: the first selected seed row.
      hi: one past the last selected seed row (``hi > lo``).
      sampling: ``"ordered"``, ``"shuffle"`` or ``"with_replacement"``.
      seed: the dataset seed (the run's ``seed``).
    """

    lo: int
    hi: int
    sampling: Sampling = "ordered"
    seed: int = 0
    _bits: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.hi <= self.lo or self.lo < 0:
            raise ValueError(f"an order needs a non-empty range: [{self.lo}, {self.hi})")
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"unknown sampling {self.sampling!r}")
        bits = max(2, (self.size - 1).bit_length())
        object.__setattr__(self, "_bits", bits + bits % 2)

    @classmethod
    def of(
        cls,
        size: int,
        *,
        sampling: Sampling = "ordered",
        seed: int = 0,
        start: int | None = None,
        stop: int | None = None,
        partition: tuple[int, int] | None = None,
    ) -> SeedOrder:
        """The order of a seed of ``size`` rows under a selection (:func:`selected_range`).

        Raises:
          ValueError: as :func:`selected_range`.
        """
        lo, hi = selected_range(size, start=start, stop=stop, partition=partition)
        return cls(lo, hi, sampling, seed)

    @property
    def size(self) -> int:
        """How many seed rows are selected."""
        return self.hi - self.lo

    def seed_row(self, row: int) -> int:
        """The seed row that run row ``row`` (``>= 0``) reads."""
        if row < 0:
            raise ValueError(f"row ids are >= 0: {row}")
        m = self.size
        if self.sampling == "ordered":
            return self.lo + row % m
        if self.sampling == "with_replacement":
            return self.lo + _digest("draw", self.seed, row) % m
        epoch, position = divmod(row, m)
        return self.lo + self._permute(position, epoch)

    def seed_rows(self, rows: Iterable[int]) -> list[int]:
        """:meth:`seed_row` of each of ``rows``, in order."""
        return [self.seed_row(row) for row in rows]

    def _permute(self, position: int, epoch: int) -> int:
        """A bijection of ``[0, m)`` keyed by (seed, epoch): a balanced Feistel network over
        ``2**bits >= m`` values, walked until it lands inside ``[0, m)`` (fewer than four steps
        on average, since ``2**bits < 4 m``)."""
        value = position
        while True:
            value = self._feistel(value, epoch)
            if value < self.size:
                return value

    def _feistel(self, value: int, epoch: int) -> int:
        half = self._bits // 2
        mask = (1 << half) - 1
        left, right = value >> half, value & mask
        for round_ in range(_ROUNDS):
            left, right = right, left ^ (_digest("perm", self.seed, epoch, round_, right) & mask)
        return (left << half) | right
