"""The store: one SQLite file (WAL mode) that many runs and processes share.

Synchronous and trio-free: the engine calls it from a worker thread, in batches
(``models/_cached.py``), never on the path of a request.

Safety:

* **Atomic batches.** :meth:`CacheStore.put_many` writes a batch in one transaction
  (``BEGIN IMMEDIATE`` ... ``COMMIT``); a process killed in the middle leaves the store as it
  was before the batch (SQLite's journal rolls the torn transaction back at the next open).
* **Checksummed values.** Each row keeps ``blake2b(key + value)``; a row whose checksum does
  not match (a disk that lied, a hand-edited file) is never served: it is a miss, and
  :meth:`CacheStore.load_rows` counts it in ``corrupt``. Torn writes do not need it (the
  transaction, and the WAL's own frame checksums, see to them), but SQLite does not checksum
  the pages of the database file itself, and the key (a SHA-256 of the request) says nothing
  about the value stored under it: the checksum is what catches a damaged value, and every
  release verifies it (so it stays ``blake2b(key + value)``, 16 bytes).
* **Several processes.** WAL lets readers go on while one process writes; writers wait for
  each other up to :data:`BUSY_TIMEOUT_MS`. ``INSERT OR IGNORE``: two processes that paid for
  the same key keep the first answer (for one key, every answer is equally valid).
* **Durability: ``synchronous = NORMAL``.** In WAL mode a commit appends to the log without
  ``fsync``; the log is synced when it is copied into the database (a checkpoint). A power
  loss can therefore drop the last batches committed since the previous checkpoint, never
  tear one: a frame of the log counts only if its checksum chain and its commit frame are
  complete, so a half-written batch is ignored as a whole. For a cache, a lost batch is
  answers paid once more, which is the right trade against a sync per batch.

The layout (schema 2). Rows are clustered by ``(key_version, run_seed, row, col, key)``
(``WITHOUT ROWID``): the entries a row group needs are one contiguous range of the table, and
a batch of a run's answers lands on the pages of the row groups in flight, whatever else the
store holds. Clustered by the key instead (schema 1: a hash, random), every batch touched a
page of the table per answer: a cold run's writes were ~3.6 KB of I/O per 230-byte answer in
a new store and ~54 KB in one of 100,000 entries (plus ~6 page reads an answer there)
(docs/benchmarks.md, "Branch ``coldstore``"; now ~1.3 and ~1.5 KB). ``key_version``
first: entries stored under older keys (:data:`~trio_designer._cache._key.KEY_VERSION`) sit
in a range of their own that a run's lookups never read. Since a key hashes its cell, one
key is one ``(run_seed, row, col)``: ``INSERT OR IGNORE`` on this primary key keeps one
answer per key, as before.

A schema-1 store is migrated when opened (one transaction, every entry marked key version 1:
the releases that wrote schema 1 computed version-1 keys; a store written by a development
tree with version-2 keys but schema 1 has those entries marked stale too, and pays for them
once more — the key alone cannot tell). A release before schema 2 can still
open a migrated store: its statements name the same columns, and ``key_version`` defaults
to 1 for the rows it inserts (if it adds its old index back, :class:`CacheStore` drops it).

Only answers are stored: keys are hashes, values hold content, reasoning, usage, finish reason
and model. No header, no API key.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Self

import attrs

from .._exceptions import CACHE_DIR_ARGUMENT, NO_CACHE_ARGUMENT, ConfigError
from ._key import KEY_VERSION
from ._location import CACHE_FILE

__all__ = [
    "BUSY_TIMEOUT_MS",
    "AnswerRow",
    "CacheStats",
    "CacheStore",
    "LoadedRows",
    "StoredAnswer",
]

BUSY_TIMEOUT_MS: Final = 60_000
"""How long a write waits for another process's write to finish before failing."""

SCHEMA_VERSION: Final = 2

