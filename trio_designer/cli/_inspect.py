"""``inspect``: what an output directory holds, read from its files only (no run needed).

Sources: ``metadata.json`` (status, fingerprint, row groups, schema, the run's summary with
per-column counts and usage) and ``failures.jsonl`` (every dropped row, appended by each
resumed run).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
from pathlib import Path
from typing import Any

from .._exceptions import SinkError
from .._sink import FAILURES_FILE, SUMMARY_ROW_GROUPS_FOUND
from .._sink import read_failures as read_failures_file
from .._sink._layout import PROCESSED_DIR, PROCESSED_MARKER
from .._sink._stored import read_record
from ._format import Redactor, plural, table, truncate, usage_line
from ._run import column_table, failure_place

MAX_ROW_GROUPS_LISTED = 20
FIRST_FAILURES = 5


def cmd_inspect(args: argparse.Namespace) -> int:
    """``trio-designer inspect OUTPUT_DIR``."""
    output_dir = Path(args.output_dir)
    meta = read_run_record(output_dir)
    redact = Redactor(_api_key_envs(meta))
    if args.cells or args.row is not None:
        from ._inspect_cells import inspect_cells, inspect_row

        if args.row is not None:
            print(redact(inspect_row(output_dir, args.row, as_json=args.json)))
        else:
            order = [c.get("name") for c in (meta.get("config") or {}).get("columns") or []]
            print(redact(inspect_cells(output_dir, order, as_json=args.json)))
        return 0
    failures = read_failures(output_dir)
    if args.json:
        without_config = {k: v for k, v in meta.items() if k != "config"}
        document = {"output_dir": str(output_dir), "metadata": without_config, "failures": failures}
        print(redact(json.dumps(document, indent=2, ensure_ascii=False, default=str)))
    else:
        print(redact(describe(output_dir, meta, failures)))
    return 0


def _api_key_envs(meta: dict[str, Any]) -> list[str]:
    """The ``api_key_env`` names of the providers of the recorded config: their values are
    secrets to mask, whatever the variables are called."""
    providers = (meta.get("config") or {}).get("providers") or []
    return [
        p["api_key_env"]
        for p in providers
        if isinstance(p, dict) and isinstance(p.get("api_key_env"), str)
    ]


def read_run_record(output_dir: Path) -> dict[str, Any]:
    """``metadata.json`` of ``output_dir``, checked to be a run record.

    Raises:
      SinkError: no such directory, no ``metadata.json``, or not a run record.
    """
    if not output_dir.is_dir():
        raise SinkError(f"{output_dir} is not a directory; give the --output-dir of a run")
    return read_record(output_dir)[0]


def read_failures(output_dir: Path) -> list[dict[str, Any]]:
    """Every line of ``failures.jsonl`` (empty when there is none).

    Raises:
      SinkError: a line is not JSON.
    """
    try:
        return read_failures_file(output_dir)
    except ValueError as exc:
        raise SinkError(f"{output_dir / FAILURES_FILE} is not valid JSON lines: {exc}") from None


def _stopped_lines(summary: Any) -> list[str]:
    """Why an interrupted or failed run stopped, and how to continue it (``summary.stopped``)."""
    stopped = summary.get("stopped") if isinstance(summary, dict) else None
    if not isinstance(stopped, dict):
        return []
    if stopped.get("reason") == "error":
        why = f"  stopped by {stopped.get('error_class')}: {stopped.get('message')}"
    else:
        why = f"  stopped by {stopped.get('reason')}"
    return [why, f"  resume: {stopped.get('resume')}"]


def describe(output_dir: Path, meta: dict[str, Any], failures: list[dict[str, Any]]) -> str:
    """The human-readable report."""
    groups: dict[str, Any] = meta.get("row_groups") or {}
    num_records = int(meta.get("num_records", 0))
    written = int(meta.get("rows_written", 0))
    requested_done = sum(int(g.get("requested_rows", 0)) for g in groups.values())
    lines = [
        f"output dir: {output_dir}",
        f"status: {meta.get('status')} (started {meta.get('started_at')}, finished "
        f"{meta.get('finished_at') or '-'})",
        *_stopped_lines(meta.get("summary")),
        f"fingerprint: {meta.get('fingerprint')}",
        f"rows: {written} written of {num_records} requested; "
        f"{requested_done - written} dropped in written row groups",
        f"row groups: {len(groups)} of {meta.get('num_row_groups')} written "
        f"(size {meta.get('row_group_size')})",
    ]
    listed = sorted(groups.items(), key=lambda item: int(item[0]))
    rows = [
        [rg, g.get("rows"), g.get("requested_rows"), g.get("file") or "(all rows dropped)"]
        for rg, g in listed[:MAX_ROW_GROUPS_LISTED]
    ]
    if rows:
        lines.append(table(["id", "rows", "requested", "file"], rows, align="rrrl"))
    if len(listed) > MAX_ROW_GROUPS_LISTED:
        lines.append(f"  ... and {len(listed) - MAX_ROW_GROUPS_LISTED} more")
    lines.extend(_schema_lines(meta.get("schema")))
    summary: dict[str, Any] = meta.get("summary") or {}
    lines.extend(processor_lines(output_dir, summary))
    found = int(summary.get(SUMMARY_ROW_GROUPS_FOUND) or 0)
    num_row_groups = int(meta.get("num_row_groups") or 0)
    if num_row_groups and found >= num_row_groups:
        # Zeros would read as "nothing was generated"; the last run only found everything done.
        lines.append(
            f"last run: a resume with nothing left to generate (all "
            f"{plural(num_row_groups, 'row group')} were already on disk); the counts of the "
            "runs that wrote them are not kept"
        )
        summary = {}
    elif found:
        lines.append(
            f"last run: a resume; {plural(found, 'row group')} were already on disk, the counts "
            "below are this run's own"
        )
    if summary.get("columns"):
        lines.append("columns (last run):")
        lines.append(column_table(summary["columns"]))
    lines.extend(failure_report(failures))
    usage = summary.get("usage") or {}
    if usage:
        lines.append("usage (last run):")
        lines.extend("  " + usage_line(alias, u) for alias, u in usage.items())
    return "\n".join(lines)


def processor_lines(output_dir: Path, summary: dict[str, Any]) -> list[str]:
    """Rows in, rows out and why, per processor: the per-row-group stage from the summary
    (every run's counts, a resumed run adds to the earlier ones), the after-run stage from
    ``processed/_SUCCESS.json``."""
    reports: dict[str, Any] = dict(summary.get("processors") or {})
    marker = output_dir / PROCESSED_DIR / PROCESSED_MARKER
    if marker.is_file():
        with contextlib.suppress(OSError, ValueError):
            reports.update(json.loads(marker.read_text(encoding="utf-8")).get("reports") or {})
    if not reports:
        return []
    rows = []
    for label, report in reports.items():
        if not isinstance(report, dict):
            continue
        why = ", ".join(f"{reason}: {n}" for reason, n in (report.get("removed") or {}).items())
        skipped = report.get("not_emitted") or {}
        if skipped:
            why += ("; " if why else "") + ", ".join(
                f"not in the extra dataset, {reason}: {n}" for reason, n in skipped.items()
            )
        rows.append(
            [label, report.get("stage"), report.get("rows_in"), report.get("rows_out"), why or "-"]
        )
    header = ["processor", "stage", "in", "out", "removed"]
    return ["processors:", table(header, rows, align="llrrl")]


def _schema_lines(schema: Any) -> list[str]:
    if not schema:
        return ["schema: (none yet: no row group with rows was written)"]
    columns = schema.get("columns") or []
    return ["schema:"] + [f"  {c.get('name')}: {c.get('type')}" for c in columns]


def failure_report(failures: list[dict[str, Any]]) -> list[str]:
    """Counts per (column, error class) and the first few messages."""
    if not failures:
        return ["failures: none"]
    counts = collections.Counter((f.get("column"), f.get("error_class")) for f in failures)
    lines = [f"failures: {plural(len(failures), 'failure')} ({FAILURES_FILE})"]
    lines.append(
        table(
            ["column", "error class", "count"],
            [[c, e, n] for (c, e), n in sorted(counts.items(), key=lambda i: (-i[1], str(i[0])))],
            align="llr",
        )
    )
    lines.append("  first messages:")
    for f in failures[:FIRST_FAILURES]:
        where = failure_place(f.get("row"), f.get("row_group"), f.get("attempts"))
        lines.append(
            f"    {where}, {f.get('column')}: {f.get('error_class')}: "
            f"{truncate(str(f.get('message')), 200)}"
        )
    return lines
