"""The one exception tree of trio_designer.

Grouped by what the caller can do about it::

    TrioDesignerError
    ├── ConfigError (ValueError)            fix the input; raised before any request is sent
    │   └── PluginError                     an installed plugin is broken (names its package)
    ├── GenerationError                     one cell failed; carries column / row
    │   ├── RetryableGenerationError        deferred, re-run in salvage rounds
    │   │   ├── ModelRateLimitedError       429; carries retry_after (seconds)
    │   │   ├── ModelTimeoutError           408, read/connect/pool timeouts
    │   │   ├── ModelServerError            5xx
    │   │   └── ModelConnectionError        connection refused/reset, protocol errors
    │   └── NonRetryableGenerationError     drops the row (or the row group, for full-column tasks)
    │       ├── ModelRequestError           400/401/403/404/413/422, context window, quota
    │       ├── ModelContentFilteredError   the provider's content filter stopped the answer
    │       ├── ModelOutputError            the model answered, but its output never parsed
    │       └── ValidationFailedError       a validation column with drop_invalid rejected the
    │                                       row (not counted as an error by the shutdown gate)
    ├── ProviderError                       a provider cannot work at all (refused, DNS, TLS,
    │                                       401/403 before any success): the run stops at once
    ├── SinkError (OSError)                 writing the dataset failed
    ├── ProcessorError                      a processor failed at run time (a custom
    │                                       processor's function); generated rows are kept
    ├── TraceExportError (ValueError)       a recorded trace cannot be exported or plotted
    ├── RunInterrupted                      the run stopped early; what finished is on disk
    └── EventLoopError (RuntimeError)       called from the wrong event loop; the message
                                            says what to call instead (``trio_designer.aio``)

Any other exception raised by a generator (for instance a user's custom function raising
``KeyError``) is treated as a :class:`NonRetryableGenerationError` for that cell: the row is
dropped, the run goes on. ``trio.Cancelled`` and ``KeyboardInterrupt`` are never caught.

Messages are whole sentences that name the column or field and say what to do. They never
contain an API key: model errors are built from status codes and response bodies only, and the
client redacts the ``Authorization`` header before anything is formatted.

Messages speak Python: when the remedy is an argument the caller can change, they name it as a
Python caller writes it (:data:`RESUME_ARGUMENT`, :data:`FORCE_RESUME_ARGUMENT`,
:data:`OUTPUT_DIR_ARGUMENT`, :data:`TRACE_SETTING`, :data:`CACHE_DIR_ARGUMENT`,
:data:`NO_CACHE_ARGUMENT`), never as a command-line flag. The command
line rewrites exactly these spellings into its flags (``trio_designer/cli/_errors.py``), so one
message serves both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._core._budget import RateLimits

RESUME_ARGUMENT: Final = "resume=True"
"""How a message tells the caller to continue a run (``TrioDesigner.create(..., resume=True)``;
on the command line ``--resume``)."""

FORCE_RESUME_ARGUMENT: Final = "force_resume=True"
"""How a message tells the caller to continue a run whose config changed (on the command line
``--force-resume``)."""

OUTPUT_DIR_ARGUMENT: Final = "output_dir="
"""How a message names the output directory argument (on the command line ``--output-dir``)."""

TRACE_SETTING: Final = "RunConfig(trace=True)"
"""How a message tells the caller to record a trace (on the command line ``--trace``)."""

CACHE_DIR_ARGUMENT: Final = "cache_dir="
"""How a message names the response cache's directory (on the command line ``--cache-dir``)."""

NO_CACHE_ARGUMENT: Final = "cache=False"
"""How a message tells the caller to run without the response cache (``--no-cache``)."""

ARGUMENT_SPELLINGS: Final = (
    RESUME_ARGUMENT,
    FORCE_RESUME_ARGUMENT,
    OUTPUT_DIR_ARGUMENT,
    TRACE_SETTING,
    CACHE_DIR_ARGUMENT,
    NO_CACHE_ARGUMENT,
)
"""Every Python spelling a message may use for something the command line spells as a flag."""


class TrioDesignerError(Exception):
    """Root of every error trio_designer raises on purpose."""


