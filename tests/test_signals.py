"""Stopping a run from outside: SIGTERM and SIGINT on the command line, ``interrupt()`` and
outer cancellation in Python. Whatever stops it, the run drains (row groups in flight are
cancelled and not written, finished ones are kept) and ``metadata.json`` says why.

The signal tests run the real command in a subprocess against the embedded simulator (real
HTTP on 127.0.0.1, real time), each bounded by a deadline; the in-process ones run in virtual
time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import trio
import trio.testing

from trio_designer import PipelineConfig, RunInterrupted, TrioDesigner
from trio_designer.simulator import Latency, SimulatedModel

REPO = Path(__file__).resolve().parents[1]
BIG = 10_000

# 200 rows in row groups of 5, two at a time, each row a chain of two LLM calls of 0.2 s (the
# embedded simulator's default latency): 20 waves of 0.4 s, about 8 s in all.
PIPELINE_YAML = """\
models:
  - {alias: gen, model: sim-gen, max_parallel_requests: 16}
run: {row_group_size: 5, max_row_groups_in_flight: 2}
columns:
  - {name: topic, kind: sampler, sampler: category, values: [jazz, chess]}
  - {name: summary, kind: llm_text, model: gen, prompt: "Summarize {{ topic }}."}
  - {name: verdict, kind: llm_text, model: gen, prompt: "Judge {{ summary }}"}
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _metadata(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "metadata.json").read_text())
    return data


def _stop_after_first_row_group(tmp_path: Path, signum: signal.Signals) -> tuple[int, str, Path]:
    """Start ``run``, send ``signum`` once a row group is on disk; exit status, stderr, out."""
    (tmp_path / "pipeline.yaml").write_text(PIPELINE_YAML)
    out = tmp_path / "out" / "pipeline"
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_designer", "run", "pipeline.yaml", "-n", "200"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if _metadata(out)["row_groups"]:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be stopped"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stderr, out


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_drains_the_run_and_records_why(
    tmp_path: Path, signum: signal.Signals, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    returncode, stderr, out = _stop_after_first_row_group(tmp_path, signum)
    assert returncode == status, stderr
    assert "Traceback" not in stderr
    meta = _metadata(out)
    assert meta["status"] == "interrupted"
    resume = (
        "python -m trio_designer run pipeline.yaml --num-records 200 --output-dir "
        "out/pipeline --resume"
    )
    assert meta["summary"]["stopped"] == {"reason": signum.name, "resume": resume}
    assert stderr.splitlines()[-1] == f"resume with: {resume}"
    # Finished row groups are whole and recorded; the ones in flight left nothing behind.
    kept = meta["rows_written"]
    assert 5 <= kept < 200
    assert all(entry["rows"] == 5 for entry in meta["row_groups"].values())
    files = sorted(p.name for p in (out / "parquet-files").iterdir())
    assert files == sorted(Path(e["file"]).name for e in meta["row_groups"].values())
    assert ds.dataset(out / "parquet-files").to_table().num_rows == kept
    scratch = out / ".tmp"
    assert not scratch.exists() or not any(scratch.iterdir())
    # inspect says why and how to continue
    from trio_designer.cli import main

    assert main(["inspect", str(out)]) == 0
    report = capsys.readouterr().out.splitlines()
    assert report[1].startswith("status: interrupted")
    assert report[2:4] == [f"  stopped by {signum.name}", f"  resume: {resume}"]


# -- in process ---------------------------------------------------------------------------------


def _pipeline() -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "models": [{"alias": "gen", "model": "sim-gen", "max_parallel_requests": 16}],
            "run": {"row_group_size": 5, "max_row_groups_in_flight": 1},
            "columns": [
                {"name": "topic", "kind": "sampler", "sampler": "category", "values": ["a"]},
                {"name": "summary", "kind": "llm_text", "model": "gen", "prompt": "{{ topic }}"},
            ],
        }
    )


SIM = [SimulatedModel(name="sim-gen", latency=Latency(median=1.0))]


def _run(fn: Any) -> Any:
    """Runs that write parquet (worker threads): a clock 1000x faster than real time."""

    async def guarded() -> Any:
        with trio.fail_after(BIG):
            return await fn()

    return trio.run(guarded, clock=trio.testing.MockClock(rate=1000.0))


def test_interrupt_drains_and_raises_run_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    designer: TrioDesigner

    def stop_after_two(event: str, fields: Any) -> None:
        if event == "row_group_checkpointed" and fields["row_group"] == 1:
            assert designer.interrupt("deadline", resume_hint="rerun me") == 1

    designer = TrioDesigner(simulator_models=SIM, on_event=stop_after_two)

    async def stopped_after_two_groups() -> None:
        with pytest.raises(RunInterrupted) as info:
            await designer.create(_pipeline(), num_records=50, output_dir=out)
        assert info.value.reason == "deadline"
        assert info.value.rows_written == 10
        assert str(info.value) == (
            f"the run was interrupted (deadline); the finished row groups (10 rows written by "
            f"this run) are kept in {out}; continue it with resume=True and the same output_dir="
        )
        assert designer.interrupt("late") == 0  # nothing in progress any more

    _run(stopped_after_two_groups)
    meta = _metadata(out)
    assert meta["status"] == "interrupted"
    assert set(meta["row_groups"]) == {"0", "1"}
    assert meta["summary"]["stopped"] == {"reason": "deadline", "resume": "rerun me"}


def test_an_outer_cancel_is_recorded_as_cancelled(tmp_path: Path) -> None:
    out = tmp_path / "out"
    scope = trio.CancelScope()

    def cancel_after_one(event: str, fields: Any) -> None:
        if event == "row_group_checkpointed":
            scope.cancel()

    async def cancelled() -> None:
        with scope:
            await TrioDesigner(simulator_models=SIM, on_event=cancel_after_one).create(
                _pipeline(), num_records=50, output_dir=out
            )
        assert scope.cancelled_caught

    _run(cancelled)
    meta = _metadata(out)
    assert meta["status"] == "interrupted"
    assert meta["summary"]["stopped"]["reason"] == "cancelled"
    assert "resume=True" in meta["summary"]["stopped"]["resume"]
    assert set(meta["row_groups"]) == {"0"}


async def test_interrupting_a_preview_keeps_nothing(autojump_clock: Any) -> None:
    designer = TrioDesigner(simulator_models=SIM)
    caught: list[RunInterrupted] = []

    async def stop() -> None:
        await trio.sleep(0.5)
        assert designer.interrupt("x") == 1

    with trio.fail_after(BIG):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop)
            try:
                await designer.preview(_pipeline(), num_records=20)
            except RunInterrupted as exc:
                caught.append(exc)
    [error] = caught
    assert str(error) == "the preview was interrupted (x); nothing is kept (it is in memory)"
    assert trio.current_time() == 0.5  # stopped at once, not after the 1 s answers
