"""Plain-text progress: a periodic summary of every column and model while a run goes on.

Runs as one trio task next to the engine and only reads counters, so it costs nothing on the
hot path. It prints a block every ``interval`` seconds (and once at the end)::

    [  4.0s] topic       50/50 100%   12.5 rec/s  0 failed
             summary     31/50  62%    7.8 rec/s  0 failed
             model gen   limit 16/16  in flight 16  429s 0  tok/s 410
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, TextIO

import trio

from ._engine._runtime import RunState
from ._exceptions import ConfigError


class PlainProgress:
    """Prints progress of ``state`` (and its models) to ``stream`` every ``interval`` seconds."""

    def __init__(self, state: RunState, *, interval: float = 1.0, stream: TextIO | None = None):
        self._state = state
        self._interval = interval
        self._stream = stream if stream is not None else sys.stderr
        self._start = trio.current_time()
        self._total = state.num_records - sum(
            min(state.run.row_group_size, state.num_records - rg * state.run.row_group_size)
            for rg in state.skip_row_groups
        )

    async def run(self) -> None:
        """Print a block every ``interval`` seconds until cancelled."""
        while True:
            await trio.sleep(self._interval)
            self.print_block()

    def final(self) -> None:
        """Print the last block (the run ended, however it ended)."""
        self.print_block()

    def print_block(self) -> None:
        elapsed = max(trio.current_time() - self._start, 1e-9)
        lines = []
        width = max(len(c) for c in self._state.counts)
        for column, counts in self._state.counts.items():
            done = counts.ok + counts.skipped
            pct = 100 * done / self._total if self._total else 100.0
            lines.append(
                f"{column:<{width}} {done:>7}/{self._total:<7} {pct:4.0f}%  "
                f"{done / elapsed:8.1f} rec/s  {counts.failed} failed"
            )
        lines.extend(self._model_lines(elapsed))
        head = f"[{elapsed:7.1f}s] "
        text = head + ("\n" + " " * len(head)).join(lines)
        print(text, file=self._stream, flush=True)

    def _model_lines(self, elapsed: float) -> list[str]:
        models: Any = self._state.models
        if models is None:
            return []
        lines = []
        usage = models.usage()
        for name, limiter in models.limiters().items():
            stats = limiter.statistics()
            tokens = sum(
                u.output_tokens for alias, u in usage.items() if _endpoint_of(models, alias) == name
            )
            lines.append(
                f"model {name}: limit {stats.limit}/{stats.ceiling}  in flight {stats.in_flight}"
                f"  waiting {stats.waiting}  429s {stats.rate_limited}"
                f"  {tokens / elapsed:.0f} tok/s"
            )
        return lines


def _endpoint_of(models: Any, alias: str) -> str:
    handle = models.model(alias)
    return f"{handle.provider}:{handle.model}"


class Reporter(Protocol):
    """What the designer runs next to the engine: ``run`` until cancelled, then ``final``."""

    async def run(self) -> None: ...

    def final(self) -> None: ...


def make_reporter(progress: bool | float | str, state: RunState) -> Reporter | None:
    """The progress reporter for ``TrioDesigner(progress=...)`` (``None`` for no progress).

    ``True``/``"auto"``/``"rich"``/``"plain"``/a number of seconds; see ``TrioDesigner``.
    """
    if progress is False or progress == 0:
        return None
    if isinstance(progress, bool | int | float):
        interval = 1.0 if progress is True else float(progress)
        return PlainProgress(state, interval=interval)
    if progress in ("auto", "plain", "rich"):
        return PlainProgress(state, interval=1.0)
    raise ConfigError(
        f"progress: expected a bool, a number or 'auto'/'plain'/'rich', got {progress!r}"
    )
