"""``examples/plugin`` installed for real, used through the command line end to end.

pip builds and installs the package into a temporary folder (``pip install --no-deps --target``:
nothing goes into the shared environment); each command then runs in a subprocess whose
``PYTHONPATH`` holds that folder, so ``importlib.metadata`` finds the package's entry points as
it would after an ordinary ``pip install``. The pipeline mixes the plugin's two column kinds,
its sampler, its validator and its processor with built-in kinds and an LLM column on the
built-in simulator.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugin"

PIPELINE = """\
models:
  - {alias: gen, model: sim-gen, provider: simulator}
run: {seed: 11, row_group_size: 4}
columns:
  - {name: topic, kind: sampler, sampler: category, values: ["Café au lait", "Jazz piano"]}
  - {name: slug, kind: slugify, source: topic, separator: _}
  - {name: backwards, kind: reverse_text, text: "{{ topic }}!", upper: true}
  - {name: roll, kind: sampler, sampler: dice, sides: 12}
  - {name: line, kind: llm_text, model: gen, prompt: "A line about {{ slug }} ({{ roll }})."}
  - {name: short, kind: validation, validator: max_length, target: [slug], options: {max: 10}}
processors:
  - {kind: uppercase_columns, columns: [slug]}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, built and installed into a temporary folder by pip (from a copy:
    setuptools writes build/ and *.egg-info/ beside the sources it builds)."""
    folder = tmp_path_factory.mktemp("plugin-site")
    source = tmp_path_factory.mktemp("plugin-source") / "plugin"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(folder), str(source)],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return folder


def _cli(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("TRIO_DESIGNER_NO_PLUGINS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    return subprocess.run(
        [sys.executable, "-m", "trio_designer", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_the_example_plugin_runs_end_to_end(site: Path, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    listed = _cli(site, tmp_path, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    plugins = json.loads(listed.stdout)
    assert [(p["group"], p["name"], p["distribution"], p["ok"]) for p in plugins] == [
        ("trio_designer.columns", "reverse_text", "td-example-plugin", True),
        ("trio_designer.columns", "slugify", "td-example-plugin", True),
        ("trio_designer.samplers", "dice", "td-example-plugin", True),
        ("trio_designer.processors", "uppercase_columns", "td-example-plugin", True),
        ("trio_designer.validators", "max_length", "td-example-plugin", True),
    ]

    validated = _cli(site, tmp_path, "validate", "p.yaml")
    assert validated.returncode == 0, validated.stderr
    assert "topic -> slug -> backwards -> roll -> line -> short" in validated.stdout
    assert (
        "code: processors[0] kind uppercase_columns -> plugin td_example_plugin:UppercaseColumns "
        "from package td-example-plugin 0.1.0" in validated.stderr
    )
    assert (
        "code: columns[5] 'short' validator max_length -> plugin td_example_plugin:MaxLength "
        "from package td-example-plugin 0.1.0" in validated.stderr
    )

    ran = _cli(site, tmp_path, "run", "p.yaml", "-n", "8", "-o", "out", "--progress", "none")
    assert ran.returncode == 0, ran.stderr
    rows = ds.dataset(tmp_path / "out" / "parquet-files").to_table().to_pylist()
    assert len(rows) == 8
    slugs = {"Café au lait": "cafe_au_lait", "Jazz piano": "jazz_piano"}
    for row in rows:
        assert row["slug"] == slugs[row["topic"]].upper()  # the plugin processor ran
        long = len(slugs[row["topic"]]) > 10
        assert row["short"]["is_valid"] is not long  # the plugin validator checked it
        assert row["short"]["messages"] == (["slug: 12 characters, more than 10"] if long else [])
        assert row["backwards"] == (row["topic"] + "!")[::-1].upper()
        assert 1 <= row["roll"] <= 12
        assert row["line"]
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    code = metadata["fingerprint_basis"]["code"]
    assert "td_example_plugin:SlugifyGenerator" in code
    assert "td_example_plugin:UppercaseProcessor" in code
    assert "td_example_plugin:MaxLength" in code

    # Growing the run: the plugin columns resume like built-in ones.
    resumed = _cli(
        site, tmp_path, "run", "p.yaml", "-n", "12", "-o", "out", "--resume", "--progress", "none"
    )
    assert resumed.returncode == 0, resumed.stderr
    again = ds.dataset(tmp_path / "out" / "parquet-files").to_table().to_pylist()
    assert again[:8] == rows
    assert len(again) == 12


@pytest.mark.slow
def test_the_example_plugin_is_not_seen_from_the_current_directory(
    site: Path, tmp_path: Path
) -> None:
    """Installed means on sys.path as an installed folder: running *from* the site folder
    (which ``python -m`` puts on sys.path as the current directory) does not load it."""
    (tmp_path / "p.yaml").write_text(PIPELINE)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "trio_designer", "validate", str(tmp_path / "p.yaml")],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown column kind 'slugify'" in done.stderr
