"""The column dependency graph: who waits for whom, in what order, and what is urgent.

Design note
-----------
Edges come from two places: the Jinja templates of each column (``prompt``,
``system_prompt``, ``expr``, ``skip_when``), read by
:func:`~trio_designer.config._templates.template_facts`, and explicit dependencies
(``depends_on``, a subcategory's parent). A name a template reads that is neither a column nor
a Jinja global (``range``, ``dict``, ``namespace``...) is an error naming the closest column;
so are unknown filters and tests, and a field of a structured column that its schema does not
have (``{{ product.nmae }}``: "did you mean 'name'?").

The order is Kahn's algorithm with ties broken by declaration order, so the same config
always yields the same order. Whatever Kahn cannot place lies on or behind a cycle; walking
*upstream* from such a column never dead-ends (each has an unplaced upstream), so the walk
finds a cycle, reported in dependency order (``summary -> analysis -> summary``).

``priority`` is the number of columns on the longest path from a column to a sink, counting
itself. The scheduler dispatches higher priority first (critical path first): on the Deep
shape (topic -> summary -> analysis -> conclusion, topic -> trivia) that is 4, 3, 2, 1 and 1
for trivia, so trivia waits while the long chain proceeds.

Everything here is pure: no I/O, no network, O(C + E) for C columns and E edges (plus the
template parsing).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal, TypeVar

import attrs

from .._core._jsonschema import path_problem
from .._core._suggest import did_you_mean
from .._exceptions import ConfigError
from ..config import ColumnConfig, LLMStructuredColumn, PipelineConfig, validate_references
from ..config._columns import (
    SeedColumn,
    default_strategy,
    explicit_dependencies,
    is_llm_bound,
    template_fields,
)
from ..config._templates import template_facts
from ..config._validators import JINJA_GLOBALS

V = TypeVar("V")


@attrs.frozen(hash=False)
class ExecutionGraph:
    """The static dependency graph of a pipeline's columns.

    Build it with :meth:`from_config`, which validates the config first. The graph compares by
    value and is not hashable (it holds mappings).

    Attributes:
      order: every column, topologically sorted (Kahn; ties in declaration order).
      upstream: column -> the columns it reads directly.
      downstream: column -> the columns that read it directly.
      strategy: column -> ``"cell"`` or ``"full_column"`` (from the config).
      llm_bound: column -> whether its tasks wait on a model.
      priority: column -> number of columns on the longest path from it to a sink, counting
        itself (dispatch the largest first).
      configs: column -> its config, in declaration order.
    """

    order: tuple[str, ...]
    upstream: Mapping[str, frozenset[str]]
    downstream: Mapping[str, frozenset[str]]
    strategy: Mapping[str, Literal["cell", "full_column"]]
    llm_bound: Mapping[str, bool]
    priority: Mapping[str, int]
    configs: Mapping[str, ColumnConfig]

    @classmethod
    def from_config(
        cls, config: PipelineConfig, *, seed_columns: Sequence[str] | None = None
    ) -> ExecutionGraph:
        """Validate ``config`` and build its graph. Sends no request; needs no network.

        Args:
          config: the pipeline.
          seed_columns: the columns of the pipeline's seed (``OpenSeed.columns``), roots of
            the graph; those not declared (``kind: seed``)
            get a :class:`~trio_designer.config.SeedColumn` with ``drop`` from ``seed.drop``.
            ``None`` with a seed in the config: the seed is opened here to learn them (its
            metadata is read; a CSV is parsed). They are added after the declared columns, so
            problems keep the declared columns' indices.

        Raises:
          ConfigError: listing every problem: those of
            :func:`~trio_designer.config.validate_references`, template syntax errors,
            template references to unknown columns or to the column itself, cycles, and
            those of the seed (``trio_designer._seed.open_seed``).
        """
        if seed_columns is None and config.seed is not None:
            from .._seed import open_seed

            opened = open_seed(config)
            seed_columns = () if opened is None else opened.columns
        config = _with_seed_columns(config, seed_columns or ())
        problems = validate_references(config, columns_complete=True)
        upstream, template_problems = _dependencies(config)
        problems += template_problems
        # Ties in the order follow declaration, with the seed's columns first (roots, and the
        # first columns of the output).
        implied = [c.name for c in config.columns if c.name in set(seed_columns or ())]
        names = implied + [c.name for c in config.columns if c.name not in implied]
        order, leftover = _kahn(names, upstream)
        problems += [
            f"dependency cycle: {' -> '.join(cycle)}"
            for cycle in _cycles(names, upstream, leftover)
        ]
        if problems:
            raise ConfigError(problems)
        downstream = _invert(names, upstream)
        return cls(
            order=tuple(order),
            upstream=_frozen({name: frozenset(upstream[name]) for name in names}),
            downstream=_frozen({name: frozenset(downstream[name]) for name in names}),
            strategy=_frozen({c.name: default_strategy(c) for c in config.columns}),
            llm_bound=_frozen({c.name: is_llm_bound(c) for c in config.columns}),
            priority=_frozen(_priorities(order, downstream)),
            configs=_frozen({c.name: c for c in config.columns}),
        )

    def critical_path(self, latency: Mapping[str, float]) -> float:
        """The longest sum of per-column latencies along any dependency path.

        With unlimited concurrency and fixed latencies, this is the time one row needs (the
        lower bound of the makespan). Columns missing from ``latency`` count as 0.

        Raises:
          ValueError: a latency is negative.
        """
        finish: dict[str, float] = {}
        for name in self.order:
            own = latency.get(name, 0.0)
            if own < 0:
                raise ValueError(f"latency of column {name!r} must be >= 0: {own}")
            finish[name] = own + max((finish[up] for up in self.upstream[name]), default=0.0)
        return max(finish.values(), default=0.0)


def _with_seed_columns(config: PipelineConfig, seed_columns: Sequence[str]) -> PipelineConfig:
    """``config`` with a :class:`SeedColumn` after the declared ones for each seed column not
    declared."""
    declared = {column.name for column in config.columns}
    drop = set(config.seed.drop) if config.seed is not None else set()
    implied: list[ColumnConfig] = []
    for name in seed_columns:
        if name in declared:
            continue
        try:
            implied.append(SeedColumn(name=name, drop=name in drop))
        except ConfigError as exc:
            raise ConfigError(
                f"seed: column {name!r} cannot be a pipeline column ({exc}); leave it out "
                "with seed.columns"
            ) from None
    if not implied:
        return config
    return attrs.evolve(config, columns=(*config.columns, *implied))


def _frozen(mapping: dict[str, V]) -> Mapping[str, V]:
    return MappingProxyType(mapping)


# -- dependencies ------------------------------------------------------------------------------


def _dependencies(config: PipelineConfig) -> tuple[dict[str, set[str]], list[str]]:
    """Direct upstream sets of every column, and the template problems found on the way:
    syntax, unknown filters and tests, unknown or self references, and fields of structured
    columns that their schema does not have."""
    names = {column.name for column in config.columns}
    schemas = {
        column.name: column.schema
        for column in config.columns
        if isinstance(column, LLMStructuredColumn)
    }
    upstream: dict[str, set[str]] = {column.name: set() for column in config.columns}
    problems: list[str] = []
    for index, column in enumerate(config.columns):
        where = f"columns[{index}] {column.name!r}"
        for field, source in template_fields(column).items():
            facts = template_facts(source)
            problems.extend(f"{where}: {field} {problem}" for problem in facts.problems)
            for name in sorted(facts.variables):
                if name == column.name:
                    problems.append(
                        f"{where}: {field} references {name!r}, the column itself; a column "
                        "cannot depend on itself"
                    )
                elif name in names:
                    upstream[column.name].add(name)
                elif name not in JINJA_GLOBALS:
                    problems.append(_unknown_reference(where, field, name, names))
            for path in facts.paths:
                schema = schemas.get(path[0])
                if schema is None or len(path) < 2 or path[0] == column.name:
                    continue
                problem = path_problem(schema, path[1:])
                if problem is not None:
                    problems.append(f"{where}: {field} reads {path[0]}.{problem}")
        # Unknown and self dependencies were reported by validate_references.
        upstream[column.name].update(
            dep for dep in explicit_dependencies(column) if dep in names and dep != column.name
        )
    return upstream, problems


def _unknown_reference(where: str, field: str, name: str, names: set[str]) -> str:
    hint = did_you_mean(name, names, otherwise="columns are " + ", ".join(sorted(names)))
    return f"{where}: {field} references {name!r}, which is not a column; {hint}"


def _invert(names: list[str], upstream: Mapping[str, set[str]]) -> dict[str, set[str]]:
    downstream: dict[str, set[str]] = {name: set() for name in names}
    for name in names:
        for up in upstream[name]:
            downstream[up].add(name)
    return downstream


# -- order, cycles, priority -------------------------------------------------------------------


def _kahn(names: list[str], upstream: Mapping[str, set[str]]) -> tuple[list[str], list[str]]:
    """Topological order (ties by declaration order) and the columns left over by cycles."""
    position = {name: index for index, name in enumerate(names)}
    downstream = _invert(names, upstream)
    waiting = {name: len(upstream[name]) for name in names}
    ready = [position[name] for name in names if waiting[name] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for down in downstream[name]:
            waiting[down] -= 1
            if waiting[down] == 0:
                heapq.heappush(ready, position[down])
    placed = set(order)
    return order, [name for name in names if name not in placed]


def _cycles(
    names: list[str], upstream: Mapping[str, set[str]], leftover: list[str]
) -> list[list[str]]:
    """Disjoint cycles among the ``leftover`` columns, each in dependency order, closed.

    Each cycle starts at its earliest-declared column:
    ``["summary", "analysis", "summary"]`` means analysis reads summary and summary reads
    analysis.
    """
    position = {name: index for index, name in enumerate(names)}
    remaining = set(leftover)
    cycles: list[list[str]] = []
    while True:
        _prune(remaining, upstream)
        if not remaining:
            return cycles
        cycle = _walk_upstream(
            min(remaining, key=position.__getitem__), remaining, upstream, position
        )
        start = min(range(len(cycle)), key=lambda i: position[cycle[i]])
        cycle = cycle[start:] + cycle[:start]
        cycles.append([*cycle, cycle[0]])
        remaining -= set(cycle)


def _prune(remaining: set[str], upstream: Mapping[str, set[str]]) -> None:
    """Drop columns with no upstream left in ``remaining`` (they are behind a cycle, not on
    one), until every remaining column has one."""
    changed = True
    while changed:
        free = {name for name in remaining if not upstream[name] & remaining}
        remaining -= free
        changed = bool(free)


def _walk_upstream(
    start: str, remaining: set[str], upstream: Mapping[str, set[str]], position: Mapping[str, int]
) -> list[str]:
    """Follow upstream edges inside ``remaining`` until a column repeats; return that cycle in
    dependency (downstream) order."""
    path: list[str] = []
    seen: dict[str, int] = {}
    name = start
    while name not in seen:
        seen[name] = len(path)
        path.append(name)
        name = min(upstream[name] & remaining, key=position.__getitem__)
    return list(reversed(path[seen[name] :]))


def _priorities(order: list[str], downstream: Mapping[str, set[str]]) -> dict[str, int]:
    """Columns on the longest path to a sink, counting the column itself."""
    priority: dict[str, int] = {}
    for name in reversed(order):
        priority[name] = 1 + max((priority[down] for down in downstream[name]), default=0)
    return {name: priority[name] for name in order}
