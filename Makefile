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

# mypy cannot follow the package-dir mapping (services/chain-writer is anchorline_chain_writer):
# it checks the services through a tree of links named as the packages are.
SERVICES := gateway verifier prover chain-writer projector notifier scheduler
TYPECHECK := $(VENV)/typecheck

lint: $(BIN)/anchorline
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@mkdir -p $(TYPECHECK)
	@for s in $(SERVICES); do ln -sfn "$(CURDIR)/services/$$s" "$(TYPECHECK)/anchorline_$$(echo $$s | tr - _)"; done
	MYPYPATH=$(TYPECHECK) $(BIN)/mypy -p anchorline $(foreach s,$(SERVICES),-p anchorline_$(subst -,_,$(s)))

test: setup lint
	$(BIN)/anchorline setup --postgres --browser
	$(BIN)/pytest
