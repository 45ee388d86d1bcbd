"""Running the command line against a real simulator, with a deadline and canary secrets.

* :class:`ThreadedSimulator`: the simulator served on ``127.0.0.1`` from a thread of its own
  (its own ``trio.run``), so the CLI's ``main()`` (which starts its own ``trio.run``) can talk
  to it in-process; its request log tells whether a command sent anything.
* :func:`run_cli`: ``trio_designer.cli.main(argv)`` in a worker thread joined with a deadline
  (a hang fails the test in seconds instead of blocking it), capturing stdout and stderr.
* :data:`CANARIES`: secret values set in the environment by the secret tests; no byte any
  command writes may contain one.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_designer.simulator import Latency, SimulatedModel, open_simulator

#: Environment variable -> canary secret value. The first is the simulator's real key.
CANARIES: dict[str, str] = {
    "TD_CANARY_KEY": "sk-canary-9f8e7d6c5b4a3210",
    "TD_CANARY_OTHER_TOKEN": "tok-canary-0a1b2c3d4e5f",
    "OPENAI_API_KEY": "sk-canary-openai-55aa55aa",
}

FAST = Latency(median=0.002, sigma=0.1)


class ThreadedSimulator:
    """A simulator in a background thread, for in-process CLI runs (see the module docstring).

    Args:
      models: model names to serve (fast latency).
      api_key: the key every request must carry, or ``None``.
    """

    def __init__(self, models: Sequence[str] = ("sim-gen",), api_key: str | None = None) -> None:
        self._models = [SimulatedModel(name=name, latency=FAST) for name in models]
        self._api_key = api_key
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._token: Any = None
        self._stop: trio.Event | None = None
        self._simulator: Any = None
        self._failure: BaseException | None = None

    def _run(self) -> None:
        try:
            trio.run(_serve, self)
        except BaseException as exc:  # reported by __enter__ / __exit__
            self._failure = exc
            self._ready.set()

    def __enter__(self) -> ThreadedSimulator:
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._failure is not None:
            raise RuntimeError(f"the simulator did not start: {self._failure!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._token.run_sync_soon(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the simulator thread did not stop"

    @property
    def url(self) -> str:
        """The simulator's ``/v1`` base URL."""
        return str(self._simulator.url)

    def requests(self) -> int:
        """How many requests the simulator has seen so far."""
        log = trio.from_thread.run_sync(self._simulator.request_log, trio_token=self._token)
        return len(log)


@attrs.frozen
class Outcome:
    """What one CLI command did: exit status, stdout, stderr."""

    status: int
    out: str
    err: str


def run_cli(argv: Sequence[str], *, deadline: float = 60) -> Outcome:
    """``main(argv)`` in a worker thread, joined within ``deadline`` seconds.

    Raises:
      AssertionError: the command did not finish in time (a hang).
    """
    from trio_designer.cli import main

    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(main(list(argv)))
        except BaseException as exc:  # main never raises; if it did, the test must say so
            failure.append(exc)

    with _captured(out, err):
        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        worker.join(timeout=deadline)
    assert not worker.is_alive(), f"{' '.join(argv)} did not finish within {deadline} s"
    assert not failure, f"main() raised {failure[0]!r}"
    return Outcome(result[0], out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _captured(out: io.StringIO, err: io.StringIO) -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def leaked(text: str | bytes) -> list[str]:
    """The canary variables whose value appears in ``text``."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return [name for name, value in CANARIES.items() if value.encode() in data]


def files_leaking(folder: Path) -> list[str]:
    """Every file under ``folder`` (recursively) that contains a canary value."""
    return [
        f"{path}: {leaked(path.read_bytes())}"
        for path in sorted(folder.rglob("*"))
        if path.is_file() and leaked(path.read_bytes())
    ]


def preview(config: Any, num_records: int, *, deadline: float = 30) -> Any:
    """``TrioDesigner().preview(...)`` in its own ``trio.run``, under a trio deadline."""
    from trio_designer import TrioDesigner

    async def main() -> Any:
        with trio.fail_after(deadline):
            return await TrioDesigner().preview(config, num_records=num_records)

    return trio.run(main)


def create(config: Any, *, deadline: float = 60, **options: Any) -> Any:
    """``TrioDesigner().create(...)`` in its own ``trio.run``, under a trio deadline."""
    from trio_designer import TrioDesigner

    async def main() -> Any:
        with trio.fail_after(deadline):
            return await TrioDesigner().create(config, **options)

    return trio.run(main)


async def _serve(harness: ThreadedSimulator) -> None:
    """The simulator thread's whole life: serve until told to stop (never past a test run)."""
    with trio.fail_after(600):
        harness._stop = trio.Event()
        async with open_simulator(harness._models, api_key=harness._api_key) as simulator:
            harness._simulator = simulator
            harness._token = trio.lowlevel.current_trio_token()
            harness._ready.set()
            await harness._stop.wait()
