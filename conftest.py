"""Every async test runs under a deadline, so a deadlock fails in seconds with a message.

The mechanism (style.md §7.5, house rule 10). pytest-trio runs each ``async def`` test in its
own ``trio.run``; the hook below wraps the test function *before* pytest-trio does, so the whole
test body runs inside one cancel scope with a deadline on the test's own clock:

* under ``autojump_clock`` (virtual time) a deadlock — a leaked slot, a waiter nobody wakes —
  jumps straight to the deadline, and the test fails with :class:`trio.TooSlowError` in
  microseconds of real time instead of hanging;
* on the real clock the deadline is real seconds.

The default, :data:`DEFAULT_DEADLINE` seconds, fits a unit test; a test that does more says so
with ``@pytest.mark.deadline(seconds)`` (sized to what it does: about twice its virtual
makespan). Collection fails if an ``async def`` test would escape the mechanism (see
:func:`pytest_collection_modifyitems`), and ``tests/test_deadlines.py`` proves both the
mechanism and that every ``trio.run`` written in a test is under ``trio.fail_after``.

The last line of defence is pytest-timeout (``timeout`` in ``pyproject.toml``): a wall-clock
limit per test, far above the slowest test, for hangs no trio deadline can see (a worker
thread, a subprocess). It uses the ``thread`` method: on expiry it dumps every thread's stack
and ends the session. The ``signal`` method would raise from inside trio's run loop and leave
trio's global run state behind, so every later trio test would fail with "Attempted to call
run() from inside a run()" — many misleading failures instead of one clear one.
"""

from __future__ import annotations

import functools
import inspect
import os
import tempfile
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import pytest
import trio

pytest_plugins = ["pytester"]

DEFAULT_DEADLINE = 10.0
"""Seconds on the test's clock (virtual under ``autojump_clock``) an async test may take
unless it is marked ``@pytest.mark.deadline(seconds)``."""

_DEADLINE_ATTRIBUTE = "_trio_designer_deadline"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "deadline(seconds): the async test's deadline on its own clock (virtual under "
        f"autojump_clock); default {DEFAULT_DEADLINE:g} s",
    )
    _isolate_the_response_cache()


def _isolate_the_response_cache() -> None:
    """The response cache (docs/cache.md) is on by default and lives in the user's home: the
    suite turns it off by default (``TRIO_DESIGNER_CACHE=off``; a test of the cache passes
    ``cache=True`` and its own ``cache_dir``), so tests never share answers through it, and
    points ``XDG_CACHE_HOME`` at a throwaway directory, so nothing (subprocesses included)
    writes into the real home."""
    os.environ.setdefault("TRIO_DESIGNER_CACHE", "off")  # TRIO_DESIGNER_CACHE=on pytest: on
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="trio-designer-test-cache-")


def deadline_of(item: pytest.Item) -> float:
    """The deadline of ``item``: its ``deadline`` marker, or :data:`DEFAULT_DEADLINE`.

    Raises:
      pytest.UsageError: the marker does not hold one positive number of seconds.
    """
    marker = item.get_closest_marker("deadline")
    if marker is None:
        return DEFAULT_DEADLINE
    if marker.kwargs or len(marker.args) != 1:
        raise pytest.UsageError(f"{item.nodeid}: write @pytest.mark.deadline(seconds)")
    seconds = marker.args[0]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.deadline needs a positive number of seconds, "
            f"got {seconds!r}"
        )
    return float(seconds)


def _escapes_deadline(item: pytest.Item) -> str | None:
    """Why the async test ``item`` would run without a deadline, or ``None``."""
    function = getattr(item, "obj", None)
    inner = getattr(getattr(function, "hypothesis", None), "inner_test", None)
    if inspect.iscoroutinefunction(inner):
        return (
            "an async @given test; write a sync @given test that calls trio.run with a fresh "
            "MockClock and trio.fail_after inside (style.md §8.2)"
        )
    if not inspect.iscoroutinefunction(function):
        return None
    if item.get_closest_marker("trio") is None:
        return "an async test that pytest-trio does not run (is trio_mode on?)"
    if not isinstance(item, pytest.Function):
        return "an async test that is not a plain test function"
    return None


@pytest.hookimpl(trylast=True)  # after pytest-trio has marked the async tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a suite in which an async test would escape its deadline."""
    problems = [f"{item.nodeid}: {why}" for item in items if (why := _escapes_deadline(item))]
    for item in items:
        deadline_of(item)  # a malformed marker is a usage error at collection, not at run time
    if problems:
        raise pytest.UsageError(
            "these tests would run without a deadline:\n  " + "\n  ".join(problems)
        )


def with_deadline(
    function: Callable[..., Coroutine[Any, Any, Any]], seconds: float, name: str
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``function`` run under a deadline of ``seconds`` on the current trio clock; on expiry
    :class:`trio.TooSlowError` says which test and which deadline."""

    @functools.wraps(function)
    async def under_deadline(*args: Any, **kwargs: Any) -> Any:
        with trio.move_on_after(seconds) as scope:
            return await function(*args, **kwargs)
        if scope.cancelled_caught:
            clock = type(trio.lowlevel.current_clock()).__name__
            raise trio.TooSlowError(
                f"{name} did not finish within its deadline of {seconds:g} s on its clock "
                f"({clock}): a deadlock, a leaked slot or a waiter nobody wakes? If the test "
                "really needs longer, mark it @pytest.mark.deadline(seconds)."
            )
        return None  # pragma: no cover - the body returned inside the scope

    setattr(under_deadline, _DEADLINE_ATTRIBUTE, seconds)
    return under_deadline


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Wrap an async test in its deadline before pytest-trio wraps it in ``trio.run``."""
    function = getattr(item, "obj", None)
    if inspect.iscoroutinefunction(function) and not hasattr(function, _DEADLINE_ATTRIBUTE):
        assert isinstance(item, pytest.Function)
        item.obj = with_deadline(function, deadline_of(item), item.nodeid)
    yield
