"""Adaptive per-model concurrency limits: the 429 rule and the controller, no trio, no I/O.

One :class:`AimdController` per model endpoint answers three questions, with ``now`` as an
argument: may another request start (:meth:`~AimdController.can_admit`)? what does this outcome
change (the ``record_*`` methods)? and what is the state (the read-only properties)? The trio
driver (``trio_designer/models/_limiter.py``) only parks waiters, wakes them, sleeps through
cooldowns and logs the :class:`~trio_designer._core._limits.LimitChange` records returned here.

Design note
-----------
**Two signals.** A hosted API says "too much" with a 429; a self-hosted GPU server (vLLM, NIM,
TGI) never does: requests beyond what it batches queue inside the server, and the only symptom is
latency growing with our concurrency. So the controller listens to both: the 429 rule lives
here, the latency signal in :mod:`trio_designer._core._latency` (:class:`LatencySignal`), and
this controller owns the one limit both act on.

*429 (the reference's rule).* Start at the ceiling. On a 429, cut the limit to
``floor(base × decrease_factor)`` (at least 1) and admit nothing for ``Retry-After`` seconds
(``cooldown`` when the server gave none). Only the first 429 of a burst cuts: every admission
records the *rate epoch* it was admitted in, a cut starts a new epoch, and a 429 from an older
epoch only extends the cooldown — it reports on concurrency we already gave up. After
``successes_per_increase`` successes (outside cooldowns) the limit grows by one, up to the
ceiling, unless the latency signal says a queue is building.

**Why these numbers.** ``decrease_factor=0.75``, ``cooldown=2.0`` and
``successes_per_increase=25`` are the reference's, so hosted-API behaviour is the same. 25 also
keeps additive increase slower than the feedback: at limit L one step takes ``25 / L`` round
trips.

**Cuts are taken from the concurrency actually used.** A limit of 256 with 64 requests in
flight says nothing about 256: the base of a 429 cut is ``min(limit, peak in flight since the
limit last changed)`` (RFC 5681 sets ssthresh from FlightSize, not cwnd, for the same reason).
When the limiter is saturated, as it is when a 429 arrives, this is exactly the reference rule.

Prior art: AIMD (Chiu and Jain 1989; TCP congestion avoidance); the reference engine's
``ThrottleManager`` and request-admission controller (cascade dampening by admission limit).

Trade-offs. Against a hard concurrency cap the 429 rule saw-tooths between 0.75 L and L
(reference behaviour; ~80 % of the cap's throughput in simulation with a 1 s Retry-After).

Complexity: O(1) per event, plus what the latency signal costs (see its module).

Open questions:

* XX: the limit also grows while the application does not use it (reference behaviour: recovery
  reaches the ceiling even when idle). RFC 7661 would hold it; a later burst is cut by the
  flight-size rule above instead.
* XX: growth after a 429 could be concave towards the limit that drew it (TCP CUBIC) to shorten
  the saw-tooth against a hard cap.

Invariants (checked by ``tests/test_aimd.py::AimdMachine``):

* ``1 <= admission cap <= limit <= ceiling`` (``limit_within_bounds``);
* ``in_flight`` counts exactly the admissions not yet recorded (``in_flight_is_what_we_hold``);
* nothing is admitted while ``in_flight >= admission cap`` or ``now < cooldown_until``
  (``admissions_respect_the_cap``, and the ``admit`` rule); the cooldown end never moves
  backwards (``cooldown_never_moves_backwards``);
* at most one 429 cut per rate epoch, of exactly ``max(1, floor(min(limit, peak) × factor))``
  (``one_cut_per_burst``, the ``rate_limited`` rule);
* a latency cut ends a probe (it is returned by the report that closes the probe's last
  window), goes down, and never below the highest probe cap that measured the baseline, which
  is at least 1 and at most half the concurrency the cut started from; an increase is +1
  (``check_change``);
* liveness: with a constant latency and no 429, successes bring the limit back to the ceiling
  (``teardown``).
"""

from __future__ import annotations

import math

from ._latency import MIN_LATENCY, LatencySignal
from ._limits import DEFAULT_POLICY, Admission, LimitChange, Policy

__all__ = ["AimdController"]


