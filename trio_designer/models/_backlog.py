"""Layer 3, dispatch side: how many tasks of one model endpoint may be dispatched at once.

Layer 3 of the design is "how fast does each endpoint accept work". Its main part is the
per-endpoint limiter (:mod:`trio_designer.models._limiter`): it decides how many *requests* an
endpoint has in flight and parks the rest. This module is its second, smaller part: it decides
how many *tasks* calling an endpoint the dispatcher may have started and not yet finished (held
in a slot, parked on the endpoint's limiter, or waiting for its answer). The cap is
``BACKLOG_FACTOR x max_parallel_requests`` per endpoint: enough parked tasks to refill every
request slot the moment it frees, no more.

Why a second throttle: without it, the cells of the highest-priority model (a generator, say)
fill every submission and LLM-wait slot while parked on their own limiter, and a second model
(its judge) idles for lack of a slot although its endpoint has capacity. With the cap, the
dispatcher skips a saturated endpoint's columns and starts other work; when a task of that
endpoint ends, the dispatcher is woken to look again.

Which columns it applies to: LLM-bound columns that call exactly one model (every LLM column; a
custom ``llm_bound`` column with one entry in ``models``). A column calling several models (or
none we know) is never held back: there is no single endpoint to charge it to.

Pure bookkeeping (no trio, no I/O): the async engine calls :meth:`EndpointBacklog.eligible`
when it picks the next task, :meth:`~EndpointBacklog.enter` when it starts one and
:meth:`~EndpointBacklog.exit` when it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import attrs

from ..config import ModelConfig

__all__ = ["BACKLOG_FACTOR", "BacklogStatistics", "EndpointBacklog"]

#: Dispatched tasks allowed per unit of an endpoint's ``max_parallel_requests``.
BACKLOG_FACTOR = 2


@attrs.frozen
class BacklogStatistics:
    """One endpoint's backlog: tasks dispatched and not finished, against its cap."""

    dispatched: int
    """Tasks of this endpoint dispatched now (running, parked on the limiter, or waiting)."""
    cap: int
    """The most that may be dispatched at once (``BACKLOG_FACTOR x max_parallel_requests``)."""
    peak: int
    """The most ever dispatched at once; never above ``cap``."""


class EndpointBacklog:
    """Per-endpoint caps on dispatched tasks (see the module docstring).

    Invariant: for every endpoint ``e``, ``0 <= dispatched[e] <= cap[e]`` at all times:
    :meth:`enter` is called only for a column :meth:`eligible` accepted, with no checkpoint in
    between, and every :meth:`enter` is matched by exactly one :meth:`exit`. Checked by
    ``tests/test_backlog.py::test_the_cap_holds_and_every_place_comes_back``; what it is for by
    ``tests/test_adaptive_e2e.py::test_a_saturated_model_never_starves_another``.

    Args:
      endpoint_of: every column -> the endpoint its tasks are charged to, or ``None``.
      caps: endpoint -> the most tasks it may have dispatched at once (``>= 1``).

    Raises:
      ValueError: a cap below 1, or a column charged to an endpoint without a cap.
    """

    def __init__(self, endpoint_of: Mapping[str, str | None], caps: Mapping[str, int]) -> None:
        for endpoint, cap in caps.items():
            if cap < 1:
                raise ValueError(f"endpoint {endpoint!r}: a backlog cap must be >= 1, got {cap}")
        unknown = {e for e in endpoint_of.values() if e is not None and e not in caps}
        if unknown:
            raise ValueError(f"endpoints without a backlog cap: {sorted(unknown)}")
        self._endpoint_of = dict(endpoint_of)
        self._cap = dict(caps)
        self._dispatched = dict.fromkeys(caps, 0)
        self._peak = dict.fromkeys(caps, 0)
        self._listeners: set[Callable[[], None]] = set()

    @classmethod
    def for_columns(cls, column_models: Mapping[str, Sequence[ModelConfig]]) -> EndpointBacklog:
        """The backlog of a run.

        Args:
          column_models: every column -> the models its tasks wait on (empty for a column that
            waits on no model: samplers, expressions, custom columns without ``llm_bound``).

        A column that waits on exactly one model is charged to that model's endpoint; the cap
        of an endpoint is ``BACKLOG_FACTOR x`` the smallest ``max_parallel_requests`` among the
        models of the columns charged to it.
        """
        # Not at module level: the registry imports the HTTP client, which `import trio_designer`
        # does not load until a run opens its models.
        from ._registry import endpoint_name

        endpoint_of: dict[str, str | None] = {}
        caps: dict[str, int] = {}
        for column, models in column_models.items():
            if len(models) != 1:
                endpoint_of[column] = None
                continue
            (model,) = models
            endpoint = endpoint_name(model.provider, model.model)
            endpoint_of[column] = endpoint
            cap = BACKLOG_FACTOR * model.max_parallel_requests
            caps[endpoint] = min(caps.get(endpoint, cap), cap)
        return cls(endpoint_of, caps)

    def eligible(self, column: str) -> bool:
        """Whether a task of ``column`` may be dispatched now (its endpoint is not saturated).

        Called for every candidate column each time the dispatcher picks a task: keep it cheap.
        """
        endpoint = self._endpoint_of[column]
        return endpoint is None or self._dispatched[endpoint] < self._cap[endpoint]

    def enter(self, column: str) -> None:
        """A task of ``column`` was dispatched (``eligible(column)`` was true just before)."""
        endpoint = self._endpoint_of[column]
        if endpoint is None:
            return
        dispatched = self._dispatched[endpoint] + 1
        assert dispatched <= self._cap[endpoint], f"{endpoint}: backlog above its cap"
        self._dispatched[endpoint] = dispatched
        if dispatched > self._peak[endpoint]:
            self._peak[endpoint] = dispatched

    def exit(self, column: str) -> None:
        """A task of ``column`` ended (or moved on to a column of no endpoint). When this frees
        a place at a saturated endpoint, every listener is called."""
        endpoint = self._endpoint_of[column]
        if endpoint is None:
            return
        self._dispatched[endpoint] -= 1
        if self._dispatched[endpoint] == self._cap[endpoint] - 1:
            for wake in list(self._listeners):
                wake()

    def subscribe(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` whenever a saturated endpoint frees a place (a dispatcher that
        skipped that endpoint's columns may now start one)."""
        self._listeners.add(wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        """Stop calling ``wake`` (no-op if it was not subscribed)."""
        self._listeners.discard(wake)

    def statistics(self) -> dict[str, BacklogStatistics]:
        """Endpoint -> its backlog now."""
        return {
            endpoint: BacklogStatistics(
                dispatched=self._dispatched[endpoint],
                cap=self._cap[endpoint],
                peak=self._peak[endpoint],
            )
            for endpoint in self._cap
        }
