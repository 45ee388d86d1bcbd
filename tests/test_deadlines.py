"""Every test has a deadline: the mechanism in ``conftest.py`` works, and nothing escapes it.

Three layers keep a deadlock from hanging the suite (docs/testing.md, "Deadlines"):

1. every ``async def`` test runs under ``trio.fail_after``-like deadline on its own clock,
   put there by the root ``conftest.py`` before pytest-trio runs it (proven here, on a
   throwaway test suite run by ``pytester``);
2. every ``trio.run`` a test calls itself (Hypothesis tests, runs that need their own clock)
   has ``trio.fail_after`` around the body it runs (checked here, on the source);
3. pytest-timeout ends the session if a test exceeds a wall-clock limit (pyproject's
   ``timeout``), for hangs no trio deadline sees.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITES = (REPO / "tests", REPO / "property_tests")

INNER_TESTS = """
import pytest
import trio


async def test_deadlock_under_virtual_time(autojump_clock):
    await trio.Event().wait()


async def test_long_virtual_wait_within_the_default(autojump_clock):
    await trio.sleep(9)


@pytest.mark.deadline(100)
async def test_longer_virtual_wait_with_a_marker(autojump_clock):
    await trio.sleep(99)


@pytest.mark.deadline(0.05)
async def test_real_clock_wait_past_its_deadline():
    await trio.sleep(5)


async def test_other_failures_are_untouched(autojump_clock):
    raise KeyError("not a deadline")
"""


def inner_suite(pytester: pytest.Pytester, *, trio_mode: bool = True) -> None:
    """A throwaway suite that uses the project's own root conftest (the same file)."""
    pytester.makeconftest((REPO / "conftest.py").read_text(encoding="utf-8"))
    pytester.makeini(
        "[pytest]\n" + ("trio_mode = true\n" if trio_mode else "") + "addopts = -p no:cacheprovider"
    )


def test_a_deadlock_fails_at_once_with_a_message(pytester: pytest.Pytester) -> None:
    """``await trio.Event().wait()`` is a TooSlowError within a second, not a hang."""
    inner_suite(pytester)
    pytester.makepyfile(test_inner=INNER_TESTS)
    began = time.perf_counter()
    result = pytester.runpytest_inprocess("-q")
    assert time.perf_counter() - began < 30  # virtual seconds cost no real time
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.re_match_lines(
        [
            r".*TooSlowError: test_inner.py::test_deadlock_under_virtual_time did not finish "
            r"within its deadline of 10 s on its clock \(MockClock\).*",
        ],
        consecutive=False,
    )
    result.stdout.re_match_lines(
        [r".*TooSlowError: test_inner.py::test_real_clock_wait_past_its_deadline did not finish "
         r"within its deadline of 0.05 s on its clock \(SystemClock\).*"],
        consecutive=False,
    )
    result.stdout.re_match_lines([r".*KeyError: 'not a deadline'.*"], consecutive=False)


def test_an_async_test_that_would_escape_is_refused_at_collection(
    pytester: pytest.Pytester,
) -> None:
    """Without pytest-trio running it, an async test would get no deadline: collection fails."""
    inner_suite(pytester, trio_mode=False)
    pytester.makepyfile(test_inner="async def test_unguarded():\n    pass\n")
    result = pytester.runpytest_inprocess("-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "these tests would run without a deadline" in result.stderr.str()
    assert "test_inner.py::test_unguarded: an async test that pytest-trio does not run" in (
        result.stderr.str()
    )


def test_a_malformed_deadline_marker_is_refused_at_collection(pytester: pytest.Pytester) -> None:
    inner_suite(pytester)
    pytester.makepyfile(
        test_inner="import pytest\n\n@pytest.mark.deadline(0)\nasync def test_x():\n    pass\n"
    )
    result = pytester.runpytest_inprocess("-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "@pytest.mark.deadline needs a positive number of seconds, got 0" in (
        result.stderr.str()
    )


# -- trio.run written in a test --------------------------------------------------------------


def _is_trio_call(node: ast.AST, name: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "trio"
    )


def _guarded(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """The function's body is one ``with`` (after a docstring) that has ``trio.fail_after``
    among its items: everything it awaits runs under the deadline."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return (
        len(body) == 1
        and isinstance(body[0], ast.With | ast.AsyncWith)
        and any(_is_trio_call(item.context_expr, "fail_after") for item in body[0].items)
    )


def _definition(
    name: str, ancestors: list[ast.AST]
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The function called ``name`` that a call sees: defined in the body of the innermost
    enclosing function (or the module) that defines one."""
    for scope in reversed(ancestors):
        if isinstance(scope, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef):
            for statement in scope.body:
                if (
                    isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef)
                    and statement.name == name
                ):
                    return statement
    return None


def unguarded_trio_runs(path: Path, root: Path = REPO) -> list[str]:
    """``file:line`` of every ``trio.run(f, ...)`` in ``path`` whose ``f`` is not a function
    (of the same file) whose whole body runs under ``trio.fail_after``."""
    bad: list[str] = []

    def visit(node: ast.AST, ancestors: list[ast.AST]) -> None:
        if _is_trio_call(node, "run"):
            assert isinstance(node, ast.Call)
            target = node.args[0] if node.args else None
            function = _definition(target.id, ancestors) if isinstance(target, ast.Name) else None
            if function is None or not _guarded(function):
                bad.append(f"{path.relative_to(root)}:{node.lineno}")
        for child in ast.iter_child_nodes(node):
            visit(child, [*ancestors, node])

    visit(ast.parse(path.read_text(encoding="utf-8")), [])
    return bad


def test_every_trio_run_in_the_suite_is_under_fail_after() -> None:
    """A sync test that starts its own ``trio.run`` (a Hypothesis example, a run with a
    faster clock) passes it a function whose body is ``with trio.fail_after(...):``."""
    files = [p for suite in SUITES for p in sorted(suite.glob("*.py"))]
    assert len(files) > 20
    bad = [where for path in files for where in unguarded_trio_runs(path)]
    assert bad == []


def test_the_source_check_sees_an_unguarded_run(tmp_path: Path) -> None:
    """The check above is not blind."""
    source = tmp_path / "sample.py"
    source.write_text(
        "import trio\n"
        "async def main():\n    await trio.sleep(1)\n"
        "async def guarded():\n    with trio.fail_after(5):\n        await main()\n"
        "trio.run(main)\n"
        "trio.run(guarded)\n"
        "trio.run(lambda: None)\n"
    )
    bad = [where.rsplit(":", 1)[1] for where in unguarded_trio_runs(source, tmp_path)]
    assert bad == ["7", "9"]

