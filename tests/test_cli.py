"""The command line, end to end through ``python -m trio_designer`` and in-process via ``main``.

Subprocess tests cover what a user sees (exit status, stdout/stderr, files on disk); the
in-process tests cover the corners cheaply (error reporting, Python config files, the trace
wiring with a stand-in export module). Configs are tiny: samplers, expressions, an async custom
function, and LLM columns on the built-in simulator (its default latency is 0.2 s).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

import trio_designer

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    """``trio_designer.cli.main``, imported lazily (see ``_forget_the_cli_module``)."""
    from trio_designer.cli import main as cli_main

    return cli_main(argv)


@pytest.fixture(scope="module", autouse=True)
def _forget_the_cli_module() -> Iterator[None]:
    """Importing ``trio_designer.cli`` makes ``cli`` an attribute of the package, which
    ``tests/test_exports.py`` (pinning the package namespace) would see; undo it afterwards."""
    yield
    for name in [n for n in sys.modules if n.split(".")[:2] == ["trio_designer", "cli"]]:
        del sys.modules[name]
    if hasattr(trio_designer, "cli"):
        delattr(trio_designer, "cli")


LLM_YAML = """\
models:
  - {alias: gen, model: sim-gen, provider: simulator, max_parallel_requests: 16}
run: {row_group_size: 5, seed: 7}
columns:
  - {name: topic, kind: sampler, sampler: category, values: [astronomy, cooking, jazz]}
  - {name: summary, kind: llm_text, model: gen, prompt: "Summarize {{ topic }} briefly."}
  - {name: n_words, kind: expression, expr: "{{ summary.split() | length }}", dtype: int}
"""

LOCAL_YAML = """\
run: {row_group_size: 4, seed: 1}
columns:
  - {name: topic, kind: sampler, sampler: category, values: [astronomy, cooking]}
  - {name: size, kind: sampler, sampler: uniform, low: 0, high: 10, decimal_places: 1}
  - {name: line, kind: expression, expr: "{{ topic }} at {{ size }}"}
"""

SLOW_PY = """\
import os

import trio

from trio_designer import CategorySampler, CustomColumn, PipelineBuilder


async def shout(row, ctx):
    # With PAUSE_FD set, row 5 (the first of row group 1: one group in flight, so group 0 is
    # on disk by then) says so on that file descriptor and then waits forever.
    if os.environ.get("PAUSE_FD") and ctx.row_index == 5:
        os.write(int(os.environ["PAUSE_FD"]), b"paused")
        await trio.sleep_forever()
    await trio.lowlevel.checkpoint()
    return row["topic"].upper()


def build_config():
    return (
        PipelineBuilder()
        .add_column(CategorySampler(name="topic", values=("a", "b")))
        .add_column(CustomColumn(name="shout", function=shout, depends_on=("topic",), dtype="str"))
        .with_run(row_group_size=5, max_row_groups_in_flight=1)
        .build()
    )
"""

FLAKY_PY = """\
from trio_designer import CategorySampler, CustomColumn, PipelineBuilder

RATE = {rate}


def boom(row, ctx):
    if ctx.rng.random() < RATE:
        raise KeyError("no such thing")
    return 1


