"""Processors (``processors:``): each kind, the two stages, reports, resume.

Runs write real parquet under ``tmp_path`` (no models: samplers, expressions and custom
columns), on the real clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import trio

from trio_designer import ConfigError, PipelineConfig, TrioDesigner
from trio_designer._exceptions import ProcessorError


def words(row: Mapping[str, Any]) -> str:
    """A text with near-duplicates: rows with the same ``n % 3`` share all but one word."""
    base = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    group = row["n"] % 3
    text = [f"{w}{group}" for w in base] * 3
    if row["n"] >= 3:
        text[-1] = "variant"
    return " ".join(text)


def halve(table: pa.Table) -> pa.Table:
    return table.slice(0, table.num_rows // 2)


def not_a_table(table: pa.Table) -> str:
    return "nope"


def config(processors: list[dict[str, Any]], **extra: Any) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "run": {"row_group_size": 4, "seed": 3},
            "columns": [
                {"name": "n", "kind": "custom", "function": index},
                {"name": "parity", "kind": "expression", "expr": "{{ n % 2 }}", "dtype": "int"},
                {"name": "label", "kind": "expression", "expr": "row {{ n }}"},
                {
                    "name": "judge",
                    "kind": "expression",
                    "expr": '{"score": {{ n % 5 }}}',
                    "dtype": "json",
                },
            ],
            "processors": processors,
            **extra,
        }
    )


def index(row: Mapping[str, Any], ctx: Any) -> int:
    return int(ctx.row_index)


async def run(cfg: PipelineConfig, out: Path, n: int = 12, **kw: Any) -> Any:
    return await TrioDesigner().create(cfg, num_records=n, output_dir=out, **kw)


async def test_column_processors_reshape_each_row_group(tmp_path: Path) -> None:
    cfg = config(
        [
            {"kind": "drop_columns", "columns": ["judge"]},
            {"kind": "rename_columns", "columns": {"label": "title"}},
            {"kind": "select_columns", "columns": ["title", "n"]},
        ]
    )
    result = await run(cfg, tmp_path / "o")
    table = result.table
    assert table.column_names == ["title", "n"]
    assert sorted(table.column("n").to_pylist()) == list(range(12))
    assert result.processors["drop_columns_0"]["rows_in"] == 12
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert meta["summary"]["processors"]["select_columns_2"]["rows_out"] == 12


async def test_filter_keeps_rows_whose_condition_holds_and_records_the_rest(tmp_path: Path) -> None:
    cfg = config(
        [
            {
                "kind": "filter",
                "condition": "{{ parity == 0 }}",
                "reason": "odd",
                "keep_filtered": True,
            }
        ]
    )
    result = await run(cfg, tmp_path / "o")
    assert sorted(result.table.column("n").to_pylist()) == [0, 2, 4, 6, 8, 10]
    assert result.num_records_written == 6
    report = result.processors["filter_0"]
    assert report == {
        "name": "filter_0",
        "kind": "filter",
        "stage": "row_group",
        "rows_in": 12,
        "rows_out": 6,
        "removed": {"odd": 6},
        "not_emitted": {},
    }
    filtered = ds.dataset(tmp_path / "o" / "filtered" / "filter_0", format="parquet").to_table()
    assert sorted(filtered.column("n").to_pylist()) == [1, 3, 5, 7, 9, 11]
    assert set(filtered.column("_filtered_reason").to_pylist()) == {"odd"}


async def test_a_filter_may_read_a_json_column_s_fields(tmp_path: Path) -> None:
    cfg = config([{"kind": "filter", "condition": "{{ judge.score >= 3 }}"}])
    result = await run(cfg, tmp_path / "o", n=10)
    assert sorted(result.table.column("n").to_pylist()) == [3, 4, 8, 9]


async def test_a_filter_removing_every_row_writes_empty_row_groups(tmp_path: Path) -> None:
    cfg = config([{"kind": "filter", "condition": "{{ n < 0 }}"}])
    result = await run(cfg, tmp_path / "o")
    assert result.status == "complete"
    assert result.num_records_written == 0
    assert result.table.num_rows == 0
    assert result.processors["filter_0"]["removed"] == {"condition {{ n < 0 }} is false": 12}
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert {entry["rows"] for entry in meta["row_groups"].values()} == {0}
    # A resumed run generates nothing again: every row group is recorded.
    again = await run(cfg, tmp_path / "o", resume=True)
    assert again.num_records_written == 0
    assert again.processors["filter_0"]["rows_in"] == 12  # the earlier run's counts


async def test_exact_dedup_works_across_row_groups_after_the_run(tmp_path: Path) -> None:
    cfg = config([{"kind": "dedup", "columns": ["parity"], "keep_filtered": True}])
    result = await run(cfg, tmp_path / "o")
    out = tmp_path / "o"
    assert sorted(result.table.column("n").to_pylist()) == [0, 1]
    assert result.processed_files == ("processed/parquet-files/row-group-00000.parquet",)
    # parquet-files/ keeps every generated row.
    assert ds.dataset(out / "parquet-files", format="parquet").to_table().num_rows == 12
    assert result.processors["dedup_0"]["stage"] == "after_run"
    assert result.processors["dedup_0"]["removed"] == {"exact duplicate of parity": 10}
    removed = ds.dataset(out / "filtered" / "dedup_0", format="parquet").to_table()
    assert removed.num_rows == 10
    assert (out / "processed" / "_SUCCESS.json").is_file()


async def test_near_duplicate_dedup_uses_minhash_across_row_groups(tmp_path: Path) -> None:
    cfg = PipelineConfig.from_dict(
        {
            "run": {"row_group_size": 2},
            "columns": [
                {"name": "n", "kind": "custom", "function": index},
                {"name": "text", "kind": "custom", "function": words, "depends_on": ["n"]},
            ],
            "processors": [{"kind": "dedup", "near_duplicate": "text", "threshold": 0.7}],
        }
    )
    result = await run(cfg, tmp_path / "o", n=9)
    assert sorted(result.table.column("n").to_pylist()) == [0, 1, 2]


async def test_the_after_run_stage_is_done_once_and_redone_after_a_crash(tmp_path: Path) -> None:
    cfg = config(
        [
            {"kind": "dedup", "columns": ["parity"]},
            {"kind": "rename_columns", "columns": {"label": "title"}},
        ]
    )
    out = tmp_path / "o"
    await run(cfg, out)
    marker = out / "processed" / "_SUCCESS.json"
    first = marker.read_text()
    # Resumed with nothing left to do: the stage is not applied a second time.
    again = await run(cfg, out, resume=True)
    assert marker.read_text() == first
    assert again.table.column_names[:3] == ["_row_id", "n", "parity"]
    assert "title" in again.table.column_names
    # A crash between generation and processing: the marker is missing, the stage runs again
    # from parquet-files/ (never modified) and gives the same result.
    marker.unlink()
    (out / "processed" / "parquet-files" / "row-group-00000.parquet").unlink()
    third = await run(cfg, out, resume=True)
    assert sorted(third.table.column("n").to_pylist()) == [0, 1]
    assert json.loads(marker.read_text())["files"] == json.loads(first)["files"]


async def test_a_crash_before_a_checkpoint_never_applies_a_processor_twice(tmp_path: Path) -> None:
    """Row groups already checkpointed are not processed again on resume; the others are
    processed once, when generated."""
    cfg = config(
        [{"kind": "rename_columns", "columns": {"label": "title"}}],
    )
    out = tmp_path / "o"
    with trio.CancelScope() as scope:

        def stop(event: str, fields: Mapping[str, Any]) -> None:
            if event == "row_group_checkpointed" and fields["row_group"] == 0:
                scope.cancel()

        await TrioDesigner(on_event=stop).create(
            cfg,
            num_records=12,
            output_dir=out,
        )
    result = await run(cfg, out, resume=True)
    assert result.table.num_rows == 12
    assert "title" in result.table.column_names
    assert "label" not in result.table.column_names
    assert result.processors["rename_columns_0"]["rows_in"] == 12


async def test_to_chat_writes_an_extra_dataset_in_jsonl_and_parquet(tmp_path: Path) -> None:
    cfg = config(
        [
            {"kind": "filter", "condition": "{{ parity == 0 }}"},
            {
                "kind": "to_chat",
                "name": "chat",
                "messages": [
                    {"role": "user", "content": "What is {{ label }}?"},
                    {"role": "assistant", "content": "{{ n }}"},
                ],
            },
            {
                "kind": "schema_transform",
                "name": "pairs",
                "template": '{"prompt": {{ label | tojson }}, "score": {{ judge.score }}}',
            },
        ]
    )
    out = tmp_path / "o"
    await run(cfg, out)
    lines = (out / "chat" / "data.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 6
    assert records[0] == {
        "messages": [
            {"role": "user", "content": "What is row 0?"},
            {"role": "assistant", "content": "0"},
        ]
    }
    chat = ds.dataset(out / "chat" / "parquet-files", format="parquet").to_table()
    assert chat.num_rows == 6
    pairs = [json.loads(x) for x in (out / "pairs" / "data.jsonl").read_text().splitlines()]
    assert pairs[1] == {"prompt": "row 2", "score": 2}


async def test_a_custom_processor_gets_each_row_group_s_table(tmp_path: Path) -> None:
    cfg = config([{"kind": "custom", "function": halve}])
    result = await run(cfg, tmp_path / "o")
    assert result.table.num_rows == 6
    assert result.processors["custom_0"]["removed"] == {"removed by halve": 6}


async def test_a_whole_dataset_custom_processor_gets_every_row_at_once(tmp_path: Path) -> None:
    cfg = config([{"kind": "custom", "function": halve, "whole_dataset": True}])
    result = await run(cfg, tmp_path / "o")
    assert sorted(result.table.column("n").to_pylist()) == list(range(6))


async def test_a_failing_custom_processor_fails_the_run_naming_it(tmp_path: Path) -> None:
    cfg = config([{"kind": "custom", "function": not_a_table}])
    with pytest.raises(ProcessorError, match="custom_0"):
        await run(cfg, tmp_path / "o")


async def test_preview_applies_both_stages_in_memory(tmp_path: Path) -> None:
    cfg = config(
        [
            {"kind": "filter", "condition": "{{ parity == 0 }}"},
            {"kind": "dedup", "columns": ["parity"]},
        ]
    )
    result = await TrioDesigner().preview(cfg, num_records=8)
    assert result.table.column("n").to_pylist() == [0]
    assert result.processors["dedup_1"]["rows_out"] == 1


@pytest.mark.parametrize(
    ("processor", "message"),
    [
        ({"kind": "drop_columns", "columns": ["lable"]}, "did you mean 'label'"),
        ({"kind": "select_columns", "columns": ["nope"]}, "'nope', which is not a column"),
        ({"kind": "rename_columns", "columns": {"n": "label"}}, "two columns the name 'label'"),
        ({"kind": "dedup", "columns": ["x"]}, "'x', which is not a column"),
        ({"kind": "filter", "condition": "{{ score > 3 }}"}, "references 'score'"),
        ({"kind": "filter", "condition": "{{ n | uper }}"}, "uper"),
        ({"kind": "filter", "condition": "{% if %}"}, "processors[0]"),
    ],
)
async def test_processor_problems_are_config_errors_before_the_run(
    tmp_path: Path, processor: dict[str, Any], message: str
) -> None:
    cfg = config([processor])
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("|", r"\|")):
        await run(cfg, tmp_path / "o")
    assert not (tmp_path / "o").exists()


async def test_a_processor_sees_the_columns_the_processors_before_it_leave(tmp_path: Path) -> None:
    cfg = config(
        [
            {"kind": "rename_columns", "columns": {"label": "title"}},
            {"kind": "drop_columns", "columns": ["label"]},
        ]
    )
    with pytest.raises(ConfigError, match=r"processors\[1\].*columns: n, parity, title, judge"):
        await run(cfg, tmp_path / "o")


def test_processors_round_trip_through_yaml() -> None:
    cfg = config(
        [
            {"kind": "filter", "condition": "{{ n > 1 }}", "keep_filtered": True},
            {"kind": "dedup", "columns": ["n"], "near_duplicate": "label", "threshold": 0.5},
            {"kind": "to_chat", "name": "chat", "messages": [{"role": "user", "content": "x"}]},
            {"kind": "custom", "function": "tests.test_processors:halve"},
        ]
    )
    again = PipelineConfig.from_yaml(cfg.to_yaml())
    assert again.processors == cfg.processors
    assert again.to_dict() == cfg.to_dict()


async def test_inspect_reports_rows_in_rows_out_and_why(tmp_path: Path) -> None:
    from trio_designer.cli._inspect import describe, read_failures, read_run_record

    cfg = config(
        [
            {"kind": "filter", "condition": "{{ parity == 0 }}", "reason": "odd"},
            {"kind": "dedup", "columns": ["judge"]},
        ]
    )
    out = tmp_path / "o"
    await run(cfg, out, n=12)
    text = describe(out, read_run_record(out), read_failures(out))
    assert "processors:" in text
    lines = [line.split() for line in text.splitlines()]
    assert ["filter_0", "row_group", "12", "6", "odd:", "6"] in lines
    assert any(line[:4] == ["dedup_1", "after_run", "6", "5"] for line in lines)


def test_the_command_line_reports_processors_and_the_final_dataset(tmp_path: Path) -> None:
    from _cli_harness import run_cli

    config_file = tmp_path / "p.yaml"
    config_file.write_text(
        "columns:\n"
        "  - {name: topic, kind: sampler, sampler: category, values: [a, b]}\n"
        "processors:\n"
        "  - {kind: filter, condition: '{{ topic != \"zzz\" }}'}\n"
        "  - {kind: dedup, columns: [topic]}\n"
    )
    out = tmp_path / "out"
    outcome = run_cli(
        ["run", str(config_file), "-n", "6", "--output-dir", str(out), "--progress", "none"]
    )
    assert outcome.status == 0, outcome.err
    assert "filter_0 (filter, row_group): 6 in, 6 out" in outcome.out
    assert "dedup_1 (dedup, after_run): 6 in, 2 out, 4 removed" in outcome.out
    assert str(out / "processed" / "parquet-files") in outcome.out
    report = run_cli(["inspect", str(out)])
    assert "dedup_1" in report.out


async def test_rows_a_filter_removed_are_filtered_in_the_provenance(tmp_path: Path) -> None:
    """Every cell of a row a processor removed says ``filtered`` in the sidecar (joined by row
    id), every cell of a kept row ``ok``; ``inspect --row`` tells the same story."""
    cfg = config([{"kind": "filter", "condition": "{{ parity == 0 }}"}])
    await run(cfg, tmp_path / "o")
    cells = ds.dataset(tmp_path / "o" / "provenance", format="parquet").to_table().to_pylist()
    by_row: dict[int, set[str]] = {}
    for cell in cells:
        by_row.setdefault(cell["row_id"], set()).add(cell["status"])
    assert by_row == {r: {"filtered"} if r % 2 else {"ok"} for r in range(12)}


async def test_a_processor_dropping_the_row_id_marks_nothing_filtered(tmp_path: Path) -> None:
    cfg = config(
        [
            {"kind": "select_columns", "columns": ["n"]},
            {"kind": "custom", "function": halve},
        ]
    )
    result = await run(cfg, tmp_path / "o")
    assert result.num_records_written == 6  # three row groups of 4, each halved
    statuses = ds.dataset(tmp_path / "o" / "provenance", format="parquet").to_table()
    assert set(statuses.column("status").to_pylist()) == {"ok"}


async def test_the_dataset_card_says_what_each_processor_did(tmp_path: Path) -> None:
    cfg = config(
        [
            {"kind": "filter", "condition": "{{ parity == 0 }}", "reason": "odd"},
            {"kind": "drop_columns", "columns": ["judge"]},
        ]
    )
    await run(cfg, tmp_path / "o")
    card = (tmp_path / "o" / "README.md").read_text()
    section = card.split("## Processors\n", 1)[1].split("\n## ", 1)[0]
    assert "| `filter_0` | filter | row_group | 12 | 6 | 6 odd |" in section
    assert "| `drop_columns_1` | drop_columns | row_group | 6 | 6 | — |" in section


async def test_a_run_without_processors_has_no_processors_section(tmp_path: Path) -> None:
    await run(config([]), tmp_path / "o")
    assert "## Processors" not in (tmp_path / "o" / "README.md").read_text()
