"""Resuming: when a stored run record may be continued, and what the continued record keeps.

A run is identified by its *fingerprint* (``config_fingerprint(config)``, computed by
``trio_designer.config``: the config, the code of its custom functions, its input files) and
its row group size: both fix which rows each row group holds, so a stored row group can only
be kept by a run with the same two. The rules, in order:

* nothing stored: a fresh record;
* another fingerprint: refused, listing what changed field by field (``columns[3].prompt
  changed``, ``custom function mymod:clean changed``) from the two records' fingerprint bases,
  unless ``force_resume``: then the run continues and the record keeps a ``forced_resumes``
  entry saying when, from which fingerprint, and what had changed;
* another row group size: refused (a different run, even forced: the row groups would not
  line up);
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

from .._exceptions import FORCE_RESUME_ARGUMENT, RESUME_ARGUMENT, SinkError
from ._metadata import RunMetadata, utc_now

__all__ = ["describe_changes", "opened_metadata"]


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
    fingerprint_basis: Mapping[str, Any] | None = None,
    force_resume: bool = False,
) -> RunMetadata:
    """The run record of a run being opened: fresh, or continuing ``previous``.

    Raises:
      SinkError: ``previous`` is a different run (another fingerprint, unless
        ``force_resume``, or another row group size), or it has written row groups and neither
        ``resume`` nor ``force_resume`` is set.
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
        fingerprint_basis=fingerprint_basis,
    )
    if previous is None:
        return fresh
    forced: tuple[Mapping[str, Any], ...] = previous.forced_resumes
    if previous.fingerprint != fingerprint:
        changes = describe_changes(previous.fingerprint_basis, fingerprint_basis)
        if not force_resume:
            raise SinkError(_refusal(where, previous.fingerprint, fingerprint, changes, remedy))
        forced = (
            *forced,
            {"at": now, "previous_fingerprint": previous.fingerprint, "changes": changes},
        )
    resume = resume or force_resume
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
        forced_resumes=forced,
    )


#: How many changes a refusal lists before it summarises the rest.
MAX_CHANGES_LISTED = 20


def _refusal(where: str, before: str, now: str, changes: list[str], remedy: str) -> str:
    listed = "\n".join(f"  - {change}" for change in changes[:MAX_CHANGES_LISTED])
    if len(changes) > MAX_CHANGES_LISTED:
        listed += f"\n  - ... and {len(changes) - MAX_CHANGES_LISTED} more"
    return (
        f"{where} holds a different run (fingerprint {before}, this run {now}); what changed:"
        f"\n{listed}\nResuming would mix values made by both in one dataset. Start a new "
        f"run: {remedy}; or pass {FORCE_RESUME_ARGUMENT} to continue it anyway (the rows "
        "already written keep their old values; the forced resume is recorded in "
        "metadata.json)."
    )


def describe_changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> list[str]:
    """What differs between two fingerprint bases, one line per change.

    ``columns[3].prompt changed``, ``columns[4] added``, ``run.seed changed``,
    ``custom function mymod:clean changed``, ``input file columns[0].path changed``.
    """
    if before is None or after is None:
        return [
            "unknown: the stored run was recorded without the parts of its fingerprint (by an "
            "older version); compare its metadata.json 'config' with this config"
        ]
    changes = _json_changes(before.get("config"), after.get("config"), "")
    for section, label in (("code", "custom function"), ("files", "input file")):
        old, new = before.get(section) or {}, after.get(section) or {}
        for key in sorted(set(old) | set(new)):
            if key not in old:
                changes.append(f"{label} {key} added")
            elif key not in new:
                changes.append(f"{label} {key} removed")
            elif old[key] != new[key]:
                changes.append(f"{label} {key} changed")
    return changes or ["nothing the record kept (the fingerprints were made differently)"]


def _json_changes(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            child = f"{path}.{key}" if path else str(key)
            if key not in new:
                changes.append(f"{child} removed")
            elif key not in old:
                changes.append(f"{child} added")
            else:
                changes.extend(_json_changes(old[key], new[key], child))
        return changes
    if isinstance(old, list) and isinstance(new, list) and _all_mappings(old, new):
        changes = []
        for index in range(max(len(old), len(new))):
            child = f"{path}[{index}]"
            if index >= len(new):
                changes.append(f"{child} removed")
            elif index >= len(old):
                changes.append(f"{child} added")
            else:
                changes.extend(_json_changes(old[index], new[index], child))
        return changes
    return [] if old == new else [f"{path or 'the config'} changed"]


def _all_mappings(*lists: list[Any]) -> bool:
    return all(isinstance(item, Mapping) for items in lists for item in items)


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
