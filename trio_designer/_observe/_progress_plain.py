"""The plain-text progress reporter: a compact block every few seconds, and a final one.

For CI logs, pipes, files and notebooks (no escape codes, nothing redrawn in place)::

    [   4.0s] rows written 40/100, dropped 0
              topic         100/100  100%    25.0 rec/s  ETA 0:00  0 failed
              summary        62/100   62%    15.5 rec/s  ETA 0:02  0 failed
              model simulator:sim-gen  limit 16/16  in flight 16  waiting 0  429s 0  410 tok/s
"""

from __future__ import annotations

import sys
from typing import TextIO

import trio

from ._progress_model import (
    ProgressSnapshot,
    ProgressTracker,
    display_failed,
    format_budget,
    format_endpoint,
    format_eta,
    format_rate,
    format_spend,
)
from ._runview import RunView

__all__ = ["PLAIN_INTERVAL", "PlainProgress", "format_plain"]

#: Seconds between plain-text blocks for ``progress=True``/``"auto"`` off a terminal, and for
#: ``progress="plain"``.
PLAIN_INTERVAL = 5.0


def format_plain(snapshot: ProgressSnapshot) -> str:
    """A snapshot as the plain-text block :class:`PlainProgress` prints (no escape codes)."""
    head = f"[{snapshot.elapsed:7.1f}s] "
    ended = f" ({snapshot.outcome})" if snapshot.final and snapshot.outcome else ""
    lines = [
        f"rows written {snapshot.rows_written}/{snapshot.total}, dropped {snapshot.rows_dropped}"
        + ended
    ]
    width = max((len(c.name) for c in snapshot.columns), default=0)
    digits = len(str(snapshot.total))
    for c in snapshot.columns:
        lines.append(
            f"{c.name:<{width}}  {c.done:>{digits}}/{c.total:<{digits}} "
            f"{100 * c.fraction:4.0f}%  {format_rate(c.rate):>7} rec/s  "
            f"ETA {format_eta(c.eta)}  {c.failed} failed"
        )
    lines.extend(f"model {format_endpoint(e)}" for e in snapshot.endpoints)
    if snapshot.spend:
        lines.append(format_spend(snapshot.spend))
    if snapshot.budget:
        lines.append(format_budget(snapshot.budget))
    return head + ("\n" + " " * len(head)).join(lines)


class PlainProgress:
    """Prints progress of ``state`` (and its models) to ``stream`` every ``interval`` seconds.

    Plain text only (no escape codes), so it reads well in CI logs and files. Must be created
    inside the run's ``trio.run`` (it reads the clock).

    Args:
      state: the run's state.
      interval: seconds between blocks.
      stream: where to print (default ``sys.stderr``, looked up when created).
    """

    def __init__(
        self, state: RunView, *, interval: float = PLAIN_INTERVAL, stream: TextIO | None = None
    ) -> None:
        self._state = state
        self.interval = interval
        self._stream = stream if stream is not None else sys.stderr
        self._tracker = ProgressTracker(state, start=trio.current_time())
        self._broken = False

    async def run(self) -> None:
        """Print a block every ``interval`` seconds until cancelled."""
        while not self._broken:
            await trio.sleep(self.interval)
            self.print_block()

    def final(self, outcome: str | None = None) -> None:
        """Print the last block (the run ended, however it ended: ``outcome`` says how)."""
        self.print_block(final=True, outcome=outcome)

    def print_block(self, *, final: bool = False, outcome: str | None = None) -> None:
        """Print one block now (nothing once the stream has failed: the run goes on)."""
        if self._broken:
            return
        snapshot = self._tracker.snapshot(trio.current_time(), final=final, outcome=outcome)
        try:
            print(format_plain(snapshot), file=self._stream, flush=True)
        except (OSError, ValueError) as exc:  # a closed pipe or file
            self._broken = True
            display_failed(exc)
