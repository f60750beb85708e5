# The two entry points the README gives: `make dev` and `make test`.
# Both bootstrap everything they need on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: dev test lint unit e2e

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

dev: $(BIN)/.installed
	$(BIN)/keywright dev

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit

e2e: $(BIN)/.installed
	$(BIN)/keywright cluster prepare
	$(BIN)/pytest tests/e2e

test: $(BIN)/.installed
	$(BIN)/keywright cluster prepare
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest
