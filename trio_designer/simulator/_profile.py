"""Reading simulator models from the outside world: YAML profiles and the CLI's model specs.

* :func:`read_profile` / :func:`load_profile` read a YAML profile
  (``{models: [{name: ..., latency: {...}}], api_key_env: ...}``);
* :func:`parse_model_spec` reads the command line's ``NAME:key=value,...`` form.

Both report *every* problem at once in one :class:`~trio_designer.ConfigError`, each prefixed
with the path of the offending field (``models[1].latency.medain: ...``).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._core._suggest import did_you_mean
from .._exceptions import ConfigError
from ._models import Faults, Latency, SimulatedModel

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
        # attrs' ``in_`` validator puts its message first and the attribute after it.
        message = exc.args[0] if len(exc.args) > 1 and isinstance(exc.args[0], str) else exc
        problems.append(f"{path}: {message}")
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


@attrs.frozen(kw_only=True)
class Profile:
    """A whole simulator profile: its models, and where the simulator's API key comes from.

    Attributes:
      models: the simulated models, in file order.
      api_key_env: the name of an environment variable holding the API key every request must
        send (``Authorization: Bearer <key>``), or None to accept every request. The key itself
        never appears in a profile.
    """

    models: tuple[SimulatedModel, ...]
    api_key_env: str | None = None


_PROFILE_KEYS = ("models", "api_key_env")


def profile_from_data(data: object, *, source: str = "profile") -> Profile:
    """Build a :class:`Profile` from already-parsed data (``{"models": [...], ...}``).

    Raises:
      ConfigError: listing every problem found, each prefixed with its path.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), list):
        raise ConfigError(f"{source}: expected a mapping with a 'models' list, got {data!r}")
    problems = [_unknown_key(source, str(k), _PROFILE_KEYS) for k in data if k not in _PROFILE_KEYS]
    api_key_env = data.get("api_key_env")
    if api_key_env is not None and not (isinstance(api_key_env, str) and api_key_env.strip()):
        problems.append(
            f"{source}.api_key_env: expected the name of an environment variable, "
            f"got {api_key_env!r}"
        )
    entries = data["models"]
    models = [_model_from_mapping(m, f"models[{i}]", problems) for i, m in enumerate(entries)]
    names = [
        m["name"] for m in entries if isinstance(m, Mapping) and isinstance(m.get("name"), str)
    ]
    problems.extend(_duplicate_problems(names))
    if problems:
        raise ConfigError(problems)
    return Profile(models=tuple(m for m in models if m is not None), api_key_env=api_key_env)


def models_from_profile_data(data: object, *, source: str = "profile") -> list[SimulatedModel]:
    """The models of an already-parsed profile (see :func:`profile_from_data`).

    Raises:
      ConfigError: listing every problem found, each prefixed with its path.
    """
    return list(profile_from_data(data, source=source).models)


def duplicate_name_problems(models: Sequence[SimulatedModel]) -> list[str]:
    """One problem per model name used more than once."""
    return _duplicate_problems([m.name for m in models])


def _duplicate_problems(names: Sequence[str]) -> list[str]:
    counts = collections.Counter(names)
    dupes = sorted(name for name, count in counts.items() if count > 1)
    return [f"model name '{n}' is used more than once; give each model its own name" for n in dupes]


def read_profile(path: str | os.PathLike[str]) -> Profile:
    """Read a YAML simulator profile: its models and its optional ``api_key_env``.

    The file holds one mapping with a ``models`` list; each entry has the fields of
    :class:`SimulatedModel`, with ``latency`` and ``faults`` as nested mappings::

        api_key_env: SIM_API_KEY        # optional: requests must send this variable's value
        models:
          - name: gen
            mode: gpu
            capacity: 16
            capacity_schedule: [[0, 16], [30, 4], [60, 16]]
            latency: {median: 0.5, sigma: 0.3, per_output_token: 0.002}
          - name: judge
            rpm: 600
            tpm: 100000
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
    return profile_from_data(data, source=os.fspath(path))


def load_profile(path: str | os.PathLike[str]) -> list[SimulatedModel]:
    """The models of a YAML simulator profile (see :func:`read_profile` for the format).

    Raises:
      ConfigError: the file is not valid YAML, or any model is invalid (every problem listed).
      OSError: the file cannot be read.
    """
    return list(read_profile(path).models)


_SPEC_ALIASES = {"latency": "median"}


def parse_model_spec(spec: str) -> SimulatedModel:
    """Parse the command line's ``NAME:key=value,...`` model form.

    Keys are the fields of :class:`SimulatedModel`, :class:`Latency` and :class:`Faults`, flat:
    ``latency`` (alias of ``median``), ``median``, ``sigma``, ``per_output_token``, ``mode``,
    ``capacity``, ``rpm``, ``tpm``, ``retry_after``, ``seed``, ``rate_429`` ... ``hang_seconds``.
    Values are numbers, words, or ``none``; the two lists of pairs, ``capacity_schedule`` and
    ``outages``, are written ``a:b/c:d`` (``capacity_schedule=0:32/30:8/60:32``). Example::

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
        elif key in _PAIR_KEYS:
            data[key] = _parse_pairs(raw)
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


_PAIR_KEYS = ("capacity_schedule", "outages")


def _parse_pairs(raw: str) -> Any:
    """``"0:32/30:8"`` → ``((0, 32), (30, 8))``; anything unparsable is passed on as text for
    the validator to reject with its own message. ``none`` or empty → no pairs."""
    text = raw.strip()
    if text.lower() in ("", "none", "null"):
        return ()
    pairs = [tuple(_parse_scalar(x) for x in item.split(":")) for item in text.split("/")]
    return tuple(pairs)


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
