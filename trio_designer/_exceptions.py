"""The one exception tree of trio_designer.

Grouped by what the caller can do about it::

    TrioDesignerError
    ├── ConfigError (ValueError)            fix the input; raised before any request is sent
    ├── GenerationError                     one cell failed; carries column / row
    │   ├── RetryableGenerationError        deferred, re-run in salvage rounds
    │   │   ├── ModelRateLimitedError       429; carries retry_after (seconds)
    │   │   ├── ModelTimeoutError           408, read/connect/pool timeouts
    │   │   ├── ModelServerError            5xx
    │   │   └── ModelConnectionError        connection refused/reset, protocol errors
    │   └── NonRetryableGenerationError     drops the row (or the row group, for full-column tasks)
    │       ├── ModelRequestError           400/401/403/404/413/422, context window, quota
    │       └── ModelOutputError            the model answered, but its output never parsed
    ├── SinkError (OSError)                 writing the dataset failed
    └── RunInterrupted                      the run stopped early; what finished is on disk

Any other exception raised by a generator (for instance a user's custom function raising
``KeyError``) is treated as a :class:`NonRetryableGenerationError` for that cell: the row is
dropped, the run goes on. ``trio.Cancelled`` and ``KeyboardInterrupt`` are never caught.

Messages are whole sentences that name the column or field and say what to do. They never
contain an API key: model errors are built from status codes and response bodies only, and the
client redacts the ``Authorization`` header before anything is formatted.
"""

from __future__ import annotations

from collections.abc import Sequence


class TrioDesignerError(Exception):
    """Root of every error trio_designer raises on purpose."""


class ConfigError(TrioDesignerError, ValueError):
    """The pipeline configuration is invalid.

    Raised before any request is sent. ``problems`` lists every problem found, each prefixed
    with the path of the offending field (``columns[3].prompt: ...``); ``str(exc)`` shows them
    all, one per line.
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems: tuple[str, ...] = tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            message = f"the configuration has {len(self.problems)} problems:\n{listed}"
        super().__init__(message)


class GenerationError(TrioDesignerError):
    """Generating one cell (or one full-column task) failed.

    Attributes:
      column: the column being generated, when known.
      row: the global row index, or ``None`` for full-column tasks and unknown rows.
    """

    retryable: bool = False

    def __init__(self, message: str, *, column: str | None = None, row: int | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.row = row


class RetryableGenerationError(GenerationError):
    """A transient failure: the cell is deferred and re-run in a salvage round."""

    retryable = True


class NonRetryableGenerationError(GenerationError):
    """A permanent failure for this row: the row is dropped and its other cells cancelled."""


class ModelRateLimitedError(RetryableGenerationError):
    """The endpoint answered 429. ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message, column=column, row=row)
        self.retry_after = retry_after


class ModelTimeoutError(RetryableGenerationError):
    """The request timed out (HTTP 408 or a client-side timeout)."""


class ModelServerError(RetryableGenerationError):
    """The endpoint answered with a 5xx status."""

    def __init__(
        self, message: str, *, status: int, column: str | None = None, row: int | None = None
    ) -> None:
        super().__init__(message, column=column, row=row)
        self.status = status


class ModelConnectionError(RetryableGenerationError):
    """The connection failed, was reset, or the server broke the HTTP protocol."""


class ModelRequestError(NonRetryableGenerationError):
    """The endpoint rejected the request in a way a retry cannot fix.

    ``reason`` is one of ``"bad_request"``, ``"authentication"``, ``"permission"``,
    ``"not_found"``, ``"too_large"``, ``"unprocessable"``, ``"context_window"``, ``"quota"``,
    ``"response_too_large"`` (the answer exceeded the model's ``max_response_bytes``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        reason: str,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message, column=column, row=row)
        self.status = status
        self.reason = reason


class ModelOutputError(NonRetryableGenerationError):
    """The model answered, but no attempt produced output that parsed and validated."""

    def __init__(
        self, message: str, *, attempts: int, column: str | None = None, row: int | None = None
    ) -> None:
        super().__init__(message, column=column, row=row)
        self.attempts = attempts


class SinkError(TrioDesignerError, OSError):
    """Writing a row group or the run metadata failed."""


class RunInterrupted(TrioDesignerError):
    """The run stopped before every row group finished; finished row groups are on disk."""
