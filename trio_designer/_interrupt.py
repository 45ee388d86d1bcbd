"""Stopping a run from outside, and how a stopped run is recorded.

A run can end early in three ways that are not the error-rate gate, and ``metadata.json``
tells them apart (``status`` and ``summary.stopped``):

* **interrupted on purpose**: :meth:`TrioDesigner.interrupt
  <trio_designer.TrioDesigner.interrupt>` (what the command line calls on SIGINT and SIGTERM)
  cancels the designer's runs in progress through each run's own :class:`RunControl`. The run
  drains (in-flight row groups are cancelled and not written, finished ones are kept),
  records ``status: "interrupted"`` with the reason and a resume hint, and ``create`` raises
  :class:`~trio_designer.RunInterrupted`;
* **cancelled from outside** (an enclosing cancel scope, a cancelled asyncio task, Ctrl-C
  under ``create_sync``): the same drain and record, reason ``"cancelled"`` (or
  ``"KeyboardInterrupt"``), and the cancellation propagates as trio requires;
* **failed**: an exception ended the run (a provider that cannot work, a disk that failed):
  ``status: "failed"`` with the error's class and message, and the exception propagates.

Invariant: a run's record never says ``running`` once ``create`` has returned or raised, and
nothing written before the stop is lost. Checked by
``tests/test_signals.py::test_a_signal_drains_the_run_and_records_why`` (a real process and
SIGTERM/SIGINT), ``::test_interrupt_drains_and_raises_run_interrupted`` and
``::test_an_outer_cancel_is_recorded_as_cancelled``.
"""

from __future__ import annotations

from typing import Any, Literal

import trio

from ._exceptions import RESUME_ARGUMENT

__all__ = ["RecordedStatus", "RunControl", "stop_record"]

RecordedStatus = Literal["complete", "early_shutdown", "interrupted", "failed", "budget_exhausted"]
"""What ``metadata.json`` records as a run's final ``status``."""

DEFAULT_RESUME_HINT = (
    f"call create() again with the same config, num_records and output_dir, and {RESUME_ARGUMENT}"
)


class RunControl:
    """One run's handle for :meth:`TrioDesigner.interrupt`: its cancel scope and, once
    stopped, why and how to resume.

    Attributes:
      scope: the cancel scope around the whole run (opening the models included).
      reason: why the run was stopped (``"SIGTERM"``), or ``None`` while it runs.
      resume_hint: how to continue the run, as the caller who stopped it spells it.
    """

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.reason: str | None = None
        self.resume_hint: str | None = None
        #: Rows this run wrote (set when it ends), for the :class:`RunInterrupted` message.
        self.rows_written = 0

    def stop(self, reason: str, resume_hint: str | None) -> None:
        """Cancel the run (once: the first reason wins)."""
        if self.reason is None:
            self.reason = reason
            self.resume_hint = resume_hint
        self.scope.cancel()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called and the stop actually cut the run short."""
        return self.reason is not None and self.scope.cancelled_caught


def stop_record(
    control: RunControl | None, error: BaseException | None
) -> tuple[RecordedStatus, dict[str, Any]] | None:
    """The status and ``summary.stopped`` entry of a run that ended by ``error``, or ``None``
    for a run that ended normally (``error is None``).

    ``error`` is what was propagating out of the engine: a ``trio.Cancelled`` (our stop, or a
    cancellation from outside), a ``KeyboardInterrupt``, or an exception that failed the run.
    """
    if error is None:
        return None
    error = _cause(error)
    if isinstance(error, trio.Cancelled | KeyboardInterrupt):
        if control is not None and control.reason is not None:
            reason = control.reason
            hint = control.resume_hint or DEFAULT_RESUME_HINT
        else:
            reason = "KeyboardInterrupt" if isinstance(error, KeyboardInterrupt) else "cancelled"
            hint = DEFAULT_RESUME_HINT
        return "interrupted", {"reason": reason, "resume": hint}
    return "failed", {
        "reason": "error",
        "error_class": type(error).__name__,
        "message": str(error)[:2000],
        "resume": DEFAULT_RESUME_HINT,
    }


def _cause(error: BaseException) -> BaseException:
    """The exception that says why a run ended: for a group (raised through nurseries), its
    first leaf that is not a cancellation, else its first leaf."""
    leaves = list(_leaves(error))
    for leaf in leaves:
        if not isinstance(leaf, trio.Cancelled):
            return leaf
    return leaves[0] if leaves else error


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]
