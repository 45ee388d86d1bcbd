"""Which cell a model call belongs to: a context variable the engine sets around a cell.

The engine gives an LLM-bound cell a :class:`~trio_designer._core._cellusage.CellUsage` and
runs its generator inside :func:`recording`; every request the cell makes through a
:class:`~trio_designer.models._registry.ModelHandle` adds to it (:func:`current`). A context
variable, because the calls happen deep inside generators (an LLM column's re-asks, a custom
column's own calls) that know nothing of the engine; a trio task (and any task it spawns)
sees the value its spawner set, and each task sets its own. Outside a cell (``check``, a
probe, a generator called by hand) there is no tally and nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from .._core._cellusage import CellUsage

__all__ = ["current", "recording", "start_recording", "stop_recording"]

_CELL_USAGE: ContextVar[CellUsage | None] = ContextVar("trio_designer_cell_usage", default=None)


def current() -> CellUsage | None:
    """The tally of the cell being generated, or ``None`` outside one."""
    return _CELL_USAGE.get()


@contextmanager
def recording(usage: CellUsage) -> Iterator[CellUsage]:
    """Count the model calls made inside the block into ``usage``."""
    token = _CELL_USAGE.set(usage)
    try:
        yield usage
    finally:
        _CELL_USAGE.reset(token)


def start_recording(usage: CellUsage) -> Token[CellUsage | None]:
    """:func:`recording` without a context manager, for the engine's hot path (a cache hit
    served inline): pass the token to :func:`stop_recording` in a ``finally``."""
    return _CELL_USAGE.set(usage)


def stop_recording(token: Token[CellUsage | None]) -> None:
    """End what :func:`start_recording` began."""
    _CELL_USAGE.reset(token)
