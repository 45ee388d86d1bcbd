"""The end of ``create()``: the models' connections are closed while the sink's final write
waits for the disk (``_designer._close_sink_and_connections``), not after it; both are done
when ``create()`` returns, and a failing final write still reaches the caller as itself."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_designer import LLMTextColumn, ModelConfig, PipelineConfig, RunConfig, TrioDesigner
from trio_designer._designer import _close_sink_and_connections
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


def test_create_closes_the_connections_while_the_final_write_waits_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connections are closed once the final write's files are all written (only disk
    waits left), and before the write ends: the write's thread waits here (with a deadline)
    for the closing — done after the write, the run would time out. Both are done when
    ``create()`` returns. (Real clock, like every ``create()`` into a directory: the sink's
    worker threads.)"""
    closed = threading.Event()
    order: list[str] = []
    real_close = ModelRegistry.close_connections
    real_store = ParquetSink._store_sync

    async def observed_close(self: ModelRegistry) -> None:
        await real_close(self)
        order.append("connections closed")
        closed.set()

    def store(self: ParquetSink, meta: Any, deferred: Any, **options: Any) -> None:
        when_written = options.pop("when_written", None)
        if when_written is None:
            return real_store(self, meta, deferred, **options)

        def written() -> None:
            order.append("files written")
            when_written()
            assert closed.wait(BIG)

        real_store(self, meta, deferred, when_written=written, **options)
        order.append("final write done")

    async def run() -> Any:
        with trio.fail_after(2 * BIG):
            return await TrioDesigner(simulator_models=SIM).create(
                two_models(), num_records=4, output_dir=tmp_path / "out"
            )

    monkeypatch.setattr(ModelRegistry, "close_connections", observed_close)
    monkeypatch.setattr(ParquetSink, "_store_sync", store)
    result = trio.run(run)
    assert result.num_records_written == 4
    assert order == ["files written", "connections closed", "final write done"]
    assert (tmp_path / "out" / "metadata.json").is_file()


class _Sink:
    """A sink whose ``close`` fails before its final write: ``final_write_waiting`` never
    returns on its own."""

    async def close(self, *, status: str, summary: Any) -> None:
        await trio.sleep(1)
        raise RuntimeError("close() needs an open sink")

    async def final_write_waiting(self) -> None:
        await trio.sleep_forever()


class _Models:
    def __init__(self) -> None:
        self.closed_at: float | None = None

    async def close_connections(self) -> None:
        self.closed_at = trio.current_time()


async def test_the_connections_close_when_close_fails_before_its_final_write(
    autojump_clock: Any,
) -> None:
    """``close`` raised before its final write said it waits: the closing waits no longer
    than ``close`` (no hang), the connections are closed, and the error is raised as is."""
    models = _Models()
    with trio.fail_after(BIG), pytest.raises(RuntimeError, match="open sink"):
        await _close_sink_and_connections(_Sink(), models, "complete", {})  # type: ignore[arg-type]
    assert models.closed_at == 1


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
