"""The generator interface: what the engine calls to fill a cell or a whole column.

A generator fills one column. Its ``strategy`` says how the engine schedules it:

* ``"cell"``: one task per (row, column). The engine calls :meth:`ColumnGenerator.agenerate`
  with a :class:`CellContext` the moment that row's upstream cells are complete.
* ``"full_column"``: one task per (row group, column). The engine calls
  :meth:`ColumnGenerator.agenerate_column` with a :class:`ColumnContext` once every surviving row
  of the row group has its upstream cells (samplers, batch validators).

Implement whichever of the sync / async pair is natural; the base class bridges to the other:

* only ``generate`` → ``agenerate`` runs it in a worker thread (``trio.to_thread``) unless the
  generator sets ``inline = True`` (cheap, non-blocking code such as samplers and Jinja
  expressions, which then runs directly on the event loop);
* only ``agenerate`` → ``generate`` runs it with a private ``trio.run`` (for callers outside
  any event loop; never call it from inside one).

Extra output columns: a cell generator may write side columns next to its own (an LLM column's
``<name>__reasoning`` trace). It names them in :meth:`ColumnGenerator.extra_columns` and returns
a :class:`CellOutput` from ``agenerate``/``generate`` instead of a bare value::

    return CellOutput(answer, extras={"summary__reasoning": reasoning})

The engine stores ``value`` in the column and each entry of ``extras`` in the side column of
that name. A generator without side columns keeps returning plain values.

Waiting on a model: a generator whose calls wait on a model endpoint sets ``llm_bound = True``.
The engine then moves the task from the submission pool to the larger LLM-wait pool right
before calling it (the "handoff"), so tasks parked on a slow or rate-limited model do not hold
up dispatch. The engine owns the handoff; a generator has nothing to call. (Contexts used to
carry a ``before_model_call`` hook for this; it was removed in issue 10, when the engine became
its only caller.)

Determinism: a generator must draw randomness only from ``ctx.rng`` (or ``ctx.rng_for(row)`` in
full-column contexts), which is seeded from (run seed, global row index, column name). Then the
dataset does not depend on completion order, and the sync and async engines write identical
files.
"""

from __future__ import annotations

import _random
import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final, Literal, final

import attrs
import trio

from .._core._cellusage import CellUsage

Strategy = Literal["cell", "full_column"]


def rng_for(seed: int, row: int, column: str) -> random.Random:
    """A ``random.Random`` seeded from (run seed, global row index, column name).

    Stable across processes and Python versions (blake2b, not ``hash()``).

    Built without ``Random.__init__``/``Random.seed``'s Python layers (a cell's generator is
    made for every LLM cell, also on a cache hit): the C seeding that ``Random(n)`` ends in for
    an int ``n``, and the one attribute ``__init__`` sets. The state is the one ``Random(n)``
    has (``tests/test_generators_base.py`` compares ``getstate()`` and draws).
    """
    hasher = _BLANK_BLAKE2B.copy()  # blake2b(..., digest_size=8), set up once
    hasher.update(f"{seed}\x00{row}\x00{column}".encode())
    rng: random.Random = _new_random(random.Random)
    _seed_random(rng, int.from_bytes(hasher.digest(), "big"))
    rng.gauss_next = None  # type: ignore[attr-defined]  # what Random.seed() also sets
    return rng


def first_draws(seed: int, rows: Sequence[int], column: str, bits: int) -> list[int]:
    """``rng_for(seed, row, column).getrandbits(bits)`` for each of ``rows``: the first draw
    of each cell's generator, in one loop (the batched replay of cached LLM cells: an LLM
    cell's first draw is its first request's seed).

    One ``Random`` is seeded again for each row: seeding sets the whole state (the 624 words
    and the position; ``gauss_next`` is not read by ``getrandbits``), so each draw is the one
    a fresh generator makes (``tests/test_generators_base.py``)."""
    rng: random.Random = _new_random(random.Random)
    blank, seed_random, getrandbits = _BLANK_BLAKE2B, _seed_random, rng.getrandbits
    head, tail = f"{seed}\x00", f"\x00{column}"
    draws: list[int] = []
    for row in rows:
        hasher = blank.copy()
        hasher.update(f"{head}{row}{tail}".encode())
        seed_random(rng, int.from_bytes(hasher.digest(), "big"))
        draws.append(getrandbits(bits))
    return draws


_BLANK_BLAKE2B = hashlib.blake2b(digest_size=8)


@final
class _Missed:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSED"


MISSED: Final = _Missed()
"""A cell of :meth:`ColumnGenerator.replay_cached` whose first request is not cached."""

Replayed = tuple[Any, CellUsage] | _Missed | None
"""One cell's outcome in :meth:`ColumnGenerator.replay_cached`."""
_new_random = random.Random.__new__
_seed_random = _random.Random.seed  # the C seeding that Random.seed ends in


@attrs.frozen(slots=True)
class CellOutput:
    """A cell's value together with values for the generator's extra columns.

    Attributes:
      value: the cell's value (what a generator returns when it has no extra columns).
      extras: side-column name -> value, for names listed in
        :meth:`ColumnGenerator.extra_columns`. Not hashed; read-only.
      truncated: the value is an answer cut off at ``max_tokens`` that the column keeps
        (``on_truncated: keep``); the engine counts such cells in the column's ``truncated``
        count.
    """

    value: Any
    extras: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    truncated: bool = False


