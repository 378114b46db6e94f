# The two commands of the README: `make up` and `make test`. Both install what they need first.
# The first interpreter that runs and is 3.11+ (a pyenv shim can exist and still fail to run).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && command -v $$p && break; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INSTALL_LOG := $(VENV)/install.log
# Where `make up` links the trader command when that directory is on PATH (LINK_DIR= links nothing).
LINK_DIR ?= $(HOME)/.local/bin
SHELL := /bin/bash

.PHONY: up down status test lint install link clean

up: install link ## install, then start the whole stack in the foreground (ARGS=--detach for the background)
	$(BIN)/trader up $(ARGS)

down: install
	$(BIN)/trader down

status: install
	$(BIN)/trader status

# Test files run on PYTEST_WORKERS processes (a file's tests stay on one, with its stack; 0 runs them in
# this process, one after another). The stack tests mostly wait, so two workers on two cores took the
# suite from 25m15s to 19m40s (clean clones, 2026-12-03); a file marked `alone` (the backtest parity,
# the browser) has the machine to itself meanwhile (tests/conftest.py).
PYTEST_WORKERS ?= 2

test: lint ## the whole suite, against real NATS, SeaweedFS and QuestDB that the tests start
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy src

install: $(STAMP)

# A line per step, and a line per 25 packages while pip works (minutes, the first time); pip's own
# output goes to $(INSTALL_LOG), shown whole if it fails.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "trader needs Python 3.11 or later: set PYTHON=/path/to/python3.11"; exit 1; }
	@echo "==> creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	@$(PYTHON) -m venv $(VENV)
	@echo "==> upgrading pip"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "==> installing trader and its dependencies into $(VENV) (a few minutes the first time; log: $(INSTALL_LOG))"
	@set -o pipefail; PYTHONUNBUFFERED=1 $(BIN)/python -m pip install --progress-bar off -e '.[dev]' 2>&1 \
		| tee $(INSTALL_LOG) | { n=0; while IFS= read -r line; do case "$$line" in \
			Collecting*) n=$$((n + 1)); package=$${line#Collecting }; \
				[ $$((n % 25)) -eq 0 ] && echo "    $$n packages resolved (now $${package%% *})";; \
			"Installing collected packages"*) echo "    $$n packages resolved; installing them";; \
		esac; done; true; } \
		|| { echo "pip failed: $(INSTALL_LOG) says why"; tail -n 30 $(INSTALL_LOG); exit 1; }
	@echo "==> installed: $$($(BIN)/python -m pip list 2>/dev/null | tail -n +3 | wc -l) packages in $(VENV)"
	@touch $@

# `trader` on PATH: a link in LINK_DIR when that directory is on PATH (never over another program of
# that name); otherwise how to put it there.
link: install
	@target="$(abspath $(BIN))/trader"; dir="$(LINK_DIR)"; \
	found=$$(command -v trader) && [ "$$(readlink -f "$$found")" = "$$(readlink -f "$$target")" ] && exit 0; \
	on_path=no; case ":$$PATH:" in *":$$dir:"*) on_path=yes;; esac; \
	ours=yes; if [ -e "$$dir/trader" ] && ! readlink "$$dir/trader" | grep -q '/bin/trader$$'; then ours=no; fi; \
	if [ -n "$$dir" ] && [ $$on_path = yes ] && [ $$ours = yes ]; then \
		mkdir -p "$$dir" && ln -sfn "$$target" "$$dir/trader" \
		&& echo "==> trader is on your PATH: $$dir/trader -> $$target"; \
	else \
		echo "==> trader is in $(BIN), not on your PATH: run '. $(BIN)/activate' in each shell first"; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