class ConfigError(TrioDesignerError, ValueError):
    """The pipeline configuration is invalid.

    Raised before any request is sent. ``problems`` lists every problem found, each prefixed
    with the path of the offending field (``columns[3].prompt: ...``, with ``(line 12)`` when
    the config was read from a YAML or JSON file); ``str(exc)`` shows them all, one per line,
    after the config file's name when it is known (``source``).
    """

    def __init__(self, problems: str | Sequence[str], *, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems: tuple[str, ...] = tuple(problems)
        self.source = source
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            message = f"the configuration has {len(self.problems)} problems:\n{listed}"
        if source is not None and source not in message:
            message = f"{source}: {message}"
        super().__init__(message)


class PluginError(ConfigError):
    """An installed plugin (a Python entry point of a ``trio_designer.*`` group) is broken.

    Raised only when a config uses the plugin's kind, or when plugins are listed; a broken
    plugin never affects a run that does not use it. The message names the plugin, its entry
    point and the distribution package that registered it, and says what is wrong.

    Attributes:
      group: the entry-point group (``"trio_designer.columns"``).
      name: the entry point's name: the kind a config writes (``"reverse_text"``).
      value: the entry point's target, ``"module:attribute"``.
      distribution: the distribution package that registered it (``"td-example-plugin"``).
      version: that package's version.
      reason: what is wrong, without the plugin's description.
    """

    def __init__(
        self,
        *,
        group: str,
        name: str,
        value: str,
        distribution: str,
        version: str,
        reason: str,
    ) -> None:
        self.group = group
        self.name = name
        self.value = value
        self.distribution = distribution
        self.version = version
        self.reason = reason
        super().__init__(
            f"plugin {name!r} is broken: {reason} (entry point '{name} = {value}' in group "
            f"{group!r}, from package {distribution} {version}); fix or upgrade {distribution}, "
            f"or uninstall it and stop using {name!r}"
        )


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
    """The endpoint answered 429. ``retry_after`` is the server's hint in seconds, if any;
    ``rate_limits`` what its headers said about its request and token budgets, if anything."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        column: str | None = None,
        row: int | None = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        super().__init__(message, column=column, row=row)
        self.retry_after = retry_after
        self.rate_limits = rate_limits


class ModelTimeoutError(RetryableGenerationError):
    """The request timed out (HTTP 408 or a client-side timeout)."""


class ModelServerError(RetryableGenerationError):
    """The endpoint answered with a 5xx status.

    ``retry_after`` is the server's ``Retry-After`` (seconds), when it sent one with a
    502/503/504 (``None`` otherwise).
    """

    def __init__(
        self, message: str, *, status: int, column: str | None = None, row: int | None = None
    ) -> None:
        super().__init__(message, column=column, row=row)
        self.status = status
        self.retry_after: float | None = None


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


class ModelContentFilteredError(NonRetryableGenerationError):
    """The provider's content filter stopped the answer, or refused the prompt.

    Raised for an answer whose ``finish_reason`` is ``"content_filter"`` (``status`` 200), and
    for a 400 whose body says the prompt was filtered (Azure OpenAI's ``content_filter`` code;
    ``status`` 400). Not retried: the same prompt meets the same filter. The row is dropped.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message, column=column, row=row)
        self.status = status


class ModelOutputError(NonRetryableGenerationError):
    """The model answered, but no answer parsed and validated.

    ``requests`` is how many times the cell asked (at most ``1 + max_parse_retries``), all within
    one attempt of the cell: "attempts" count the engine's runs of a cell (``failures.jsonl``).
    ``reason`` says what was wrong with the last answer: ``"unparsable"`` (it did not parse or
    validate), ``"empty"`` (no content), ``"refused"`` (no content, and a ``message.refusal``:
    the message quotes it), ``"tool_calls"`` (no content, only ``message.tool_calls``), or
    ``"truncated"`` (cut off at ``max_tokens``: ``finish_reason`` ``"length"``; the message says
    to raise ``max_tokens``).
    """

    def __init__(
        self,
        message: str,
        *,
        requests: int,
        reason: str = "unparsable",
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message, column=column, row=row)
        self.requests = requests
        self.reason = reason


