"""Messages a new user read wrongly (issue 10, "Docs found wrong by a new user"), each pinned.

* a bad output path is named as a path problem, not "check the disk";
* the last progress frame says how the run ended (``complete``, ``early_shutdown``,
  ``interrupted``), not "(finished)" on an interrupted run;
* "attempt" means one thing: one run of a cell by the engine (``failures.jsonl``'s
  ``attempts``, the trace's ``attempt``); the requests an LLM cell sends inside one attempt are
  called requests (``ModelOutputError``), so no line says "3 attempts" beside "1 attempt";
* after a resume the CLI counts the parquet files *this* run wrote, and a resume with nothing
  left to do says so (in ``run`` and in ``inspect``) instead of printing tables of zeros.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_designer import (
    CategorySampler,
    CustomColumn,
    ExpressionColumn,
    PipelineBuilder,
    SinkError,
    TrioDesigner,
)
from trio_designer._sink._parquet import _remedy

LOCAL_YAML = """\
run: {row_group_size: 4, seed: 1}
columns:
  - {name: topic, kind: sampler, sampler: category, values: [astronomy, cooking]}
  - {name: line, kind: expression, expr: "{{ topic }}!"}
"""


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m trio_designer ARGS`` in ``cwd``, as a user runs it (30 s deadline)."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "trio_designer", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


# -- a bad output path ---------------------------------------------------------------------------


async def test_an_output_dir_below_a_file_is_named_as_a_path_problem(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a folder")
    config = PipelineBuilder().add_column(ExpressionColumn(name="n", expr="{{ 1 }}")).build()
    with trio.fail_after(10), pytest.raises(SinkError) as caught:
        await TrioDesigner().create(
            config, num_records=2, output_dir=tmp_path / "notes.txt" / "run"
        )
    assert str(caught.value) == (
        f"output directory '{tmp_path / 'notes.txt' / 'run'}' cannot be created: "
        f"'{tmp_path / 'notes.txt'}' is a file, not a directory; pass another output_dir=."
    )


def test_the_command_line_says_the_same_with_its_flag(tmp_path: Path) -> None:
    (tmp_path / "local.yaml").write_text(LOCAL_YAML)
    (tmp_path / "notes.txt").write_text("not a folder")
    done = cli(tmp_path, "run", "local.yaml", "-n", "4", "-o", "notes.txt/run")
    assert done.returncode == 2
    assert done.stderr == (
        "error: output directory 'notes.txt/run' cannot be created: 'notes.txt' is a file, "
        "not a directory; pass another --output-dir.\n"
    )


@pytest.mark.parametrize(
    ("code", "remedy"),
    [
        (errno.ENOSPC, "free some disk space and run again."),
        (errno.EACCES, "check the permissions of the directory, or pass another output_dir=."),
        (errno.EROFS, "the file system is read-only; pass another output_dir=."),
        (errno.ENOTDIR, "a part of the path is not a directory; pass another output_dir=."),
        (errno.EIO, "check the disk (space, permissions) and run again."),
    ],
)
def test_a_failed_write_says_what_to_do_about_its_cause(code: int, remedy: str) -> None:
    assert _remedy(OSError(code, os.strerror(code))) == remedy


def test_an_arrow_error_keeps_the_general_remedy() -> None:
    import pyarrow as pa

    assert _remedy(pa.ArrowInvalid("bad")) == "check the disk (space, permissions) and run again."


# -- the last progress frame -----------------------------------------------------------------------


async def _slowly(row: dict[str, Any]) -> str:
    await trio.sleep(1.0)
    return str(row["topic"]).upper()


SLOW = (
    PipelineBuilder()
    .add_column(CategorySampler(name="topic", values=("a", "b")))
    .add_column(CustomColumn(name="loud", function=_slowly, depends_on=("topic",)))
    .with_run(row_group_size=2, max_row_groups_in_flight=1, non_llm_concurrency=1)
    .build()
)


def _final_line(stderr: str) -> str:
    """The header line of the last plain-text block."""
    return [line for line in stderr.splitlines() if "rows written" in line][-1]


async def test_the_last_frame_of_an_interrupted_run_says_interrupted(
    autojump_clock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    designer = TrioDesigner(progress=100.0)  # plain blocks; only the final one within 100 s
    with trio.fail_after(60), trio.move_on_after(2.5):
        await designer.preview(SLOW, num_records=8)
    assert _final_line(capsys.readouterr().err).endswith("(interrupted)")


async def test_the_last_frame_of_a_complete_run_says_complete(
    autojump_clock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(60):
        result = await TrioDesigner(progress=100.0).preview(SLOW, num_records=4)
    assert result.status == "complete"
    assert _final_line(capsys.readouterr().err).endswith("rows written 4/4, dropped 0 (complete)")


# -- attempts and requests -----------------------------------------------------------------------


def test_a_failure_line_counts_the_cells_attempts() -> None:
    from trio_designer.cli._inspect import failure_report
    from trio_designer.cli._run import failure_lines

    failure = {
        "row_group": 0,
        "row": 7,
        "column": "obj",
        "error_class": "ModelOutputError",
        "message": "column 'obj': model 'gen' gave no usable answer in 3 requests (row 7; ...",
        "attempts": 1,
    }
    run_line = failure_lines([failure])[1]
    assert run_line.startswith("  row 7 (dropped after 1 attempt), column obj: ModelOutputError:")
    inspect_line = failure_report([failure])[-1]
    assert inspect_line.startswith("    row 7 (dropped after 1 attempt), obj: ModelOutputError:")
    whole_group = {**failure, "row": None, "attempts": 3}
    assert failure_lines([whole_group])[1].startswith("  row group 0 (dropped after 3 attempts)")


# -- resuming from the command line ----------------------------------------------------------------


def test_a_resume_counts_the_files_it_wrote_and_says_when_nothing_was_left(
    tmp_path: Path,
) -> None:
    (tmp_path / "local.yaml").write_text(LOCAL_YAML)
    first = cli(tmp_path, "run", "local.yaml", "-n", "8", "--progress", "none")
    assert first.returncode == 0, first.stderr
    assert "output: out/local (2 parquet files)\n" in first.stdout

    grown = cli(tmp_path, "run", "local.yaml", "-n", "12", "--progress", "none", "--resume")
    assert grown.returncode == 0, grown.stderr
    assert "rows: 4 written by this run (0 dropped); 12 of 12 requested rows are on disk\n" in (
        grown.stdout
    )
    assert "output: out/local (3 parquet files, 1 written by this run)\n" in grown.stdout

    again = cli(tmp_path, "run", "local.yaml", "-n", "12", "--progress", "none", "--resume")
    assert again.returncode == 0, again.stderr
    assert "nothing left to generate: all 3 row groups were already on disk\n" in again.stdout
    assert "columns:" not in again.stdout  # no table of zeros
    assert "output: out/local (3 parquet files, 0 written by this run)\n" in again.stdout

    record = json.loads((tmp_path / "out" / "local" / "metadata.json").read_text())
    assert record["summary"]["row_groups_found_on_disk"] == 3
    report = cli(tmp_path, "inspect", "out/local")
    assert report.returncode == 0, report.stderr
    assert (
        "last run: a resume with nothing left to generate (all 3 row groups were already on "
        "disk); the counts of the runs that wrote them are not kept\n"
    ) in report.stdout
    assert "columns (last run)" not in report.stdout


def test_inspect_after_a_partial_resume_says_the_counts_are_the_resumes(tmp_path: Path) -> None:
    (tmp_path / "local.yaml").write_text(LOCAL_YAML)
    assert cli(tmp_path, "run", "local.yaml", "-n", "8", "--progress", "none").returncode == 0
    grown = cli(tmp_path, "run", "local.yaml", "-n", "12", "--progress", "none", "--resume")
    assert grown.returncode == 0, grown.stderr
    report = cli(tmp_path, "inspect", "out/local").stdout
    assert (
        "last run: a resume; 2 row groups were already on disk, the counts below are this "
        "run's own\ncolumns (last run):\n"
    ) in report
