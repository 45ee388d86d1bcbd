"""trio_designer.aio: running the trio engine from asyncio (asyncio.run, a notebook cell).

These tests run a real asyncio loop, so they run in real time (the engine runs its own
``trio.run`` in a worker thread); each coroutine has an ``asyncio.timeout`` deadline and the
simulated model answers in 5 ms, so a deadlock fails in seconds and a pass takes well under one.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

import trio_designer
from trio_designer import (
    CategorySampler,
    EventLoopError,
    ExpressionColumn,
    LLMTextColumn,
    ModelConfig,
    PipelineBuilder,
    RunResult,
    TrioDesigner,
)
from trio_designer.simulator import Latency, SimulatedModel

T = TypeVar("T")

DEADLINE = 60.0
SIMULATED = [SimulatedModel(name="sim-gen", latency=Latency(median=0.005))]

CONFIG = (
    PipelineBuilder()
    .add_model(ModelConfig(alias="gen", model="sim-gen", max_parallel_requests=4))
    .add_column(CategorySampler(name="topic", values=("jazz", "chess")))
    .add_column(LLMTextColumn(name="summary", model="gen", prompt="About {{ topic }}."))
    .add_column(ExpressionColumn(name="n", expr="{{ summary | length }}", dtype="int"))
    .with_run(seed=3, row_group_size=4, max_row_groups_in_flight=1)
    .build()
)


def run_asyncio(main: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(main())`` with a deadline."""

    async def with_deadline() -> T:
        async with asyncio.timeout(DEADLINE):
            return await main()

    return asyncio.run(with_deadline())


