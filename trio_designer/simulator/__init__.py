"""A simulated OpenAI-compatible endpoint, served on trio, for tests, demos and benchmarks.

It speaks enough of the OpenAI API for our client and for others (``POST /v1/chat/completions``,
``POST /v1/embeddings``, ``GET /v1/models``), plus ``GET /stats`` and ``POST /stats/reset``.
Each :class:`SimulatedModel` has a latency distribution, a capacity behaviour (a rate-limited
hosted API that answers 429, or a self-hosted GPU server that queues) and fault-injection
rates. Answers are deterministic: the same request always gets the same content, and requests
carrying a JSON schema get an instance that validates against it.

Three ways to run it:

* in-process, inside the caller's ``trio.run`` (shares its clock, so works in virtual time)::

      async with open_simulator([SimulatedModel(name="gen")]) as sim:
          ...  # point any OpenAI client at sim.url

* from the command line::

      python -m trio_designer.simulator --port 8000 --model gen:latency=0.5,capacity=16,mode=gpu

* from a YAML profile: ``python -m trio_designer.simulator --profile sim.yaml`` or
  :func:`load_profile`.

See ``docs/simulator.md`` for the full behaviour.
"""

from __future__ import annotations

from ._models import Faults as Faults
from ._models import Latency as Latency
from ._models import ModelStats as ModelStats
from ._models import RequestRecord as RequestRecord
from ._models import SimulatedModel as SimulatedModel
from ._models import SimulatorStats as SimulatorStats
from ._profile import Profile as Profile
from ._profile import load_profile as load_profile
from ._profile import parse_model_spec as parse_model_spec
from ._profile import read_profile as read_profile
from ._server import Simulator as Simulator
from ._server import open_simulator as open_simulator
from ._server import serve_simulator as serve_simulator

__all__ = [
    "Faults",
    "Latency",
    "ModelStats",
    "Profile",
    "RequestRecord",
    "SimulatedModel",
    "Simulator",
    "SimulatorStats",
    "load_profile",
    "open_simulator",
    "parse_model_spec",
    "read_profile",
    "serve_simulator",
]
