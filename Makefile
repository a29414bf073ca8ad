# cfa — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check eval lint typecheck bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)  # 30 simulated minutes at 10x (3 min): watch it, or open `cfa console` beside it
	$(BIN)/cfa run --speed 10x --duration 30m --approvals person

lint: $(STAMP)
	$(BIN)/ruff check cfa tests tools
	$(BIN)/ruff format --check cfa tests tools

typecheck: $(STAMP)
	$(BIN)/mypy cfa/core

test: lint typecheck
	$(BIN)/python -m pytest

check: lint typecheck  # the inner loop: stop at the first failure, skip the slow tests
	$(BIN)/python -m pytest -x -m "not slow"

eval: $(STAMP)  # the default evaluation suite (20 held-out seeds x 5 scenarios x 4 strategies)
	$(BIN)/cfa eval --suite default

bench: $(STAMP)
	$(BIN)/python tools/bench.py quote

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache cfa.egg-info
