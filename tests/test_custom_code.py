"""Custom code only from where the user put it (issue 12, bullet 1), through the CLI and Python.

The hostile configs of the issue: ``function: os:environ.__or__`` (the whole environment into
the dataset), and a ``pandas.py`` lying next to a config, executed during ``validate``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from _cli_harness import preview, run_cli

from trio_designer import ConfigError, PipelineConfig

REPO = Path(__file__).resolve().parents[1]

ENVIRON_OR = """\
columns:
  - {name: topic, kind: sampler, sampler: category, values: [a]}
  - {name: env, kind: custom, function: "os:environ.__or__", depends_on: [topic]}
"""

#: A module that announces it ran by writing a marker file, then defines a column function.
TRAP = """\
import pathlib
pathlib.Path(__file__).with_name("{marker}").write_text("imported")
def f(row):
    return "from {name}"
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config folder as the current directory; ``sys.path`` and imported modules restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "")).startswith(str(tmp_path)):
            del sys.modules[name]


def _python_m(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m trio_designer ARGS`` in ``cwd`` (the way that puts cwd on sys.path)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "trio_designer", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- os:environ.__or__ -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "run", "preview"])
def test_attribute_chains_into_the_standard_library_are_refused(
    command: str, folder: Path
) -> None:
    (folder / "env.yaml").write_text(ENVIRON_OR)
    argv = [command, "env.yaml"] + (["-n", "2", "--progress", "none"] if command == "run" else [])
    outcome = run_cli(argv)
    assert outcome.status == 2
    assert outcome.out == ""
    assert outcome.err == (
        "error: env.yaml: columns[1].function (line 3): 'function' must name one function "
        "after the colon, not an attribute chain: 'os:environ.__or__'; define a function in "
        "your own module and name it as 'module:function'\n"
    )
    assert not (folder / "out").exists()  # nothing written, nothing run


def test_attribute_chains_are_refused_in_python_too() -> None:
    with pytest.raises(ConfigError, match=r"not an attribute chain: 'os:environ.__or__'"):
        PipelineConfig.from_yaml(ENVIRON_OR)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("os:system", "names the standard library ('os')"),
        ("subprocess:run", "names the standard library ('subprocess')"),
        ("builtins:eval", "names the standard library ('builtins')"),
        ("trio_designer.config._code:resolve_function", "names trio_designer itself"),
        ("mymod:__init__", "may not name a dunder attribute"),
        ("mymod:f.__globals__", "not an attribute chain"),
        ("mymod:", "must name one function after the colon"),
        ("my-mod:f", "must be an import path"),
    ],
)
def test_refused_forms(path: str, message: str, folder: Path) -> None:
    text = ENVIRON_OR.replace("os:environ.__or__", path)
    (folder / "bad.yaml").write_text(text)
    outcome = run_cli(["validate", "bad.yaml"])
    assert (outcome.status, outcome.out) == (2, "")
    assert message in outcome.err
    assert outcome.err.count("\n") == 1
    assert "Traceback" not in outcome.err
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PipelineConfig.from_yaml(text)


# -- code next to the config -------------------------------------------------------------------


def _trap_folder(folder: Path, name: str) -> Path:
    (folder / f"{name}.py").write_text(TRAP.format(marker=f"{name}.ran", name=name))
    config = folder / "pipeline.yaml"
    config.write_text(ENVIRON_OR.replace("os:environ.__or__", f"{name}:f"))
    return config


def test_a_module_beside_the_config_never_runs_under_python_m(folder: Path) -> None:
    """``python -m`` puts the current directory first on sys.path; it is dropped."""
    # A name no environment installs (pandas used to be it, until the `hf` extra brought
    # pandas in as a dependency of `datasets`).
    _trap_folder(folder, "td_trap_pandas")
    for command in ("validate", "run"):
        done = _python_m(folder, command, "pipeline.yaml", *(["-n", "2"] * (command == "run")))
        assert done.returncode == 2, done.stderr
        assert not (folder / "td_trap_pandas.ran").exists()
        assert done.stderr.splitlines() == [
            "error: pipeline.yaml: columns[1] 'env' (line 3): no module 'td_trap_pandas' in the "
            "installed environment; td_trap_pandas.py lies beside the config file, but modules "
            "are never imported from the config's directory implicitly: add 'python_path: .' to "
            "the config if you trust that code"
        ]


def test_a_module_beside_the_config_never_runs_in_process(folder: Path) -> None:
    config = _trap_folder(folder, "td_trap_mod")
    sub = folder / "elsewhere"
    sub.mkdir()
    os.chdir(sub)  # neither the current directory nor the config's
    outcome = run_cli(["validate", str(config)])
    assert outcome.status == 2
    assert "td_trap_mod.py lies beside the config file" in outcome.err
    assert not (folder / "td_trap_mod.ran").exists()
    with pytest.raises(ConfigError, match=r"td_trap_mod\.py lies beside the config file"):
        preview(PipelineConfig.from_file(config), num_records=1)
    assert not (folder / "td_trap_mod.ran").exists()


