"""``llm_embedding`` columns (issue 14): texts embedded through ``/v1/embeddings`` in batches.

Real HTTP to the embedded simulator on 127.0.0.1, virtual time. The simulator's request log
(server side) counts the embedding requests; the vectors are compared with the simulator's own
deterministic ones (``simulator._content.embedding``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import trio

from trio_designer import TrioDesigner
from trio_designer._core._limits import LimiterPolicy
from trio_designer._exceptions import ConfigError, ModelOutputError, ModelServerError
from trio_designer._plan import ExecutionGraph
from trio_designer.config import (
    CategorySampler,
    ExpressionColumn,
    LLMEmbeddingColumn,
    ModelConfig,
    PipelineConfig,
    RunConfig,
)
from trio_designer.generators import CellContext
from trio_designer.generators._embedding import LLMEmbeddingGenerator
from trio_designer.generators._registry import build_generator
from trio_designer.models._limiter import AdaptiveLimiter
from trio_designer.models._registry import ModelRegistry, open_model_registry
from trio_designer.simulator import Faults, Latency, SimulatedModel
from trio_designer.simulator._content import embedding

BIG = 10_000
EMBED = "sim-embed"


def _config(rows_per_group: int = 24, **column: Any) -> PipelineConfig:
    fields: dict[str, Any] = {"name": "vec", "model": "emb", "text": "{{ sentence }}"}
    return PipelineConfig(
        models=(
            ModelConfig(
                alias="emb", model=EMBED, provider="simulator", max_parallel_requests=4
            ),
        ),
        run=RunConfig(row_group_size=rows_per_group, seed=5),
        columns=(
            CategorySampler(name="topic", values=("tea", "jazz", "rain", "maps", "owls")),
            ExpressionColumn(name="sentence", expr="A line about {{ topic }}."),
            LLMEmbeddingColumn(**{**fields, **column}),
        ),
    )


class _KeepLog:
    """Wraps the registry context: copies the simulator's request log before it closes."""

    def __init__(self, inner: Any, log: list[Any]) -> None:
        self._inner, self._log, self._registry = inner, log, None

    async def __aenter__(self) -> Any:
        self._registry = await self._inner.__aenter__()
        return self._registry

    async def __aexit__(self, *exc: Any) -> Any:
        assert self._registry is not None
        self._log.extend(self._registry.simulator.request_log())
        return await self._inner.__aexit__(*exc)


