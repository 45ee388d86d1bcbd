"""``run`` and ``preview``: execute a pipeline, print what happened.

Ctrl-C and SIGTERM (what ``kill``, ``docker stop``, systemd and Kubernetes send) stop a run the
same way: the first one calls :meth:`TrioDesigner.interrupt` with the signal's name (not a
``KeyboardInterrupt`` flying through arbitrary code), so the engine's shutdown path runs as
designed: in-flight row groups are cancelled and not written, finished row groups stay on disk,
``metadata.json`` gets ``status: interrupted`` with the signal and the exact resume command
(``summary.stopped``), and the command prints how to resume and exits with 128 + the signal's
number: 130 for SIGINT, 143 for SIGTERM (the shell's convention for "killed by the signal").
A second signal quits at once (same exit status, without cleanup; the files on disk are still
consistent, because every write is atomic — the next ``--resume`` tidies up).
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
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from .._sink import (
    CARD_FILE,
    DATASET_DIR,
    FAILURES_FILE,
    METADATA_FILE,
    ROW_ID,
    SUMMARY_ROW_GROUPS_FOUND,
    TRACE_FILE,
)
from .._sink._layout import PROCESSED_DIR
from ._budget import budget_flags, budget_message, with_budgets
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
#: A budget (``--max-cost``...) stopped admitting row groups: what was written is kept.
EXIT_BUDGET_EXHAUSTED = 1
#: Every row this run generated was dropped by failures: nothing came out of it.
EXIT_ALL_DROPPED = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: The signals that stop a run cleanly, and the exit status of a run they stopped.
STOP_SIGNALS: dict[signal.Signals, int] = {
    signal.SIGINT: EXIT_INTERRUPTED,
    signal.SIGTERM: EXIT_TERMINATED,
}

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

    config = with_overrides(
        load_config(args.config, python_path=args.python_path), seed=args.seed, trace=args.trace
    )
    config = with_budgets(config, args)
    redact = Redactor()
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(args.config)
    designer = TrioDesigner(
        engine=args.engine,
        progress=progress_setting(args.progress),
        limiter_factory=limiter_factory(args.limiter),
        cache=False if args.no_cache else None,
        cache_dir=args.cache_dir,
    )

    async def create() -> Any:
        return await designer.create(
            config,
            num_records=args.num_records,
            output_dir=output_dir,
            resume=args.resume,
            force_resume=args.force_resume,
        )

    files_before = (
        recorded_files(_read_metadata(output_dir))
        if args.resume or args.force_resume
        else frozenset()
    )
    hint = resume_command(args, output_dir)
    result, stopped_by = trio.run(partial(run_until_interrupted, designer, create, hint))
    if stopped_by is not None:
        print(interrupted_message(args, output_dir), file=sys.stderr, flush=True)
        return STOP_SIGNALS[stopped_by]
    assert result is not None
    resumed = None
    if args.resume or args.force_resume:
        meta = _read_metadata(output_dir) or {}
        summary = meta.get("summary") or {}
        resumed = Resumed(
            rows_on_disk=int(meta.get("rows_written", result.num_records_written)),
            files_before=files_before,
            row_groups_found=int(summary.get(SUMMARY_ROW_GROUPS_FOUND, 0)),
            num_row_groups=int(meta.get("num_row_groups", 0)),
        )
    print(
        redact(run_summary(result, trace=config.run.trace, resumed=resumed, prog=args.prog)),
        flush=True,
    )
    if result.status == "budget_exhausted" and result.budget is not None:
        written = int(resumed.rows_on_disk) if resumed else result.num_records_written
        message = budget_message(
            result.budget, written=written, requested=result.num_records_requested, resume=hint
        )
        print(redact(message), file=sys.stderr, flush=True)
        return EXIT_BUDGET_EXHAUSTED
    if all_dropped(result):
        inspect = f"{args.prog} inspect {shlex.quote(str(output_dir))} --cells"
        print(redact(all_dropped_message(result, inspect=inspect)), file=sys.stderr, flush=True)
        return EXIT_ALL_DROPPED
    return EXIT_EARLY_SHUTDOWN if result.status == "early_shutdown" else EXIT_OK


def all_dropped(result: Any) -> bool:
    """Whether a run that finished generated rows and dropped every one of them.

    The error-rate gate (``run.shutdown_error_rate``) only judges a full window of outcomes, so a
    small run whose every row fails ends ``complete``; its command must still not exit 0. Rows a
    processor filtered out are not failures and do not count here.
    """
    written: int = result.num_records_written
    dropped: int = result.num_rows_dropped
    return result.status == "complete" and written == 0 and dropped > 0


def all_dropped_message(result: Any, *, inspect: str | None = None) -> str:
    """The one line saying that nothing came out of a run, and where to read why."""
    where = "the failures above say why"
    if inspect is not None:
        where += f"; `{inspect}` has every cell's story"
    return (
        f"error: every row was dropped ({result.num_rows_dropped} of "
        f"{result.num_records_requested} requested rows failed): nothing was generated; {where}"
    )


async def run_until_interrupted(
    designer: Any, fn: Callable[[], Awaitable[T]], resume_hint: str | None = None
) -> tuple[T | None, signal.Signals | None]:
    """``(await fn(), None)``, or ``(None, signal)`` if SIGINT or SIGTERM stopped it first.

    The first signal calls ``designer.interrupt(<signal name>, resume_hint=...)``: the run
    drains and records why, and ``fn`` raises :class:`~trio_designer.RunInterrupted`. A signal
    that arrives before the run has started (or after it ended) cancels ``fn`` outright.

    Off the main thread (where signal handlers cannot be installed) this is plain
    ``await fn()`` and Ctrl-C raises ``KeyboardInterrupt`` as usual.
    """
    from .._exceptions import RunInterrupted

    if threading.current_thread() is not threading.main_thread():
        return await fn(), None
    result: T | None = None
    stop = _Stop(designer, resume_hint)
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, stop)
            with stop.scope:
                try:
                    result = await fn()
                except RunInterrupted:
                    if stop.signal is None:
                        raise  # someone else interrupted the designer
            nursery.cancel_scope.cancel()
    return result, stop.signal


class _Stop:
    """What the signal watcher stops: the designer's runs, else the whole call."""

    def __init__(self, designer: Any, resume_hint: str | None) -> None:
        self.designer = designer
        self.resume_hint = resume_hint
        self.scope = trio.CancelScope()
        self.signal: signal.Signals | None = None

    def first(self, signum: signal.Signals) -> None:
        self.signal = signum
        if not self.designer.interrupt(signum.name, resume_hint=self.resume_hint):
            self.scope.cancel()  # no run in progress yet: nothing to drain