@attrs.define(eq=False, slots=True)
class CellContext:
    """What a cell generator sees.

    Attributes:
      column: the column being generated.
      row_index: the global row index (0-based over the whole run).
      row: this row's values so far, read-only (every upstream column is present).
      seed: the run seed.
      models: the run's model registry (``None`` when the pipeline has no models).
    """

    column: str
    row_index: int
    row: Mapping[str, Any]
    seed: int = 0
    models: Any = None
    _rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        """This cell's random generator (created on first use)."""
        if self._rng is None:
            self._rng = rng_for(self.seed, self.row_index, self.column)
        return self._rng


@attrs.define(eq=False, slots=True)
class ColumnContext:
    """What a full-column generator sees: the surviving rows of one row group.

    Attributes:
      column: the column being generated.
      row_group: the row group id.
      row_indices: global row indices of the rows to fill, in order.
      rows: those rows' values so far (same order), read-only.
      seed: the run seed.
      models: the run's model registry (``None`` when the pipeline has no models).
    """

    column: str
    row_group: int
    row_indices: Sequence[int]
    rows: Sequence[Mapping[str, Any]]
    seed: int = 0
    models: Any = None

    def rng_for(self, row_index: int) -> random.Random:
        """The random generator of cell (``row_index``, this column)."""
        return rng_for(self.seed, row_index, self.column)


class ColumnGenerator:
    """Base class of every generator; see the module docstring.

    Class attributes a subclass may set:
      strategy: ``"cell"`` or ``"full_column"``.
      llm_bound: the generator waits on a model endpoint; the engine hands its task's
        submission slot over to the LLM-wait pool before calling it (see the module
        docstring).
      inline: sync ``generate*`` is cheap and non-blocking, so run it on the event loop rather
        than in a worker thread.
      replays_from_cache: every model call of ``agenerate`` names its cell (``cell=`` of
        ``ModelHandle.chat``) and depends only on the context, so the engine may first run it
        against the response cache alone (LLM columns; see ``models/_cached.py``).
    """

    strategy: ClassVar[Strategy] = "cell"
    llm_bound: ClassVar[bool] = False
    inline: ClassVar[bool] = False
    replays_from_cache: ClassVar[bool] = False

    # -- cell strategy -------------------------------------------------------------------
    def generate(self, ctx: CellContext) -> Any:
        """Fill one cell, synchronously."""
        if not self._overrides("agenerate"):
            raise NotImplementedError(
                f"{type(self).__name__} implements neither generate nor agenerate"
            )
        return trio.run(self.agenerate, ctx)

    async def agenerate(self, ctx: CellContext) -> Any:
        """Fill one cell."""
        if not self._overrides("generate"):
            raise NotImplementedError(
                f"{type(self).__name__} implements neither generate nor agenerate"
            )
        if self.inline:
            await trio.lowlevel.checkpoint()
            return self.generate(ctx)
        return await trio.to_thread.run_sync(self.generate, ctx)

    # -- full-column strategy --------------------------------------------------------------
    def generate_column(self, ctx: ColumnContext) -> list[Any]:
        """Fill the column for ``ctx.rows``, synchronously; one value per row, in order."""
        if not self._overrides("agenerate_column"):
            raise NotImplementedError(
                f"{type(self).__name__} implements neither generate_column nor agenerate_column"
            )
        return trio.run(self.agenerate_column, ctx)

    async def agenerate_column(self, ctx: ColumnContext) -> list[Any]:
        """Fill the column for ``ctx.rows``; one value per row, in order."""
        if not self._overrides("generate_column"):
            raise NotImplementedError(
                f"{type(self).__name__} implements neither generate_column nor agenerate_column"
            )
        if self.inline:
            await trio.lowlevel.checkpoint()
            return self.generate_column(ctx)
        return await trio.to_thread.run_sync(self.generate_column, ctx)

    def _prepare_ahead(self) -> None:
        """Do now the once-per-run work a first cell would do on its own path (``create()``
        calls it once the run's first requests are out, while they wait for their answers);
        nothing by default. Never raises: what fails here fails again, as before, in the
        cell that needs it. Private (not part of the plugin protocol): a plugin's own
        ``prepare`` method, say, is never called by the run."""

    # -- schema ---------------------------------------------------------------------------
    def replay_cached(
        self, rows: Sequence[Mapping[str, Any]], indices: Sequence[int], *, seed: int, models: Any
    ) -> list[Replayed] | None:
        """The batched replay's entry point (``_engine/_replay.py``): serve many cells of this
        column from the response cache at once, synchronously. ``None`` (the default): the
        generator has no such path; each cell is then replayed through :meth:`agenerate`.

        A generator that has one (the LLM columns, ``LLMGenerator.replay_cached``) returns one
        entry per row (``rows[i]`` is the row's values, ``indices[i]`` its global index): a
        pair (the value, the cell's tally) exactly as :meth:`agenerate` under the cache-only
        pass would have returned and counted it, with one cache hit; :data:`MISSED` when the
        cell's first request is surely not cached (the pass would raise ``CacheMiss``);
        ``None`` when the cell must take the per-cell path (anything else: a re-ask, an
        error, a stored value that cannot be read). It counts nothing: the engine counts the
        hits of the cells it stores."""
        return None

    def extra_columns(self) -> tuple[str, ...]:
        """Names of side columns this generator fills via :class:`CellOutput` (default none)."""
        return ()

    def extra_arrow_types(self) -> Mapping[str, Any]:
        """Side column -> its pyarrow type, for side columns that are not strings (the
        default type of every side column)."""
        return {}

    def arrow_type(self) -> Any:
        """The pyarrow type of this column's values, or ``None`` to let pyarrow infer it."""
        return None

    def _overrides(self, name: str) -> bool:
        return getattr(type(self), name) is not getattr(ColumnGenerator, name)
