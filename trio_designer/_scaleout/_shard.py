"""A shard is a plain function: :func:`run_shard` runs one slice of a run's row groups.

Shard ``i`` of ``n`` generates the row groups :func:`~trio_designer._core._shares.shard_row_groups`
gives it (contiguous global ids), with the same engine, sink and resume rules as ``create``,
into its own output directory ``<output_dir>/shards/<i>/`` (``metadata.json`` and
``parquet-files/row-group-<global id>.parquet``, so a row group's file name is the same as in a
one-process run). Row ids, per-cell randomness and cache keys depend on the global row id, never
on ``n``: the union of the shards equals the one-process run, byte for byte, for any ``n``.

Each shard runs with its share of every model's limits (``max_parallel_requests``, ``rpm``,
``tpm``: :func:`~trio_designer._core._shares.limit_share`), and records the *original* config
(the fingerprint of the whole run, identical in every shard).

A shard always continues what its directory holds (its finished row groups are kept), so a
crashed or interrupted shard is re-run with the same call; a directory of another run (another
fingerprint: refused naming what changed) or another sharding (``shard.json``) is refused.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from .._core._shares import limit_share, oversubscribed, shard_row_groups
from .._designer import TrioDesigner
from .._eventloop import check_sync_caller
from .._exceptions import ConfigError, SinkError
from .._sink import METADATA_FILE, write_atomically
from .._sink._layout import SHARD_FILE, shard_dir
from ..config import PipelineConfig
from ..models import AdaptiveLimiter, LimiterPolicy

__all__ = [
    "ShardManifest",
    "read_manifest",
    "run_shard",
    "run_shard_async",
    "shard_config",
]

logger = logging.getLogger("trio_designer.scaleout")

#: The adaptive-limit policy of a shard that shares its endpoints with other shards:
#: ``probe_by_share`` (shares even out: share-weighted cuts, probes by share, a slot yielded at
#: the ceiling), ``max_noise_rate=0.1`` (429s caused by the other shards are taken for load,
#: not noise) and ``follow_use`` (a limit is what the shard fills, so the shards' limits sum to
#: what they offer the endpoint); see ``docs/scale-out.md``.
SHARD_POLICY = LimiterPolicy(probe_by_share=True, max_noise_rate=0.1, follow_use=True)


@attrs.frozen(kw_only=True)
class ShardManifest:
    """What one shard of a sharded run holds (also written as ``shards/<i>/shard.json``).

    Attributes:
      shard: this shard's index, ``0 <= shard < num_shards``.
      num_shards: how many shards the run has.
      num_records: rows of the whole run.
      row_group_size: rows per row group.
      row_group_start: the first global row-group id of this shard.
      row_group_stop: one past its last (``start == stop``: an empty shard).
      fingerprint: the run's config fingerprint (the same in every shard of a run).
      status: ``complete`` when every row group of the shard is written, else the status its
        last run recorded (``running``, ``interrupted``, ``early_shutdown``, ``failed``).
      rows_written: rows stored by this call (earlier calls' rows not counted).
      rows_stored: rows stored in the shard in total.
      output_dir: the shard's directory (``<output_dir>/shards/<shard>``).
      files: its parquet files, relative to ``output_dir``, in row-group order.
    """

    shard: int
    num_shards: int
    num_records: int
    row_group_size: int
    row_group_start: int
    row_group_stop: int
    fingerprint: str
    status: str
    rows_written: int = 0
    rows_stored: int = 0
    output_dir: Path
    files: tuple[str, ...] = ()

    @property
    def row_groups(self) -> range:
        """The global row-group ids of this shard."""
        return range(self.row_group_start, self.row_group_stop)

    def plan_dict(self) -> dict[str, Any]:
        """What identifies the shard's slice (compared when a shard directory is reused)."""
        return {
            "shard": self.shard,
            "num_shards": self.num_shards,
            "num_records": self.num_records,
            "row_group_size": self.row_group_size,
            "row_group_start": self.row_group_start,
            "row_group_stop": self.row_group_stop,
        }

    def to_json_dict(self) -> dict[str, Any]:
        return {
            **self.plan_dict(),
            "fingerprint": self.fingerprint,
            "status": self.status,
            "rows_written": self.rows_written,
            "rows_stored": self.rows_stored,
            "files": list(self.files),
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any], *, output_dir: Path) -> ShardManifest:
        return cls(
            shard=int(data["shard"]),
            num_shards=int(data["num_shards"]),
            num_records=int(data["num_records"]),
            row_group_size=int(data["row_group_size"]),
            row_group_start=int(data["row_group_start"]),
            row_group_stop=int(data["row_group_stop"]),
            fingerprint=str(data["fingerprint"]),
            status=str(data["status"]),
            rows_written=int(data.get("rows_written", 0)),
            rows_stored=int(data.get("rows_stored", 0)),
            output_dir=output_dir,
            files=tuple(data.get("files") or ()),
        )