class _Designer(TrioDesigner):
    """A designer that keeps the embedded simulator's request log."""

    def __init__(self, log: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._log = log

    def _open_models(self, config: Any, changes: Any, cache: Any = None) -> Any:
        return _KeepLog(super()._open_models(config, changes, cache), self._log)


def _simulated(**kwargs: Any) -> SimulatedModel:
    kwargs.setdefault("latency", Latency(median=0.2))
    return SimulatedModel(name=EMBED, **kwargs)


async def test_cells_share_requests_and_get_the_simulators_vectors(tmp_path: Path) -> None:
    """24 rows, batches of 8, 4 requests in parallel: 3 requests carry every text; each
    vector is the simulator's, stored as fixed_size_list<float32, 16>. On the real clock: the
    parquet sink writes in worker threads, which virtual time must not see (style.md 7.6)."""
    log: list[Any] = []
    designer = _Designer(log, simulator_models=[_simulated(latency=Latency(median=0.01))])
    config = _config(batch_size=8, dimensions=16)
    with trio.fail_after(BIG):
        result = await designer.create(config, num_records=24, output_dir=tmp_path / "out")
    assert result.num_records_written == 24
    requests = [r for r in log if r.model == EMBED]
    assert len(requests) == 3 == result.usage["emb"]["requests_ok"]
    assert all(r.status == 200 for r in requests)
    assert result.usage["emb"]["input_tokens"] == sum(r.prompt_tokens for r in requests) > 0

    table = ds.dataset(tmp_path / "out" / "parquet-files").to_table()
    assert table.schema.field("vec").type == pa.list_(pa.float32(), 16)
    for row in table.to_pylist():
        expected = pa.array(embedding(EMBED, row["sentence"], 16), pa.float32()).to_pylist()
        assert row["vec"] == expected


async def test_without_dimensions_the_column_is_a_list_of_float32(autojump_clock: Any) -> None:
    """No ``dimensions``: none is sent (the simulator's default length, 64), ``list<float32>``;
    ``batch_size: 1`` sends one request per cell."""
    log: list[Any] = []
    designer = _Designer(log, simulator_models=[_simulated()])
    with trio.fail_after(BIG):
        result = await designer.preview(_config(batch_size=1), num_records=6)
    assert result.table.schema.field("vec").type == pa.list_(pa.float32())
    assert [len(v) for v in result.table.column("vec").to_pylist()] == [64] * 6
    assert len([r for r in log if r.model == EMBED]) == 6


async def test_a_small_batch_waits_for_the_window_then_goes(autojump_clock: Any) -> None:
    """3 rows, batch_size 16: nothing fills the batch, so it leaves after batch_window (0.5 s
    here) as one request: the run takes the window plus one latency."""
    log: list[Any] = []
    designer = _Designer(log, simulator_models=[_simulated(latency=Latency(median=0.2, sigma=0))])
    start = trio.current_time()
    with trio.fail_after(BIG):
        result = await designer.preview(_config(batch_window=0.5), num_records=3)
    elapsed = trio.current_time() - start
    assert result.num_records_written == 3
    assert len([r for r in log if r.model == EMBED]) == 1
    assert 0.7 <= elapsed < 0.8


@pytest.mark.deadline(60)
async def test_429s_and_server_errors_are_retried_and_every_row_arrives(
    autojump_clock: Any,
) -> None:
    """The same machinery as chat: 429s retried in place, a 500 fails the batch's cells, which
    the engine defers and salvages; every row is written, with the right vector."""
    log: list[Any] = []
    faults = Faults(rate_429=0.3, rate_500=0.2)
    designer = _Designer(log, simulator_models=[_simulated(faults=faults, seed=3)])
    with trio.fail_after(BIG):
        result = await designer.preview(_config(batch_size=4, dimensions=8), num_records=24)
    assert result.num_records_written == 24
    statuses = {r.status for r in log if r.model == EMBED}
    assert {200, 429, 500} <= statuses
    for row in result.table.to_pylist():
        expected = pa.array(embedding(EMBED, row["sentence"], 8), pa.float32()).to_pylist()
        assert row["vec"] == expected


# --------------------------------------------------------------------------- the batcher


@asynccontextmanager
async def _registry(model: SimulatedModel) -> AsyncIterator[ModelRegistry]:
    config = _config()
    factory = partial(AdaptiveLimiter, policy=LimiterPolicy(latency_signal=False))
    async with open_model_registry(
        config, simulator_models=[model], limiter_factory=factory
    ) as registry:
        yield registry


def _ctx(registry: ModelRegistry, row: int) -> CellContext:
    return CellContext(
        column="vec", row_index=row, row={"sentence": f"text {row}"}, models=registry
    )


async def test_a_cancelled_leader_hands_its_batch_over(autojump_clock: Any) -> None:
    """The leader's row is cancelled while it waits for the window: its followers go round
    again, one of them leads, and both get their vectors in one more request."""
    column = LLMEmbeddingColumn(
        name="vec", model="emb", text="{{ sentence }}", batch_size=8, batch_window=1.0
    )
    generator = build_generator(column)
    assert isinstance(generator, LLMEmbeddingGenerator)
    got: dict[int, Any] = {}

    async def cell(row: int, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            got[row] = await generator.agenerate(_ctx(registry, row))

    with trio.fail_after(BIG):
        async with _registry(_simulated()) as registry, trio.open_nursery() as nursery:
            leader = trio.CancelScope()
            nursery.start_soon(cell, 0, leader)
            await trio.sleep(0.1)
            nursery.start_soon(cell, 1)
            nursery.start_soon(cell, 2)
            await trio.sleep(0.1)
            leader.cancel()
    assert sorted(got) == [1, 2]
    assert got[1] == embedding(EMBED, "text 1", 64)
    assert generator.requests == 1
    assert generator.texts == 2


async def test_a_failed_request_fails_each_cell_with_its_own_row(autojump_clock: Any) -> None:
    """Every cell of a failed batch raises the error, each naming its own row."""
    column = LLMEmbeddingColumn(name="vec", model="emb", text="{{ sentence }}", batch_size=3)
    generator = build_generator(column)
    errors: dict[int, BaseException] = {}

    async def cell(row: int) -> None:
        try:
            await generator.agenerate(_ctx(registry, row))
        except ModelServerError as exc:
            errors[row] = exc

    with trio.fail_after(BIG):
        async with (
            _registry(_simulated(faults=Faults(rate_500=1.0))) as registry,
            trio.open_nursery() as nursery,
        ):
            for row in range(3):
                nursery.start_soon(cell, row)
    assert sorted(errors) == [0, 1, 2]
    assert [errors[r].row for r in range(3)] == [0, 1, 2]  # type: ignore[attr-defined]
    assert {errors[r].column for r in range(3)} == {"vec"}  # type: ignore[attr-defined]
    assert len({id(e) for e in errors.values()}) == 3


async def test_a_vector_of_the_wrong_length_drops_the_row(autojump_clock: Any) -> None:
    """An endpoint that ignores ``dimensions`` is a ModelOutputError, not a retry loop."""
    column = LLMEmbeddingColumn(
        name="vec", model="emb", text="{{ sentence }}", batch_size=1, dimensions=8
    )
    generator = build_generator(column)
    with trio.fail_after(BIG):
        async with _registry(_simulated()) as registry:
            with pytest.raises(ModelOutputError, match="dimensions=8"):
                generator._checked([[0.0] * 7])  # what such an endpoint would send
            assert len(await generator.agenerate(_ctx(registry, 0))) == 8


def _graph_of(data: dict[str, Any]) -> ExecutionGraph:
    return ExecutionGraph.from_config(PipelineConfig.from_dict(data))


def test_the_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        PipelineConfig.from_dict(
            {
                "models": [{"alias": "emb", "model": EMBED}],
                "columns": [
                    {"name": "s", "kind": "expression", "expr": "x"},
                    {
                        "name": "v",
                        "kind": "llm_embedding",
                        "model": "emb",
                        "text": "{{ s }}",
                        "batch_size": 0,
                    },
                ],
            }
        )
    with pytest.raises(ConfigError, match="sentense"):
        _graph_of(
            {
                "models": [{"alias": "emb", "model": EMBED}],
                "columns": [
                    {"name": "sentence", "kind": "expression", "expr": "x"},
                    {"name": "v", "kind": "llm_embedding", "model": "emb", "text": "{{ sentense }}"},  # noqa: E501
                ],
            }
        )
    assert math.isclose(LLMEmbeddingColumn(name="v", model="m", text="t").batch_window, 0.01)


async def test_the_sync_engine_writes_the_same_vectors(autojump_clock: Any) -> None:
    """The column-at-a-time baseline runs a column's cells concurrently too, so they batch;
    both engines write the same table."""
    tables = []
    for engine in ("async", "sync"):
        designer = TrioDesigner(engine=engine, simulator_models=[_simulated()])
        with trio.fail_after(BIG):
            result = await designer.preview(_config(batch_size=4, dimensions=8), num_records=12)
        tables.append(result.table)
    assert tables[0].equals(tables[1])
