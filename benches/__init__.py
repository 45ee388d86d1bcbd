"""Benchmarks: not tests. `python -m benches <name> [--quick]` prints a table and writes JSON under
benches/results/ (see docs/benchmarks.md for what each measures, how, and the latest numbers).

Benches (one module each, each with ``run(profile, *, results_dir, img_dir)`` and profiles
``full``, ``quick`` and ``smoke`` — the last is what ``tests/test_benches_smoke.py`` runs):

* ``seed`` — the seed's table: four shapes, sync vs async, 10 records, virtual and real time;
* ``bound`` — makespan ÷ the DAG lower bound of each run (critical path, per-model work);
* ``scale`` — Dual-model on two GPU-mode endpoints, 1,000 and 10,000 records, utilisation;
* ``adaptivity`` — the per-model limiter against hosted (429) and GPU (queueing) endpoints;
* ``overhead`` — cells/s with zero-latency generators on one core, plus a cProfile;
* ``memory`` — peak RSS vs records in fresh subprocesses, parquet sink.

Shared helpers (shapes, the run helper, lower bounds, tables, JSON) live in ``_common``.
"""