def read_manifest(directory: Path) -> ShardManifest | None:
    """The ``shard.json`` of a shard directory, or ``None`` when there is none.

    Raises:
      SinkError: the file is there but is not a shard manifest.
    """
    path = directory / SHARD_FILE
    if not path.is_file():
        return None
    try:
        return ShardManifest.from_json_dict(json.loads(path.read_bytes()), output_dir=directory)
    except (ValueError, KeyError, TypeError) as exc:
        raise SinkError(
            f"{path} is not a shard manifest ({exc}); remove the shard's directory to run it "
            "again from scratch."
        ) from exc


def shard_config(config: PipelineConfig, shard: int, num_shards: int) -> PipelineConfig:
    """``config`` with every model's ``max_parallel_requests``, ``rpm`` and ``tpm`` replaced
    by shard ``shard``'s share of it (the config's values are the run's totals)."""
    models = []
    for model in config.models:
        changes: dict[str, Any] = {
            "max_parallel_requests": limit_share(model.max_parallel_requests, shard, num_shards)
        }
        if oversubscribed(model.max_parallel_requests, num_shards) and shard == 0:
            logger.warning(
                "model %r: max_parallel_requests %d is shared by %d shards; each shard needs at "
                "least 1, so the run may send up to %d requests at once",
                model.alias,
                model.max_parallel_requests,
                num_shards,
                num_shards,
            )
        for field in ("rpm", "tpm"):
            total = getattr(model, field)
            if total is not None:
                changes[field] = limit_share(total, shard, num_shards)
        models.append(attrs.evolve(model, **changes))
    return attrs.evolve(config, models=tuple(models))


def _check_arguments(shard: int, num_shards: int, num_records: int) -> None:
    problems = []
    if not isinstance(num_shards, int) or isinstance(num_shards, bool) or num_shards < 1:
        problems.append(f"num_shards: must be a positive integer, got {num_shards!r}")
    elif not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < num_shards:
        problems.append(f"shard: must be an integer in 0..{num_shards - 1}, got {shard!r}")
    if not isinstance(num_records, int) or isinstance(num_records, bool) or num_records < 1:
        problems.append(f"num_records: must be a positive integer, got {num_records!r}")
    if problems:
        raise ConfigError(problems)


