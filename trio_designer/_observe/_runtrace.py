"""A recorded run as the exporters read it: tasks, events, column order, model endpoints.

:func:`load_run_trace` reads an output directory's ``trace.json`` (through
:func:`~._tracefile.read_trace`) and, when it is there, ``metadata.json`` for what the trace
alone does not say: the order the config declares its columns in, which model endpoints each
column calls, and each endpoint's ceiling. The result, :class:`RunTrace`, is all the Perfetto
export (:mod:`._perfetto`) and the timeline picture (:mod:`._plot`) need.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .._exceptions import TRACE_SETTING, TraceExportError
from .._sink import METADATA_FILE, TRACE_FILE
from ..config import ModelConfig
from ..config._models import endpoint_name
from ._trace import SchedulerEvent, TaskTrace
from ._tracefile import read_trace

__all__ = ["RunTrace", "load_run_trace"]


@attrs.frozen(kw_only=True)
class RunTrace:
    """A recorded run, as the exporters read it from an output directory.

    ``endpoints`` and ``ceilings`` are dicts, so instances compare by value but are not
    hashable.

    Attributes:
      source: the output directory.
      engine: ``"async"`` or ``"sync"``.
      tasks: every task attempt, in recording order.
      events: the scheduler events, in time order.
      columns: display order: the config's declaration order when ``metadata.json`` is there
        (columns without any task left out), else the order of first dispatch.
      endpoints: column -> the model endpoints (``"provider:model"``) it calls; empty without
        ``metadata.json`` or without models.
      ceilings: endpoint -> its ceiling (the smallest ``max_parallel_requests`` of its
        aliases): the adaptive limit starts there.
    """

    source: Path
    engine: str
    tasks: tuple[TaskTrace, ...]
    events: tuple[SchedulerEvent, ...]
    columns: tuple[str, ...]
    endpoints: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    ceilings: Mapping[str, int] = attrs.field(factory=dict)

    @property
    def end(self) -> float:
        """When the last task finished or the last event happened (seconds since the start)."""
        times = [t.finished for t in self.tasks] + [e.time for e in self.events]
        return max(times, default=0.0)

    def endpoint_names(self) -> tuple[str, ...]:
        """Every endpoint some column calls, in order of first use."""
        return tuple(dict.fromkeys(e for c in self.columns for e in self.endpoints.get(c, ())))


def load_run_trace(output_dir: Path) -> RunTrace:
    """Read ``trace.json`` (and, for column order and models, ``metadata.json``).

    Raises:
      TraceExportError: no ``trace.json`` (the run was not traced), or it is not a
        trio_designer trace of a version this module reads.
    """
    output_dir = Path(output_dir)
    document = read_trace(output_dir)
    where = output_dir / TRACE_FILE
    try:
        tasks = tuple(TaskTrace(**t) for t in document["tasks"])
        events = tuple(
            sorted(
                (SchedulerEvent(**e) for e in document["events"]),
                key=lambda e: e.time,
            )
        )
        engine = str(document["engine"])
    except (KeyError, TypeError) as exc:
        raise TraceExportError(
            f"{where} is not a trio_designer trace ({exc!r}); record it again with "
            f"{TRACE_SETTING}."
        ) from exc
    config = _read_config(output_dir)
    endpoints, ceilings = _model_endpoints(config)
    return RunTrace(
        source=output_dir,
        engine=engine,
        tasks=tasks,
        events=events,
        columns=_column_order(tasks, config),
        endpoints=endpoints,
        ceilings=ceilings,
    )


def _read_config(output_dir: Path) -> Mapping[str, Any]:
    """The run's config as stored in ``metadata.json``, or ``{}`` if it cannot be read (the
    trace alone still exports, without model tracks)."""
    try:
        metadata = json.loads((output_dir / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    config = metadata.get("config") if isinstance(metadata, dict) else None
    return config if isinstance(config, dict) else {}


def _model_defaults() -> tuple[str, int]:
    """The default provider and ``max_parallel_requests`` (the stored config leaves defaults
    out)."""
    fields = attrs.fields(ModelConfig)
    parallel = fields.max_parallel_requests.default
    return str(fields.provider.default), 0 if parallel is None else int(parallel)


def _model_endpoints(
    config: Mapping[str, Any],
) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]:
    """Column -> endpoints it calls, and endpoint -> ceiling, from a stored config dict."""
    default_provider, default_parallel = _model_defaults()
    alias_endpoint: dict[str, str] = {}
    ceilings: dict[str, int] = {}
    for model in _dicts(config.get("models")):
        name = endpoint_name(str(model.get("provider", default_provider)), str(model.get("model")))
        alias_endpoint[str(model.get("alias"))] = name
        parallel = int(model.get("max_parallel_requests", default_parallel))
        ceilings[name] = min(ceilings.get(name, parallel), parallel)
    endpoints: dict[str, tuple[str, ...]] = {}
    for column in _dicts(config.get("columns")):
        aliases = [column["model"]] if "model" in column else list(column.get("models", ()))
        called = tuple(dict.fromkeys(alias_endpoint[a] for a in aliases if a in alias_endpoint))
        if called:
            endpoints[str(column.get("name"))] = called
    return endpoints, ceilings


def _column_order(tasks: Sequence[TaskTrace], config: Mapping[str, Any]) -> tuple[str, ...]:
    traced = {t.column for t in tasks}
    declared = [str(c.get("name")) for c in _dicts(config.get("columns"))]
    by_dispatch = [t.column for t in sorted(tasks, key=lambda t: t.dispatched)]
    ordered = [c for c in declared if c in traced] + by_dispatch
    return tuple(dict.fromkeys(ordered))


def _dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))
