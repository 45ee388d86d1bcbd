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

*Latency (beyond the reference).* The rule of this part: **never pay for a probe without
evidence that it is needed.** Halving admissions to re-measure the unloaded latency costs about
one round trip of throughput on an endpoint with spare capacity, which on a 300-request run is
the whole gap between the static limiter and the lower bound. Four pieces:

1. **Measurement windows.** A window is a *cohort*: the first ``latency_samples`` requests
   admitted after it opens; it closes when all of them have been released, and its statistic is
   their trimmed mean (the fastest and slowest eighth left out). Cohorts, not "the next n
   completions": right after a burst of admissions the first completions are the fast ones, and
   a completion-ordered window would read an unloaded latency off a loaded system. The mean, not
   the median: Little's law is about means, and with 20 requests on a server that runs 16, most
   requests never queue, so the median does not move. A window measures one limit; any limit
   change abandons the open one. Everyone else admitted while a window is open (after its cohort
   filled) is its *extras*: not in its statistic, but watched, below.
2. **Lower bounds, so overload is seen early.** A request still in flight has a latency of at
   least its age, so a summary that counts in-flight requests at their age is a lower bound of
   the final one, order statistic by order statistic. The open window's *population* (everyone
   admitted since the last judged cohort: the previous window's extras, this window's members
   and extras — a set chosen by admission order, not by latency) is checked this way at most
   every quarter baseline; when even the bound exceeds ``latency_tolerance`` × baseline beyond
   noise, the window is judged at once. Two things need this: the most queued members are the
   last to report, and a start-up burst of 256 on a 32-slot server is mostly *extras* of the
   first window (it samples 32); their ages show the queue within 1.5 baselines.