_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS answers ("
    " key_version INTEGER NOT NULL DEFAULT 1,"  # a row of a release before schema 2: keys v1
    " run_seed INTEGER NOT NULL,"
    " row INTEGER NOT NULL,"
    " col TEXT NOT NULL,"
    " key BLOB NOT NULL,"
    " value BLOB NOT NULL,"
    " checksum BLOB NOT NULL,"
    " created REAL NOT NULL,"
    " PRIMARY KEY (key_version, run_seed, row, col, key)"
    ") WITHOUT ROWID"
)
_AGE_INDEX_NAME: Final = "answers_by_age"
"""The index on ``created`` that stores made before ``coldcost`` have (and schema-2 releases
add to a store without it, ``CREATE INDEX IF NOT EXISTS`` at open): kept where it exists, not
made any more. It served ``cache prune`` alone (``cache stats`` scans the table anyway) and
cost every insert a second B-tree insert (~5,200 instructions an answer, ~6 % of a cold
request's extra; docs/benchmarks.md, "Branch ``coldcost``"); without it, ``prune`` scans the
table."""
_COLUMNS: Final = "key_version, run_seed, row, col, key, value, checksum, created"
_INSERT_MOST: Final = 64
"""Rows one ``INSERT`` statement writes at most (8 parameters a row: 512, under every SQLite's
limit of 999 parameters a statement)."""
_INSERTS: Final = {
    size: f"INSERT OR IGNORE INTO answers ({_COLUMNS}) VALUES "
    + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * size)
    for size in (64, 32, 16, 8, 4, 2, 1)
}
"""The statements :meth:`CacheStore.put_many` writes with: a batch is cut into pieces of
these sizes (64 each, then the binary digits of the rest), so a flush of 512 answers is 8
statements."""
_OLD_INDEX: Final = "answers_by_cell"
"""Schema 1's index on ``(run_seed, row)``: dropped (the primary key serves these lookups)."""


def checksum(key: bytes, value: bytes) -> bytes:
    """What a row's ``checksum`` must be: ``blake2b(key + value, digest_size=16)``, from a
    hasher set up once and copied (no keyword parsing nor parameter block per value)."""
    hasher = _BLANK_CHECKSUM.copy()
    hasher.update(key)
    hasher.update(value)
    return hasher.digest()


_BLANK_CHECKSUM: Final = hashlib.blake2b(digest_size=16)


AnswerRow = tuple[bytes, int, int, str, bytes]
"""A :class:`StoredAnswer`'s fields as a plain tuple, in its order (key, run seed, row,
column, value). A run queues its paid answers in this form: a tuple of bytes, ints and strings
is dropped from the garbage collector's lists at its first collection, an attrs object is
traversed by every collection while it waits in the queue."""


@attrs.frozen(slots=True)
class StoredAnswer:
    """One entry to write: its key, the cell it belongs to, the encoded answer."""

    key: bytes
    run_seed: int
    row: int
    column: str
    value: bytes


@attrs.frozen
class LoadedRows:
    """What :meth:`CacheStore.load_rows` found: key -> value, and how many rows were corrupt
    (skipped)."""

    values: dict[bytes, bytes]
    corrupt: int = 0


@attrs.frozen(kw_only=True)
class CacheStats:
    """A summary of the store, for ``trio-designer cache stats``."""

    path: str
    entries: int
    bytes: int
    oldest: float | None
    newest: float | None
    stale: int = 0
    """Entries stored under an older key version (counted in ``entries``): never served."""


