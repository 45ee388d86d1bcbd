"""The response cache as a run uses it: lookups in memory, reads and writes in batches.

The store (:class:`~trio_designer._cache.CacheStore`, SQLite) is synchronous; a run never
touches it on the path of a request:

* **Reads, per row group.** When a row group is admitted, the engine loads every stored answer
  of its rows and LLM columns in one query, in a worker thread (:meth:`ResponseCache.prefetch`).
  A lookup is then a dictionary access (:meth:`ResponseCache.get`): a hit costs no thread hop,
  no limiter slot and no request.
* **Writes, batched.** A paid answer is queued (:meth:`ResponseCache.put`, no I/O); a writer
  task writes the queue in one transaction every :data:`FLUSH_EVERY` answers or
  :data:`FLUSH_INTERVAL` seconds, whichever comes first, and the engine flushes at every
  row-group checkpoint and when the run ends (:meth:`ResponseCache.finish_group`,
  :meth:`ResponseCache.open`).
* **Virtual time.** Under ``trio.testing.MockClock`` (tests, simulations) the store is called
  on the event loop instead: there a blocked loop costs no (virtual) time, while a worker
  thread would let an autojump clock leap to the next deadline as if the run were idle.
* **A failing disk never fails a run.** A write that fails (disk full, a store locked for
  longer than its busy timeout) is logged once and counted in ``write_errors``; the answers
  are in the dataset anyway.

The cache-only pass. Before an LLM cell takes its LLM-wait slot, the engine runs the column's
generator once with :data:`cache_only` set: every request it makes is looked up, and the first
miss raises :class:`CacheMiss`. A cell whose every request hits is done without ever touching
the endpoint's limiter; a cell that misses is run again, for real, after the handoff (its
earlier requests then hit again, in memory). See ``_engine/_cells.py``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Final, TypeVar

import attrs
import trio

from .._cache import KEY_VERSION, CacheStore, CellKey
from .._cache._key import decode_fields, encode_fields
from .._cache._store import AnswerRow
from ._client import ChatResponse, Usage

__all__ = [
    "FLUSH_EVERY",
    "FLUSH_INTERVAL",
    "CacheMiss",
    "CacheStatistics",
    "ResponseCache",
    "cache_only",
]

logger = logging.getLogger("trio_designer.cache")

_T = TypeVar("_T")

FLUSH_EVERY: Final = 512
"""Queued answers that make the writer task write at once."""

FLUSH_INTERVAL: Final = 1.0
"""Seconds an answer waits in the queue at most (unless the run ends first). Each write is a
hop to the store's worker thread: once a second costs nothing measurable, four times a second
showed in a profile of a cold run (thread starts)."""

cache_only: ContextVar[bool] = ContextVar("trio_designer_cache_only", default=False)
"""Set by the engine around a cell's cache-only pass: a lookup that misses raises
:class:`CacheMiss` instead of sending the request."""


def _virtual_clock() -> bool:
    """Whether the run's clock is ``trio.testing.MockClock``. Looked up, not imported:
    ``trio.testing`` imports pytest when it is installed (~0.25 s of every process's start-up,
    a shard's child included), and a run whose clock is a MockClock has imported it."""
    testing = sys.modules.get("trio.testing")
    return testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock)


_USAGE_MEMO: Final = 4096
"""Distinct token-count triples :meth:`ResponseCache.get` keeps a shared ``Usage`` for."""

_new_response = object.__new__
_HIT_FIELDS: Final = (
    "content", "reasoning", "usage", "finish_reason", "model", "rate_limits", "cached"
)
_RESPONSE_SLOTS: Final = tuple(
    ChatResponse.__dict__[name].__set__  # the slots' descriptors: what attrs' __init__ sets
    for name in _HIT_FIELDS
)
_DEFAULT_SLOTS: Final = tuple(
    (ChatResponse.__dict__[field.name].__set__, field.default)
    for field in attrs.fields(ChatResponse)
    if field.name not in _HIT_FIELDS
)
"""Every other field of ``ChatResponse`` (a refusal, tool calls: never in a stored answer) and
its default, so a field added to it later is set on a hit too (its default must be a plain
value; ``tests/test_cache_store.py`` compares a hit with the keyword-built response)."""


def _hit_response(
    content: str, reasoning: str | None, usage: Usage, finish: str | None, model: str
) -> ChatResponse:
    """``ChatResponse(content=..., ..., rate_limits=None, cached=True)``, built by setting its
    slots directly: attrs' keyword ``__init__`` of a frozen class (one bound ``__setattr__``
    call per field) was about half of a hit's decoding. ``tests/test_cache.py`` checks that
    the two are equal, field for field (a field added to ``ChatResponse`` fails it)."""
    response = _new_response(ChatResponse)
    s_content, s_reasoning, s_usage, s_finish, s_model, s_limits, s_cached = _RESPONSE_SLOTS
    s_content(response, content)
    s_reasoning(response, reasoning)
    s_usage(response, usage)
    s_finish(response, finish)
    s_model(response, model)
    s_limits(response, None)
    s_cached(response, True)
    for set_slot, default in _DEFAULT_SLOTS:
        set_slot(response, default)
    return response


