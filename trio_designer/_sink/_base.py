"""What every sink does the same way: lifecycle, checks, and the commit protocol.

The engine finishes row groups out of order and hands each one, as a ``pyarrow.Table``, to a
*sink*. :class:`SinkBase` holds everything the two sinks share (``tests/test_sink.py`` runs
one contract suite over both); a subclass supplies only *storage*: where a table goes
(:class:`~._parquet.ParquetSink`: a parquet file; :class:`~._memory.MemorySink`: a dict) and
where the run record goes.

Mental model: **a row group is written when its entry is in the run record.** A write

1. publishes the table (durable and visible; cancellable until its point of no return);
2. under a ``trio.Lock``, commits the record with the new entry (shielded: past the point of
   no return the commit must happen, or a visible file would be missing from the record).

Hence, for the caller: **returned ⇒ stored and recorded; raised ⇒ nothing stored, nothing
recorded** (the parquet sink's docstring explains the worker thread behind this). One
exception, asked for by the caller: a write with ``commit_later=True`` (the last row group of a
run, whose :meth:`SinkBase.close` follows at once) returns once the table is accepted, and its
entry is committed by the next record write — the final one of ``close`` — which saves a whole
record write at the end of every run. The parquet sink stores such a row group's files *with*
that record write (one worker-thread hop and three rounds of concurrent fsyncs for the data,
the provenance, the final record and the dataset card: ``_atomic.write_atomically_together``).
If the process dies in between, the row group has no entry, as after a crash between steps 1
and 2 (where the next ``open`` deletes the file); either way it is generated again on resume.

Opening can be split the same way (``open(..., background=nursery)``): everything that can
refuse the run is checked before ``open`` returns, and preparing the storage (folders, a
crash's leftovers, the first durable record) runs in the background while the caller starts
its work; writes and ``close`` wait for it. Small runs start their first request without
waiting for the disk (``benches/small_runs.py``).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs
import pyarrow as pa
import trio

from .._exceptions import SinkError
from ._layout import cells_file, row_group_file
from ._metadata import RowGroupEntry, RunMetadata, json_value, utc_now
from ._provenance import CellLog
from ._table import SchemaGuard

__all__ = ["FINAL_STATUSES", "SinkBase", "SinkState", "SinkStatistics"]

FINAL_STATUSES: Final = frozenset(
    {"complete", "interrupted", "early_shutdown", "failed", "budget_exhausted"}
)
"""The statuses :meth:`SinkBase.close` accepts. An open run has status ``"running"``."""

SinkState = Literal["new", "open", "closing", "closed"]


@attrs.frozen(kw_only=True)
class SinkStatistics:
    """A snapshot of a sink, for tests and progress displays.

    Attributes:
      state: ``"new"`` (never opened), ``"open"``, ``"closing"`` (waiting for writes in flight
        before the final record) or ``"closed"``.
      row_groups_written: row groups in the run record (including those of an earlier session
        of the same run, and empty ones).
      rows_written: rows stored over those row groups.
      writes_in_flight: ``write_row_group`` calls that have started and not yet returned.
    """

    state: SinkState
    row_groups_written: int
    rows_written: int
    writes_in_flight: int


class _WritesInFlight:
    """Row groups being written, and a way to wait until there are none."""

    def __init__(self) -> None:
        self.row_groups: set[int] = set()
        self._lot = trio.lowlevel.ParkingLot()

    def add(self, row_group: int) -> None:
        self.row_groups.add(row_group)

    def discard(self, row_group: int) -> None:
        self.row_groups.discard(row_group)
        if not self.row_groups:
            self._lot.unpark_all()

    async def wait_idle(self) -> None:
        while self.row_groups:
            await self._lot.park()


class _Preparation:
    """Whether the storage is ready for writes: set once preparing it succeeded or failed.

    ``go`` says a deferred preparation may start (``open(..., defer_preparation=True)``):
    set by :meth:`SinkBase.start_preparing` and by the first write or ``close`` that waits
    for the preparation — so nothing ever waits for a preparation that was not started.
    """

    def __init__(self) -> None:
        self._done = trio.Event()
        self.go = trio.Event()
        self.error: BaseException | None = None

    def settle(self, error: BaseException | None = None) -> None:
        self.error = error
        self._done.set()

    async def wait(self) -> None:
        """Wait until prepared; raise what preparing raised (a ``SinkError``)."""
        self.go.set()
        await self._done.wait()
        if self.error is not None:
            raise SinkError(str(self.error)) from self.error

    async def wait_settled(self) -> bool:
        """Wait until preparing ended; ``True`` when it succeeded."""
        self.go.set()
        await self._done.wait()
        return self.error is None


class SinkBase(abc.ABC):
    """Lifecycle, validation and the commit protocol shared by both sinks.

    Subclasses supply storage: ``_check_storage`` (read a previous record and decide the
    opened one, refusing what cannot be continued; changes nothing), ``_prepare_storage``
    (prepare storage and store the opened record), ``_publish`` (make a table durable and
    visible; cancellable until its point of no return), ``_unpublish`` (undo a publish whose
    commit failed), ``_persist`` (store a record) and ``_finish`` (clean up after the final
    record); ``_persist_final`` may do the last two at once.

    Invariant: ``_meta`` is what storage holds (before the background preparation of
    ``open(..., background=...)`` has stored it: what it will hold); it is replaced only after
    ``_persist`` succeeded, under ``_lock``, so concurrent commits never lose each other's
    entries (``test_concurrent_writes_are_all_recorded``). Entries of ``commit_later`` writes
    wait in ``_staged`` and enter ``_meta`` with the next commit
    (``test_commit_later_is_recorded_by_close``).
    """

    def __init__(self) -> None:
        self._state: SinkState = "new"
        self._meta: RunMetadata | None = None
        self._lock = trio.Lock()  # serialises record updates: each one sees the previous
        self._in_flight = _WritesInFlight()
        self._guard = SchemaGuard()
        self._ready = _Preparation()
        self._ready.settle()
        # row group -> its entry, stored but not yet in the record (commit_later).
        self._staged: dict[int, RowGroupEntry] = {}

    async def open(
        self,
        *,
        fingerprint: str,
        config: Mapping[str, Any],
        num_records: int,
        row_group_size: int,
        resume: bool = True,
        background: trio.Nursery | None = None,
        fingerprint_basis: Mapping[str, Any] | None = None,
        force_resume: bool = False,
        defer_preparation: bool = False,
    ) -> None:
        """Prepare storage and record the run as ``"running"``.

        * Nothing stored yet (for the parquet sink: a missing or empty directory): a new run.
        * A record of the same run (same fingerprint and row group size; finished or not):
          with ``resume`` (the default) the run continues; without it, a record that has
          written row groups is refused (an empty one is simply reused). A continued run
          keeps its written row groups (:meth:`completed_row_groups`) and ``started_at``;
          ``summary`` is reset, ``num_records`` and ``config`` take the new values. The
          parquet sink also forgets entries whose file is gone and deletes orphan parquet
          files and stale tmp files left by a crash.
        * Anything else is refused.

        Re-opening after :meth:`close` is allowed and behaves the same. A cancelled ``open``
        of the parquet sink may have prepared the directory; opening again is safe.

        Args:
          fingerprint: the config fingerprint (``config_fingerprint(config)``).
          config: the pipeline config as a JSON-compatible dict, stored in the record.
          num_records: rows requested for the whole run.
          row_group_size: rows per row group (the last one may be short).
          resume: whether row groups already written for this run may be kept; pass
            ``False`` for a run that will write every row group (else a second write of a
            row group fails late, with ``ValueError``).
          background: when given, ``open`` returns as soon as the checks passed (every
            ``SinkError`` below that refuses the run is raised before it returns) and the
            storage is prepared by a task of this nursery; writes and ``close`` wait for it.
            If preparing fails, that task raises ``SinkError`` (into the nursery), writes
            raise it too, and ``close`` stores nothing.
          fingerprint_basis: what the fingerprint is the hash of (config, code, files), stored
            so that a refused resume can say what changed.
          force_resume: continue a stored run even though its fingerprint differs (recorded
            in the run record's ``forced_resumes``).
          defer_preparation: with ``background``: the background task waits before it
            prepares, until :meth:`start_preparing` is called or a write or ``close`` needs
            the storage (whichever comes first). The designer starts it once the first wave
            of requests is out: the worker thread's work (folders, the first record's JSON
            and fsyncs) then no longer competes for the GIL with building and sending the
            first requests. If the background task is cancelled while it waits, it still
            prepares (shielded, as an undeferred one would have) before it re-raises.

        Raises:
          SinkError: storage holds a different run (another fingerprint or row group size),
            or written row groups of this run and ``resume`` is false.
            Parquet sink only: the path is a file, the directory is not empty but has no
            ``metadata.json``, its ``metadata.json`` is unreadable, or the disk failed.
          RuntimeError: the sink is already open.
          ValueError: ``num_records < 0`` or ``row_group_size < 1``.
          TypeError: ``config`` holds a value JSON cannot store.
        """
        if self._state in ("open", "closing"):
            raise RuntimeError("the sink is already open; close() it before opening it again.")
        if num_records < 0 or row_group_size <= 0:
            raise ValueError(
                f"num_records must be >= 0 and row_group_size > 0, got {num_records} and "
                f"{row_group_size}."
            )
        config = json_value(config, "config")
        meta = await self._check_storage(
            fingerprint=fingerprint,
            config=config,
            num_records=num_records,
            row_group_size=row_group_size,
            resume=resume,
            fingerprint_basis=fingerprint_basis,
            force_resume=force_resume,
        )
        self._staged = {}
        self._guard = SchemaGuard()
        self._guard.reference = meta.schema
        if background is None:
            self._meta = await self._prepare_storage(meta)
            self._state = "open"
            return
        self._meta, self._state = meta, "open"
        self._ready = _Preparation()
        if not defer_preparation:
            self._ready.go.set()
        background.start_soon(self._prepare_in_background, meta)

    def start_preparing(self) -> None:
        """Let a deferred background preparation start (``open(...,
        defer_preparation=True)``); nothing otherwise."""
        self._ready.go.set()

    async def wait_prepared(self) -> bool:
        """Start a deferred preparation if it has not started, and wait for it to end
        (at once without one); ``True`` when the storage is ready. For files the caller
        writes beside the sink's (the run's trace and failures): the folders exist then."""
        return await self._ready.wait_settled()

    async def _prepare_in_background(self, meta: RunMetadata) -> None:
        cancelled: trio.Cancelled | None = None
        try:
            await self._ready.go.wait()
        except trio.Cancelled as exc:
            # Prepare anyway, as an undeferred preparation would have: a ``close`` that
            # follows waits for it (and would otherwise wait for nothing).
            cancelled = exc
        try:
            with trio.CancelScope(shield=True):  # short, and writes wait for it
                stored = await self._prepare_storage(meta)
        except BaseException as exc:
            self._ready.settle(exc)
            raise
        self._meta = stored
        self._ready.settle()
        if cancelled is not None:
            raise cancelled

    async def write_row_group(
        self,
        row_group: int,
        table: pa.Table,
        *,
        requested_rows: int,
        commit_later: bool = False,
        cells: CellLog | None = None,
        partial: bool = False,
    ) -> str | None:
        """Store one row group durably and add it to the run record.

        Safe to call from many tasks at once; record updates are serialised by a lock. An
        empty table (every row dropped) stores nothing; its entry is recorded with
        ``file: null`` and the call returns ``None``.

        Schema rule: the first non-empty table written (or, when continuing a run, the first
        stored one) fixes the schema. A later table must have the same column names in the
        same order; a column whose type differs is re-typed when it is all null, and refused
        otherwise (nothing is stored).

        Cancellation: returned ⇒ stored and recorded; raised ``Cancelled`` ⇒ nothing stored,
        nothing recorded (see :class:`~._parquet.ParquetSink` for the thread behind this).

        Args:
          row_group: the row group id, ``0 <= row_group < ceil(num_records/row_group_size)``.
          table: the surviving rows (dropped rows already removed), e.g. from
            :func:`build_table`.
          requested_rows: the rows the row group was asked for
            (``table.num_rows <= requested_rows <= row_group_size``).
          commit_later: return once the table is accepted; its entry enters the record with the
            next record write (another row group's, or ``close``'s), and the parquet sink
            stores its files with that write (a disk error then surfaces there). For the last
            row group of a run, whose ``close`` follows at once: one record write fewer.
          cells: the row group's cell log; its provenance table
            (:func:`~._provenance.cells_table`) is stored with the row group — also when every
            row was dropped — and named by the same record entry, so the record never names
            one without the other. Published before the data file and withdrawn if the data
            file is not.
          partial: the row group was cut short by an early shutdown (only its rows complete in
            every column); its entry says so, :meth:`completed_row_groups` leaves it out, and a
            later write of the same row group (a resume that generates it again) replaces it:
            its files are replaced by atomic renames, and a file the new entry no longer names
            is removed once the new record is stored.

        Returns:
          The file's path relative to the output directory
          (``"parquet-files/row-group-00003.parquet"``), or ``None`` for an empty table.

        Raises:
          SinkError: the disk failed, or the schema differs from earlier row groups; nothing
            was stored.
          ValueError: the row group id is out of range or already written (unless its entry
            is partial), or
            ``requested_rows`` is out of range.
          RuntimeError: the sink is not open.
          trio.Cancelled: cancelled before the row group was published; nothing was stored.
        """
        self._check_write(row_group, table, requested_rows)
        await trio.lowlevel.checkpoint_if_cancelled()
        table = self._guard.conform(row_group, table)
        rows = int(table.num_rows)
        file = row_group_file(row_group) if rows else None
        sidecar = None if cells is None else cells_file(row_group)
        entry = RowGroupEntry(
            file=file, rows=rows, requested_rows=requested_rows, cells=sidecar, partial=partial
        )
        self._in_flight.add(row_group)
        try:
            await self._ready.wait()
            if commit_later:
                # Cancelled here: nothing stored. The parquet sink only keeps the table here,
                # and stores it with the record write that commits it.
                await self._publish_later(row_group, entry, table, cells)
                self._staged[row_group] = entry
                self._stored(row_group, table)  # stored now, recorded by the next commit
                return file
            await self._publish_group(row_group, entry, table, cells)  # Cancelled: no effect
            # Past the point of no return: the commit must happen whatever the caller's scope
            # does, or a visible file would be missing from the record. It is short (one small
            # JSON write), and a thread cannot be interrupted anyway, hence no timeout.
            with trio.CancelScope(shield=True):
                await self._commit(row_group, entry, table)
        finally:
            self._in_flight.discard(row_group)
        return file

    async def close(self, *, status: str, summary: Mapping[str, Any]) -> None:
        """Wait for writes in flight, then store the final record (and clean up).

        Like ``trio.abc.AsyncResource.aclose``, a cancelled ``close`` still finishes (it is
        shielded: waiting for in-flight writes and the final write — the record, and for the
        parquet sink the files of a ``commit_later`` row group and the dataset card — are
        short) and then raises ``Cancelled``. Writes started after ``close`` began are
        refused. Returned ⇒ everything it wrote is durable.

        Args:
          status: ``"complete"``, ``"interrupted"``, ``"early_shutdown"``, ``"failed"`` or
            ``"budget_exhausted"``.
          summary: JSON-compatible run summary (counts, per-column stats, usage), stored as
            given except that tuples become lists, datetimes ISO strings and NaN/inf ``null``.

        The final record also commits the entries of ``commit_later`` writes. If preparing
        the storage in the background failed, nothing is stored (that task raised the error).

        Raises:
          SinkError: the disk failed (the sink stays open; ``close`` may be retried).
          ValueError: unknown ``status``.
          TypeError: ``summary`` holds a value JSON cannot store.
          RuntimeError: the sink is not open.
        """
        if self._state != "open":
            raise RuntimeError(f"close() needs an open sink, but the sink is {self._state}.")
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(FINAL_STATUSES)}, got {status!r}.")
        summary = json_value(summary, "summary")
        self._state = "closing"
        try:
            with trio.CancelScope(shield=True):
                await self._in_flight.wait_idle()
                if await self._ready.wait_settled():
                    await self._commit_final(status, summary)
        except BaseException:
            self._state = "open"  # the final record was not stored: close() may be retried
            raise
        self._state = "closed"
        await trio.lowlevel.checkpoint_if_cancelled()

    def completed_row_groups(self) -> dict[int, int]:
        """Row group id → rows stored, for every complete row group in the run record (for
        resume: a partial one, cut short by an early shutdown, is generated again)."""
        meta = self._require_meta("completed_row_groups()")
        return {
            rg: meta.row_groups[rg].rows
            for rg in sorted(meta.row_groups)
            if not meta.row_groups[rg].partial
        }

    def data_files(self) -> tuple[str, ...]:
        """The data files the run record names, in row-group order: the ``file`` of each
        entry of ``metadata()["row_groups"]`` that has one, without building the whole JSON
        document (``create()`` lists them in its result right after ``close``)."""
        meta = self._require_meta("data_files()")
        entries = sorted(meta.row_groups.items())
        return tuple(entry.file for _, entry in entries if entry.file)

    def metadata(self) -> dict[str, Any]:
        """The run record as a JSON-compatible dict (for the parquet sink: ``metadata.json``)."""
        return self._require_meta("metadata()").to_json_dict()

    def statistics(self) -> SinkStatistics:
        """A snapshot of the sink's state and counts."""
        meta = self._meta
        staged = list(self._staged.values())
        return SinkStatistics(
            state=self._state,
            row_groups_written=len(staged) + (0 if meta is None else len(meta.row_groups)),
            rows_written=sum(e.rows for e in staged) + (0 if meta is None else meta.rows_written),
            writes_in_flight=len(self._in_flight.row_groups),
        )

    # -- internals ----------------------------------------------------------------------------

    def _require_meta(self, what: str) -> RunMetadata:
        if self._meta is None:
            raise RuntimeError(f"{what} needs a sink that was opened; call open() first.")
        return self._meta

    def _check_write(self, row_group: int, table: pa.Table, requested_rows: int) -> None:
        if self._state != "open":
            raise RuntimeError(
                f"write_row_group() needs an open sink, but the sink is {self._state}; call "
                f"open() first, and write every row group before close()."
            )
        meta = self._require_meta("write_row_group()")
        if not 0 <= row_group < meta.num_row_groups:
            raise ValueError(
                f"row group {row_group} does not exist: this run has {meta.num_row_groups} row "
                f"groups (ids 0 to {meta.num_row_groups - 1})."
            )
        recorded = meta.row_groups.get(row_group)
        if (
            (recorded is not None and not recorded.partial)
            or row_group in self._staged
            or row_group in self._in_flight.row_groups
        ):
            raise ValueError(f"row group {row_group} was already written; write it only once.")
        if not table.num_rows <= requested_rows <= meta.row_group_size:
            raise ValueError(
                f"row group {row_group}: requested_rows must be between the table's "
                f"{table.num_rows} rows and row_group_size {meta.row_group_size}, got "
                f"{requested_rows}."
            )

    async def _commit(self, row_group: int, entry: RowGroupEntry, table: pa.Table) -> None:
        async with self._lock:
            staged, self._staged = self._staged, {}
            meta = self._with_staged(self._require_meta("write_row_group()"), staged)
            replaced = meta.row_groups.get(row_group)  # a partial entry a resume regenerates
            updated = meta.with_entry(row_group, entry, schema=self._guard.reference, now=utc_now())
            try:
                await self._persist(updated)
            except BaseException:
                for file in entry.files:
                    await self._unpublish(file)
                self._staged.update(staged)  # still stored; the next record write takes them
                raise
            self._meta = updated
            self._stored(row_group, table)
            if replaced is not None:  # the new record no longer names these: remove them
                for file in set(replaced.files) - set(entry.files):
                    await self._unpublish(file)

    async def _commit_final(self, status: str, summary: Mapping[str, Any]) -> None:
        async with self._lock:
            now = utc_now()
            meta = self._with_staged(self._require_meta("close()"), self._staged)
            final_meta = attrs.evolve(
                meta, status=status, summary=summary, updated_at=now, finished_at=now
            )
            await self._persist_final(final_meta)
            self._meta = final_meta
            self._staged = {}

    def _with_staged(self, meta: RunMetadata, staged: Mapping[int, RowGroupEntry]) -> RunMetadata:
        for row_group, entry in sorted(staged.items()):
            meta = meta.with_entry(row_group, entry, schema=self._guard.reference, now=utc_now())
        return meta

    async def _persist_final(self, meta: RunMetadata) -> None:
        """Store the final record and clean up (``_persist`` then ``_finish``; a sink may do
        both in one step)."""
        await self._persist(meta)
        await self._finish()

    async def _publish_group(
        self, row_group: int, entry: RowGroupEntry, table: pa.Table, cells: CellLog | None
    ) -> None:
        """Store a row group's files (its provenance, then its data; either may be missing):
        all or nothing, cancellable until stored. A sink may store both in one step."""
        if entry.cells is not None:
            assert cells is not None
            await self._publish_cells(entry.cells, cells)  # Cancelled here: nothing stored
        if entry.file is not None:
            try:
                await self._publish(entry.file, table)  # Cancelled here: nothing was stored
            except BaseException:
                if entry.cells is not None:
                    with trio.CancelScope(shield=True):
                        await self._unpublish(entry.cells)
                raise

    async def _publish_later(
        self, row_group: int, entry: RowGroupEntry, table: pa.Table, cells: CellLog | None
    ) -> None:
        """Store the files of a ``commit_later`` row group, or keep them to store with the next
        record write (``_persist``/``_persist_final`` must then store them before the record
        that names them). Default: store them now."""
        await self._publish_group(row_group, entry, table, cells)

    @abc.abstractmethod
    def _stored(self, row_group: int, table: pa.Table) -> None:
        """A row group was committed (the memory sink keeps its table)."""

    @abc.abstractmethod
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
        """The record the run opens with (fresh, or continuing a stored run), or ``SinkError``
        for storage that cannot be used. Changes nothing."""

    @abc.abstractmethod
    async def _prepare_storage(self, meta: RunMetadata) -> RunMetadata:
        """Prepare storage for ``meta`` and store it; return what was stored."""

    @abc.abstractmethod
    async def _publish(self, file: str, table: pa.Table) -> None: ...

    @abc.abstractmethod
    async def _publish_cells(self, file: str, cells: CellLog) -> None:
        """Store a row group's provenance (like ``_publish``: cancellable until stored)."""

    @abc.abstractmethod
    async def _unpublish(self, file: str) -> None: ...

    @abc.abstractmethod
    async def _persist(self, meta: RunMetadata) -> None: ...

    @abc.abstractmethod
    async def _finish(self) -> None: ...