class ValidationFailedError(NonRetryableGenerationError):
    """A validation column with ``drop_invalid: true`` found the row invalid: the row is dropped
    (nothing downstream of it is generated) and recorded in ``failures.jsonl`` with the
    validator's messages. A rejection is a decision, not a failure: it does not count towards
    the early-shutdown error rate."""


class ProviderError(TrioDesignerError):
    """A provider cannot work at all, so the run stops at once (``status: "failed"``).

    Raised when the requests to a provider so far have all failed in a way no retry fixes
    and none has succeeded: no connection (refused, unknown host, failed TLS handshake, a
    proxy that refuses the tunnel) after the client's own retries, the credentials rejected
    (HTTP 401 or 403), or HTTP 404 for a model no request has got another answer for. Once
    a provider (for a 404: the model) has answered a request, its later failures are ordinary
    cell failures. Not a :class:`GenerationError`: no row is to blame. The message names the
    provider, its ``base_url`` and what to do; the command line exits 1.

    Attributes:
      provider: the provider's name.
      base_url: its base URL.
      reason: ``"unreachable"`` (no connection), ``"credentials"`` (401/403) or
        ``"not_found"`` (404 for a model that has had no other answer: a wrong model id or
        base_url path) or ``"silent"`` (connections accepted, but the first requests all
        timed out with nothing answered).
    """

    def __init__(self, message: str, *, provider: str, base_url: str, reason: str) -> None:
        super().__init__(message)
        self.provider = provider
        self.base_url = base_url
        self.reason = reason


class SinkError(TrioDesignerError, OSError):
    """Writing a row group or the run metadata failed."""


class ProcessorError(TrioDesignerError):
    """A processor failed while the run applied it (a custom processor's function raised or
    returned something else than a table). The row groups already written are kept; the
    message names the processor."""


class TraceExportError(TrioDesignerError, ValueError):
    """A trace cannot be exported or plotted: no ``trace.json``, an unreadable one, an output
    format we cannot write, or matplotlib missing (the message says what to do)."""


class EventLoopError(TrioDesignerError, RuntimeError):
    """A call was made from an event loop it cannot run in; the message says what to call.

    ``TrioDesigner.create``/``preview`` are Trio coroutines; ``create_sync``/``preview_sync``
    start their own ``trio.run`` and so cannot be called while an event loop runs in the thread
    (a Jupyter cell, code under ``asyncio.run``, or inside ``trio.run``);
    ``trio_designer.aio.create``/``preview`` are for asyncio.
    """


class RunInterrupted(TrioDesignerError):
    """The run stopped before every row group finished; finished row groups are on disk.

    Raised by ``TrioDesigner.create``/``preview`` after ``TrioDesigner.interrupt`` stopped
    the run and it drained (``metadata.json`` says ``interrupted``, with the reason).

    Attributes:
      reason: why (``"SIGTERM"``, ``"SIGINT"``, or what the caller of ``interrupt`` said).
      output_dir: where the finished row groups are (``None`` for a preview).
      rows_written: rows this run wrote before it stopped.
    """

    def __init__(self, *, reason: str, output_dir: Any = None, rows_written: int = 0) -> None:
        if output_dir is None:
            message = f"the preview was interrupted ({reason}); nothing is kept (it is in memory)"
        else:
            message = (
                f"the run was interrupted ({reason}); the finished row groups ({rows_written} "
                f"rows written by this run) are kept in {output_dir}; continue it with "
                f"{RESUME_ARGUMENT} and the same {OUTPUT_DIR_ARGUMENT}"
            )
        super().__init__(message)
        self.reason = reason
        self.output_dir = output_dir
        self.rows_written = rows_written


class MissingDependencyError(TrioDesignerError, ImportError):
    """An optional extra is needed and not installed (``RunResult.to_pandas()`` without pandas,
    ``export --format hf`` without ``datasets``); the message names the extra to install.

    Attributes:
      extra: the extra's name: ``pip install 'trio_designer[<extra>]'``.
    """

    def __init__(self, what: str, *, package: str, extra: str) -> None:
        super().__init__(
            f"{what} needs {package}, an optional extra that is not installed: "
            f"pip install 'trio_designer[{extra}]'",
            name=package,
        )
        self.extra = extra

