"""What a dataset cost, per model: the summary the dataset card (and anyone else) can show.

Read from the provenance files (``provenance/``, every session of the run, every written row
group) and the recorded config (each alias's model id and price). Row groups that were in
flight when a session stopped are not in the files: their spend is in that session's
``summary.usage`` of ``metadata.json`` only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ._provenance import read_cells

__all__ = ["add_sums", "alias_sums", "model_usage_summary", "usage_from_cells", "usage_from_sums"]


def model_usage_summary(
    output_dir: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Per model alias: model id, price, requests, tokens and cost of the written dataset.

    Args:
      output_dir: the run's output directory.
      metadata: its ``metadata.json`` as a dict, when the caller has it already (for the
        config's models and prices); read from ``output_dir`` otherwise.

    Returns:
      ``{alias: {"model", "price", "requests", "input_tokens", "output_tokens",
      "reasoning_tokens", "cached_input_tokens", "cost"}}`` in the config's order; ``price``
      and ``cost`` are ``None`` for an alias without a price. Aliases no cell called are listed
      with zeros.

    Raises:
      SinkError: ``output_dir`` holds no readable run record.
    """
    root = Path(output_dir)
    if metadata is None:
        import json

        from ._layout import METADATA_FILE

        metadata = json.loads((root / METADATA_FILE).read_bytes())
    models = (metadata.get("config") or {}).get("models") or []
    return usage_from_cells(read_cells(root), models)


def usage_from_cells(
    cells: pa.Table, models: list[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """:func:`model_usage_summary` from a provenance table and the config's ``models`` list."""
    return usage_from_sums(alias_sums(cells), models)


def alias_sums(cells: pa.Table) -> dict[str, dict[str, float]]:
    """Per model alias of a provenance table: the sums of its counted columns and ``cost``
    (cells without a model left out). Sums of several tables add up (``add_sums``)."""
    result: dict[str, dict[str, float]] = {}
    if not cells.num_rows:
        return result
    aliases = cells["model_alias"]
    for alias in pc.unique(aliases).to_pylist():
        if alias is None:
            continue
        mine = cells.filter(pc.equal(aliases, alias))
        result[alias] = {
            name: pc.sum(mine[name]).as_py() or 0 for name in (*_COUNTED, "cost")
        }
    return result


def add_sums(
    total: dict[str, dict[str, float]], more: Mapping[str, Mapping[str, float]]
) -> None:
    """Add ``more`` (from :func:`alias_sums`) into ``total``."""
    for alias, sums in more.items():
        mine = total.setdefault(alias, dict.fromkeys((*_COUNTED, "cost"), 0))
        for name, value in sums.items():
            mine[name] += value


def usage_from_sums(
    sums: Mapping[str, Mapping[str, float]], models: list[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """:func:`usage_from_cells` from the sums :func:`alias_sums` computed."""
    result: dict[str, dict[str, Any]] = {}
    for model in models:
        price = model.get("price")
        result[str(model.get("alias"))] = {
            "model": model.get("model"),
            "price": dict(price) if isinstance(price, Mapping) else None,
            "requests": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "reasoning_tokens": 0,
            "cached_input_tokens": 0,
            "cost": 0.0 if isinstance(price, Mapping) else None,
        }
    for alias, row in sums.items():
        entry = result.setdefault(
            alias, {"model": None, "price": None, "cost": None, **dict.fromkeys(_COUNTED, 0)}
        )
        for name in _COUNTED:
            entry[name] = int(row[name] or 0)
        if entry["price"] is not None:
            entry["cost"] = float(row["cost"] or 0.0)
    return result


_COUNTED = ("requests", "input_tokens", "output_tokens", "reasoning_tokens", "cached_input_tokens")
