"""Choosing the live progress reporter for ``TrioDesigner(progress=...)``.

A reporter is one trio task started next to the engine (:class:`Reporter`: ``run`` until
cancelled, then ``final``). Two exist, and both show the same numbers, taken from one
:class:`~._progress_model.ProgressSnapshot`:

* :class:`~._progress_plain.PlainProgress` prints a compact block every few seconds — for CI
  logs, pipes and notebooks;
* ``RichProgress`` (in :mod:`._progress_rich`, imported only when chosen, as ``rich`` is an
  optional extra) draws sticky bars at the bottom of a terminal, with log lines above them.

:func:`resolve_progress` validates the ``progress`` value up front (a bad one fails before
anything runs); :func:`make_reporter` builds the reporter inside the run.

Import order, one way only: ``_progress`` → ``_progress_plain`` / ``_progress_rich`` →
``_progress_model`` → ``_runview``; the engine is never imported.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
from typing import Literal, Protocol, TextIO

from .._exceptions import ConfigError
from ._progress_plain import PLAIN_INTERVAL, PlainProgress
from ._runview import RunView

__all__ = [
    "INSTALL_HINT",
    "ProgressMode",
    "Reporter",
    "is_interactive",
    "make_reporter",
    "resolve_progress",
    "rich_available",
]

#: How to get the optional rich display.
INSTALL_HINT = "pip install 'trio_designer[progress]'"

ProgressMode = Literal["auto", "plain", "rich"]


class Reporter(Protocol):
    """What the designer runs next to the engine: ``run`` until cancelled, then ``final``.

    ``final`` is called once, after the run's nursery was cancelled but possibly *before*
    ``run`` has noticed; it must leave the terminal clean either way. Its ``outcome`` is the
    status the run records in ``metadata.json`` (``complete``, ``early_shutdown``,
    ``interrupted``), shown on the last frame.
    """

    async def run(self) -> None: ...

    def final(self, outcome: str | None = None) -> None: ...


def resolve_progress(progress: object) -> tuple[ProgressMode | None, float]:
    """Validate a ``TrioDesigner(progress=...)`` value: ``(mode, plain interval)``.

    ``False``/``0`` → ``(None, ...)`` (no progress); ``True``/``"auto"`` → ``"auto"``;
    ``"plain"``/``"rich"`` as named; a positive number → ``"plain"`` every that many seconds.
    Also checks that ``"rich"`` can be honoured (``rich`` is installed).

    Raises:
      ConfigError: anything else, or ``"rich"`` without ``rich`` installed.
    """
    if progress is True:
        return "auto", PLAIN_INTERVAL
    if progress is False:
        return None, PLAIN_INTERVAL
    if isinstance(progress, numbers.Real) and not isinstance(progress, bool):
        seconds = float(progress)
        if seconds == 0:
            return None, PLAIN_INTERVAL
        if math.isfinite(seconds) and seconds > 0:
            return "plain", seconds
        raise ConfigError(
            f"progress: a number means 'print a plain-text block every that many seconds' and "
            f"must be positive and finite, got {progress!r}"
        )
    if progress == "auto" or progress == "plain":
        return progress, PLAIN_INTERVAL
    if progress == "rich":
        if not rich_available():
            raise ConfigError(
                "progress='rich': the live display needs the optional 'rich' package, which is "
                f"not installed; install it with {INSTALL_HINT}, or use progress='plain' "
                "(or 'auto', which falls back to plain text)"
            )
        return "rich", PLAIN_INTERVAL
    raise ConfigError(
        f"progress: expected True/False, a number of seconds, or one of 'auto', 'plain', "
        f"'rich'; got {progress!r}"
    )


def make_reporter(
    progress: object, state: RunView, *, stream: TextIO | None = None
) -> Reporter | None:
    """The progress reporter for ``TrioDesigner(progress=...)`` (``None`` for no progress).

    * ``True``/``"auto"``: rich bars when ``stream`` is a terminal (and ``TERM`` is not
      ``dumb``) and ``rich`` is installed; otherwise a plain block every
      :data:`PLAIN_INTERVAL` seconds.
    * ``"plain"``: plain blocks every :data:`PLAIN_INTERVAL` seconds; a number: every that
      many seconds.
    * ``"rich"``: always rich (off a terminal rich prints only the final frame).

    Args:
      progress: the ``progress`` value (validated by :func:`resolve_progress`).
      state: the run's state; call inside its ``trio.run``.
      stream: where to draw (default ``sys.stderr``).

    Raises:
      ConfigError: an invalid ``progress`` value, or ``"rich"`` without ``rich`` installed.
    """
    mode, interval = resolve_progress(progress)
    if mode is None:
        return None
    out = stream if stream is not None else sys.stderr
    if mode == "rich" or (mode == "auto" and is_interactive(out) and rich_available()):
        from ._progress_rich import RichProgress

        return RichProgress(state, stream=out)
    return PlainProgress(state, interval=interval, stream=out)


def is_interactive(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal that can redraw in place (a TTY, ``TERM`` not dumb)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return tty and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


def rich_available() -> bool:
    """Whether the optional ``rich`` package can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
