"""Hypothesis strategies shared by the property suite: random DAGs of columns."""

from __future__ import annotations

from typing import Literal

import attrs
from hypothesis import strategies as st

from trio_designer._core._tracker import GraphView

Strategy = Literal["cell", "full_column"]


@attrs.frozen
class Dag:
    """A random pipeline shape: column names in topological order, each column's upstream
    columns and strategy."""

    order: tuple[str, ...]
    upstream: dict[str, frozenset[str]]
    strategy: dict[str, Strategy]

    def view(self) -> GraphView:
        downstream: dict[str, set[str]] = {c: set() for c in self.order}
        for column, ups in self.upstream.items():
            for up in ups:
                downstream[up].add(column)
        priority: dict[str, int] = {}
        for column in reversed(self.order):
            priority[column] = 1 + max((priority[d] for d in downstream[column]), default=0)
        return GraphView(
            order=self.order,
            upstream=self.upstream,
            downstream={c: frozenset(d) for c, d in downstream.items()},
            strategy=self.strategy,
            priority=priority,
        )


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
