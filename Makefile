# medclass: the two commands a user needs are `make repro` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install repro test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -c constraints.txt -e '.[all]'

repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test:
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

lint:
	$(BIN)/ruff check .
