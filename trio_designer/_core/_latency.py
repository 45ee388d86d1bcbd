"""The latency signal of an adaptive limit: find a self-hosted server's knee, no trio, no I/O.

A self-hosted GPU server (vLLM, NIM, TGI) never answers 429: requests beyond what it batches
queue inside the server, and the only symptom is latency growing with our concurrency.
:class:`LatencySignal` watches latency per admission and tells the controller
(:class:`~trio_designer._core._aimd.AimdController`, which owns the limit) three things: the
admission cap while a baseline probe runs, whether latency lets the limit grow, and — when a
probe proves a standing queue — a cut to the knee. ``now`` is always an argument.

Design note
-----------
The rule:  **never pay for a probe without
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

**Why these numbers.** ``latency_tolerance=1.5``: LLM latency is noisy (lognormal σ 0.3–0.8
from output length alone), so 1.5× is "well above"; at the knee it means a queue half as deep
as the server's batch. ``latency_hold=1.2``: a fifth of a batch waiting means a queue has
started; noise above it only pauses growth, which costs little. ``latency_samples=32``: in
simulation 16 let a σ=0.8 endpoint drift to 2× before the noise test let it cut.
``latency_confidence=2``: a trigger needs 2 standard errors on top of the 1.5 ratio, and a cut
also needs the probe to find the reference that high above a baseline measured after it.
``latency_decrease_floor=0.5`` bounds how far one window's throughput may send the first probe
window (to a quarter of the concurrency): a throughput reading taken while the endpoint
collapsed, or while the application left it idle, must not send the probe, and with it the
cut, to 1. ``probe_interval=100``: a routine probe is one window at half concurrency, under 1 %
of throughput at this rate, and it only runs while latency sits in the hold band. The
verification of a provisional baseline after ``probe_interval / 4`` = 25 windows (800 requests)
costs about one cohort, < 4 % of what ran before it, and never touches a run of a few hundred
requests. Probe cohorts of two round trips (at least 8, so a summary has 6 values after
trimming) and early checks every quarter baseline are module constants: they trade nothing
worth tuning.

A latency cut comes from the caps the probe actually ran at, not from the limit: a limit of 256
with 64 requests in flight says nothing about 256 (RFC 5681 sets ssthresh from FlightSize, not
cwnd, for the same reason).

Prior art: TCP Vegas (Brakmo and Peterson 1994: back off when ``L × (1 − base/rtt)`` requests
are queued); BBR (windowed minimum RTT, ProbeRTT, cwnd as a multiple of the bandwidth-delay
product); Netflix ``concurrency-limits`` (Vegas and Gradient limiters for RPC servers); CoDel
(act on a standing queue, not on a burst).

Trade-offs. An endpoint whose latency never depends on our concurrency is never probed before
``probe_interval / 4`` windows, so a baseline adopted under load on a processor-sharing server
(every request of the first burst slowed alike, no request older than the others) stays wrong
that long: in simulation the knee of such a server is found after ~10 s instead of ~1 s. A
FIFO server, or anything that serves the first requests of a burst first, is caught within a
couple of service times. Decisions are per window, so a slow endpoint (10 s calls) adapts in
minutes, not seconds — early lower bounds still act at once. The steady state sits just past
the knee (latency between 1.0 and ~1.3× baseline), trading a little latency for full
throughput.

Complexity: O(1) per event, plus O(``latency_samples`` log ``latency_samples``) when a window
closes and O(n log n) in the requests admitted since the last judged cohort for an early
check, at most every quarter baseline per window.

Open questions:

* XX: one limiter serves several columns; if their output lengths differ, latency is a mixture
  and the baseline is the mixture's. A cost-normalised sample (latency per output token) would
  be cleaner, but ``Permit.success()`` carries no token count yet.
* XX: several processes sharing one GPU each see only their share of the queue; each cuts by
  Little's law on its own share, which converges, but one client's probes are blurred by the
  others' load.
* XX: the requests a start-up burst admits at the ceiling are sunk: on the adaptivity bench
  (256 at once on 32 slots) they are ~40 % of all the latency the client sees. Starting below
  the ceiling (TCP slow start) would avoid it, at a cost on every endpoint with spare capacity.

Invariants (checked by ``tests/test_aimd.py::AimdMachine`` through the controller):

* the probe cap is at least 1, and a probe runs iff the open window has a cap;
* a latency cut is returned only by the report that closes a probe's last window, goes down,
  and never below the highest probe cap that measured the baseline, which is at least 1 and at
  most half the concurrency the cut started from (``check_change``).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from typing import Literal

import attrs

from ._limits import Admission, LimitChange, LimiterPolicy

__all__ = ["MIN_LATENCY", "LatencySignal", "LatencySummary", "summarize_latencies"]

_Verdict = Literal["pending", "ok", "hold"]

# A success reported in the same instant as its admission (possible in virtual time) has zero
# latency; latencies are clamped to this so that ratios and logarithms stay finite.
MIN_LATENCY = 1e-6

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
    xs = sorted(max(x, MIN_LATENCY) for x in latencies)
    n = len(xs)
    g = int(n * _TRIM)
    kept = xs[g : n - g]
    mean = statistics.fmean(kept)
    winsorized = [xs[g]] * g + kept + [xs[n - g - 1]] * g
    spread = _stdev(winsorized) if n > 1 else 0.0
    se = spread / ((1 - 2 * g / n) * math.sqrt(n))
    return LatencySummary(mean=mean, rel_se=se / mean, samples=n)


def _stdev(xs: Sequence[float]) -> float:
    """The sample standard deviation of ``xs`` (``len(xs) >= 2``) in floats: two passes, the
    squares summed exactly rounded by ``math.fsum`` — ``statistics.stdev`` computes it in exact
    fractions, ~20x the time, on every summary of every window."""
    mean = math.fsum(xs) / len(xs)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


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


class LatencySignal:
    """The latency half of one endpoint's adaptive limit (see the module docstring).

    The controller that owns the limit tells it about every admission (:meth:`admitted`),
    every release (:meth:`released`, with the latency of a success) and every limit change
    (:meth:`limit_changed`), and after each release asks whether a probe just proved a queue
    (:meth:`decide`). In return it reads the probe's admission cap (:attr:`cap`) and whether
    latency lets the limit grow (:attr:`allows_growth`).

    Args:
      policy: the tunables (its ``latency_*`` fields and ``probe_interval``).
    """

    def __init__(self, policy: LimiterPolicy) -> None:
        self._policy = policy
        self._successes = 0
        # Invariant: _window.cap is not None iff a probe is running.
        self._window = _Window(serial=0, size=policy.latency_samples, cap=None)
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
        # Every latency reported until the first baseline is set (see released).
        self._first_latencies: list[float] = []

    # -- read-only state --------------------------------------------------------------------
    @property
    def cap(self) -> int | None:
        """The probe's admission cap, or ``None`` when no probe runs."""
        return self._window.cap

    @property
    def probing(self) -> bool:
        """Whether a baseline probe is holding admissions below the limit."""
        return self._probe is not None

    @property
    def allows_growth(self) -> bool:
        """Whether the windows at the current limit say latency is fine (no queue building)."""
        return self._verdict == "ok"

    @property
    def queue_building(self) -> bool:
        """Whether the windows at the current limit say a queue is building (latency above
        ``latency_hold`` × baseline)."""
        return self._verdict == "hold"

    @property
    def baseline_latency(self) -> float | None:
        """The unloaded latency in seconds, probed or provisional; ``None`` before the first
        window closes."""
        return None if self._baseline is None else self._baseline.mean

    @property
    def baseline_probed(self) -> bool:
        """Whether the baseline was measured by a probe, rather than adopted provisionally."""
        return self._baseline_probed

    @property
    def recent_latency(self) -> float | None:
        """The trimmed mean latency of the last regular (non-probe) window, in seconds."""
        return None if self._recent is None else self._recent.mean

    # -- events ------------------------------------------------------------------------------
    def admitted(self, serial: int, now: float, in_flight: int) -> int | None:
        """Note admission ``serial`` (with ``in_flight`` now counting it); returns the window
        whose cohort it joins, or ``None`` when it is an extra of the open window."""
        window = self._window
        window.peak_in_flight = max(window.peak_in_flight, in_flight)
        if window.admitted < window.size:
            if window.admitted == 0:
                window.first_admitted_at = now
                window.successes_at_first = self._successes
            window.admitted += 1
            window.pending[serial] = now
            return window.serial
        window.extra_pending[serial] = now
        return None

    def released(self, admission: Admission, latency: float | None) -> None:
        """Note a release: a success with its ``latency``, or anything else with ``None``."""
        self._release(admission, latency)
        if latency is None:
            return
        self._successes += 1
        if self._baseline is None:
            # The provisional baseline is the first answers: the head of the start-up burst,
            # the requests served without queueing (see the module docstring).
            self._first_latencies.append(latency)
            if len(self._first_latencies) >= self._policy.latency_samples:
                self._baseline = summarize_latencies(self._first_latencies)
                self._first_latencies.clear()

    def limit_changed(self, now: float, *, settle: bool = False) -> None:
        """The limit changed (or a 429 re-applied it): a fresh measurement. ``settle``: the
        first window follows a jump of admissions and is measured but not judged."""
        self._probe = None
        self._at_limit.clear()
        self._verdict = "pending"
        self._open_window(None, now, settle=settle, same_limit=False)

    def decide(self, now: float, limit: int) -> LimitChange | None:
        """After a release: judge a window that closed, or check the open one early. Returns a
        latency cut below ``limit`` when a probe just proved a standing queue; the caller
        applies it (and calls :meth:`limit_changed` with ``settle=True``)."""
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
            return self._probe_step(summary, window.cap, now, limit)
        self._judge(summary, window, now)
        return None

    # -- internals ---------------------------------------------------------------------------
    def _release(self, admission: Admission, latency: float | None) -> None:
        if self._window.release(admission, latency):
            return
        if self._previous is not None and self._previous.release(admission, latency):
            return
        if self._probe is not None:
            for window, _, _ in self._probe.parts:
                if window.release(admission, latency):
                    return

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
        self, summary: LatencySummary | None, cap: int, now: float, limit: int
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
        return self._finish_probe(probe, summary, now, limit)

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
        self, probe: _Probe, baseline: LatencySummary, now: float, limit: int
    ) -> LimitChange | None:
        """Adopt the probe's last window as the baseline; if the reference that started the
        probe is overloaded against it, cut at once (the caller applies the cut)."""
        self._probe = None
        self._baseline = baseline
        self._baseline_probed = True
        self._windows_since_probe = 0
        p = self._policy
        reference = probe.refresh(now)
        if _exceeds(reference, baseline, p.latency_tolerance, p.latency_confidence):
            change = self._latency_cut(probe, baseline, now, limit)
            if change is not None:
                return change
        # The windows pooled for growth were judged against the old baseline; the next regular
        # window decides again.
        self._at_limit.clear()
        self._verdict = "pending"
        self._open_window(None, now, settle=True)
        return None

    def _latency_cut(
        self, probe: _Probe, baseline: LatencySummary, now: float, limit: int
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
        if new >= limit:
            return None
        return LimitChange(
            old=limit,
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
