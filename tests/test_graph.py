"""ExecutionGraph: dependencies from templates, Kahn order, cycles, priority, critical path."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_designer._exceptions import ConfigError
from trio_designer._plan import ExecutionGraph
from trio_designer.config import (
    CategorySampler,
    ColumnConfig,
    CustomColumn,
    ExpressionColumn,
    LLMJudgeColumn,
    LLMTextColumn,
    ModelConfig,
    PipelineConfig,
    Rubric,
    SubcategorySampler,
)

GEN = ModelConfig(alias="gen", model="sim-gen")


def pipeline(*columns: ColumnConfig) -> PipelineConfig:
    return PipelineConfig(columns=columns, models=(GEN,))


def llm(name: str, prompt: str, **fields: Any) -> LLMTextColumn:
    return LLMTextColumn(name=name, model="gen", prompt=prompt, **fields)


def expr(name: str, source: str, **fields: Any) -> ExpressionColumn:
    return ExpressionColumn(name=name, expr=source, **fields)


def graph_problems(config: PipelineConfig) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        ExecutionGraph.from_config(config)
    return info.value.problems


def deep_shape() -> PipelineConfig:
    """The seed's Deep shape: topic -> summary -> analysis -> conclusion, topic -> trivia."""
    return pipeline(
        CategorySampler(name="topic", values=("astronomy", "jazz")),
        llm("summary", "Summarize {{ topic }}."),
        llm("trivia", "A fact about {{ topic }}."),
        llm("analysis", "Analyse: {{ summary }}"),
        llm("conclusion", "Conclude from {{ analysis }}"),
    )


def test_deep_shape() -> None:
    graph = ExecutionGraph.from_config(deep_shape())
    assert graph.order == ("topic", "summary", "trivia", "analysis", "conclusion")
    assert dict(graph.priority) == {
        "topic": 4,
        "summary": 3,
        "trivia": 1,
        "analysis": 2,
        "conclusion": 1,
    }
    assert dict(graph.upstream) == {
        "topic": frozenset(),
        "summary": {"topic"},
        "trivia": {"topic"},
        "analysis": {"summary"},
        "conclusion": {"analysis"},
    }
    assert dict(graph.downstream) == {
        "topic": {"summary", "trivia"},
        "summary": {"analysis"},
        "trivia": frozenset(),
        "analysis": {"conclusion"},
        "conclusion": frozenset(),
    }
    assert graph.strategy["topic"] == "full_column"
    assert graph.strategy["summary"] == "cell"
    assert dict(graph.llm_bound) == {
        "topic": False,
        "summary": True,
        "trivia": True,
        "analysis": True,
        "conclusion": True,
    }
    assert list(graph.configs) == ["topic", "summary", "trivia", "analysis", "conclusion"]
    assert graph.configs["analysis"] == deep_shape().columns[3]


def test_critical_path_is_the_longest_latency_sum() -> None:
    graph = ExecutionGraph.from_config(deep_shape())
    latency = {"topic": 0.0, "summary": 2.0, "trivia": 10.0, "analysis": 3.0, "conclusion": 1.0}
    assert graph.critical_path(latency) == 10.0
    latency["trivia"] = 5.0
    assert graph.critical_path(latency) == 6.0
    assert graph.critical_path({"summary": 1.0}) == 1.0  # missing columns count as 0
    with pytest.raises(ValueError, match=r"^latency of column 'trivia' must be >= 0: -1$"):
        graph.critical_path({"trivia": -1})


def test_order_breaks_ties_by_declaration_order() -> None:
    graph = ExecutionGraph.from_config(
        pipeline(
            expr("c", "{{ b }}"),
            expr("a", "x"),
            expr("b", "x"),
            expr("d", "{{ a }}"),
        )
    )
    assert graph.order == ("a", "b", "c", "d")


