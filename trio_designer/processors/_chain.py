"""The chain of a pipeline's processors: checked at validate time, run in two stages.

* **Per row group** (:meth:`ProcessorChain.process_row_group`): the processors before the first
  one that needs the whole dataset, applied to each finished row group's table in a worker
  thread right before its checkpoint. What they write (removed rows, extra datasets) is on
  disk before the row group is recorded; a row group that is generated again after a crash
  overwrites it, so nothing is applied twice to a checkpointed group.
* **After the run** (:func:`finish_dataset`): the first whole-dataset processor and every one
  after it, over the written row groups in order, one at a time (memory: one row group plus
  the dedup index), into ``processed/parquet-files/``. ``parquet-files/`` is never modified:
  the stage reads it and writes ``processed/`` from scratch, and writes
  ``processed/_SUCCESS.json`` (its inputs and reports) last. A run that finds that marker with
  the same inputs does nothing; without it (a crash in between) it runs the stage again, which
  gives the same result.

A ``custom`` processor with ``whole_dataset: true`` gets every row of the dataset in one table
(it is not streamed), and the processed dataset is then one file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.parquet as pq

from .._exceptions import ConfigError, ProcessorError
from .._sink._atomic import write_atomically
from .._sink._layout import DATASET_DIR, PROCESSED_DIR, PROCESSED_MARKER, row_group_file
from ..config._code import CodeSearch
from ..config._processors import (
    CustomProcessor,
    ProcessorBase,
    SchemaTransform,
    ToChat,
    processor_label,
)
from ._base import Batch, ColumnSet, Processor, ProcessorReport
from ._outputs import combine_jsonl, write_extra_records, write_filtered, write_table
from ._registry import build_processor

__all__ = ["ProcessorChain", "finish_dataset", "processed_files"]

ROW_GROUP_STAGE = "row_group"
AFTER_RUN_STAGE = "after_run"


@attrs.frozen
class _Step:
    config: ProcessorBase
    label: str
    processor: Processor
    keep_filtered: bool


class ProcessorChain:
    """A pipeline's processors, built and checked.

    Args:
      configs: the pipeline's ``processors``.
      columns: the columns of the table the first processor sees (the written columns).
      search: where a custom processor's function may be imported from.

    Raises:
      ConfigError: listing every problem of every processor (unknown columns, templates,
        functions), each prefixed with ``processors[i]``.
    """

    def __init__(
        self, configs: Sequence[ProcessorBase], *, columns: ColumnSet, search: CodeSearch
    ) -> None:
        self.configs = tuple(configs)
        self.search = search
        self.columns = columns
        split = next(
            (i for i, c in enumerate(self.configs) if c.needs_whole_dataset()), len(self.configs)
        )
        self.split = split
        self.row_group_steps, self.after_columns = self._build(0, split, columns)
        self.reports: dict[str, ProcessorReport] = {
            step.label: ProcessorReport(step.label, step.config.kind, ROW_GROUP_STAGE)
            for step in self.row_group_steps
        }
        # Built once now only to check them; finish_dataset builds fresh ones.
        self._build(split, len(self.configs), self.after_columns)
        self.extra_datasets = tuple(
            c.name for c in self.configs if isinstance(c, ToChat | SchemaTransform) and c.name
        )

    @property
    def has_after_run_stage(self) -> bool:
        return self.split < len(self.configs)

    def __bool__(self) -> bool:
        return bool(self.configs)

    def _build(self, start: int, stop: int, columns: ColumnSet) -> tuple[list[_Step], ColumnSet]:
        steps: list[_Step] = []
        problems: list[str] = []
        for index in range(start, stop):
            config = self.configs[index]
            label = processor_label(config, index)
            try:
                processor = build_processor(config, label, self.search)
                columns = processor.check(columns)
            except ConfigError as exc:
                problems.extend(f"processors[{index}]: {p}" for p in exc.problems)
                continue
            keep = bool(getattr(config, "keep_filtered", False))
            steps.append(_Step(config, label, processor, keep))
        if problems:
            raise ConfigError(problems)
        return steps, columns

    def process_row_group(
        self, row_group: int, table: pa.Table, output_dir: Path | None
    ) -> pa.Table:
        """Apply the per-row-group stage to one row group's table (sync: a worker thread).

        Raises:
          ProcessorError: a processor raised; the message names it.
        """
        return _apply(self.row_group_steps, self.reports, row_group, table, output_dir)

    def report(self) -> dict[str, Any]:
        """Each processor's report of the per-row-group stage, by label."""
        return {label: report.to_dict() for label, report in self.reports.items()}

    def merge_earlier(self, earlier: Mapping[str, Any]) -> None:
        """Add an earlier run's per-row-group counts (a resumed run's ``metadata.json``)."""
        for label, report in self.reports.items():
            previous = earlier.get(label)
            if isinstance(previous, Mapping) and previous.get("stage") == ROW_GROUP_STAGE:
                report.merge(previous)