3. **Baseline: provisional first, probed on evidence.**

   * *Provisional*, for free: the trimmed mean of the first ``latency_samples`` answers of the
     run — the head of the start-up burst, the requests served without queueing (on an endpoint
     with spare capacity it is just the latency). The first *cohort* would not do: a connection
     pool may put it at the back of the server's queue. Later, when the windows at the current
     limit, pooled, come in below the baseline by more than ``latency_hold`` beyond noise (the
     endpoint got faster), their pooled summary becomes the provisional baseline — pooled, so
     that one lucky window, selected for being low, does not set a baseline that ordinary
     windows then exceed. A baseline only ever *rises* through a probe: a baseline allowed to
     drift up with load ratchets.
   * *Probes* (BBR's ProbeRTT): hold admissions below the concurrency ``N`` of the window that
     started the probe, window by window. They run only (a) on **evidence of load**: a window
     (or its lower bound) above ``latency_tolerance`` × baseline beyond noise; (b) to **verify a
     provisional baseline**, once, after ``probe_interval / 4`` windows: on a
     processor-sharing server every request of the first burst is slowed alike, so a baseline
     adopted under load is flat, and only a lower concurrency can reveal it; (c) every
     ``probe_interval`` windows while latency *sits above* ``latency_hold`` × baseline (growth
     is held; perhaps the endpoint is merely slower now). Flat latency at a probed baseline is
     never probed again: a window below it lowers it passively, one above it is evidence.
   * The first probe window goes to ``N / 2``, or — when the window looks overloaded and its
     bandwidth-delay product (throughput × baseline × ``latency_hold``) puts the knee lower — as
     low as ``latency_decrease_floor`` × ``N / 2``. It halves again only while halving lowered
     latency by more than ``latency_hold`` beyond noise (the first probe window is compared with
     the reference, refreshed with what its stragglers reported since, as the reference window's
     whole population; later ones with the window before): **one halving that does not help
     ends the probe.** It also ends as soon as a window is back within ``latency_hold`` of a
     *probed* baseline (a provisional one may include a queue: landing on it proves nothing), or
     at cap 1. A probe cohort holds ``2 × cap`` requests (8 to ``latency_samples``): about two
     round trips, where 32 at a cap of 4 held admissions down for eight. The probe's last
     window becomes the (probed) baseline.
4. **Decisions.** Growth needs the windows at the current limit (the last four, pooled) to be
   within ``latency_hold`` of the baseline: above it a queue is building, and the limit holds.
   A probe that finds its reference overloaded against the fresh baseline (above
   ``latency_tolerance`` × it, beyond noise) **cuts at once**, on the report that ends the
   probe, to where Little's law puts latency at the hold level: each probe window at cap ``c``
   and latency ``R`` estimates the knee as ``c × baseline / R`` (above its knee a FIFO or
   processor-sharing server's latency is ``c / knee`` times the unloaded one; below it the
   estimate is ``c`` itself), and the limit becomes ``latency_hold`` × the largest estimate, but
   never less than the highest probe cap that measured the baseline — a concurrency the
   endpoint was just seen to serve unloaded. No confirmation window: the one that followed a
   probe was admitted while concurrency ramped back up from the probe's cap, read low, and let
   a GPU endpoint run 4.6× its service time for a minute. The probe windows are the second
   reading: measured after the trigger, not selected for being high, and at caps where a
   burst has drained. A false trigger on a noisy endpoint whose latency does not depend on
   concurrency costs one probe window and no cut: the probe reads as high as the reference.

Start-up: the limit starts at the ceiling (256) while the server runs 32. The first 32 answers
give a baseline of about one service time; the ages of the other 224 prove the overload about
1.5 service times later; the probe goes to a quarter of the concurrency, then halves down to
below the knee, and one cut brings the limit to ~1.2 × 32. On the in-process GPU model of
``tests/test_limiter.py`` (16 slots × 0.1 s, 64 clients, ceiling 256) the cut (to ~17–20)
comes at about 2 virtual seconds; afterwards the endpoint runs at >99 % of its throughput with
latency ~1.3× baseline. With lognormal service times (σ 0.3–0.8) the simulation in
``tests/test_aimd_sim.py`` keeps 95–100 % of the throughput at 1.2–1.5× latency, and an
endpoint with spare capacity sees one or two probes (the verification, and rarely one on
noise) in 4,000 requests, and no cut.

**Why these numbers.** ``decrease_factor=0.75``, ``cooldown=2.0`` and
``successes_per_increase=25`` are the reference's, so hosted-API behaviour is the same. 25 also
keeps additive increase slower than the feedback: at limit L one step takes ``25 / L`` round
trips. ``latency_tolerance=1.5``: LLM latency is noisy (lognormal σ 0.3–0.8 from output length
alone), so 1.5× is "well above"; at the knee it means a queue half as deep as the server's
batch. ``latency_hold=1.2``: a fifth of a batch waiting means a queue has started; noise above
it only pauses growth, which costs little. ``latency_samples=32``: in simulation 16 let a σ=0.8
endpoint drift to 2× before the noise test let it cut. ``latency_confidence=2``: a trigger needs
2 standard errors on top of the 1.5 ratio, and a cut also needs the probe to find the
reference that high above a baseline measured after it. ``latency_decrease_floor=0.5`` bounds
how far one window's throughput may send the first probe window (to a quarter of the
concurrency): a throughput reading taken while the endpoint collapsed, or while the application
left it idle, must not send the probe, and with it the cut, to 1. ``probe_interval=100``: a
routine probe is one window at half concurrency, under 1 % of throughput at this rate, and it
only runs while latency sits in the hold band. The verification of a provisional baseline
after ``probe_interval / 4`` = 25 windows (800 requests) costs about one cohort, < 4 % of what
ran before it, and never touches a run of a few hundred requests. Probe cohorts of two round
trips (at least 8, so a summary has 6 values after trimming) and early checks every quarter
baseline are module constants: they trade nothing worth tuning.

**Cuts are taken from the concurrency actually used.** A limit of 256 with 64 requests in
flight says nothing about 256: the base of a 429 cut is ``min(limit, peak in flight since the
limit last changed)``, and a latency cut comes from the caps the probe actually ran at (RFC
5681 sets ssthresh from FlightSize, not cwnd, for the same reason). When the limiter is
saturated, as it is when a 429 arrives, this is exactly the reference rule.

Prior art: AIMD (Chiu and Jain 1989; TCP congestion avoidance); the reference engine's
``ThrottleManager`` and request-admission controller (cascade dampening by admission limit);
TCP Vegas (Brakmo and Peterson 1994: back off when ``L × (1 − base/rtt)`` requests are queued);
BBR (windowed minimum RTT, ProbeRTT, cwnd as a multiple of the bandwidth-delay product); Netflix
``concurrency-limits`` (Vegas and Gradient limiters for RPC servers); CoDel (act on a standing
queue, not on a burst).