class CacheStore:
    """The SQLite store in ``directory`` (created if missing). Thread-safe (one lock).

    Raises:
      ConfigError: the directory cannot be created or the file cannot be opened as a store;
        the message names the path and the remedies (``--cache-dir``, ``--no-cache``).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / CACHE_FILE
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # autocommit; batches use explicit transactions
                check_same_thread=False,  # guarded by self._lock
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._unusable(exc) from exc
        try:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._open_store()
        except sqlite3.Error as exc:
            self._db.close()
            raise self._unusable(exc) from exc

    def _open_store(self) -> None:
        """WAL mode, then :meth:`_prepare`, retried while another process holds the store for
        up to :data:`BUSY_TIMEOUT_MS`. Two processes opening a *new* store at once can get
        "database is locked" at once, without the busy handler's wait: the file starts in
        rollback-journal mode, where SQLite refuses (rather than waits for) a lock upgrade
        that could deadlock with another connection's — seen as the second of two concurrent
        CLI runs failing at start (``tests/test_cache_store.py::
        test_two_concurrent_cli_runs_share_one_cache``, rarely)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")  # see the module docstring
                self._prepare()
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _prepare(self) -> None:
        """Create the table (schema 2), or migrate a schema-1 one, in one transaction that
        several processes opening the store at once take in turn (``BEGIN IMMEDIATE``: the
        second one finds the work done). Writes nothing when the store is already right."""
        if self._layout_ok():
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(answers)")}
            if columns and "key_version" not in columns:
                # Schema 1 (clustered by key). Its indexes keep their names through a rename:
                # drop them before the new table takes the names.
                self._db.execute("ALTER TABLE answers RENAME TO answers_schema1")
                self._db.execute(f"DROP INDEX IF EXISTS {_OLD_INDEX}")
                self._db.execute(f"DROP INDEX IF EXISTS {_AGE_INDEX_NAME}")
                self._db.execute(_TABLE)
                self._db.execute(
                    f"INSERT OR IGNORE INTO answers ({_COLUMNS}) SELECT 1, run_seed, row, col, "
                    "key, value, checksum, created FROM answers_schema1"
                )
                self._db.execute("DROP TABLE answers_schema1")
            self._db.execute(_TABLE)
            self._db.execute(f"DROP INDEX IF EXISTS {_OLD_INDEX}")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _layout_ok(self) -> bool:
        """Whether the table and the schema version are as this code writes them, with no
        index but the age index of earlier stores (a read: the common case at open takes no
        write lock)."""
        query = "SELECT name FROM sqlite_schema WHERE tbl_name = 'answers'"
        names = {row[0] for row in self._db.execute(query)}
        if "answers" not in names or not names <= {"answers", _AGE_INDEX_NAME}:
            return False
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(answers)")}
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        return "key_version" in columns and version == SCHEMA_VERSION

    def _unusable(self, exc: BaseException) -> ConfigError:
        return ConfigError(
            f"cache_dir: the response cache at {str(self.path)!r} cannot be used ({exc}); "
            f"choose another directory with {CACHE_DIR_ARGUMENT} (or run.cache_dir), or pass "
            f"{NO_CACHE_ARGUMENT}"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading -------------------------------------------------------------------------
    def load_rows(
        self,
        run_seed: int,
        start: int,
        stop: int,
        columns: Sequence[str],
        *,
        key_version: int = KEY_VERSION,
    ) -> LoadedRows:
        """Every stored answer of rows ``start <= row < stop`` of ``columns`` under
        ``run_seed`` and ``key_version`` (the entries a row group can hit: one range of the
        primary key; entries of older key versions are never read), checksums verified."""
        if not columns or stop <= start:
            return LoadedRows({})
        marks = ",".join("?" * len(columns))
        query = (
            "SELECT key, value, checksum FROM answers WHERE key_version = ? AND run_seed = ? "
            f"AND row >= ? AND row < ? AND col IN ({marks})"
        )
        with self._lock:
            rows = self._db.execute(
                query, (key_version, run_seed, start, stop, *columns)
            ).fetchall()
        values: dict[bytes, bytes] = {}
        corrupt = 0
        for key, value, check in rows:
            if checksum(key, value) == check:
                values[key] = value
            else:
                corrupt += 1
        return LoadedRows(values, corrupt)

    def get(self, key: bytes) -> bytes | None:
        """One entry's value (checksum verified), or ``None``. For tools and tests: it scans
        the table (a run loads row groups, :meth:`load_rows`)."""
        with self._lock:
            row = self._db.execute(
                "SELECT value, checksum FROM answers WHERE key = ?", (key,)
            ).fetchone()
        if row is None or checksum(key, row[0]) != row[1]:
            return None
        value: bytes = row[0]
        return value

    # -- writing -------------------------------------------------------------------------
    def put_many(
        self,
        entries: Iterable[StoredAnswer | AnswerRow],
        *,
        now: float | None = None,
        key_version: int = KEY_VERSION,
    ) -> int:
        """Write ``entries`` (keys of ``key_version``) in one transaction; keys already stored
        are left alone. Returns how many entries were new. An entry is a
        :class:`StoredAnswer` or the plain tuple of its fields (:data:`AnswerRow`, what a run
        queues: see ``models/_cached.py``)."""
        created = time.time() if now is None else now
        # The blobs are bound as bytearrays: the sqlite3 module binds int, float, str and
        # bytearray as they are, but runs every other type (bytes included) through its
        # adapter protocol first (a registry look-up and two failed attribute look-ups, one
        # of which formats an AttributeError): ~3 µs a row of three blobs, more than the
        # insert itself. SQLite stores the same BLOB either way (read back as bytes).
        params: list[Any] = []
        add, blank, blob = params.extend, _BLANK_CHECKSUM, bytearray
        count = 0
        for entry in entries:
            if type(entry) is tuple:
                key, run_seed, row, column, value = entry
            elif isinstance(entry, StoredAnswer):
                key, run_seed, row, column, value = (
                    entry.key,
                    entry.run_seed,
                    entry.row,
                    entry.column,
                    entry.value,
                )
            else:
                key, run_seed, row, column, value = entry
            hasher = blank.copy()
            hasher.update(key)
            hasher.update(value)
            add(
                (
                    key_version,
                    run_seed,
                    row,
                    column,
                    blob(key),
                    blob(value),
                    blob(hasher.digest()),  # checksum(key, value), inline
                    created,
                )
            )
            count += 1
        if not count:
            return 0
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # Many rows a statement, not one (executemany): the sqlite3 module lets go of
                # the GIL around every statement's step, and a run's trio thread, which holds
                # it, then hands it back and forth with this worker thread once per row
                # (~3 context switches an answer: +0.3 s of system time and more user time
                # per 1,000 records, docs/benchmarks.md "Branch warmhit2"). One statement per
                # piece: the same rows inserted, in the same order, in the same transaction.
                done = 0
                while done < count:
                    left = count - done
                    size = _INSERT_MOST if left >= _INSERT_MOST else 1 << (left.bit_length() - 1)
                    self._db.execute(_INSERTS[size], params[8 * done : 8 * (done + size)])
                    done += size
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return self._db.total_changes - before

    # -- maintenance ---------------------------------------------------------------------
    def stats(self) -> CacheStats:
        with self._lock:
            count, size, oldest, newest, stale = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(value)), 0), MIN(created), MAX(created), "
                "COALESCE(SUM(key_version != ?), 0) FROM answers",
                (KEY_VERSION,),
            ).fetchone()
        return CacheStats(
            path=str(self.path),
            entries=count,
            bytes=size,
            oldest=oldest,
            newest=newest,
            stale=stale,
        )

    def prune(self, older_than: float, *, now: float | None = None) -> int:
        """Delete entries stored more than ``older_than`` seconds ago; returns how many (a scan
        of the table, unless the store has the age index of earlier releases)."""
        cutoff = (time.time() if now is None else now) - older_than
        with self._lock:
            cursor = self._db.execute("DELETE FROM answers WHERE created < ?", (cutoff,))
            deleted = cursor.rowcount
        self._reclaim()
        return deleted

    def clear(self) -> int:
        """Delete every entry; returns how many."""
        with self._lock:
            deleted = self._db.execute("DELETE FROM answers").rowcount
        self._reclaim()
        return deleted

    def _reclaim(self) -> None:
        """Give the freed pages back to the file system."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
