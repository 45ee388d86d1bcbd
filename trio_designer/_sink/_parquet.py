"""The parquet sink: one parquet file per row group, and ``metadata.json`` as the run record.

A write goes (every step in a worker thread, so the event loop never waits on the disk):

1. serialise the table into ``<out>/.tmp/``, ``flush`` + ``os.fsync``;
2. last look at cancellation (``trio.from_thread.check_cancelled``), then ``os.replace`` into
   ``<out>/parquet-files/`` and ``fsync`` that directory — the point of no return;
3. under the sink's lock, rewrite ``metadata.json`` the same way with the new entry.

Steps 1-2 and 3 are each one :func:`~._atomic.write_atomically`; a row group's provenance
sidecar and its data file go through steps 1-2 together (one worker-thread hop, their fsyncs
at once: :func:`~._atomic.write_atomically_together`). The run's last row group
(``commit_later``) is kept in memory and stored by ``close`` in one hop with the final record
and the dataset card (``card=True``): its files are durable before the record that names them
is renamed into place, and everything is durable when ``close`` returns.

A reader only ever sees whole files, and ``metadata.json`` is always a complete JSON
document that lists only files that exist. Only a crash between steps 2 and 3 leaves a file
without an entry; the next ``open`` deletes it. Prior art: NeMo Data Designer's artifact
storage (tmp + fsync + ``os.replace`` for its metadata, one ``batch_*.parquet`` per row
group); we add the directory fsyncs and make the metadata the commit record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Final, TypeVar, TypeVarTuple, Unpack, final

import attrs
import pyarrow as pa
import pyarrow.parquet as pq
import trio
import yaml

from .._exceptions import OUTPUT_DIR_ARGUMENT, SinkError, TrioDesignerError
from ._atomic import (
    Background,
    Content,
    Stage,
    fsync_directory,
    write_atomically,
    write_atomically_together,
)
from ._base import SinkBase
from ._card import CardDraft, write_dataset_card
from ._layout import (
    CARD_FILE,
    DATASET_DIR,
    METADATA_FILE,
    PROVENANCE_DIR,
    SHARD_FILE,
    TMP_DIR,
    is_row_group_file,
)
from ._metadata import RecordEncoder, RowGroupEntry, RunMetadata
from ._provenance import CellLog, cells_table
from ._resume import opened_metadata

__all__ = ["ParquetSink", "ParquetWriter"]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

ParquetWriter = Callable[["pa.Table", BinaryIO], None]
"""Serialises a table into an open binary file (default: ``pq.write_table(table, file)``)."""

CARD_STATUSES: Final = frozenset({"complete", "early_shutdown", "budget_exhausted"})
"""The final statuses whose record comes with the dataset card (``ParquetSink(card=True)``):
those of a run that ended without an error (``create()`` returns)."""

_logger = logging.getLogger("trio_designer")


_IN_MEMORY_BYTES: Final = 8 << 20
"""Tables up to this size (``Table.nbytes``) are serialised into memory, then written to the
file in one call; larger ones are streamed into the file."""


def _default_parquet_writer(table: pa.Table, file: BinaryIO) -> None:
    """``pq.write_table(table, file)``. A small table is serialised into an Arrow buffer
    first (the same bytes): pyarrow then writes without taking the GIL for each of its writes
    into a Python file, so the end of a run's two parquet files are made in the fsync threads
    while the worker thread builds the record and the card (``_atomic.write_atomically_
    together``) instead of queueing for the GIL it holds."""
    if table.nbytes > _IN_MEMORY_BYTES:
        pq.write_table(table, file)
        return
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    file.write(memoryview(buffer.getvalue()))


@final
class ParquetSink(SinkBase):
    """Writes each row group to its own parquet file, with a ``metadata.json`` run record.

    Layout (details and reading recipes in ``docs/output-layout.md``)::

        <output_dir>/
          metadata.json                         # the run record, replaced atomically
          parquet-files/row-group-00000.parquet # one file per non-empty row group
          .tmp/                                 # files being written; removed by close()

    ``pyarrow.dataset.dataset(output_dir / "parquet-files")`` reads the run as one dataset.

    Usage::

        sink = ParquetSink("out")
        await sink.open(fingerprint=fp, config=config.to_dict(), num_records=n,
                        row_group_size=size)
        for rg in sink.completed_row_groups(): ...   # skip these when resuming
        path = await sink.write_row_group(rg, build_table(values, types), requested_rows=k)
        await sink.close(status="complete", summary={...})

    Invariants:

    * Every file in ``parquet-files/`` is complete: bytes are written to ``.tmp/`` and fsynced
      before ``os.replace`` moves them into place.
    * ``metadata.json`` is always one complete JSON document, and every file its
      ``row_groups`` name exists with the rows it says. (A file is renamed into place before
      its entry is committed, so a *crash* between the two leaves a file without an entry;
      the next :meth:`open` deletes such orphans and stale tmp files.)
    * Every file has the same schema (the first non-empty table's; see
      :meth:`write_row_group`).
    * After :meth:`close`, ``.tmp/`` is gone.

    Cancellation: ``trio.to_thread.run_sync`` does not abandon its thread when the calling
    task is cancelled — it waits for the thread to finish, and then *returns normally*;
    ``Cancelled`` arrives at the caller's next checkpoint. So a write, once its thread has
    started, would always complete and be committed. We keep trio's rule "if it raised
    ``Cancelled``, it had no effect" instead: the thread asks
    ``trio.from_thread.check_cancelled()`` right before ``os.replace``; when cancellation was
    requested it deletes its tmp file and raises ``Cancelled`` (nothing visible, nothing
    recorded). After the rename the write is past its point of no return: the metadata
    commit runs shielded, :meth:`write_row_group` returns the path, and the caller sees
    ``Cancelled`` at its next checkpoint. Hence: **returned ⇒ durable and recorded; raised ⇒
    no file, no entry, no tmp file.** A cancelled caller still waits for the serialisation to
    finish (a thread cannot be stopped); the engine should shield the checkpoint of a finished
    row group it wants to keep when the run is cancelled.

    Not for several processes writing one directory at once (there is no file lock).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        *,
        parquet_writer: ParquetWriter | None = None,
        card: bool = False,
    ) -> None:
        """Create a sink for ``output_dir`` (nothing touches the disk before :meth:`open`).

        Args:
          output_dir: the run's output directory; created by :meth:`open` if missing.
          parquet_writer: how a table is serialised into the open tmp file, for example
            ``lambda t, f: pq.write_table(t, f, compression="zstd")``; the default is
            ``pq.write_table(table, file)``. It runs in a worker thread.
          card: write the dataset card (``README.md``, :mod:`._card`) with the final record of
            a run that ended without an error (status in :data:`CARD_STATUSES`): durable
            when :meth:`close` returns, like the record. It is built while the row groups are
            written (:class:`~._card.CardDraft`). A card that cannot be built or written is
            logged, never raised: the dataset itself is complete.
        """
        super().__init__()
        self._root = Path(output_dir)
        self._write_parquet = parquet_writer or _default_parquet_writer
        self._card = CardDraft(self._root) if card else None
        # metadata.json's bytes; the config and fingerprint basis encoded once (one write at
        # a time: record writes are serialised by the base class's lock, or are open's).
        self._record = RecordEncoder()
        # row group -> (entry, table, cells) of commit_later writes, stored by the next record
        # write (before the record names them; ``_persist`` / ``_persist_final``).
        self._deferred: dict[int, tuple[RowGroupEntry, pa.Table, CellLog | None]] = {}

    @property
    def output_dir(self) -> Path:
        """The output directory."""
        return self._root

    @property
    def dataset_dir(self) -> Path:
        """The folder to hand to ``pyarrow.dataset.dataset`` (``<output_dir>/parquet-files``)."""
        return self._root / DATASET_DIR

    # -- storage --------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"output directory '{self._root}'"

    async def _check_storage(
        self,
        *,
        fingerprint: str,
        config: Mapping[str, Any],
        num_records: int,
        row_group_size: int,
        resume: bool,
        fingerprint_basis: Mapping[str, Any] | None = None,
        force_resume: bool = False,
    ) -> RunMetadata:
        def check_sync() -> RunMetadata:
            previous = self._read_previous()
            meta = opened_metadata(
                previous,
                fingerprint=fingerprint,
                config=config,
                num_records=num_records,
                row_group_size=row_group_size,
                resume=resume,
                fingerprint_basis=fingerprint_basis,
                force_resume=force_resume,
                where=self._where(),
                remedy=f"pass another {OUTPUT_DIR_ARGUMENT} or remove the directory",
            )
            return self._forget_missing_files(meta)

        return await self._run_sync(check_sync)

    async def _prepare_storage(self, meta: RunMetadata) -> RunMetadata:
        def prepare_sync() -> RunMetadata:
            self._prepare_directories(meta)
            self._persist_sync(meta)
            self._prepare_card(meta)
            return meta

        self._deferred = {}
        return await self._run_sync(prepare_sync)

    def _read_previous(self) -> RunMetadata | None:
        root = self._root
        if root.exists() and not root.is_dir():
            raise SinkError(f"{self._where()} is a file; pass another {OUTPUT_DIR_ARGUMENT}.")
        blocking = _file_in_the_way(root)
        if blocking is not None:
            raise SinkError(
                f"{self._where()} cannot be created: '{blocking}' is a file, not a directory; "
                f"pass another {OUTPUT_DIR_ARGUMENT}."
            )
        meta_path = root / METADATA_FILE
        if not meta_path.exists():
            if root.exists() and not _is_scaffolding_only(root):
                raise SinkError(
                    f"{self._where()} is not empty and has no {METADATA_FILE}, so it holds no "
                    f"trio_designer run; pass another {OUTPUT_DIR_ARGUMENT} or empty the "
                    "directory."
                )
            return None
        try:
            data = json.loads(meta_path.read_bytes())
        except ValueError as exc:
            raise SinkError(
                f"{meta_path} is not valid JSON ({exc}); pass another {OUTPUT_DIR_ARGUMENT} "
                f"or remove the directory."
            ) from exc
        return RunMetadata.from_json_dict(data, where=str(meta_path))

    def _forget_missing_files(self, meta: RunMetadata) -> RunMetadata:
        """The record without entries whose file (data or provenance) is gone (their row
        groups run again)."""
        kept = {
            rg: entry
            for rg, entry in meta.row_groups.items()
            if all((self._root / file).is_file() for file in entry.files)
        }
        return attrs.evolve(meta, row_groups=kept)

    def _prepare_directories(self, meta: RunMetadata) -> None:
        """Create the folders, clear stale tmp files and orphans (files without an entry)."""
        root = self._root
        (root / DATASET_DIR).mkdir(parents=True, exist_ok=True)
        (root / PROVENANCE_DIR).mkdir(exist_ok=True)
        shutil.rmtree(root / TMP_DIR, ignore_errors=True)  # stale tmp files of a crash
        (root / TMP_DIR).mkdir(exist_ok=True)
        recorded = {file for entry in meta.row_groups.values() for file in entry.files}
        for folder in (DATASET_DIR, PROVENANCE_DIR):
            for path in (root / folder).iterdir():
                relative = f"{folder}/{path.name}"
                if is_row_group_file(path.name) and relative not in recorded:
                    path.unlink()  # an orphan: renamed into place, but never committed
            fsync_directory(root / folder)

    async def _publish_group(
        self, row_group: int, entry: RowGroupEntry, table: pa.Table, cells: CellLog | None
    ) -> None:
        # The provenance and the data in one worker-thread hop, their fsyncs at once.
        await self._run_sync(self._publish_group_sync, row_group, entry, table, cells)

    def _publish_group_sync(
        self, row_group: int, entry: RowGroupEntry, table: pa.Table, cells: CellLog | None
    ) -> None:
        cells_stored = None if cells is None else cells_table(cells)
        files = self._group_files(entry, table, cells_stored)
        try:
            write_atomically_together(
                [files],
                tmp_dir=self._root / TMP_DIR,
                before_replace=trio.from_thread.check_cancelled,  # last chance: no effect
            )
        except BaseException:
            # Nothing visible: before the renames the files were never there; after them (a
            # directory fsync failed) they are withdrawn again.
            for path, _ in files:
                path.unlink(missing_ok=True)
            raise
        if self._card is not None:
            self._card.observe(row_group, table if entry.file else None, cells_stored)

    def _group_files(
        self, entry: RowGroupEntry, table: pa.Table, cells: pa.Table | None
    ) -> list[tuple[Path, Content]]:
        # The default serialisation runs in an fsync thread, beside the next work of this
        # one (the end of a run: the record and the card); a caller's writer runs here.
        files: list[tuple[Path, Content]] = []
        if entry.cells is not None and cells is not None:
            files.append(
                (self._root / entry.cells, Background(partial(_default_parquet_writer, cells)))
            )
        if entry.file is not None:
            write = partial(self._write_parquet, table)
            data = Background(write) if self._write_parquet is _default_parquet_writer else write
            files.append((self._root / entry.file, data))
        return files

    async def _publish_later(
        self, row_group: int, entry: RowGroupEntry, table: pa.Table, cells: CellLog | None
    ) -> None:
        self._deferred[row_group] = (entry, table, cells)  # stored by the next record write

    def _store_sync(
        self,
        meta: RunMetadata,
        deferred: dict[int, tuple[RowGroupEntry, pa.Table, CellLog | None]],
        *,
        card: bool = False,
    ) -> None:
        """The files of ``deferred`` row groups, then ``meta`` (which names them) and, with
        ``card``, the dataset card beside it: one worker-thread hop, three rounds of fsyncs.

        The record and the card are made (the card's profile of these row groups, its text,
        the record's JSON) while the row groups' files are serialised (``Background``),
        fsynced, renamed and their folders fsynced (``commit_early``): they form the second
        stage, a function stage of ``write_atomically_together``, whose own round is the only
        one left after them."""
        stored: list[tuple[Path, Content]] = []
        observed: list[tuple[int, pa.Table | None, pa.Table | None]] = []
        for row_group, (entry, table, cells) in sorted(deferred.items()):
            cells_stored = None if cells is None else cells_table(cells)
            stored += self._group_files(entry, table, cells_stored)
            observed.append((row_group, table if entry.file else None, cells_stored))
        text: list[str | None] = [None]

        def record_and_card() -> list[tuple[Path, Content]]:
            if self._card is not None:  # before the card's text: it goes with this write
                for row_group, table, cells_stored in observed:
                    self._card.observe(row_group, table, cells_stored)
            files: list[tuple[Path, Content]] = [
                (self._root / METADATA_FILE, self._record.encode(meta))
            ]
            text[0] = self._card_text(meta) if card else None
            if text[0] is not None:
                files.append((self._root / CARD_FILE, text[0].encode("utf-8")))
            return files

        stages: list[Stage] = [stored] if stored else []
        try:
            write_atomically_together(
                [*stages, record_and_card], tmp_dir=self._root / TMP_DIR, commit_early=True
            )
        except OSError as exc:
            if text[0] is None:
                raise
            # Whatever failed, store the dataset and its record without the card.
            record = [(self._root / METADATA_FILE, self._record.encode(meta))]
            write_atomically_together([*stages, record], tmp_dir=self._root / TMP_DIR)
            _logger.warning("the dataset card of %s was not written: %s", self._root, exc)
            return
        if card and text[0] is None:
            self._card_from_disk()

    def _prepare_card(self, meta: RunMetadata) -> None:
        """The card's config-only parts, made now (``CardDraft.prepare``); never fails."""
        if self._card is None:
            return
        try:
            self._card.prepare(meta)
        except (ValueError, TypeError, yaml.YAMLError) as exc:  # render makes them again
            _logger.warning("the dataset card of %s was not prepared: %s", self._root, exc)

    def _card_text(self, meta: RunMetadata) -> str | None:
        """The card from the draft (``None``: build it from the directory afterwards)."""
        if self._card is None:
            return None
        try:
            return self._card.render(meta)
        except (ValueError, TypeError, pa.ArrowException) as exc:  # never fail the run for it
            _logger.warning("the dataset card of %s was not built: %s", self._root, exc)
            return None

    def _card_from_disk(self) -> None:
        try:
            write_dataset_card(self._root)
        except (OSError, TrioDesignerError) as exc:
            _logger.warning("the dataset card of %s was not written: %s", self._root, exc)

    async def _publish(self, file: str, table: pa.Table) -> None:
        await self._run_sync(self._publish_sync, file, table)

    def _publish_sync(self, file: str, table: pa.Table) -> None:
        final_path = self._root / file
        try:
            write_atomically(
                final_path,
                lambda stream: self._write_parquet(table, stream),
                tmp_dir=self._root / TMP_DIR,
                before_replace=trio.from_thread.check_cancelled,  # last chance: no effect
            )
        except BaseException:
            # A publish that raises leaves nothing visible: before the rename the file was
            # never there; after it (the directory fsync failed) it is withdrawn again.
            final_path.unlink(missing_ok=True)
            raise

    async def _publish_cells(self, file: str, cells: CellLog) -> None:
        # The table is built in the worker thread too: the event loop never pays for it.
        await self._run_sync(lambda: self._publish_sync(file, cells_table(cells)))

    async def _unpublish(self, file: str) -> None:
        def unpublish_sync() -> None:
            path = self._root / file
            path.unlink(missing_ok=True)
            fsync_directory(path.parent)

        with contextlib.suppress(SinkError):  # best effort: the next open() deletes the orphan
            await self._run_sync(unpublish_sync)

    async def _persist(self, meta: RunMetadata) -> None:
        deferred = dict(self._deferred)
        await self._run_sync(self._store_sync, meta, deferred)
        for row_group in deferred:
            del self._deferred[row_group]

    def _persist_sync(self, meta: RunMetadata) -> None:
        data = self._record.encode(meta)
        write_atomically(self._root / METADATA_FILE, data, tmp_dir=self._root / TMP_DIR)

    async def _finish(self) -> None:
        await self._run_sync(_remove_tmp_dir, self._root / TMP_DIR)

    async def _persist_final(self, meta: RunMetadata) -> None:
        deferred = dict(self._deferred)
        card = self._card is not None and meta.status in CARD_STATUSES

        def final_sync() -> None:  # one thread hop for everything at the end of every run
            self._store_sync(meta, deferred, card=card)
            _remove_tmp_dir(self._root / TMP_DIR)

        await self._run_sync(final_sync)
        for row_group in deferred:
            del self._deferred[row_group]

    def _stored(self, row_group: int, table: pa.Table) -> None:
        pass  # the file is the storage

    async def _run_sync(self, fn: Callable[[Unpack[_Ts]], _T], *args: *_Ts) -> _T:
        """Run ``fn`` in a worker thread; map ``OSError``/Arrow errors to ``SinkError``."""
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except SinkError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise SinkError(f"writing to {self._where()} failed: {exc}; {_remedy(exc)}") from exc


