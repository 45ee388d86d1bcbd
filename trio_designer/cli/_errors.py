"""The CLI's own errors, and how library messages are told in command-line language.

The library's messages speak Python (``pass resume=True to continue it``): a Python caller
changes arguments, not flags. The command line prints the same messages with each Python
spelling replaced by its flag (:func:`in_flags`), so a CLI user reads ``pass --resume to
continue it``. The spellings are the constants of :mod:`trio_designer._exceptions`, so a
message written with them is translated, and one written without them is not a flag anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .._exceptions import (
    CACHE_DIR_ARGUMENT,
    FORCE_RESUME_ARGUMENT,
    NO_CACHE_ARGUMENT,
    OUTPUT_DIR_ARGUMENT,
    RESUME_ARGUMENT,
    TRACE_SETTING,
)

FLAGS: Final[Mapping[str, str]] = {
    RESUME_ARGUMENT: "--resume",
    FORCE_RESUME_ARGUMENT: "--force-resume",
    OUTPUT_DIR_ARGUMENT: "--output-dir",
    TRACE_SETTING: "--trace",
    CACHE_DIR_ARGUMENT: "--cache-dir",
    NO_CACHE_ARGUMENT: "--no-cache",
}
"""Each Python spelling a library message may use -> the flag that does the same here."""


def in_flags(message: str) -> str:
    """``message`` with every Python spelling of :data:`FLAGS` replaced by its flag."""
    for python in sorted(FLAGS, key=len, reverse=True):  # force_resume=True before resume=True
        message = message.replace(python, FLAGS[python])
    return message


class CommandError(Exception):
    """A command cannot do what was asked (a missing file, an optional dependency missing).

    The message is printed as ``error: <message>``; ``exit_code`` is the process exit status
    (2, like a usage error, unless said otherwise).
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
