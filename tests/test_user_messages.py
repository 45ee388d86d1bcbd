"""Messages a new user read wrongly (issue 10, "Docs found wrong by a new user"), each pinned.

* a bad output path is named as a path problem, not "check the disk".
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from trio_designer import ExpressionColumn, PipelineBuilder, SinkError, TrioDesigner
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
