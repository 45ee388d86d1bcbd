"""Configuration and statistics values of the simulated endpoint.

Three frozen attrs classes describe one simulated model, and three more describe what the
server observed. They are plain values: building one does no I/O and starts nothing. The two
named constructors at the bottom read them from the outside world:

* :func:`load_profile` reads a YAML profile (``{models: [{name: ..., latency: {...}}]}``);
* :func:`parse_model_spec` reads the command line's ``NAME:key=value,...`` form.

Both report *every* problem at once in one :class:`~trio_designer.ConfigError`, each prefixed
with the path of the offending field (``models[1].latency.medain: ...``).
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
from attrs import validators as v

from .._core._suggest import did_you_mean
from .._exceptions import ConfigError

Mode = Literal["hosted", "gpu"]
"""``"hosted"``: a rate-limited API (429s). ``"gpu"``: a self-hosted server (queues, no 429)."""

FAULT_KINDS: tuple[str, ...] = (
    "429",
    "500",
    "503",
    "reset",
    "hang",
    "empty",
    "malformed",
    "truncated",
)
"""Every fault the simulator can inject, in the order their rates are laid end to end."""


def _probability(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability between 0 and 1, got {value!r}")


def _finite_non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


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
    * ``rate_truncated``: a 200 whose content is cut in half, with ``finish_reason == "length"``.

    Embedding requests only suffer the HTTP-level faults (429, 500, 503, reset, hang).
    """

    rate_429: float = attrs.field(default=0.0, validator=_probability)
    rate_500: float = attrs.field(default=0.0, validator=_probability)
    rate_503: float = attrs.field(default=0.0, validator=_probability)
    rate_reset: float = attrs.field(default=0.0, validator=_probability)
    rate_hang: float = attrs.field(default=0.0, validator=_probability)
    hang_seconds: float = attrs.field(default=3600.0, validator=_finite_non_negative)
    rate_empty: float = attrs.field(default=0.0, validator=_probability)
    rate_malformed: float = attrs.field(default=0.0, validator=_probability)
    rate_truncated: float = attrs.field(
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
      rpm: hosted only: requests admitted per sliding 60 s window, or None for no budget.
      tpm: hosted only: tokens (prompt + completion) admitted per sliding 60 s window.
      retry_after: seconds advertised in ``Retry-After`` on every 429.
      faults: fault-injection rates.
      seed: seeds the latency and fault RNGs (together with ``name``). Content does not depend
        on it: the same request gets the same answer from any model of the same name.
    """

    name: str = attrs.field(validator=_name)
    latency: Latency = attrs.field(factory=Latency, validator=v.instance_of(Latency))
    mode: Mode = attrs.field(default="hosted", validator=v.in_(("hosted", "gpu")))
    capacity: int = attrs.field(default=64, validator=[v.instance_of(int), v.ge(1)])
    rpm: int | None = attrs.field(default=None, validator=_optional_positive)
    tpm: int | None = attrs.field(default=None, validator=_optional_positive)
    retry_after: float = attrs.field(default=1.0, validator=_finite_non_negative)
    faults: Faults = attrs.field(factory=Faults, validator=v.instance_of(Faults))
    seed: int = attrs.field(default=0, validator=v.instance_of(int))


# --------------------------------------------------------------------------- statistics


@attrs.frozen(kw_only=True)
class ModelStats:
    """What the simulator observed for one model since start (or the last reset).

    Attributes:
      requests: requests received for this model (every status, 429s included).
      in_flight: admitted requests not finished yet (queued + in service). Live; not reset.
      queued: admitted requests waiting for a service slot (gpu mode). Live; not reset.
      peak_concurrency: the largest ``in_flight`` seen. A reset restarts it at the current
        ``in_flight``.
      rate_limited: 429 responses sent (capacity, budgets and injected 429s).
      faults_sent: injected faults of every kind (an injected 429 counts here too).
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
    rate_limited: int = 0
    faults_sent: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    busy_time: float = 0.0
    completed: int = 0


@attrs.frozen(kw_only=True)
class SimulatorStats:
    """A snapshot of every model's :class:`ModelStats`, keyed by model name.

    ``stats["gen"]`` is shorthand for ``stats.models["gen"]``. ``time`` is ``trio.current_time()``
    when the snapshot was taken. (Holds a dict, so it is not hashable.)
    """

    models: Mapping[str, ModelStats]
    time: float

    def __getitem__(self, name: str) -> ModelStats:
        return self.models[name]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape served at ``GET /stats``."""
        return {
            "time": self.time,
            "models": {name: attrs.asdict(stats) for name, stats in self.models.items()},
        }


@attrs.frozen(kw_only=True)
class RequestRecord:
    """One request, as the server saw it (times from ``trio.current_time()``).

    Attributes:
      model: the model name.
      start: when the request body had been read.
      end: when the response was sent (or the connection dropped).
      status: the HTTP status sent; ``0`` for an injected connection reset; ``499`` when the
        client went away before the answer (nginx's convention).
      queued_for: seconds spent waiting for a service slot (gpu mode), else 0.
      fault: the injected fault (one of ``FAULT_KINDS``), or None.
    """

    model: str
    start: float
    end: float
    status: int
    queued_for: float = 0.0
    fault: str | None = None


# --------------------------------------------------------------------------- loading

_LATENCY_KEYS = tuple(a.name for a in attrs.fields(Latency))
_FAULT_KEYS = tuple(a.name for a in attrs.fields(Faults))
_MODEL_KEYS = tuple(a.name for a in attrs.fields(SimulatedModel))


def _unknown_key(path: str, key: str, expected: Sequence[str]) -> str:
    hint = did_you_mean(key, expected, otherwise=f"expected one of {', '.join(expected)}")
    return f"{path}.{key}: unknown field; {hint}"


def _build(cls: type[Any], data: Mapping[str, Any], path: str, problems: list[str]) -> Any:
    """``cls(**data)``, turning a validator's complaint into a path-qualified problem."""
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        problems.append(f"{path}: {exc}")
        return None


def _sub_value(
    cls: type[Any], data: object, keys: Sequence[str], path: str, problems: list[str]
) -> Any:
    if not isinstance(data, Mapping):
        problems.append(f"{path}: expected a mapping of {', '.join(keys)}, got {data!r}")
        return None
    unknown = [_unknown_key(path, str(k), keys) for k in data if k not in keys]
    problems.extend(unknown)
    return None if unknown else _build(cls, data, path, problems)


def model_from_mapping(data: object, *, path: str = "model") -> SimulatedModel:
    """Build one :class:`SimulatedModel` from plain data (the profile's per-model mapping).

    Raises:
      ConfigError: listing every problem, each prefixed with ``path``.
    """
    problems: list[str] = []
    model = _model_from_mapping(data, path, problems)
    if problems or model is None:
        raise ConfigError(problems or [f"{path}: could not build the model"])
    return model


def _model_from_mapping(data: object, path: str, problems: list[str]) -> SimulatedModel | None:
    if not isinstance(data, Mapping):
        problems.append(f"{path}: expected a mapping with at least 'name', got {data!r}")
        return None
    before = len(problems)
    fields = dict(data)
    problems.extend(_unknown_key(path, str(k), _MODEL_KEYS) for k in fields if k not in _MODEL_KEYS)
    if "name" not in fields:
        problems.append(f"{path}.name: missing; every simulated model needs a name")
    if "latency" in fields:
        fields["latency"] = _sub_value(
            Latency, fields["latency"], _LATENCY_KEYS, f"{path}.latency", problems
        )
    if "faults" in fields:
        fields["faults"] = _sub_value(
            Faults, fields["faults"], _FAULT_KEYS, f"{path}.faults", problems
        )
    if len(problems) > before:
        return None
    built: SimulatedModel | None = _build(SimulatedModel, fields, path, problems)
    return built


def models_from_profile_data(data: object, *, source: str = "profile") -> list[SimulatedModel]:
    """Build the models of an already-parsed profile (``{"models": [...]}``).

    Raises:
      ConfigError: listing every problem found, each prefixed with its path.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), list):
        raise ConfigError(f"{source}: expected a mapping with a 'models' list, got {data!r}")
    problems = [_unknown_key(source, str(k), ("models",)) for k in data if k != "models"]
    entries = data["models"]
    models = [_model_from_mapping(m, f"models[{i}]", problems) for i, m in enumerate(entries)]
    names = [
        m["name"] for m in entries if isinstance(m, Mapping) and isinstance(m.get("name"), str)
    ]
    problems.extend(_duplicate_problems(names))
    if problems:
        raise ConfigError(problems)
    return [m for m in models if m is not None]


def duplicate_name_problems(models: Sequence[SimulatedModel]) -> list[str]:
    """One problem per model name used more than once."""
    return _duplicate_problems([m.name for m in models])


def _duplicate_problems(names: Sequence[str]) -> list[str]:
    counts = collections.Counter(names)
    dupes = sorted(name for name, count in counts.items() if count > 1)
    return [f"model name '{n}' is used more than once; give each model its own name" for n in dupes]


def load_profile(path: str | os.PathLike[str]) -> list[SimulatedModel]:
    """Read a YAML simulator profile.

    The file holds one mapping with a ``models`` list; each entry has the fields of
    :class:`SimulatedModel`, with ``latency`` and ``faults`` as nested mappings::

        models:
          - name: gen
            mode: gpu
            capacity: 16
            latency: {median: 0.5, sigma: 0.3, per_output_token: 0.002}
          - name: judge
            rpm: 600
            faults: {rate_429: 0.05, rate_500: 0.01}

    Raises:
      ConfigError: the file is not valid YAML, or any model is invalid (every problem listed).
      OSError: the file cannot be read.
    """
    import yaml

    with open(path, encoding="utf-8") as file:
        text = file.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{os.fspath(path)}: not valid YAML: {exc}") from exc
    return models_from_profile_data(data, source=os.fspath(path))


_SPEC_ALIASES = {"latency": "median"}


def parse_model_spec(spec: str) -> SimulatedModel:
    """Parse the command line's ``NAME:key=value,...`` model form.

    Keys are the fields of :class:`SimulatedModel`, :class:`Latency` and :class:`Faults`, flat:
    ``latency`` (alias of ``median``), ``median``, ``sigma``, ``per_output_token``, ``mode``,
    ``capacity``, ``rpm``, ``tpm``, ``retry_after``, ``seed``, ``rate_429`` ... ``hang_seconds``.
    Values are numbers, words, or ``none``. Example::

        parse_model_spec("gen:latency=0.5,sigma=0.3,capacity=16,mode=gpu,rate_429=0.05")

    Raises:
      ConfigError: listing every problem in the spec.
    """
    name, _, rest = spec.partition(":")
    path = f"model spec {spec!r}"
    data: dict[str, Any] = {"name": name.strip()}
    latency: dict[str, Any] = {}
    faults: dict[str, Any] = {}
    problems: list[str] = []
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = _SPEC_ALIASES.get(key.strip(), key.strip())
        if not eq:
            problems.append(f"{path}: '{item}' is not of the form key=value")
        elif key in _LATENCY_KEYS:
            latency[key] = _parse_scalar(raw)
        elif key in _FAULT_KEYS:
            faults[key] = _parse_scalar(raw)
        elif key in _MODEL_KEYS and key not in ("name", "latency", "faults"):
            data[key] = _parse_scalar(raw)
        else:
            flat = sorted({*_MODEL_KEYS, *_LATENCY_KEYS, *_FAULT_KEYS} - {"name", "faults"})
            hint = did_you_mean(key, flat, otherwise=f"expected one of {', '.join(flat)}")
            problems.append(f"{path}: unknown key '{key}'; {hint}")
    data.update({"latency": latency} if latency else {})
    data.update({"faults": faults} if faults else {})
    model = None if problems else _model_from_mapping(data, path, problems)
    if problems or model is None:
        raise ConfigError(problems or [f"{path}: could not build the model"])
    return model


def _parse_scalar(raw: str) -> Any:
    text = raw.strip()
    if text.lower() in ("none", "null"):
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text
