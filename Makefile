# The two entry points the README gives: `make dev` and `make test`.
# Both bootstrap everything they need on a fresh Debian machine. `make image` builds the
# container image into dist/ (buildah; no engine or registry needed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: dev test lint unit e2e node image

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

image: $(BIN)/.installed
	$(BIN)/keywright image --output dist

# The in-cluster suite: builds the image as `make image` does, starts a real node with it
# and installs deploy/ with kubectl (its own session: one node for all its tests).
node: $(BIN)/.installed
	$(BIN)/keywright cluster prepare
	$(BIN)/pytest tests/node

test: $(BIN)/.installed
	$(BIN)/keywright cluster prepare
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest
	$(BIN)/pytest tests/node
