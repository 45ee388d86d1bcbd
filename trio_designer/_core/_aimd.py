"""Adaptive per-model concurrency limits: the AIMD decisions, no trio, no I/O.

One :class:`AimdController` per model endpoint answers three questions, with ``now`` as an
argument: may another request start (:meth:`~AimdController.can_admit`)? what does this outcome
change (the ``record_*`` methods)? and what is the state (the read-only properties)? The trio
driver (``trio_designer/models/_limiter.py``) only parks waiters, wakes them, sleeps through
cooldowns and logs the :class:`LimitChange` records returned here.

Design note
-----------
**Two signals.** A hosted API says "too much" with a 429; a self-hosted GPU server (vLLM, NIM,
TGI) never does: requests beyond what it batches queue inside the server, and the only symptom is
latency growing with our concurrency. So the controller listens to both.

*429 (the reference's rule).* Start at the ceiling. On a 429, cut the limit to
``floor(base × decrease_factor)`` (at least 1) and admit nothing for ``Retry-After`` seconds
(``cooldown`` when the server gave none). Only the first 429 of a burst cuts: every admission
records the *rate epoch* it was admitted in, a cut starts a new epoch, and a 429 from an older
epoch only extends the cooldown — it reports on concurrency we already gave up. After
``successes_per_increase`` successes (outside cooldowns) the limit grows by one, up to the
ceiling.

*Latency (beyond the reference).* Three pieces:

1. **Measurement windows.** A window is a *cohort*: the first ``latency_samples`` requests
   admitted after it opens; it closes when all of them have been released, and its statistic is
   their trimmed mean (the fastest and slowest eighth left out). Cohorts, not "the next n
   completions": right after a burst of admissions the first completions are the fast ones, and
   a completion-ordered window would read an unloaded latency off a loaded system. The mean, not
   the median: Little's law is about means, and with 20 requests on a server that runs 16, most
   requests never queue, so the median does not move. A window measures one limit; any limit
   change abandons the open one.
2. **Baseline by probing**, the way BBR's ProbeRTT re-measures the minimum RTT: halve the
   admission cap for one window, and again while halving lowers latency by more than
   ``latency_hold``; stop when it no longer helps, when the cap is 1, or as soon as a window is
   back within ``latency_hold`` of the current baseline (a routine probe is then one window).
   The first probe window is always followed by a second, so halving is judged between two
   probe windows and never against the window that started the probe, which may be a transient
   (the start-up burst). The baseline is the probe's last window. Probes run when there is no
   baseline, every ``probe_interval`` windows, when a window comes in well *below* the baseline
   (the endpoint got faster), and when a window looks overloaded.
3. **Decisions.** Growth needs the windows at the current limit (the last four, pooled) to be
   within ``latency_hold`` of the baseline: above it a queue is building, and the limit holds.
   A window above ``latency_tolerance`` × baseline *and* beyond noise (``latency_confidence``
   standard errors) starts a probe; if the window still looks overloaded against the fresh
   baseline, the **next** window must confirm it before the limit is cut — the first one was
   picked because it was high, so its own ratio is biased upwards. The cut goes to where
   Little's law puts latency at the hold level: ``L × latency_hold × baseline / recent`` (above
   its knee, a FIFO or processor-sharing server's latency is ``L / C`` times the unloaded one),
   keeping at least ``latency_decrease_floor × L``. Probing before every cut means an endpoint
   that became slower at every concurrency (longer prompts) is re-baselined, not throttled to 1.

Start-up: the limit starts at the ceiling (say 256) while the server runs 16. The first window
has no baseline, so a probe halves 64 → 32 → 16 → 8 in flight until latency stops falling; this
finds the unloaded latency even on a server where *every* early request queued (processor
sharing). Two confirmed cuts (each bounded by the floor) bring the limit to the knee's hold
level. On the in-process GPU model of ``tests/test_limiter.py`` (16 slots × 0.1 s, 64 clients,
ceiling 256) that takes about five virtual seconds; afterwards the endpoint runs at ~99 % of its
throughput with latency ~1.2–1.35× baseline. With lognormal service times (σ 0.5–0.8) the
simulation keeps 85–100 % of the throughput at 1.1–1.5× latency.

**Why these numbers.** ``decrease_factor=0.75``, ``cooldown=2.0`` and
``successes_per_increase=25`` are the reference's, so hosted-API behaviour is the same. 25 also
keeps additive increase slower than the feedback: at limit L one step takes ``25 / L`` round
trips. ``latency_tolerance=1.5``: LLM latency is noisy (lognormal σ 0.3–0.8 from output length
alone), so 1.5× is "well above"; at the knee it means a queue half as deep as the server's
batch. ``latency_hold=1.2``: a fifth of a batch waiting means a queue has started; noise above
it only pauses growth, which costs little. ``latency_samples=32``: in simulation 16 let a σ=0.8
endpoint drift to 2× before the noise test let it cut. ``latency_confidence=2``: a cut needs two
independent windows (trigger and confirmation) beyond 2 standard errors, so a false cut is a
~1-in-2000 event per trigger, while 3 let very noisy endpoints sit at 2× baseline.
``latency_decrease_floor=0.5`` bounds the damage of one bad reading, as Netflix's Gradient
limiter bounds its gradient. ``probe_interval=100``: a routine probe is one window at half
concurrency, under 1 % of throughput at this rate.

**Cuts are taken from the concurrency actually used.** A limit of 256 with 64 requests in
flight says nothing about 256: the base of a 429 cut is ``min(limit, peak in flight since the
limit last changed)``, and a latency cut starts from the peak in flight of the window that
measured it (RFC 5681 sets ssthresh from FlightSize, not cwnd, for the same reason). When the
limiter is saturated, as it is when a 429 arrives, this is exactly the reference rule.

Prior art: AIMD (Chiu and Jain 1989; TCP congestion avoidance); the reference engine's
``ThrottleManager`` and request-admission controller (cascade dampening by admission limit);
TCP Vegas (Brakmo and Peterson 1994: back off when ``L × (1 − base/rtt)`` requests are queued);
BBR (windowed minimum RTT, ProbeRTT); Netflix ``concurrency-limits`` (Vegas and Gradient limiters
for RPC servers); CoDel (act on a standing queue, not on a burst).

Trade-offs. Probing gives away throughput to learn the baseline; without it a baseline measured
under load can never be corrected, and a baseline allowed to drift up with load ratchets: each
window lets the limit grow a little more. Confirmation and cohorts delay a cut by about three
windows; decisions are per window, so a slow endpoint (10 s calls) adapts in minutes, not
seconds — 429s still act at once. The steady state sits just past the knee (latency between 1.0
and ~1.3× baseline), trading a little latency for full throughput. Against a hard concurrency
cap the 429 rule saw-tooths between 0.75 L and L (reference behaviour; ~70–80 % of the cap's
throughput in simulation with a 2 s cooldown).

Complexity: O(1) per event, plus O(``latency_samples`` log ``latency_samples``) when a window
closes.

Open questions:

* XX: one limiter serves several columns; if their output lengths differ, latency is a mixture
  and the baseline is the mixture's. A cost-normalised sample (latency per output token) would
  be cleaner, but ``Permit.success()`` carries no token count yet.
* XX: the limit also grows while the application does not use it (reference behaviour: recovery
  reaches the ceiling even when idle). RFC 7661 would hold it; a later burst is cut by the
  flight-size rule above instead.
* XX: growth after a 429 could be concave towards the limit that drew it (TCP CUBIC) to shorten
  the saw-tooth against a hard cap.
* XX: several processes sharing one GPU each see only their share of the queue; each cuts by
  Little's law on its own share, which converges, but one client's probes are blurred by the
  others' load.

Invariants (checked by ``tests/test_aimd.py::AimdMachine``):

* ``1 <= admission cap <= limit <= ceiling`` (``limit_within_bounds``);
* ``in_flight`` counts exactly the admissions not yet recorded (``in_flight_is_what_we_hold``);
* nothing is admitted while ``in_flight >= admission cap`` or ``now < cooldown_until``
  (``admissions_respect_the_cap``, and the ``admit`` rule); the cooldown end never moves
  backwards (``cooldown_never_moves_backwards``);
* at most one 429 cut per rate epoch, of exactly ``max(1, floor(min(limit, peak) × factor))``
  (``one_cut_per_burst``, the ``rate_limited`` rule);
* a latency cut goes down, never below 1 nor below ``latency_decrease_floor`` of the
  concurrency it measured; an increase is +1 (``check_change``);
* liveness: with a constant latency and no 429, successes bring the limit back to the ceiling
  (``teardown``).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from typing import Literal

import attrs

__all__ = [
    "DEFAULT_POLICY",
    "Admission",
    "AimdController",
    "ChangeReason",
    "LatencySummary",
    "LimitChange",
    "Policy",
    "summarize_latencies",
]

ChangeReason = Literal["rate_limited", "latency", "increase"]
"""Why a limit changed: a 429 cut, a latency cut, or additive increase."""

_Verdict = Literal["pending", "ok", "hold"]

# A success reported in the same instant as its admission (possible in virtual time) has zero
# latency; latencies are clamped to this so that ratios and logarithms stay finite.
_MIN_LATENCY = 1e-6

# How many of the latest regular windows at the current limit the growth verdict pools: one
# window's mix of queued and unqueued requests varies, and a single lucky window must not let
# the limit creep upwards through the hold band.
_POOLED_WINDOWS = 4

# The fraction of a cohort's fastest and of its slowest latencies left out of its mean.
_TRIM = 0.125


def _in_open_unit_interval(
    _instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"Policy.{attribute.name} must be between 0 and 1 (exclusive), got {value}."
        )


@attrs.frozen(kw_only=True)
class Policy:
    """The tunables of one adaptive limiter, with the defaults argued in the module docstring.

    Attributes:
      decrease_factor: a 429 cuts the limit to ``floor(base × decrease_factor)``, at least 1.
      successes_per_increase: successes (outside cooldowns) per +1 step of the limit.
      cooldown: seconds without admissions after a 429 that carried no usable ``Retry-After``.
      latency_signal: listen to latency at all; turn it off for endpoints that only ever signal
        with 429s and whose latency you do not want to react to (no probes are run then).
      latency_tolerance: recent / baseline latency above which the limit is cut.
      latency_hold: recent / baseline latency above which the limit stops growing; also how
        much a probe step must lower latency for the probe to halve again.
      latency_samples: requests per latency cohort (one decision per cohort).
      latency_confidence: a latency cut also needs ``ln(recent / baseline)`` above this many
        standard errors; ``0`` trusts the ratio alone.
      latency_decrease_floor: a latency cut keeps at least this fraction of the concurrency.
      probe_interval: regular windows between two baseline probes.

    Raises:
      ValueError: when a value is out of range, or ``latency_tolerance < latency_hold``.
    """

    decrease_factor: float = attrs.field(default=0.75, validator=_in_open_unit_interval)
    successes_per_increase: int = attrs.field(default=25, validator=attrs.validators.ge(1))
    cooldown: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
    latency_signal: bool = True
    latency_tolerance: float = attrs.field(default=1.5, validator=attrs.validators.ge(1.0))
    latency_hold: float = attrs.field(default=1.2, validator=attrs.validators.ge(1.0))
    latency_samples: int = attrs.field(default=32, validator=attrs.validators.ge(4))
    latency_confidence: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
    latency_decrease_floor: float = attrs.field(default=0.5, validator=_in_open_unit_interval)
    probe_interval: int = attrs.field(default=100, validator=attrs.validators.ge(1))

    def __attrs_post_init__(self) -> None:
        if self.latency_tolerance < self.latency_hold:
            raise ValueError(
                f"Policy.latency_tolerance ({self.latency_tolerance}) must be at least "
                f"Policy.latency_hold ({self.latency_hold}): the limit stops growing before it "
                "is cut, never after."
            )


DEFAULT_POLICY = Policy()
"""The policy used when none is given."""


@attrs.frozen(kw_only=True)
class Admission:
    """One admitted request, as the controller remembers it; hand it back to exactly one
    ``record_*`` call."""

    serial: int
    """Unique per controller, in admission order."""
    admitted_at: float
    """The ``now`` of the admission; a success's latency is measured from here."""
    rate_epoch: int
    """The rate epoch at admission; a 429 cuts only if no cut happened since."""
    window: int | None
    """The latency window this request samples for, or ``None`` if it is not in a cohort."""


