"""The ``distribution`` sampler: numpy's distributions by name, seeded per cell.

numpy (the ``stats`` extra) is imported when a pipeline has such a column. Each cell builds a
``numpy.random.Generator`` on a PCG64 seeded from that cell's own ``rng_for(seed, row,
column)``, so a value depends only on (run seed, row, column) like every sampler's. Building a
generator per cell costs ~20 µs, so the column runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, final

import pyarrow as pa

from trio_designer._exceptions import ConfigError

from ._samplers import SamplerGenerator

if TYPE_CHECKING:
    from trio_designer.config import DistributionSampler

__all__ = ["DistributionGenerator"]


@final
class DistributionGenerator(SamplerGenerator):
    """One draw of ``distribution(**params)`` per cell (see the module docstring).

    Raises:
      ConfigError: (when built) numpy is missing, or numpy refuses the parameters (a
        negative scale, ``p`` above 1 ...), tried once with a throwaway generator.
    """

    inline = False

    def __init__(self, config: DistributionSampler) -> None:
        super().__init__(config.name)
        try:
            import numpy as np
        except ImportError:
            raise ConfigError(
                f"column {config.name!r}: the distribution sampler needs numpy; install the "
                "extra: pip install 'trio_designer[stats]'"
            ) from None
        self._np = np
        self._method = config.distribution
        self._params = dict(config.params)
        self._decimal_places = config.decimal_places
        try:
            trial = self._draw(random.Random(0))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"column {config.name!r}: numpy refuses {config.distribution}"
                f"({', '.join(f'{k}={v:g}' for k, v in self._params.items())}): {exc}"
            ) from None
        self._integers = isinstance(trial, int)

    def _draw(self, rng: random.Random) -> Any:
        generator = self._np.random.Generator(self._np.random.PCG64(rng.getrandbits(64)))
        value = getattr(generator, self._method)(**self._params)
        value = value.item() if hasattr(value, "item") else value  # numpy scalar -> Python
        if isinstance(value, float) and self._decimal_places is not None:
            return round(value, self._decimal_places)
        return value

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        return self._draw(rng)

    def arrow_type(self) -> Any:
        return pa.int64() if self._integers else pa.float64()
