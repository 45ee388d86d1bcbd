"""How a run is executed: row groups, concurrency bounds, failure policy, seed, traces.

None of these knobs changes *what* a deterministic pipeline writes (the seed aside); they
change how much work is in flight and when a failing run gives up. Defaults suit a laptop
talking to one endpoint.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import validators as v

from ._validators import checked, finite, is_bool, is_int, non_blank, optional


def _error_rate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"'{attribute.name}' must be > 0 and <= 1: {value}")


@attrs.frozen(kw_only=True)
class RunConfig:
    """Execution settings of one run.

    Attributes:
      row_group_size: rows per row group, ``> 0`` (default 1000). A row group is the unit of
        admission, checkpointing (one parquet file) and memory release.
      max_row_groups_in_flight: row groups worked on at once, ``>= 1`` (default 3).
      max_submitted_tasks: cell / full-column tasks dispatched at once, ``>= 1``
        (default 256). LLM-bound tasks hand their slot over before waiting on a model.
      max_llm_wait_tasks: LLM-bound tasks parked on a model call at once, ``>= 1``
        (default 1024).
      salvage_max_rounds: times a row group re-runs its deferred (retryable) cells once only
        deferred work is left, ``>= 0`` (default 2); still-failing cells then drop their row.
      shutdown_error_rate: fraction of non-retryable failures at which the run shuts down
        early, among the outcomes of the last ``shutdown_error_window`` tasks to *start* (a
        slow failure counts among the tasks it started with, so a tail of slow failures after a
        healthy run does not stop it; ``_core/_errorwindow.py``). Finished row groups are
        kept; the row groups in flight keep their rows complete in every column (written
        partial: a resume generates them again whole). ``0 < x <= 1`` (default 0.5; 1.0
        disables it).
      shutdown_error_window: the size of that window, ``>= 1`` (default 10); the gate
        judges nothing before this many tasks have finished.
      seed: the run seed; every random draw derives from (seed, row, column) (default 0).
      trace: record one trace per task (column, row, timings, status) (default false).
        Not part of the config fingerprint.
      non_llm_concurrency: the sync baseline engine's bound on concurrent non-LLM cell tasks,
        ``>= 1`` (default 4).
      cache_dir: the directory of the response cache (default ``None``:
        ``$XDG_CACHE_HOME/trio_designer``, else ``~/.cache/trio_designer``). ``TrioDesigner``'s
        ``cache_dir`` and ``--cache-dir`` override it. Not part of the config fingerprint.
      max_cost: stop admitting row groups once the next one could take the run's cost past
        this (in the currency of the models' prices; every model needs a ``price``), ``> 0``,
        or ``None`` (default: no limit). Row groups in flight finish; the run ends with status
        ``budget_exhausted`` and resumes where it stopped. Not part of the fingerprint.
      max_tokens: the same for input + output tokens, ``>= 1`` or ``None``.
      max_requests: the same for requests sent, ``>= 1`` or ``None``.
    """

    row_group_size: int = attrs.field(default=1000, validator=checked(is_int, v.gt(0)))
    max_row_groups_in_flight: int = attrs.field(default=3, validator=checked(is_int, v.ge(1)))
    max_submitted_tasks: int = attrs.field(default=256, validator=checked(is_int, v.ge(1)))
    max_llm_wait_tasks: int = attrs.field(default=1024, validator=checked(is_int, v.ge(1)))
    salvage_max_rounds: int = attrs.field(default=2, validator=checked(is_int, v.ge(0)))
    shutdown_error_rate: float = attrs.field(default=0.5, validator=checked(finite, _error_rate))
    shutdown_error_window: int = attrs.field(default=10, validator=checked(is_int, v.ge(1)))
    seed: int = attrs.field(default=0, validator=checked(is_int))
    trace: bool = attrs.field(default=False, validator=checked(is_bool))
    non_llm_concurrency: int = attrs.field(default=4, validator=checked(is_int, v.ge(1)))
    cache_dir: str | None = attrs.field(default=None, validator=optional(checked(non_blank)))
    max_cost: float | None = attrs.field(
        default=None, validator=optional(checked(finite, v.gt(0)))
    )
    max_tokens: int | None = attrs.field(
        default=None, validator=optional(checked(is_int, v.ge(1)))
    )
    max_requests: int | None = attrs.field(
        default=None, validator=optional(checked(is_int, v.ge(1)))
    )
