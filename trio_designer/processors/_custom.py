"""``custom``: a user function over a ``pyarrow.Table``.

``function`` is a callable or an import path ``"package.module:function"``, resolved under the
same rules as a custom column's (:mod:`trio_designer.config._code`: the installed environment
or the pipeline's ``python_path``, never the current directory implicitly). It is called as
``fn(table)`` with each row group's table (or, with ``whole_dataset: true``, once with the
whole dataset after the run) and returns a ``pyarrow.Table`` (a pandas DataFrame is accepted
and converted). Rows it removes are counted under ``removed by <function>``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .._exceptions import ConfigError, ProcessorError
from ..config._code import CodeSearch, resolve_function
from ..config._processors import CustomProcessor
from ._base import Batch, ColumnSet

__all__ = ["CustomTableProcessor"]


class CustomTableProcessor:
    def __init__(self, config: CustomProcessor, label: str, search: CodeSearch) -> None:
        self.label = label
        function = config.function
        if isinstance(function, str):
            self.function: Any = resolve_function(function, search, where=f"processor {label!r}")
            self.described = function
        else:
            self.function = function
            self.described = getattr(function, "__qualname__", repr(function))
        if not callable(self.function):
            raise ConfigError(f"processor {label!r}: function {self.described!r} is not callable")

    def check(self, columns: ColumnSet) -> ColumnSet:
        return ColumnSet(columns.names, columns.json_columns)  # unknown until it runs

    def process(self, batch: Batch) -> pa.Table:
        result = self.function(batch.table)
        if not isinstance(result, pa.Table) and hasattr(result, "to_dict"):
            result = pa.Table.from_pandas(result, preserve_index=False)
        if not isinstance(result, pa.Table):
            raise ProcessorError(
                f"processor {self.label!r}: {self.described} returned a "
                f"{type(result).__name__}; return a pyarrow.Table"
            )
        lost = batch.table.num_rows - result.num_rows
        if lost > 0:
            batch.removed.append((batch.table.slice(0, lost), f"removed by {self.described}"))
        return result
