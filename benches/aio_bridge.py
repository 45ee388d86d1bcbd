"""How ``trio_designer.aio`` bridges asyncio to the trio engine: a worker thread vs guest mode.

``python -m benches.aio_bridge [--records N] [--repeats R]`` runs the same small pipeline
(a category sampler, two chained LLM columns against the embedded simulator at 20 ms fixed
latency, an expression) three ways and prints wall and process CPU time (median of R
interleaved runs):

* ``trio.run``: the plain engine, the baseline;
* ``guest``: Trio's guest mode inside ``asyncio.run`` (``trio.lowlevel.start_guest_run`` on
  the asyncio loop's thread), implemented here only for this comparison;
* ``thread``: ``asyncio.run(trio_designer.aio.create(...))``, a worker thread per run (what
  the library ships).

It then awaits several runs at once through each bridge. The figures and the
choice are written down in the docstring of :mod:`trio_designer.aio`. Not part of
``python -m benches all``: it compares two designs, it does not track the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio

import trio_designer
from trio_designer import (
    CategorySampler,
    ExpressionColumn,
    LLMTextColumn,
    ModelConfig,
    PipelineBuilder,
    PipelineConfig,
    RunResult,
    TrioDesigner,
)
from trio_designer.simulator import Latency, SimulatedModel

T = TypeVar("T")

SIMULATED = [SimulatedModel(name="sim-gen", latency=Latency(median=0.02))]


def pipeline() -> PipelineConfig:
    return (
        PipelineBuilder()
        .add_model(ModelConfig(alias="gen", model="sim-gen", max_parallel_requests=32))
        .add_column(CategorySampler(name="topic", values=("a", "b", "c")))
        .add_column(LLMTextColumn(name="s0", model="gen", prompt="About {{ topic }}"))
        .add_column(LLMTextColumn(name="s1", model="gen", prompt="About {{ s0 }}"))
        .add_column(ExpressionColumn(name="n", expr="{{ s1 | length }}"))
        .with_run(seed=1, row_group_size=100)
        .build()
    )


async def in_guest_mode(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` as a Trio guest on the running asyncio loop (the design not chosen)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    trio.lowlevel.start_guest_run(
        fn,
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon,
        done_callback=done.set_result,
    )
    result: T = (await done).unwrap()
    return result


def one_run(bridge: str, records: int, output_dir: Path) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one run through ``bridge``."""
    designer = TrioDesigner(simulator_models=SIMULATED)
    config = pipeline()
    create = partial(designer.create, config, num_records=records, output_dir=output_dir)
    wall, cpu = time.perf_counter(), time.process_time()
    result: RunResult
    if bridge == "trio.run":
        result = trio.run(create)
    elif bridge == "guest":
        result = asyncio.run(in_guest_mode(create))
    else:
        result = asyncio.run(
            trio_designer.aio.create(
                config, num_records=records, output_dir=output_dir, designer=designer
            )
        )
    assert result.num_records_written == records, result
    return time.perf_counter() - wall, time.process_time() - cpu


def three_at_once(bridge: str, root: Path) -> str:
    """What happens when three runs are awaited at once (``asyncio.gather``)."""
    designer = TrioDesigner(simulator_models=SIMULATED)
    config = pipeline()
    create = partial(designer.create, config, num_records=20)

    async def threads() -> str:
        results = await asyncio.gather(
            *(
                trio_designer.aio.create(
                    config, num_records=20, output_dir=root / f"t{i}", designer=designer
                )
                for i in range(3)
            )
        )
        return "works: " + ", ".join(r.status for r in results)

    async def guests() -> str:
        first = asyncio.ensure_future(in_guest_mode(partial(create, output_dir=root / "g0")))
        await asyncio.sleep(0)  # the first guest run has started
        try:
            await in_guest_mode(partial(create, output_dir=root / "g1"))
            verdict = "works"
        except RuntimeError as exc:
            verdict = f"fails: {exc}"
        await first  # let the first one finish properly
        return verdict

    return asyncio.run(threads() if bridge == "thread" else guests())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benches.aio_bridge")
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    bridges = ("trio.run", "guest", "thread")
    times: dict[str, list[tuple[float, float]]] = {b: [] for b in bridges}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for repeat in range(args.repeats):
            for bridge in bridges:
                times[bridge].append(one_run(bridge, args.records, root / f"{bridge}-{repeat}"))
        print(f"{args.records} rows ({2 * args.records} requests), median of {args.repeats}:")
        base = statistics.median(cpu for _, cpu in times["trio.run"])
        for bridge in bridges:
            wall = statistics.median(w for w, _ in times[bridge])
            cpu = statistics.median(c for _, c in times[bridge])
            print(f"  {bridge:9} wall {wall:6.2f} s  cpu {cpu:6.2f} s  ({cpu / base:.2f}x cpu)")
        for bridge in ("thread", "guest"):
            print(f"  several runs awaited at once, {bridge}: {three_at_once(bridge, root)}")


if __name__ == "__main__":
    main()
