"""What both limit algorithms speak: the policy, the admission ticket, the limit change.

An adaptive limit (:class:`~trio_designer._core._aimd.AimdController`) combines two algorithms,
one file each: the 429 rule in :mod:`trio_designer._core._aimd`, and the latency signal (the
GPU knee) in :mod:`trio_designer._core._latency`. The values they share live here, so that
both can import them and neither imports the other's internals: the tunables of both
(:class:`Policy`), the ticket of one admitted request (:class:`Admission`), and the record of
one change of the limit (:class:`LimitChange`). Pure values: no trio, no I/O.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["DEFAULT_POLICY", "Admission", "ChangeReason", "LimitChange", "Policy"]

ChangeReason = Literal["rate_limited", "latency", "increase"]
"""Why a limit changed: a 429 cut, a latency cut, or additive increase."""


def _in_open_unit_interval(
    _instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"Policy.{attribute.name} must be between 0 and 1 (exclusive), got {value}."
        )


@attrs.frozen(kw_only=True)
class Policy:
    """The tunables of one adaptive limiter, with the defaults argued in the module docstrings
    of :mod:`trio_designer._core._aimd` (429s) and :mod:`trio_designer._core._latency`.

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
