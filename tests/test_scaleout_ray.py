"""Sharded runs on Ray (issue 16): a local 2-CPU cluster (offline, dashboard off, its
temporary files in a temp directory, the auth token kept in the environment — nothing written
to the home directory), three shards as Ray tasks against ONE simulator in its own process,
merged, equal to the one-process run byte for byte; a shard already complete on disk is not
submitted again; a shard whose worker process dies mid-run is run again by Ray and resumes
from its finished row groups (one cluster for all of it: starting one takes 15 s on CI).

The cluster runs in a subprocess (``python -c``), so Ray's processes and environment changes
never touch the test process. Ray is installed by ``make`` (the ``ray`` extra).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from _shard_crash import CRASH_ENV, CRASH_ROW_ENV, CRASH_SHARD_DIR_ENV
from test_scaleout_processes import (
    NUM_RECORDS,
    config_dict,
    files_of,
    requests_logged,
    reset,
    simulator,  # noqa: F401 (a fixture)
)

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._scaleout import run_shard_async

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
import trio_designer.ray
from trio_designer import PipelineConfig

config = PipelineConfig.from_file(sys.argv[1])
result = trio_designer.ray.run(
    config, num_records=int(sys.argv[2]), output_dir=sys.argv[3], num_shards=3, num_cpus=2,
    progress_interval=None,
)
print(json.dumps({"status": result.status, "attempts": list(result.attempts),
                  "rows": result.merged.rows if result.merged else None}))
"""


def crashing_config(url: str) -> dict[str, Any]:
    """The processes tests' pipeline plus a custom column that may end its process once."""
    data = config_dict(url)
    data["columns"].append(
        {
            "name": "n",
            "kind": "custom",
            "function": "_shard_crash:crash_once",
            "depends_on": ["text"],
        }
    )
    return data


@pytest.mark.deadline(200)
def test_three_shards_as_ray_tasks_one_killed_mid_run_equal_the_one_process_run(
    simulator: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    data = crashing_config(simulator)
    config = PipelineConfig.from_dict(data)
    single = tmp_path / "single"

    async def one_process() -> None:
        with trio.fail_after(30):
            await TrioDesigner().create(config, num_records=NUM_RECORDS, output_dir=single)

    trio.run(one_process)
    reference = files_of(single / "parquet-files")
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    # Shard 0 is already complete on disk (say, from an earlier call): it is not submitted.

    async def first_shard() -> None:
        with trio.fail_after(30):
            await run_shard_async(
                config, shard=0, num_shards=3, num_records=NUM_RECORDS, output_dir=out
            )

    trio.run(first_shard)
    reset(simulator)
    home = tmp_path / "home"
    home.mkdir()
    marker = tmp_path / "crashed.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "HOME": str(home),  # to see that nothing is written there
        "RAY_USAGE_STATS_ENABLED": "0",
        # Shard 1 (row groups 4-7) dies at row 37, in its last row group.
        CRASH_ENV: str(marker),
        CRASH_ROW_ENV: "37",
        CRASH_SHARD_DIR_ENV: str(out / "shards" / "1"),
    }
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), str(NUM_RECORDS), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Shard 1's task ran twice: Ray retried it when its worker died.
    assert report == {"status": "complete", "attempts": [0, 2, 1], "rows": NUM_RECORDS}
    assert files_of(out / "parquet-files") == reference
    # The second attempt resumed: what shard 1 had finished was not bought again, only the
    # cells of its row groups in flight at the crash (at most all of the rest).
    finished = json.loads(marker.read_text())["finished"]
    assert finished
    assert set(finished) < {4, 5, 6, 7}
    bought = requests_logged(simulator)
    assert NUM_RECORDS - 20 <= bought <= NUM_RECORDS - 20 + 5 * (4 - len(finished))
    assert list(home.iterdir()) == []  # no ~/.ray/auth_token, nothing else
