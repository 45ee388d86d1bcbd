"""The chain inside a run: the columns it starts from, the async hook the engine awaits.

The engine knows nothing of processors: it awaits :data:`ProcessingHook
<trio_designer._engine._state.ProcessingHook>` ``(row_group, table) -> table`` in each
checkpoint. :class:`RowGroupProcessing` is that hook: it runs the chain's per-row-group stage
in a worker thread (never on the event loop, so model traffic keeps flowing), one row group at
a time (a ``trio.CapacityLimiter(1)``: the reports are shared).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import trio

from .._sink._layout import METADATA_FILE
from ..config import LLMJudgeColumn, LLMStructuredColumn
from ._base import ColumnSet
from ._chain import ProcessorChain

__all__ = ["RowGroupProcessing", "earlier_reports", "output_columns"]


def earlier_reports(output_dir: Path) -> dict[str, Any]:
    """The per-processor reports an earlier run recorded in ``metadata.json`` (for a resumed
    run to add to), or nothing."""
    try:
        meta = json.loads((output_dir / METADATA_FILE).read_text(encoding="utf-8"))
        reports = (meta.get("summary") or {}).get("processors") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return dict(reports) if isinstance(reports, dict) else {}


def output_columns(
    order: Sequence[str], configs: Mapping[str, Any], generators: Mapping[str, Any]
) -> ColumnSet:
    """The columns a run writes (what the first processor sees), as the engine orders them:
    each kept column followed by its side columns."""
    names: list[str] = []
    json_columns: set[str] = set()
    for column in order:
        config = configs[column]
        if config.drop:
            continue
        names.append(column)
        if isinstance(config, LLMStructuredColumn | LLMJudgeColumn):
            json_columns.add(column)
        names.extend(generators[column].extra_columns())
    return ColumnSet(tuple(names), frozenset(json_columns))


class RowGroupProcessing:
    """The engine's processing hook for ``chain`` (see the module docstring)."""

    def __init__(self, chain: ProcessorChain, output_dir: Path | None) -> None:
        self.chain = chain
        self.output_dir = output_dir
        self._limiter = trio.CapacityLimiter(1)

    async def __call__(self, row_group: int, table: pa.Table) -> pa.Table:
        work = partial(self.chain.process_row_group, row_group, table, self.output_dir)
        result: pa.Table = await trio.to_thread.run_sync(work, limiter=self._limiter)
        return result
