# The course kit's entry points. `make demo` and `make test` are the two
# commands of the README; both create the environment first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Single-threaded numerics: steady timings on small machines (see README).
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export PYTHONDONTWRITEBYTECODE := 1
# nbgrader calls `alembic` as a subprocess: the environment's bin/ must be on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: env demo test release clean

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

demo: env
	$(BIN)/python -m course_tools demo

test: env
	$(BIN)/python -m pytest $(PYTEST_ARGS)

release: env
	$(BIN)/python -m course_tools release

clean:
	rm -rf build .pytest_cache
