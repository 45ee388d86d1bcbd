"""``inspect --cells`` and ``inspect --row N``: the provenance files of a run, summarised.

Reads the per-cell records (``provenance/``, see ``docs/cost.md``) that the run record names,
with pyarrow compute (a million cells summarise in well under a second), and either prints
per-column totals or one row's story.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .._sink import CELL_STATUSES, DATASET_DIR, ROW_ID, read_cells
from ._format import table, truncate

TOP_ERRORS = 3


def cells_summary(cells: pa.Table) -> dict[str, dict[str, Any]]:
    """Column -> its statuses, top error classes, token and cost totals, latency p50/p95.

    ``cost`` is ``None`` for a column none of whose cells has a price; latencies are over the
    cells that called a model (``None`` when none did).
    """
    result: dict[str, dict[str, Any]] = {}
    if cells.num_rows == 0:
        return result
    cells = cells.filter(pc.is_valid(cells["row_id"]))  # full-column usage rows counted apart
    statuses = cells.group_by(["column", "status"]).aggregate([("row_id", "count")])
    for row in statuses.to_pylist():
        entry = result.setdefault(row["column"], _empty_entry())
        entry["statuses"][row["status"]] = row["row_id_count"]
    failed = cells.filter(pc.equal(cells["status"].cast(pa.string()), "failed"))
    errors = failed.group_by(["column", "error_class"]).aggregate([("row_id", "count")])
    for row in sorted(errors.to_pylist(), key=lambda r: -r["row_id_count"]):
        top = result[row["column"]]["errors"]
        if len(top) < TOP_ERRORS:
            top[row["error_class"] or "?"] = row["row_id_count"]
    sums = cells.group_by("column").aggregate(
        [
            ("requests", "sum"),
            ("input_tokens", "sum"),
            ("output_tokens", "sum"),
            ("reasoning_tokens", "sum"),
            ("cost", "sum"),
            ("cost", "count"),
        ]
    )
    for row in sums.to_pylist():
        entry = result[row["column"]]
        for name in ("requests", "input_tokens", "output_tokens", "reasoning_tokens"):
            entry[name] = row[f"{name}_sum"] or 0
        entry["cost"] = row["cost_sum"] if row["cost_count"] else None
    for column, entry in result.items():
        latencies = cells.filter(pc.equal(cells["column"], column))["latency_s"].drop_null()
        if len(latencies):
            p50, p95 = pc.quantile(latencies, q=[0.5, 0.95]).to_pylist()
            entry["latency_p50_s"], entry["latency_p95_s"] = p50, p95
    return result


def _empty_entry() -> dict[str, Any]:
    return {
        "statuses": dict.fromkeys(CELL_STATUSES, 0),
        "errors": {},
        "requests": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "reasoning_tokens": 0,
        "cost": None,
        "latency_p50_s": None,
        "latency_p95_s": None,
    }


def describe_cells(summary: Mapping[str, Mapping[str, Any]], order: Sequence[str]) -> str:
    """The per-column table of ``inspect --cells``."""
    if not summary:
        return "no per-cell records (a run from before provenance, or nothing written yet)"
    columns = [c for c in order if c in summary] + [c for c in summary if c not in order]
    rows = []
    for column in columns:
        entry = summary[column]
        counts = entry["statuses"]
        rows.append(
            [
                column,
                counts["ok"],
                counts["cached"],
                counts["skipped"],
                counts["failed"],
                counts["dropped_upstream"],
                entry["requests"],
                entry["input_tokens"],
                entry["output_tokens"],
                money(entry["cost"]),
                seconds(entry["latency_p50_s"]),
                seconds(entry["latency_p95_s"]),
            ]
        )
    headers = [
        "column", "ok", "cached", "skipped", "failed", "dropped", "requests", "in tok",
        "out tok", "cost", "p50", "p95",
    ]  # fmt: skip
    lines = ["cells per column:", table(headers, rows)]
    errors = [
        f"  {column}: " + ", ".join(f"{cls} x{n}" for cls, n in summary[column]["errors"].items())
        for column in columns
        if summary[column]["errors"]
    ]
    if errors:
        lines += ["top error classes of failed cells:", *errors]
    total = _total_cost(summary)
    tokens_in = sum(e["input_tokens"] for e in summary.values())
    tokens_out = sum(e["output_tokens"] for e in summary.values())
    lines.append(
        f"total: {tokens_in} input + {tokens_out} output tokens"
        + ("" if total is None else f", cost {money(total)}")
    )
    return "\n".join(lines)


def _total_cost(summary: Mapping[str, Mapping[str, Any]]) -> float | None:
    costs = [e["cost"] for e in summary.values() if e["cost"] is not None]
    return sum(costs) if costs else None


def row_story(cells: pa.Table, row_id: int) -> list[dict[str, Any]]:
    """One record per cell of row ``row_id``, in the order the files hold them."""
    records: list[dict[str, Any]] = cells.filter(pc.equal(cells["row_id"], row_id)).to_pylist()
    return records


def row_values(output_dir: Path, row_id: int) -> dict[str, Any] | None:
    """The row's values in the dataset, or ``None`` when it was not written (dropped)."""
    import pyarrow.dataset as ds

    folder = output_dir / DATASET_DIR
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    found = ds.dataset(folder, format="parquet").to_table(filter=ds.field(ROW_ID) == row_id)
    rows = found.to_pylist()
    return rows[0] if rows else None


