"""The collector's young generation during a run (``trio_designer/_engine/_collector.py``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_designer import PipelineConfig, TrioDesigner
from trio_designer._engine._collector import RUN_YOUNG_THRESHOLD, collector_tuned


@pytest.fixture(autouse=True)
def _thresholds() -> Iterator[None]:
    saved, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)
    if enabled:
        gc.enable()


def test_raised_during_the_block_and_put_back() -> None:
    with collector_tuned():
        assert gc.get_threshold() == (RUN_YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_runs_put_back_what_the_first_found_when_the_last_ends() -> None:
    first, second = collector_tuned(), collector_tuned()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first to start ends first
    assert gc.get_threshold()[0] == RUN_YOUNG_THRESHOLD  # the other run is still going
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_an_applications_own_settings_are_kept() -> None:
    gc.set_threshold(100_000, 5, 5)  # higher already: left as it is
    with collector_tuned():
        assert gc.get_threshold() == (100_000, 5, 5)
    assert gc.get_threshold() == (100_000, 5, 5)
    gc.set_threshold(700, 10, 10)
    with collector_tuned():
        gc.set_threshold(5_000, 10, 10)  # changed by the application during the run
    assert gc.get_threshold() == (5_000, 10, 10)
    gc.disable()
    with collector_tuned():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_put_back_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), collector_tuned():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (700, 10, 10)


async def test_create_and_preview_run_with_it_and_put_it_back(tmp_path: Path) -> None:
    seen: list[int] = []

    def probe(row: dict[str, Any]) -> int:
        seen.append(gc.get_threshold()[0])
        return 1

    config = PipelineConfig.from_dict(
        {
            "columns": [
                {"name": "x", "kind": "sampler", "sampler": "uniform", "low": 0, "high": 1},
                {"name": "probe", "kind": "custom", "function": probe},
            ]
        }
    )
    await TrioDesigner().create(config, num_records=3, output_dir=tmp_path / "out")
    await TrioDesigner().preview(config, num_records=2)
    await trio.lowlevel.checkpoint()
    assert seen
    assert set(seen) == {RUN_YOUNG_THRESHOLD}
    assert gc.get_threshold() == (700, 10, 10)
