"""Configuration and statistics values of the simulated endpoint.

Three frozen attrs classes describe one simulated model, and three more describe what the
server observed. They are plain values: building one does no I/O and starts nothing.
:mod:`._profile` reads them from YAML profiles and command-line specs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from attrs import validators as v

Mode = Literal["hosted", "gpu"]
"""``"hosted"``: a rate-limited API (429s). ``"gpu"``: a self-hosted server (queues, no 429)."""

HeaderStyle = Literal["openai", "ietf", "none"]
"""How a model with budgets advertises them: OpenAI's ``x-ratelimit-*``, the IETF draft's
``RateLimit-Policy`` + ``RateLimit``, or not at all."""

RetryAfterStyle = Literal["seconds", "http-date", "none"]
"""How a 429 says when to come back: ``Retry-After: 3`` + ``retry-after-ms: 2500``, an HTTP date
in ``Retry-After`` (and no ``retry-after-ms``), or nothing at all."""

FAULT_KINDS: tuple[str, ...] = (
    "429",
    "500",
    "503",
    "reset",
    "hang",
    "empty",
    "malformed",
    "truncated",
    "trickle",
    "oversize",
    "content_filter",
)
"""Every fault the simulator can inject, in the order their rates are laid end to end (new kinds
go at the end, so a seed keeps drawing the same faults for the old ones)."""

MIN_OVERSIZE_BYTES = 4096
"""The smallest ``oversize_bytes``: a normal answer's body must fit below it."""


