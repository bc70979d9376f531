# Two entry points for a newcomer (see README): `make course` and `make test`.
# Everything lives in a local virtual environment, .venv/.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed on its own first so that pip keeps this build. On the course's
# machines the pin resolves to a local CPU wheel; from PyPI on Linux it is the multi-GB
# CUDA build. For a CPU build elsewhere, point TORCH_INDEX at the CPU wheel index, e.g.
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
VENV_FLAGS ?=
PYTEST_ARGS ?=
PORT ?= 8888

.PHONY: setup-course setup-test setup-torchrec course test test-fast e2e report lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# A stamp file per extra: pip runs again only when pyproject.toml or this file changed.
# TORCH= (empty) installs no torch: with VENV_FLAGS=--system-site-packages the venv then
# uses the torch already installed on the machine (a CUDA build, say).
INSTALL_TORCH = $(if $(TORCH),$(BIN)/python -m pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)))

$(VENV)/.installed-course: pyproject.toml Makefile | $(BIN)/python
	$(INSTALL_TORCH)
	$(BIN)/python -m pip install -q -e ".[course]"
	touch $@

# the test extra includes the course extra
$(VENV)/.installed-test: pyproject.toml Makefile | $(BIN)/python
	$(INSTALL_TORCH)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@ $(VENV)/.installed-course

# TorchRec for tests/test_torchrec.py and examples/ (docs/production.md, "TorchRec"). A
# matched set, CPU only: fbgemm-gpu-cpu 1.8.0 is built against torch 2.13 (1.9.0 fails to
# load against it). torchrec declares a dependency on fbgemm-gpu, the multi-GB CUDA build,
# so the `torchrec` extra installs fbgemm-gpu-cpu and torchrec's other requirements, and
# torchrec itself comes without dependencies. About 50 MB in .venv.
TORCHREC ?= torchrec==1.8.0
$(VENV)/.installed-torchrec: $(VENV)/.installed-test
	$(BIN)/python -m pip install -q -e ".[test,torchrec]" $(TORCH)
	$(BIN)/python -m pip install -q --no-deps $(TORCHREC)
	touch $@

setup-course: $(VENV)/.installed-course
setup-test: $(VENV)/.installed-test
setup-torchrec: $(VENV)/.installed-torchrec

# JupyterLab on 127.0.0.1 with a token (tools/start_course.py): --allow-root as root, no
# browser without a display, the next free port when PORT is taken.
course: setup-course
	$(BIN)/python tools/start_course.py --port $(PORT)

# Everything, on two xdist workers (one per core of the course's machines); tests that share a
# file run on one worker (--dist loadfile in pyproject.toml), so each notebook and each
# multi-process job keeps its file's order. PYTEST_ARGS="-n 0" runs serially.
test: setup-test setup-torchrec
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# The unit and property tests on two workers, in under 3 minutes on a 2-core machine:
# no notebooks, no browser, no Binder build, no launcher or other slow subprocess tests
# (the markers in pyproject.toml). `make test` runs everything.
FAST_MARKERS := not slow and not e2e and not binder and not distributed
test-fast: setup-test
	$(BIN)/python -m pytest tests -m "$(FAST_MARKERS)" -n 2 --dist load $(PYTEST_ARGS)

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
