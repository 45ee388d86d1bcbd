# trio_designer — developer entry points. Everything installs itself into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-quick lint typecheck unit property soak bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,progress,plot,socks,http2,hf,person,stats,pandas,polars,duckdb,dedup,sql,ray]'
	touch $(STAMP)

## make run: a real pipeline against the built-in simulated endpoint, with progress; writes parquet
run: $(STAMP)
	$(PY) examples/run_demo.py --output-dir out/demo

## make test: lint, type-check, unit tests and the property suite
test: lint typecheck unit property

## make test-quick: lint and the unit tests not marked slow (no subprocesses, no property suite)
test-quick: lint
	$(PY) -m pytest tests -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check trio_designer tests property_tests benches examples

# trio-typing is deliberately NOT installed: its stubs shadow trio's own inline types
# (see docs/troubleshooting.md#trio-typing).
typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict trio_designer

unit: $(STAMP)
	$(PY) -m pytest tests -q --durations=15

property: $(STAMP)
	$(PY) -m pytest property_tests -q

## make soak: the property suite with ten times the examples
soak: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest property_tests -q -o timeout=2400

bench: $(STAMP)
	$(PY) -m benches all

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache .hypothesis
