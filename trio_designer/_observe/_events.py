"""The scheduler's point events: their names, their fields, and how fields are shaped.

A run emits a few point events (``RunState.emit``) next to its task records; traces store
them, the exporters draw them, and ``TrioDesigner(on_event=...)`` receives them live:

=========================  ====================================================================
``row_group_admitted``     a row group started: ``row_group``, ``rows``
``row_group_checkpointed`` a row group was written: ``row_group``, ``rows`` (surviving rows)
``salvage_round``          deferred tasks retried: ``row_group``, ``tasks``
``limit_change``           an endpoint's adaptive limit moved: see :func:`limit_change_fields`
``early_shutdown``         the error-rate gate stopped the run: ``error_rate``
``run_failed``             an error no row is to blame for stopped the run (a provider that
                           cannot work at all): ``error_class``
=========================  ====================================================================

Fields are plain values (str, int, float, bool, None); :func:`jsonable_fields` makes sure of
it for exporters that must write JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .._core._limits import LimitChange

__all__ = [
    "EARLY_SHUTDOWN_EVENT",
    "LIMIT_CHANGE_EVENT",
    "ROW_GROUP_ADMITTED_EVENT",
    "ROW_GROUP_CHECKPOINTED_EVENT",
    "RUN_FAILED_EVENT",
    "SALVAGE_ROUND_EVENT",
    "int_field",
    "jsonable_fields",
    "limit_change_fields",
]

ROW_GROUP_ADMITTED_EVENT: Final = "row_group_admitted"
ROW_GROUP_CHECKPOINTED_EVENT: Final = "row_group_checkpointed"
SALVAGE_ROUND_EVENT: Final = "salvage_round"
LIMIT_CHANGE_EVENT: Final = "limit_change"
EARLY_SHUTDOWN_EVENT: Final = "early_shutdown"
RUN_FAILED_EVENT: Final = "run_failed"


def limit_change_fields(endpoint: str, change: LimitChange) -> dict[str, object]:
    """The fields of a ``limit_change`` event: ``endpoint``, ``old``, ``new``, ``reason``,
    ``detail`` (a sentence describing the change).

    Record one per adaptive-limit change (``open_model_registry(on_limit_change=...)`` calls
    back with the endpoint name and the change)::

        state.emit("limit_change", **limit_change_fields(endpoint, change))
    """
    return {
        "endpoint": endpoint,
        "old": change.old,
        "new": change.new,
        "reason": change.reason,
        "detail": change.describe(),
    }


def int_field(fields: Mapping[str, object], key: str) -> int:
    """An integer field of an event (a limit, a row count); 0 when missing or not a number."""
    value = fields.get(key)
    return int(value) if isinstance(value, int | float | str) else 0


def jsonable_fields(fields: Mapping[str, object]) -> dict[str, Any]:
    """The fields with string keys and JSON scalar values (anything else as its ``str``)."""
    return {
        str(k): v if isinstance(v, str | int | float | bool | None) else str(v)
        for k, v in fields.items()
    }
