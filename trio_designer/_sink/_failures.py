"""``failures.jsonl``: one JSON line per row (or row group) a run dropped, kept across resumes.

Each line is one failure record of the engine (``FailureRecord``: ``row_group``, ``row``,
``column``, ``error_class``, ``message``, ``attempts``) as a JSON object. The file is written at
the end of a run; a resumed run appends its own failures to the earlier ones. It never holds a
secret: failure messages come from our own exceptions, which redact API keys.

Appending rewrites the whole file with :func:`~._atomic.write_atomically`, so a reader (or a
crash) never sees half a line. O(failures) per run end, which is fine: failures are few, and
the summary in ``metadata.json`` keeps only the first thousand.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from ._atomic import write_atomically
from ._layout import FAILURES_FILE

__all__ = ["append_failures", "read_failures"]


def append_failures(output_dir: Path, failures: Sequence[attrs.AttrsInstance]) -> Path:
    """Add this run's failures to ``failures.jsonl`` (a resumed run appends to the file).

    Args:
      output_dir: the run's output directory (it exists).
      failures: the run's failure records, in the order they happened.

    Returns:
      The path of ``failures.jsonl``.
    """
    path = output_dir / FAILURES_FILE
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = "".join(json.dumps(attrs.asdict(f)) + "\n" for f in failures)
    write_atomically(path, (old + lines).encode("utf-8"))
    return path


def read_failures(output_dir: Path) -> list[dict[str, Any]]:
    """Every failure recorded in ``failures.jsonl`` (empty if there is none).

    Raises:
      ValueError: a line is not JSON (``json.JSONDecodeError``).
    """
    path = output_dir / FAILURES_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in _lines(path.read_text(encoding="utf-8"))]


def _lines(text: str) -> Iterable[str]:
    return (line for line in text.splitlines() if line.strip())
