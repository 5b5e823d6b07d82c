# Two commands matter: `make run` and `make test`. Both set up .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench bench-smoke clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

$(VENV)/.installed-bench: pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $@

run: $(STAMP)
	$(BIN)/jacnet train --dataset digits

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# Two pytest workers on two cores: one BLAS thread each, or OpenBLAS threads spin
# against each other and small products run many times slower.
test: lint
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
