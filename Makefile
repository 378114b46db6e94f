# The two commands of the README: `make up` and `make test`. Both install what they need first.
# The first interpreter that runs and is 3.11+ (a pyenv shim can exist and still fail to run).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && command -v $$p && break; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down status test lint install clean

up: install ## install, then start the whole stack in the foreground (ARGS=--detach for the background)
	$(BIN)/trader up $(ARGS)

down: install
	$(BIN)/trader down

status: install
	$(BIN)/trader status

test: lint ## the whole suite, against real NATS, SeaweedFS and QuestDB that the tests start
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "trader needs Python 3.11 or later: set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
