"""Serving the simulator with our small trio + h11 server (``_asgi_server.py``), inside the
caller's ``trio.run``.

Because the server is a set of tasks in the caller's run (no threads, no subprocess), it shares
the caller's clock: under ``trio.testing.MockClock`` every simulated latency is virtual, and a
test can assert exact makespans. Address it as ``127.0.0.1``, never ``localhost`` (name lookup
runs in a worker thread, which lets an autojumping clock race ahead).

Two ways in::

    async with open_simulator([SimulatedModel(name="gen")]) as sim:
        ...  # sim.url == "http://127.0.0.1:PORT/v1"

    simulator = await nursery.start(serve_simulator, [SimulatedModel(name="gen")])
    ...  # runs until the nursery is cancelled
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, final
from urllib.parse import urlsplit

import trio

from ._app import SimulatorApp
from ._asgi_server import serve_asgi
from ._models import RequestRecord, SimulatedModel, SimulatorStats


@final
class Simulator:
    """A handle to a running simulator (what ``serve_simulator`` hands to ``task_status``).

    Attributes:
      url: the OpenAI base URL, ``"http://127.0.0.1:PORT/v1"``.
      host: the bound address.
      port: the bound port (the real one when started with ``port=0``).
      models: the simulated models, in the order given.
    """

    def __init__(self, app: SimulatorApp, root_url: str) -> None:
        self._app = app
        self.url = f"{root_url}/v1"
        parts = urlsplit(root_url)
        self.host: str = parts.hostname or ""
        self.port: int = parts.port or 0
        self.models: tuple[SimulatedModel, ...] = app.models

    def __repr__(self) -> str:  # never shows the API key
        return f"<Simulator {self.url} models={[m.name for m in self.models]}>"

    def stats(self) -> SimulatorStats:
        """A snapshot of every model's statistics (also served at ``GET /stats``)."""
        return self._app.stats()

    def request_log(self) -> Sequence[RequestRecord]:
        """Every request so far (the most recent million), oldest first, as a tuple."""
        return tuple(self._app.log)

    def reset(self) -> None:
        """Zero the statistics and clear the request log (also ``POST /stats/reset``).

        Live gauges (``in_flight``, ``queued``), RPM/TPM windows and the RNGs are kept.
        """
        self._app.reset()


async def serve_simulator(
    models: Sequence[SimulatedModel],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    task_status: trio.TaskStatus[Simulator] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulated models over HTTP until cancelled.

    Use with ``nursery.start``, which returns the :class:`Simulator` once the socket is
    listening::

        simulator = await nursery.start(partial(serve_simulator, models, port=8000))

    Args:
      models: the models to serve (names must be unique).
      host: the address to bind (an IP literal).
      port: the port, or 0 for a free one (read it from ``Simulator.port``).
      api_key: when set, every request must send ``Authorization: Bearer <api_key>`` or get
        401; the key is never logged or echoed.
      task_status: receives the :class:`Simulator` handle.

    Raises:
      ConfigError: no models, a duplicate model name, or an empty API key.
      OSError: the address cannot be bound.
    """
    app = SimulatorApp(models, api_key=api_key)
    asgi_app: Any = app  # our ASGI types are plain mappings
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app.follow_schedules)
        root_url: str = await nursery.start(partial(serve_asgi, asgi_app, host, port))
        task_status.started(Simulator(app, root_url))


@asynccontextmanager
async def open_simulator(
    models: Sequence[SimulatedModel], *, port: int = 0, api_key: str | None = None
) -> AsyncIterator[Simulator]:
    """Run a simulator on ``127.0.0.1`` for the duration of the ``async with`` block.

    With ``api_key``, every request must send ``Authorization: Bearer <api_key>``.

    On exit the server is cancelled: open connections are closed and requests still in
    service are abandoned. An exception leaving the block is re-raised as itself, not wrapped
    in the ``ExceptionGroup`` of the nursery that runs the server.

    Raises:
      ConfigError: no models, a duplicate model name, or an empty API key.
      OSError: the port cannot be bound.
    """
    try:
        async with trio.open_nursery() as nursery:
            simulator: Simulator = await nursery.start(
                partial(serve_simulator, models, port=port, api_key=api_key)
            )
            try:
                yield simulator
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The server task never fails on its own, so a group here wraps the one exception
        # that left the ``async with`` body (or startup): re-raise it as it was.
        sole = _sole_exception(group)
        if sole is None:
            raise
        raise sole from sole.__cause__


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one leaf exception of ``group`` (through nested single-member groups), or None."""
    while len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return None