def metadata(output_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((output_dir / "metadata.json").read_text())
    return data


# -- what works --------------------------------------------------------------------------------


def test_create_runs_under_asyncio_run_with_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    designer = TrioDesigner(simulator_models=SIMULATED, progress="plain")

    async def main() -> RunResult:
        return await trio_designer.aio.create(
            CONFIG, num_records=8, output_dir=tmp_path, designer=designer
        )

    result = run_asyncio(main)
    assert (result.status, result.num_records_written) == ("complete", 8)
    assert result.table.num_rows == 8
    assert metadata(tmp_path)["status"] == "complete"
    assert "rows written 8/8" in capsys.readouterr().err  # the final progress block


def test_preview_runs_under_asyncio_run() -> None:
    designer = TrioDesigner(simulator_models=SIMULATED)

    async def main() -> RunResult:
        return await trio_designer.aio.preview(CONFIG, num_records=3, designer=designer)

    result = run_asyncio(main)
    assert result.table.column_names == ["_row_id", "topic", "summary", "n"]
    assert result.table.num_rows == 3


def test_runs_awaited_together_all_finish(tmp_path: Path) -> None:
    """``asyncio.gather`` of several runs works (Trio's guest mode allows one run per thread;
    this is why aio uses a worker thread per run)."""
    designer = TrioDesigner(simulator_models=SIMULATED)

    async def main() -> list[RunResult]:
        return await asyncio.gather(
            *(
                trio_designer.aio.create(
                    CONFIG, num_records=4, output_dir=tmp_path / str(i), designer=designer
                )
                for i in range(3)
            )
        )

    results = run_asyncio(main)
    assert [r.status for r in results] == ["complete"] * 3
    tables = [r.table.to_pylist() for r in results]
    assert tables[0] == tables[1] == tables[2]  # same config and seed: same data


def test_cancelling_the_task_interrupts_the_run_and_keeps_finished_row_groups(
    tmp_path: Path,
) -> None:
    """Like Ctrl-C under asyncio.run (which cancels the main task): the run is cancelled,
    cleans up (status interrupted, finished row groups kept), then CancelledError propagates;
    ``resume=True`` finishes the run."""
    checkpointed = threading.Event()

    def on_event(name: str, fields: Mapping[str, Any]) -> None:  # runs in the worker thread
        if name == "row_group_checkpointed":
            checkpointed.set()

    designer = TrioDesigner(simulator_models=SIMULATED, on_event=on_event)

    async def main() -> None:
        task = asyncio.ensure_future(
            trio_designer.aio.create(CONFIG, num_records=60, output_dir=tmp_path, designer=designer)
        )
        await asyncio.to_thread(checkpointed.wait, DEADLINE)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_asyncio(main)
    interrupted = metadata(tmp_path)
    assert interrupted["status"] == "interrupted"
    kept = len(interrupted["row_groups"])
    assert 1 <= kept < 15

    async def resume() -> RunResult:
        return await trio_designer.aio.create(
            CONFIG, num_records=60, output_dir=tmp_path, resume=True, designer=designer
        )

    resumed = run_asyncio(resume)
    assert resumed.status == "complete"
    assert resumed.table.num_rows == 60


# -- what cannot work says what to call instead ------------------------------------------------


def test_awaiting_the_trio_coroutine_under_asyncio_says_use_aio(tmp_path: Path) -> None:
    async def main() -> RunResult:
        return await TrioDesigner().create(CONFIG, num_records=4, output_dir=tmp_path)

    with pytest.raises(
        EventLoopError,
        match=r"^TrioDesigner\.create\(\) is a Trio coroutine, but it was awaited in an asyncio "
        r"event loop \(code under asyncio\.run, or a Jupyter cell\); await "
        r"trio_designer\.aio\.create\(config, \.\.\.\) there instead\.$",
    ):
        run_asyncio(main)
    assert not (tmp_path / "metadata.json").exists()


def test_create_sync_inside_a_running_asyncio_loop_says_use_aio(tmp_path: Path) -> None:
    async def main() -> RunResult:
        return TrioDesigner().preview_sync(CONFIG, num_records=2)

    with pytest.raises(
        EventLoopError,
        match=r"^TrioDesigner\.preview_sync\(\) would block the running asyncio event loop \(a "
        r"Jupyter cell, or code under asyncio\.run\) until the run ends; await "
        r"trio_designer\.aio\.preview\(config, \.\.\.\) instead\.$",
    ):
        run_asyncio(main)


async def test_aio_inside_trio_says_await_the_designer(tmp_path: Path) -> None:
    with (
        trio.fail_after(5),
        pytest.raises(
            EventLoopError,
            match=r"^trio_designer\.aio\.create\(\) is for asyncio; inside trio\.run\(\), await "
            r"TrioDesigner\(\)\.create\(config, \.\.\.\) instead\.$",
        ),
    ):
        await trio_designer.aio.create(CONFIG, num_records=4, output_dir=tmp_path)


async def test_create_sync_inside_trio_says_await_create(tmp_path: Path) -> None:
    # a synchronous call that raises at once: nothing here could wait on a deadline
    with pytest.raises(
        EventLoopError,
        match=r"^TrioDesigner\.create_sync\(\) cannot run inside trio\.run\(\); await "
        r"TrioDesigner\(\)\.create\(config, \.\.\.\) instead\.$",
    ):
        TrioDesigner().create_sync(CONFIG, num_records=4, output_dir=tmp_path)


def _first_step(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Drive a coroutine by hand, as a loop that is neither trio nor asyncio would."""
    try:
        coroutine.send(None)
    finally:
        coroutine.close()


def test_outside_any_event_loop_both_coroutines_say_what_to_call(tmp_path: Path) -> None:
    with pytest.raises(
        EventLoopError,
        match=r"^TrioDesigner\.create\(\) is a Trio coroutine: await it inside trio\.run\(\), or "
        r"call TrioDesigner\(\)\.create_sync\(\.\.\.\) from code that runs no event loop\.$",
    ):
        _first_step(TrioDesigner().create(CONFIG, num_records=4, output_dir=tmp_path))
    with pytest.raises(
        EventLoopError,
        match=r"^trio_designer\.aio\.preview\(\) must be awaited in a running asyncio event loop "
        r"\(asyncio\.run\(\.\.\.\), or a Jupyter cell\); from code that runs no event loop, call "
        r"TrioDesigner\(\)\.preview_sync\(config, \.\.\.\)\.$",
    ):
        _first_step(trio_designer.aio.preview(CONFIG))


def test_event_loop_errors_are_runtime_errors_of_the_tree() -> None:
    assert issubclass(EventLoopError, RuntimeError)
    assert issubclass(EventLoopError, trio_designer.TrioDesignerError)


# -- Ctrl-C under asyncio.run ------------------------------------------------------------------

CTRL_C_SCRIPT = """\
import asyncio, sys
import trio_designer
from trio_designer import TrioDesigner
from trio_designer.simulator import Latency, SimulatedModel
from test_aio import CONFIG

def on_event(name, fields):
    if name == "row_group_checkpointed":
        print("checkpointed", flush=True)

designer = TrioDesigner(
    simulator_models=[SimulatedModel(name="sim-gen", latency=Latency(median=0.005))],
    on_event=on_event,
)
asyncio.run(
    trio_designer.aio.create(CONFIG, num_records=4000, output_dir=sys.argv[1], designer=designer)
)
"""


@pytest.mark.slow
def test_ctrl_c_under_asyncio_run_interrupts_the_run_cleanly(tmp_path: Path) -> None:
    """SIGINT under asyncio.run cancels the main task; the run stops, keeps its finished row
    groups and records ``interrupted``; the process ends with KeyboardInterrupt."""
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, str(out)],
        cwd=Path(__file__).parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:  # wait for the line, with a deadline
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=DEADLINE), "no row group was checkpointed"
        assert process.stdout.readline() == "checkpointed\n"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode in (-signal.SIGINT, 130), stderr
    assert stderr.rstrip().endswith("KeyboardInterrupt"), stderr
    meta = metadata(out)
    assert meta["status"] == "interrupted"
    assert 1 <= len(meta["row_groups"]) < 1000
