"""What both limit algorithms speak: the policy, the admission ticket, the limit change.

An adaptive limit (:class:`~trio_designer._core._aimd.AimdController`) combines two algorithms,
one file each: the 429 rule in :mod:`trio_designer._core._aimd`, and the latency signal (the
GPU knee) in :mod:`trio_designer._core._latency`. The values they share live here, so that
both can import them and neither imports the other's internals: the tunables of both
(:class:`LimiterPolicy`), the ticket of one admitted request (:class:`Admission`), and the record of
one change of the limit (:class:`LimitChange`). Pure values: no trio, no I/O.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["DEFAULT_POLICY", "Admission", "ChangeReason", "LimitChange", "LimiterPolicy"]

ChangeReason = Literal["rate_limited", "latency", "increase", "unused", "yield"]
"""Why a limit changed: a 429 cut, a latency cut, additive increase, a limit left unused
(``LimiterPolicy.follow_use``) lowered to the concurrency used, or a slot left to the other
limiters of an endpoint (``LimiterPolicy.probe_by_share`` at the ceiling)."""


def _in_open_unit_interval(
    _instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"LimiterPolicy.{attribute.name} must be between 0 and 1 (exclusive), got {value}."
        )


@attrs.frozen(kw_only=True)
class LimiterPolicy:
    """The tunables of one adaptive limiter, with the defaults argued in the module docstrings
    of :mod:`trio_designer._core._aimd` (429s) and :mod:`trio_designer._core._latency`.

    Attributes:
      successes_per_increase: successes (outside pauses) per +1 step of the limit after a
        latency cut, and before the first probe of a level where 429s showed load.
      cliff_probe_backoff: a level whose probes keep drawing load 429s is probed again after
        ``successes_per_increase`` successes, doubling with every failed probe up to this
        many times that.
      noise_false_alarm: how unlikely a run of 429s must be under sporadic 429s alone (at the
        rate seen so far) before it counts as load: a smaller value needs longer runs.
      cooldown: the static limiter's pause after a 429 without a usable ``Retry-After`` (the
        adaptive limit never pauses: see ``docs/adaptive-limits.md``).
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
      probe_by_share: probe a known cliff after ``(limit / ceiling)²`` times the usual number
        of successes (at least 1): a limiter far below its ceiling probes more often per
        second than one near it. Several limiters sharing one endpoint (the shards of a run,
        each with its share of the run's ``max_parallel_requests`` as ceiling) then even out
        their shares of a hidden capacity instead of keeping whatever the start-up burst gave
        them; sharded runs turn it on (``docs/scale-out.md``). Off by default: alone on an
        endpoint it only probes a low cliff more often (more 429s, the same throughput).
      max_noise_rate: the highest sporadic 429 rate the controller will believe in (``1.0``:
        no cap). A runs-of-429s test judges load against the noise rate seen on slots freed by
        our own successes; when other processes share the endpoint they take those slots, the
        rate looks high and load passes for noise (four shards on one endpoint kept their
        limits at their ceilings, twice the hidden capacity, through thousands of 429s). With a
        cap of 0.1, four 429s in a row on a slot are always load. Sharded runs use 0.1; the
        price is that sporadic 429s above 10 % are then taken for load.
      follow_use: keep the limit at the concurrency actually used (after RFC 7661, TCP's
        congestion window validation). The limit grows only when as many requests as it allows
        were in flight at some point since it was last set (it was the binding constraint), and
        after ``max(limit, successes_per_increase)`` successes at which fewer were in flight on
        average, it is lowered to that mean, rounded up (reason ``"unused"``; not after a
        latency cut, and not while a probe runs). Without it a limit that the application does
        not fill keeps whatever level it last reached: one limiter alone loses nothing by that,
        but several sharing an endpoint then sum to more than it serves. Sharded runs turn it
        on: the sum of the shards' limits is then the concurrency they really offer
        (``docs/scale-out.md``).

    Raises:
      ValueError: when a value is out of range, or ``latency_tolerance < latency_hold``.
    """

    successes_per_increase: int = attrs.field(default=25, validator=attrs.validators.ge(1))
    cliff_probe_backoff: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    noise_false_alarm: float = attrs.field(default=0.001, validator=_in_open_unit_interval)
    cooldown: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
    latency_signal: bool = True
    latency_tolerance: float = attrs.field(default=1.5, validator=attrs.validators.ge(1.0))
    latency_hold: float = attrs.field(default=1.2, validator=attrs.validators.ge(1.0))
    latency_samples: int = attrs.field(default=32, validator=attrs.validators.ge(4))
    latency_confidence: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
    latency_decrease_floor: float = attrs.field(default=0.5, validator=_in_open_unit_interval)
    probe_interval: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    probe_by_share: bool = False
    max_noise_rate: float = attrs.field(
        default=1.0,
        validator=attrs.validators.and_(attrs.validators.gt(0.0), attrs.validators.le(1.0)),
    )
    follow_use: bool = False

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
    """The rate epoch at admission (it grows with every 429 cut): a success admitted before
    the last cut says nothing about the level the cut left."""
    level: int = 1
    """How many requests were in flight once this one was admitted (itself included)."""
    chain: int = 1
    """1 + the 429s in a row on the slot this request took (see ``_core/_aimd.py``)."""
    window: int | None
    """The latency window whose cohort this request belongs to, or ``None``."""


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
    rejections: int = 0
    """For ``rate_limited``: the 429s in a row (no success between them) that showed load."""
    recent_latency: float | None = None
    """For ``latency``: the mean latency measured at the old limit."""
    baseline_latency: float | None = None
    """For ``latency``: the baseline it was compared with."""
    concurrency: int = 0
    """For ``latency``: the peak number in flight while ``recent_latency`` was measured; for
    ``rate_limited``: how many were in flight when the last of the ``rejections`` came back;
    for ``unused``: the mean in flight at the ``successes``, rounded up (the new limit)."""
    probed_concurrency: int = 0
    """For ``latency``: the highest admission cap at which the probe before the cut measured
    the baseline; the cut may go down to it even below ``latency_decrease_floor``."""
    successes: int = 0
    """For ``increase``: the successes that earned the step; for ``unused``: the successes
    over which the limit was not reached."""

    def describe(self) -> str:
        """Why, in words: ``"load: 3 429s in a row at 9 in flight"``."""
        if self.reason == "rate_limited":
            return f"load: {self.rejections} 429s in a row at {self.concurrency} in flight"
        if self.reason == "latency":
            recent, baseline = self.recent_latency or 0.0, self.baseline_latency or 1.0
            return (
                f"latency {recent:.3g} s at {self.concurrency} in flight is "
                f"{recent / baseline:.1f}x the {baseline:.3g} s baseline"
            )
        if self.reason == "unused":
            return f"unused: at most {self.concurrency} in flight over {self.successes} successes"
        if self.reason == "yield":
            return f"a slot left to the other shards after {self.successes} successes"
        return f"{self.successes} successes"