@attrs.frozen(kw_only=True)
class LatencySummary:
    """The typical latency of one cohort, with its uncertainty."""

    mean: float
    """Trimmed mean latency in seconds (the fastest and slowest eighth dropped)."""
    rel_se: float
    """Standard error of the trimmed mean, relative to it (≈ standard error of its log)."""
    samples: int
    """How many latencies the summary is built from."""


def summarize_latencies(latencies: Sequence[float]) -> LatencySummary:
    """Trimmed mean and its relative standard error (Tukey–McLaughlin, winsorized variance).

    The mean, not the median, because Little's law is about means: when part of a batch queues
    (20 requests on a server that runs 16), the median still shows the unqueued latency while
    the mean grows with the queue. Trimmed, because one 30-second generation among 0.1-second
    ones must not read as a queue.

    Raises:
      ValueError: if ``latencies`` is empty.
    """
    if not latencies:
        raise ValueError("summarize_latencies needs at least one latency")
    xs = sorted(max(x, _MIN_LATENCY) for x in latencies)
    n = len(xs)
    g = int(n * _TRIM)
    kept = xs[g : n - g]
    mean = statistics.fmean(kept)
    winsorized = [xs[g]] * g + kept + [xs[n - g - 1]] * g
    spread = statistics.stdev(winsorized) if n > 1 else 0.0
    se = spread / ((1 - 2 * g / n) * math.sqrt(n))
    return LatencySummary(mean=mean, rel_se=se / mean, samples=n)