def test_python_path_names_the_config_folder_explicitly(folder: Path) -> None:
    config = _trap_folder(folder, "td_named_mod")
    config.write_text("python_path: .\n" + config.read_text())
    os.chdir("/")  # relative to the config file, not to the current directory
    outcome = run_cli(["validate", str(config)])
    assert outcome.status == 0, outcome.err
    assert outcome.err == (
        f"code: columns[1] 'env' function td_named_mod:f -> td_named_mod from "
        f"{folder / 'td_named_mod.py'} (python_path {folder})\n"
    )
    assert (folder / "td_named_mod.ran").exists()  # validate imports it, from where it said
    out = folder / "out"
    outcome = run_cli(["run", str(config), "-n", "3", "-o", str(out), "--progress", "none"])
    assert outcome.status == 0, outcome.err
    assert ds.dataset(out / "parquet-files").to_table().column("env").to_pylist() == [
        "from td_named_mod"
    ] * 3


def test_validate_no_import_only_says_where(folder: Path) -> None:
    config = _trap_folder(folder, "td_where_mod")
    outcome = run_cli(["validate", str(config), "--python-path", str(folder), "--no-import"])
    assert outcome.status == 0, outcome.err
    assert f"td_where_mod from {folder / 'td_where_mod.py'} (python_path {folder})" in outcome.err
    assert not (folder / "td_where_mod.ran").exists()


def test_python_path_from_the_python_api(folder: Path) -> None:
    _trap_folder(folder, "td_api_mod")
    text = ENVIRON_OR.replace("os:environ.__or__", "td_api_mod:f")
    with pytest.raises(ConfigError, match="no module 'td_api_mod' in the installed environment"):
        preview(PipelineConfig.from_yaml(text), num_records=1)
    config = PipelineConfig.from_yaml(f"python_path: [{folder}]\n" + text)
    result = preview(config, num_records=2)
    assert result.table.column("env").to_pylist() == ["from td_api_mod"] * 2


def test_a_name_only_imported_into_the_module_is_refused(folder: Path) -> None:
    (folder / "td_reexport.py").write_text("from os.path import join\n")
    text = "python_path: .\n" + ENVIRON_OR.replace("os:environ.__or__", "td_reexport:join")
    (folder / "p.yaml").write_text(text)
    outcome = run_cli(["validate", "p.yaml"])
    assert outcome.status == 2
    assert (
        "'td_reexport:join' is defined in 'posixpath', not in 'td_reexport' (it was only "
        "imported there)" in outcome.err
    )


def test_a_generator_class_is_a_plugin(folder: Path) -> None:
    (folder / "td_plugin.py").write_text(
        "class Shout:\n"
        "    def generate(self, ctx):\n"
        "        return ctx.row['topic'].upper() + str(ctx.row_index)\n"
        "class Lengths:\n"
        "    async def agenerate_column(self, ctx):\n"
        "        return [len(row['topic']) for row in ctx.rows]\n"
    )
    (folder / "p.yaml").write_text(
        "python_path: .\n"
        "columns:\n"
        "  - {name: topic, kind: sampler, sampler: category, values: [ab]}\n"
        "  - {name: loud, kind: custom, function: 'td_plugin:Shout', depends_on: [topic]}\n"
        "  - {name: n, kind: custom, function: 'td_plugin:Lengths', strategy: full_column,"
        " depends_on: [topic]}\n"
    )
    result = preview(PipelineConfig.from_file("p.yaml"), num_records=2)
    assert result.table.column("loud").to_pylist() == ["AB0", "AB1"]
    assert result.table.column("n").to_pylist() == [2, 2]
    wrong = (folder / "p.yaml").read_text().replace("strategy: full_column,", "")
    (folder / "q.yaml").write_text(wrong)
    outcome = run_cli(["validate", "q.yaml"])
    assert outcome.status == 2
    assert "the class 'Lengths' has neither agenerate(ctx) nor generate(ctx)" in outcome.err


def test_a_python_config_does_not_import_its_neighbours(folder: Path) -> None:
    (folder / "td_neighbour.py").write_text(TRAP.format(marker="n.ran", name="n"))
    (folder / "td_cfg_imports.py").write_text("import td_neighbour\n")
    outcome = run_cli(["validate", "td_cfg_imports.py"])
    assert outcome.status == 2
    assert "'td_neighbour' lies beside the config file" in outcome.err
    assert "pass --python-path . if you trust that code" in outcome.err
    assert not (folder / "n.ran").exists()
