"""Validation columns (``kind: validation``): code (Python, SQL, JSON), callable, drop_invalid.

Runs write parquet under ``tmp_path`` on the real clock; the code to check comes from custom
columns, so no model is involved. Subprocess tests (ruff, execution) are marked slow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from trio_designer import ConfigError, PipelineConfig, TrioDesigner
from trio_designer.generators._validate_code import find_ruff

SNIPPETS = [
    "def f(x):\n    return x + 1\n",
    "def f(x)\n    return x\n",  # syntax error
    "print(undefined_name)\n",  # lint: F821
    "import sys\nsys.exit(3)\n",  # exits non-zero
    "while True:\n    pass\n",  # hangs
    "import os\nos.abort()\n",  # crashes
]


def snippet(row: Mapping[str, Any], ctx: Any) -> str:
    return SNIPPETS[ctx.row_index % len(SNIPPETS)]


SQL = ["SELECT a, b FROM t WHERE a > 1", "SELECT FROM WHERE", "SELECT * FROM t LIMIT 5"]


def sql(row: Mapping[str, Any], ctx: Any) -> str:
    return SQL[ctx.row_index % len(SQL)]


JSONS = ['{"name": "x", "n": 1}', '{"name": 5}', "not json"]


def jsons(row: Mapping[str, Any], ctx: Any) -> str:
    return JSONS[ctx.row_index % len(JSONS)]


def pipeline(source: Any, validation: dict[str, Any], **run: Any) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "run": {"row_group_size": 6, **run},
            "columns": [
                {"name": "code", "kind": "custom", "function": source},
                {"name": "check", "kind": "validation", "target": ["code"], **validation},
            ],
        }
    )


async def create(cfg: PipelineConfig, out: Path, n: int) -> Any:
    return await TrioDesigner().create(cfg, num_records=n, output_dir=out)


def checks(result: Any) -> list[dict[str, Any]]:
    table = result.table
    order = sorted(range(table.num_rows), key=lambda i: table.column("code")[i].as_py())
    return [table.column("check")[i].as_py() for i in order]


async def test_python_syntax_is_checked_with_ast(tmp_path: Path) -> None:
    cfg = pipeline(snippet, {"validator": "code", "language": "python", "lint": False})
    result = await create(cfg, tmp_path / "o", 2)
    table = result.table
    assert str(table.schema.field("check").type) == (
        "struct<is_valid: bool, messages: list<element: string>>"
    )
    by_code = dict(zip(table.column("code").to_pylist(), table.column("check").to_pylist(),
                       strict=True))
    assert by_code[SNIPPETS[0]] == {"is_valid": True, "messages": []}
    assert by_code[SNIPPETS[1]]["is_valid"] is False
    assert by_code[SNIPPETS[1]]["messages"][0].startswith("line 1: syntax error")


@pytest.mark.slow
@pytest.mark.deadline(30)
async def test_ruff_lints_for_errors_that_fail_at_run_time(tmp_path: Path) -> None:
    if find_ruff() is None:
        pytest.skip("ruff is not installed (it is in the dev extra)")
    cfg = pipeline(snippet, {"validator": "code", "language": "python"})
    result = await create(cfg, tmp_path / "o", 3)
    by_code = dict(zip(result.table.column("code").to_pylist(),
                       result.table.column("check").to_pylist(), strict=True))
    assert by_code[SNIPPETS[0]]["is_valid"] is True
    assert by_code[SNIPPETS[2]] == {
        "is_valid": False, "messages": ["line 1: F821 Undefined name `undefined_name`"],
    }


@pytest.mark.slow
@pytest.mark.deadline(40)
async def test_execution_runs_in_a_limited_subprocess(tmp_path: Path) -> None:
    """A hanging snippet is killed at its time limit, a crashing one is reported as a crash;
    neither touches the engine's process."""
    cfg = pipeline(
        snippet,
        {"validator": "code", "language": "python", "lint": False, "execute": True,
         "timeout": 2.0, "memory_mb": 256},
    )
    result = await create(cfg, tmp_path / "o", 6)
    by_code = dict(zip(result.table.column("code").to_pylist(),
                       result.table.column("check").to_pylist(), strict=True))
    assert by_code[SNIPPETS[0]] == {"is_valid": True, "messages": []}
    assert by_code[SNIPPETS[3]] == {
        "is_valid": False, "messages": ["execution: exit status 3: no error output"],
    }
    assert by_code[SNIPPETS[4]] == {
        "is_valid": False, "messages": ["execution: killed at the time limit of 2 s"],
    }
    assert by_code[SNIPPETS[5]] == {"is_valid": False, "messages": ["execution: crashed (SIGABRT)"]}