Trade-offs. An endpoint whose latency never depends on our concurrency is never probed before
``probe_interval / 4`` windows, so a baseline adopted under load on a processor-sharing server
(every request of the first burst slowed alike, no request older than the others) stays wrong
that long: in simulation the knee of such a server is found after ~10 s instead of ~1 s. A
FIFO server, or anything that serves the first requests of a burst first, is caught within a
couple of service times. Decisions are per window, so a slow endpoint (10 s calls) adapts in
minutes, not seconds — 429s and early lower bounds still act at once. The steady state sits
just past the knee (latency between 1.0 and ~1.3× baseline), trading a little latency for full
throughput. Against a hard concurrency cap the 429 rule saw-tooths between 0.75 L and L
(reference behaviour; ~80 % of the cap's throughput in simulation with a 1 s Retry-After).

Complexity: O(1) per event, plus O(``latency_samples`` log ``latency_samples``) when a window
closes and O(n log n) in the requests admitted since the last judged cohort for an early
check, at most every quarter baseline per window.

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
* XX: the requests a start-up burst admits at the ceiling are sunk: on the adaptivity bench
  (256 at once on 32 slots) they are ~40 % of all the latency the client sees. Starting below
  the ceiling (TCP slow start) would avoid it, at a cost on every endpoint with spare capacity.

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
    "LimiterPolicy",
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

# A probe window at admission cap c samples _PROBE_ROUND_TRIPS × c requests (about two round
# trips), at least _MIN_PROBE_SAMPLES and at most latency_samples: at a cap of 4, a cohort of 32
# would hold admissions down for eight round trips.
_PROBE_ROUND_TRIPS = 2
_MIN_PROBE_SAMPLES = 8

# A provisional baseline is verified by a probe after probe_interval / _VERIFY_FRACTION windows.
_VERIFY_FRACTION = 4

# While a regular window waits for its last members, its lower bound is checked for overload at
# most once per this many baseline latencies.
_EARLY_CHECK_STEP = 0.25


def _in_open_unit_interval(
    _instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"LimiterPolicy.{attribute.name} must be between 0 and 1 (exclusive), got {value}."
        )


@attrs.frozen(kw_only=True)
class LimiterPolicy:
    """The tunables of one adaptive limiter, with the defaults argued in the module docstring.

    Attributes:
      decrease_factor: a 429 cuts the limit to ``floor(base × decrease_factor)``, at least 1.
      successes_per_increase: successes (outside cooldowns) per +1 step of the limit.
      cooldown: seconds without admissions after a 429 that carried no usable ``Retry-After``.
      latency_signal: listen to latency at all; turn it off for endpoints that only ever signal
        with 429s and whose latency you do not want to react to (no probes are run then).
      latency_tolerance: recent / baseline latency above which a window is evidence of load:
        it starts a probe, and the probe cuts if the window is still that high against the
        baseline it measured.
      latency_hold: recent / baseline latency above which the limit stops growing; also how
        much a probe step must lower latency for the probe to halve again, and the latency a
        cut aims for.
      latency_samples: requests per latency cohort (one decision per cohort); a probe cohort
        at a low cap is smaller (two round trips, at least 8).
      latency_confidence: a window is evidence of load (or of a faster endpoint) only if
        ``ln(recent / baseline)`` is also above this many standard errors; ``0`` trusts the
        ratio alone.
      latency_decrease_floor: when a window's throughput puts the knee below half its
        concurrency, the first probe window goes there, but no lower than this fraction of
        that half. (A latency cut never goes below a cap at which the probe measured the
        baseline.)
      probe_interval: regular windows between routine probes, which run only while latency sits
        above ``latency_hold`` × baseline; a provisional baseline is verified by a probe after
        a quarter of it.

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
                f"LimiterPolicy.latency_tolerance ({self.latency_tolerance}) must be at least "
                f"LimiterPolicy.latency_hold ({self.latency_hold}): the limit stops growing "
                "before it is cut, never after."
            )


DEFAULT_POLICY = LimiterPolicy()
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
    """The latency window whose cohort this request belongs to, or ``None``."""


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


def _verify_after(policy: LimiterPolicy) -> int:
    """Regular windows after which a provisional baseline is verified by a probe."""
    return max(1, math.ceil(policy.probe_interval / _VERIFY_FRACTION))


def _enough(size: int) -> int:
    """The fewest latencies a cohort of ``size`` needs for a summary (failures give none)."""
    return max(3, size // 2)


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
    probed_concurrency: int = 0
    """For ``latency``: the highest admission cap at which the probe before the cut measured
    the baseline; the cut may go down to it even below ``latency_decrease_floor``."""
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
    """One latency cohort: the first ``size`` requests admitted after it opened.

    Everyone else admitted while it is open (after the cohort filled) is its *population*'s
    rest, the "extras": not part of its statistic, but watched by the early overload check.
    """

    serial: int
    size: int
    cap: int | None  # the probe's admission cap, or None for a regular window
    # A settling window is measured but not judged: it follows a jump of the admission cap (a
    # probe's end, a cooldown's end), when its cohort is admitted in one burst and sees a queue
    # that is still building up to the new level.
    settle: bool = False
    admitted: int = 0
    # Invariant: pending maps the serial of every cohort member admitted and not yet released to
    # its admission time; extra_pending does the same for the extras.
    pending: dict[int, float] = attrs.Factory(dict)
    samples: list[float] = attrs.Factory(list)
    extra_pending: dict[int, float] = attrs.Factory(dict)
    extra_samples: list[float] = attrs.Factory(list)
    peak_in_flight: int = 0
    # When the first member was admitted, and the controller's success count then: delivery
    # is measured from there (completions of requests admitted before do not count as the
    # rate of this window, even if they land right after it opened).
    first_admitted_at: float = math.inf
    successes_at_first: int = 0
    # The earliest ``now`` at which the next early overload check of this window may run.
    next_check: float = -math.inf

    @property
    def closed(self) -> bool:
        return self.admitted >= self.size and not self.pending

    @property
    def regular(self) -> bool:
        return self.cap is None and not self.settle

    def lower_bounds(self, now: float, *, members: bool, extras: bool) -> list[float]:
        """Latencies of the members and/or the extras, with every request still in flight
        counted at its age so far."""
        values: list[float] = []
        if members:
            values += self.samples + [now - t for t in self.pending.values()]
        if extras:
            values += self.extra_samples + [now - t for t in self.extra_pending.values()]
        return values

    def release(self, admission: Admission, latency: float | None) -> bool:
        """Record a released member or extra of this window; ``False`` if it is neither."""
        serial = admission.serial
        if admission.window == self.serial and serial in self.pending:
            del self.pending[serial]
            if latency is not None:
                self.samples.append(latency)
            return True
        if serial in self.extra_pending:
            del self.extra_pending[serial]
            if latency is not None:
                self.extra_samples.append(latency)
            return True
        return False


_Part = tuple[_Window, bool, bool]
"""Part of a reference: a window, and whether its members and whether its extras count."""


def _lower_bound(parts: Sequence[_Part], now: float, size: int) -> LatencySummary | None:
    """The summary of ``parts`` with everything still in flight counted at its age so far.

    No value is larger than the final one, so no order statistic, and not the trimmed mean,
    is either: if this lower bound exceeds a threshold, the final summary will too. ``None``
    when fewer than a cohort of ``size`` needs can still give a latency.
    """
    values = [
        x
        for w, members, extras in parts
        for x in w.lower_bounds(now, members=members, extras=extras)
    ]
    return summarize_latencies(values) if len(values) >= _enough(size) else None


def _throughput(windows: Sequence[_Window], successes: int, now: float) -> float:
    """Successes per second since the first member of ``windows`` was admitted (``0`` if no
    time has passed: no measurement)."""
    first = windows[0]
    elapsed = now - first.first_admitted_at
    return (successes - first.successes_at_first) / elapsed if elapsed > 0 else 0.0


@attrs.define(eq=False)
class _Probe:
    """A baseline probe in progress: halving the admission cap window by window."""

    # The regular window(s) that started the probe. They may have been judged early, on a lower
    # bound: whatever of them is still in flight keeps reporting, so that the probe compares
    # against real latencies, not against ages at the moment of the trigger.
    parts: tuple[_Part, ...]
    reference: LatencySummary  # their summary (or lower bound) when last looked at
    concurrency: int  # peak in flight while the reference was measured
    # (admission cap, summary) of every probe window so far, in order.
    readings: list[tuple[int, LatencySummary]] = attrs.Factory(list)

    def refresh(self, now: float) -> LatencySummary:
        """The reference, updated with what its requests reported since."""
        latest = _lower_bound(self.parts, now, self.parts[-1][0].size)
        if latest is not None:
            self.reference = latest
        return self.reference


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

    def __init__(self, ceiling: int, policy: LimiterPolicy = DEFAULT_POLICY) -> None:
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
        self._window = _Window(
            serial=0,
            size=policy.latency_samples,
            cap=None,
        )
        # The window before _window, while its population still counts for the early check:
        # a regular or settling window at the current limit.
        self._previous: _Window | None = None
        self._probe: _Probe | None = None
        self._verdict: _Verdict = "pending"
        self._baseline: LatencySummary | None = None
        # Whether the baseline was measured by a probe (halving stopped lowering latency), or
        # only adopted from regular windows (provisional: it may include a queue).
        self._baseline_probed = False
        # The latest regular windows measured at the current limit (cleared when it changes).
        self._at_limit: deque[LatencySummary] = deque(maxlen=_POOLED_WINDOWS)
        self._recent: LatencySummary | None = None
        self._windows_since_probe = 0
        # Every latency reported until the first baseline is set (see record_success).
        self._first_latencies: list[float] = []

    # -- read-only state --------------------------------------------------------------------
    @property
    def policy(self) -> LimiterPolicy:
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
        """The unloaded latency in seconds, probed or provisional (see
        :attr:`baseline_probed`); ``None`` before the first window closes."""
        return None if self._baseline is None else self._baseline.mean

    @property
    def baseline_probed(self) -> bool:
        """Whether the baseline was measured by a probe, rather than adopted provisionally from
        regular windows (which may have included a queue)."""
        return self._baseline_probed

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
        if self._policy.latency_signal:
            if window.admitted < window.size:
                if window.admitted == 0:
                    window.first_admitted_at = now
                    window.successes_at_first = self._successes
                window.admitted += 1
                window.pending[serial] = now
                member = window.serial
            else:
                window.extra_pending[serial] = now
        return Admission(serial=serial, admitted_at=now, rate_epoch=self._rate_epoch, window=member)

    def record_success(self, admission: Admission, now: float) -> LimitChange | None:
        """The request succeeded; its latency is ``now - admission.admitted_at``.

        Raises:
          RuntimeError: if this admission was already recorded.
        """
        latency = max(now - admission.admitted_at, _MIN_LATENCY)
        self._release(admission, latency)
        self._successes += 1
        if now >= self._cooldown_until:
            self._streak += 1
        if self._baseline is None and self._policy.latency_signal:
            # The provisional baseline is the first answers: the head of the start-up burst,
            # the requests served without queueing (see the module docstring).
            self._first_latencies.append(latency)
            if len(self._first_latencies) >= self._policy.latency_samples:
                self._baseline = summarize_latencies(self._first_latencies)
                self._first_latencies.clear()
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
        if self._window.release(admission, latency):
            return
        if self._previous is not None and self._previous.release(admission, latency):
            return
        if self._probe is not None:
            for window, _, _ in self._probe.parts:
                if window.release(admission, latency):
                    return

    def _set_limit(self, new: int, now: float, *, settle: bool = False) -> None:
        """Apply a new limit (or re-apply the old one after a 429): a fresh measurement."""
        self._limit = new
        self._peak = self._in_flight
        self._streak = 0
        self._probe = None
        self._at_limit.clear()
        self._verdict = "pending"
        self._open_window(None, now, settle=settle, same_limit=False)

    def _open_window(
        self, cap: int | None, now: float, *, settle: bool = False, same_limit: bool = True
    ) -> None:
        """Open the next cohort: ``latency_samples`` requests, or for a probe window at a low
        cap about ``_PROBE_ROUND_TRIPS`` round trips' worth of them (at least
        ``_MIN_PROBE_SAMPLES``)."""
        old = self._window
        size = self._policy.latency_samples
        if cap is not None:
            size = min(size, max(_MIN_PROBE_SAMPLES, _PROBE_ROUND_TRIPS * cap))
        keep = same_limit and cap is None and old.cap is None
        self._previous = old if keep else None
        self._window = _Window(
            serial=old.serial + 1,
            size=size,
            cap=cap,
            settle=settle,
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
        self._set_limit(old + 1, now)
        return LimitChange(old=old, new=old + 1, reason="increase", at=now, successes=steps)

    def _after_release(self, now: float) -> LimitChange | None:
        if not self._policy.latency_signal:
            return None
        window = self._window
        if not window.closed:
            self._check_early(window, now)
            return None
        if window.settle:
            self._open_window(window.cap, now)
            return None
        summary = None
        if len(window.samples) >= _enough(window.size):
            summary = summarize_latencies(window.samples)
        if window.cap is not None:
            return self._probe_step(summary, window.cap, now)
        self._judge(summary, window, now)
        return None

    def _check_early(self, window: _Window, now: float) -> None:
        """Start a probe before ``window`` closes if a lower bound already shows overload.

        The bound covers everyone admitted since the last judged cohort (the previous window's
        extras, then this window's members and extras), with requests still in flight counted
        at their age so far: a population chosen by admission order, not by latency, so its
        bound is no larger than its real mean. If even that exceeds ``latency_tolerance`` ×
        baseline beyond noise, the slowest (most queued) requests need not be waited for, and
        neither need the unsampled requests of a start-up burst (beyond the first cohort),
        which are the ones that queue. Checked at most every ``_EARLY_CHECK_STEP`` baselines,
        so its O(n log n) summary stays rare.
        """
        baseline = self._baseline
        if baseline is None or not window.regular or now < window.next_check:
            return
        window.next_check = now + _EARLY_CHECK_STEP * baseline.mean
        parts: tuple[_Part, ...] = ((window, True, True),)
        if self._previous is not None:
            parts = ((self._previous, False, True), *parts)
        bound = _lower_bound(parts, now, window.size)
        p = self._policy
        if bound is None or not _exceeds(
            bound, baseline, p.latency_tolerance, p.latency_confidence
        ):
            return
        self._recent = bound
        self._at_limit.append(bound)
        self._start_probe(bound, parts, now)

    def _judge(self, summary: LatencySummary | None, window: _Window, now: float) -> None:
        """A regular window closed: adopt it as the baseline, start a probe, or set the verdict
        for growth."""
        if summary is None:  # too many failures to say anything
            self._open_window(None, now)
            return
        self._recent = summary
        self._at_limit.append(summary)
        baseline = self._baseline
        p = self._policy
        z = p.latency_confidence
        faster = None
        if baseline is not None and len(self._at_limit) >= 2:
            faster = _pooled(self._at_limit)
            if not _exceeds(baseline, faster, p.latency_hold, z):
                faster = None
        if baseline is None or faster is not None:
            # The first window, or the endpoint got faster (judged on the windows at this limit
            # pooled: one lucky window must not set a low baseline that ordinary windows then
            # exceed). The unloaded latency is at most this: adopted provisionally, no probe.
            self._baseline = summary if faster is None else faster
            self._baseline_probed = False
            self._verdict = "ok"
            self._windows_since_probe += 1
            self._open_window(None, now)
            return
        if _exceeds(summary, baseline, p.latency_tolerance, z):
            self._start_probe(summary, ((window, True, True),), now)  # evidence of load
            return
        self._windows_since_probe += 1
        self._verdict = self._verdict_for(baseline)
        if (not self._baseline_probed and self._windows_since_probe >= _verify_after(p)) or (
            self._verdict == "hold" and self._windows_since_probe >= p.probe_interval
        ):
            # Verify a provisional baseline, or re-measure one that latency sits above.
            self._start_probe(summary, ((window, True, True),), now)
            return
        self._open_window(None, now)

    def _start_probe(self, reference: LatencySummary, parts: tuple[_Part, ...], now: float) -> None:
        """Hold admissions at half the concurrency the reference measured. When it looks
        overloaded and ``latency_hold`` × throughput × baseline (the bandwidth-delay product
        with a little queue) puts the knee lower, go there at once, but no lower than
        ``latency_decrease_floor`` × that half (a quarter of the concurrency by default): the
        throughput of one window is a single reading, and a probe too low costs throughput."""
        windows = [w for w, _, _ in parts]
        concurrency = max(w.peak_in_flight for w in windows)
        self._probe = _Probe(parts=parts, reference=reference, concurrency=concurrency)
        self._verdict = "pending"
        cap = concurrency // 2
        baseline = self._baseline
        if baseline is not None and reference.mean > baseline.mean:
            throughput = _throughput(windows, self._successes, now)
            bdp = self._policy.latency_hold * throughput * baseline.mean
            lowest = math.floor(cap * self._policy.latency_decrease_floor)
            cap = max(lowest, min(cap, math.ceil(bdp)))
        self._open_window(max(1, cap), now)

    def _probe_step(
        self, summary: LatencySummary | None, cap: int, now: float
    ) -> LimitChange | None:
        """A probe window closed: halve again while halving still lowers latency."""
        probe = self._probe
        assert probe is not None  # a window with a cap exists only during a probe
        if summary is None:  # too many failures to measure: give up, keep the old baseline
            self._probe = None
            self._verdict = "pending"
            self._open_window(None, now, settle=True)
            return None
        previous = probe.readings[-1][1] if probe.readings else probe.refresh(now)
        probe.readings.append((cap, summary))
        if cap > 1 and self._keep_halving(previous, summary):
            self._open_window(max(1, cap // 2), now)
            return None
        return self._finish_probe(probe, summary, now)

    def _keep_halving(self, previous: LatencySummary, latest: LatencySummary) -> bool:
        """Whether the probe should halve the cap once more.

        * A window within ``latency_hold`` of a *probed* baseline has found it again: stop (the
          common case, which makes a routine probe one window long). A provisional baseline may
          itself include a queue, so landing on it proves nothing.
        * Otherwise halve again only while halving lowered latency by more than
          ``latency_hold`` (beyond noise): the first probe window is compared with the
          reference that started the probe, later ones with the probe window before them. One
          halving that does not help ends the probe.
        """
        p = self._policy
        baseline = self._baseline
        if (
            self._baseline_probed
            and baseline is not None
            and latest.mean <= p.latency_hold * baseline.mean
        ):
            return False
        return _exceeds(previous, latest, p.latency_hold, p.latency_confidence)

    def _finish_probe(
        self, probe: _Probe, baseline: LatencySummary, now: float
    ) -> LimitChange | None:
        """Adopt the probe's last window as the baseline; if the reference that started the
        probe is overloaded against it, cut at once."""
        self._probe = None
        self._baseline = baseline
        self._baseline_probed = True
        self._windows_since_probe = 0
        p = self._policy
        reference = probe.refresh(now)
        if _exceeds(reference, baseline, p.latency_tolerance, p.latency_confidence):
            change = self._latency_cut(probe, baseline, now)
            if change is not None:
                return change
        # The windows pooled for growth were judged against the old baseline; the next regular
        # window decides again.
        self._at_limit.clear()
        self._verdict = "pending"
        self._open_window(None, now, settle=True)
        return None

    def _latency_cut(
        self, probe: _Probe, baseline: LatencySummary, now: float
    ) -> LimitChange | None:
        """Cut to where Little's law puts latency at ``latency_hold`` × baseline, and never
        below the highest probe cap that measured the baseline (a concurrency the endpoint was
        just seen to serve unloaded).

        Each probe window estimates the knee: above it a FIFO or processor-sharing server's
        latency is ``cap / knee`` times the unloaded one, so ``knee = cap × baseline /
        latency``; below it the estimate is the cap itself, which the endpoint served
        unloaded. The largest estimate wins. Probe windows, not the reference: the reference
        was picked because it was high, and at start-up it is a transient (a burst draining).
        """
        hold = self._policy.latency_hold
        base = baseline.mean
        probed = max(cap for cap, s in probe.readings if s.mean <= hold * base)
        knee = max(cap * base / s.mean for cap, s in probe.readings)
        new = max(probed, math.floor(hold * knee))
        if new >= self._limit:
            return None
        old = self._limit
        self._set_limit(new, now, settle=True)  # the cap jumps from the probe's up to the limit
        return LimitChange(
            old=old,
            new=new,
            reason="latency",
            at=now,
            recent_latency=probe.reference.mean,
            baseline_latency=baseline.mean,
            concurrency=probe.concurrency,
            probed_concurrency=probed,
        )

    def _verdict_for(self, baseline: LatencySummary) -> _Verdict:
        """Growth verdict from the windows pooled at the current limit."""
        recent = _pooled(self._at_limit)
        return "hold" if recent.mean > self._policy.latency_hold * baseline.mean else "ok"

    def __repr__(self) -> str:
        return (
            f"<AimdController limit={self._limit}/{self._ceiling} in_flight={self._in_flight} "
            f"cap={self.admission_cap}>"
        )