def _remove_tmp_dir(path: Path) -> None:
    """Remove ``.tmp/``: one ``rmdir`` when it is empty (every write removes its tmp files),
    else the whole tree; a missing folder is fine."""
    try:
        path.rmdir()
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _file_in_the_way(root: Path) -> Path | None:
    """The nearest existing ancestor of ``root`` if it is not a directory (so ``root`` cannot
    be created), else ``None``."""
    for parent in root.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


#: What to do about a failed write, by ``errno``: the disk, the permissions, or the path.
_REMEDIES = {
    errno.ENOSPC: "free some disk space and run again",
    errno.EDQUOT: "free some disk space (you are over quota) and run again",
    errno.EACCES: f"check the permissions of the directory, or pass another {OUTPUT_DIR_ARGUMENT}",
    errno.EPERM: f"check the permissions of the directory, or pass another {OUTPUT_DIR_ARGUMENT}",
    errno.EROFS: f"the file system is read-only; pass another {OUTPUT_DIR_ARGUMENT}",
    errno.ENOTDIR: f"a part of the path is not a directory; pass another {OUTPUT_DIR_ARGUMENT}",
    errno.ENAMETOOLONG: f"the path is too long; pass another {OUTPUT_DIR_ARGUMENT}",
}


def _remedy(exc: BaseException) -> str:
    """The end of a failed write's message: what the user can do about ``exc``."""
    code = exc.errno if isinstance(exc, OSError) else None
    known = _REMEDIES.get(code) if code is not None else None
    return f"{known}." if known else "check the disk (space, permissions) and run again."


def _is_scaffolding_only(root: Path) -> bool:
    """True if ``root`` holds nothing but our own empty ``.tmp``/``parquet-files`` folders
    (and, in a shard's directory, the shard's ``shard.json``, written before its sink opens)."""
    for entry in root.iterdir():
        if entry.name == SHARD_FILE and entry.is_file():
            continue
        if entry.name not in (TMP_DIR, DATASET_DIR, PROVENANCE_DIR) or not entry.is_dir():
            return False
        if any(entry.iterdir()):
            return False
    return True
