"""Task slots: the submission limiter, the LLM-wait limiter, and the one-way handoff between them.

The dispatcher takes a *submission* slot for every task it starts, so at most
``max_submitted_tasks`` tasks run at once. A task that is about to wait on a model endpoint
moves to the (larger) *LLM-wait* pool: it acquires an LLM-wait slot and then gives its submission
slot back, so the dispatcher can start more work while it waits — tasks parked on a slow or
rate-limited model never stall dispatch. The move is one way: a task never goes back to the
submission pool. Non-LLM tasks keep their submission slot to the end.

Both pools are ``trio.CapacityLimiter``; the borrower is the task's own :class:`SlotToken`
(``acquire_on_behalf_of`` / ``release_on_behalf_of``), because the dispatcher acquires the
submission slot on the task's behalf before the task exists, and the task releases it.

Invariants (checked by ``property_tests/test_engine_scenarios.py::check_limits_respected``
and ``check_tokens_returned``):

* a token holds at most one slot at any time, and while it waits for an LLM-wait slot it still
  holds its submission slot (acquire, then release: never zero, never two for long);
* ``release`` returns whatever the token holds, exactly once; after a run — also a cancelled one —
  both limiters have every token back.
"""

from __future__ import annotations

from typing import Literal

import attrs
import trio


@attrs.define(eq=False)
class SlotToken:
    """The borrower identity of one task, and which pool it currently holds a slot of."""

    holds: Literal["none", "submission", "llm_wait"] = "none"


@attrs.frozen
class SlotStatistics:
    """Occupancy of the two pools."""

    submission_borrowed: int
    """Submission slots held now."""
    submission_total: int
    """Size of the submission pool."""
    llm_wait_borrowed: int
    """LLM-wait slots held now."""
    llm_wait_total: int
    """Size of the LLM-wait pool."""
    peak_submission: int
    """Most submission slots ever held at once."""
    peak_llm_wait: int
    """Most LLM-wait slots ever held at once."""
    handoffs: int
    """Tasks that moved from the submission pool to the LLM-wait pool."""


class TaskSlots:
    """The two task pools and the handoff (see the module docstring).

    Args:
      max_submitted: size of the submission pool (``RunConfig.max_submitted_tasks``).
      max_llm_wait: size of the LLM-wait pool (``RunConfig.max_llm_wait_tasks``).
    """

    def __init__(self, max_submitted: int, max_llm_wait: int) -> None:
        self._submission = trio.CapacityLimiter(max_submitted)
        self._llm_wait = trio.CapacityLimiter(max_llm_wait)
        self._peak_submission = 0
        self._peak_llm_wait = 0
        self._handoffs = 0
        # Tasks parked in acquire_submission right now (the slow path only).
        self._submission_waiters = 0

    @property
    def submission_contended(self) -> bool:
        """Whether someone is parked waiting for a submission slot (a dispatcher, usually)."""
        return self._submission_waiters > 0

    async def acquire_submission(self, token: SlotToken) -> None:
        """Take a submission slot on behalf of ``token``, parking until one is free.

        Unlike trio's own primitives this does *not* checkpoint when a slot is free at once:
        the dispatcher calls it in a loop and yields when it runs out of ready work (or slots),
        so a burst of ready cells is dispatched in one go instead of one scheduler round trip
        per cell.
        """
        assert token.holds == "none", token
        try:
            self._submission.acquire_on_behalf_of_nowait(token)
        except trio.WouldBlock:
            self._submission_waiters += 1
            try:
                await self._submission.acquire_on_behalf_of(token)
            finally:
                self._submission_waiters -= 1
        token.holds = "submission"
        self._peak_submission = max(self._peak_submission, self._submission.borrowed_tokens)

    async def handoff_to_llm_wait(self, token: SlotToken) -> None:
        """Move ``token`` from the submission pool to the LLM-wait pool. Idempotent.

        Parks (still holding the submission slot) until an LLM-wait slot is free; if cancelled
        while parked, the token keeps its submission slot and ``release`` returns it.
        """
        if token.holds != "submission":
            await trio.lowlevel.checkpoint()
            return
        await self._llm_wait.acquire_on_behalf_of(token)
        self._submission.release_on_behalf_of(token)
        token.holds = "llm_wait"
        self._handoffs += 1
        self._peak_llm_wait = max(self._peak_llm_wait, self._llm_wait.borrowed_tokens)

    def release(self, token: SlotToken) -> None:
        """Return whatever slot ``token`` holds (no-op if none)."""
        if token.holds == "submission":
            self._submission.release_on_behalf_of(token)
        elif token.holds == "llm_wait":
            self._llm_wait.release_on_behalf_of(token)
        token.holds = "none"

    def statistics(self) -> SlotStatistics:
        return SlotStatistics(
            submission_borrowed=self._submission.borrowed_tokens,
            submission_total=int(self._submission.total_tokens),
            llm_wait_borrowed=self._llm_wait.borrowed_tokens,
            llm_wait_total=int(self._llm_wait.total_tokens),
            peak_submission=self._peak_submission,
            peak_llm_wait=self._peak_llm_wait,
            handoffs=self._handoffs,
        )
