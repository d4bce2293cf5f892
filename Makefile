# mde-alert-gateway — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .checkov-venv
CHECKOV_VERSION := 3.3.30
TYPED := function_app.py file_alerts_fn create_alert_fn operations_fn health_fn request_queue_fn openapi_fn maintenance_fn operator_fn tenants_fn shared localdev tests bench scripts

.PHONY: run test lint typecheck pytest bench setup clean browser

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov pins an older pycep-parser than the tests use, so it lives in its own venv.
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

setup: $(VENV)/.installed node_modules/.installed $(CHECKOV_VENV)/.installed

## make run: the whole stack locally (Azurite, identity endpoint, Defender simulator, Functions host)
run: $(VENV)/.installed node_modules/.installed
	$(PY) -m localdev.stack

lint: $(VENV)/.installed
	$(PY) -m ruff check .

typecheck: $(VENV)/.installed
	$(PY) -m mypy $(TYPED)

pytest: setup
	$(PY) -m pytest

## make test: lint, type-check, then every test (the fixtures start Azurite, the simulator and hosts on free ports)
test: lint typecheck browser pytest

# Debian's Chromium, for the operator page's browser test (as root, or with password-less sudo; elsewhere the test
# is skipped locally and fails in CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends chromium; } >/dev/null 2>&1 \
	  || echo "Chromium could not be installed: the operator page's browser test will be skipped (CI fails it)."; }

## make bench: the gateway's added latency and cold import time, the rate limiter under contention, the quota
## a skewed lookup workload spends with and without the shared answer cache, and a storm's drain (figures also in
## bench/results.json). `make bench QUICK=1`: each on a few seconds of load (what `make test` runs).
BENCHMARKS := gateway_bench ratelimit_bench cache_bench storm_bench health_bench failure_bench
bench: $(VENV)/.installed node_modules/.installed
	@set -e; for benchmark in $(BENCHMARKS); do $(PY) -m bench.$$benchmark $(if $(QUICK),--quick,); done

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
