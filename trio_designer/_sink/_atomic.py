"""The one atomic file write of an output directory: a reader sees the old file or the new one.

Every file a run replaces (``metadata.json``, each row group's parquet file, ``trace.json``,
``failures.jsonl``) goes through :func:`write_atomically`, which does, in order:

1. write the bytes into a fresh temporary file (:func:`~._layout.tmp_file_name`), ``flush``
   and ``os.fsync`` it — the *content* is on disk;
2. ``os.replace`` it over the destination — atomic on POSIX and Windows: a reader opening the
   path gets either the whole old file or the whole new one, never a mix;
3. ``fsync`` the destination's directory — the *rename* is on disk. Without this step a power
   cut after ``os.replace`` returned can bring the old directory entry back (ext4, XFS); with
   it, "returned" means "durable".

The temporary file lives in ``tmp_dir`` (default: beside the destination) on the same file
system, which ``os.replace`` requires; it is deleted whatever happens, so a failed or
cancelled write leaves only the old file. Not a lock: two processes writing one path at once
each replace it whole, the last one wins.

Blocking: call from a worker thread in async code (``trio.to_thread.run_sync``).
Checked by ``tests/test_sink.py::test_write_atomically_fsyncs_the_file_then_the_directory``.

:func:`write_atomically_together` does the same for several files at once, in *stages*, with
the same guarantee per file and one more across stages: a file of a later stage is renamed into
place only once every file of the earlier stages is durable (content and rename). The end of a
run writes its last row group, its provenance and the final ``metadata.json`` (which names
them) this way. The fsyncs of one round run concurrently: on ext4 (and most journalled file
systems) concurrent fsyncs share one journal commit, so a round costs about one fsync however
many files it holds — 3 rounds instead of 6-8 fsyncs one after another (``benches/
small_runs.py``; ``tests/test_sink.py::test_write_atomically_together_orders_the_stages``).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, TypeAlias

import attrs

from ._layout import tmp_file_name

__all__ = [
    "Background",
    "Content",
    "Stage",
    "fsync_directory",
    "write_atomically",
    "write_atomically_together",
]

@attrs.frozen
class Background:
    """A content of :func:`write_atomically_together` that is written in an fsync thread,
    beside the caller's next work: ``write`` fills the open file, in whatever thread (it must
    not need the caller's, e.g. for ``trio.from_thread``), and the thread then fsyncs it."""

    write: Callable[[BinaryIO], object]


Content: TypeAlias = bytes | Callable[[BinaryIO], object] | Background
"""What :func:`write_atomically_together` writes: the bytes, a function writing into the open
file (in the calling thread), or a :class:`Background` one. :func:`write_atomically` takes the
first two."""


