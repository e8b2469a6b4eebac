# The two commands of the README: `make run` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint

$(BIN)/anchorline: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/anchorline
	$(BIN)/anchorline setup

run: setup
	$(BIN)/anchorline up

lint: $(BIN)/anchorline
	$(BIN)/ruff check .
	$(BIN)/mypy -p anchorline

test: setup lint
	$(BIN)/anchorline setup --postgres
	$(BIN)/pytest
