"""Checking a config's model endpoints before a run: one small request per model alias.

What ``trio-designer check`` prints. A run never waits for this (it judges its first real
requests instead, see :mod:`trio_designer._core._firstcontact`); it is for a person who wants
to know, before a long run, that every endpoint answers, accepts the key and the inference
parameters, how fast it answers, and what rate limits it advertises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..config import SIMULATOR_PROVIDER, ModelConfig
from ._registry import open_model_registry

if TYPE_CHECKING:
    from ..config import PipelineConfig
    from ._client import OpenAICompatibleClient

__all__ = ["EMBEDDED", "EndpointCheck", "check_models", "rate_limit_headers"]

EMBEDDED = "(embedded simulator)"
"""The ``base_url`` shown for the built-in ``simulator`` provider (its port changes per run)."""


@attrs.frozen(kw_only=True)
class EndpointCheck:
    """What one model alias's check request found.

    Attributes:
      alias: the model alias.
      model: the model id sent.
      provider: the provider's name.
      base_url: its base URL (:data:`EMBEDDED` for the built-in simulator).
      status: the HTTP status, or ``None`` when none was read.
      latency: seconds from sending to the last byte of the answer (or of the failure).
      limits: the rate-limit headers the answer carried (``x-ratelimit-*``, ``ratelimit*``),
        as ``(name, value)`` pairs in name order.
      problem: the error a run's request would have raised, or ``None``: the check passed.
      answered: the server answered, usable or not (see :attr:`reachable`).
    """

    alias: str
    model: str
    provider: str
    base_url: str
    status: int | None
    latency: float
    limits: tuple[tuple[str, str], ...]
    problem: str | None
    answered: bool = True

    @property
    def reachable(self) -> bool:
        """The server answered, whatever it said: a status, or an answer we could not read
        (not HTTP, an encoding we did not ask for, a body over the size limit). ``False`` only
        when nothing came back."""
        return self.answered

    @property
    def auth_ok(self) -> bool | None:
        """The credentials were accepted (no 401/403); ``None`` without an answer."""
        return None if self.status is None else self.status not in (401, 403)

    @property
    def ok(self) -> bool:
        """The answer was a usable chat completion."""
        return self.problem is None


def rate_limit_headers(headers: Any) -> tuple[tuple[str, str], ...]:
    """The rate-limit headers among ``headers`` (OpenAI's ``x-ratelimit-*``, the IETF
    draft's ``RateLimit`` / ``RateLimit-Policy``), in name order."""
    return tuple(
        sorted(
            (name.lower(), value)
            for name, value in headers.items()
            if name.lower().startswith(("x-ratelimit-", "ratelimit"))
        )
    )


async def check_models(
    config: PipelineConfig, *, simulator_models: Sequence[Any] | None = None
) -> list[EndpointCheck]:
    """Send one small chat request per model alias of ``config``, all at once.

    Each request is what a run sends for that alias (its inference parameters, ``extra_body``
    included) with a prompt asking for one word, sent once without retries.

    Args:
      config: the pipeline; its ``models`` and ``providers`` are read.
      simulator_models: how to simulate model ids of the ``simulator`` provider.

    Returns:
      One :class:`EndpointCheck` per alias, in configuration order.

    Raises:
      ConfigError: as :func:`~trio_designer.models.open_model_registry` (unknown provider,
        unset API key variable...), before any request.
    """
    declared = {p.name: p.base_url for p in config.providers}
    results: list[EndpointCheck | None] = [None] * len(config.models)
    async with open_model_registry(config, simulator_models=simulator_models) as registry:

        async def one(index: int, model: ModelConfig) -> None:
            client = registry.client(model.provider)
            results[index] = await _check(model, client, declared)

        async with trio.open_nursery() as nursery:
            for index, model in enumerate(config.models):
                nursery.start_soon(one, index, model)
    return [result for result in results if result is not None]


async def _check(
    model: ModelConfig, client: OpenAICompatibleClient, declared: dict[str, str]
) -> EndpointCheck:
    params = model.inference
    answer = await client.probe(
        model=model.model,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,
        extra_body=params.extra_body,
        timeout=model.timeout,
        max_response_bytes=model.max_response_bytes,
    )
    base_url = EMBEDDED if model.provider == SIMULATOR_PROVIDER else declared[model.provider]
    return EndpointCheck(
        alias=model.alias,
        model=model.model,
        provider=model.provider,
        base_url=base_url,
        status=answer.status,
        latency=answer.elapsed,
        limits=rate_limit_headers(answer.headers),
        problem=None if answer.error is None else str(answer.error),
        answered=answer.answered,
    )