@pytest.mark.slow
@pytest.mark.deadline(30)
async def test_execution_sees_no_secret_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TD_VALIDATION_SECRET", "hunter2")

    def leak(row: Mapping[str, Any]) -> str:
        return "import os, sys\nsys.exit(7 if 'TD_VALIDATION_SECRET' in os.environ else 0)\n"

    cfg = pipeline(leak, {"validator": "code", "language": "python", "lint": False,
                          "execute": True})
    result = await create(cfg, tmp_path / "o", 1)
    assert result.table.column("check").to_pylist() == [{"is_valid": True, "messages": []}]


async def test_sql_parses_per_dialect(tmp_path: Path) -> None:
    cfg = pipeline(sql, {"validator": "code", "language": "sql", "dialect": "postgres"})
    result = await create(cfg, tmp_path / "o", 3)
    by_code = dict(zip(result.table.column("code").to_pylist(),
                       result.table.column("check").to_pylist(), strict=True))
    assert by_code[SQL[0]]["is_valid"] is True
    assert by_code[SQL[2]]["is_valid"] is True
    assert by_code[SQL[1]]["is_valid"] is False
    assert by_code[SQL[1]]["messages"]


async def test_json_is_checked_against_a_schema(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["name"],
    }
    cfg = pipeline(jsons, {"validator": "code", "language": "json", "schema": schema})
    result = await create(cfg, tmp_path / "o", 3)
    by_code = dict(zip(result.table.column("code").to_pylist(),
                       result.table.column("check").to_pylist(), strict=True))
    assert by_code[JSONS[0]] == {"is_valid": True, "messages": []}
    assert by_code[JSONS[1]] == {
        "is_valid": False, "messages": ["$.name: 5 is not of type 'string'"],
    }
    assert by_code[JSONS[2]]["messages"][0].startswith("not JSON")


BATCHES: list[int] = []


