# Two entry points for a newcomer (see README): `make course` and `make test`.
# Everything lives in a local virtual environment, .venv/.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed on its own first so that pip keeps this build: the CPU
# wheel by default. Elsewhere, point TORCH_INDEX at the CPU wheel index, e.g.
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=

.PHONY: setup setup-course setup-test course test e2e report lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

setup-course: $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[course]"

setup-test: $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[test]"

course: setup-course
	$(BIN)/jupyter lab notebooks/00_start_here.ipynb

test: setup-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# JupyterLab in headless Chromium (Debian's chromium package), every notebook: docs/e2e.md
e2e: setup-test
	$(BIN)/python -m pytest -m e2e tests/e2e $(PYTEST_ARGS)

# The course without Jupyter: rerun its experiments and write one self-contained HTML page.
report: setup-course
	$(BIN)/python -m mbviz report -o report.html

lint: setup-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