def _pooled(summaries: Sequence[LatencySummary]) -> LatencySummary:
    """Several cohorts' summaries as one (weighted by their sizes)."""
    n = sum(x.samples for x in summaries)
    mean = math.fsum(x.samples * x.mean for x in summaries) / n
    se = math.sqrt(math.fsum((x.samples * x.rel_se * x.mean) ** 2 for x in summaries)) / n
    return LatencySummary(mean=mean, rel_se=se / mean, samples=n)


def _exceeds(high: LatencySummary, low: LatencySummary, factor: float, z: float) -> bool:
    """``high`` is more than ``factor`` times ``low``, and by more than ``z`` standard errors."""
    ratio = high.mean / low.mean
    return ratio > factor and math.log(ratio) > z * math.hypot(high.rel_se, low.rel_se)


@attrs.frozen(kw_only=True)
class LimitChange:
    """A record of one limit change, for the driver to log and report."""

    old: int
    """The limit before."""
    new: int
    """The limit after."""
    reason: ChangeReason
    """What caused it."""
    at: float
    """The ``now`` of the event that caused it."""
    cooldown: float = 0.0
    """For ``rate_limited``: the cooldown this 429 asked for, in seconds."""
    recent_latency: float | None = None
    """For ``latency``: the mean latency measured at the old limit."""
    baseline_latency: float | None = None
    """For ``latency``: the baseline it was compared with."""
    concurrency: int = 0
    """For ``latency``: the peak number in flight while ``recent_latency`` was measured."""
    successes: int = 0
    """For ``increase``: the successes that earned the step."""

    def describe(self) -> str:
        """Why, in words: ``"rate limited; cooling down 2.0 s"``."""
        if self.reason == "rate_limited":
            return f"rate limited; cooling down {self.cooldown:.1f} s"
        if self.reason == "latency":
            recent, baseline = self.recent_latency or 0.0, self.baseline_latency or 1.0
            return (
                f"latency {recent:.3g} s at {self.concurrency} in flight is "
                f"{recent / baseline:.1f}x the {baseline:.3g} s baseline"
            )
        return f"{self.successes} successes"


