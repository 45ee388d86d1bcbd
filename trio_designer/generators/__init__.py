"""Generators: the code that fills a column, one cell or one row group at a time.

Public here is what a custom column's function receives as ``ctx`` (``fn(row, ctx)`` or
``fn(rows, ctx)``, see :class:`~trio_designer.CustomColumn`): a :class:`CellContext` per cell
or a :class:`ColumnContext` per row group, with the cell's seeded random generator and the
run's models. Everything else is private:

* the generator interface the engine calls (``ColumnGenerator``, ``CellOutput``) and per-cell
  seeding (``rng_for``) live in ``_base``;
* samplers (``_samplers``), Jinja expressions (``_expression``, rendering in ``_templates``),
  custom functions (``_custom``), LLM columns (``_llm``);
* ``_registry.build_generator`` maps a column config to its generator.
"""

from __future__ import annotations

from .. import _public
from ._base import CellContext as CellContext
from ._base import ColumnContext as ColumnContext

__all__ = ["CellContext", "ColumnContext"]

_public.present_as(__name__, globals(), __all__)
