"""The end of ``create()``: the models' connections are closed beside the sink's final write
(``_designer._close_sink_and_connections``), not after it; both are done when ``create()``
returns, and a failing final write still reaches the caller as itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from trio_designer import LLMTextColumn, ModelConfig, PipelineConfig, RunConfig, TrioDesigner
from trio_designer._exceptions import SinkError
from trio_designer._sink._parquet import ParquetSink
from trio_designer.models._registry import ModelRegistry, open_model_registry
from trio_designer.simulator import Latency, SimulatedModel

BIG = 30
SIM = [
    SimulatedModel(name="sim-gen", latency=Latency(median=0.001)),
    SimulatedModel(name="sim-judge", latency=Latency(median=0.001)),
]


def two_models() -> PipelineConfig:
    return PipelineConfig(
        columns=(
            LLMTextColumn(name="answer", model="gen", prompt="hi"),
            LLMTextColumn(name="check", model="judge", prompt="is {{ answer }} fine?"),
        ),
        models=(
            ModelConfig(alias="gen", model="sim-gen", max_parallel_requests=4),
            ModelConfig(alias="judge", model="sim-judge", max_parallel_requests=4),
        ),
        run=RunConfig(seed=1),
    )


async def test_close_connections_closes_the_idle_ones_and_the_exit_again(
    autojump_clock: Any,
) -> None:
    """``close_connections`` closes every pooled connection; the registry's exit closes the
    clients again without error."""
    with trio.fail_after(BIG):
        async with open_model_registry(two_models(), simulator_models=SIM) as registry:
            await registry.model("gen").chat([{"role": "user", "content": "hi"}])
            pool = registry.client("simulator")._transport
            idle = list(pool._idle)  # type: ignore[attr-defined]
            assert idle, "the answered request left its connection pooled"
            await registry.close_connections()
            assert pool._idle == []  # type: ignore[attr-defined]
            assert all(c.socket.fileno() == -1 for c in idle)


def test_create_closes_the_connections_while_the_final_write_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final write waits (with a deadline) for the connections to be closed: done one
    after the other, the run would time out. Both are done when ``create()`` returns. (Real
    clock, like every ``create()`` into a directory: the sink's worker threads.)"""
    closed = trio.Event()
    real_close = ModelRegistry.close_connections
    real_final = ParquetSink._persist_final
    order: list[str] = []

    async def observed_close(self: ModelRegistry) -> None:
        await real_close(self)
        order.append("connections closed")
        closed.set()

    async def waiting_final(self: ParquetSink, meta: Any) -> None:
        with trio.fail_after(BIG):
            await closed.wait()
        await real_final(self, meta)
        order.append("final write")

    async def run() -> Any:
        with trio.fail_after(2 * BIG):
            return await TrioDesigner(simulator_models=SIM).create(
                two_models(), num_records=4, output_dir=tmp_path / "out"
            )

    monkeypatch.setattr(ModelRegistry, "close_connections", observed_close)
    monkeypatch.setattr(ParquetSink, "_persist_final", waiting_final)
    result = trio.run(run)
    assert result.num_records_written == 4
    assert order == ["connections closed", "final write"]
    assert (tmp_path / "out" / "metadata.json").is_file()


def test_a_failed_final_write_is_raised_as_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sink's error comes out of ``create()`` as the ``SinkError`` itself, not inside the
    group of the nursery it shares with the connections' closing."""

    async def broken_final(self: ParquetSink, meta: Any) -> None:
        raise SinkError("the disk is gone")

    async def run() -> None:
        with trio.fail_after(BIG):
            await TrioDesigner(simulator_models=SIM).create(
                two_models(), num_records=4, output_dir=tmp_path / "out"
            )

    monkeypatch.setattr(ParquetSink, "_persist_final", broken_final)
    with pytest.raises(SinkError, match="the disk is gone"):
        trio.run(run)
