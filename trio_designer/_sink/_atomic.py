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
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ._layout import tmp_file_name

__all__ = ["fsync_directory", "write_atomically"]


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