def test_every_kind_of_edge() -> None:
    """Prompts, system prompts, expressions, skip conditions, depends_on, subcategory parents."""
    graph = ExecutionGraph.from_config(
        pipeline(
            CategorySampler(name="topic", values=("a",)),
            SubcategorySampler(name="sub", category="topic", values={"a": ("x",)}),
            CategorySampler(name="tone", values=("dry",)),
            llm("text", "{{ sub }}", system_prompt="Be {{ tone }}", skip_when="{{ flag }}"),
            expr("flag", "{{ topic == 'a' }}", dtype="bool"),
            CustomColumn(name="fn", function="m:f", depends_on=("text",)),
            LLMJudgeColumn(
                name="judge",
                model="gen",
                prompt="{% for t in [text] %}{{ t }}{% endfor %} {{ range(3) | list }}",
                rubrics=(Rubric(name="r", description="d", scores={"1": "x"}),),
            ),
        )
    )
    assert dict(graph.upstream) == {
        "topic": frozenset(),
        "sub": {"topic"},
        "tone": frozenset(),
        "text": {"sub", "tone", "flag"},
        "flag": {"topic"},
        "fn": {"text"},
        "judge": {"text"},
    }
    assert graph.order == ("topic", "sub", "tone", "flag", "text", "fn", "judge")


def test_unknown_reference_names_column_field_and_closest_name() -> None:
    config = pipeline(
        CategorySampler(name="topic", values=("a",)),
        llm("summary", "{{ topic }}"),
        llm("analysis", "Analyse {{ sumary }}"),
    )
    with pytest.raises(
        ConfigError,
        match=(
            r"^columns\[2\] 'analysis': prompt references 'sumary', which is not a column; "
            r"did you mean 'summary'\?$"
        ),
    ):
        ExecutionGraph.from_config(config)


def test_unknown_reference_without_a_close_name_lists_the_columns() -> None:
    assert graph_problems(
        pipeline(expr("a", "x"), expr("b", "{{ zzz }}", skip_when="{{ a }}"))
    ) == ("columns[1] 'b': expr references 'zzz', which is not a column; columns are a, b",)


def test_template_syntax_error_names_column_field_and_line() -> None:
    config = pipeline(expr("a", "x"), llm("b", "ok", system_prompt="line one\n{{ a }"))
    with pytest.raises(
        ConfigError,
        match=(
            r"^columns\[1\] 'b': system_prompt has a Jinja syntax error on template line 2: "
            r"unexpected '}'$"
        ),
    ):
        ExecutionGraph.from_config(config)


def test_self_reference() -> None:
    assert graph_problems(pipeline(expr("a", "{{ a }}"))) == (
        "columns[0] 'a': expr references 'a', the column itself; a column cannot depend on itself",
    )
    assert graph_problems(pipeline(expr("a", "x", depends_on=("a",)))) == (
        "columns[0].depends_on[0]: a column cannot depend on itself",
    )


def test_two_column_cycle() -> None:
    config = pipeline(
        CategorySampler(name="topic", values=("a",)),
        llm("summary", "{{ topic }} {{ analysis }}"),
        llm("analysis", "{{ summary }}"),
        llm("after", "{{ analysis }}"),
    )
    with pytest.raises(ConfigError, match=r"^dependency cycle: summary -> analysis -> summary$"):
        ExecutionGraph.from_config(config)


def test_cycle_is_named_in_dependency_order_from_its_first_declared_column() -> None:
    """c reads b, b reads a, a reads c: data flows a -> b -> c -> a."""
    config = pipeline(
        expr("downstream", "{{ b }}"),
        expr("c", "{{ b }}"),
        expr("a", "{{ c }}"),
        expr("b", "{{ a }}"),
    )
    assert graph_problems(config) == ("dependency cycle: c -> a -> b -> c",)


def test_disjoint_cycles_are_all_reported_with_other_problems() -> None:
    config = pipeline(
        expr("a", "{{ b }}"),
        expr("b", "{{ a }}"),
        expr("c", "x", depends_on=("d",)),
        expr("d", "{{ c }} {{ nope }}"),
        LLMTextColumn(name="e", model="gne", prompt="{{ a }}"),
    )
    assert graph_problems(config) == (
        "columns[4].model: no model with alias 'gne'; did you mean 'gen'?",
        "columns[3] 'd': expr references 'nope', which is not a column; columns are a, b, c, d, e",
        "dependency cycle: a -> b -> a",
        "dependency cycle: c -> d -> c",
    )


def test_graph_is_read_only() -> None:
    graph = ExecutionGraph.from_config(deep_shape())
    with pytest.raises(TypeError):
        graph.priority["topic"] = 0  # type: ignore[index]
    assert graph == ExecutionGraph.from_config(deep_shape())


