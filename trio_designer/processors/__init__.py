"""Processors: what happens to a finished table before (and after) it is written.

The pipeline's ``processors:`` list (:mod:`trio_designer.config._processors`) becomes a
:class:`ProcessorChain`: the processors up to the first one that needs the whole dataset run
over each row group before its checkpoint (:meth:`ProcessorChain.process_row_group`); that one
and the rest run once the run is complete, streaming over the written row groups into
``processed/`` (:func:`finish_dataset`). Each processor is a small class satisfying
:class:`Processor`; new kinds are registered in :mod:`._registry`.

* :mod:`._base` — the :class:`Processor` protocol, the :class:`Batch` it works on, reports.
* :mod:`._columns` — ``drop_columns``, ``rename_columns``, ``select_columns``.
* :mod:`._filter` — ``filter``: a sandboxed Jinja condition per row.
* :mod:`._dedup` — ``dedup``: exact (hashes) and near-duplicate (MinHash/LSH) rows.
* :mod:`._reshape` — ``to_chat``, ``schema_transform``: extra datasets of new record shapes.
* :mod:`._custom` — ``custom``: a user function over a ``pyarrow.Table``.
* :mod:`._outputs` — the files processors write beside the dataset.
* :mod:`._chain` — the chain: checks at validate time, the two stages, the reports.
* :mod:`._registry` — kind -> builder (plugins add kinds here).

Public (``docs/api.md``): what a plugin writes — :class:`Processor`, :class:`Batch`,
:class:`ColumnSet`, :data:`PROCESSORS` and :func:`register_processor`.
* :mod:`._run` — the chain in a run: the columns it starts from, the engine's hook.
"""

from __future__ import annotations

from .. import _public
from ._base import Batch as Batch
from ._base import ColumnSet as ColumnSet
from ._base import Processor as Processor
from ._registry import PROCESSORS as PROCESSORS
from ._registry import register_processor as register_processor

__all__ = ["PROCESSORS", "Batch", "ColumnSet", "Processor", "register_processor"]

_public.present_as(__name__, globals(), __all__)
