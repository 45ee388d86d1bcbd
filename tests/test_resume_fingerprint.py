"""Resume that cannot mix outputs (issue 12, bullet 5), through the CLI and the Python API.

The fingerprint covers the config, the code of custom functions (and their same-module
helpers); a refused resume says what changed; ``force_resume`` continues and is recorded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cli_harness import create, run_cli

from trio_designer import PipelineConfig, SinkError
from trio_designer.config import config_fingerprint

MODULE = """\
SUFFIX = "{suffix}"


def helper(text):
    return text + SUFFIX


def clean(row):
    return helper(row["topic"])
"""

CONFIG = """\
python_path: .
run: {{row_group_size: 2, max_row_groups_in_flight: 1}}
columns:
  - {{name: topic, kind: sampler, sampler: category, values: [a, b]}}
  - {{name: cleaned, kind: custom, function: "td_resume_mod:clean", depends_on: [topic]}}
  - {{name: shout, kind: expression, expr: "{expr}"}}
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("td_resume_mod", None)


def _write(folder: Path, *, suffix: str = "!", expr: str = "{{ cleaned | upper }}") -> Path:
    (folder / "td_resume_mod.py").write_text(MODULE.format(suffix=suffix))
    sys.modules.pop("td_resume_mod", None)  # a new process would import the edited file
    config = folder / "p.yaml"
    config.write_text(
        CONFIG.replace("max_parallel_requests", "max_row_groups_in_flight").format(expr=expr)
    )
    return config


def _metadata(output_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((output_dir / "metadata.json").read_text())
    return data


def test_the_fingerprint_covers_code_and_helpers_but_not_tuning(folder: Path) -> None:
    config = PipelineConfig.from_file(_write(folder))
    first = config_fingerprint(config)
    assert config_fingerprint(PipelineConfig.from_file(_write(folder))) == first
    assert config_fingerprint(PipelineConfig.from_file(_write(folder, suffix="?"))) != first
    (folder / "td_resume_mod.py").write_text(MODULE.format(suffix="!") + "\n\ndef other(): 1\n")
    sys.modules.pop("td_resume_mod", None)
    assert config_fingerprint(PipelineConfig.from_file(folder / "p.yaml")) == first  # unused
    tuned = (folder / "p.yaml").read_text().replace("max_row_groups_in_flight: 1", "trace: true")
    (folder / "p.yaml").write_text(tuned)
    assert config_fingerprint(PipelineConfig.from_file(folder / "p.yaml")) == first


def test_a_resume_after_editing_a_function_is_refused_in_python(folder: Path) -> None:
    out = folder / "out"
    create(PipelineConfig.from_file(_write(folder)), num_records=4,
                               output_dir=out)
    before = _metadata(out)
    assert set(before["fingerprint_basis"]["code"]) == {"td_resume_mod:clean"}
    edited = PipelineConfig.from_file(_write(folder, suffix="?", expr="{{ cleaned }}"))
    with pytest.raises(SinkError) as info:
        create(edited, num_records=6, output_dir=out, resume=True)
    message = str(info.value)
    assert "what changed:\n  - columns[2].expr changed\n  - custom function " in message
    assert "td_resume_mod:clean changed\n" in message
    assert "pass force_resume=True to continue it anyway" in message
    assert "--" not in message  # Python callers are told Python arguments
    assert _metadata(out) == before
    result = create(edited, num_records=6, output_dir=out, force_resume=True)
    assert result.num_records_written == 2
    after = _metadata(out)
    [forced] = after["forced_resumes"]
    assert forced["previous_fingerprint"] == before["fingerprint"]
    assert forced["changes"] == ["columns[2].expr changed", "custom function td_resume_mod:clean "
                                 "changed"]
    assert after["fingerprint"] == config_fingerprint(edited)


def test_a_resume_after_editing_a_function_is_refused_on_the_command_line(folder: Path) -> None:
    config = _write(folder)
    args = ["run", str(config), "-n", "4", "-o", "out", "--progress", "none"]
    assert run_cli(args).status == 0
    _write(folder, suffix="?")
    refused = run_cli([*args, "--resume"])
    assert refused.status == 2
    assert refused.err.splitlines()[1:] == [
        "  - custom function td_resume_mod:clean changed",
        "Resuming would mix values made by both in one dataset. Start a new run: pass another "
        "--output-dir or remove the directory; or pass --force-resume to continue it anyway "
        "(the rows already written keep their old values; the forced resume is recorded in "
        "metadata.json).",
    ]
    forced = run_cli([*args, "--force-resume"])
    assert forced.status == 0, forced.err
    assert _metadata(folder / "out")["forced_resumes"][0]["changes"] == [
        "custom function td_resume_mod:clean changed"
    ]
    again = run_cli([*args, "--resume"])  # the record now holds the new fingerprint
    assert again.status == 0, again.err
