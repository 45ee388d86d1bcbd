"""Sharded runs on the command line: ``run --workers K`` / ``run --ray``, ``run-shard`` (one
shard, for a Slurm array task) and ``merge``."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ._errors import CommandError
from ._run import STOP_SIGNALS, default_output_dir, limiter_factory, progress_setting
from ._run import cmd_run as cmd_run_one

EXIT_OK = 0
EXIT_INCOMPLETE = 1


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def cmd_run_shard(args: argparse.Namespace) -> int:
    """``trio-designer run-shard CONFIG --shard I --num-shards N -n N -o DIR``."""
    from .._scaleout import run_shard
    from ._load import load_config, with_overrides

    shard = args.shard if args.shard is not None else _env_int("SLURM_ARRAY_TASK_ID")
    shards = args.num_shards if args.num_shards is not None else _env_int("SLURM_ARRAY_TASK_COUNT")
    if shard is None or shards is None:
        raise CommandError(
            "run-shard needs --shard and --num-shards (or SLURM_ARRAY_TASK_ID and "
            "SLURM_ARRAY_TASK_COUNT in the environment)",
            exit_code=2,
        )
    config = with_overrides(load_config(args.config, python_path=args.python_path), seed=args.seed)
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(args.config)
    manifest = run_shard(
        config,
        shard=shard,
        num_shards=shards,
        num_records=args.num_records,
        output_dir=output_dir,
        share_limits=not args.no_share_limits,
        progress=progress_setting(args.progress),
    )
    groups = manifest.row_groups
    print(
        f"shard {manifest.shard} of {manifest.num_shards}: {manifest.status}, row groups "
        f"{groups.start}..{groups.stop - 1 if groups else groups.start} "
        f"({len(groups)}), {manifest.rows_written} rows written by this run, "
        f"{manifest.rows_stored} stored in {manifest.output_dir}",
        flush=True,
    )
    if manifest.status == "complete":
        print(f"when every shard is complete: {args.prog} merge {output_dir}")
        return EXIT_OK
    return EXIT_INCOMPLETE


def cmd_merge(args: argparse.Namespace) -> int:
    """``trio-designer merge OUTPUT_DIR [--compact]``."""
    from .._scaleout._merge import merge

    result = merge(Path(args.output_dir), compact=args.compact, rows_per_file=args.rows_per_file)
    print(
        f"merged {result.num_shards} shards: {result.rows} rows in {len(result.files)} parquet "
        f"files under {result.output_dir}",
        flush=True,
    )
    if result.compacted:
        print(f"compacted: {len(result.compacted)} file(s) in {result.output_dir / 'compacted'}")
    print(f'  read it: pyarrow.dataset.dataset("{result.output_dir / "parquet-files"}")')
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """``trio-designer run CONFIG``: one process, or shards with ``--workers``/``--ray``."""
    if not (args.workers or args.ray):
        return cmd_run_one(args)
    from ._load import load_config, with_overrides

    config = with_overrides(load_config(args.config, python_path=args.python_path), seed=args.seed)
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(args.config)
    return run_sharded(args, config, output_dir)


def run_sharded(args: argparse.Namespace, config: Any, output_dir: Path) -> int:
    """``run --workers K`` (child processes here) or ``run --ray`` (Ray tasks)."""
    if args.resume or args.force_resume or args.engine != "async" or args.trace:
        raise CommandError(
            "--workers/--ray: a sharded run always resumes its shards (no --resume needed) and "
            "runs the async engine without --trace; drop --resume/--force-resume/--engine/"
            "--trace",
            exit_code=2,
        )
    interval = None if progress_setting(args.progress) is False else 5.0
    if args.ray:
        from .._scaleout._ray import run_on_ray

        shards = args.shards or args.workers or 2

        async def go() -> Any:
            return await trio.to_thread.run_sync(
                partial(
                    run_on_ray,
                    config,
                    num_records=args.num_records,
                    output_dir=output_dir,
                    num_shards=shards,
                    address=args.ray_address,
                    compact=args.compact,
                    progress_interval=interval,
                ),
                abandon_on_cancel=True,
            )

    else:
        from .._scaleout._workers import run_workers

        async def go() -> Any:
            return await run_workers(
                config,
                num_records=args.num_records,
                output_dir=output_dir,
                workers=args.workers,
                num_shards=args.shards,
                progress_interval=interval,
                limiter_factory=limiter_factory(args.limiter),
                compact=args.compact,
            )

    result, stopped = trio.run(partial(_until_signal, go))
    if stopped is not None:
        print(
            f"interrupted: the shards keep their finished row groups in {output_dir / 'shards'}"
            f"\nresume with: {_same_command(args.prog)}",
            file=sys.stderr,
            flush=True,
        )
        return STOP_SIGNALS[stopped]
    assert result is not None
    retried = [i for i, n in enumerate(result.attempts) if n > 1]
    lines = [f"status: {result.status}"]
    if result.merged is not None:
        lines.append(
            f"rows: {result.merged.rows} of {args.num_records} requested, from "
            f"{result.merged.num_shards} shards"
        )
        lines.append(f"output: {output_dir} ({len(result.merged.files)} parquet files)")
        lines.append(f'  read it: pyarrow.dataset.dataset("{output_dir / "parquet-files"}")')
    else:
        for i, m in enumerate(result.manifests):
            status = m.status if m is not None else "no report"
            lines.append(f"  shard {i}: {status}")
        lines.append(
            f"not merged; run the same command again to resume: {_same_command(args.prog)}"
        )
    if retried:
        lines.append(f"shards started again after a crash: {retried}")
    lines.append(f"elapsed: {result.elapsed:.1f}s")
    print("\n".join(lines), flush=True)
    return EXIT_OK if result.status == "complete" else EXIT_INCOMPLETE


def _same_command(prog: str) -> str:
    return " ".join([prog, *(shlex.quote(a) for a in sys.argv[1:])])


async def _until_signal(fn: Any) -> tuple[Any, signal.Signals | None]:
    """``(await fn(), None)``, or ``(None, signal)`` when SIGINT/SIGTERM cancelled it (the
    children get SIGTERM and drain first)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return await fn(), None
    stopped: list[signal.Signals] = []
    result: Any = None
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def watch(scope: trio.CancelScope) -> None:
                async for signum in signals:
                    if not stopped:
                        stopped.append(signal.Signals(signum))
                        print(
                            f"\ninterrupted ({signal.Signals(signum).name}): stopping the "
                            "shards; their finished row groups are kept",
                            file=sys.stderr,
                            flush=True,
                        )
                        scope.cancel()

            scope = trio.CancelScope()
            nursery.start_soon(watch, scope)
            with scope:
                result = await fn()
            nursery.cancel_scope.cancel()
    return result, (stopped[0] if stopped else None)
