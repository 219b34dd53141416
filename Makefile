# Set-up and everyday commands. `make run` opens the app, `make test` runs the suite.
#
# Torch is installed before sentence-transformers so that pip does not pick a
# build on its own. TORCH_SPEC and TORCH_INDEX_URL choose the build; see README.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: run test install bench clean

run: $(VENV)/.installed
	$(BIN)/wordorder $(ARGS)

install: $(VENV)/.installed

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "wordorder-tui needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	@if $(BIN)/python -c 'import torch' 2>/dev/null; then \
		echo "torch already in $(VENV): keeping it"; \
	else \
		echo "installing $(TORCH_SPEC) before sentence-transformers"; \
		$(PIP) install "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)); \
	fi
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
