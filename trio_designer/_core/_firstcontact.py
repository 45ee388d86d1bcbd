"""Failing fast where nothing can work: judging a provider by its first requests.

A dead ``base_url``, a wrong port, an unknown host, a certificate the client cannot verify, or
an API key the provider rejects: every request of the run would fail the same way, and retrying
cells through salvage rounds until the error-rate gate trips takes many seconds and prints a
wall of identical failures. A check before the run would find these, but it would cost a round
trip before the first real request on every healthy endpoint too. So there is no check: the
first real requests *are* the check. :class:`FirstContact` watches the final outcome of each
request to one provider (after the client's own retries) and says when to stop:

* an HTTP answer other than 401/403 (a success, a 429, a 500, a 404 for a wrong model id) shows
  the provider is reachable and accepts the credentials: from then on it is **verified**, and
  nothing here ever stops the run for it (its later failures are ordinary cell failures);
* a request that could not connect (refused, unknown host, TLS handshake, proxy) or whose
  credentials were rejected (401, 403) while the provider is not verified means nothing has
  worked so far and this kind of failure does not heal by itself: **stop**;
* any other failure (a timeout, a broken connection) proves nothing either way and is left to the
  usual retry rules.

So a healthy endpoint pays nothing (no extra request), and a dead one stops the run after its
first request's transport retries (about 1.5 s with the default backoff) or its first 401.

Pure: no trio, no I/O; one instance per provider, updated in the request's task.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

__all__ = ["FirstContact", "FirstContactStatistics", "Outcome"]

Outcome: TypeAlias = Literal["answered", "rejected", "unreachable", "inconclusive"]
"""A request's final outcome as :class:`FirstContact` sees it: ``answered`` (an HTTP answer
other than 401/403), ``rejected`` (401/403), ``unreachable`` (no connection after the client's
retries), ``inconclusive`` (anything else: a timeout, a broken connection)."""


@attrs.frozen(kw_only=True)
class FirstContactStatistics:
    """What one provider's first contact looks like so far.

    Attributes:
      verified: an answer other than 401/403 has arrived.
      answered: requests answered (any status but 401/403).
      rejected: requests answered 401/403.
      unreachable: requests that could not connect.
    """

    verified: bool
    answered: int
    rejected: int
    unreachable: int


class FirstContact:
    """One provider's first-contact judgement (see the module docstring)."""

    def __init__(self) -> None:
        self._answered = 0
        self._rejected = 0
        self._unreachable = 0

    @property
    def verified(self) -> bool:
        """Whether the provider has answered a request without rejecting the credentials."""
        return self._answered > 0

    def record(self, outcome: Outcome) -> bool:
        """Count one request's final outcome; ``True`` when the run must stop.

        Invariant: ``True`` only while no request has been ``answered`` — a provider that ever
        worked never stops a run here (``tests/test_fail_fast.py::
        test_a_provider_that_answered_once_is_never_stopped``).
        """
        if outcome == "answered":
            self._answered += 1
        elif outcome == "rejected":
            self._rejected += 1
        elif outcome == "unreachable":
            self._unreachable += 1
        return outcome in ("rejected", "unreachable") and not self.verified

    def statistics(self) -> FirstContactStatistics:
        """The counts so far."""
        return FirstContactStatistics(
            verified=self.verified,
            answered=self._answered,
            rejected=self._rejected,
            unreachable=self._unreachable,
        )
