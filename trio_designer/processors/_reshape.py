"""``to_chat`` and ``schema_transform``: each row as a new record, in an extra dataset.

The table passes through unchanged; the records go to ``<output_dir>/<name>/`` as JSON Lines
and parquet (:mod:`._outputs`), the shape fine-tuning frameworks load::

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}

A row whose template fails to render (or, for ``schema_transform``, does not render a JSON
object) is left out of the extra dataset and counted under ``not_emitted`` with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from .._exceptions import NonRetryableGenerationError
from ..config._processors import SchemaTransform, ToChat
from ..generators._templates import render
from ._base import Batch, ColumnSet
from ._rows import template_rows
from ._templated import check_processor_template

__all__ = ["SchemaTransformProcessor", "ToChatProcessor"]


class ToChatProcessor:
    def __init__(self, config: ToChat, label: str) -> None:
        self.label = label
        assert config.name is not None
        self.dataset = config.name
        self.messages = [(m.role, m.content) for m in config.messages]
        self.json_columns: frozenset[str] = frozenset()

    def check(self, columns: ColumnSet) -> ColumnSet:
        for index, (_, content) in enumerate(self.messages):
            check_processor_template(self.label, f"messages[{index}].content", content, columns)
        self.json_columns = columns.json_columns
        return columns

    def process(self, batch: Batch) -> pa.Table:
        records: list[dict[str, Any]] = []
        for row in template_rows(batch.table, self.json_columns):
            try:
                messages = [
                    {"role": role, "content": render(content, row, column=self.label)}
                    for role, content in self.messages
                ]
            except NonRetryableGenerationError as exc:
                batch.skip(f"a message failed to render: {str(exc)[:200]}")
                continue
            records.append({"messages": messages})
        batch.emit(self.dataset, records)
        return batch.table


class SchemaTransformProcessor:
    def __init__(self, config: SchemaTransform, label: str) -> None:
        self.label = label
        assert config.name is not None
        self.dataset = config.name
        self.template = config.template
        self.json_columns: frozenset[str] = frozenset()

    def check(self, columns: ColumnSet) -> ColumnSet:
        check_processor_template(self.label, "template", self.template, columns)
        self.json_columns = columns.json_columns
        return columns

    def process(self, batch: Batch) -> pa.Table:
        records: list[dict[str, Any]] = []
        for row in template_rows(batch.table, self.json_columns):
            try:
                text = render(self.template, row, column=self.label, field="template")
            except NonRetryableGenerationError as exc:
                batch.skip(f"the template failed to render: {str(exc)[:200]}")
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                batch.skip(f"the template did not render JSON: {exc.msg}")
                continue
            if not isinstance(record, dict):
                batch.skip("the template rendered JSON that is not an object")
                continue
            records.append(record)
        batch.emit(self.dataset, records)
        return batch.table
