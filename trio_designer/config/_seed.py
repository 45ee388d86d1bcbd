"""``seed:``: rows a pipeline starts from, read from a file or a Hugging Face dataset.

::

    seed:
      path: questions.csv            # a parquet file or directory, a .csv, a .jsonl
      sampling: shuffle              # ordered (default) | shuffle | with_replacement
      selection: {start: 0, stop: 500}
      drop: [internal_id]

    seed:
      hf: org/name                   # through the `datasets` library (extra `hf`)
      split: train
      revision: main

Every column of the seed becomes a column of the pipeline (a root of the graph), which
templates, expressions, custom functions and ``skip_when`` read by name. Which seed row feeds
which run row is :class:`trio_designer._core._seedorder.SeedOrder`. These classes validate their
own fields; whether the file exists, parses and has rows is checked when a run or ``validate``
opens the seed (:mod:`trio_designer._seed`), still before any request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

import attrs
from attrs import validators as v

from .._core._seedorder import SAMPLING_MODES, Sampling
from ._validators import (
    checked,
    instance_of,
    is_int,
    is_str,
    is_tuple_of,
    non_blank,
    optional,
    to_tuple,
)

SeedFormat: TypeAlias = Literal["parquet", "csv", "jsonl"]
SEED_FORMATS: tuple[str, ...] = get_args(SeedFormat)

_names = checked(is_tuple_of(is_str, "a column name"))


def _below_count(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(instance.count, int) and isinstance(value, int) and value >= instance.count:
        raise ValueError(f"'index' must be < 'count' ({instance.count}): {value}")


@attrs.frozen(kw_only=True)
class SeedPartition:
    """The ``index``-th of ``count`` contiguous parts of the selected rows (0-based).

    Attributes:
      index: which part, ``0 <= index < count``.
      count: how many parts, ``>= 1``. Parts ``0..count-1`` tile the rows in order.
    """

    count: int = attrs.field(validator=checked(is_int, v.ge(1)))
    index: int = attrs.field(validator=checked(is_int, v.ge(0), _below_count))


def _after_start(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    start = instance.start
    if value is not None and isinstance(start, int) and value <= start:
        raise ValueError(f"'stop' must be > 'start' ({start}): {value}")


@attrs.frozen(kw_only=True)
class SeedSelection:
    """Which rows of the seed a run reads: a row range, then optionally one partition of it.

    Attributes:
      start: the first row (0-based; default 0).
      stop: one past the last row (default: the end of the seed).
      partition: ``{index: i, count: n}``: only the ``i``-th of ``n`` contiguous parts of the
        range (shards of a scaled-out run read disjoint rows this way).
    """

    start: int | None = attrs.field(default=None, validator=optional(checked(is_int, v.ge(0))))
    stop: int | None = attrs.field(
        default=None, validator=optional(checked(is_int, v.ge(1), _after_start))
    )
    partition: SeedPartition | None = attrs.field(
        default=None, validator=optional(checked(instance_of(SeedPartition)))
    )

    def partition_pair(self) -> tuple[int, int] | None:
        """``(index, count)`` of the partition, or ``None``."""
        return None if self.partition is None else (self.partition.index, self.partition.count)


def _one_source(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and instance.path is None:
        raise ValueError("a seed needs a source: 'path' (a local file or folder) or 'hf'")
    if value is not None and instance.path is not None:
        raise ValueError("a seed reads one source: give 'path' or 'hf', not both")


def _hf_only(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and instance.hf is None:
        raise ValueError(f"'{attribute.name}' applies to a Hugging Face seed ('hf'), not to 'path'")


def _path_only(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and instance.path is None:
        raise ValueError("'format' applies to a local seed ('path'); 'hf' seeds know theirs")


@attrs.frozen(kw_only=True)
class SeedConfig:
    """Where a pipeline's seed rows come from and how they are drawn.

    Attributes:
      path: a local parquet file, a folder of parquet files (read as a ``pyarrow.dataset``,
        streamed), a ``.csv`` or a ``.jsonl`` file; relative to the config file's folder.
      hf: a Hugging Face dataset (``org/name``, or a folder written by ``save_to_disk``),
        read through the ``datasets`` library (extra ``hf``), from its cache when offline.
      split: the split of an ``hf`` seed (default ``train``).
      revision: the revision (branch, tag, commit) of an ``hf`` seed.
      config: the configuration (subset) name of an ``hf`` seed.
      format: ``parquet``, ``csv`` or ``jsonl``; default: from the file's suffix (a folder is
        parquet).
      sampling: ``ordered`` (default), ``shuffle`` (a fresh seeded permutation each pass) or
        ``with_replacement``; seeded by ``run.seed``. A run longer than the selection cycles
        through it (ordered, shuffle) or keeps drawing (with_replacement).
      selection: which rows to read (:class:`SeedSelection`); default all.
      columns: read only these columns of the seed (default: all).
      drop: seed columns read (templates may use them) but not written to the output.
    """

    path: str | None = attrs.field(default=None, validator=optional(checked(non_blank)))
    hf: str | None = attrs.field(
        default=None, validator=checked(_one_source, optional(checked(non_blank)))
    )
    split: str | None = attrs.field(default=None, validator=optional(checked(non_blank, _hf_only)))
    revision: str | None = attrs.field(
        default=None, validator=optional(checked(non_blank, _hf_only))
    )
    config: str | None = attrs.field(default=None, validator=optional(checked(non_blank, _hf_only)))
    format: SeedFormat | None = attrs.field(
        default=None, validator=optional(checked(v.in_(SEED_FORMATS), _path_only))
    )
    sampling: Sampling = attrs.field(default="ordered", validator=checked(v.in_(SAMPLING_MODES)))
    selection: SeedSelection | None = attrs.field(
        default=None, validator=optional(checked(instance_of(SeedSelection)))
    )
    columns: tuple[str, ...] = attrs.field(default=(), converter=to_tuple, validator=_names)
    drop: tuple[str, ...] = attrs.field(default=(), converter=to_tuple, validator=_names)

    def location(self, folder: Path | None) -> Path | None:
        """``path`` resolved against the config file's ``folder`` (``None``: the current
        directory); ``None`` for an ``hf`` seed."""
        if self.path is None:
            return None
        path = Path(self.path).expanduser()
        return path if path.is_absolute() or folder is None else folder / path

    def describe(self) -> str:
        """The source in a user's words: ``'questions.csv'`` or ``hf 'org/name' (train)``."""
        if self.hf is not None:
            return f"hf {self.hf!r} ({self.split or 'train'})"
        return repr(self.path)

