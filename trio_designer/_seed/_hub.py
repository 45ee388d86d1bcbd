"""A Hugging Face seed: ``datasets.load_dataset`` (or ``load_from_disk``), memory-mapped.

The ``datasets`` library is an optional extra (``pip install 'trio_designer[hf]'``), imported
only when a config names an ``hf`` seed. Its Arrow cache files are memory-mapped, so taking
rows by index reads only those rows' pages; ``HF_DATASETS_OFFLINE=1`` (or ``HF_HUB_OFFLINE``)
makes it use its cache and never the network, and a dataset missing from the cache is then a
config error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["HubSource", "load_hub_dataset"]


def load_hub_dataset(
    name: str, *, split: str, revision: str | None, config: str | None, base: Path
) -> Any:
    """The ``datasets.Dataset`` for one split.

    ``name`` is a hub id (``org/name``), a local dataset folder (data files that
    ``load_dataset`` reads), or a folder written by ``Dataset.save_to_disk``; relative folders
    are resolved against ``base``.

    Raises:
      ImportError: the ``datasets`` library is not installed.
      Exception: whatever ``datasets`` raises (the caller words it as a config error).
    """
    import datasets

    local = base / name
    saved = (local / "state.json").is_file() or (local / "dataset_dict.json").is_file()
    if local.is_dir() and saved:
        loaded = datasets.load_from_disk(str(local))
        if isinstance(loaded, datasets.DatasetDict):
            loaded = loaded[split]
        return loaded
    source = str(local) if local.is_dir() else name
    return datasets.load_dataset(source, config, split=split, revision=revision)


class HubSource:
    """Rows of a ``datasets.Dataset``."""

    def __init__(self, dataset: Any, *, describe: str) -> None:
        self._dataset = dataset
        self._arrow = dataset.with_format("arrow")
        self._describe = describe

    @property
    def num_rows(self) -> int:
        return int(self._dataset.num_rows)

    @property
    def schema(self) -> Any:
        return self._dataset.features.arrow_schema

    def take(self, rows: Sequence[int], columns: Sequence[str]) -> Any:
        return self._arrow[list(rows)].select(list(columns))

    def identity(self) -> Mapping[str, str]:
        return {"seed.hf": f"{self._describe} fingerprint {self._dataset._fingerprint}"}
