"""Embedding columns: a text rendered per row, embedded through ``/embeddings``, in batches.

One request embeds up to ``batch_size`` texts and holds one slot of the endpoint's limiter.
The column stays a **cell** column, so each cell still starts the moment its own row's text is
ready (the critical path is untouched); cells that are ready at about the same time share a
request through a small batching window:

* a cell that finds no open batch opens one and becomes its **leader**; later cells join it
  (**followers**) until it holds ``batch_size`` texts;
* the leader waits until the batch is full or ``batch_window`` seconds have passed, then sends
  it (through :meth:`ModelHandle.embed`: the limiter, the in-place 429 retries, the usage).
  The batch stays open until the request actually holds a slot of the endpoint's limiter: on
  a saturated endpoint, cells keep joining it while it waits (up to ``batch_size``), so
  batches fill by themselves exactly when requests are scarce. Every member gets its vector;
* a follower waits for its batch. If the request failed, every member raises the error (a copy
  with its own row), so the engine defers or drops each cell as it would a single request.

Cancellation (a row whose sibling failed, the end of a run) never strands a cell: a follower
cancelled before the request only gives up its place (its text is still embedded, and
ignored); a leader cancelled before or during the request marks the batch *abandoned*, and its
followers go round again, one of them leading a new batch.

How full batches get depends on how many of the column's cells are dispatched at once: the
endpoint's backlog (``models/_backlog.py``) lets ``2 × max_parallel_requests × batch_size``
cells of an embedding column wait on its endpoint (room for every request slot to hold a full
batch); an endpoint that also serves chat columns keeps the chat cap, ``2 ×
max_parallel_requests``, and its batches fill less. Cells that become ready one by one (after
an LLM column) batch only as far as they arrive within the window.

Values are lists of floats, stored as ``list<float32>``, or ``fixed_size_list<float32, d>`` when
``dimensions`` is set. A vector whose length differs from ``dimensions`` is a
:class:`~trio_designer.ModelOutputError` (the row is dropped): the endpoint ignores
``dimensions``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import pyarrow as pa
import trio

from .._exceptions import GenerationError, ModelOutputError, NonRetryableGenerationError
from ._base import CellContext, ColumnGenerator
from ._templates import check_template, render

if TYPE_CHECKING:
    from ..config import LLMEmbeddingColumn

__all__ = ["LLMEmbeddingGenerator"]


@attrs.define(eq=False)
class _Batch:
    """Texts gathered for one request, and its outcome; a
    :class:`~trio_designer.models._registry.TextBatch`."""

    size: int
    on_close: Callable[[_Batch], None]
    texts: list[str] = attrs.field(factory=list)
    full: trio.Event = attrs.field(factory=trio.Event)
    done: trio.Event = attrs.field(factory=trio.Event)
    closed: bool = False
    vectors: list[list[float]] | None = None
    error: BaseException | None = None
    abandoned: bool = False

    def add(self, text: str) -> int:
        self.texts.append(text)
        if len(self.texts) >= self.size:
            self.full.set()
        return len(self.texts) - 1

    def chars(self) -> list[int]:
        return [len(text) for text in self.texts]

    def take(self) -> list[str]:
        """Close the batch (no cell joins it any more) and hand over its texts; called by the
        model handle once the request holds its limiter slot."""
        if not self.closed:
            self.closed = True
            self.on_close(self)
        return self.texts


class LLMEmbeddingGenerator(ColumnGenerator):
    """``llm_embedding``: see the module docstring.

    Raises (per cell): the model layer's errors (with column and row), a
    :class:`~trio_designer.ModelOutputError` when a vector has the wrong length.
    """

    llm_bound: ClassVar[bool] = True

    def __init__(self, column: LLMEmbeddingColumn) -> None:
        check_template(column.text, column=column.name, field="text")
        self.column = column
        self._open: _Batch | None = None
        #: Requests sent and texts embedded by this generator (tests, benchmarks).
        self.requests = 0
        self.texts = 0

    def arrow_type(self) -> Any:
        """``list<float32>``, or ``fixed_size_list<float32, dimensions>``."""
        if self.column.dimensions is not None:
            return pa.list_(pa.float32(), self.column.dimensions)
        return pa.list_(pa.float32())

    async def agenerate(self, ctx: CellContext) -> Any:
        column = self.column
        text = render(
            column.text, ctx.row, column=column.name, field="text", row_index=ctx.row_index
        )
        handle = self._handle(ctx)
        while True:
            batch = self._open
            leader = batch is None
            if batch is None:
                batch = self._open = _Batch(size=column.batch_size, on_close=self._taken)
            position = batch.add(text)
            if batch.full.is_set():
                self._detach(batch)
            if leader:
                await self._lead(batch, handle)
            else:
                await batch.done.wait()
            if batch.abandoned:
                continue  # the leader was cancelled: go round again
            if batch.error is not None:
                raise self._own_error(batch.error, ctx)
            assert batch.vectors is not None
            return batch.vectors[position]

    async def _lead(self, batch: _Batch, handle: Any) -> None:
        """Wait for the batch to fill (or the window to pass), send it, publish the outcome."""
        try:
            with trio.move_on_after(self.column.batch_window):
                await batch.full.wait()
            # The batch stays open while the request waits for a slot of the endpoint's
            # limiter: on a saturated endpoint it keeps filling (the handle takes it).
            vectors = await handle.embed(batch, dimensions=self.column.dimensions)
            batch.vectors = self._checked(vectors)
        except trio.Cancelled:
            self._detach(batch)
            batch.abandoned = True
            raise
        except Exception as exc:
            batch.error = exc
        finally:
            batch.done.set()

    def _detach(self, batch: _Batch) -> None:
        """No cell joins ``batch`` any more (it is full, taken, or abandoned)."""
        if self._open is batch:
            self._open = None

    def _taken(self, batch: _Batch) -> None:
        """``batch``'s request holds its slot and took the texts."""
        self._detach(batch)
        self.requests += 1
        self.texts += len(batch.texts)

    def _checked(self, vectors: list[list[float]]) -> list[list[float]]:
        wanted = self.column.dimensions
        if wanted is not None:
            for vector in vectors:
                if len(vector) != wanted:
                    raise ModelOutputError(
                        f"column {self.column.name!r}: model {self.column.model!r} returned a "
                        f"vector of {len(vector)} numbers, but the column asks for dimensions="
                        f"{wanted}; the endpoint ignores 'dimensions': remove it from the column "
                        f"or use a model that supports it.",
                        requests=1,
                    )
        return vectors

    def _own_error(self, error: BaseException, ctx: CellContext) -> BaseException:
        """The batch's error as this cell's: a copy naming this column and row."""
        # Not copy.copy: it rebuilds exceptions from ``args``, and ours take keyword arguments.
        own = type(error).__new__(type(error))
        own.args = error.args
        own.__dict__.update(error.__dict__)
        if isinstance(own, GenerationError):
            own.column = self.column.name
            own.row = ctx.row_index
        return own

    def _handle(self, ctx: CellContext) -> Any:
        if ctx.models is None:
            raise NonRetryableGenerationError(
                f"column {self.column.name!r} calls model {self.column.model!r}, but the run "
                f"has no model registry; run the pipeline through the engine.",
                column=self.column.name,
                row=ctx.row_index,
            )
        return ctx.models.model(self.column.model)