def short_enough(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    BATCHES.append(len(rows))
    return [
        True if len(row["code"]) < 25 else {"is_valid": False, "messages": ["too long"]}
        for row in rows
    ]


async def test_a_callable_validator_gets_batches_of_rows(tmp_path: Path) -> None:
    BATCHES.clear()
    cfg = pipeline(snippet, {"validator": "callable", "function": short_enough,
                             "batch_size": 4})
    result = await create(cfg, tmp_path / "o", 12)
    assert sum(BATCHES) == 12
    assert max(BATCHES) > 1  # rows arrive together
    assert max(BATCHES) <= 4
    valid = [c["is_valid"] for c in result.table.column("check").to_pylist()]
    assert valid.count(False) == sum(len(s) >= 25 for s in SNIPPETS) * 2


async def test_drop_invalid_drops_rows_through_the_cascade_and_records_them(
    tmp_path: Path,
) -> None:
    cfg = PipelineConfig.from_dict(
        {
            "run": {"row_group_size": 6},
            "columns": [
                {"name": "code", "kind": "custom", "function": snippet},
                {"name": "check", "kind": "validation", "validator": "code",
                 "language": "python", "lint": False, "target": ["code"],
                 "drop_invalid": True},
                {"name": "after", "kind": "expression", "expr": "{{ check.is_valid }}"},
            ],
        }
    )
    out = tmp_path / "o"
    result = await create(cfg, out, 12)
    assert result.num_records_written == 10  # the two syntax errors are dropped
    assert result.columns["after"].ok == 10  # nothing downstream ran for them
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {f["error_class"] for f in failures} == {"ValidationFailedError"}
    assert len(failures) == 2
    assert "syntax error" in failures[0]["message"]


def always_invalid(rows: Sequence[Mapping[str, Any]]) -> list[bool]:
    return [False] * len(rows)


async def test_rejections_do_not_trip_the_early_shutdown_gate(tmp_path: Path) -> None:
    cfg = pipeline(
        snippet,
        {"validator": "callable", "function": always_invalid, "drop_invalid": True},
        shutdown_error_window=4,
    )
    result = await create(cfg, tmp_path / "o", 24)
    assert result.status == "complete"
    assert result.num_records_written == 0
    assert result.num_rows_dropped == 24


def wrong_length(rows: Sequence[Mapping[str, Any]]) -> list[bool]:
    return [True]


async def test_a_callable_returning_the_wrong_length_fails_its_rows(tmp_path: Path) -> None:
    cfg = pipeline(snippet, {"validator": "callable", "function": wrong_length,
                             "batch_size": 1})
    result = await create(cfg, tmp_path / "o", 2)
    assert result.num_records_written == 2  # one row per batch: the right length
    cfg = pipeline(snippet, {"validator": "callable", "function": wrong_length,
                             "batch_size": 8}, shutdown_error_window=1000)
    result = await create(cfg, tmp_path / "p", 6)
    assert result.num_records_written < 6


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"validator": "code"}, "needs a 'language'"),
        ({"validator": "callable"}, "needs a 'function'"),
        ({"validator": "remote"}, "needs a 'model'"),
        ({"validator": "code", "language": "cobol"}, "must be one of"),
        ({"validator": "telepathy"}, "unknown validator 'telepathy'"),
        ({"validator": "code", "language": "json", "schema": {"type": "nope"}},
         "not a valid JSON schema"),
    ],
)
async def test_validation_config_problems_come_before_the_run(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    async def attempt() -> None:
        await create(pipeline(snippet, fields), tmp_path / "o", 1)

    with pytest.raises(ConfigError, match=message):
        await attempt()
    assert not (tmp_path / "o").exists()


async def test_a_validation_target_must_be_a_column(tmp_path: Path) -> None:
    data = {
        "columns": [
            {"name": "code", "kind": "custom", "function": snippet},
            {"name": "check", "kind": "validation", "validator": "code", "language": "python",
             "target": ["cod"]},
        ]
    }
    with pytest.raises(ConfigError, match=r"columns\[1\]\.target\[0\]: no column named 'cod'"):
        PipelineConfig.from_dict(data)


def test_validation_columns_round_trip() -> None:
    cfg = pipeline("mod:snippet", {"validator": "callable", "function": "mod:check",
                                   "batch_size": 8, "drop_invalid": True})
    assert PipelineConfig.from_yaml(cfg.to_yaml()) == cfg


async def test_a_remote_validator_posts_batches_through_the_model_machinery(
    tmp_path: Path,
) -> None:
    """Against the built-in simulator's /validate: rows go in batches, through the alias's
    limiter, counted in its usage."""
    from trio_designer.simulator import Latency, SimulatedModel

    cfg = PipelineConfig.from_dict(
        {
            "models": [{"alias": "checker", "model": "sim-check", "max_parallel_requests": 2}],
            "run": {"row_group_size": 12},
            "columns": [
                {"name": "code", "kind": "custom", "function": snippet},
                {"name": "check", "kind": "validation", "validator": "remote",
                 "model": "checker", "target": ["code"], "batch_size": 4},
            ],
        }
    )
    designer = TrioDesigner(
        simulator_models=[SimulatedModel(name="sim-check", latency=Latency(median=0.01))]
    )
    result = await designer.create(cfg, num_records=12, output_dir=tmp_path / "o")
    by_code = dict(zip(result.table.column("code").to_pylist(),
                       result.table.column("check").to_pylist(), strict=True))
    assert by_code[SNIPPETS[0]] == {"is_valid": True, "messages": []}
    assert by_code[SNIPPETS[1]] == {
        "is_valid": False, "messages": ["code: line 1: expected ':'"],
    }
    requests = result.usage["checker"]["requests_ok"]
    assert 3 <= requests < 12  # batches of up to 4 rows, not a request per row
