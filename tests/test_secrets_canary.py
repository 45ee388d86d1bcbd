"""No API key in any byte written (issue 12, bullet 6).

Canary keys are set in the environment; every command runs, successes and failures, against a
real simulator that requires one of them; stdout, stderr and every file of every output
directory (parquet, metadata, failures, traces, exports) are scanned for the canary values.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_harness import CANARIES, ThreadedSimulator, files_leaking, leaked, run_cli

from trio_designer import ConfigError, PipelineConfig

KEY = CANARIES["TD_CANARY_KEY"]

PIPELINE = """\
providers:
  - {{name: remote, base_url: "{url}", api_key_env: {env}}}
models:
  - {{alias: gen, model: sim-gen, provider: remote}}
run: {{row_group_size: 3, shutdown_error_window: 3}}
columns:
  - {{name: topic, kind: sampler, sampler: category, values: [jazz, tea]}}
  - {{name: summary, kind: llm_text, model: gen, prompt: "About {{{{ topic }}}}"}}
"""


@pytest.fixture(scope="module")
def simulator() -> Iterator[ThreadedSimulator]:
    with ThreadedSimulator(api_key=KEY) as running:
        yield running


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    yield tmp_path
    sys.modules.pop("td_canary_mod", None)


def _config(folder: Path, name: str, url: str, env: str = "TD_CANARY_KEY") -> str:
    (folder / name).write_text(PIPELINE.format(url=url, env=env))
    return name


def test_no_command_writes_a_key_anywhere(
    simulator: ThreadedSimulator, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every log record of every command, scanned below
    good = _config(folder, "good.yaml", simulator.url)
    wrong = _config(folder, "wrong.yaml", simulator.url, env="TD_CANARY_OTHER_TOKEN")
    commands: list[tuple[list[str], int]] = [
        (["validate", good], 0),
        (["run", good, "-n", "6", "-o", "out/good", "--trace", "--progress", "none"], 0),
        (["run", good, "-n", "6", "-o", "out/good", "--resume", "--progress", "plain"], 0),
        (["preview", good, "-n", "2"], 0),
        (["preview", good, "-n", "2", "--jsonl"], 0),
        (["inspect", "out/good"], 0),
        (["inspect", "out/good", "--json"], 0),
        (["trace", "out/good"], 0),
        # Failures: the endpoint refuses the other key (401), every row is dropped.
        (["run", wrong, "-n", "6", "-o", "out/wrong", "--trace", "--progress", "none"], 1),
        (["run", wrong, "-n", "6", "-o", "out/wrong", "--progress", "none", "--debug"], 1),
        (["preview", wrong, "-n", "2", "--debug"], 1),
        (["inspect", "out/wrong", "--json"], 0),
        (["run", good, "-n", "6", "-o", "out/good", "--seed", "9", "--resume", "--debug"], 2),
    ]
    for argv, status in commands:
        outcome = run_cli(argv)
        assert outcome.status == status, (argv, outcome.err)
        assert leaked(outcome.out) == [], (argv, outcome.out)
        assert leaked(outcome.err) == [], (argv, outcome.err)
    assert simulator.requests() > 0  # the runs did talk to the endpoint, with the key
    assert caplog.records  # the failing runs logged (early shutdown, retries)
    assert leaked(caplog.text) == []
    # A provider that rejects the key before anything worked stops the run (fail fast): the
    # record says why, and nothing of it holds the key.
    meta = (folder / "out" / "wrong" / "metadata.json").read_text()
    assert "401" in meta
    assert files_leaking(folder / "out") == []
    # The dataset card (README.md: the config as YAML, usage, a profile of the values) is
    # among the files scanned above.
    assert {p.name for p in (folder / "out" / "good").iterdir()} >= {
        "README.md",
        "metadata.json",
        "parquet-files",
        "trace.chrome.json",
        "trace.json",
    }


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        # The key pasted where its variable's name belongs.
        (
            f"{{name: remote, base_url: 'http://127.0.0.1:9/v1', api_key_env: '{KEY}'}}",
            "must be the NAME of an environment variable",
        ),
        (
            f"{{name: remote, base_url: 'http://user:{KEY}@127.0.0.1:9/v1'}}",
            "'base_url' must not carry credentials",
        ),
        (
            f"{{name: remote, base_url: 'http://{KEY}@127.0.0.1:9/v1'}}",
            "'base_url' must not carry credentials",
        ),
        (
            f"{{name: remote, base_url: 'ftp://{KEY}@127.0.0.1:9/v1'}}",
            "must be an http:// or https:// URL: (not shown: it contains '@')",
        ),
        (
            f"{{name: remote, base_url: 'http://127.0.0.1:9/v1', extra_headers: "
            f"{{Authorization: 'Bearer {KEY}'}}}}",
            "'extra_headers' may not hold credentials ('Authorization')",
        ),
        (
            f"{{name: remote, base_url: 'http://127.0.0.1:9/v1', extra_headers: "
            f"{{X-Api-Key: '{KEY}'}}}}",
            "'extra_headers' may not hold credentials ('X-Api-Key')",
        ),
    ],
)
def test_a_key_pasted_into_a_config_is_refused_and_never_echoed(
    provider: str, message: str, folder: Path
) -> None:
    text = (
        f"providers:\n  - {provider}\nmodels:\n  - {{alias: gen, model: m, provider: remote}}\n"
        "columns:\n  - {name: s, kind: llm_text, model: gen, prompt: hi}\n"
    )
    (folder / "pasted.yaml").write_text(text)
    for argv in (["validate", "pasted.yaml"], ["run", "pasted.yaml", "-n", "1", "--debug"]):
        outcome = run_cli(argv)
        assert outcome.status == 2
        assert message in outcome.err
        assert KEY not in outcome.out + outcome.err
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_yaml(text)
    assert KEY not in str(info.value)
    assert message in str(info.value)


def test_preview_masks_a_value_equal_to_a_secret(
    simulator: ThreadedSimulator, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """User code may put a key into a cell; preview never shows it."""
    monkeypatch.setenv("TD_SHORT_SECRET", "abc")  # too short to mask inside other text
    (folder / "td_canary_mod.py").write_text(
        "import os\n"
        "def key(row):\n    return os.environ['TD_CANARY_KEY']\n"
        "def short(row):\n    return os.environ['TD_SHORT_SECRET']\n"
    )
    (folder / "p.yaml").write_text(
        PIPELINE.format(url=simulator.url, env="TD_CANARY_KEY").replace(
            "  - {name: remote,", "  - {name: other, base_url: 'http://127.0.0.1:9/v1', "
            "api_key_env: TD_SHORT_SECRET}\n  - {name: remote,"
        )
        + "  - {name: k, kind: custom, function: 'td_canary_mod:key', depends_on: [topic]}\n"
        + "  - {name: s, kind: custom, function: 'td_canary_mod:short', depends_on: [topic]}\n"
    )
    text = (folder / "p.yaml").read_text().replace("providers:", "python_path: .\nproviders:")
    (folder / "p.yaml").write_text(text)
    for argv in (["preview", "p.yaml", "-n", "2"], ["preview", "p.yaml", "-n", "2", "--jsonl"]):
        outcome = run_cli(argv)
        assert outcome.status == 0, outcome.err
        assert KEY not in outcome.out
        assert "abc" not in outcome.out.replace("about", "")
        if "--jsonl" in argv:
            records = [json.loads(line) for line in outcome.out.splitlines()]
            assert [(r["k"], r["s"]) for r in records] == [("***", "***")] * 2


def test_the_response_cache_holds_no_key(simulator: ThreadedSimulator, folder: Path) -> None:
    """Keys and values of the response cache (docs/cache.md) never contain the API key: a run
    that paid with the key fills the cache, and no byte of its files holds the key."""
    good = _config(folder, "good.yaml", simulator.url)
    for argv in (
        ["run", good, "-n", "6", "-o", "out/cached", "--cache-dir", "cache", "--progress", "none"],
        ["cache", "stats", "--cache-dir", "cache"],
    ):
        outcome = run_cli(argv)
        assert outcome.status == 0, (argv, outcome.err)
        assert leaked(outcome.out + outcome.err) == []
    assert "entries: 6" in outcome.out
    assert sorted(p.name for p in (folder / "cache").iterdir())[0] == "responses.sqlite3"
    assert files_leaking(folder / "cache") == []
