"""The cyclic garbage collector during a run: a larger young generation.

A run allocates many small containers that live for a while — a request's messages and body,
an answer's decoded JSON, the values a row group holds until it is written — and CPython's
collector, with its default young-generation threshold (700 net allocations), collects the
young generation hundreds of times a second: each pass walks every young container, and what
is still alive (most of a row group's values) is promoted and walked again by the older
generations' passes. On a warm-cache run (every cell served from the cache, so nothing but
Python work) the collector was ~10 % of the CPU (``docs/benchmarks-history.md``, stop 23).

So while a run is in progress the first threshold is raised to :data:`RUN_YOUNG_THRESHOLD`:
a young container is walked only after that many allocations, by which time most of a
request's and an answer's objects have been freed by reference counting (the collector is
only needed for cycles, which the engine makes few of). The older thresholds are left alone.
The cost is memory the collector would have freed earlier: at most the cyclic garbage of
:data:`RUN_YOUNG_THRESHOLD` containers (a few MB).

Rules, process-wide (``tests/test_collector.py``):

* the first run to start raises the threshold, the last to end puts back what it found —
  runs may overlap (``create()`` in several tasks, or threads);
* a higher threshold already set (by the application) is kept, and a collector that is
  disabled stays disabled;
* the threshold is put back only if it is still the one the run set: an application that
  changed it meanwhile keeps its own.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["RUN_YOUNG_THRESHOLD", "collector_tuned"]

RUN_YOUNG_THRESHOLD: Final = 20_000
"""The collector's first threshold while a run is in progress (CPython's default: 700)."""

_lock = threading.Lock()
_runs = 0
_saved: tuple[int, int, int] | None = None  # the thresholds found by the first run
_set: tuple[int, int, int] | None = None  # the thresholds the first run set


@contextmanager
def collector_tuned() -> Iterator[None]:
    """Run the block with the collector's young generation raised (see the module docstring)."""
    global _runs, _saved, _set
    with _lock:
        if _runs == 0:
            found = gc.get_threshold()
            if found[0] < RUN_YOUNG_THRESHOLD:
                _saved, _set = found, (RUN_YOUNG_THRESHOLD, found[1], found[2])
                gc.set_threshold(*_set)
            else:
                _saved = _set = None
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                if _saved is not None and gc.get_threshold() == _set:
                    gc.set_threshold(*_saved)
                _saved = _set = None
