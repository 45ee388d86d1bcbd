"""Adaptive per-model concurrency limits: the 429 rule and the controller, no trio, no I/O.

One :class:`AimdController` per model endpoint answers three questions, with ``now`` as an
argument: may another request start (:meth:`~AimdController.can_admit`)? what does this outcome
change (the ``record_*`` methods)? and what is the state (the read-only properties)? The trio
driver (``trio_designer/models/_limiter.py``) only parks waiters, wakes them, sleeps through
spent budgets (``_core/_budget.py``) and logs the :class:`~trio_designer._core._limits.LimitChange`
records returned here.

Design note
-----------
**Two signals.** A hosted API says "too much" with a 429; a self-hosted GPU server (vLLM, NIM,
TGI) never does: requests beyond what it batches queue inside the server, and the only symptom is
latency growing with our concurrency. So the controller listens to both: the 429 rule lives
here, the latency signal in :mod:`trio_designer._core._latency` (:class:`LatencySignal`), and
this controller owns the one limit both act on.

**429s: load or noise.** A hosted API answers 429 for reasons of two kinds: our concurrency
is above what the deployment serves (*load*: cutting the limit helps), or something that has
nothing to do with us — a busy shared fleet, a proxy's hiccup (*noise*: cutting only loses
throughput; at 30 % of requests a reference AIMD limiter collapses to 1). The controller tells
them apart from what it sends anyway, two ways:

1. **Runs on a slot (do 429s cluster?).** A rejected request gives its slot back at once and
   waits out its own delay elsewhere; the slot goes to the next waiting request. If the server
   is full, that one is turned away too, and the next, until one of ours finishes; if the 429
   was noise, the next one goes through. So every admission carries ``chain``: 1 + the 429s in
   a row on the slot it took (a slot freed by a success starts again at 0). Sporadic 429s at
   rate p give a run of k with probability p^k, so a run of
   :func:`runs_that_mean_load` (p, ``noise_false_alarm``) is load, with p estimated
   generously (two standard errors above its decayed mean, prior 3 %): 3 in a row before
   anything is known, 4 at 10 % noise, 7 at 30 %. p is taken only from the first request on a
   slot freed by a success, at a level where a success was already seen: under load those go
   through (the success made room on the server), so a storm of load 429s cannot raise the
   bar it is judged by.
2. **A cliff by level (does the 429 rate rise with in-flight?).** Every admission records its
   *level*, the requests in flight once it was admitted. Admissions (counted when sent: a 429
   comes back at once, a success a latency later) and 429s are counted by level (decayed); a
   429 at level n is load when the 429 rate at levels n up to the limit is three standard
   errors above the rate below n. This catches what runs miss: a probe one level
   above a hidden limit, and load while the application keeps fewer requests waiting than the
   limit allows (no next request takes the slot). Levels above the limit are left out: they
   belong to a regime already left, such as a start-up burst whose requests reached the
   server in no particular order.

A **load** 429 cuts the limit to the requests still in flight — what the server holds, or more;
with those sent before the refused one and answered after it was sent, which the server still
held when it refused it (``_held_when_refused``) — but to no less than half the limit in one
step (several load 429s in a row cut again: a burst of 32 against a hidden limit of 8 ends at
8). The level above is the *cliff*. Nothing pauses:
admissions resume as our requests finish, which is when the server has room again (the
reference paused the whole endpoint after a blind ×0.75 cut; after a measured cut a pause only
leaves slots idle). A **noise** 429 changes nothing. Either way the rejected request waits out
its own ``Retry-After`` (or a short jittered backoff) and goes again: that is the caller's
business (``ModelHandle.chat``), not the endpoint's. A 429 whose headers say a request or
token budget is spent is neither (``spent_budget``): the budget (``_core/_budget.py``) holds
admissions until it can pay, and the limit is left alone.

**Growth, after TCP CUBIC: back fast to what worked, slowly above it.** Below a known cliff, or
with none known (the last probe passed), the limit grows by one per success while it is in
use, about doubling per round trip (TCP slow start). At the cliff's edge it *probes* the cliff
(+1) after ``successes_per_increase`` successes, doubling with every failed probe of the same
cliff up to ``cliff_probe_backoff`` times that: a hidden limit of 8 is held at 8 with one 429
every 25–100 successes, and when the capacity rises the next probe passes and the limit is
back near it within a few round trips. The cliff is cleared when two requests admitted at it
(after the last cut) were answered while the server held the cliff's worth of ours (see
``_served_together``: a request sent while another one's answer was still on its way slips
through at a full server, so the level at admission alone would clear the cliff of a hidden
limit over and over — over loopback HTTP it did, and the limit of a hidden 8 climbed to 30),
or when the limit has stood at the cliff for ``_QUIET_ROUNDS`` round trips' worth of successes
admitted at it (3 × the cliff) without a single 429: at a server still full the request one
above what it holds is refused again and again, so a steady hidden limit is never that quiet;
a risen capacity is. (With requests spread over the latency, as real HTTP spreads them,
``_served_together`` alone counts about half of what the server holds and a risen capacity
sat at the cliff for 7 s: ``tests/test_rate_sim.py::
test_a_rise_is_followed_within_two_seconds_when_requests_drift_apart``.) After a
latency cut (a GPU server) growth is the reference's: +1 per ``successes_per_increase``
successes, and only while latency allows.

**Why these numbers.** ``noise_false_alarm=0.001``: a false load cut costs one level until
the next probe (25 successes), a missed one a few more 429s, each a request waiting out its
delay; at 30 % noise a run of 7 comes about once in 4,500 slots. Three standard errors for the
cliff: under noise the test runs on every 429, and should be wrong about once in 700. The
noise rate forgets with a half-life of ~140 outcomes, and starts at 3 % weighted as 30
outcomes: 3 429s in a row are load before anything is known, fewer are not.
``successes_per_increase=25`` is the reference's: at limit L one step takes ``25 / L`` round
trips; as the first probe interval it keeps 429s from probes at about 1 in 25–100 requests.
(``cooldown`` is the static limiter's pause after a 429; this controller never pauses.)

**Cuts are taken from the concurrency actually used.** A limit of 256 with 64 requests in
flight says nothing about 256: a load cut goes to what is in flight, and a latency cut comes
from the caps the probe ran at (RFC 5681 sets ssthresh from FlightSize, not cwnd).

Prior art: AIMD (Chiu and Jain 1989); TCP CUBIC (Ha, Rhee and Xu 2008: concave return to the
window of the last loss, convex probing beyond it) and slow start; Google SRE's client-side
throttling (react to the ratio of rejections, not to each one); the reference engine's
``ThrottleManager``.

Trade-offs. Telling noise from load needs a few 429s: three in a row at start-up, seven at 30 %
noise, each of them a request that waits out its own delay (no slot waits). Several processes
on one endpoint with a hidden limit do not converge to equal shares by default: a 429 reaches
only the one who probes, each cut keeps what it holds, and probing every N successes lets the
biggest probe most often (measured in ``docs/adaptive-limits.md``: 61 / 39 for two). With
``LimiterPolicy.probe_by_share`` (sharded runs turn it on) a limiter probes after
``(limit / ceiling)²`` times as many successes, so the smaller ones probe more often per
second, take the room a finishing request leaves, and the shares even out (50 / 50 ± 7, four
at 20–31 % each, same utilisation: ``tests/test_rate_sim.py``).

**Sharing an endpoint (the shards of a run).** ``probe_by_share`` and ``follow_use`` change four
things, measured in ``tests/test_rate_sim.py`` and ``tests/test_shards_e2e.py``: a load cut
also gives up ``35 % × limit / ceiling`` of what is in flight (cuts to what is held keep any
split, however uneven; a share-weighted cut is AIMD's multiplicative decrease, which is what
evens shares out); a cliff is probed after ``(limit / ceiling)²`` times the usual successes,
but at most once per ``limit`` successes (about once per round trip); at the ceiling a
probe that cannot go up *yields* a slot for a probe interval (a limiter whose ceiling equals
the hidden capacity otherwise holds all of it without ever seeing a 429, and the others
starve) — also before any load was seen (a shard that started first fills the endpoint
without a 429), after 4 probe intervals then, and a yield whose slot nobody took doubles the
wait before the next, up to 16 intervals (a load cut resets it); and the limit follows the
concurrency used (``follow_use``: growth only while it binds, and a window of successes at
which fewer were in flight lowers it to their mean), so the sum of the shards' limits is what
they offer the endpoint, within 10 % of its capacity, instead of up to 1.4× it.

Complexity: O(1) per admission and success; O(ceiling) per 429 (the cliff test sums the
counts by level), plus what the latency signal costs (see its module).

Open questions:

* XX: the cut could weigh in the 429s of other processes sharing the account (they are not
  seen); a shared budget in the headers is honoured.
* XX: the limit does not grow while the application leaves it unused, except by the latency
  regime's rule (RFC 7661 would hold it there too).

Invariants (checked by ``tests/test_aimd.py::AimdMachine``):

* ``1 <= admission cap <= limit <= ceiling`` (``limit_within_bounds``);
* ``in_flight`` counts exactly the admissions not yet recorded (``in_flight_is_what_we_hold``);
* nothing is admitted while ``in_flight >= admission cap`` (``admissions_respect_the_cap``,
  and the ``admit`` rule); nothing pauses admission (``never_paused``);
* a 429 never raises the limit; it cuts only on a run of ``runs_that_mean_load`` or more on its
  slot, or on a cliff, and then to exactly ``max(1, min(limit, max(held, ceil(limit / 2))))``
  with ``held = in_flight`` (``probe_by_share``: ``in_flight - floor(in_flight × 0.35 × limit
  / ceiling)``) (the ``rate_limited`` rule);
* an ``unused`` change (``follow_use``) lowers the limit to the mean in flight at the successes
  of its window (rounded up; at most the most in flight since it was last set), at least 1;
  a ``yield`` (``probe_by_share``) goes from the ceiling to one below it;
* a latency cut ends a probe (it is returned by the report that closes the probe's last
  window), goes down, and never below the highest probe cap that measured the baseline, which
  is at least 1 and at most half the concurrency the cut started from; an increase is +1
  (``check_change``);
* liveness: with a constant latency and no 429, successes bring the limit back to the ceiling
  (``teardown``).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

from ._latency import MIN_LATENCY, LatencySignal
from ._limits import DEFAULT_POLICY, Admission, LimitChange, LimiterPolicy

__all__ = ["AimdController", "runs_that_mean_load"]

_Regime = Literal["start", "rate", "latency"]
"""What set the limit last: nothing yet (the ceiling), a load cut (429s), a latency cut."""

# The 429 rate seen so far is a decayed mean over about this many outcomes (its half-life is
# _RATE_MEMORY × ln 2), started from _PRIOR_REJECTIONS 429s in _PRIOR_OUTCOMES outcomes: before
# any data, sporadic 429s are assumed to be rare (3 %) but not impossible.
_RATE_MEMORY = 200.0
_PRIOR_OUTCOMES = 30.0
_PRIOR_REJECTIONS = 0.9

# A cliff is passed (cleared) once this many requests admitted at it were served together with
# the cliff's worth of others (see _served_together).
_CLIFF_PASSES = 2

# ... or once the limit has stood at the cliff for this many round trips' worth of successes
# admitted at the cliff (``cliff`` successes per round trip) with no 429 at all since it got
# there. At a full server the request one above what it holds keeps coming back 429 (its
# slot is taken again at once, and turned away again), so a hidden limit still there never
# stays quiet that long; a capacity that rose does. 3, not 2: at 2, a client whose requests
# take up to half the latency to reach the server (the simulation's spread of 0.1 s) now and
# then cleared a steady cliff (a hidden 8 held at up to 10 instead of 9); 3 and 4 held it
# exactly as before, and 3 follows a rise of 8 -> 32 within 1.0-2.9 s at 200 ms.
_QUIET_ROUNDS = 3

# LimiterPolicy.probe_by_share: a yield whose slot nobody took (its probe back passed) doubles
# the successes before the next one, up to this many doublings; a load cut resets it. Keeps
# the cost of yielding on an endpoint with room to spare under half a per cent (a slot of the
# ceiling idle for one probe interval in 2**4) while a limiter that holds what others need
# still yields within a few seconds.
_MAX_YIELD_BACKOFF = 4
# ... and where it starts: before any load is seen, a limiter assumes room to spare and waits
# 2**2 probe intervals before its first yield.
_START_YIELD_BACKOFF = 2

# The quickest success latency lately: a decayed minimum, allowed to rise by this factor per
# success (it forgets a lucky answer in a few hundred).
_QUICKEST_DRIFT = 1.005

# A 429 at admission level n shows a cliff when the 429 rate at n and above exceeds the rate
# below n by this many standard errors (one-sided; about 1 false alarm in 700 under noise).
_CLIFF_Z = 3.0

# LimiterPolicy.probe_by_share: a load cut gives up this share of what is in flight, times
# limit / ceiling (see record_rate_limited): 35 % at the ceiling, less for a limiter below it.
_SHARE_CUT = 0.35


def runs_that_mean_load(rate: float, false_alarm: float) -> int:
    """The shortest run of 429s on one slot (no success between them) that sporadic 429s arriving
    independently at ``rate`` would produce with probability at most ``false_alarm``:
    ``ceil(log(false_alarm) / log(rate))``, at least 1.

    Examples, at the default false alarm of 0.1 %: at a rate of 5 %, 3 in a row; at 10 %, 3;
    at 30 %, 6.
    """
    if rate <= 0.0:
        return 1
    if rate >= 1.0:
        return 1_000_000_000
    return max(1, math.ceil(math.log(false_alarm) / math.log(rate) - 1e-9))


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

    def __init__(self, ceiling: int, policy: LimiterPolicy = DEFAULT_POLICY) -> None:
        if ceiling < 1:
            raise ValueError(f"an adaptive limit needs a ceiling of at least 1, got {ceiling}")
        self._policy = policy
        self._ceiling = ceiling
        # Invariant: 1 <= _limit <= _ceiling.
        self._limit = ceiling
        # Invariant: _in_flight == len(_outstanding).
        self._in_flight = 0
        self._outstanding: dict[int, float] = {}  # serial -> admitted at
        self._next_serial = 0
        # Grows with every load cut; a success admitted before the last one says nothing about
        # the level that cut left.
        self._rate_epoch = 0
        self._streak = 0  # successes since the limit last changed
        self._successes = 0
        self._failures = 0
        self._rate_limited = 0
        # The 429 rule. _free_slots: one entry per slot released and not taken again (at most
        # limit - in_flight of them, oldest first): how many 429s in a row that slot has seen
        # (0 when a success or a limit increase freed it). An admission takes the oldest entry
        # and carries its count + 1 (Admission.chain). _outcomes, _rejections: decayed counts
        # (see _RATE_MEMORY) of every success and 429, and of the 429s.
        self._free_slots: deque[int] = deque()
        # The most requests in flight when a success was reported: a level seen to work.
        self._served_level = 0
        # By admission level (index 1..ceiling): decayed counts of admissions and of 429s, kept
        # scaled by _scale (which grows instead of every count shrinking: O(1) per admission).
        self._sent = [0.0] * (ceiling + 1)
        self._refused = [0.0] * (ceiling + 1)
        self._scale = 1.0
        self._outcomes = _PRIOR_OUTCOMES
        self._rejections = _PRIOR_REJECTIONS
        self._regime: _Regime = "start"
        # The lowest level at which load 429s were seen and not disproved since (None: no known
        # cliff); the limit is below it. _failed_probes: load cuts back from this same cliff.
        self._cliff: int | None = None
        self._failed_probes = 0
        # LimiterPolicy.probe_by_share: the cliff the last yield set (None: none pending), and
        # how many yields in a row gave away a slot nobody took.
        self._yielded_cliff: int | None = None
        self._idle_yields = _START_YIELD_BACKOFF
        self._cliff_passes = 0  # requests admitted at the cliff since it was set, served
        # Successes admitted at the cliff while the limit stands at it, since it got there or
        # since the last 429 (see _QUIET_ROUNDS).
        self._quiet_at_cliff = 0
        self._quickest = math.inf  # see _served_together
        # (admitted at, answered at) of the latest successes, for _served_together.
        self._recent_answers: deque[tuple[float, float]] = deque(maxlen=4 * ceiling + 16)
        self._latency = LatencySignal(policy) if policy.latency_signal else None
        # LimiterPolicy.follow_use. Invariant: _peak is the most requests in flight since the
        # limit was last set or its use last checked (at least _in_flight then);
        # _use_successes: successes since then; _use_area: the integral of _in_flight over
        # time from _use_since to _use_last (when _in_flight last changed).
        self._peak = 0
        # The most in flight since the limit was last set (whether it binds: growth waits).
        self._reached = 0
        self._use_successes = 0
        self._use_area = 0.0
        self._use_since = self._use_last = -math.inf

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
        """``-inf``: this limit never pauses admission (a spent budget is the budget's
        business, and 429s cut or do nothing). For the drivers' common interface."""
        return -math.inf

    @property
    def rate_epoch(self) -> int:
        """How many load cuts (429s) the limit has taken."""
        return self._rate_epoch

    @property
    def cliff(self) -> int | None:
        """The lowest level at which 429s last showed load (the limit is below it), or
        ``None``."""
        return self._cliff

    @property
    def rejection_rate(self) -> float:
        """The share of sporadic 429s as estimated so far (a decayed mean, 5 % before any data;
        see the module docstring for which requests it counts)."""
        return self._rejections / self._outcomes

    @property
    def load_run(self) -> int:
        """How many 429s in a row on one slot now count as load (see
        :func:`runs_that_mean_load`)."""
        return runs_that_mean_load(self._noise_bound(), self._policy.noise_false_alarm)

    def _noise_bound(self) -> float:
        """A generous estimate of the sporadic 429 rate: the decayed mean plus two standard
        errors, so that a rate underestimated from few outcomes does not make runs of noise
        look like load."""
        rate = self.rejection_rate
        bound = rate + 2.0 * math.sqrt(rate * (1.0 - rate) / self._outcomes)
        return min(1.0, self._policy.max_noise_rate, bound)

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

    def can_admit(self, now: float) -> bool:
        """Whether :meth:`admit` may be called now."""
        return self._in_flight < self.admission_cap

    # -- events ------------------------------------------------------------------------------
    def admit(self, now: float) -> Admission:
        """Count one more request in flight and return its ticket.

        Raises:
          RuntimeError: if :meth:`can_admit` is false (full, or probing).
        """
        if not self.can_admit(now):
            raise RuntimeError(
                "AimdController.admit() was called while admission is closed (limit reached); "
                "check can_admit(now) first."
            )
        self._note_use(now)
        self._in_flight += 1
        if self._in_flight > self._peak:
            self._peak = self._in_flight
        if self._in_flight > self._reached:
            self._reached = self._in_flight
        chain = (self._free_slots.popleft() if self._free_slots else 0) + 1
        serial = self._next_serial
        self._next_serial += 1
        self._outstanding[serial] = now
        self._count_sent(self._in_flight)
        window = None
        if self._latency is not None:
            window = self._latency.admitted(serial, now, self._in_flight)
        return Admission(
            serial=serial,
            admitted_at=now,
            rate_epoch=self._rate_epoch,
            window=window,
            level=self._in_flight,
            chain=chain,
        )

    def record_success(self, admission: Admission, now: float) -> LimitChange | None:
        """The request succeeded; its latency is ``now - admission.admitted_at``.

        Raises:
          RuntimeError: if this admission was already recorded.
        """
        latency = max(now - admission.admitted_at, MIN_LATENCY)
        self._release(admission, latency, now)
        self._successes += 1
        self._served_level = max(self._served_level, self._in_flight + 1)
        self._quickest = min(latency, self._quickest * _QUICKEST_DRIFT)
        if admission.chain == 1 and admission.level <= self._served_level:
            self._count_outcome(rejected=False)
        self._free(0)
        self._streak += 1
        cliff = self._cliff
        if (
            cliff is not None
            and admission.level >= cliff
            and admission.rate_epoch == self._rate_epoch
        ):
            if self._limit >= cliff:
                self._quiet_at_cliff += 1
            if self._served_together(admission, now) >= cliff:
                # A request sent at the cliff was served together with the cliff's worth of
                # others: the capacity moved, or the 429s that set the cliff were noise after
                # all. Twice, and the limit grows back freely (see _maybe_increase).
                self._cliff_passes += 1
            if self._quiet_at_cliff >= _QUIET_ROUNDS * cliff:
                # Round trips at the cliff without a 429 (_QUIET_ROUNDS): the same verdict
                # when a steady latency spreads the requests out, so that few of those sent
                # before one are still served when it arrives (_served_together counts about
                # half the server then, and a risen capacity sat at the cliff for 7 s: hostile
                # review, branch hostile21, row 4b).
                self._cliff_passes = _CLIFF_PASSES
            if self._cliff_passes >= _CLIFF_PASSES:
                if self._cliff == self._yielded_cliff:
                    self._idle_yields += 1  # we gave a slot away and nobody took it
                    self._yielded_cliff = None
                self._cliff = None
                self._failed_probes = 0
        self._recent_answers.append((admission.admitted_at, now))
        change = self._after_release(now)
        if change is None and self._policy.follow_use:
            change = self._check_use(now)
        return change if change is not None else self._maybe_increase(admission, now)

    def record_rate_limited(
        self, admission: Admission, now: float, *, spent_budget: bool = False
    ) -> LimitChange | None:
        """The endpoint answered 429.

        Whether the 429 shows load is decided here: a run of 429s on its slot longer than
        sporadic 429s at the rate seen so far would plausibly give (see
        :func:`runs_that_mean_load`), or a cliff in the 429 rate by level, cuts the limit to the
        requests still in flight. Otherwise nothing changes: the request waits out its own
        delay and goes again (the caller's business). Nothing pauses.

        Args:
          admission: the request's ticket.
          now: the current time.
          spent_budget: the 429's headers say a request or token budget is spent: neither load
            nor noise (the budget holds admissions back until it can pay); the limit and the
            statistics of load and noise are left alone.

        Raises:
          RuntimeError: if this admission was already recorded.
        """
        self._release(admission, None, now)
        self._rate_limited += 1
        if spent_budget:
            self._free(0)
            return self._after_release(now)
        self._quiet_at_cliff = 0  # load or noise: the cliff has not been quiet
        run = self.load_run  # before counting this one: what noise alone would do
        if admission.chain == 1 and admission.level <= self._served_level:
            self._count_outcome(rejected=True)
        self._count_refused(admission.level)
        self._free(admission.chain)
        if admission.chain < run and not self._cliff_at(admission.level):
            return self._after_release(now)  # sporadic, as far as we can tell
        # Load: the server turned requests away while ours filled it. The requests still in
        # flight are what it holds (or more); the level above them is the cliff.
        held = max(self._in_flight, self._held_when_refused(admission))
        if self._policy.probe_by_share:
            # Shards: a limiter gives up part of what it holds, the more the nearer it is to
            # its ceiling (35 % there), so that the room reaches the others' probes: cutting
            # to what it holds alone keeps whatever split the start-up burst made.
            held -= int(held * _SHARE_CUT * self._limit / self._ceiling)
        new = max(1, min(self._limit, max(held, (self._limit + 1) // 2)))
        if new >= self._limit:
            return self._after_release(now)  # already below: these 429s report the past
        old = self._limit
        cliff = new + 1
        self._yielded_cliff, self._idle_yields = None, 0  # others want room: yield readily
        self._failed_probes = self._failed_probes + 1 if self._cliff == cliff else 0
        self._cliff = cliff
        self._cliff_passes = 0
        self._regime = "rate"
        self._rate_epoch += 1
        self._set_limit(new, now, settle=True)
        return LimitChange(
            old=old,
            new=new,
            reason="rate_limited",
            at=now,
            rejections=admission.chain,
            concurrency=self._in_flight + 1,
        )

    def record_failure(self, admission: Admission, now: float) -> LimitChange | None:
        """Another error (timeout, 5xx, connection): released and counted, no signal.

        Returns a change only if this release completed a latency window that decided one.

        Raises:
          RuntimeError: if this admission was already recorded.
        """
        self._release(admission, None, now)
        self._failures += 1
        self._free(0)
        return self._after_release(now)

    def record_abandoned(self, admission: Admission, now: float) -> LimitChange | None:
        """Released without an outcome (the caller left early, e.g. cancelled): not counted.

        Raises:
          RuntimeError: if this admission was already recorded.
        """
        self._release(admission, None, now)
        self._free(0)
        return self._after_release(now)

    # -- internals ---------------------------------------------------------------------------
    def _free(self, rejections: int) -> None:
        """A slot was released after ``rejections`` 429s in a row on it."""
        if len(self._free_slots) < self._limit - self._in_flight:
            self._free_slots.append(rejections)

    def _held_when_refused(self, admission: Admission) -> int:
        """How many of ours the server held when it refused ``admission``, at least: the
        requests sent before it and still in flight, and those sent before it whose answers
        came back after it was sent — the server answered them after refusing it, or while
        the refusal was on its way.

        Not ``_in_flight`` alone: over loopback HTTP the answer to a request the server held
        when it refused this one is often read first, and a cut to what is left in flight
        then lands below the hidden limit (a hidden 4 cut to 2 for 3 s in one of three real
        runs; hostile review, branch hostile21).
        """
        sent = admission.admitted_at
        raced = sum(1 for at, done in self._recent_answers if at <= sent < done)
        before = sum(1 for serial in self._outstanding if serial < admission.serial)
        return before + raced

    def _served_together(self, admission: Admission, now: float) -> int:
        """How many requests the server held when this one (a success) reached it, as far as
        we can tell: itself, and every request sent before it that was still being served a
        margin later — answered successfully at least half the quickest answer lately after
        this one went out, or still in flight and out that long (a 429 comes back far
        sooner, so those were accepted).

        Not its admission level alone: a request sent while another one's answer was on its
        way counts that one, which the server had already finished. Over loopback HTTP that
        race is common, and levels alone let a hidden limit of 8 look like 9 or more.
        """
        sent = admission.admitted_at
        margin = 0.5 * self._quickest
        if not math.isfinite(margin):
            return 1
        still_served = sum(
            1 for at, done in self._recent_answers if at <= sent and done >= sent + margin
        )
        in_flight = sum(1 for at in self._outstanding.values() if at <= sent and now - at >= margin)
        return 1 + still_served + in_flight

    def _count_sent(self, level: int) -> None:
        """An admission at ``level``: counted when it is sent, not when it ends, because a 429
        comes back at once and a success a whole latency later: counting outcomes as they
        end would make every level just used look refused (the first answers at a level are
        its 429s)."""
        level = min(max(level, 1), self._ceiling)
        self._scale /= 1.0 - 1.0 / _RATE_MEMORY
        if self._scale > 1e12:
            self._sent = [x / self._scale for x in self._sent]
            self._refused = [x / self._scale for x in self._refused]
            self._scale = 1.0
        self._sent[level] += self._scale

    def _count_refused(self, level: int) -> None:
        # At the scale of now, a little heavier than when it was sent: never more than sent.
        level = min(max(level, 1), self._ceiling)
        self._refused[level] = min(self._sent[level], self._refused[level] + self._scale)

    def _cliff_at(self, level: int) -> bool:
        """Whether 429s are significantly more frequent among requests admitted at ``level``
        up to the limit than among those admitted below it (one-sided two-proportion z-test,
        half a pseudo-count in every cell). Levels above the limit are left out: what happened
        there belongs to a regime the limit has already left (a start-up burst, say)."""
        level = min(max(level, 1), self._ceiling)
        top = max(level, self._limit) + 1
        sent_hi = math.fsum(self._sent[level:top]) / self._scale + 1.0
        refused_hi = math.fsum(self._refused[level:top]) / self._scale + 0.5
        sent_lo = math.fsum(self._sent[:level]) / self._scale + 1.0
        refused_lo = math.fsum(self._refused[:level]) / self._scale + 0.5
        hi, lo = refused_hi / sent_hi, refused_lo / sent_lo
        pooled = (refused_hi + refused_lo) / (sent_hi + sent_lo)
        spread = math.sqrt(pooled * (1.0 - pooled) * (1.0 / sent_hi + 1.0 / sent_lo))
        return hi - lo > _CLIFF_Z * spread

    def _count_outcome(self, *, rejected: bool) -> None:
        keep = 1.0 - 1.0 / _RATE_MEMORY
        self._outcomes = self._outcomes * keep + 1.0
        self._rejections = self._rejections * keep + (1.0 if rejected else 0.0)

    def _release(self, admission: Admission, latency: float | None, now: float) -> None:
        if admission.serial not in self._outstanding:
            raise RuntimeError(
                f"admission #{admission.serial} was already released (or was not admitted by "
                "this controller); report each request's outcome exactly once."
            )
        del self._outstanding[admission.serial]
        self._note_use(now)
        self._in_flight -= 1
        if self._latency is not None:
            self._latency.released(admission, latency)

    def _set_limit(self, new: int, now: float, *, settle: bool = False) -> None:
        """Apply a new limit: a fresh measurement."""
        self._limit = new
        self._streak = 0
        self._quiet_at_cliff = 0
        self._restart_use(now)
        self._reached = self._in_flight
        free = max(0, new - self._in_flight)
        while len(self._free_slots) > free:
            self._free_slots.pop()
        self._free_slots.extend([0] * (free - len(self._free_slots)))
        if self._latency is not None:
            self._latency.limit_changed(now, settle=settle)

    def _probe_after(self) -> int:
        """Successes at the limit before the cliff above it is probed again."""
        p = self._policy
        after = p.successes_per_increase * min(
            1 << min(self._failed_probes, 30), p.cliff_probe_backoff
        )
        if p.probe_by_share:
            # Probes per second fall as the share grows: a limiter near its ceiling gives way
            # to one far below it (measured in tests/test_rate_sim.py, docs/scale-out.md).
            # At most one probe per round trip's worth of successes (``limit`` of them): a
            # limiter far below its ceiling would otherwise probe after every success and keep
            # its limit one above what it holds most of the time.
            return max(self._limit, math.ceil(after * (self._limit / self._ceiling) ** 2))
        return after

    def _note_use(self, now: float) -> None:
        """Add what was in flight since the last change of ``_in_flight`` to ``_use_area``."""
        if now > self._use_last:
            if math.isfinite(self._use_last):
                self._use_area += self._in_flight * (now - self._use_last)
            else:
                self._use_since = now
            self._use_last = now

    def _restart_use(self, now: float) -> None:
        """A new window of use: from now, at what is in flight now."""
        self._peak = self._in_flight
        self._use_successes = 0
        self._use_area = 0.0
        self._use_since = self._use_last = now

    def _check_use(self, now: float) -> LimitChange | None:
        """``LimiterPolicy.follow_use``: after a window of successes, lower the limit to the mean
        number in flight over the window's time (rounded up, at most the most in flight) when
        that is below it (a limit is a promise of concurrency to the endpoint; one the
        application does not fill promises too much). The mean, not the peak: a burst of new
        row groups touches the limit once per window and would keep it. Over time, not at the
        successes: answers that come back together would count the limit down to half.
        Not after a latency cut (that limit is the latency signal's) and not while a probe
        holds admissions below the limit."""
        if self._regime == "latency" or self.probing:
            return None
        self._use_successes += 1
        window = max(self._limit, self._policy.successes_per_increase)
        if self._use_successes < window:
            return None
        successes = self._use_successes
        self._note_use(now)
        elapsed = now - self._use_since
        mean = self._use_area / elapsed if elapsed > 0 and math.isfinite(elapsed) else self._peak
        used = max(1, min(self._peak, math.ceil(mean - 1e-9)))
        if used >= self._limit:
            self._restart_use(now)
            return None
        old = self._limit
        if self._regime == "start":
            self._regime = "rate"  # grow back as after a cut: doubling while the limit binds
        self._set_limit(used, now)
        return LimitChange(
            old=old, new=used, reason="unused", at=now, concurrency=used, successes=successes
        )

    def _maybe_increase(self, admission: Admission, now: float) -> LimitChange | None:
        limit = self._limit
        if limit >= self._ceiling:
            if self._policy.probe_by_share and self._regime != "latency" and limit > 1:
                return self._maybe_yield(now)
            self._streak = 0
            return None
        if self._policy.follow_use and self._reached < limit:
            return None  # not the binding constraint since it was set: growing says nothing
        latency = self._latency
        if self._regime == "rate":
            if latency is not None and latency.queue_building:
                return None
            cliff = self._cliff
            if cliff is None or limit + 1 < cliff:
                # Nothing known above, or below a known cliff: grow by one per success while
                # the limit is in use — less than twice what was in flight when this request
                # went out, or is now — about doubling per round trip (TCP slow start, with
                # Linux's test of whether the window limits the sender).
                if limit >= 2 * max(admission.level, self._in_flight + 1):
                    return None
            elif limit >= cliff or self._streak < self._probe_after():
                return None  # a probe is out (its answer decides), or not yet due
            # else: probe the cliff, once per _probe_after() successes
        else:
            steps = self._policy.successes_per_increase
            if self._streak < steps:
                return None
            if latency is not None and not latency.allows_growth:
                return None  # keep the streak: grow as soon as a window says latency is fine
        streak = self._streak
        self._set_limit(limit + 1, now)
        return LimitChange(old=limit, new=limit + 1, reason="increase", at=now, successes=streak)

    def _maybe_yield(self, now: float) -> LimitChange | None:
        """``probe_by_share`` at the ceiling: a probe that cannot go up goes down. When a
        cliff probe would be due, leave one slot to the other limiters on the endpoint (the
        limit one below the ceiling, which becomes the cliff), and probe it back after the
        usual number of successes: if another limiter took the slot meanwhile, the probe meets
        429s and the load cut gives way (see ``record_rate_limited``). Without it a limiter
        whose ceiling equals the hidden capacity holds all of it and never learns that another
        one starves (it never sees a 429). Due after ``_probe_after() << _idle_yields``
        successes at the limit: yields whose slot nobody took back off (see
        ``_MAX_YIELD_BACKOFF``)."""
        due = self._probe_after() << min(self._idle_yields, _MAX_YIELD_BACKOFF)
        if self._reached < self._limit or self._streak < due:
            return None
        streak, old = self._streak, self._limit
        self._cliff = self._yielded_cliff = old
        self._regime = "rate"  # the way back is a cliff probe, as after a load cut
        self._cliff_passes = 0
        self._set_limit(old - 1, now)
        return LimitChange(old=old, new=old - 1, reason="yield", at=now, successes=streak)

    def _after_release(self, now: float) -> LimitChange | None:
        if self._latency is None:
            return None
        change = self._latency.decide(now, self._limit)
        if change is not None:
            # The cap jumps from the probe's up to the new limit: settle before judging.
            self._regime = "latency"
            self._cliff = None
            self._set_limit(change.new, now, settle=True)
        return change

    def __repr__(self) -> str:
        return (
            f"<AimdController limit={self._limit}/{self._ceiling} in_flight={self._in_flight} "
            f"cap={self.admission_cap}>"
        )