class CacheMiss(Exception):
    """A request of a cache-only pass is not in the cache (internal: never leaves the
    engine)."""


@attrs.frozen(kw_only=True)
class CacheStatistics:
    """What the cache did during a run."""

    directory: str
    key_version: int
    hits: int
    misses: int
    stored: int
    loaded: int
    corrupt: int
    write_errors: int

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class _Group:
    """The entries of one admitted row group kept in memory."""

    start: int
    stop: int
    keys: list[bytes]
    loaded: int


class ResponseCache:
    """A run's view of the store (see the module docstring). Open with :meth:`open`."""

    def __init__(self, store: CacheStore, *, on_loop: bool = False) -> None:
        self._store = store
        self._on_loop = on_loop
        self._answers: dict[bytes, bytes] = {}
        self._groups: dict[int, _Group] = {}
        self._last_group: _Group | None = None  # put's guess: the group of the last put
        self._queue: list[AnswerRow] = []  # plain tuples: see AnswerRow
        self._thread = trio.CapacityLimiter(1)  # the store is used by one thread at a time
        self._flushing = trio.Lock()
        self._queued = trio.Event()
        self._full = trio.Event()
        self._hits = 0
        self._misses = 0
        self._stored = 0
        self._loaded = 0
        self._corrupt = 0
        self._write_errors = 0
        # A hit's Usage by its counts: Usage is frozen, so hits with the same counts share one
        # (a warm run's answers repeat a few hundred count triples; bounded all the same).
        self._usages: dict[tuple[int, int, int], Usage] = {}

    @classmethod
    @asynccontextmanager
    async def open(cls, directory: str | os.PathLike[str]) -> AsyncIterator[ResponseCache]:
        """Open the store in ``directory`` and run the writer task; on exit, write what is
        queued (also when the run was cancelled) and close the store.

        Raises:
          ConfigError: the store cannot be opened (the message names the remedies).
        """
        virtual = _virtual_clock()
        if virtual:
            await trio.lowlevel.checkpoint()
            store = CacheStore(directory)
        else:
            store = await trio.to_thread.run_sync(CacheStore, directory)
        cache = cls(store, on_loop=virtual)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cache._writer)
                try:
                    yield cache
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await cache.flush()
                await cache._call(store.close)

    @property
    def directory(self) -> str:
        return str(self._store.directory)

    # -- lookups (trio thread, no I/O) ----------------------------------------------------
    def get(self, key: bytes) -> ChatResponse | None:
        """The cached answer of ``key`` among the loaded row groups, or ``None``."""
        value = self._answers.get(key)
        if value is None:
            return None
        response = self._decode(value)
        if response is None:
            self._corrupt += 1
            return None
        self._hits += 1
        return response

    def peek_many(self, keys: Sequence[bytes]) -> list[ChatResponse | bool]:
        """:meth:`get` of each of ``keys``, in one loop, **counting nothing**: the answer,
        ``False`` when the key is not among the loaded answers (a sure miss), ``True`` when
        it is but its stored value cannot be read (:meth:`get` would count it ``corrupt``).

        For the batched replay of cached cells (``LLMGenerator.replay_cached``): it uses only
        some of the answers, and counts those (:meth:`count_hits`); the cells it leaves to the
        per-cell path look their answers up again with :meth:`get`, which counts them then."""
        answers, usages, hit = self._answers, self._usages, _hit_response
        found: list[ChatResponse | bool] = []
        for key in keys:
            value = answers.get(key)
            if value is None:
                found.append(False)
                continue
            # _decode, written out.
            try:
                content, reasoning, tin, tout, treason, finish, model = decode_fields(value)
            except ValueError:
                found.append(True)
                continue
            counts = (tin, tout, treason)
            usage = usages.get(counts)
            if usage is None:
                usage = Usage(input_tokens=tin, output_tokens=tout, reasoning_tokens=treason)
                if len(usages) >= _USAGE_MEMO:
                    usages.clear()
                usages[counts] = usage
            found.append(hit(content, reasoning, usage, finish, model))
        return found

    def count_hits(self, hits: int) -> None:
        """Count ``hits`` answers served that :meth:`peek_many` looked up."""
        self._hits += hits

    def _decode(self, value: bytes) -> ChatResponse | None:
        """The stored answer ``value`` as a hit's response, ``None`` if it cannot be read."""
        try:
            content, reasoning, tin, tout, treason, finish, model = decode_fields(value)
        except ValueError:
            return None
        counts = (tin, tout, treason)
        usage = self._usages.get(counts)
        if usage is None:
            usage = Usage(input_tokens=tin, output_tokens=tout, reasoning_tokens=treason)
            if len(self._usages) >= _USAGE_MEMO:
                self._usages.clear()
            self._usages[counts] = usage
        return _hit_response(content, reasoning, usage, finish, model)

    def missed(self) -> None:
        """Count a request sent because its answer was not cached."""
        self._misses += 1

    def may_hit(self, group: int) -> bool:
        """Whether row group ``group`` had any stored answer when it was loaded (if not, the
        engine skips the cache-only pass of its cells: nothing can hit)."""
        loaded = self._groups.get(group)
        return loaded is not None and loaded.loaded > 0

    def put(self, key: bytes, cell: CellKey, response: ChatResponse) -> None:
        """Queue a paid answer for writing (and keep it for a retry of the same cell).

        The writer is woken by the put that makes the queue non-empty, not by every put.
        Invariant (kept by :meth:`flush` and :meth:`_writer`): **while the queue holds an
        answer, either ``_queued`` is set or the writer is between replacing its events and
        the swap of the queue in :meth:`flush`** (which takes every answer queued until then).
        The queue is only ever emptied by that swap, so the put that finds it empty is the
        first one the writer has not seen yet, and setting ``_queued`` then is enough: a
        later put of the same batch would set an event already set (a Python call a request,
        ``trio.Event.set`` with its KI protection, for nothing).
        ``tests/test_cache_store.py`` checks that answers queued after a flush are written by
        the writer's timer."""
        usage = response.usage
        value = encode_fields(
            response.content,
            response.reasoning,
            usage.input_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
            response.finish_reason,
            response.model,
        )
        row = cell.row
        queue = self._queue
        queue.append((key, cell.run_seed, row, cell.column, value))
        # The group of the row: most puts fall in the group of the put before.
        group = self._last_group
        if group is None or not group.start <= row < group.stop:
            group = None
            for candidate in self._groups.values():
                if candidate.start <= row < candidate.stop:
                    group = self._last_group = candidate
                    break
        if group is not None:
            self._answers[key] = value
            group.keys.append(key)
        queued = len(queue)
        if queued == 1:
            self._queued.set()
        if queued >= FLUSH_EVERY:
            self._full.set()

    # -- row groups -----------------------------------------------------------------------
    async def prefetch(
        self, group: int, run_seed: int, start: int, stop: int, columns: Sequence[str]
    ) -> None:
        """Load every stored answer of rows ``[start, stop)`` of ``columns`` (one query, in a
        worker thread)."""
        loaded = await self._call(self._store.load_rows, run_seed, start, stop, tuple(columns))
        self._answers.update(loaded.values)
        self._groups[group] = _Group(start, stop, list(loaded.values), len(loaded.values))
        self._last_group = None  # put's guess must be a group of _groups
        self._loaded += len(loaded.values)
        self._corrupt += loaded.corrupt

    async def finish_group(self, group: int) -> None:
        """Write what is queued, and let go of the group's entries."""
        await self.flush()
        self.forget_group(group)

    def forget_group(self, group: int) -> None:
        """Let go of the group's entries (no I/O; also for an abandoned group)."""
        entry = self._groups.pop(group, None)
        if entry is self._last_group:
            self._last_group = None
        if entry is not None:
            for key in entry.keys:
                self._answers.pop(key, None)

    # -- writing --------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write every queued answer, in one transaction (in a worker thread)."""
        async with self._flushing:
            batch, self._queue = self._queue, []
            if not batch:
                await trio.lowlevel.checkpoint()
                return
            try:
                self._stored += await self._call(self._store.put_many, batch)
            except Exception as exc:  # a cache that cannot write must not fail the run
                if not self._write_errors:
                    logger.warning(
                        "the response cache at %s could not store %d answers (%s); the run "
                        "goes on, these answers will be paid again next time",
                        self.directory,
                        len(batch),
                        exc,
                    )
                self._write_errors += len(batch)

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in the store's worker thread (on the loop in virtual time)."""
        if self._on_loop:
            await trio.lowlevel.checkpoint()
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self._thread)

    async def _writer(self) -> None:
        while True:
            await self._queued.wait()
            with trio.move_on_after(FLUSH_INTERVAL):
                await self._full.wait()
            self._queued = trio.Event()
            self._full = trio.Event()
            await self.flush()

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(
            directory=self.directory,
            key_version=KEY_VERSION,
            hits=self._hits,
            misses=self._misses,
            stored=self._stored,
            loaded=self._loaded,
            corrupt=self._corrupt,
            write_errors=self._write_errors,
        )
