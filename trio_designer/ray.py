"""Run a sharded run on Ray: each shard a Ray task, merged into one dataset at the end.

Needs the ``ray`` extra (``pip install 'trio_designer[ray]'``). ::

    import trio_designer.ray

    result = trio_designer.ray.run(
        config, num_records=1_000_000, output_dir="/shared/out/big", num_shards=64,
        address="auto",          # an existing cluster; omit for a local one
    )
    print(result.status, result.merged.rows)

Each shard runs :func:`trio_designer.run_shard` in a Ray worker (one CPU each); Ray runs a
task again when its worker dies (``max_retries``), and the new attempt resumes the shard from
its finished row groups. Shards already complete on disk are not submitted again, so the same
call resumes an interrupted run. ``output_dir`` must be on a file system every node sees.
Without ``address`` (and without a running ``ray.init()``), a local cluster is started for the
call: dashboard off, temporary files in a fresh temp directory, a random auth token kept in the
environment (nothing written to the home directory). See ``docs/scale-out.md``.
"""

from __future__ import annotations

import typing as _typing

from . import _public
from ._scaleout._workers import ShardedRunResult as ShardedRunResult

if _typing.TYPE_CHECKING:
    import os
    from typing import Any

__all__ = ["ShardedRunResult", "run"]


def run(
    config: Any,
    *,
    num_records: int,
    output_dir: str | os.PathLike[str],
    num_shards: int,
    address: str | None = None,
    num_cpus: int | None = None,
    max_retries: int = 3,
    share_limits: bool = True,
    compact: bool = False,
    progress_interval: float | None = 5.0,
) -> ShardedRunResult:
    """Run ``config`` as ``num_shards`` Ray tasks writing under ``output_dir``, then merge.

    Args:
      config: the pipeline (a ``PipelineConfig``); each model's limits are the run's totals,
        shared by the shards (``share_limits``).
      num_records: rows of the whole run.
      output_dir: the run's output directory, visible to every node.
      num_shards: how many shards (tasks).
      address: the Ray cluster to join (``"auto"``, ``"ray://host:10001"``); ``None`` starts
        a local one unless ``ray.init()`` was already called.
      num_cpus: CPUs of a local cluster (default: this machine's).
      max_retries: how often Ray runs a shard's task again after its worker died.
      share_limits: give each shard ``1/num_shards`` of each model's limits.
      compact: merge with compacted parquet files too (``compacted/``).
      progress_interval: seconds between progress lines on stderr (``None``: none).

    Returns:
      A :class:`ShardedRunResult` (``status == "complete"`` and ``merged`` set when every
      shard finished).

    Raises:
      ConfigError: Ray is not installed, or the config or arguments are invalid.
      SinkError: a shard's directory holds another run, or the merge was refused.
    """
    from ._scaleout._ray import run_on_ray

    return run_on_ray(
        config,
        num_records=num_records,
        output_dir=output_dir,
        num_shards=num_shards,
        address=address,
        num_cpus=num_cpus,
        max_retries=max_retries,
        share_limits=share_limits,
        compact=compact,
        progress_interval=progress_interval,
    )


_public.present_as(__name__, globals(), __all__)
