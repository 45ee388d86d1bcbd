"""The asyncio bridge behind :mod:`trio_designer.aio`: one ``trio.run`` per call, in a thread.

Design note. Each call runs ``trio.run`` in a worker thread of its own and awaits
its result through an asyncio future; a cancellation reaches the run through its
``TrioToken``. The alternative is Trio's *guest mode* (``trio.lowlevel.start_guest_run``),
which runs Trio's scheduler inside the asyncio loop's own thread. ``benches/aio_bridge.py``
compares them on a small pipeline (a category sampler, two chained LLM columns against the
built-in simulator at 20 ms latency, an expression; 200 rows = 400 requests), interleaving the
bridges, on 2 cores shared with other work (so wall time mostly measured the neighbours;
process CPU time is the better figure)::

    process CPU, ratio to plain trio.run     session 1   session 2   session 3 (median of 9)
    guest mode under asyncio.run              1.04x       0.93x       1.11x
    worker thread under asyncio.run           0.98x       1.22x       1.08x

Neither costs measurably more than plain ``trio.run``: the differences flip sign between
sessions and stay within the noise of the machine (±20 %). Both printed the same progress, and
both stopped within 0.1 s of a Ctrl-C under ``asyncio.run`` with ``status: interrupted`` and
every finished row group on disk. What decided is concurrency: guest mode allows **one** Trio
run per thread, so a second run awaited while the first runs (``asyncio.gather``, or a
background task) fails with "Attempted to call run() from inside a run()"; worker threads run
side by side. A thread also keeps the engine's timing independent of whatever else the
notebook's loop is doing. The price: your callbacks (``on_event``, custom column functions, a
``limiter_factory``) run in that worker thread, not in the asyncio loop's thread.

The public face, with usage and behaviour, is :mod:`trio_designer.aio`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Generic, TypeVar, final

import trio

from ._designer import RunResult, TrioDesigner
from ._eventloop import check_asyncio_caller
from .config import PipelineConfig

__all__ = ["create", "preview"]

T = TypeVar("T")


async def create(
    config: PipelineConfig,
    *,
    num_records: int,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    designer: TrioDesigner | None = None,
) -> RunResult:
    """:meth:`TrioDesigner.create <trio_designer.TrioDesigner.create>`, awaited from asyncio.

    Args:
      config: the pipeline.
      num_records: rows to generate.
      output_dir: where the parquet files and ``metadata.json`` go.
      resume: continue the run already in ``output_dir`` (same config fingerprint).
      designer: the designer to run it with (engine, progress, limiter factory...);
        ``TrioDesigner()`` by default.

    Returns:
      What the run produced.

    Raises:
      EventLoopError: not awaited in a running asyncio event loop (or awaited inside trio).
      ConfigError, SinkError: as :meth:`TrioDesigner.create`.
      asyncio.CancelledError: the awaiting task was cancelled; the run was cancelled and
        finished its cleanup first (finished row groups are on disk).
    """
    check_asyncio_caller("create")
    run = partial(
        (designer or TrioDesigner()).create,
        config,
        num_records=num_records,
        output_dir=output_dir,
        resume=resume,
    )
    return await _TrioThread(run).result()


async def preview(
    config: PipelineConfig, *, num_records: int = 5, designer: TrioDesigner | None = None
) -> RunResult:
    """:meth:`TrioDesigner.preview <trio_designer.TrioDesigner.preview>` (in memory, nothing
    written), awaited from asyncio.

    Args:
      config: the pipeline.
      num_records: rows to generate.
      designer: the designer to run it with; ``TrioDesigner()`` by default.

    Raises:
      EventLoopError: not awaited in a running asyncio event loop (or awaited inside trio).
      ConfigError: as :meth:`TrioDesigner.preview`.
      asyncio.CancelledError: the awaiting task was cancelled (after the run's cleanup).
    """
    check_asyncio_caller("preview")
    run = partial((designer or TrioDesigner()).preview, config, num_records=num_records)
    return await _TrioThread(run).result()


@final
class _TrioThread(Generic[T]):
    """One ``trio.run(fn)`` in a worker thread of its own, awaited from asyncio.

    Invariant: a cancellation requested from asyncio reaches the run exactly when the run can
    take it. :meth:`cancel` and the run's start meet under ``_lock``: either the run has
    published its ``TrioToken`` (then the cancel is delivered through it), or it finds
    ``_cancel_requested`` set when it starts (then it enters an already cancelled scope).
    """

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._scope = trio.CancelScope()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel_requested = False

    async def result(self) -> T:
        """Start the thread and wait for the run; on cancellation, cancel it and wait again."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        thread = threading.Thread(
            target=self._thread, args=(loop, done), name="trio_designer.aio", daemon=True
        )
        thread.start()
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            self.cancel()
            await asyncio.wait([done])  # the run's cleanup: interrupted status, files kept
            if not done.cancelled():
                done.exception()  # retrieved: the cancellation is what the caller asked for
            raise

    def cancel(self) -> None:
        """Cancel the run from any thread (a no-op once it has finished)."""
        with self._lock:
            self._cancel_requested = True
            token = self._token
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):  # it finished meanwhile
                token.run_sync_soon(self._scope.cancel)

    async def _main(self) -> T:
        with self._lock:
            self._token = trio.lowlevel.current_trio_token()
            if self._cancel_requested:
                self._scope.cancel()
        with self._scope:
            return await self._fn()
        raise _RunCancelled

    def _thread(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[T]) -> None:
        settle: Callable[[], None]
        try:
            value = trio.run(self._main)
        except BaseException as exc:  # handed over to the awaiting task, which raises it
            settle = partial(_set_exception, done, exc)
        else:
            settle = partial(_set_result, done, value)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle)


class _RunCancelled(Exception):
    """The run was cancelled from asyncio before it finished (never seen by callers)."""


def _set_result(done: asyncio.Future[T], value: T) -> None:
    if not done.done():  # else the awaiting task stopped waiting (cancelled twice)
        done.set_result(value)


def _set_exception(done: asyncio.Future[T], error: BaseException) -> None:
    if not done.done():
        done.set_exception(error)

