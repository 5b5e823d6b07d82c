# Two commands matter: `make run` and `make test`. Both set up .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench bench-smoke clean

# Byte-compiling every installed module at install time is most of a fresh install on a
# slow machine (pandas alone: 6 minutes here), and the tests import a fraction of them. So
# pip does not compile, and Python writes the .pyc of what is imported, once, when it is
# first imported (an environment that sets PYTHONDONTWRITEBYTECODE would otherwise
# recompile every import in every process).
PIP_INSTALL := $(BIN)/pip install -q --no-compile
unexport PYTHONDONTWRITEBYTECODE

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e ".[dev]"
	touch $(STAMP)

$(VENV)/.installed-bench: pyproject.toml $(STAMP)
	$(PIP_INSTALL) -e ".[dev,bench]"
	touch $@

run: $(STAMP)
	$(BIN)/jacnet train --dataset digits

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# Two pytest workers on two cores (loadgroup: an xdist_group, such as the Dask tests, runs on
# one of them, in file order): one BLAS thread each, or OpenBLAS threads spin
# against each other and small products run many times slower.
test: lint
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadgroup

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
