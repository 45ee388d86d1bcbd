"""Errors speak Python to Python callers and flags on the command line (issue 10).

The library names what a caller can change as a Python caller writes it (``resume=True``,
``output_dir=``, ``RunConfig(trace=True)``: the constants of ``trio_designer._exceptions``);
``trio_designer.cli._errors.in_flags`` rewrites exactly those into flags.
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import re
from collections.abc import Iterator

import pytest
import trio

from trio_designer import ExpressionColumn, PipelineBuilder, SinkError, TrioDesigner
from trio_designer._exceptions import (
    ARGUMENT_SPELLINGS,
    OUTPUT_DIR_ARGUMENT,
    RESUME_ARGUMENT,
    TRACE_SETTING,
)

PACKAGE = pathlib.Path(__file__).parents[1] / "trio_designer"
#: Code that speaks to a command line, where flags are the language.
COMMAND_LINES = ("cli/", "simulator/__main__.py")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")

CONFIG = (
    PipelineBuilder()
    .add_column(ExpressionColumn(name="n", expr="{{ 1 }}", dtype="int"))
    .with_run(row_group_size=2)
    .build()
)


def _docstrings(tree: ast.AST) -> set[int]:
    """``id`` of every string that stands alone as a statement: docstrings of modules, classes,
    functions and attributes (documentation may show command lines; a message never stands
    alone)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def _strings(path: pathlib.Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            yield node.lineno, node.value


def test_library_messages_name_no_command_line_flag() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not str(path.relative_to(PACKAGE)).startswith(COMMAND_LINES)
        for line, text in _strings(path)
        if FLAG.search(text)
    ]
    assert found == []


async def test_a_python_caller_is_told_to_pass_resume_true(tmp_path: pathlib.Path) -> None:
    designer = TrioDesigner()
    with trio.fail_after(60):
        await designer.create(CONFIG, num_records=4, output_dir=tmp_path)
        with pytest.raises(SinkError) as caught:
            await designer.create(CONFIG, num_records=4, output_dir=tmp_path)
        resumed = await designer.create(CONFIG, num_records=4, output_dir=tmp_path, resume=True)
    assert str(caught.value) == (
        f"output directory {str(tmp_path)!r} already holds 2 written row group(s) of this run; "
        "pass resume=True to continue it, or pass another output_dir= or remove the directory."
    )
    assert resumed.status == "complete"


def test_the_command_line_says_each_python_spelling_as_its_flag() -> None:
    from trio_designer.cli._errors import FLAGS, in_flags

    assert set(FLAGS) == set(ARGUMENT_SPELLINGS)
    assert in_flags(
        f"pass {RESUME_ARGUMENT} to continue it, or pass another {OUTPUT_DIR_ARGUMENT}"
    ) == ("pass --resume to continue it, or pass another --output-dir")
    assert in_flags(f"run again with {TRACE_SETTING}.") == "run again with --trace."
    assert in_flags("nothing to translate: resume it") == "nothing to translate: resume it"


def test_every_flag_the_command_line_names_exists() -> None:
    from trio_designer.cli import _handlers
    from trio_designer.cli._errors import FLAGS
    from trio_designer.cli._parser import build_parser

    parser = build_parser("trio-designer", {name: print for name in _handlers()})
    run = _subparser(parser, "run")
    options = {option for action in run._actions for option in action.option_strings}
    assert set(FLAGS.values()) <= options


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[name]
            return sub
    raise AssertionError(f"no {name} command")
