"""Hypothesis strategies shared by the property suite: random DAGs of columns."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from hypothesis import strategies as st

from trio_designer import CustomColumn, PipelineConfig
from trio_designer._plan import ExecutionGraph

Strategy = Literal["cell", "full_column"]


@attrs.frozen
class Dag:
    """A random pipeline shape: column names in topological order, each column's upstream
    columns and strategy."""

    order: tuple[str, ...]
    upstream: dict[str, frozenset[str]]
    strategy: dict[str, Strategy]

    def graph(self) -> ExecutionGraph:
        """The engine's execution graph of this shape (custom columns, never called)."""
        columns = [
            CustomColumn(
                name=c,
                function=_never_called,
                strategy=self.strategy[c],
                depends_on=tuple(sorted(self.upstream[c])),
            )
            for c in self.order
        ]
        graph = ExecutionGraph.from_config(PipelineConfig(columns=columns))
        assert graph.order == self.order  # declared in topological order: Kahn keeps it
        return graph


def _never_called(row: Any) -> None:
    raise AssertionError("the tracker never runs generators")


@st.composite
def dags(draw: st.DrawFn, min_columns: int = 1, max_columns: int = 10) -> Dag:
    """DAGs of 1-10 columns; each column depends on a random subset of earlier ones and is a
    cell or full-column column."""
    n = draw(st.integers(min_columns, max_columns))
    order = tuple(f"c{i}" for i in range(n))
    upstream: dict[str, frozenset[str]] = {}
    strategy: dict[str, Strategy] = {}
    for i, column in enumerate(order):
        ups = draw(st.sets(st.sampled_from(order[:i]), max_size=3)) if i else set()
        upstream[column] = frozenset(ups)
        strategy[column] = draw(st.sampled_from(("cell", "cell", "full_column")))
    return Dag(order, upstream, strategy)
