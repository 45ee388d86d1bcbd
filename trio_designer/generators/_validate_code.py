"""Checks of code values: Python (``ast``, ``ruff``, a sandboxed subprocess), SQL
(``sqlglot``), JSON (a JSON schema).

The pure checks (:func:`python_syntax`, :func:`sql_problems`, :func:`json_problems`) are sync
and run in a worker thread; the subprocess ones (:func:`ruff_problems`,
:func:`execution_problems`) are ``async`` and run with ``trio.run_process``. Each returns the
problems found, as messages (empty: valid); nothing here raises for bad code.

Execution never happens in the engine's process: ``python -I -`` in a fresh temporary
directory, with an environment holding only ``PATH`` (no API key reaches it), the address
space limited to ``memory_mb`` and CPU time to the time limit (``resource.setrlimit`` in the
child), killed at once when the wall-clock ``timeout`` passes.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from .._core._jsonschema import SchemaChecker

__all__ = [
    "LINT_RULES",
    "execution_problems",
    "find_ruff",
    "json_problems",
    "python_syntax",
    "ruff_problems",
    "sql_problems",
]

#: ruff rules whose findings make code invalid: syntax errors, undefined names, invalid
#: comparisons and statements outside their place (flake8's "serious" set).
LINT_RULES = "E9,F63,F7,F82"
_MAX_MESSAGES = 20
_MAX_OUTPUT = 64_000


def python_syntax(code: str) -> list[str]:
    """Whether ``code`` parses as Python (``ast.parse``): a syntax error with its line."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return [f"line {exc.lineno}: syntax error: {exc.msg}"]
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, deep nesting
        return [f"does not parse: {type(exc).__name__}: {str(exc)[:200]}"]
    return []


def find_ruff() -> str | None:
    """The ``ruff`` executable: beside this Python (a virtual environment) or on ``PATH``."""
    beside = Path(sys.executable).parent / "ruff"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("ruff")


async def _kill(process: trio.Process) -> None:
    process.kill()


async def ruff_problems(code: str, *, ruff: str, timeout: float) -> list[str]:  # noqa: ASYNC109
    """``ruff check`` findings of :data:`LINT_RULES` on ``code`` (read from stdin)."""
    command = [
        ruff, "check", "--isolated", "--no-cache", "--output-format=json",
        f"--select={LINT_RULES}", "--stdin-filename=cell.py", "-",
    ]
    with trio.move_on_after(timeout) as scope:
        done = await trio.run_process(
            command,
            stdin=code.encode("utf-8"),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            deliver_cancel=_kill,
            env={"PATH": os.environ.get("PATH", "")},
        )
    if scope.cancelled_caught:
        return [f"lint: ruff did not finish within {timeout:g} s"]
    try:
        findings = json.loads(done.stdout.decode("utf-8", "replace") or "[]")
    except ValueError:
        return []  # ruff itself failed: linting is best effort, the parse already passed
    return [
        f"line {f.get('location', {}).get('row')}: {f.get('code')} {f.get('message')}"
        for f in findings[:_MAX_MESSAGES]
        if isinstance(f, dict)
    ]


def _limits(memory_mb: int, cpu_seconds: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child, before exec
        import resource

        memory = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


async def execution_problems(
    code: str,
    *,
    timeout: float,  # noqa: ASYNC109 (a limit of the child, not of this call)
    memory_mb: int,
) -> list[str]:
    """Run ``code`` with ``python -I -`` in a subprocess under limits (see the module
    docstring); a non-zero exit, a signal or the time limit is a problem."""
    folder = tempfile.mkdtemp(prefix="td-exec-")
    try:
        with trio.move_on_after(timeout) as scope:
            done = await trio.run_process(
                [sys.executable, "-I", "-"],
                stdin=code.encode("utf-8"),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=folder,
                env={"PATH": os.environ.get("PATH", "")},
                deliver_cancel=_kill,
                preexec_fn=_limits(memory_mb, max(1, int(timeout + 0.999))),
            )
    finally:
        await trio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
    if scope.cancelled_caught:
        return [f"execution: killed at the time limit of {timeout:g} s"]
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return [f"execution: crashed ({name})"]
    if done.returncode > 0:
        stderr = done.stderr[-_MAX_OUTPUT:].decode("utf-8", "replace").strip().splitlines()
        last = stderr[-1] if stderr else "no error output"
        return [f"execution: exit status {done.returncode}: {last[:300]}"]
    return []


def sql_problems(text: str, dialect: str | None) -> list[str]:
    """Whether ``text`` parses as SQL of ``dialect`` (``sqlglot``)."""
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    try:
        statements = sqlglot.parse(text, read=dialect)
    except ParseError as exc:
        found = [
            f"line {e.get('line')}, column {e.get('col')}: {e.get('description')}"
            for e in exc.errors[:_MAX_MESSAGES]
        ]
        return found or [str(exc)[:300]]
    except TokenError as exc:
        return [f"does not tokenize: {str(exc)[:300]}"]
    if not any(statement is not None for statement in statements):
        return ["no SQL statement"]
    return []


def json_problems(value: Any, checker: SchemaChecker | None) -> list[str]:
    """Whether ``value`` is JSON (text that parses, or an already-parsed value) satisfying the
    schema of ``checker`` (if any)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            return [f"not JSON: {exc}"]
    if checker is None:
        return []
    return list(checker.errors(value))[:_MAX_MESSAGES]
