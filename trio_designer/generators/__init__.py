"""Generators: the code that fills a column, one cell or one row group at a time.

* :class:`ColumnGenerator` (the interface the engine calls), :class:`CellContext`,
  :class:`ColumnContext`, :func:`rng_for` (per-cell seeding) live in ``_base``;
* samplers (``_samplers``), Jinja expressions (``_expression``, rendering in ``_templates``),
  custom functions (``_custom``);
* :func:`build_generator` maps a column config to its generator.
"""

from __future__ import annotations

from ._base import CellContext as CellContext
from ._base import ColumnContext as ColumnContext
from ._base import ColumnGenerator as ColumnGenerator
from ._base import rng_for as rng_for
from ._registry import build_generator as build_generator

__all__ = ["CellContext", "ColumnContext", "ColumnGenerator", "build_generator", "rng_for"]
