"""Model endpoints: where requests go (:class:`ModelProvider`) and which model serves an alias.

Columns never name an endpoint directly. An LLM column says ``model: gen``; the pipeline's
``models`` list maps the alias ``gen`` to a :class:`ModelConfig` (model id, provider, default
inference parameters, how many requests may be in flight); the config names a
:class:`ModelProvider` (base URL, *name* of the environment variable holding the API key)::

    providers:
      - {name: local-vllm, base_url: "http://127.0.0.1:8000/v1", api_key_env: VLLM_API_KEY}
    models:
      - {alias: gen, model: sim-gen, provider: simulator, max_parallel_requests: 16}

The provider ``simulator`` is built in (the embedded simulated OpenAI-compatible endpoint)
and needs no entry. API keys never enter a config: only the variable's name does, so configs
can be printed, fingerprinted and stored next to the dataset.

Hashing: fields holding JSON mappings (``extra_body``, ``extra_headers``) take part in
equality but not in the hash, so every object here is hashable and equal objects hash alike.
Treat those dicts as read-only.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal, TypeAlias, get_args

import attrs
from attrs import validators as v

from ._validators import (
    IDENTIFIER_RE,
    checked,
    finite,
    instance_of,
    is_bool,
    is_int,
    is_json_object,
    non_blank,
    optional,
    short_repr,
    str_keys,
)

#: The provider name of the built-in simulated endpoint; it needs no ``providers`` entry.
SIMULATOR_PROVIDER = "simulator"

#: How a provider's requests travel: our own HTTP/1.1 pool, or httpx (``models/_transport.py``).
TransportName: TypeAlias = Literal["native", "httpx"]
TRANSPORTS: tuple[str, ...] = get_args(TransportName)


def endpoint_name(provider: str, model: str) -> str:
    """The display name of an endpoint, ``"provider:model"`` (say ``"simulator:sim-gen"``).

    An endpoint is a (provider, model id) pair: aliases of the same endpoint share one limiter.
    This name keys the limiters, ``RunResult.model_limits``, ``limit_change`` events, traces and
    the progress display, and is what a ``limiter_factory`` receives as its first argument.
    Computed here only.
    """
    return f"{provider}:{model}"


def _json_copy(value: Any) -> Any:
    """A deep copy, so a config never shares a mutable dict with its caller."""
    return copy.deepcopy(str_keys(value)) if isinstance(value, dict) else value


def _base_url(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(
            f"'{attribute.name}' must be an http:// or https:// URL: {_url_shown(value)}"
        )
    authority = value.split("://", 1)[1].split("/", 1)[0]
    if "@" in authority:
        # Never echoed: what stands before the '@' is a password or a key.
        raise ValueError(
            f"'{attribute.name}' must not carry credentials (user:password@ or a key before "
            "'@'); configs are stored next to the dataset: put the key in the environment "
            "variable named by api_key_env"
        )


def _url_shown(value: Any) -> str:
    """A bad URL for a message, without what could be credentials in it."""
    if isinstance(value, str) and "@" in value:
        return "(not shown: it contains '@')"
    return short_repr(value)


#: Header names that carry credentials: a config may not hold their values (it is stored next
#: to the dataset, printed and fingerprinted); the key comes from ``api_key_env``.
_CREDENTIAL_HEADERS = re.compile(
    r"^(authorization|proxy-authorization|cookie|x-api-key|api-key|apikey|.*-token|.*-secret|"
    r".*api[-_]?key.*)$",
    re.IGNORECASE,
)


def _env_var_name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    # Deliberately never echoes the value: a user who pastes the key itself here must not see
    # it printed in an error message or a log.
    if not isinstance(value, str) or not IDENTIFIER_RE.fullmatch(value):
        raise ValueError(
            f"'{attribute.name}' must be the NAME of an environment variable (letters, digits "
            "and underscores), not the API key itself; export the key and give its name here"
        )


def _http2_needs_httpx(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value and instance.transport != "httpx":
        raise ValueError(
            "'http2' needs 'transport: httpx' (the native transport speaks HTTP/1.1 only)"
        )


def _string_values(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not all(isinstance(item, str) for item in value.values()):
        raise ValueError(f"'{attribute.name}' values must be strings")


def _no_credentials(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    names = sorted(name for name in value if _CREDENTIAL_HEADERS.match(str(name)))
    if names:
        raise ValueError(
            f"'{attribute.name}' may not hold credentials ({', '.join(map(repr, names))}): "
            "configs are stored next to the dataset; the API key is read from the environment "
            "variable named by api_key_env and sent as 'Authorization: Bearer'"
        )


def _no_stream(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value.get("stream") not in (None, False):
        raise ValueError(
            f"'{attribute.name}' may not set 'stream': trio_designer reads each answer whole, "
            "as one JSON body (a streamed answer fails every request); remove 'stream'"
        )


MAX_PARALLEL_REQUESTS = 100_000
"""The largest ``max_parallel_requests``: far above what any endpoint serves at once, and the
adaptive limiter keeps per-level statistics up to the ceiling (100 million would cost it 1.6 GB
and seconds before the first request)."""


@attrs.frozen(kw_only=True)
class InferenceParams:
    """Sampling parameters sent with each request; ``None`` means "the endpoint's default".

    A model's ``inference`` gives defaults; an LLM column's ``inference`` overrides them field
    by field (the model layer merges the two).

    Attributes:
      temperature: sampling temperature, ``>= 0``.
      top_p: nucleus sampling mass, ``0 < top_p <= 1``.
      max_tokens: cap on generated tokens, ``>= 1``.
      extra_body: extra JSON fields merged into the request body as-is (e.g. vLLM's
        ``{"top_k": 20}``). Not hashed; read-only. ``stream`` is refused: answers are read
        whole.
    """

    temperature: float | None = attrs.field(
        default=None, validator=optional(checked(finite, v.ge(0)))
    )
    top_p: float | None = attrs.field(
        default=None, validator=optional(checked(finite, v.gt(0), v.le(1)))
    )
    max_tokens: int | None = attrs.field(default=None, validator=optional(checked(is_int, v.ge(1))))
    extra_body: dict[str, Any] = attrs.field(
        factory=dict,
        converter=_json_copy,
        validator=checked(is_json_object, _no_stream),
        hash=False,
    )


@attrs.frozen(kw_only=True)
class ModelProvider:
    """An OpenAI-compatible endpoint.

    Attributes:
      name: how models refer to this provider (``provider: local-vllm``). ``simulator`` is
        reserved for the built-in simulated endpoint.
      base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
      api_key_env: the NAME of the environment variable that holds the API key, or ``None``
        for endpoints without authentication. The key itself never enters the config.
      extra_headers: extra HTTP headers sent with every request. Not hashed; read-only.
        Headers that carry credentials (``Authorization``, ``Cookie``, ``*api-key*``,
        ``*-token``, ``*-secret``) are refused: configs are stored next to the dataset.
      transport: how requests travel. ``"native"`` (default): our own HTTP/1.1 connection
        pool, the cheapest per request, with plain ``http://`` proxies. ``"httpx"``: httpx,
        for a SOCKS proxy (with ``trio_designer[socks]``), an ``https://`` proxy, HTTP/2, or
        a proxy or TLS setup the native pool refuses; 2-4x the CPU per request. Both keep the
        same timeout, size cap and error classes.
      http2: offer HTTP/2 to an ``https://`` endpoint (``transport: httpx`` only).

    ``transport`` and ``http2`` change how requests travel, never what is generated: they are
    left out of the config fingerprint.
    """

    name: str = attrs.field(validator=checked(non_blank))
    base_url: str = attrs.field(validator=checked(_base_url))
    api_key_env: str | None = attrs.field(default=None, validator=optional(checked(_env_var_name)))
    extra_headers: dict[str, str] = attrs.field(
        factory=dict,
        converter=_json_copy,
        validator=checked(is_json_object, _string_values, _no_credentials),
        hash=False,
    )
    transport: TransportName = attrs.field(default="native", validator=checked(v.in_(TRANSPORTS)))
    http2: bool = attrs.field(default=False, validator=checked(is_bool, _http2_needs_httpx))


@attrs.frozen(kw_only=True)
class ModelPrice:
    """What a model's tokens cost, per million tokens, in the currency you count in.

    Attributes:
      input_per_mtok: price of one million prompt tokens, ``>= 0``.
      output_per_mtok: price of one million completion tokens (reasoning included), ``>= 0``.
      cached_input_per_mtok: price of one million prompt tokens the provider served from its
        prompt cache (when its answers report them), ``>= 0``; ``None`` (default): charged as
        input tokens.

    Answers served by trio_designer's own response cache cost nothing.
    """

    input_per_mtok: float = attrs.field(validator=checked(finite, v.ge(0)))
    output_per_mtok: float = attrs.field(validator=checked(finite, v.ge(0)))
    cached_input_per_mtok: float | None = attrs.field(
        default=None, validator=optional(checked(finite, v.ge(0)))
    )


def _tpm_pays_max_tokens(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    # A request reserves its max_tokens against the token budget before it is sent (as the
    # providers do): a budget that cannot pay that alone would make every request wait for a
    # whole window and go alone, and an endpoint that enforces it would refuse each one.
    max_tokens = instance.inference.max_tokens
    if isinstance(max_tokens, int) and max_tokens >= value:
        raise ValueError(
            f"'tpm' is {value:,} tokens per minute, but every request reserves its max_tokens "
            f"({max_tokens:,}) plus its prompt, so none fits in a minute's budget; raise tpm "
            "or lower inference.max_tokens"
        )


@attrs.frozen(kw_only=True)
class ModelConfig:
    """One model alias: which model, at which provider, with which limits.

    Attributes:
      alias: the name columns use (``model: gen``); unique within a pipeline.
      model: the model id sent to the endpoint (``"sim-gen"``, ``"Qwen/Qwen3-8B"``).
      provider: the :class:`ModelProvider` name; the default ``"simulator"`` is built in.
      inference: default sampling parameters for every request to this alias.
      max_parallel_requests: the ceiling on concurrent requests to this model, ``>= 1`` and
        ``<= 100,000`` (default 4). Aliases of the same (provider, model) share the smallest
        ceiling.
      timeout: seconds one request may take, from connecting to the last byte of the answer,
        before it is abandoned as timed out (retryable), ``> 0`` (default 60). A server that
        trickles its answer cannot stretch it.
      max_response_bytes: the largest answer body accepted, in bytes, ``>= 1`` (default
        8 MiB). A bigger answer is cut off while it streams in and fails its cell without a
        retry.
      rpm: the account's requests per minute at this model, ``>= 1``, or ``None`` (default)
        to learn it from the endpoint's rate-limit headers. Aliases of the same (provider,
        model) share the smallest.
      tpm: the account's tokens (prompt + completion) per minute at this model, ``>= 1``, or
        ``None`` (default) to learn it from the headers. Shared like ``rpm``.
      send_seed: send each request a ``seed`` derived from its cell (run seed, row, column),
        so that endpoints that honour it sample reproducibly (default true). Turn it off for
        an endpoint that rejects the ``seed`` field.
      price: what this model's tokens cost (:class:`ModelPrice`), or ``None`` (default):
        the run then counts tokens but no cost for this alias, and a ``max_cost`` budget
        cannot be kept.
    """

    alias: str = attrs.field(validator=checked(non_blank))
    model: str = attrs.field(validator=checked(non_blank))
    provider: str = attrs.field(default=SIMULATOR_PROVIDER, validator=checked(non_blank))
    inference: InferenceParams = attrs.field(
        factory=InferenceParams, validator=checked(instance_of(InferenceParams))
    )
    max_parallel_requests: int = attrs.field(
        default=4, validator=checked(is_int, v.ge(1), v.le(MAX_PARALLEL_REQUESTS))
    )
    timeout: float = attrs.field(default=60.0, validator=checked(finite, v.gt(0)))
    max_response_bytes: int = attrs.field(default=8 * 2**20, validator=checked(is_int, v.ge(1)))
    rpm: int | None = attrs.field(default=None, validator=optional(checked(is_int, v.ge(1))))
    tpm: int | None = attrs.field(
        default=None, validator=optional(checked(is_int, v.ge(1), _tpm_pays_max_tokens))
    )
    send_seed: bool = attrs.field(default=True, validator=checked(is_bool))
    price: ModelPrice | None = attrs.field(
        default=None, validator=optional(checked(instance_of(ModelPrice)))
    )
