"""Resuming: when a stored run record may be continued, and what the continued record keeps.

A run is identified by its *fingerprint* (``config_fingerprint(config)``, computed by
``trio_designer.config``) and its row group size: both fix which rows each row group holds, so
a stored row group can only be kept by a run with the same two. The rules, in order:

* nothing stored: a fresh record;
* another fingerprint or another row group size: refused (a different run);
* written row groups and ``resume`` false: refused (they would be written twice);
* written row groups and a record count that changes their plan: refused. A run may *grow*
  by whole new row groups (``num_records`` larger, the stored last row group full), but not
  shrink, and not grow past a short last row group (it would stay short, and the dataset
  would come out short of the new count);
* otherwise the stored record continues: its row groups, schema and ``started_at`` are kept;
  status, ``num_records``, ``config`` and ``summary`` take the new run's values.

Both sinks apply these rules through :func:`opened_metadata` (the parquet sink to
``metadata.json``, the memory sink to the record of its previous session).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .._exceptions import RESUME_ARGUMENT, SinkError
from ._metadata import RunMetadata, utc_now

__all__ = ["opened_metadata"]


def opened_metadata(
    previous: RunMetadata | None,
    *,
    fingerprint: str,
    config: Mapping[str, Any],
    num_records: int,
    row_group_size: int,
    resume: bool,
    where: str,
    remedy: str,
) -> RunMetadata:
    """The run record of a run being opened: fresh, or continuing ``previous``.

    Raises:
      SinkError: ``previous`` is a different run (another fingerprint or row group size), or
        it has written row groups and ``resume`` is false.
    """
    now = utc_now()
    fresh = RunMetadata(
        fingerprint=fingerprint,
        config=config,
        num_records=num_records,
        row_group_size=row_group_size,
        status="running",
        started_at=now,
        updated_at=now,
    )
    if previous is None:
        return fresh
    if previous.fingerprint != fingerprint:
        raise SinkError(
            f"{where} holds a different run (fingerprint {previous.fingerprint}, this run "
            f"{fingerprint}); {remedy}."
        )
    if previous.row_group_size != row_group_size:
        raise SinkError(
            f"{where} holds a run with row_group_size {previous.row_group_size}, but this run "
            f"uses {row_group_size}; {remedy}."
        )
    if previous.row_groups and not resume:
        raise SinkError(
            f"{where} already holds {len(previous.row_groups)} written row group(s) of this "
            f"run; pass {RESUME_ARGUMENT} to continue it, or {remedy}."
        )
    if previous.row_groups and not _plan_extends(previous, num_records):
        # The row groups already on disk must keep their plan: a run may grow by whole new
        # row groups, but not shrink, and not grow past a short last group (it would stay
        # short and the dataset would come out short of the new count).
        raise SinkError(
            f"{where} holds a run of {previous.num_records} records in row groups of "
            f"{previous.row_group_size}; it can be resumed with the same number of records"
            f"{_growth_hint(previous)}, not {num_records}; or {remedy}."
        )
    return attrs.evolve(
        fresh,
        started_at=previous.started_at,
        schema=previous.schema,
        row_groups=previous.row_groups,
    )


def _plan_extends(previous: RunMetadata, num_records: int) -> bool:
    """Whether ``num_records`` keeps every row group of ``previous`` as planned."""
    if num_records == previous.num_records:
        return True
    return num_records > previous.num_records and (
        previous.num_records % previous.row_group_size == 0
    )


def _growth_hint(previous: RunMetadata) -> str:
    if previous.num_records % previous.row_group_size == 0:
        return " or more"
    return ""
