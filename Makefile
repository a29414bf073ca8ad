# cfa — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/cfa run

lint: $(STAMP)
	$(BIN)/ruff check cfa tests tools
	$(BIN)/ruff format --check cfa tests tools

typecheck: $(STAMP)
	$(BIN)/mypy cfa/core

test: lint typecheck
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python tools/bench.py quote

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache cfa.egg-info
