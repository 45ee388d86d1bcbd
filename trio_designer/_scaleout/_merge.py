"""Merging the shards of a run into one output directory (``trio-designer merge``).

:func:`merge` refuses, before touching anything, when a shard is missing, incomplete, of
another split, or of another config (its fingerprint differs: the refusal names the fields
that differ, from the two fingerprint bases). Then it makes ``output_dir`` look exactly like
the output directory of a one-process run:

* ``parquet-files/row-group-<id>.parquet``: each shard's files, hard-linked (copied where the
  file system cannot link): no data is rewritten, and the files are the shards' bytes;
* ``provenance/row-group-<id>.parquet``: each row group's per-cell records, linked the same
  way, so ``inspect --cells`` / ``--row`` and the cost figures read the merged run like a
  one-process run's;
* ``failures.jsonl``: the shards' failure lines, in shard order;
* ``metadata.json``: one run record (``status: complete``, every row group, the summed
  counts and usage; ``summary.shards`` lists the shards), written last, atomically: a reader
  that sees it sees every file it lists;
* with ``compact``: ``compacted/part-<k>.parquet``, the dataset rewritten as files of up to
  ``rows_per_file`` rows (streamed row group by row group: memory stays one row group).

Merging twice gives the same directory; a merge that fails half-way is repeated by running it
again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .._exceptions import SinkError, TrioDesignerError
from .._sink import (
    DATASET_DIR,
    FAILURES_FILE,
    METADATA_FILE,
    PROVENANCE_DIR,
    TMP_DIR,
    RowGroupEntry,
    RunMetadata,
    cells_file,
    row_group_file,
    write_atomically,
)
from .._sink._layout import COMPACT_DIR, SHARDS_DIR, is_row_group_file, shard_dir
from .._sink._metadata import utc_now
from .._sink._resume import describe_changes
from ._shard import ShardManifest, read_manifest

__all__ = ["DEFAULT_ROWS_PER_FILE", "MergeResult", "merge", "shard_states"]

logger = logging.getLogger("trio_designer.scaleout")

DEFAULT_ROWS_PER_FILE = 1_000_000
"""Rows per compacted parquet file (``merge --compact``)."""


@attrs.frozen(kw_only=True)
class MergeResult:
    """What :func:`merge` wrote.

    Attributes:
      output_dir: the merged output directory.
      num_shards: shards merged.
      rows: rows of the merged dataset.
      files: its parquet files (``parquet-files/...``), relative to ``output_dir``.
      compacted: the compacted files (``compacted/...``), empty without ``compact``.
    """

    output_dir: Path
    num_shards: int
    rows: int
    files: tuple[str, ...]
    compacted: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ShardState:
    """One shard as found on disk: its manifest and its run record (``None``: never opened)."""

    manifest: ShardManifest
    meta: RunMetadata | None

    @property
    def written(self) -> frozenset[int]:
        return frozenset(self.meta.row_groups) if self.meta is not None else frozenset()

    @property
    def complete(self) -> bool:
        return (
            self.meta is not None
            and self.meta.status == "complete"
            and set(self.manifest.row_groups) <= self.written
        )


def shard_states(output_dir: Path) -> list[ShardState]:
    """Every shard found under ``output_dir/shards/``, by index.

    Raises:
      SinkError: there is no shard, or the shards disagree on the split.
    """
    root = output_dir / SHARDS_DIR
    found: list[ShardState] = []
    if root.is_dir():
        for entry in sorted(root.iterdir(), key=lambda p: (len(p.name), p.name)):
            if not entry.is_dir():
                continue
            manifest = read_manifest(entry)
            if manifest is None:
                continue
            found.append(ShardState(manifest=manifest, meta=_read_meta(entry)))
    if not found:
        raise SinkError(
            f"'{output_dir}' holds no shards (no {SHARDS_DIR}/<i>/shard.json); run its shards "
            "first (run_shard)."
        )
    return sorted(found, key=lambda s: s.manifest.shard)


def merge(
    output_dir: str | os.PathLike[str],
    *,
    compact: bool = False,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
) -> MergeResult:
    """Check every shard of the run in ``output_dir`` and merge them (module docstring).

    Raises:
      SinkError: a shard is missing or incomplete (the message says which, and how to run
        it), the shards are of different runs (the fields that differ are named) or splits,
        or writing failed.
    """
    root = Path(output_dir)
    states = shard_states(root)
    _check(root, states)
    first = states[0].manifest
    metas = [s.meta for s in states if s.meta is not None]
    schema = next((m.schema for m in metas if m.schema is not None), None)
    entries: dict[int, RowGroupEntry] = {}
    sources: dict[int, Path] = {}
    cells: dict[int, Path] = {}
    for state in states:
        assert state.meta is not None
        for rg in state.manifest.row_groups:
            entry = state.meta.row_groups[rg]
            if entry.file is not None:
                sources[rg] = state.manifest.output_dir / entry.file
            if entry.cells is not None:
                cells[rg] = state.manifest.output_dir / entry.cells
            entries[rg] = attrs.evolve(
                entry,
                file=None if entry.file is None else row_group_file(rg),
                cells=None if entry.cells is None else cells_file(rg),
            )
    try:
        _link_files(root, DATASET_DIR, sources, row_group_file)
        _link_files(root, PROVENANCE_DIR, cells, cells_file)
        _merge_failures(root, [s.manifest.output_dir for s in states])
        compacted = (
            _compact(root, [sources[rg] for rg in sorted(sources)], rows_per_file)
            if compact
            else ()
        )
        meta = _merged_metadata(states, entries, schema, compacted)
        data = json.dumps(meta.to_json_dict(), indent=2, allow_nan=False).encode() + b"\n"
        write_atomically(root / METADATA_FILE, data)
    except OSError as exc:
        raise SinkError(f"merging the shards of '{root}' failed: {exc}") from exc
    write_card(root, meta)
    return MergeResult(
        output_dir=root,
        num_shards=first.num_shards,
        rows=meta.rows_written,
        files=tuple(row_group_file(rg) for rg in sorted(sources)),
        compacted=compacted,
    )


def write_card(output_dir: Path, meta: RunMetadata) -> None:
    """The hook for the dataset card of the merged run: when the package has a card writer
    (``trio_designer._sink._card.write_dataset_card(output_dir)``, built from the merged
    ``metadata.json`` and ``parquet-files/``), it writes the card; otherwise nothing happens.
    A card that cannot be written is logged, not raised: the merged dataset is complete."""
    import importlib

    try:
        card = importlib.import_module("trio_designer._sink._card")
    except ImportError:
        return
    writer = getattr(card, "write_dataset_card", None) or getattr(card, "write_card", None)
    if not callable(writer):
        return
    try:
        writer(output_dir)
    except (OSError, TrioDesignerError) as exc:
        logger.warning("the dataset card of %s was not written: %s", output_dir, exc)


def _check(root: Path, states: Sequence[ShardState]) -> None:
    first = states[0].manifest
    problems: list[str] = []
    by_index = {s.manifest.shard: s for s in states}
    for state in states:
        m = state.manifest
        if (m.num_shards, m.num_records, m.row_group_size) != (
            first.num_shards,
            first.num_records,
            first.row_group_size,
        ):
            problems.append(
                f"shard {m.shard} is of another split ({m.num_shards} shards of "
                f"{m.num_records} records in row groups of {m.row_group_size}; shard "
                f"{first.shard}: {first.num_shards} shards of {first.num_records} records in "
                f"row groups of {first.row_group_size})"
            )
    if problems:
        raise SinkError(_refusal(root, problems))
    recorded = [(s.manifest.shard, s.meta) for s in states if s.meta is not None]
    for shard, meta in recorded[1:]:
        ref_shard, ref = recorded[0]
        if meta.fingerprint != ref.fingerprint:
            changes = describe_changes(ref.fingerprint_basis, meta.fingerprint_basis)
            problems.append(
                f"shard {shard} was made by another config than shard {ref_shard} "
                f"(fingerprint {meta.fingerprint} vs {ref.fingerprint}); what differs: "
                + "; ".join(changes[:10])
            )
    for index in range(first.num_shards):
        if index not in by_index:
            problems.append(
                f"shard {index} of {first.num_shards} has not run (no {shard_dir(index)}/)"
            )
            continue
        state = by_index[index]
        if not state.complete:
            groups = state.manifest.row_groups
            done = len(state.written & frozenset(groups))
            status = state.meta.status if state.meta is not None else "not started"
            problems.append(
                f"shard {index} is not complete: {done} of {len(groups)} row groups written "
                f"(status {status}); run it again, it resumes"
            )
        extra = state.written - frozenset(state.manifest.row_groups)
        if extra:
            problems.append(f"shard {index} holds row groups outside its slice: {sorted(extra)}")
    schemas = {
        str(s.meta.schema): s.manifest.shard
        for s in states
        if s.meta is not None and s.meta.schema is not None
    }
    if len(schemas) > 1:
        problems.append(f"the shards' schemas differ (shards {sorted(schemas.values())})")
    if problems:
        raise SinkError(_refusal(root, problems))


def _refusal(root: Path, problems: Sequence[str]) -> str:
    listed = "\n".join(f"  - {p}" for p in problems)
    return f"cannot merge the shards of '{root}':\n{listed}"


def _read_meta(directory: Path) -> RunMetadata | None:
    path = directory / METADATA_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise SinkError(f"{path} is not valid JSON ({exc})") from exc
    return RunMetadata.from_json_dict(data, where=str(path))


def _link_files(
    root: Path, folder: str, sources: Mapping[int, Path], name_of: Callable[[int], str]
) -> None:
    """Hard-link (else copy) each row group's file into ``root/<folder>`` (``name_of(rg)``: its
    path in the merged run); remove row-group files there that the merged run does not have."""
    dataset = root / folder
    tmp = root / TMP_DIR
    dataset.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(exist_ok=True)
    wanted = {Path(name_of(rg)).name: src for rg, src in sources.items()}
    for name, src in wanted.items():
        target = dataset / name
        if target.exists() and os.path.samefile(target, src):
            continue
        staged = tmp / f"{name}.link"
        staged.unlink(missing_ok=True)
        try:
            os.link(src, staged)
        except OSError:
            shutil.copyfile(src, staged)
        os.replace(staged, target)
    for path in dataset.iterdir():
        if is_row_group_file(path.name) and path.name not in wanted:
            path.unlink()
    shutil.rmtree(tmp, ignore_errors=True)


def _merge_failures(root: Path, shard_dirs: Sequence[Path]) -> None:
    chunks = [(d / FAILURES_FILE).read_bytes() for d in shard_dirs if (d / FAILURES_FILE).is_file()]
    if chunks:
        write_atomically(root / FAILURES_FILE, b"".join(chunks))
    else:
        (root / FAILURES_FILE).unlink(missing_ok=True)


def _compact(root: Path, files: Sequence[Path], rows_per_file: int) -> tuple[str, ...]:
    import pyarrow.parquet as pq

    folder = root / COMPACT_DIR
    staging = root / f"{COMPACT_DIR}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    names: list[str] = []
    writer: Any = None
    rows_in_file = 0
    try:
        for file in files:
            table = pq.read_table(file)
            if writer is not None and rows_in_file + table.num_rows > rows_per_file:
                writer.close()
                writer = None
            if writer is None:
                names.append(f"part-{len(names):05d}.parquet")
                writer = pq.ParquetWriter(staging / names[-1], table.schema)
                rows_in_file = 0
            writer.write_table(table)
            rows_in_file += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return tuple(f"{COMPACT_DIR}/{name}" for name in names)


def _merged_metadata(
    states: Sequence[ShardState],
    entries: Mapping[int, RowGroupEntry],
    schema: Any,
    compacted: Sequence[str],
) -> RunMetadata:
    metas = [s.meta for s in states if s.meta is not None]
    first = metas[0]
    now = utc_now()
    columns: dict[str, dict[str, int]] = {}
    usage: dict[str, dict[str, Any]] = {}
    failures: list[Any] = []
    for meta in metas:
        summary = meta.summary
        for column, counts in (summary.get("columns") or {}).items():
            into = columns.setdefault(column, {})
            for key, value in counts.items():
                if isinstance(value, int):
                    into[key] = into.get(key, 0) + value
        for alias, used in (summary.get("usage") or {}).items():
            into_usage = usage.setdefault(alias, {})
            for key, value in used.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    into_usage[key] = into_usage.get(key, 0) + value
        failures.extend(summary.get("failures") or [])
    rows = sum(e.rows for e in entries.values())
    dropped = sum(e.requested_rows - e.rows for e in entries.values())
    summary = {
        "status": "complete",
        "stopped": None,
        "rows_written": rows,
        "rows_dropped": dropped,
        "columns": columns,
        "failures": failures[:1000],
        "early_shutdown": False,
        "usage": usage,
        "merged_at": now,
        "shards": [
            {
                "shard": s.manifest.shard,
                "row_groups": [s.manifest.row_group_start, s.manifest.row_group_stop],
                "rows": s.meta.rows_written if s.meta is not None else 0,
                "directory": shard_dir(s.manifest.shard),
            }
            for s in states
        ],
    }
    if compacted:
        summary["compacted"] = list(compacted)
    return RunMetadata(
        fingerprint=first.fingerprint,
        config=first.config,
        num_records=first.num_records,
        row_group_size=first.row_group_size,
        status="complete",
        started_at=min(m.started_at for m in metas),
        updated_at=now,
        finished_at=now,
        schema=schema,
        row_groups=dict(sorted(entries.items())),
        summary=summary,
        fingerprint_basis=first.fingerprint_basis,
    )
