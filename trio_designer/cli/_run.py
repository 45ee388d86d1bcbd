"""``run`` and ``preview``: execute a pipeline, print what happened.

Ctrl-C: the first SIGINT cancels the run through a cancel scope (not a ``KeyboardInterrupt``
flying through arbitrary code), so the engine's shutdown path runs as designed: in-flight work is
cancelled, finished row groups stay on disk, ``metadata.json`` gets ``status: interrupted``,
and the command prints how to resume and exits with 130. A second SIGINT quits at once
(exit 130 without cleanup; the files on disk are still consistent, because every write is
atomic — the next ``--resume`` tidies up).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import trio

from .._sink import DATASET_DIR, FAILURES_FILE, METADATA_FILE, TRACE_FILE
from ._format import (
    Redactor,
    duration,
    plural,
    record_block,
    table,
    terminal_width,
    usage_line,
)
from ._load import load_config, with_overrides

T = TypeVar("T")

EXIT_OK = 0
EXIT_EARLY_SHUTDOWN = 1
EXIT_INTERRUPTED = 130

_COUNT_FIELDS = ("ok", "skipped", "failed", "retried", "cancelled")


def progress_setting(value: str) -> bool | str:
    """``--progress`` as ``TrioDesigner(progress=...)`` takes it (``none`` → ``False``)."""
    return False if value == "none" else value


def limiter_factory(value: str) -> Any:
    """``--limiter`` as ``TrioDesigner(limiter_factory=...)`` takes it (``adaptive`` → the
    default, ``None``)."""
    if value == "static":
        from ..models import StaticLimiter

        return StaticLimiter
    return None


def default_output_dir(config_path: str) -> Path:
    """``out/<config stem>``, relative to the current directory."""
    return Path("out") / Path(config_path).stem


# -- run -----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """``trio-designer run CONFIG``."""
    from .._designer import TrioDesigner

    config = with_overrides(load_config(args.config), seed=args.seed, trace=args.trace)
    redact = Redactor()
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(args.config)
    designer = TrioDesigner(
        engine=args.engine,
        progress=progress_setting(args.progress),
        limiter_factory=limiter_factory(args.limiter),
    )

    async def create() -> Any:
        return await designer.create(
            config, num_records=args.num_records, output_dir=output_dir, resume=args.resume
        )

    result = trio.run(run_until_interrupted, create)
    if result is None:
        print(interrupted_message(args, output_dir), file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    on_disk = None
    if args.resume:
        meta = _read_metadata(output_dir) or {}
        on_disk = int(meta.get("rows_written", result.num_records_written))
    print(
        redact(run_summary(result, trace=config.run.trace, on_disk=on_disk, prog=args.prog)),
        flush=True,
    )
    return EXIT_EARLY_SHUTDOWN if result.status == "early_shutdown" else EXIT_OK


async def run_until_interrupted(fn: Callable[[], Awaitable[T]]) -> T | None:
    """``await fn()``, or ``None`` if SIGINT cancelled it first.

    Off the main thread (where signal handlers cannot be installed) this is plain
    ``await fn()`` and Ctrl-C raises ``KeyboardInterrupt`` as usual.
    """
    if threading.current_thread() is not threading.main_thread():
        return await fn()
    result: T | None = None
    run_scope = trio.CancelScope()
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_interrupts, signals, run_scope)
            with run_scope:
                result = await fn()
            nursery.cancel_scope.cancel()
    return result


async def _watch_interrupts(signals: Any, run_scope: trio.CancelScope) -> None:
    interrupts = 0
    async for _ in signals:
        interrupts += 1
        if interrupts == 1:
            print(
                "\ninterrupted: stopping; finished row groups are kept (Ctrl-C again to quit "
                "at once)",
                file=sys.stderr,
                flush=True,
            )
            run_scope.cancel()
        else:
            print("interrupted again: quitting at once", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)


def interrupted_message(args: argparse.Namespace, output_dir: Path) -> str:
    """What an interrupted run kept, and the exact command that resumes it."""
    meta = _read_metadata(output_dir)
    if meta is None:
        kept = "nothing was written yet"
    else:
        groups = meta.get("row_groups") or {}
        kept = (
            f"{plural(len(groups), 'finished row group')} ({meta.get('rows_written', 0)} of "
            f"{meta.get('num_records', args.num_records)} rows) kept in {output_dir}"
        )
    return f"interrupted: {kept}\nresume with: {resume_command(args, output_dir)}"


def resume_command(args: argparse.Namespace, output_dir: Path) -> str:
    """The ``run`` command line that continues this run (same config, seed, size, directory)."""
    parts = [args.prog, "run", args.config, "--num-records", str(args.num_records)]
    parts += ["--output-dir", str(output_dir)]
    if args.seed is not None:
        parts += ["--seed", str(args.seed)]
    if args.engine != "async":
        parts += ["--engine", args.engine]
    if args.limiter != "adaptive":
        parts += ["--limiter", args.limiter]
    if args.trace:
        parts.append("--trace")
    parts.append("--resume")
    return " ".join(shlex.quote(p) if i else p for i, p in enumerate(parts))


def _read_metadata(output_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((output_dir / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_summary(
    result: Any, *, trace: bool = False, on_disk: int | None = None, prog: str = "trio-designer"
) -> str:
    """The summary printed after a run: status, rows, per-column counts, models, time, files.

    Args:
      result: the ``RunResult``.
      trace: whether the run recorded a trace (``trace.json``).
      on_disk: for a resumed run, the rows stored in the output directory in total (the
        result counts only this run's rows).
      prog: the program name, for the follow-up commands it suggests.
    """
    lines = [f"status: {result.status}"]
    if on_disk is None:
        lines.append(
            f"rows: {result.num_records_written} written of {result.num_records_requested} "
            f"requested ({result.num_rows_dropped} dropped)"
        )
    else:
        lines.append(
            f"rows: {result.num_records_written} written by this run "
            f"({result.num_rows_dropped} dropped); {on_disk} of "
            f"{result.num_records_requested} requested rows are on disk"
        )
    if result.status == "early_shutdown":
        lines.append(
            "  the error-rate gate stopped the run early (run.shutdown_error_rate); see the "
            "failures below"
        )
    lines.append("columns:")
    lines.append(column_table(result.columns))
    lines.extend(_model_lines(result.usage, result.model_limits))
    lines.append(f"elapsed: {duration(result.elapsed)}")
    if result.output_dir is not None:
        out = result.output_dir
        new = "new parquet file" if on_disk is not None else "parquet file"
        lines.append(f"output: {out} ({plural(len(result.files), new)})")
        lines.append(f'  read it: pyarrow.dataset.dataset("{out / DATASET_DIR}")')
        if trace:
            lines.append(
                f'trace: {out / TRACE_FILE} ("{prog} trace {out}" exports it for Perfetto)'
            )
    if result.failures:
        lines.extend(failure_lines(result.failures, limit=3))
        if result.output_dir is not None:
            lines.append(
                f"  all of them are in {result.output_dir / FAILURES_FILE} "
                f'("{prog} inspect {result.output_dir}" counts them per column and error class)'
            )
    return "\n".join(lines)


def column_table(columns: Mapping[str, Any]) -> str:
    """Per-column outcome counts as a table (values are ``ColumnSummary`` or dicts)."""

    def count(summary: Any, field: str) -> Any:
        return summary.get(field, 0) if isinstance(summary, Mapping) else getattr(summary, field)

    rows = [[name, *(count(s, f) for f in _COUNT_FIELDS)] for name, s in columns.items()]
    return table(["column", *_COUNT_FIELDS], rows)


def _model_lines(usage: Mapping[str, Any], limits: Mapping[str, Any]) -> list[str]:
    if not usage and not limits:
        return []
    lines = ["models:"]
    lines.extend("  " + usage_line(alias, u) for alias, u in usage.items())
    for endpoint, stats in limits.items():
        lines.append(
            f"  endpoint {endpoint}: final limit {stats.limit}/{stats.ceiling}, "
            f"{stats.rate_limited} rate-limited"
        )
    return lines


def failure_lines(failures: Any, *, limit: int = 5) -> list[str]:
    """The first ``limit`` failures, one line each (values are ``FailureRecord`` or dicts)."""

    def get(f: Any, field: str) -> Any:
        return f.get(field) if isinstance(f, Mapping) else getattr(f, field)

    lines = [f"failures: {len(failures)}"]
    for f in list(failures)[:limit]:
        row = get(f, "row")
        where = f"row {row}" if row is not None else f"row group {get(f, 'row_group')}"
        lines.append(
            f"  {where}, column {get(f, 'column')}: {get(f, 'error_class')}: "
            f"{get(f, 'message')} ({plural(int(get(f, 'attempts') or 0), 'attempt')})"
        )
    if len(failures) > limit:
        lines.append(f"  ... and {len(failures) - limit} more")
    return lines


# -- preview -------------------------------------------------------------------------------------


def cmd_preview(args: argparse.Namespace) -> int:
    """``trio-designer preview CONFIG -n 5``."""
    from .._designer import TrioDesigner

    config = with_overrides(load_config(args.config), seed=args.seed)
    redact = Redactor()
    designer = TrioDesigner(
        engine=args.engine,
        progress=progress_setting(args.progress),
        limiter_factory=limiter_factory(args.limiter),
    )

    async def preview() -> Any:
        return await designer.preview(config, num_records=args.num_records)

    result = trio.run(run_until_interrupted, preview)
    if result is None:
        print("interrupted: nothing was kept (a preview is in memory)", file=sys.stderr)
        return EXIT_INTERRUPTED
    records = result.table.to_pylist()
    if args.jsonl:
        for record in records:
            print(redact(json.dumps(record, ensure_ascii=False, default=str)))
        if result.failures:
            print(redact("\n".join(failure_lines(result.failures))), file=sys.stderr)
    else:
        width = terminal_width()
        for number, record in enumerate(records, start=1):
            print(redact(record_block(number, record, width=width, max_chars=args.max_chars)))
        footer = (
            f"{plural(len(records), 'record')} of {result.num_records_requested} requested "
            f"({result.num_rows_dropped} dropped), {result.status}, {duration(result.elapsed)}"
        )
        print(footer)
        if result.failures:
            print(redact("\n".join(failure_lines(result.failures))))
    return EXIT_EARLY_SHUTDOWN if result.status == "early_shutdown" else EXIT_OK
