"""Trio drivers of a run: the three layers of the design as places, and the sync baseline.

* :mod:`._dispatch` — layer 1: each row group's dispatch loop, the submission and LLM-wait
  pools, and the one-way handoff between them;
* :mod:`._admission` — layer 2: ``RowGroupAdmission``, how many row groups are in memory;
* layer 3 (how fast each endpoint takes work) lives with the models: the per-endpoint limiter
  (``models/_limiter.py``) and the per-endpoint dispatch backlog (``models/_backlog.py``);
* :mod:`._async` — ``AsyncEngine``, the three layers composed;
* :mod:`._sync` — the column-at-a-time baseline (benchmarks, parity oracle);
* :mod:`._cells` — running one cell or one full-column task (shared by both engines);
* :mod:`._state` — ``RunState``, what one run shares: counters, failures, trace, checkpoints.

The scheduling *decisions* (which task is ready, when a row is dropped, how often a cell is
retried) are pure and live in ``_core`` (``CompletionTracker``, ``RetryPolicy``).
"""
