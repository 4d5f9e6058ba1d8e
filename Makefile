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

# Each test runs once: unit, serving, UI and fault tests on the embedded SQLite default; the
# Airflow end-to-end tests and the scenarios on PostgreSQL, as production runs them. Without a
# reachable PostgreSQL a developer's run falls back to SQLite for the e2e tests (scenarios need
# it); under CI=true a missing PostgreSQL fails the run instead.
PG_UP = $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 5432), 2)" 2>/dev/null

test: $(STAMP) $(CHROMIUM_STAMP)
	@start=$$(date +%s); \
	if $(PG_UP); then \
		echo "== unit, serving, UI and fault tests (SQLite metadata DB) =="; \
		$(BIN)/python -m pytest -m "not scenario and (not e2e or ui)" || exit $$?; \
		echo "== Airflow end-to-end tests and the scenarios (whole loop, backfill reproducibility) on PostgreSQL =="; \
		AI_FACTORY_TEST_DB=postgres $(BIN)/python -m pytest -m "(e2e or scenario) and not ui" || exit $$?; \
	elif [ -n "$$CI" ]; then \
		echo "!! CI: PostgreSQL not reachable at 127.0.0.1:5432; the e2e tests and scenarios need it"; exit 1; \
	else \
		echo "!! PostgreSQL not reachable at 127.0.0.1:5432: e2e tests on SQLite, scenarios skipped"; \
		$(BIN)/python -m pytest -m "not scenario" || exit $$?; \
	fi; \
	echo "== make test: $$(( ($$(date +%s) - start) / 60 )) min $$(( ($$(date +%s) - start) % 60 )) s in all =="

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not scenario and not faults"

test-faults: $(STAMP)
	$(BIN)/python -m pytest -m faults

lint: $(STAMP)
	$(BIN)/ruff check dags include plugins bentos tests bench
	$(BIN)/ruff check --select AIR3 dags
	$(BIN)/mypy include/ai_factory

bench: $(STAMP)
	$(BIN)/python -m bench

# Refuses while `ai-factory up` runs (its pid is in .local/stack.json): stop it first (Ctrl-C or kill <pid>).
clean:
	@pid=$$(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' .local/stack.json 2>/dev/null); \
	if [ -n "$$pid" ] && kill -0 "$$pid" 2>/dev/null && tr '\0' ' ' < /proc/$$pid/cmdline | grep -q " up"; then \
		echo "!! ai-factory up is running (pid $$pid): stop it first (Ctrl-C, or kill $$pid)"; exit 1; fi
	rm -rf .airflow .data .bentoml .local .demo