def describe_row(
    row_id: int, records: Sequence[Mapping[str, Any]], values: Mapping[str, Any] | None
) -> str:
    """``inspect --row N``: each cell's status, attempts, error, model, tokens, latency, cost."""
    if not records:
        return f"row {row_id}: no per-cell records (not generated yet, or out of range)"
    kept = "in the dataset" if values is not None else "not in the dataset (dropped)"
    lines = [f"row {row_id} (row group {records[0]['row_group']}): {kept}"]
    rows = [
        [
            r["column"],
            r["status"],
            "-" if r["attempts"] is None else r["attempts"],
            r["model_alias"] or "-",
            "-" if r["requests"] is None else r["requests"],
            "-" if r["input_tokens"] is None else f"{r['input_tokens']}+{r['output_tokens']}",
            seconds(r["latency_s"]),
            money(r["cost"]),
            r["finish_reason"] or "-",
        ]
        for r in records
    ]
    headers = ["column", "status", "attempts", "model", "requests", "tokens", "latency", "cost",
               "finish"]  # fmt: skip
    lines.append(table(headers, rows, align="llrlrrrrl"))
    for r in records:
        if r["error_class"]:
            message = truncate(r["error_message"] or "", 300)
            lines.append(f"  {r['column']}: {r['error_class']}: {message}")
    if values is not None:
        lines.append("values:")
        lines.extend(
            f"  {name}: {truncate(str(value), 200)}" for name, value in values.items()
        )
    return "\n".join(lines)


def money(value: float | None) -> str:
    """A cost for a table: ``-`` when unknown, four decimals below 1, two above."""
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:,.2f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def inspect_cells(output_dir: Path, order: Sequence[str], *, as_json: bool) -> str:
    """The text (or JSON) of ``inspect --cells``."""
    import json

    summary = cells_summary(read_cells(output_dir))
    if as_json:
        return json.dumps({"output_dir": str(output_dir), "cells": summary}, indent=2)
    return describe_cells(summary, order)


def inspect_row(output_dir: Path, row_id: int, *, as_json: bool) -> str:
    """The text (or JSON) of ``inspect --row N``."""
    import json

    records = row_story(read_cells(output_dir), row_id)
    values = row_values(output_dir, row_id)
    if as_json:
        document = {"row_id": row_id, "cells": records, "values": values}
        return json.dumps(document, indent=2, ensure_ascii=False, default=str)
    return describe_row(row_id, records, values)