async def _watch_signals(signals: Any, stop: _Stop) -> None:
    async for signum in signals:
        received = signal.Signals(signum)
        if stop.signal is None:
            print(
                f"\ninterrupted ({received.name}): stopping; finished row groups are kept "
                f"({'Ctrl-C' if received == signal.SIGINT else 'the same signal'} again to quit "
                f"at once)",
                file=sys.stderr,
                flush=True,
            )
            stop.first(received)
        else:
            print("interrupted again: quitting at once", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(STOP_SIGNALS[received])


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
    for folder in getattr(args, "python_path", ()):
        parts += ["--python-path", folder]
    parts += ["--output-dir", str(output_dir)]
    if args.seed is not None:
        parts += ["--seed", str(args.seed)]
    if args.engine != "async":
        parts += ["--engine", args.engine]
    if args.limiter != "adaptive":
        parts += ["--limiter", args.limiter]
    if args.trace:
        parts.append("--trace")
    parts += budget_flags(args)
    parts.append("--resume")
    return " ".join(shlex.quote(p) if i else p for i, p in enumerate(parts))


def recorded_files(meta: Mapping[str, Any] | None) -> frozenset[str]:
    """The parquet files a run record lists (``row_groups[*].file``), none without one."""
    groups = (meta or {}).get("row_groups") or {}
    return frozenset(g["file"] for g in groups.values() if isinstance(g, dict) and g.get("file"))


@attrs.frozen(kw_only=True)
class Resumed:
    """What a ``--resume`` summary adds to the result: the state of the directory.

    Attributes:
      rows_on_disk: rows stored in the output directory in total, after this run.
      files_before: the parquet files recorded before this run started.
      row_groups_found: row groups this run found already written (and did not generate).
      num_row_groups: row groups of the whole run.
    """

    rows_on_disk: int
    files_before: frozenset[str] = frozenset()
    row_groups_found: int = 0
    num_row_groups: int = 0

    @property
    def nothing_to_do(self) -> bool:
        """Every row group was already on disk: this run generated nothing."""
        return self.num_row_groups > 0 and self.row_groups_found >= self.num_row_groups


def _read_metadata(output_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((output_dir / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_summary(
    result: Any,
    *,
    trace: bool = False,
    resumed: Resumed | None = None,
    prog: str = "trio-designer",
) -> str:
    """The summary printed after a run: status, rows, per-column counts, models, time, files.

    Args:
      result: the ``RunResult``.
      trace: whether the run recorded a trace (``trace.json``).
      resumed: for a resumed run, the state of the output directory (the result counts only
        this run's rows and cells, but lists every file).
      prog: the program name, for the follow-up commands it suggests.
    """
    lines = [f"status: {result.status}"]
    if resumed is None:
        lines.append(
            f"rows: {result.num_records_written} written of {result.num_records_requested} "
            f"requested ({result.num_rows_dropped} dropped)"
        )
    else:
        lines.append(
            f"rows: {result.num_records_written} written by this run "
            f"({result.num_rows_dropped} dropped); {resumed.rows_on_disk} of "
            f"{result.num_records_requested} requested rows are on disk"
        )
    if result.status == "early_shutdown":
        lines.append(
            "  the error-rate gate stopped the run early (run.shutdown_error_rate); see the "
            "failures below"
        )
        partial = tuple(getattr(result, "partial_row_groups", ()))
        if partial:
            lines.append(
                f"  {plural(len(partial), 'row group')} in flight ("
                f"{', '.join(map(str, partial))}) kept only their rows complete in every "
                "column (the others are dropped as UnfinishedAtShutdown); --resume generates "
                "them again whole"
            )
    if resumed is not None and resumed.nothing_to_do:
        lines.append(
            f"nothing left to generate: all {plural(resumed.num_row_groups, 'row group')} were "
            "already on disk"
        )
    else:
        lines.append("columns:")
        lines.append(column_table(result.columns))
        lines.extend(_model_lines(result.usage, result.model_limits))
    if result.cache:
        lines.append(_cache_line(result.cache))
    lines.append(f"elapsed: {duration(result.elapsed)}")
    if result.output_dir is not None:
        out = result.output_dir
        files = plural(len(result.files), "parquet file")
        if resumed is not None:
            new = len(set(result.files) - resumed.files_before)
            files += f", {new} written by this run"
        lines.append(f"output: {out} ({files})")
        lines.append(f'  read it: pyarrow.dataset.dataset("{out / DATASET_DIR}")')
        if (out / CARD_FILE).is_file():
            export = f"{prog} export {out} --format jsonl"
            lines.append(f"  dataset card: {out / CARD_FILE}; export: {export}")
        lines.extend(processor_summary(result))
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


def _cache_line(cache: Mapping[str, Any]) -> str:
    """What the response cache did (docs/cache.md)."""
    return (
        f"cache: {plural(cache['hits'], 'answer')} served from the cache, "
        f"{plural(cache['misses'], 'request')} sent ({cache['directory']})"
    )


def column_table(columns: Mapping[str, Any]) -> str:
    """Per-column outcome counts as a table (values are ``ColumnSummary`` or dicts)."""

    def count(summary: Any, field: str) -> Any:
        return summary.get(field, 0) if isinstance(summary, Mapping) else getattr(summary, field)

    fields: tuple[str, ...] = _COUNT_FIELDS
    if any(count(s, "truncated") for s in columns.values()):  # only runs that kept cut answers
        fields = (*fields, "truncated")
    rows = [[name, *(count(s, f) for f in fields)] for name, s in columns.items()]
    return table(["column", *fields], rows)


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
        lines.append(
            f"  {failure_place(get(f, 'row'), get(f, 'row_group'), get(f, 'attempts'))}, "
            f"column {get(f, 'column')}: {get(f, 'error_class')}: {get(f, 'message')}"
        )
    if len(failures) > limit:
        lines.append(f"  ... and {len(failures) - limit} more")
    return lines


def failure_place(row: Any, row_group: Any, attempts: Any) -> str:
    """Where a failure dropped data and after how many attempts of the cell (the engine's
    runs of it; requests inside one attempt are the message's business): ``row 7 (dropped
    after 3 attempts)``. Shared by ``run`` and ``inspect``."""
    where = f"row {row}" if row is not None else f"row group {row_group}"
    return f"{where} (dropped after {plural(int(attempts or 0), 'attempt')})"


# -- preview -------------------------------------------------------------------------------------


def cmd_preview(args: argparse.Namespace) -> int:
    """``trio-designer preview CONFIG -n 5``."""
    from .._designer import TrioDesigner

    config = with_overrides(load_config(args.config, python_path=args.python_path), seed=args.seed)
    redact = Redactor()
    designer = TrioDesigner(
        engine=args.engine,
        progress=progress_setting(args.progress),
        limiter_factory=limiter_factory(args.limiter),
        cache=False if args.no_cache else None,
        cache_dir=args.cache_dir,
    )

    async def preview() -> Any:
        return await designer.preview(config, num_records=args.num_records)

    result, stopped_by = trio.run(partial(run_until_interrupted, designer, preview))
    if stopped_by is not None:
        print("interrupted: nothing was kept (a preview is in memory)", file=sys.stderr)
        return STOP_SIGNALS[stopped_by]
    assert result is not None
    records = [  # the row id is the record's position here: not shown
        {name: redact.value(value) for name, value in record.items() if name != ROW_ID}
        for record in result.table.to_pylist()
    ]
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
    if all_dropped(result):
        print(redact(all_dropped_message(result)), file=sys.stderr, flush=True)
        return EXIT_ALL_DROPPED
    return EXIT_EARLY_SHUTDOWN if result.status == "early_shutdown" else EXIT_OK


def processor_summary(result: Any) -> list[str]:
    """What the processors did (rows in, rows out) and where their datasets are."""
    reports = getattr(result, "processors", None) or {}
    if not reports:
        return []
    lines = ["processors:"]
    for label, report in reports.items():
        removed = sum((report.get("removed") or {}).values())
        lines.append(
            f"  {label} ({report.get('kind')}, {report.get('stage')}): "
            f"{report.get('rows_in')} in, {report.get('rows_out')} out"
            + (f", {removed} removed" if removed else "")
        )
    if result.processed_files is not None and result.output_dir is not None:
        processed = result.output_dir / PROCESSED_DIR / DATASET_DIR
        lines.append(f'  the final dataset: pyarrow.dataset.dataset("{processed}")')
    return lines
