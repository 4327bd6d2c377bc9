# The two commands: `make run` and `make test`. Each works on a fresh machine with Python 3.11 and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch goes in first, pinned to the CPU build that lies on this machine's disk: the [embeddings] extra
# (sentence-transformers) needs torch, and with none installed pip would take a CUDA build of several GB.
# The extra's own bound (torch>=2.6) then installs nothing more. Elsewhere: make TORCH='torch==X.Y.Z'.
TORCH ?= torch==2.13.0

# Reinstall when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/prodloop serve --demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .prodloop
