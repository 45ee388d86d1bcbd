"""The plan of a run: the column dependency graph, built once from a validated config.

:class:`~trio_designer._plan._graph.ExecutionGraph` is the only graph type: the scheduler's
completion tracker reads it through the small ``TaskGraph`` protocol it declares
(:mod:`trio_designer._core._tracker`), so the pure ``_core`` layer never imports this package.
Pure: no trio, no I/O.
"""

from __future__ import annotations

from ._graph import ExecutionGraph as ExecutionGraph

__all__ = ["ExecutionGraph"]