def _probability(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability between 0 and 1, got {value!r}")


def _finite_non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _finite_positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _oversize(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_OVERSIZE_BYTES:
        raise ValueError(
            f"{attribute.name} must be a whole number >= {MIN_OVERSIZE_BYTES}, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Latency:
    """How long one request spends in service.

    The service time of a request is ``lognormvariate(log(median), sigma) + per_output_token ×
    completion_tokens`` seconds, drawn from the model's seeded RNG. With ``sigma == 0`` the first
    term is exactly ``median`` (no floating point round trip), so virtual-time tests can assert
    exact makespans.

    Attributes:
      median: median seconds per request, before the per-token part.
      sigma: the lognormal shape (0 = fixed latency; 0.3 is a realistic spread; 1 is heavy).
      per_output_token: extra seconds per generated token (decode speed).
    """

    median: float = attrs.field(default=0.2, validator=_finite_non_negative)
    sigma: float = attrs.field(default=0.0, validator=_finite_non_negative)
    per_output_token: float = attrs.field(default=0.0, validator=_finite_non_negative)


def _rates_sum_to_at_most_one(instance: Faults, attribute: object, value: object) -> None:
    total = sum(instance.rate(kind) for kind in FAULT_KINDS)
    if total > 1.0 + 1e-9:
        raise ValueError(f"the fault rates add up to {total:g}; their sum must be at most 1")


@attrs.frozen(kw_only=True)
class Faults:
    """Per-request fault probabilities, drawn from the model's seeded fault RNG.

    Each admitted request draws one number ``u`` in ``[0, 1)``; the rates are laid end to end in
    the order of the attributes below and ``u`` picks at most one fault, so the rates must add up
    to at most 1. What the client sees:

    * ``rate_429``: an immediate 429 with ``Retry-After`` and ``x-ratelimit-*`` headers;
    * ``rate_500`` / ``rate_503``: an immediate 500 / 503 with an OpenAI-style error body;
    * ``rate_reset``: the connection closes without a response (httpx raises
      ``RemoteProtocolError: Server disconnected without sending a response.``);
    * ``rate_hang``: the request sits in service for ``hang_seconds`` instead of its latency,
      then answers normally (if the client is still there);
    * ``rate_empty``: a 200 whose message content is ``""``;
    * ``rate_malformed``: a 200 whose content is not valid JSON (JSON answers get a missing
      colon, text and code answers get an unterminated JSON fragment);
    * ``rate_truncated``: a 200 whose content is cut in half, with ``finish_reason == "length"``;
    * ``rate_trickle``: a normal 200 whose body is sent one byte every ``trickle_interval``
      seconds (a client whose timeout only bounds each read never finishes);
    * ``rate_oversize``: a 200 whose body is ``oversize_bytes`` long (valid JSON when read
      whole: the message content is padded);
    * ``rate_content_filter``: a 200 with ``finish_reason == "content_filter"`` and only the
      first quarter of the content.

    Embedding requests only suffer the transport-level faults (429, 500, 503, reset, hang,
    trickle).
    """

    rate_429: float = attrs.field(default=0.0, validator=_probability)
    rate_500: float = attrs.field(default=0.0, validator=_probability)
    rate_503: float = attrs.field(default=0.0, validator=_probability)
    rate_reset: float = attrs.field(default=0.0, validator=_probability)
    rate_hang: float = attrs.field(default=0.0, validator=_probability)
    hang_seconds: float = attrs.field(default=3600.0, validator=_finite_non_negative)
    rate_empty: float = attrs.field(default=0.0, validator=_probability)
    rate_malformed: float = attrs.field(default=0.0, validator=_probability)
    rate_truncated: float = attrs.field(default=0.0, validator=_probability)
    rate_trickle: float = attrs.field(default=0.0, validator=_probability)
    trickle_interval: float = attrs.field(default=1.0, validator=_finite_positive)
    rate_oversize: float = attrs.field(default=0.0, validator=_probability)
    oversize_bytes: int = attrs.field(default=10 * 1024 * 1024, validator=_oversize)
    rate_content_filter: float = attrs.field(
        default=0.0, validator=[_probability, _rates_sum_to_at_most_one]
    )

    def rate(self, kind: str) -> float:
        """The probability of fault ``kind`` (one of :data:`FAULT_KINDS`)."""
        value: float = getattr(self, f"rate_{kind}")
        return value


def _optional_positive(
    instance: object, attribute: attrs.Attribute[int | None], value: object
) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name} must be a whole number >= 1 or None, got {value!r}")


def _name(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"name must be a non-empty string, got {value!r}")


def _pairs(value: object) -> object:
    """A list of pairs (YAML's ``[[0, 32], [30, 8]]``) as a tuple of tuples; else unchanged."""
    if isinstance(value, list | tuple) and all(isinstance(p, list | tuple) for p in value):
        return tuple(tuple(p) for p in value)
    return value


def _none_word(value: Any) -> Any:
    """``None`` (YAML's ``null``, the CLI's ``none``) as the word ``"none"``."""
    return "none" if value is None else value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _capacity_schedule(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    steps = value if isinstance(value, tuple) else None
    if steps is None or not all(
        len(step) == 2
        and _is_number(step[0])
        and step[0] >= 0
        and isinstance(step[1], int)
        and not isinstance(step[1], bool)
        and step[1] >= 1
        for step in steps
    ):
        raise ValueError(
            f"capacity_schedule must be a list of [seconds >= 0, capacity >= 1] pairs "
            f"(on the command line: 0:32/30:8), got {value!r}"
        )
    times = [step[0] for step in steps]
    if times != sorted(set(times)):
        raise ValueError(f"capacity_schedule times must increase strictly, got {times!r}")


def _outages(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    windows = value if isinstance(value, tuple) else None
    if windows is None or not all(
        len(w) == 2 and _is_number(w[0]) and _is_number(w[1]) and 0 <= w[0] < w[1] for w in windows
    ):
        raise ValueError(
            f"outages must be a list of [start, end] pairs with 0 <= start < end "
            f"(on the command line: 10:15/40:42), got {value!r}"
        )
    for (_, end), (start, _) in itertools.pairwise(windows):
        if start < end:
            raise ValueError(f"outages must be in order and must not overlap, got {value!r}")


@attrs.frozen(kw_only=True)
class SimulatedModel:
    """One model served by the simulator.

    Example::

        SimulatedModel(name="gen", mode="gpu", capacity=16, latency=Latency(median=0.5, sigma=0.3))

    Attributes:
      name: the model id clients send as ``"model"``.
      latency: the service-time distribution.
      mode: ``"hosted"`` behaves like a rate-limited API: beyond ``capacity`` concurrent requests,
        or over the ``rpm``/``tpm`` budgets, it answers 429 at once. ``"gpu"`` behaves like a
        self-hosted server (vLLM): it never answers 429 for load; ``capacity`` requests are in
        service at once and the rest wait in a FIFO queue, so latency grows with load.
      capacity: hosted: most concurrent requests before 429; gpu: concurrent service slots.
        Never advertised in headers (a hidden limit).
      capacity_schedule: a capacity that moves over time: ``((0, 32), (30, 8), (60, 32))`` means
        32 from the start, 8 from 30 s after the simulator started, 32 again from 60 s. Before
        the first step, ``capacity`` applies. Requests already admitted are never evicted.
      rpm: hosted only: the request budget, a bucket of ``rpm`` requests refilled continuously
        at ``rpm`` per 60 s; None for no budget.
      tpm: hosted only: the token budget, likewise; a request is charged its prompt tokens
        plus ``max_tokens`` (see docs/simulator.md for the exact rule).
      retry_after: seconds advertised on a 429 for capacity and injected 429s (budget 429s
        advertise the exact time until the budget has room).
      retry_after_header: how a 429 carries its wait: ``"seconds"`` (``Retry-After`` in whole
        seconds rounded up, plus ``retry-after-ms``), ``"http-date"`` (``Retry-After`` as an HTTP
        date only) or ``"none"`` (neither: the client must guess).
      ratelimit_headers: how a model with ``rpm``/``tpm`` advertises them on every response:
        ``"openai"`` (``x-ratelimit-*``), ``"ietf"`` (``RateLimit-Policy`` and ``RateLimit``) or
        ``"none"``.
      outages: windows ``((start, end), ...)`` in seconds since the simulator started during
        which the model answers 503 at once and drops the requests it was serving (an endpoint
        restarting).
      faults: fault-injection rates.
      seed: seeds the latency and fault RNGs (together with ``name``). Content does not depend
        on it: the same request gets the same answer from any model of the same name.
    """

    name: str = attrs.field(validator=_name)
    latency: Latency = attrs.field(factory=Latency, validator=v.instance_of(Latency))
    mode: Mode = attrs.field(default="hosted", validator=v.in_(("hosted", "gpu")))
    capacity: int = attrs.field(default=64, validator=[v.instance_of(int), v.ge(1)])
    capacity_schedule: tuple[tuple[float, int], ...] = attrs.field(
        default=(), converter=_pairs, validator=_capacity_schedule
    )
    rpm: int | None = attrs.field(default=None, validator=_optional_positive)
    tpm: int | None = attrs.field(default=None, validator=_optional_positive)
    retry_after: float = attrs.field(default=1.0, validator=_finite_non_negative)
    retry_after_header: RetryAfterStyle = attrs.field(
        default="seconds",
        converter=_none_word,
        validator=v.in_(("seconds", "http-date", "none")),
    )
    ratelimit_headers: HeaderStyle = attrs.field(
        default="openai", converter=_none_word, validator=v.in_(("openai", "ietf", "none"))
    )
    outages: tuple[tuple[float, float], ...] = attrs.field(
        default=(), converter=_pairs, validator=_outages
    )
    faults: Faults = attrs.field(factory=Faults, validator=v.instance_of(Faults))
    seed: int = attrs.field(default=0, validator=v.instance_of(int))


# --------------------------------------------------------------------------- statistics


LimitedBy = Literal["capacity", "rpm", "tpm", "injected"]
"""Why a 429 was sent: the (hidden) concurrency limit, a budget, or an injected fault."""


@attrs.frozen(kw_only=True)
class ModelStats:
    """What the simulator observed for one model since start (or the last reset).

    Attributes:
      requests: requests received for this model (every status, 429s included).
      in_flight: admitted requests not finished yet (queued + in service). Live; not reset.
      queued: admitted requests waiting for a service slot (gpu mode). Live; not reset.
      peak_concurrency: the largest ``in_flight`` seen. A reset restarts it at the current
        ``in_flight``.
      capacity: the capacity now (moves with ``capacity_schedule``). Live.
      rate_limited: 429 responses sent, for every cause; the four fields below split it.
      limited_by_capacity: 429s because ``capacity`` requests were in flight (hosted).
      limited_by_rpm: 429s because the request budget was spent.
      limited_by_tpm: 429s because the token budget was spent (or the request is larger
        than the whole budget).
      limited_by_injected: injected 429s (``rate_429``); they do not depend on load.
      faults_sent: injected faults of every kind (an injected 429 counts here too).
      unavailable: requests refused with 503 or dropped because an outage window was open.
      admitted: requests charged to the budgets (every request that passed admission).
      charged_tokens: tokens charged to the token budget (see docs/simulator.md for the rule).
      rpm_remaining: whole requests left in the request budget now, or None without ``rpm``.
      tpm_remaining: whole tokens left in the token budget now, or None without ``tpm``.
      input_tokens: prompt tokens of completed requests.
      output_tokens: completion tokens (reasoning included) of completed requests.
      busy_time: the integral over time of ``in_service / capacity``, in seconds; divide by the
        elapsed time for the utilisation (1.0 = every slot busy all the time).
      completed: 200 responses sent (including those carrying injected content faults).
    """

    requests: int = 0
    in_flight: int = 0
    queued: int = 0
    peak_concurrency: int = 0
    capacity: int = 0
    rate_limited: int = 0
    limited_by_capacity: int = 0
    limited_by_rpm: int = 0
    limited_by_tpm: int = 0
    limited_by_injected: int = 0
    faults_sent: int = 0
    unavailable: int = 0
    admitted: int = 0
    charged_tokens: int = 0
    rpm_remaining: int | None = None
    tpm_remaining: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    busy_time: float = 0.0
    completed: int = 0


@attrs.frozen(kw_only=True)
class SimulatorStats:
    """A snapshot of every model's :class:`ModelStats`, keyed by model name.

    ``stats["gen"]`` is shorthand for ``stats.models["gen"]``. ``time`` is ``trio.current_time()``
    when the snapshot was taken; ``unauthorized`` counts the requests refused with 401 (they
    reach no model). (Holds a dict, so it is not hashable.)
    """

    models: Mapping[str, ModelStats]
    time: float
    unauthorized: int = 0

    def __getitem__(self, name: str) -> ModelStats:
        return self.models[name]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape served at ``GET /stats``."""
        return {
            "time": self.time,
            "unauthorized": self.unauthorized,
            "models": {name: attrs.asdict(stats) for name, stats in self.models.items()},
        }


@attrs.frozen(kw_only=True)
class RequestRecord:
    """One request, as the server saw it (times from ``trio.current_time()``).

    Attributes:
      model: the model name.
      start: when the request body had been read (its last byte, by the simulator's server).
      end: when the response was sent (for a trickled body: its last byte), or when the
        connection dropped.
      status: the HTTP status sent; ``0`` for a connection closed without a response (an
        injected reset, or an outage dropping the request); ``499`` when the client went away
        before the answer (nginx's convention).
      queued_for: seconds spent waiting for a service slot (gpu mode), else 0.
      fault: the injected fault (one of ``FAULT_KINDS``), ``"outage"`` for a request refused or
        dropped by an outage window, or None.
      limited_by: for a 429, why (``"capacity"``, ``"rpm"``, ``"tpm"``, ``"injected"``); else None.
      prompt_tokens: the request's prompt tokens (what ``usage.prompt_tokens`` says).
      completion_tokens: completion tokens sent (0 unless the answer went out).
      charged_tokens: tokens charged to the token budget (0 unless admitted).
    """

    model: str
    start: float
    end: float
    status: int
    queued_for: float = 0.0
    fault: str | None = None
    limited_by: LimitedBy | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    charged_tokens: int = 0