# -- properties over random DAGs ---------------------------------------------------------------


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[list[str], dict[str, set[str]]]:
    """Column names in declaration order and each one's upstream set (edges go forward in a
    hidden order, then the declaration order is shuffled)."""
    size = draw(st.integers(1, 8))
    hidden = [f"c{i}" for i in range(size)]
    upstream = {
        name: set(draw(st.sets(st.sampled_from(hidden[:i])))) if i else set()
        for i, name in enumerate(hidden)
    }
    declared = draw(st.permutations(hidden))
    return list(declared), upstream


def as_config(declared: list[str], upstream: Mapping[str, set[str]]) -> PipelineConfig:
    columns = []
    for name in declared:
        ups = sorted(upstream[name])
        half = len(ups) // 2
        source = " ".join("{{ %s }}" % up for up in ups[:half]) or "x"  # noqa: UP031
        columns.append(expr(name, source, depends_on=tuple(ups[half:])))
    return pipeline(*columns)


def all_paths(upstream: Mapping[str, set[str]]) -> list[list[str]]:
    """Every maximal dependency path, source to sink (brute force)."""
    downstream = {name: {d for d, ups in upstream.items() if name in ups} for name in upstream}

    def extend(path: list[str]) -> list[list[str]]:
        nexts = downstream[path[-1]]
        return [path] if not nexts else [p for n in sorted(nexts) for p in extend([*path, n])]

    return [p for root in upstream if not upstream[root] for p in extend([root])]


@settings(max_examples=40, deadline=None)
@given(dag=random_dags(), latencies=st.lists(st.integers(0, 5), min_size=8, max_size=8))
def test_graph_properties_on_random_dags(
    dag: tuple[list[str], dict[str, set[str]]], latencies: list[int]
) -> None:
    """Topological order, declaration tie-breaks, priority and critical path match brute force."""
    declared, upstream = dag
    graph = ExecutionGraph.from_config(as_config(declared, upstream))
    assert dict(graph.upstream) == upstream
    position = {name: i for i, name in enumerate(graph.order)}
    assert sorted(graph.order) == sorted(declared)
    assert all(position[up] < position[name] for name in declared for up in upstream[name])
    # Kahn with declaration tie-breaks: each step takes the earliest-declared ready column.
    for i, name in enumerate(graph.order):
        ready = [n for n in graph.order[i:] if upstream[n] <= set(graph.order[:i])]
        assert name == min(ready, key=declared.index)
    paths = all_paths(upstream)
    for name in declared:
        assert graph.priority[name] == max(len(p) - p.index(name) for p in paths if name in p)
    latency = dict(zip(declared, latencies, strict=False))
    expected = max(sum(latency[n] for n in path) for path in paths)
    assert graph.critical_path(latency) == expected


@settings(max_examples=40, deadline=None)
@given(dag=random_dags(), data=st.data())
def test_adding_a_back_edge_reports_a_real_cycle(
    dag: tuple[list[str], dict[str, set[str]]], data: st.DataObject
) -> None:
    """Any back edge makes a cycle, and the reported cycle's edges all exist."""
    declared, upstream = dag
    pairs = [(a, b) for a, b in itertools.permutations(declared, 2) if _reaches(upstream, a, b)]
    if not pairs:
        return
    source, sink = data.draw(st.sampled_from(pairs))
    upstream = {**upstream, source: upstream[source] | {sink}}  # sink now feeds source
    problems = graph_problems(as_config(declared, upstream))
    assert len(problems) >= 1
    cycle = problems[0].removeprefix("dependency cycle: ").split(" -> ")
    assert problems[0].startswith("dependency cycle: ")
    assert cycle[0] == cycle[-1]
    assert len(set(cycle)) == len(cycle) - 1
    assert all(a in upstream[b] for a, b in itertools.pairwise(cycle))
    assert min(cycle, key=declared.index) == cycle[0]


def _reaches(upstream: Mapping[str, set[str]], start: str, target: str) -> bool:
    """Whether ``target`` is (transitively) downstream of ``start``."""
    frontier, seen = [start], {start}
    while frontier:
        node = frontier.pop()
        for name, ups in upstream.items():
            if node in ups and name not in seen:
                if name == target:
                    return True
                seen.add(name)
                frontier.append(name)
    return False