config = (
    PipelineBuilder()
    .add_column(CategorySampler(name="topic", values=("a", "b")))
    .add_column(CustomColumn(name="boom", function=boom, depends_on=("topic",), dtype="int"))
    .with_run(row_group_size=10, shutdown_error_window=10, shutdown_error_rate=0.5)
    .build()
)
"""


# -- helpers ---------------------------------------------------------------------------------


def cli(
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``python -m trio_designer ARGS`` in ``cwd`` (``unset``: environment variables removed)."""
    environment = {k: v for k, v in _env(env).items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-m", "trio_designer", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "100"
    env.update(extra or {})
    return env


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def metadata(output_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((output_dir / "metadata.json").read_text())
    return data


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """In-process runs: cwd is ``tmp_path``; ``sys.path`` and config modules are restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "")).startswith(str(tmp_path)):
            del sys.modules[name]


# -- help ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_help_lists_commands_examples_and_exit_codes(tmp_path: Path) -> None:
    done = cli(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "usage: python -m trio_designer [-h] [--debug] [--no-plugins] COMMAND ..."
    )
    for command in ("run", "preview", "validate", "inspect", "trace", "simulate", "plugins"):
        assert f"\n    {command} " in done.stdout
    assert "python -m trio_designer run pipeline.yaml --num-records 1000" in done.stdout
    assert "130  interrupted (Ctrl-C)" in done.stdout


@pytest.mark.parametrize(
    ("command", "snippet"),
    [
        ("run", "run pipeline.yaml -n 1000 --output-dir out/topics --resume"),
        ("preview", "preview pipeline.yaml -n 2 --max-chars 0"),
        ("validate", "ok: 3 columns, 1 model, graph order: topic -> summary -> n_words"),
        ("inspect", "inspect out/topics --json"),
        ("trace", "open it at https://ui.perfetto.dev"),
    ],
)
def test_each_command_has_help_with_examples(
    command: str, snippet: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: trio-designer {command} ")
    assert snippet in out
    assert "exit status:" in out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "pipeline.yaml"]) == 2
    assert "the following arguments are required: -n/--num-records" in capsys.readouterr().err
    assert main(["run", "pipeline.yaml", "-n", "0"]) == 2
    assert "argument -n/--num-records: must be at least 1, got 0" in capsys.readouterr().err


# -- run, inspect, resume --------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One real run of an LLM pipeline on the simulator, shared by the tests below."""
    folder = tmp_path_factory.mktemp("llm")
    write(folder, "topics.yaml", LLM_YAML)
    done = cli(folder, "run", "topics.yaml", "-n", "12", "--seed", "3", "--trace")
    return folder, done


@pytest.mark.slow
def test_run_writes_a_dataset_and_prints_a_summary(
    llm_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    folder, done = llm_run
    assert done.returncode == 0, done.stderr
    out = folder / "out" / "topics"  # the default output directory
    table = ds.dataset(out / "parquet-files").to_table()
    assert table.num_rows == 12
    assert table.column_names == ["_row_id", "topic", "summary", "n_words"]
    assert all(n > 0 for n in table.column("n_words").to_pylist())
    meta = metadata(out)
    assert meta["status"] == "complete"
    assert meta["config"]["run"]["seed"] == 3  # --seed overrode run.seed
    assert (out / "trace.json").is_file()  # --trace
    lines = done.stdout.splitlines()
    assert lines[:8] == [
        "status: complete",
        "rows: 12 written of 12 requested (0 dropped)",
        "columns:",
        "  column   ok  skipped  failed  retried  cancelled",
        "  topic    12        0       0        0          0",
        "  summary  12        0       0        0          0",
        "  n_words  12        0       0        0          0",
        "models:",
    ]
    assert lines[8].startswith("  gen: 12 requests (12 ok, 0 failed, 0 rate-limited), ")
    assert "output: out/topics (3 parquet files)" in lines
    assert '  read it: pyarrow.dataset.dataset("out/topics/parquet-files")' in lines
    card = "  dataset card: out/topics/README.md; export: python -m trio_designer export"
    assert f"{card} out/topics --format jsonl" in lines
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_inspect_reports_counts_schema_and_usage(
    llm_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    folder, _ = llm_run
    done = cli(folder, "inspect", "out/topics")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    fingerprint = metadata(folder / "out" / "topics")["fingerprint"]
    assert f"fingerprint: {fingerprint}" in text
    assert "rows: 12 written of 12 requested; 0 dropped in written row groups" in text
    assert "row groups: 3 of 3 written (size 5)" in text
    assert "   2     2          2  parquet-files/row-group-00002.parquet" in text
    schema = "schema:\n  _row_id: int64\n  topic: string\n  summary: string\n  n_words: int64\n"
    assert schema in text
    assert "failures: none" in text
    assert "usage (last run):\n  gen: 12 requests (12 ok, 0 failed, 0 rate-limited)" in text


@pytest.mark.slow
def test_resume_with_another_config_is_refused_saying_what_changed(
    llm_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    folder, _ = llm_run
    before = metadata(folder / "out" / "topics")
    done = cli(folder, "run", "topics.yaml", "-n", "12", "--seed", "4", "--resume")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: output directory 'out/topics' holds a different run (fingerprint "
        f"{before['fingerprint']}, this run {done.stderr.split('this run ')[1][:71]}); what "
        "changed:",
        "  - run.seed changed",
        "Resuming would mix values made by both in one dataset. Start a new run: pass another "
        "--output-dir or remove the directory; or pass --force-resume to continue it anyway "
        "(the rows already written keep their old values; the forced resume is recorded in "
        "metadata.json).",
    ]
    assert metadata(folder / "out" / "topics") == before  # untouched


@pytest.mark.slow
def test_trace_exports_the_recorded_run_for_perfetto(
    llm_run: tuple[Path, subprocess.CompletedProcess[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = llm_run
    out = folder / "out" / "topics"
    assert main(["trace", str(out), "--chrome", str(folder / "topics.chrome.json")]) == 0
    document = json.loads((folder / "topics.chrome.json").read_text())
    names = {e.get("name") for e in document["traceEvents"]}
    assert {"topic", "summary", "n_words"} <= names | {
        e.get("args", {}).get("name") for e in document["traceEvents"]
    }
    assert "open it in Perfetto: https://ui.perfetto.dev" in capsys.readouterr().out


@pytest.mark.slow
def test_running_again_without_resume_is_refused(
    llm_run: tuple[Path, subprocess.CompletedProcess[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = llm_run
    out = folder / "out" / "topics"
    code = main(["run", str(folder / "topics.yaml"), "-n", "12", "--seed", "3", "-o", str(out)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"error: output directory {str(out)!r} already holds 3 written row group(s) of this "
        "run; pass --resume to continue it, or pass another --output-dir or remove the "
        "directory.\n"
    )


# -- preview ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_preview_prints_one_block_per_record(tmp_path: Path) -> None:
    write(tmp_path, "local.yaml", LOCAL_YAML)
    done = cli(tmp_path, "preview", "local.yaml", "-n", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    headers = [line for line in lines if line.startswith("── record ")]
    assert [h.split(" ─")[0] for h in headers] == ["── record 1", "── record 2", "── record 3"]
    assert all(len(h) == 100 for h in headers)  # a rule across the terminal (COLUMNS=100)
    assert sum(line.startswith("topic : ") for line in lines) == 3
    assert sum(line.startswith("line  : ") for line in lines) == 3
    assert lines[-1].startswith("3 records of 3 requested (0 dropped), complete, ")
    assert not (tmp_path / "out").exists()  # nothing written


LIMITER_PY = """\
from trio_designer import CustomColumn, ModelConfig, PipelineBuilder


def limiter_kind(row, ctx):
    return type(ctx.models.model("gen").limiter).__name__


config = (
    PipelineBuilder()
    .add_model(ModelConfig(alias="gen", model="sim-gen"))
    .add_column(CustomColumn(name="kind", function=limiter_kind, models=("gen",)))
    .build()
)
"""


@pytest.mark.parametrize(
    ("options", "kind"),
    [
        ([], "AdaptiveLimiter"),
        (["--limiter", "adaptive"], "AdaptiveLimiter"),
        (["--limiter", "static"], "StaticLimiter"),
    ],
)
def test_limiter_chooses_each_endpoints_limiter(
    isolated: Path, capsys: pytest.CaptureFixture[str], options: list[str], kind: str
) -> None:
    """A custom column reports the class of the limiter its model handle really uses."""
    write(isolated, "limiter_kinds.py", LIMITER_PY)
    assert main(["preview", "limiter_kinds.py", "-n", "2", "--jsonl", *options]) == 0
    assert capsys.readouterr().out.splitlines() == [json.dumps({"kind": kind})] * 2
    out = isolated / "out" / kind
    assert main(["run", "limiter_kinds.py", "-n", "2", "-o", str(out), *options]) == 0
    assert ds.dataset(out / "parquet-files").to_table().column("kind").to_pylist() == [kind] * 2


def test_an_unknown_limiter_is_a_usage_error(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(isolated, "limiter_kinds.py", LIMITER_PY)
    assert main(["preview", "limiter_kinds.py", "--limiter", "fast"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("trio-designer preview: error: argument --limiter: invalid choice: ")
    assert "adaptive" in error
    assert "static" in error


def test_the_resume_command_keeps_the_static_limiter() -> None:
    from trio_designer.cli._run import resume_command

    args = argparse.Namespace(
        prog="trio-designer",
        config="p.yaml",
        num_records=10,
        seed=None,
        engine="async",
        trace=False,
        limiter="static",
    )
    assert resume_command(args, Path("out/p")) == (
        "trio-designer run p.yaml --num-records 10 --output-dir out/p --limiter static --resume"
    )


def test_record_block_wraps_and_truncates_long_values() -> None:
    from trio_designer.cli._format import record_block, truncate

    record = {"id": 7, "text": "word " * 40, "data": {"b": [1, 2]}}
    block = record_block(2, record, width=40, max_chars=60)
    assert block.splitlines() == [
        "── record 2 " + "─" * 28,
        "id   : 7",
        "text : word word word word word word",
        "       word word word word word word…",
        "       [140 more chars]",
        'data : {"b": [1, 2]}',
    ]
    assert truncate("abc", 0) == "abc"


# -- validate --------------------------------------------------------------------------------


@pytest.mark.slow
def test_validate_ok(tmp_path: Path) -> None:
    write(tmp_path, "topics.yaml", LLM_YAML)
    done = cli(tmp_path, "validate", "topics.yaml")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "ok: 3 columns, 1 model, graph order: topic -> summary -> n_words\n",
        "",
    )


@pytest.mark.slow
def test_validate_lists_every_problem(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bad.yaml",
        """\
providers:
  - {name: remote, base_url: "http://127.0.0.1:9/v1", api_key_env: TD_TEST_MISSING_KEY}
models:
  - {alias: gen, model: m, provider: remote}
columns:
  - {name: topic, kind: sampler, sampler: category, values: [a, b]}
  - {name: summary, kind: llm_text, model: gen, prompt: "About {{ topc }}"}
  - {name: n, kind: expression, expr: "{{ summary | length }"}
  - {name: c, kind: custom, function: "td_no_such_module:f"}
""",
    )
    done = cli(tmp_path, "validate", "bad.yaml", unset=("TD_TEST_MISSING_KEY",))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: bad.yaml: the configuration has 4 problems:",
        "  - columns[1] 'summary' (line 7): prompt references 'topc', which is not a column; "
        "did you mean 'topic'?",
        "  - columns[2] 'n' (line 8): expr has a Jinja syntax error on template line 1: "
        "unexpected '}'",
        "  - columns[3] 'c' (line 9): no module 'td_no_such_module' in the installed "
        "environment; install the package, or add the directory holding it to python_path",
        "  - providers[0].api_key_env (line 2): the environment variable 'TD_TEST_MISSING_KEY' "
        "is not set; export the API key in it, or remove api_key_env if the endpoint needs no "
        "key",
    ]


def test_validate_structural_problems_and_no_check_env(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        isolated,
        "typo.yaml",
        """\
models:
  - {alias: gen, model: sim-gen}
columns:
  - {name: topic, kind: sampler, sampler: category, values: [a, b]}
  - {name: summary, kind: llm_text, model: gen, promt: "About {{ topic }}"}
""",
    )
    assert main(["validate", "typo.yaml"]) == 2
    assert capsys.readouterr().err == (
        "error: typo.yaml: the configuration has 2 problems:\n"
        "  - columns[1].prompt (line 5): required field is missing\n"
        "  - columns[1] (line 5): unknown field 'promt'; did you mean 'prompt'?\n"
    )
    write(
        isolated,
        "keyless.yaml",
        """\
providers:
  - {name: remote, base_url: "http://127.0.0.1:9/v1", api_key_env: TD_TEST_MISSING_KEY}
models:
  - {alias: gen, model: m, provider: remote}
  - {alias: spare, model: m2}
columns:
  - {name: summary, kind: llm_text, model: gen, prompt: "Hello"}
""",
    )
    assert main(["validate", "keyless.yaml", "--no-check-env"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "ok: 1 column, 2 models, graph order: summary\n"
    assert captured.err == "note: models[1] 'spare' is not used by any column\n"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.yaml", "error: cannot read config file 'missing.yaml': no such file\n"),
        (
            "pipeline.toml",
            "error: cannot tell the format of 'pipeline.toml': use a .yaml, .yml, .json or .py "
            "file\n",
        ),
    ],
)
def test_unreadable_config(name: str, message: str, isolated: Path, capsys: Any) -> None:
    assert main(["validate", name]) == 2
    assert capsys.readouterr().err == message


# -- Python config files ---------------------------------------------------------------------


def test_python_config_with_build_config_runs(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(isolated, "td_slow_cfg.py", SLOW_PY)
    assert main(["run", "td_slow_cfg.py", "-n", "7", "--progress", "none", "--engine", "sync"]) == 0
    out = capsys.readouterr().out
    assert "rows: 7 written of 7 requested (0 dropped)" in out
    table = ds.dataset(isolated / "out" / "td_slow_cfg" / "parquet-files").to_table()
    assert sorted(table.column("shout").to_pylist()) == sorted(
        t.upper() for t in table.column("topic").to_pylist()
    )
    # The custom function is recorded under the file's own module name, the same in every
    # process, so the fingerprint (and --resume) survive a restart.
    config = metadata(isolated / "out" / "td_slow_cfg")["config"]
    assert config["columns"][1]["function"] == "td_slow_cfg:shout"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\n", "defines neither 'config' (a PipelineConfig) nor 'build_config()'; add one"),
        ("config = {'columns': []}\n", "'config' is a dict, not a PipelineConfig; build it"),
        (
            "def build_config():\n    raise RuntimeError('no network')\n",
            "build_config() raised RuntimeError: no network (rerun with --debug",
        ),
        ("import td_missing_dependency\n", "importing the config file failed with "),
    ],
)
def test_python_config_problems(
    source: str, message: str, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(isolated, "td_broken_cfg.py", source)
    assert main(["validate", "td_broken_cfg.py"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: td_broken_cfg.py: ")
    assert message in err
    assert "Traceback" not in err


def test_config_module_name_never_shadows_another_module(tmp_path: Path) -> None:
    from trio_designer.cli._load import module_name

    assert module_name(tmp_path / "td_my_pipeline.py") == "td_my_pipeline"
    assert module_name(tmp_path / "json.py") == "_trio_designer_config_json"
    assert module_name(tmp_path / "my-pipeline.py") == "_trio_designer_config_my_pipeline"


def test_yaml_config_finds_custom_functions_only_where_it_says(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trio_designer.cli._load import load_config

    sub = isolated / "configs"
    sub.mkdir()
    write(sub, "td_columns_mod.py", "def double(row):\n    return row['n'] * 2\n")
    custom = """\
columns:
  - {name: n, kind: sampler, sampler: poisson, mean: 3}
  - {name: twice, kind: custom, function: "td_columns_mod:double", depends_on: [n], dtype: int}
"""
    # Beside the config, but not named: refused, and the message says how to allow it.
    write(sub, "custom.yaml", custom)
    assert main(["validate", str(sub / "custom.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no module 'td_columns_mod' in the installed environment; td_columns_mod.py lies " in err
    assert "add 'python_path: .' to the config if you trust that code" in err
    assert "td_columns_mod" not in sys.modules
    # Named by the config (relative to the config file, not to the current directory) ...
    write(sub, "named.yaml", "python_path: .\n" + custom)
    config = load_config(sub / "named.yaml")
    assert [c.name for c in config.columns] == ["n", "twice"]
    assert main(["validate", str(sub / "named.yaml")]) == 0
    err = capsys.readouterr().err
    assert err == (
        "code: columns[1] 'twice' function td_columns_mod:double -> td_columns_mod from "
        f"{sub / 'td_columns_mod.py'} (python_path {sub})\n"
    )
    del sys.modules["td_columns_mod"]
    # ... or on the command line, relative to the current directory.
    assert main(["validate", str(sub / "custom.yaml"), "--python-path", "configs"]) == 0
    del sys.modules["td_columns_mod"]


# -- failures and exit statuses --------------------------------------------------------------


def test_dropped_rows_still_succeed(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trio_designer.cli._format import table

    write(isolated, "td_flaky_ok.py", FLAKY_PY.format(rate=0.2))
    assert main(["run", "td_flaky_ok.py", "-n", "50", "--progress", "none"]) == 0
    out = capsys.readouterr().out
    meta = metadata(isolated / "out" / "td_flaky_ok")
    dropped = 50 - meta["rows_written"]
    assert dropped > 0
    assert f"rows: {50 - dropped} written of 50 requested ({dropped} dropped)" in out
    assert f"failures: {dropped}\n  row " in out
    assert "(dropped after 1 attempt), column boom: KeyError: 'no such thing'\n" in out
    assert main(["inspect", "out/td_flaky_ok"]) == 0
    report = capsys.readouterr().out
    assert f"failures: {dropped} failures (failures.jsonl)" in report
    assert (
        table(["column", "error class", "count"], [["boom", "KeyError", dropped]], align="llr")
        in report
    )


def test_early_shutdown_exits_1(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(isolated, "td_flaky_bad.py", FLAKY_PY.format(rate=0.95))
    assert main(["run", "td_flaky_bad.py", "-n", "200", "--progress", "none"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("status: early_shutdown\n")
    assert "the error-rate gate stopped the run early" in out
    assert metadata(isolated / "out" / "td_flaky_bad")["status"] == "early_shutdown"


def test_a_run_whose_every_row_was_dropped_exits_1(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """5 rows all failing never fill the gate's window of 10: the run ends ``complete`` with
    nothing in it, and the command says so and exits 1 (run and preview alike)."""
    write(isolated, "td_all_bad.py", FLAKY_PY.format(rate=1.0))
    assert main(["run", "td_all_bad.py", "-n", "5", "--progress", "none"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("status: complete\nrows: 0 written of 5 requested (5 dropped)")
    assert captured.err == (
        "error: every row was dropped (5 of 5 requested rows failed): nothing was generated; the "
        "failures above say why; `trio-designer inspect out/td_all_bad --cells` has every "
        "cell's story\n"
    )
    assert metadata(isolated / "out" / "td_all_bad")["status"] == "complete"
    assert main(["inspect", "out/td_all_bad", "--cells"]) == 0
    assert "failed" in capsys.readouterr().out
    assert main(["preview", "td_all_bad.py", "-n", "3"]) == 1
    captured = capsys.readouterr()
    assert "0 records of 3 requested (3 dropped), complete" in captured.out
    assert captured.err.startswith("error: every row was dropped (3 of 3 requested rows failed)")
    # One row kept is a partial success, exit 0 as before.
    write(isolated, "td_most_bad.py", FLAKY_PY.format(rate=0.7))
    assert main(["run", "td_most_bad.py", "-n", "8", "--progress", "none"]) == 0


def test_unexpected_errors_are_one_line_unless_debug(
    isolated: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_designer.cli import _validate

    def broken(config: Any, **options: Any) -> Any:
        raise RuntimeError("kaputt")

    monkeypatch.setattr(_validate, "check", broken)
    write(isolated, "local.yaml", LOCAL_YAML)
    assert main(["validate", "local.yaml"]) == 1
    assert capsys.readouterr().err == (
        "error: unexpected RuntimeError: kaputt (rerun with --debug for the traceback)\n"
    )
    assert main(["validate", "local.yaml", "--debug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith("error: unexpected RuntimeError: kaputt\n")


def test_secrets_never_reach_the_terminal(
    isolated: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_designer.cli import _validate
    from trio_designer.cli._format import Redactor

    monkeypatch.setenv("TD_TEST_VENDOR_CRED", "sk-very-secret-value")
    write(
        isolated,
        "keyed.yaml",
        """\
providers:
  - {name: remote, base_url: "http://127.0.0.1:9/v1", api_key_env: TD_TEST_VENDOR_CRED}
models:
  - {alias: gen, model: m, provider: remote}
columns:
  - {name: summary, kind: llm_text, model: gen, prompt: "Hello"}
""",
    )

    def leaky(config: Any, **options: Any) -> Any:
        raise RuntimeError("server said: bad key sk-very-secret-value")

    monkeypatch.setattr(_validate, "check", leaky)
    assert main(["validate", "keyed.yaml"]) == 1
    err = capsys.readouterr().err
    assert "sk-very-secret-value" not in err
    assert "bad key ***" in err
    assert main(["validate", "keyed.yaml", "--debug"]) == 1  # the traceback is redacted too
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "sk-very-secret-value" not in err
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-secret")
    assert Redactor()("x sk-another-secret y") == "x *** y"


# -- trace -----------------------------------------------------------------------------------


@pytest.fixture
def fake_export(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """A stand-in ``trio_designer._observe`` that records its calls."""
    calls: list[tuple[Any, ...]] = []
    module = types.ModuleType("trio_designer._observe")

    def export_chrome_trace(output_dir: Path, dest: Path) -> Path:
        calls.append(("chrome", Path(output_dir), Path(dest)))
        return Path(dest)

    def plot_timeline(output_dirs: list[Path], dest: Path, *, title: str | None = None) -> Path:
        calls.append(("plot", [Path(d) for d in output_dirs], Path(dest)))
        return Path(dest)

    module.export_chrome_trace = export_chrome_trace  # type: ignore[attr-defined]
    module.plot_timeline = plot_timeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trio_designer._observe", module)
    return calls


def _traced_dir(folder: Path, name: str) -> Path:
    out = folder / name
    out.mkdir()
    (out / "trace.json").write_text("{}")
    return out


def test_trace_default_exports_chrome_json(
    isolated: Path, fake_export: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    out = _traced_dir(isolated, "run1")
    assert main(["trace", "run1"]) == 0
    assert fake_export == [("chrome", Path("run1"), Path("run1/trace.chrome.json"))]
    assert capsys.readouterr().out == (
        "chrome trace: run1/trace.chrome.json\n"
        "open it in Perfetto: https://ui.perfetto.dev -> 'Open trace file' -> choose "
        "run1/trace.chrome.json (chrome://tracing -> 'Load' works too)\n"
    )
    assert out.is_dir()


def test_trace_plot_and_compare(
    isolated: Path, fake_export: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    _traced_dir(isolated, "a")
    _traced_dir(isolated, "b")
    assert main(["trace", "a", "--plot", "t.svg"]) == 0
    assert main(["trace", "a", "--compare", "b"]) == 0
    assert main(["trace", "a", "--chrome", "c.json", "--plot", "t.png"]) == 0
    assert fake_export == [
        ("plot", [Path("a")], Path("t.svg")),
        ("plot", [Path("a"), Path("b")], Path("a/timeline.png")),
        ("chrome", Path("a"), Path("c.json")),
        ("plot", [Path("a")], Path("t.png")),
    ]
    assert "timeline: a/timeline.png\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["trace", "untraced"],
            "error: untraced has no trace.json; record one with 'run ... --trace' (or run: "
            "{trace: true} in the config)\n",
        ),
        (["trace", "a", "--plot", "t.jpg"], "error: --plot t.jpg: give a .png or .svg file name\n"),
    ],
)
def test_trace_usage_problems(
    args: list[str],
    message: str,
    isolated: Path,
    fake_export: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (isolated / "untraced").mkdir()
    _traced_dir(isolated, "a")
    assert main(args) == 2
    assert capsys.readouterr().err == message
    assert fake_export == []


def test_trace_without_matplotlib_or_export_module(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _traced_dir(isolated, "a")
    module = types.ModuleType("trio_designer._observe")

    def plot_timeline(output_dirs: Any, dest: Any, *, title: str | None = None) -> Path:
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    module.plot_timeline = plot_timeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trio_designer._observe", module)
    assert main(["trace", "a", "--plot", "t.png"]) == 2
    assert capsys.readouterr().err == (
        "error: plotting needs matplotlib, an optional extra: pip install 'trio_designer[plot]'\n"
    )
    monkeypatch.setitem(sys.modules, "trio_designer._observe", None)  # import fails
    assert main(["trace", "a"]) == 2
    assert capsys.readouterr().err.startswith("error: trace export is not available")


# -- inspect errors ----------------------------------------------------------------------------


def test_inspect_of_a_directory_without_a_run(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / "empty").mkdir()
    assert main(["inspect", "empty"]) == 2
    assert capsys.readouterr().err == (
        "error: empty has no metadata.json, so it is not the output directory of a run\n"
    )
    assert main(["inspect", "nowhere"]) == 2
    assert capsys.readouterr().err == (
        "error: nowhere is not a directory; give the --output-dir of a run\n"
    )


# -- Ctrl-C ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_keeps_finished_row_groups_and_resumes(tmp_path: Path) -> None:
    """SIGINT while row group 1 runs: group 0 is kept, the run says how to resume, and the
    resumed run completes. The run waits on an event (row 5 reports that it has paused), not
    on a timer, so the interrupted state is exact."""
    write(tmp_path, "slow.py", SLOW_PY)
    out = tmp_path / "out" / "slow"
    paused, pause_fd = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_designer", "run", "slow.py", "-n", "40"],
        cwd=tmp_path,
        env=_env({"PAUSE_FD": str(pause_fd)}),
        pass_fds=(pause_fd,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(pause_fd)
    try:
        ready, _, _ = select.select([paused], [], [], 30)  # a guard, not a wait for time
        assert ready, "the run never reached row group 1"
        assert os.read(paused, 16) == b"paused"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        os.close(paused)
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert stdout == ""
    meta = metadata(out)
    assert meta["status"] == "interrupted"
    assert meta["rows_written"] == 5
    assert set(meta["row_groups"]) == {"0"}
    assert ds.dataset(out / "parquet-files").to_table().num_rows == 5
    assert stderr.splitlines()[-2:] == [
        "interrupted: 1 finished row group (5 of 40 rows) kept in out/slow",
        "resume with: python -m trio_designer run slow.py --num-records 40 --output-dir "
        "out/slow --resume",
    ]
    assert "Traceback" not in stderr

    resume = stderr.splitlines()[-1].removeprefix("resume with: python -m trio_designer ")
    resumed = cli(tmp_path, *resume.split(), "--progress", "none")
    assert resumed.returncode == 0, resumed.stderr
    assert (
        "rows: 35 written by this run (0 dropped); 40 of 40 requested rows are on disk"
    ) in resumed.stdout
    assert metadata(out)["status"] == "complete"
    table = ds.dataset(out / "parquet-files").to_table()
    assert table.num_rows == 40
