"""Which event loop is the caller in? One clear error when a call cannot work there.

trio_designer's engine runs on Trio. Three entry points cover the three kinds of caller:

========================================  ============================================
the caller runs ...                       it calls
========================================  ============================================
inside ``trio.run``                       ``await TrioDesigner().create(...)``
no event loop (a script)                  ``TrioDesigner().create_sync(...)``
an asyncio loop (``asyncio.run``,         ``await trio_designer.aio.create(...)``
a Jupyter cell)
========================================  ============================================

Each entry point checks its caller first and raises :class:`~trio_designer.EventLoopError`
naming the right one, instead of failing deep inside trio (``AttributeError: 'RunContext'
object has no attribute 'runner'`` when a trio coroutine is awaited under asyncio) or blocking
a notebook's event loop for the whole run (``create_sync`` in a Jupyter cell).
"""

from __future__ import annotations

import asyncio

import trio

from ._exceptions import EventLoopError

__all__ = ["check_asyncio_caller", "check_sync_caller", "check_trio_caller"]


def _in_asyncio_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # "no running event loop"
        return False
    return True


def check_trio_caller(method: str) -> None:
    """Raise unless ``TrioDesigner.<method>()`` is being awaited by a Trio task.

    Raises:
      EventLoopError: awaited under asyncio (use ``trio_designer.aio``), or outside any loop.
    """
    if trio.lowlevel.in_trio_task():
        return
    if _in_asyncio_loop():
        raise EventLoopError(
            f"TrioDesigner.{method}() is a Trio coroutine, but it was awaited in an asyncio "
            "event loop (code under asyncio.run, or a Jupyter cell); await "
            f"trio_designer.aio.{method}(config, ...) there instead."
        )
    raise EventLoopError(
        f"TrioDesigner.{method}() is a Trio coroutine: await it inside trio.run(), or call "
        f"TrioDesigner().{method}_sync(...) from code that runs no event loop."
    )


def check_sync_caller(method: str) -> None:
    """Raise if ``TrioDesigner.<method>_sync()`` would run inside an event loop.

    Raises:
      EventLoopError: inside ``trio.run`` (await ``<method>`` instead), or while an asyncio
        loop runs in this thread (await ``trio_designer.aio.<method>`` instead).
    """
    if trio.lowlevel.in_trio_run():
        raise EventLoopError(
            f"TrioDesigner.{method}_sync() cannot run inside trio.run(); await "
            f"TrioDesigner().{method}(config, ...) instead."
        )
    if _in_asyncio_loop():
        raise EventLoopError(
            f"TrioDesigner.{method}_sync() would block the running asyncio event loop (a "
            "Jupyter cell, or code under asyncio.run) until the run ends; await "
            f"trio_designer.aio.{method}(config, ...) instead."
        )


def check_asyncio_caller(function: str) -> None:
    """Raise unless ``trio_designer.aio.<function>()`` is being awaited in an asyncio loop.

    Raises:
      EventLoopError: awaited inside ``trio.run`` (await the designer's own coroutine), or in
        no asyncio loop.
    """
    if trio.lowlevel.in_trio_run():
        raise EventLoopError(
            f"trio_designer.aio.{function}() is for asyncio; inside trio.run(), await "
            f"TrioDesigner().{function}(config, ...) instead."
        )
    if not _in_asyncio_loop():
        raise EventLoopError(
            f"trio_designer.aio.{function}() must be awaited in a running asyncio event loop "
            "(asyncio.run(...), or a Jupyter cell); from code that runs no event loop, call "
            f"TrioDesigner().{function}_sync(config, ...)."
        )
