"""Sharded runs on Ray (issue 16): a local 2-CPU cluster (offline, dashboard off, its
temporary files in a temp directory, the auth token kept in the environment — nothing written
to the home directory), three shards as Ray tasks against ONE simulator in its own process,
merged, equal to the one-process run byte for byte; a shard already complete on disk is not
submitted again.

The cluster runs in a subprocess (``python -c``), so Ray's processes and environment changes
never touch the test process. Ray is installed by ``make`` (the ``ray`` extra).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from test_scaleout_processes import (
    NUM_RECORDS,
    config_dict,
    files_of,
    reference,  # noqa: F401 (a fixture)
    requests_logged,
    reset,
    simulator,  # noqa: F401 (a fixture)
    write_config,
)

from trio_designer import PipelineConfig
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


@pytest.mark.deadline(200)
def test_three_shards_as_ray_tasks_equal_the_one_process_run(
    simulator: str,  # noqa: F811
    reference: dict[str, bytes],  # noqa: F811
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, simulator)
    out = tmp_path / "out"
    # Shard 0 is already complete on disk (say, from an earlier call): it is not submitted.
    config = PipelineConfig.from_dict(config_dict(simulator))

    async def first_shard() -> None:
        with trio.fail_after(30):
            await run_shard_async(
                config, shard=0, num_shards=3, num_records=NUM_RECORDS, output_dir=out
            )

    trio.run(first_shard)
    reset(simulator)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "HOME": str(home),  # to see that nothing is written there
        "RAY_USAGE_STATS_ENABLED": "0",
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
    assert report == {"status": "complete", "attempts": [0, 1, 1], "rows": NUM_RECORDS}
    assert files_of(out / "parquet-files") == reference
    # Shards 1 and 2 only: 2/3 of the cells, each bought once.
    assert requests_logged(simulator) == NUM_RECORDS - 20
    assert list(home.iterdir()) == []  # no ~/.ray/auth_token, nothing else
