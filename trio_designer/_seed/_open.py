"""``open_seed``: a pipeline's ``seed:`` section, opened and checked, before any request."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._core._names import MAX_NAME_LENGTH
from .._core._seedorder import SeedOrder
from .._core._suggest import did_you_mean
from .._exceptions import ConfigError
from ._source import SeedSource

if TYPE_CHECKING:
    from ..config import PipelineConfig
    from ..config._seed import SeedConfig

__all__ = ["OpenSeed", "open_seed"]

_SUFFIXES: Final = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_FORMAT_NAMES: Final = {"parquet": "parquet", "csv": "CSV", "jsonl": "JSON Lines"}


@attrs.frozen(eq=False)
class OpenSeed:
    """A seed ready to read.

    Attributes:
      source: its rows.
      order: run row -> seed row.
      columns: the seed columns the pipeline has, in the seed's order.
      drop: those of them not written to the output (``seed.drop``).
      describe: the source in a user's words (for messages).
    """

    source: SeedSource
    order: SeedOrder
    columns: tuple[str, ...]
    drop: frozenset[str]
    describe: str

    def arrow_type(self, column: str) -> Any:
        """The pyarrow type of a seed column."""
        return self.source.schema.field(column).type

    def identity(self) -> Mapping[str, str]:
        """What the resume fingerprint adds for this seed beyond its config and file hashes."""
        return self.source.identity()


def open_seed(config: PipelineConfig) -> OpenSeed | None:
    """Open ``config.seed`` (``None`` without one): read its metadata or, for CSV/JSON Lines,
    parse it, and check it against the config.

    Raises:
      ConfigError: every problem of the seed: a missing file, an unreadable format, no rows,
        a selection outside the seed, unknown names in ``seed.columns``/``seed.drop``, a
        ``kind: seed`` column the seed lacks, a seed column named like a declared column, a
        hub dataset missing from the offline cache or the ``datasets`` extra not installed.
    """
    seed = config.seed
    if seed is None:
        return None
    base = config.source_folder()
    source, describe = _source(seed, base)
    if source.num_rows == 0:
        raise ConfigError(f"seed: {describe} holds no rows; a seed needs at least one row")
    available = list(source.schema.names)
    problems = _name_problems("seed.columns", seed.columns, available)
    problems += _name_problems("seed.drop", seed.drop, available)
    columns = tuple(name for name in available if not seed.columns or name in seed.columns)
    problems += [
        f"seed: column {name!r} of {describe} is not an identifier, so templates cannot name "
        "it; list the columns to read in seed.columns (leaving it out)"
        for name in columns
        if not name.isidentifier()
    ]
    problems += [
        f"seed: column {name[:40]!r}... of {describe} has a name of {len(name):,} characters "
        f"(at most {MAX_NAME_LENGTH}); rename it in the file, or leave it out with seed.columns"
        for name in columns
        if name.isidentifier() and len(name) > MAX_NAME_LENGTH
    ]
    problems += _column_problems(config, columns)
    selection = seed.selection
    try:
        order = SeedOrder.of(
            source.num_rows,
            sampling=seed.sampling,
            seed=config.run.seed,
            start=None if selection is None else selection.start,
            stop=None if selection is None else selection.stop,
            partition=None if selection is None else selection.partition_pair(),
        )
    except ValueError as exc:
        problems.append(f"seed.selection: {exc}")
    if problems:
        raise ConfigError(problems)
    return OpenSeed(
        source=source,
        order=order,
        columns=columns,
        drop=frozenset(seed.drop),
        describe=describe,
    )


def _name_problems(where: str, names: tuple[str, ...], available: list[str]) -> list[str]:
    listed = "the seed's columns are " + ", ".join(map(repr, available))
    return [
        f"{where}[{index}]: the seed has no column {name!r}; "
        + did_you_mean(name, available, otherwise=listed)
        for index, name in enumerate(names)
        if name not in available
    ]


def _column_problems(config: PipelineConfig, columns: tuple[str, ...]) -> list[str]:
    problems: list[str] = []
    for index, column in enumerate(config.columns):
        if column.kind == "seed" and column.name not in columns:
            problems.append(
                f"columns[{index}] {column.name!r}: the seed has no column {column.name!r}; "
                + did_you_mean(
                    column.name,
                    columns,
                    otherwise="the seed's columns are " + ", ".join(map(repr, columns)),
                )
            )
        elif column.kind != "seed" and column.name in columns:
            problems.append(
                f"columns[{index}] {column.name!r}: the seed has a column {column.name!r} too; "
                "rename this column, or leave the seed's out with seed.columns"
            )
    return problems


def _source(seed: SeedConfig, base: Path | None) -> tuple[SeedSource, str]:
    if seed.hf is not None:
        return _hub(seed, base), seed.describe()
    path = seed.location(base)
    assert path is not None
    describe = repr(seed.path)
    if not path.exists():
        raise ConfigError(
            f"seed.path: no file or folder {seed.path!r} (looked for {path}); check the path "
            "(a relative path is relative to the config file's folder)"
        )
    fmt = seed.format or ("parquet" if path.is_dir() else _SUFFIXES.get(path.suffix.lower()))
    if fmt is None:
        raise ConfigError(
            f"seed.path: cannot tell the format of {seed.path!r} from its suffix; set "
            "seed.format to parquet, csv or jsonl"
        )
    try:
        return _read(path, fmt), describe
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"seed.path: {seed.path!r} is not a readable {_FORMAT_NAMES[fmt]} "
            f"{'folder' if path.is_dir() else 'file'} ({reason}); check the file, or set "
            "seed.format if its suffix misleads"
        ) from None


def _read(path: Path, fmt: str) -> SeedSource:
    if fmt == "parquet":
        from ._parquet import ParquetSource

        return ParquetSource(path)
    from ._table import TableSource, read_text_table

    return TableSource(read_text_table(path, fmt))


def _hub(seed: SeedConfig, base: Path | None) -> SeedSource:
    assert seed.hf is not None
    try:
        from ._hub import HubSource, load_hub_dataset

        dataset = load_hub_dataset(
            seed.hf,
            split=seed.split or "train",
            revision=seed.revision,
            config=seed.config,
            base=base or Path.cwd(),
        )
    except ImportError:
        raise ConfigError(
            "seed.hf: reading a Hugging Face dataset needs the 'datasets' library; install "
            "the extra: pip install 'trio_designer[hf]'"
        ) from None
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"seed.hf: cannot load {seed.describe()}: {reason}. If offline "
            "(HF_DATASETS_OFFLINE=1), the dataset must be in the local cache: load it once "
            "online, or point 'hf' at a local folder"
        ) from None
    return HubSource(dataset, describe=seed.describe())