def write_atomically(
    path: Path,
    content: bytes | Callable[[BinaryIO], object],
    *,
    tmp_dir: Path | None = None,
    before_replace: Callable[[], object] | None = None,
) -> None:
    """Replace ``path`` with new content, durably and all at once (see the module docstring).

    Args:
      path: the destination; its directory must exist. An existing file is replaced.
      content: the bytes, or a function that writes them into the open binary tmp file (for
        example ``lambda f: pq.write_table(table, f)``), so big content is streamed.
      tmp_dir: where the temporary file goes; default ``path.parent``. Must be on the same
        file system as ``path``.
      before_replace: called after the content is durable and before ``os.replace``, the last
        moment the write can still be abandoned without effect: if it raises, the tmp file is
        deleted and ``path`` is untouched (the parquet sink checks for cancellation here).

    Raises:
      OSError: the disk failed. If it failed before the rename, ``path`` is untouched; if the
        directory fsync failed, the new file is in place but may not survive a power cut.
      Whatever ``content`` or ``before_replace`` raise, with ``path`` untouched.
    """
    tmp_path = (path.parent if tmp_dir is None else tmp_dir) / tmp_file_name(path.name)
    try:
        with tmp_path.open("xb") as stream:
            if isinstance(content, bytes):
                stream.write(content)
            else:
                content(stream)
            stream.flush()
            os.fsync(stream.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    fsync_directory(path.parent)


Stage: TypeAlias = Sequence[tuple[Path, Content]] | Callable[[], Sequence[tuple[Path, Content]]]
"""A stage of :func:`write_atomically_together`: its files, or a function that makes them
(called once the earlier stages' tmp files are written and their fsyncs started)."""


def write_atomically_together(
    stages: Sequence[Stage],
    *,
    tmp_dir: Path,
    before_replace: Callable[[], object] | None = None,
    commit_early: bool = False,
) -> None:
    """Replace several files durably, stage after stage, with concurrent fsyncs.

    In order: stage by stage, the stage's files (a function stage is called first, to make
    them) are written into their tmp files (in ``tmp_dir``) and their fsyncs started in the
    fsync threads — so the CPU of making a later stage (the end of a run: the final record and
    the dataset card) runs while the earlier stages' fsyncs wait for the disk. A
    :class:`Background` content is written by an fsync thread (which then fsyncs it), beside
    the making of the next stage (the end of a run: the two parquet files, which pyarrow
    serialises without holding the GIL, ``_parquet._default_parquet_writer``). Then, with
    ``before_replace``: every fsync is waited for and ``before_replace`` is called (if it
    raises, nothing was replaced and every tmp file is gone). Then, stage by stage: the
    stage's own fsyncs are waited for, its files renamed into place and their directories
    fsynced at once (while a later stage's file fsyncs may still run). So a file is renamed
    only once its content is durable, stage ``k + 1``'s first rename happens once stage
    ``k`` is durable (content and renames), and when the call returns, everything is.

    With ``commit_early`` (and no ``before_replace``), every stage but the last is committed
    — its fsyncs waited for, its files renamed, their directories fsynced — by a commit
    thread as soon as its content is durable (and the stage before it is committed), while
    this thread makes the later stages: the end of a run renames the row group's files and
    fsyncs their folders while it builds the record and the card, so that only the record's
    own round is left after them. The order on disk is the same; what changes is that a
    later stage that fails to be made (its function raises) leaves the earlier stages in
    place, durable (for the parquet sink: row group files without an entry, which the next
    ``open`` deletes, as after a crash).

    Raises:
      OSError: the disk failed. Files of the stages before the failing one are in place and
        durable; the failing stage's files may be in place (not durable); later stages are
        untouched. Every tmp file is removed.
      Whatever a content function, a function stage or ``before_replace`` raise, with
      nothing replaced (with ``commit_early``: nothing of that stage and the later ones).
    """
    made: list[list[tuple[Path, Content, Path]]] = []
    opened: list[BinaryIO] = []
    syncs: list[list[Future[None]]] = []
    commits: list[Future[None]] = []  # commit_early: stage k's commit (k < len(commits))
    early = commit_early and before_replace is None
    pool = _fsync_pool()
    try:
        for index, stage in enumerate(stages):
            files = [
                (path, content, tmp_dir / tmp_file_name(path.name))
                for path, content in (stage() if callable(stage) else stage)
            ]
            made.append(files)
            started: list[Future[None]] = []
            syncs.append(started)
            for _, content, tmp_path in files:
                out: BinaryIO = tmp_path.open("xb")
                opened.append(out)
                if isinstance(content, Background):  # beside this thread's next work
                    started.append(pool.submit(_write_and_fsync, out, content.write))
                    continue
                if isinstance(content, bytes):
                    out.write(content)
                else:
                    content(out)
                out.flush()
                started.append(pool.submit(_fsync, out.fileno()))
            if early and index < len(stages) - 1:
                after = commits[-1] if commits else None
                commits.append(_commit_pool().submit(_commit, files, started, after))
        if before_replace is not None:
            _wait([future for started in syncs for future in started])
            before_replace()
        for index, (files, started) in enumerate(zip(made, syncs, strict=True)):
            if index < len(commits):
                commits[index].result()  # committed by the commit thread (or its error)
            else:
                _commit(files, started, None)
    finally:
        # The commit threads and the fsync threads are done with the files first; a file is
        # closed only once no thread fsyncs it any more.
        for commit in commits:
            commit.exception()
        for started in syncs:
            for future in started:
                future.exception()
        for out in opened:
            out.close()
        for files in made:
            for _, _, tmp_path in files:
                tmp_path.unlink(missing_ok=True)


def _commit(
    files: Sequence[tuple[Path, Content, Path]],
    started: Sequence[Future[None]],
    after: Future[None] | None,
) -> None:
    """Commit one stage of :func:`write_atomically_together`: once the stage before it is
    (``after``) and its own fsyncs are done, rename its files into place and fsync their
    directories."""
    if after is not None:
        after.result()
    _wait(started)
    for path, _, tmp_path in files:
        os.replace(tmp_path, path)
    _fsync_directories({path.parent for path, _, _ in files})


def _wait(futures: Sequence[Future[None]]) -> None:
    """Wait for every one of ``futures``; raise the first error."""
    errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error


class _ProcessPool:
    """A thread pool of this process, made on first use (a forked child makes its own: its
    parent's threads are not there, though the pool object says so)."""

    def __init__(self, workers: int, prefix: str) -> None:
        self._workers = workers
        self._prefix = prefix
        self._lock = threading.Lock()
        self._owned: tuple[int, ThreadPoolExecutor] | None = None  # (its process, the pool)

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._owned is None or self._owned[0] != os.getpid():
                pool = ThreadPoolExecutor(self._workers, thread_name_prefix=self._prefix)
                self._owned = (os.getpid(), pool)
            return self._owned[1]


_FSYNC_THREADS = _ProcessPool(8, "trio-designer-fsync")
_COMMIT_THREADS = _ProcessPool(4, "trio-designer-commit")


def _fsync_pool() -> ThreadPoolExecutor:
    """The process's fsync threads."""
    return _FSYNC_THREADS.get()


def _commit_pool() -> ThreadPoolExecutor:
    """The process's commit threads (``commit_early``), apart from the fsync threads whose
    work they wait for (so a commit never waits for a job queued behind it). A commit only
    waits for commits submitted before it, which the queue starts first."""
    return _COMMIT_THREADS.get()


def _fsync_all(descriptors: Sequence[int]) -> None:
    """``os.fsync`` every descriptor, concurrently (the first in this thread)."""
    if not descriptors:
        return
    first, *rest = descriptors
    futures = [_fsync_pool().submit(_fsync, fd) for fd in rest]
    try:
        _fsync(first)
    finally:
        errors = [f.exception() for f in futures]  # waits for every one of them
    for error in errors:
        if error is not None:
            raise error


def _fsync(fd: int) -> None:
    os.fsync(fd)  # looked up at each call (tests observe os.fsync)


def _write_and_fsync(out: BinaryIO, content: Callable[[BinaryIO], object]) -> None:
    """A content function's file, made and fsynced in an fsync thread: ``content`` writes
    ``out``, which is flushed and fsynced (``out`` stays open; the caller closes it)."""
    content(out)
    out.flush()
    _fsync(out.fileno())


def _fsync_directories(paths: Iterable[Path]) -> None:
    """:func:`fsync_directory` of each path, concurrently."""
    if sys.platform == "win32":  # pragma: no cover - directories cannot be opened there
        return
    descriptors: list[int] = []
    try:
        for path in sorted(paths):
            descriptors.append(os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))
        _fsync_all(descriptors)
    finally:
        for fd in descriptors:
            os.close(fd)


def fsync_directory(path: Path) -> None:
    """Make a directory's entries (a rename, a new file, an unlink) durable.

    A no-op on Windows, where a directory cannot be opened (and NTFS journals renames).
    """
    if sys.platform == "win32":  # pragma: no cover - directories cannot be opened there
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
