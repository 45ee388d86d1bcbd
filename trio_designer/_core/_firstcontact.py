"""Failing fast where nothing can work: judging a provider by its first requests.

A dead ``base_url``, a wrong port, an unknown host, a certificate the client cannot verify, or
an API key the provider rejects: every request of the run would fail the same way, and retrying
cells through salvage rounds until the error-rate gate trips takes many seconds and prints a
wall of identical failures. A check before the run would find these, but it would cost a round
trip before the first real request on every healthy endpoint too. So there is no check: the
first real requests *are* the check. :class:`FirstContact` watches the final outcome of each
request to one provider (after the client's own retries) and says when to stop:

* an HTTP answer other than 401/403 (a success, a 429, a 500, a 404) shows the provider is
  reachable and accepts the credentials: from then on it is **verified**, and nothing here
  ever stops the run for it on those grounds (its later failures are ordinary cell failures);
* a 404 (``not_found``) for a model that has had no other answer yet means the model id or
  the base_url's path is wrong — every request for that model would get the same: **stop**.
  This is judged per model: one model's 404 says nothing of another model on the same
  provider, and a model that was answered once (a 200, a 429, a 500) is never stopped here;
* a request that could not connect (refused, unknown host, TLS handshake, proxy) or whose
  credentials were rejected (401, 403) while the provider is not verified means nothing has
  worked so far and this kind of failure does not heal by itself: **stop**;
* a request with no complete answer within its timeout while the provider is not verified
  counts towards a **silent** provider (it accepts connections and never answers: a load
  balancer whose backends are down, a hung server): the third such timeout **stops** the run.
  One or two prove little (a slow first answer), but every request of the run would wait out
  its whole timeout the same way, and a run of 100 Wide rows at 4 in flight took 4.3 hours of
  60 s timeouts and salvage rounds before the error-rate gate stopped it (hostile review,
  branch hostile21). A provider that has answered anything is never stopped for timeouts;
* any other failure (a broken connection) proves nothing either way and is left to the usual
  retry rules.

So a healthy endpoint pays nothing (no extra request), and a dead one stops the run after its
first request's transport retries (about 1.5 s with the default backoff) or its first 401, a
silent one after its third timeout (one ``timeout`` when three requests went out together).

Pure: no trio, no I/O; one instance per provider, updated in the request's task.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

__all__ = ["SILENT_TIMEOUTS", "FirstContact", "FirstContactStatistics", "Outcome"]

Outcome: TypeAlias = Literal[
    "answered", "rejected", "unreachable", "timed_out", "inconclusive", "not_found"
]
"""A request's final outcome as :class:`FirstContact` sees it: ``answered`` (an HTTP answer
other than 401/403/404), ``not_found`` (404), ``rejected`` (401/403), ``unreachable`` (no
connection after the client's retries), ``timed_out`` (no complete answer within the timeout),
``inconclusive`` (anything else: a broken connection)."""

SILENT_TIMEOUTS = 3
"""Timeouts, with nothing answered, that make a provider silent (the run stops)."""


@attrs.frozen(kw_only=True)
class FirstContactStatistics:
    """What one provider's first contact looks like so far.

    Attributes:
      verified: an answer other than 401/403 has arrived.
      answered: requests answered (any status but 401/403; 404s included).
      rejected: requests answered 401/403.
      unreachable: requests that could not connect.
      timed_out: requests with no complete answer within their timeout.
    """

    verified: bool
    answered: int
    rejected: int
    unreachable: int
    timed_out: int = 0


class FirstContact:
    """One provider's first-contact judgement (see the module docstring)."""

    def __init__(self) -> None:
        self._answered = 0
        self._rejected = 0
        self._unreachable = 0
        self._timed_out = 0
        #: models that had an answer other than 401/403/404 (a 404 for them is ordinary).
        self._found: set[str | None] = set()

    @property
    def verified(self) -> bool:
        """Whether the provider has answered a request without rejecting the credentials."""
        return self._answered > 0

    def record(self, outcome: Outcome, model: str | None = None) -> bool:
        """Count one request's final outcome (for ``model``); ``True`` when the run must stop.

        Invariants: ``True`` for ``rejected``/``unreachable`` only while no request has been
        answered — a provider that ever worked never stops a run on those grounds; ``True``
        for ``timed_out`` only while no request has been answered and from the
        :data:`SILENT_TIMEOUTS`-th timeout on; ``True``
        for ``not_found`` only while ``model`` has had no other answer
        (``tests/test_fail_fast.py::test_a_provider_that_answered_once_is_never_stopped``,
        ``::test_a_404_stops_only_a_model_that_was_never_found``).
        """
        if outcome == "answered":
            self._answered += 1
            self._found.add(model)
        elif outcome == "not_found":
            self._answered += 1
            return model not in self._found
        elif outcome == "rejected":
            self._rejected += 1
        elif outcome == "unreachable":
            self._unreachable += 1
        elif outcome == "timed_out":
            self._timed_out += 1
            return not self.verified and self._timed_out >= SILENT_TIMEOUTS
        return outcome in ("rejected", "unreachable") and not self.verified

    def statistics(self) -> FirstContactStatistics:
        """The counts so far."""
        return FirstContactStatistics(
            verified=self.verified,
            answered=self._answered,
            rejected=self._rejected,
            unreachable=self._unreachable,
            timed_out=self._timed_out,
        )
