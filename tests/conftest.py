"""Fixtures shared by the model client's tests: the transports, for contract tests.

Every test that takes ``make_client`` (or ``transport``) runs once per transport the client
can use (house rule 13, contract tests): the same behaviour is asked of our own HTTP/1.1 pool
(``native``) and of the httpx one (``httpx``). Test ids end in ``[native]`` / ``[httpx]``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from trio_designer.models._client import OpenAICompatibleClient

ClientFactory = Callable[..., OpenAICompatibleClient]

#: Transport name -> a factory of clients using it (same arguments as the client's).
TRANSPORT_FACTORIES: dict[str, ClientFactory] = {
    "native": partial(OpenAICompatibleClient, transport="native"),
    "httpx": partial(OpenAICompatibleClient, transport="httpx"),
}


@pytest.fixture(params=list(TRANSPORT_FACTORIES))
def transport(request: pytest.FixtureRequest) -> str:
    """The name of the transport under test (``native`` or ``httpx``)."""
    name: str = request.param
    return name


@pytest.fixture
def make_client(transport: str) -> ClientFactory:
    """Builds clients that use the transport under test."""
    return TRANSPORT_FACTORIES[transport]