def _apply(
    steps: Sequence[_Step],
    reports: Mapping[str, ProcessorReport],
    row_group: int,
    table: pa.Table,
    output_dir: Path | None,
) -> pa.Table:
    for step in steps:
        batch = Batch(row_group, table)
        rows_in = table.num_rows
        try:
            table = step.processor.process(batch)
        except ProcessorError:
            raise
        except Exception as exc:
            raise ProcessorError(
                f"processor {step.label!r} failed on row group {row_group}: "
                f"{type(exc).__name__}: {str(exc)[:300]}"
            ) from exc
        reports[step.label].add(rows_in, table.num_rows, batch)
        if output_dir is not None:
            if step.keep_filtered:
                write_filtered(output_dir, step.label, row_group, batch.removed)
            for dataset, records in batch.records.items():
                write_extra_records(output_dir, dataset, row_group, records)
            for dataset in _quiet_datasets(step):
                if dataset not in batch.records:
                    write_extra_records(output_dir, dataset, row_group, [])
    return table


def _quiet_datasets(step: _Step) -> tuple[str, ...]:
    config = step.config
    if isinstance(config, ToChat | SchemaTransform) and config.name:
        return (config.name,)
    return ()


def _marker(output_dir: Path) -> Path:
    return output_dir / PROCESSED_DIR / PROCESSED_MARKER


def processed_files(output_dir: Path) -> tuple[str, ...] | None:
    """The files of ``processed/`` (relative to ``output_dir``) when its marker is written."""
    marker = _marker(output_dir)
    if not marker.is_file():
        return None
    data = json.loads(marker.read_text(encoding="utf-8"))
    return tuple(data.get("files", ()))


def finish_dataset(chain: ProcessorChain, output_dir: Path, files: Sequence[str]) -> dict[str, Any]:
    """The after-run stage over the dataset's ``files`` (relative paths, row-group order), and
    each extra dataset's ``data.jsonl``; sync (a worker thread).

    Returns:
      The after-run stage's reports, by label (empty without such a stage).

    Raises:
      ProcessorError: a processor raised.
    """
    reports: dict[str, Any] = {}
    groups = [_row_group_of(f) for f in files]
    if chain.has_after_run_stage:
        reports = _after_run(chain, output_dir, list(files), groups)
    for dataset in chain.extra_datasets:
        combine_jsonl(output_dir, dataset, groups)
    return reports


def _row_group_of(file: str) -> int:
    return int(Path(file).stem.rsplit("-", 1)[-1])


def _after_run(
    chain: ProcessorChain, output_dir: Path, files: list[str], groups: list[int]
) -> dict[str, Any]:
    marker = _marker(output_dir)
    if marker.is_file():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("inputs") == files:
            return dict(done.get("reports") or {})
    folder = output_dir / PROCESSED_DIR
    if folder.exists():
        shutil.rmtree(folder)
    (folder / DATASET_DIR).mkdir(parents=True)
    steps, _ = chain._build(chain.split, len(chain.configs), chain.after_columns)
    reports = {
        step.label: ProcessorReport(step.label, step.config.kind, AFTER_RUN_STAGE) for step in steps
    }
    written: list[str] = []
    whole = any(isinstance(s.config, CustomProcessor) and s.config.whole_dataset for s in steps)
    if whole:
        tables = [pq.read_table(output_dir / f) for f in files]
        batches = [(groups[0] if groups else 0, pa.concat_tables(tables) if tables else None)]
    else:
        batches = [(g, None) for g in groups]
    for (row_group, table), file in zip(batches, files, strict=False):
        if table is None:
            table = pq.read_table(output_dir / file)
        table = _apply(steps, reports, row_group, table, output_dir)
        if table.num_rows:
            name = f"{PROCESSED_DIR}/{row_group_file(row_group)}"
            write_table(output_dir / name, table)
            written.append(name)
    record = {
        "inputs": files,
        "files": written,
        "reports": {label: r.to_dict() for label, r in reports.items()},
    }
    write_atomically(marker, json.dumps(record, indent=2).encode("utf-8"))
    return {label: r.to_dict() for label, r in reports.items()}


def preview_after_run(chain: ProcessorChain, table: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
    """The after-run stage over a preview's in-memory table (nothing is written)."""
    steps, _ = chain._build(chain.split, len(chain.configs), chain.after_columns)
    reports = {
        step.label: ProcessorReport(step.label, step.config.kind, AFTER_RUN_STAGE) for step in steps
    }
    table = _apply(steps, reports, 0, table, None)
    return table, {label: report.to_dict() for label, report in reports.items()}
