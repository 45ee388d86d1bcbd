"""Beyond one process: a run split into shards, run on a process pool, Ray or Slurm, merged.

One idea per module:

=================  ==========================================================================
``_shard``         :func:`run_shard`: one shard (a slice of global row groups) into
                   ``<output_dir>/shards/<i>/``, and its :class:`ShardManifest`
``_merge``         :func:`merge`: check every shard is complete and of one run, write the
                   merged ``metadata.json`` (and, optionally, compacted parquet)
``_workers``       :func:`run_workers`: K shards as K child processes of this machine, re-run
                   when one crashes, one merged progress display, merged at the end
``_child``         the child process of ``_workers`` (``python -m trio_designer._scaleout._child``)
``_ray``           the same on Ray: shards as Ray tasks (``trio_designer.ray``)
=================  ==========================================================================

The arithmetic (which row groups a shard gets, its share of each model's limits) is pure and
lives in :mod:`trio_designer._core._shares`.
"""

from ._shard import ShardManifest, read_manifest, run_shard, run_shard_async, shard_config

__all__ = ["ShardManifest", "read_manifest", "run_shard", "run_shard_async", "shard_config"]