async def run_shard_async(
    config: PipelineConfig,
    *,
    shard: int,
    num_shards: int,
    num_records: int,
    output_dir: str | os.PathLike[str],
    share_limits: bool = True,
    designer: TrioDesigner | None = None,
    limit_slot: tuple[int, int] | None = None,
) -> ShardManifest:
    """:func:`run_shard` for a caller already inside ``trio.run``.

    ``limit_slot=(k, m)``: take share ``k`` of ``m`` of each model's limits instead of share
    ``shard`` of ``num_shards`` (a pool of ``m`` workers running more shards in turn)."""
    from ..config._fingerprint import config_fingerprint

    _check_arguments(shard, num_shards, num_records)
    designer = designer or TrioDesigner()
    size = config.run.row_group_size
    total_groups = -(-num_records // size)
    groups = shard_row_groups(total_groups, shard, num_shards)
    try:
        fingerprint = config_fingerprint(config)
    except ConfigError as exc:
        raise config.located(exc) from exc.__cause__
    directory = Path(output_dir) / shard_dir(shard)
    plan = ShardManifest(
        shard=shard,
        num_shards=num_shards,
        num_records=num_records,
        row_group_size=size,
        row_group_start=groups.start,
        row_group_stop=groups.stop,
        fingerprint=fingerprint,
        status="running",
        output_dir=directory,
    )
    await trio.to_thread.run_sync(_claim, plan)
    slot, slots = limit_slot or (shard, num_shards)
    running = shard_config(config, slot, slots) if share_limits else config
    if share_limits and slots > 1 and designer.limiter_factory is None:
        designer = _probing_by_share(designer)
    result = await designer._create(  # the shard path of create
        running,
        num_records=num_records,
        output_dir=directory,
        resume=True,
        row_groups=groups,
        identity=config,
    )
    meta = await trio.to_thread.run_sync(_read_json, directory / METADATA_FILE)
    stored = {int(k) for k in (meta.get("row_groups") or {})}
    complete = result.status == "complete" and set(groups) <= stored
    manifest = attrs.evolve(
        plan,
        status="complete" if complete else result.status,
        rows_written=result.num_records_written,
        rows_stored=int(meta.get("rows_written", 0)),
        files=tuple(f"{shard_dir(shard)}/{f}" for f in result.files),
    )
    await trio.to_thread.run_sync(_write_manifest, manifest)
    return manifest


def run_shard(
    config: PipelineConfig,
    *,
    shard: int,
    num_shards: int,
    num_records: int,
    output_dir: str | os.PathLike[str],
    share_limits: bool = True,
    progress: bool | float | str = False,
    on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
) -> ShardManifest:
    """Run shard ``shard`` of ``num_shards`` of a run of ``num_records`` rows (its own
    ``trio.run``), writing its row groups under ``output_dir/shards/<shard>/``.

    Shard ``i`` generates the contiguous global row groups ``[i*G//n, (i+1)*G//n)`` of the
    run's ``G`` row groups; the union of the shards is the one-process run (``create``), byte
    for byte. Call it once per shard, in any process or machine that sees ``output_dir``,
    then ``trio-designer merge output_dir``. A shard continues what its directory already
    holds: call it again after a crash or an interrupt and it generates only what is missing.

    Args:
      config: the pipeline; each model's ``max_parallel_requests``, ``rpm`` and ``tpm`` are
        the totals of the whole run.
      shard: this shard's index, ``0 <= shard < num_shards``.
      num_shards: how many shards the run is split into.
      num_records: rows of the whole run.
      output_dir: the run's output directory (shared by all shards).
      share_limits: give this shard ``1/num_shards`` of each model's limits (default); pass
        ``False`` when the shards call different endpoints.
      progress: live progress on stderr, as ``TrioDesigner(progress=...)``.
      on_event: scheduler events, as ``TrioDesigner(on_event=...)``.

    Returns:
      The shard's :class:`ShardManifest` (``status == "complete"`` when all of its row groups
      are on disk).

    Raises:
      ConfigError: the config or the arguments are invalid (before any request).
      SinkError: the shard's directory holds another run (another fingerprint: the message
        names what changed) or another sharding, or writing failed.
      RunInterrupted: the run was interrupted; its finished row groups are kept.
    """
    check_sync_caller("run_shard")
    designer = TrioDesigner(progress=progress, on_event=on_event)

    async def main() -> ShardManifest:
        return await run_shard_async(
            config,
            shard=shard,
            num_shards=num_shards,
            num_records=num_records,
            output_dir=output_dir,
            share_limits=share_limits,
            designer=designer,
        )

    return trio.run(main)


def _probing_by_share(designer: TrioDesigner) -> TrioDesigner:
    """``designer`` with the shards' adaptive limiters (:data:`SHARD_POLICY`). A shallow copy:
    it shares the original's runs, so ``designer.interrupt()`` still stops this one."""
    shared = copy.copy(designer)
    shared.limiter_factory = partial(AdaptiveLimiter, policy=SHARD_POLICY)
    return shared


def _claim(plan: ShardManifest) -> None:
    """Check the shard directory belongs to this sharding (or is new), and record the plan."""
    directory = plan.output_dir
    previous = read_manifest(directory)
    if previous is not None and previous.plan_dict() != plan.plan_dict():
        differs = ", ".join(
            f"{key} {previous.plan_dict()[key]} (now {value})"
            for key, value in plan.plan_dict().items()
            if previous.plan_dict()[key] != value
        )
        raise SinkError(
            f"shard directory '{directory}' holds shard {previous.shard} of a run split "
            f"differently: {differs}; run it with the same number of shards and records, or "
            "use another output directory."
        )
    if previous is None and (directory / METADATA_FILE).exists():
        raise SinkError(
            f"'{directory}' holds a run that is not a shard; use another output directory."
        )
    if previous is None:
        directory.mkdir(parents=True, exist_ok=True)
        _write_manifest(plan)


def _write_manifest(manifest: ShardManifest) -> None:
    data = json.dumps(manifest.to_json_dict(), indent=2).encode() + b"\n"
    write_atomically(manifest.output_dir / SHARD_FILE, data, tmp_dir=manifest.output_dir)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