@attrs.define(eq=False)
class _Window:
    """One latency cohort: the first ``size`` requests admitted after it opened."""

    serial: int
    size: int
    cap: int | None  # the probe's admission cap, or None for a regular window
    # A settling window is measured but not judged: it follows a jump of the admission cap (a
    # probe's end, a cooldown's end), when its cohort is admitted in one burst and sees a queue
    # that is still building up to the new level.
    settle: bool = False
    admitted: int = 0
    # Invariant: outstanding == cohort members admitted and not yet released.
    outstanding: int = 0
    peak_in_flight: int = 0
    samples: list[float] = attrs.Factory(list)

    @property
    def closed(self) -> bool:
        return self.admitted >= self.size and self.outstanding == 0


@attrs.define(eq=False)
class _Probe:
    """A baseline probe in progress: halving the admission cap window by window."""

    reference: LatencySummary  # the regular window that started the probe
    concurrency: int  # peak in flight while ``reference`` was measured
    previous: LatencySummary | None = None  # the last probe window, to see if halving helps


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
    method may return a :class:`LimitChange`. When the limit shrinks below ``in_flight``, the
    requests already admitted finish normally; :meth:`can_admit` stays false until enough of
    them are released.

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
        # Latency state. Invariant: _window.cap is not None iff a probe is running.
        self._window = _Window(serial=0, size=policy.latency_samples, cap=None)
        self._probe: _Probe | None = None
        self._verdict: _Verdict = "pending"
        self._baseline: LatencySummary | None = None
        # The latest regular windows measured at the current limit (cleared when it changes).
        self._at_limit: deque[LatencySummary] = deque(maxlen=_POOLED_WINDOWS)
        self._recent: LatencySummary | None = None
        self._windows_since_probe = 0
        # Set when a probe found the window that started it overloaded: the next regular
        # window decides whether to cut.
        self._confirming = False

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
        cap = self._window.cap
        return self._limit if cap is None else min(cap, self._limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def probing(self) -> bool:
        """Whether a baseline probe is holding admissions below the limit."""
        return self._probe is not None

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
        """The unloaded latency measured by the last probe, in seconds."""
        return None if self._baseline is None else self._baseline.mean

    @property
    def recent_latency(self) -> float | None:
        """The trimmed mean latency of the last regular (non-probe) window, in seconds."""
        return None if self._recent is None else self._recent.mean

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
        window = self._window
        member: int | None = None
        window.peak_in_flight = max(window.peak_in_flight, self._in_flight)
        if self._policy.latency_signal and window.admitted < window.size:
            window.admitted += 1
            window.outstanding += 1
            member = window.serial
        return Admission(serial=serial, admitted_at=now, rate_epoch=self._rate_epoch, window=member)

    def record_success(self, admission: Admission, now: float) -> LimitChange | None:
        """The request succeeded; its latency is ``now - admission.admitted_at``.

        Raises:
          RuntimeError: if this admission was already recorded.
        """
        self._release(admission, max(now - admission.admitted_at, _MIN_LATENCY))
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
        self._set_limit(new, settle=True)  # admissions resume in a burst after the cooldown
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
        window = self._window
        if admission.window == window.serial:
            window.outstanding -= 1
            if latency is not None:
                window.samples.append(latency)

    def _set_limit(self, new: int, *, settle: bool = False) -> None:
        """Apply a new limit (or re-apply the old one after a 429): a fresh measurement."""
        self._limit = new
        self._peak = self._in_flight
        self._streak = 0
        self._probe = None
        self._confirming = False
        self._at_limit.clear()
        self._verdict = "pending"
        self._open_window(None, settle=settle)

    def _open_window(self, cap: int | None, *, settle: bool = False) -> None:
        self._window = _Window(
            serial=self._window.serial + 1, size=self._window.size, cap=cap, settle=settle
        )

    def _maybe_increase(self, now: float) -> LimitChange | None:
        # No cooldown check needed: a 429 resets the streak, and successes reported during a
        # cooldown do not extend it.
        steps = self._policy.successes_per_increase
        if self._streak < steps:
            return None
        if self._limit >= self._ceiling:
            self._streak = 0
            return None
        if self._policy.latency_signal and self._verdict != "ok":
            return None  # keep the streak: grow as soon as a window says latency is fine
        old = self._limit
        self._set_limit(old + 1)
        return LimitChange(old=old, new=old + 1, reason="increase", at=now, successes=steps)

    def _after_release(self, now: float) -> LimitChange | None:
        window = self._window
        if not (self._policy.latency_signal and window.closed):
            return None
        if window.settle:
            self._open_window(window.cap)
            return None
        summary = None
        if len(window.samples) >= max(3, window.size // 2):
            summary = summarize_latencies(window.samples)
        if window.cap is not None:
            self._probe_step(summary, window.cap)
            return None
        return self._judge(summary, window.peak_in_flight, now)

    def _judge(
        self, summary: LatencySummary | None, concurrency: int, now: float
    ) -> LimitChange | None:
        """A regular window closed: cut (if it confirms a suspicion), start a probe, or set the
        verdict for growth."""
        confirming, self._confirming = self._confirming, False
        if summary is None:  # too many failures to say anything
            self._open_window(None)
            return None
        self._recent = summary
        self._at_limit.append(summary)
        baseline = self._baseline
        p = self._policy
        overloaded = baseline is not None and _exceeds(
            summary, baseline, p.latency_tolerance, self._confidence
        )
        if confirming and overloaded:
            assert baseline is not None
            return self._latency_cut(summary, baseline, concurrency, now)
        if not confirming and (
            baseline is None
            or overloaded
            or self._windows_since_probe >= p.probe_interval
            or _exceeds(baseline, summary, p.latency_hold, self._confidence)
        ):
            self._probe = _Probe(reference=summary, concurrency=concurrency)
            self._verdict = "pending"
            self._open_window(max(1, concurrency // 2))
            return None
        assert baseline is not None
        self._windows_since_probe += 1
        self._verdict = self._verdict_for(baseline)
        self._open_window(None)
        return None

    def _latency_cut(
        self, recent: LatencySummary, baseline: LatencySummary, concurrency: int, now: float
    ) -> LimitChange | None:
        """Cut to where Little's law puts latency at ``latency_hold`` × baseline."""
        p = self._policy
        keep = max(p.latency_hold * baseline.mean / recent.mean, p.latency_decrease_floor)
        new = max(1, math.floor(concurrency * keep))
        if new >= self._limit:
            self._verdict = "hold"
            self._open_window(None)
            return None
        old = self._limit
        self._set_limit(new)
        return LimitChange(
            old=old,
            new=new,
            reason="latency",
            at=now,
            recent_latency=recent.mean,
            baseline_latency=baseline.mean,
            concurrency=concurrency,
        )

    def _probe_step(self, summary: LatencySummary | None, cap: int) -> None:
        """A probe window closed: halve again while halving still lowers latency."""
        probe = self._probe
        assert probe is not None  # a window with a cap exists only during a probe
        if summary is None:  # too many failures to measure: give up, keep the old baseline
            self._probe = None
            self._verdict = "pending"
            self._open_window(None)
            return
        if cap > 1 and self._keep_halving(probe.previous, summary):
            probe.previous = summary
            self._open_window(max(1, cap // 2))
            return
        self._finish_probe(probe, summary)

    def _keep_halving(self, previous: LatencySummary | None, latest: LatencySummary) -> bool:
        """Whether the probe should halve the cap once more.

        * A window within ``latency_hold`` of the current baseline has found it again: stop
          (the common case, which makes a routine probe one window long).
        * Otherwise the first probe window is always followed by a second: the regular window
          that started the probe may be a transient (right after start-up the early requests of
          a burst see a queue that is still building), so halving is judged only between two
          probe windows.
        * Then: halve again while halving lowers latency by more than ``latency_hold``.
        """
        hold = self._policy.latency_hold
        if self._baseline is not None and latest.mean <= hold * self._baseline.mean:
            return False
        if previous is None:
            return True
        return _exceeds(previous, latest, hold, self._confidence)

    def _finish_probe(self, probe: _Probe, baseline: LatencySummary) -> None:
        """Adopt the probe's last window as the baseline. If the window that started the probe
        looks overloaded against it, the next regular window must confirm before any cut: the
        starting window was picked *because* it was high, so its own ratio is biased upwards."""
        self._probe = None
        self._baseline = baseline
        self._windows_since_probe = 0
        self._confirming = _exceeds(
            probe.reference, baseline, self._policy.latency_tolerance, self._confidence
        )
        self._verdict = "pending" if self._confirming else self._verdict_for(baseline)
        self._open_window(None, settle=True)

    def _verdict_for(self, baseline: LatencySummary) -> _Verdict:
        """Growth verdict from the windows pooled at the current limit."""
        recent = _pooled(self._at_limit)
        return "hold" if recent.mean > self._policy.latency_hold * baseline.mean else "ok"

    @property
    def _confidence(self) -> float:
        return self._policy.latency_confidence

    def __repr__(self) -> str:
        return (
            f"<AimdController limit={self._limit}/{self._ceiling} in_flight={self._in_flight} "
            f"cap={self.admission_cap}>"
        )
