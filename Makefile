# AI Factory: every target sets itself up from a fresh clone.
#   make up     start Airflow (SQLite, local compute) with the demo data and the DAGs unpaused
#   make demo   run the pipeline headless to completion and print what it did
#   make test   run the whole test suite (creates the venv when missing)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The UI browser test drives Debian's Chromium (Playwright never downloads a browser).
CHROMIUM ?= $(or $(AI_FACTORY_CHROMIUM),/usr/bin/chromium)
CHROMIUM_STAMP := $(VENV)/.chromium
export AI_FACTORY_CHROMIUM := $(CHROMIUM)

export AI_FACTORY_HOME := $(CURDIR)

.PHONY: up demo test test-fast test-faults lint bench venv clean chromium

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	# torch first: 2.13.0 is the CPU wheel on this disk; anything else downloads GBs.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# Installs Debian's chromium when missing (root, or sudo). If that is impossible the browser
# test skips with the reason; the stamp is then not written, so the next run tries again.
chromium: $(CHROMIUM_STAMP)

$(CHROMIUM_STAMP):
	@mkdir -p $(VENV)
	@if [ -x "$(CHROMIUM)" ]; then touch $@; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "== installing Debian chromium for the UI browser test =="; \
		if $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
		&& [ -x "$(CHROMIUM)" ]; then touch $@; \
		else echo "!! could not install chromium at $(CHROMIUM): the UI browser test will be skipped"; fi; \
	else echo "!! no $(CHROMIUM) and no apt-get: the UI browser test will be skipped"; fi

up: $(STAMP)
	@$(BIN)/ai-factory up

demo: $(STAMP)
	@$(BIN)/ai-factory demo

test: $(STAMP) $(CHROMIUM_STAMP)
	$(BIN)/python -m pytest -m "not scenario"
	@if $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 5432), 2)" 2>/dev/null; then \
		echo "== end-to-end tests again on PostgreSQL (metadata DB), and the scenarios (whole loop, backfill reproducibility) =="; \
		AI_FACTORY_TEST_DB=postgres $(BIN)/python -m pytest -m "(e2e or scenario) and not ui"; \
	else echo "!! PostgreSQL not reachable at 127.0.0.1:5432: skipped the PostgreSQL end-to-end pass and the scenarios"; fi

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not scenario and not faults"

test-faults: $(STAMP)
	$(BIN)/python -m pytest -m faults

lint: $(STAMP)
	$(BIN)/ruff check dags include plugins bentos tests bench
	$(BIN)/ruff check --select AIR3 dags

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf .airflow .data .bentoml
