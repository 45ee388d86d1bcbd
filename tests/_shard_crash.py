"""A custom column function that ends its process abruptly, once: the tests' stand-in for a
worker lost mid-run (a node gone, an out-of-memory kill). Used by ``test_scaleout_ray.py``.

It crashes only when ``CRASH_ENV`` names a marker file that does not exist yet, at the row
``CRASH_ROW_ENV`` names; first it writes into the marker the row groups its shard had
finished (read from ``CRASH_SHARD_DIR_ENV``'s ``metadata.json``). Otherwise it is a plain
function of its row, so a run without the variables is the reference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CRASH_ENV = "TRIO_DESIGNER_TEST_CRASH_MARKER"
CRASH_ROW_ENV = "TRIO_DESIGNER_TEST_CRASH_ROW"
CRASH_SHARD_DIR_ENV = "TRIO_DESIGNER_TEST_CRASH_SHARD_DIR"


def crash_once(row: dict[str, Any], ctx: Any) -> int:
    marker = os.environ.get(CRASH_ENV)
    if marker and ctx.row_index == int(os.environ[CRASH_ROW_ENV]) and not Path(marker).exists():
        meta_path = Path(os.environ[CRASH_SHARD_DIR_ENV]) / "metadata.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        finished = sorted(int(k) for k in meta.get("row_groups", {}))
        Path(marker).write_text(json.dumps({"pid": os.getpid(), "finished": finished}))
        os._exit(1)  # no cleanup, no finally: as if the process were killed
    return len(row["text"])
