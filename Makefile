# mde-alert-gateway — the two commands: `make run` and `make test`.
SHELL := /bin/bash

# PYTHON: the interpreter, as a version (3.13), a command (python3.13) or a path; unset: python3. The supported
# versions are pyproject.toml's requires-python; scripts/python.sh finds a version on PATH or in pyenv's versions.
PYTHON ?=
PYTHON_BIN := $(shell scripts/python.sh find $(PYTHON) 2>/dev/null)
PYTHON_VERSION := $(if $(PYTHON_BIN),$(shell $(PYTHON_BIN) -c 'import platform; print(platform.python_version())'))
PYTHON_MINOR := $(basename $(PYTHON_VERSION))
SUPPORTED_PYTHONS := $(shell scripts/python.sh supported)
OLDEST_PYTHON := $(firstword $(SUPPORTED_PYTHONS))
NEWEST_PYTHON := $(lastword $(SUPPORTED_PYTHONS))

# One venv per Python minor version (.venvs/3.13), which records the interpreter that built it (.built-by): another
# interpreter for the same minor version rebuilds it. `.venv` links to the default interpreter's (PYTHON unset), so
# `.venv/bin/python` works as the docs say; a .venv that is not such a link (an older layout) is left alone.
VENV := .venvs/$(PYTHON_MINOR)
PY := $(VENV)/bin/python
BUILT_BY := $(PYTHON_BIN) $(PYTHON_VERSION)
ifneq ($(strip $(shell cat $(VENV)/.built-by 2>/dev/null)),$(strip $(BUILT_BY)))
VENV_STALE := FORCE
endif
CHECKOV_VENV := .checkov-venv
CHECKOV_VERSION := 3.3.30
TYPED := function_app.py file_alerts_fn create_alert_fn hunting_fn operations_fn health_fn request_queue_fn openapi_fn maintenance_fn operator_fn tenants_fn shared localdev tests bench scripts

.PHONY: run test lint typecheck pytest bench setup clean browser interpreter venv pythons unit-and-quickstart FORCE

## make interpreter: which Python `make run` and `make test` use (PYTHON=...), or why none.
interpreter:
	@if [ -z "$(PYTHON_BIN)" ]; then scripts/python.sh find $(PYTHON); exit 1; fi
	@echo "Python $(PYTHON_VERSION): $(PYTHON_BIN) (venv $(VENV); supported: $(SUPPORTED_PYTHONS))"

$(VENV)/.installed: requirements.txt requirements-dev.txt $(VENV_STALE) | interpreter
	@if [ -e $(VENV)/.built-by ] && [ "$$(cat $(VENV)/.built-by)" != "$(BUILT_BY)" ]; then \
	  echo "$(VENV) was built by $$(cat $(VENV)/.built-by): rebuilding it with $(BUILT_BY)"; rm -rf $(VENV); fi
	$(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	echo "$(BUILT_BY)" > $(VENV)/.built-by
	touch $@

venv: $(VENV)/.installed
ifeq ($(PYTHON),)
	@if [ ! -e .venv ] && [ ! -L .venv ] || [[ "$$(readlink .venv)" == .venvs/* ]]; then ln -sfn $(VENV) .venv; fi
endif

node_modules/.installed: package.json package-lock.json $(wildcard patches/*.patch)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov pins an older pycep-parser than the tests use, so it lives in its own venv.
$(CHECKOV_VENV)/.installed: | interpreter
	$(PYTHON_BIN) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

setup: interpreter venv node_modules/.installed $(CHECKOV_VENV)/.installed

## make run: the whole stack locally (Azurite, identity endpoint, Defender simulator, Functions host)
run: interpreter venv node_modules/.installed
	$(PY) -m localdev.stack

lint: venv
	$(PY) -m ruff check .

typecheck: venv
	$(PY) -m mypy $(TYPED)

# MDEGW_QUICKSTART_PYTHON: the interpreter the quickstart test passes to its `make run` (none: the default, as a
# stranger types it).
pytest: setup
	MDEGW_QUICKSTART_PYTHON=$(if $(PYTHON),$(PYTHON_BIN)) $(PY) -m pytest

## make test: lint, type-check, then every test (the fixtures start Azurite, the simulator and hosts on free ports),
## then the unit layer and the quickstart on the oldest and the newest supported Python (when not the one above).
test: interpreter lint typecheck browser pytest pythons

# A supported Python this machine lacks is skipped with an install hint, except in CI, where it fails.
pythons:
	@set -e; for version in $(sort $(OLDEST_PYTHON) $(NEWEST_PYTHON)); do \
	  if [ "$$version" = "$(PYTHON_MINOR)" ]; then continue; fi; \
	  status=0; scripts/python.sh required $$version || status=$$?; \
	  if [ $$status = 3 ]; then continue; elif [ $$status != 0 ]; then exit $$status; fi; \
	  $(MAKE) --no-print-directory PYTHON=$$version unit-and-quickstart; \
	done

unit-and-quickstart: interpreter venv node_modules/.installed
	MDEGW_QUICKSTART_PYTHON=$(PYTHON_BIN) $(PY) -m pytest -q tests/unit tests/integration/test_quickstart.py

# Debian's Chromium, for the operator page's browser test (as root, or with password-less sudo; elsewhere the test
# is skipped locally and fails in CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends chromium; } >/dev/null 2>&1 \
	  || echo "Chromium could not be installed: the operator page's browser test will be skipped (CI fails it)."; }

## make bench: the gateway's added latency and cold import time, the rate limiter under contention, the quota
## a skewed lookup workload spends with and without the shared answer cache, a storm's drain, what one Flex
## instance drains from the queue with the Bicep's thread count, and the operator page's state at 1 and 100 customer
## tenants (figures also in bench/results.json). `make bench QUICK=1`: each on a few seconds of load (what `make
## test` runs).
BENCHMARKS := gateway_bench ratelimit_bench cache_bench storm_bench health_bench failure_bench drain_bench history_bench
bench: venv node_modules/.installed
	@set -e; for benchmark in $(BENCHMARKS); do $(PY) -m bench.$$benchmark $(if $(QUICK),--quick,); done

clean:
	if [ -L .venv ] && [[ "$$(readlink .venv)" == .venvs/* ]]; then rm .venv; fi
	rm -rf .venvs $(CHECKOV_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache

FORCE:
