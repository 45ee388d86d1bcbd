"""What progress reads of a running run: a small read-only view, as protocols.

Progress reporters poll counters the engine keeps anyway; they never change them and never
import the engine. The engine's ``RunState`` (and the model registry it holds) satisfy these
protocols structurally, and so does any stand-in with the same attributes (tests use a fake
registry). Keeping the view here, beside its only readers, is what lets ``_observe`` sit below
``_engine`` with no import cycle.

Every member is read-only (a property in protocol terms); a plain attribute satisfies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Protocol

__all__ = [
    "ColumnTally",
    "EndpointIdentity",
    "LimiterSnapshot",
    "LimiterView",
    "ModelsView",
    "RunSettings",
    "RunView",
    "TokenUsage",
]


class ColumnTally(Protocol):
    """One column's outcome counters so far (the engine's ``ColumnCounts``)."""

    @property
    def ok(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def failed(self) -> int: ...


class TokenUsage(Protocol):
    """One model alias's usage so far (``ModelUsage``); progress shows output tokens/s, and the
    tokens and cost so far."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cost(self) -> float: ...


class EndpointIdentity(Protocol):
    """Which endpoint a model alias calls (``ModelHandle``)."""

    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def priced(self) -> bool:
        """Whether the alias has a ``price`` (else its cost is unknown, not zero)."""
        ...


class LimiterSnapshot(Protocol):
    """One endpoint limiter's numbers right now (``LimiterStatistics``)."""

    @property
    def limit(self) -> int: ...
    @property
    def ceiling(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def rate_limited(self) -> int: ...
    @property
    def cooldown_remaining(self) -> float: ...


class LimiterView(Protocol):
    """An endpoint's limiter, as far as progress is concerned."""

    def statistics(self) -> LimiterSnapshot: ...


class ModelsView(Protocol):
    """The model registry, read-only (``ModelRegistry``)."""

    def usage(self) -> Mapping[str, TokenUsage]:
        """Alias → usage so far."""
        ...

    def model(self, alias: str) -> EndpointIdentity:
        """The alias's handle (its provider and model name the endpoint)."""
        ...

    def limiters(self) -> Mapping[str, LimiterView]:
        """Endpoint name (``"provider:model"``) → its limiter."""
        ...


class RunSettings(Protocol):
    """The run's settings (``RunConfig``) progress needs."""

    @property
    def row_group_size(self) -> int: ...


class RunView(Protocol):
    """A running run, read-only: what a progress reporter polls (the engine's ``RunState``).

    Attributes:
      counts: column → its outcome counters, in execution order.
      rows_written: surviving rows of row groups written so far.
      rows_dropped: rows dropped by failures in row groups written so far.
      num_records: rows requested.
      skip_row_groups: row groups a resumed run found already written (not generated again).
      run: the run's settings.
      models: the model registry, or ``None`` without models.
    """

    @property
    def counts(self) -> Mapping[str, ColumnTally]: ...
    @property
    def rows_written(self) -> int: ...
    @property
    def rows_dropped(self) -> int: ...
    @property
    def num_records(self) -> int: ...
    @property
    def skip_row_groups(self) -> Set[int]: ...
    @property
    def run(self) -> RunSettings: ...
    @property
    def models(self) -> ModelsView | None: ...
