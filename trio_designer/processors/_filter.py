"""``filter``: keep the rows where a sandboxed Jinja condition holds.

The condition renders through the template sandbox (:mod:`trio_designer.generators._sandbox`),
once per row, with JSON-text columns decoded (``{{ judge.quality.score >= 3 }}``). A row whose
condition fails to render (an undefined attribute, a type error) is removed too, recorded with
the error as its reason, never silently lost.
"""

from __future__ import annotations

import pyarrow as pa

from .._exceptions import NonRetryableGenerationError
from ..config._processors import FilterRows
from ..generators._templates import evaluate_condition
from ._base import Batch, ColumnSet
from ._rows import template_rows
from ._templated import check_processor_template

__all__ = ["FilterProcessor"]


class FilterProcessor:
    def __init__(self, config: FilterRows, label: str) -> None:
        self.label = label
        self.condition = config.condition
        self.reason = config.reason or f"condition {config.condition} is false"
        self.json_columns: frozenset[str] = frozenset()

    def check(self, columns: ColumnSet) -> ColumnSet:
        check_processor_template(self.label, "condition", self.condition, columns)
        self.json_columns = columns.json_columns
        return columns

    def process(self, batch: Batch) -> pa.Table:
        keep: list[bool] = []
        errors: dict[int, str] = {}
        for index, row in enumerate(template_rows(batch.table, self.json_columns)):
            try:
                keep.append(
                    evaluate_condition(self.condition, row, column=self.label, field="condition")
                )
            except NonRetryableGenerationError as exc:
                keep.append(False)
                errors[index] = f"condition failed to render: {str(exc)[:200]}"
        mask = pa.array(keep, type=pa.bool_())
        failed = [i for i, kept in enumerate(keep) if not kept and i not in errors]
        batch.remove(batch.table.take(pa.array(failed, pa.int64())), self.reason)
        by_error: dict[str, list[int]] = {}
        for index, message in errors.items():
            by_error.setdefault(message, []).append(index)
        for message, rows in by_error.items():
            batch.remove(batch.table.take(pa.array(rows, pa.int64())), message)
        return batch.table.filter(mask)
