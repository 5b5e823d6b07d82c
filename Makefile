# Two commands matter: `make run` and `make test`. Both set up .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test test-suite test-all lint bench bench-smoke clean

# Installs go through uv, taken from PyPI into .venv/uv by the system's pip: on a slow
# machine pip took 25 minutes to resolve and install the dev extra, uv 4.4 minutes (and a
# venv made without pip takes seconds, not the 3.5 minutes ensurepip took). Nothing is
# byte-compiled at install time (pandas alone took 6 minutes); Python writes the .pyc of
# what is imported, once, when it is first imported (an environment that sets
# PYTHONDONTWRITEBYTECODE would otherwise recompile every import in every process).
UV := $(VENV)/uv/bin/uv
UV_INSTALL := $(UV) pip install -q --python $(BIN)/python
unexport PYTHONDONTWRITEBYTECODE

$(BIN)/python:
	$(PY) -m venv --without-pip $(VENV)

$(UV): | $(BIN)/python
	$(PY) -m pip install -q --no-compile --target $(VENV)/uv uv

$(STAMP): pyproject.toml | $(UV)
	$(UV_INSTALL) -e ".[dev]"
	touch $(STAMP)

# torch==2.13.0 is the CPU wheel that lies in this machine's pip find-links (/opt/wheels);
# uv does not look there and PyPI's 2.13.0 is a CUDA build of several GB, so the bench
# extra goes through the system's pip, pointed at the venv. The fast extra (numba) too:
# the perf suite times jacnet with its compiled kernels and without them.
#
# laplace-torch (the uncertainty suite's peer) requires torchvision, and so do
# backpack-for-pytorch and, through it, curvlinops-for-pytorch, though nothing the suite
# runs uses it. PyPI's torchvision wheels are CUDA builds made for PyPI's torch: against
# the CPU torch above they fail to load, and torchmetrics and laplace, which import
# torchvision whenever it is installed, then fail on import too. So these three come
# without their dependencies (the bench extra lists the ones they need), and a torchvision
# that an earlier install left in the venv is removed.
LAPLACE_NO_DEPS := laplace-torch==0.3 backpack-for-pytorch==1.7.1 curvlinops-for-pytorch==3.0.1
$(VENV)/.installed-bench: pyproject.toml $(STAMP)
	$(PY) -m pip --python $(BIN)/python install -q --no-compile -e ".[dev,bench,fast]"
	$(PY) -m pip --python $(BIN)/python install -q --no-compile --no-deps $(LAPLACE_NO_DEPS)
	$(PY) -m pip --python $(BIN)/python uninstall -q -y torchvision
	touch $@

run: $(STAMP)
	$(BIN)/jacnet train --dataset digits

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# Two pytest workers on two cores (loadgroup: an xdist_group, such as the Dask tests, runs on
# one of them, in file order): one BLAS thread each, or OpenBLAS threads spin
# against each other and small products run many times slower.
PYTEST := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadgroup

# make test leaves out the tests marked slow (the wider sweeps and the heaviest end-to-end
# runs, each covering what a faster test also checks on a smaller case); make test-all runs
# everything, with JACNET_TEST_NETWORKS=150 random networks against JAX instead of 50.
# Lint and tests run side by side: the first minutes of pytest (its controller loading
# jax and writing the .pyc of what it imports) keep one core busy, mypy takes the other.
SELECT := -m "not slow"

test: $(STAMP)
	$(MAKE) --no-print-directory -j2 lint test-suite

test-suite: $(STAMP)
	$(PYTEST) $(SELECT)

test-all: $(STAMP)
	$(MAKE) --no-print-directory test SELECT= JACNET_TEST_NETWORKS=150

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