class AimdController:
    """The adaptive limit of one model endpoint (see the module docstring for the algorithm).

    Usage, as the driver does it::

        ctl = AimdController(ceiling=16)
        if ctl.can_admit(now):
            admission = ctl.admit(now)
            ...                                   # send the request
            change = ctl.record_success(admission, later)   # or record_rate_limited / ...
            if change is not None:
                log(change.describe())

    Every admission must be handed back to exactly one ``record_*`` method; every ``record_*``
    method may return a :class:`~trio_designer._core._limits.LimitChange`. When the limit
    shrinks below ``in_flight``, the requests already admitted finish normally;
    :meth:`can_admit` stays false until enough of them are released.

    Args:
      ceiling: the largest limit, and the starting one (the model's ``max_parallel_requests``).
      policy: the tunables.

    Raises:
      ValueError: if ``ceiling < 1``.
    """

    def __init__(self, ceiling: int, policy: Policy = DEFAULT_POLICY) -> None:
        if ceiling < 1:
            raise ValueError(f"an adaptive limit needs a ceiling of at least 1, got {ceiling}")
        self._policy = policy
        self._ceiling = ceiling
        # Invariant: 1 <= _limit <= _ceiling.
        self._limit = ceiling
        # Invariant: _in_flight == len(_outstanding).
        self._in_flight = 0
        self._outstanding: set[int] = set()
        self._next_serial = 0
        # Invariant: nothing is admitted while now < _cooldown_until; it never moves backwards.
        self._cooldown_until = -math.inf
        # Invariant: at most one 429 cut per value of _rate_epoch (it grows with every cut).
        self._rate_epoch = 0
        self._peak = 0  # most requests in flight since the limit last changed
        self._streak = 0
        self._successes = 0
        self._failures = 0
        self._rate_limited = 0
        self._latency = LatencySignal(policy) if policy.latency_signal else None

    # -- read-only state --------------------------------------------------------------------
    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def ceiling(self) -> int:
        return self._ceiling

    @property
    def limit(self) -> int:
        """The current adaptive limit, ``1 <= limit <= ceiling``."""
        return self._limit

    @property
    def admission_cap(self) -> int:
        """The limit, or the probe's lower cap while a baseline probe runs."""
        cap = None if self._latency is None else self._latency.cap
        return self._limit if cap is None else min(cap, self._limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def probing(self) -> bool:
        """Whether a baseline probe is holding admissions below the limit."""
        return self._latency is not None and self._latency.probing

    @property
    def cooldown_until(self) -> float:
        """No admission before this time (``-inf`` when no 429 was ever seen)."""
        return self._cooldown_until

    @property
    def rate_epoch(self) -> int:
        """How many 429 bursts have cut (or tried to cut) the limit."""
        return self._rate_epoch

    @property
    def successes(self) -> int:
        return self._successes

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def rate_limited(self) -> int:
        return self._rate_limited

    @property
    def baseline_latency(self) -> float | None:
        """The unloaded latency in seconds, probed or provisional (see
        :attr:`baseline_probed`); ``None`` before the first window closes."""
        return None if self._latency is None else self._latency.baseline_latency

    @property
    def baseline_probed(self) -> bool:
        """Whether the baseline was measured by a probe, rather than adopted provisionally from
        regular windows (which may have included a queue)."""
        return self._latency is not None and self._latency.baseline_probed

    @property
    def recent_latency(self) -> float | None:
        """The trimmed mean latency of the last regular (non-probe) window, in seconds."""
        return None if self._latency is None else self._latency.recent_latency

    def cooldown_remaining(self, now: float) -> float:
        """Seconds until admissions may resume after a 429 (0 when not cooling down)."""
        return max(0.0, self._cooldown_until - now)

    def can_admit(self, now: float) -> bool:
        """Whether :meth:`admit` may be called now."""
        return now >= self._cooldown_until and self._in_flight < self.admission_cap

    # -- events ------------------------------------------------------------------------------
    def admit(self, now: float) -> Admission:
        """Count one more request in flight and return its ticket.

        Raises:
          RuntimeError: if :meth:`can_admit` is false (full, probing, or cooling down).
        """
        if not self.can_admit(now):
            raise RuntimeError(
                "AimdController.admit() was called while admission is closed (limit reached or "
                "cooling down); check can_admit(now) first."
            )
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        serial = self._next_serial
        self._next_serial += 1
        self._outstanding.add(serial)
        window = None
        if self._latency is not None:
            window = self._latency.admitted(serial, now, self._in_flight)
        return Admission(serial=serial, admitted_at=now, rate_epoch=self._rate_epoch, window=window)

    def record_success(self, admission: Admission, now: float) -> LimitChange | None:
        """The request succeeded; its latency is ``now - admission.admitted_at``.

        Raises:
          RuntimeError: if this admission was already recorded.
        """
        latency = max(now - admission.admitted_at, MIN_LATENCY)
        self._release(admission, latency)
        self._successes += 1
        if now >= self._cooldown_until:
            self._streak += 1
        change = self._after_release(now)
        return change if change is not None else self._maybe_increase(now)

    def record_rate_limited(
        self, admission: Admission, now: float, retry_after: float | None
    ) -> LimitChange | None:
        """The endpoint answered 429. Cools down for ``retry_after`` seconds (the policy's
        cooldown when it is ``None``, not positive or not finite) and, for the first 429 of a
        burst, cuts the limit.

        Raises:
          RuntimeError: if this admission was already recorded.
        """
        self._release(admission, None)
        self._rate_limited += 1
        self._streak = 0
        cooldown = self._cooldown_for(retry_after)
        self._cooldown_until = max(self._cooldown_until, now + cooldown)
        if admission.rate_epoch != self._rate_epoch:
            return self._after_release(now)  # this burst has already cut
        self._rate_epoch += 1
        old = self._limit
        new = max(1, math.floor(min(self._limit, self._peak) * self._policy.decrease_factor))
        self._set_limit(new, now, settle=True)  # admissions resume in a burst after the cooldown
        if new == old:
            return None
        return LimitChange(old=old, new=new, reason="rate_limited", at=now, cooldown=cooldown)

    def record_failure(self, admission: Admission, now: float) -> LimitChange | None:
        """Another error (timeout, 5xx, connection): released and counted, no AIMD signal.

        Returns a change only if this release completed a latency window that decided one.

        Raises:
          RuntimeError: if this admission was already recorded.
        """
        self._release(admission, None)
        self._failures += 1
        return self._after_release(now)

    def record_abandoned(self, admission: Admission, now: float) -> LimitChange | None:
        """Released without an outcome (the caller left early, e.g. cancelled): not counted.

        Raises:
          RuntimeError: if this admission was already recorded.
        """
        self._release(admission, None)
        return self._after_release(now)

    # -- internals ---------------------------------------------------------------------------
    def _cooldown_for(self, retry_after: float | None) -> float:
        if retry_after is None or not math.isfinite(retry_after) or retry_after <= 0:
            return self._policy.cooldown
        return retry_after

    def _release(self, admission: Admission, latency: float | None) -> None:
        if admission.serial not in self._outstanding:
            raise RuntimeError(
                f"admission #{admission.serial} was already released (or was not admitted by "
                "this controller); report each request's outcome exactly once."
            )
        self._outstanding.remove(admission.serial)
        self._in_flight -= 1
        if self._latency is not None:
            self._latency.released(admission, latency)

    def _set_limit(self, new: int, now: float, *, settle: bool = False) -> None:
        """Apply a new limit (or re-apply the old one after a 429): a fresh measurement."""
        self._limit = new
        self._peak = self._in_flight
        self._streak = 0
        if self._latency is not None:
            self._latency.limit_changed(now, settle=settle)

    def _maybe_increase(self, now: float) -> LimitChange | None:
        # No cooldown check needed: a 429 resets the streak, and successes reported during a
        # cooldown do not extend it.
        steps = self._policy.successes_per_increase
        if self._streak < steps:
            return None
        if self._limit >= self._ceiling:
            self._streak = 0
            return None
        if self._latency is not None and not self._latency.allows_growth:
            return None  # keep the streak: grow as soon as a window says latency is fine
        old = self._limit
        self._set_limit(old + 1, now)
        return LimitChange(old=old, new=old + 1, reason="increase", at=now, successes=steps)

    def _after_release(self, now: float) -> LimitChange | None:
        if self._latency is None:
            return None
        change = self._latency.decide(now, self._limit)
        if change is not None:
            # The cap jumps from the probe's up to the new limit: settle before judging.
            self._set_limit(change.new, now, settle=True)
        return change

    def __repr__(self) -> str:
        return (
            f"<AimdController limit={self._limit}/{self._ceiling} in_flight={self._in_flight} "
            f"cap={self.admission_cap}>"
        )
