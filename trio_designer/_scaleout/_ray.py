"""Shards as Ray tasks (``trio_designer.ray.run``, ``trio-designer run --ray``).

Each shard is one Ray task (``num_cpus=1``) that calls :func:`~._shard.run_shard` in a Ray
worker process; Ray schedules the tasks over the cluster and runs a task again when its worker
or node dies (``max_retries``); the new attempt resumes the shard from its finished row groups.
Progress comes back through a :class:`ray.util.queue.Queue`: each task puts the same reports a
local child prints (``_child.report_for``). A shard already complete on disk is not submitted
at all (resume at shard granularity); the others resume at row-group granularity.

The output directory must be visible to every node (a shared file system) — the tasks write
their shards there and the driver merges them.

**Local clusters.** Without an address (and without a running ``ray.init``), a local cluster
is started for the call and stopped after it: ``num_cpus`` from the call (default: this
machine's), the dashboard off, its temporary files in a fresh directory under the system's
temp dir, and token authentication on with a random token kept in this process's environment
(``RAY_AUTH_TOKEN``), so nothing is written to the home directory (Ray otherwise saves a
generated token in ``~/.ray/auth_token``). With an address, ``ray.init(address=...)`` joins that
cluster with whatever authentication it requires.
"""

from __future__ import annotations

import logging
import os
import queue as queue_module
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._exceptions import ConfigError, TrioDesignerError
from .._sink._layout import shard_dir
from ..config import PipelineConfig
from ._merge import merge, shard_states
from ._shard import ShardManifest, _read_json, read_manifest
from ._workers import MergedProgress, ShardedRunResult

__all__ = ["RAY_MISSING", "run_on_ray"]

logger = logging.getLogger("trio_designer.scaleout")

RAY_MISSING = "Ray is not installed: pip install 'trio_designer[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(RAY_MISSING) from exc
    return ray


def _shard_task(job: Mapping[str, Any], reports: Any) -> dict[str, Any]:
    """The body of a shard's Ray task (runs in a Ray worker process)."""
    from .._designer import TrioDesigner
    from ._child import report_for
    from ._shard import run_shard_async

    shard = int(job["shard"])
    reports.put({"shard": shard, "started": os.getpid()})

    def on_event(name: str, fields: Mapping[str, Any]) -> None:
        report = report_for(name, fields)
        if report is not None:
            reports.put_nowait({"shard": shard, **report})

    import trio

    async def main() -> ShardManifest:
        return await run_shard_async(
            job["config"],
            shard=shard,
            num_shards=job["num_shards"],
            num_records=job["num_records"],
            output_dir=job["output_dir"],
            share_limits=job["share_limits"],
            designer=TrioDesigner(on_event=on_event),
        )

    return trio.run(main).to_json_dict()


def _local_init(ray: Any, num_cpus: int | None) -> str:
    """Start a local cluster that writes nothing to the home directory; its temp dir."""
    temp_dir = tempfile.mkdtemp(prefix="trio-designer-ray-")
    # Ray turns token authentication on for a new local cluster (RAY_AUTH_MODE unset) and
    # saves a generated token in ~/.ray/auth_token unless one is found: give it one in the
    # environment (inherited by the cluster's processes), so nothing reaches the home directory.
    if os.environ.get("RAY_AUTH_MODE", "token") == "token" and not (
        os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    ):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
        configure_logging=False,
    )
    return temp_dir


def run_on_ray(
    config: PipelineConfig,
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
    """Run the shards of a run as Ray tasks, then merge them (module docstring).

    Raises:
      ConfigError: Ray is not installed, or the arguments are invalid.
      SinkError: a shard refused its directory, or the merge failed.
      TrioDesignerError: a shard failed for good (its finished row groups are kept; the same
        call resumes it).
    """
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ConfigError(f"num_shards: must be a positive integer, got {num_shards!r}")
    ray = _import_ray()
    from ray.util.queue import Queue

    out = Path(output_dir).resolve()
    start = time.monotonic()
    progress = MergedProgress(
        num_records=num_records,
        row_group_size=config.run.row_group_size,
        num_shards=num_shards,
        interval=progress_interval,
        clock=time.monotonic,
    )
    manifests: list[ShardManifest | None] = [None] * num_shards
    for shard in range(num_shards):
        manifest = read_manifest(out / shard_dir(shard))
        if manifest is not None and manifest.num_shards == num_shards:
            meta = _read_json(out / shard_dir(shard) / "metadata.json")
            progress.found([int(k) for k in (meta.get("row_groups") or {})])
            if manifest.status == "complete" and meta.get("status") == "complete":
                manifests[shard] = manifest
                progress.shard_finished(shard)
    todo = [s for s in range(num_shards) if manifests[s] is None]
    attempts = [0] * num_shards
    started_here = None
    if not ray.is_initialized():
        if address is None:
            started_here = _local_init(ray, num_cpus)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        if todo:
            reports = Queue()
            task = ray.remote(num_cpus=1, max_retries=max_retries)(_shard_task)
            pending = {
                task.remote(
                    {
                        "config": config,
                        "shard": shard,
                        "num_shards": num_shards,
                        "num_records": num_records,
                        "output_dir": str(out),
                        "share_limits": share_limits,
                    },
                    reports,
                ): shard
                for shard in todo
            }
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                _drain(reports, progress, attempts)
                for ref in ready:
                    shard = pending.pop(ref)
                    try:
                        data = ray.get(ref)
                    except Exception as exc:
                        raise _ray_failure(shard, exc) from exc
                    manifests[shard] = ShardManifest.from_json_dict(
                        data, output_dir=out / shard_dir(shard)
                    )
                    progress.shard_finished(shard)
                progress.tick()
            _drain(reports, progress, attempts)
    finally:
        if started_here is not None:
            ray.shutdown()
            shutil.rmtree(started_here, ignore_errors=True)
    complete = all(m is not None and m.status == "complete" for m in manifests)
    merged = merge(out, compact=compact) if complete else None
    if merged is None:
        shard_states(out)  # raises when there is nothing at all
    progress.note(progress.line())
    return ShardedRunResult(
        status="complete" if complete else "incomplete",
        output_dir=out,
        manifests=tuple(manifests),
        attempts=tuple(attempts),
        merged=merged,
        elapsed=time.monotonic() - start,
        limits=tuple(progress.limits),
        finished=tuple(progress.finished),
    )


def _drain(reports: Any, progress: MergedProgress, attempts: list[int]) -> None:
    while True:
        try:
            message = reports.get_nowait()
        except queue_module.Empty:
            return
        except Exception:  # the queue actor is gone: progress only
            return
        shard = int(message["shard"])
        if "started" in message:
            attempts[shard] += 1
        else:
            progress.message(shard, message)


class _RayShardFailed(TrioDesignerError):
    pass


def _ray_failure(shard: int, exc: BaseException) -> TrioDesignerError:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, TrioDesignerError):
        return cause
    return _RayShardFailed(
        f"shard {shard} failed on Ray ({type(exc).__name__}: {str(exc)[:300]}); its finished "
        "row groups are kept: run the same command again to resume it"
    )
