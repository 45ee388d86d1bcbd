"""Benchmarks: not tests. `python -m benches <name>` prints a table and writes JSON under
benches/results/ (see docs/benchmarks.md)."""
