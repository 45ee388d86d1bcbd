"""The CLI's own error: a problem with how a command was used, with its exit status."""

from __future__ import annotations


class CommandError(Exception):
    """A command cannot do what was asked (a missing file, an optional dependency missing).

    The message is printed as ``error: <message>``; ``exit_code`` is the process exit status
    (2, like a usage error, unless said otherwise).
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
