# workspace-bench: every entry point. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Exact exit codes: call $(VENV)/bin/wsbench directly (make reports any failing recipe as 2).
WSBENCH := $(VENV)/bin/wsbench
STAMP := $(VENV)/.installed
FRONTEND_MODULES := frontend/node_modules/.installed
FRONTEND_STAMP := frontend/dist/.built
FRONTEND_SOURCES := $(wildcard frontend/src/*.ts* frontend/src/*/*.ts* frontend/src/*.css) \
	frontend/index.html frontend/build.mjs frontend/tsconfig.json
SCALE ?= plan
export SCALE
# Service processes behind one port for serve, load and bench (1: a single process).
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
export WORKERS

.PHONY: help install frontend test test-quick faults lint typecheck bench bench-scale bench-micro data serve load load-ui gate gate-selftest clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(FRONTEND_MODULES): frontend/package.json frontend/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: the front end needs Node.js 18+ and npm (apt-get install -y nodejs npm)"; exit 1; }
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(FRONTEND_STAMP): $(FRONTEND_MODULES) $(FRONTEND_SOURCES)
	cd frontend && npm run --silent build
	@touch $@

install: $(STAMP) $(FRONTEND_STAMP) ## create .venv, install everything, build the front end (re-run only when inputs change)

frontend: $(FRONTEND_STAMP) ## type-check and build the workspace page into frontend/dist (served at /app/)

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .

typecheck: $(STAMP) ## mypy --strict
	$(VENV)/bin/mypy

test: $(STAMP) $(FRONTEND_STAMP) lint typecheck ## lint, type-check, run every test and every benchmark once (timing off, SCALE=tiny)
	SCALE=tiny $(VENV)/bin/pytest --benchmark-disable $(PYTEST_ARGS)

test-quick: $(STAMP) ## tests only, skipping slow ones and benchmarks
	$(VENV)/bin/pytest tests -m 'not slow' $(PYTEST_ARGS)

faults: $(STAMP) ## the fault suite alone, verbose: cut, restart and freeze PostgreSQL, SIGKILL a worker, abort downloads; prints what clients saw
	$(VENV)/bin/pytest tests/faults -v -s $(PYTEST_ARGS)

data: $(STAMP) ## bring up a database (provider chain), migrate, load the SCALE dataset, report, tear down
	$(WSBENCH) data --scale $(SCALE)

bench: $(STAMP) $(FRONTEND_STAMP) ## the main job: database, data, benchmarks, load, hot path, HTML report in reports/out/ (exit 1 if a plan target fails)
	$(WSBENCH) bench

serve: $(STAMP) $(FRONTEND_STAMP) ## database + SCALE data (if empty) + storage files, then WORKERS service processes on 127.0.0.1:PORT (8080)
	$(WSBENCH) serve

bench-scale: $(STAMP) ## the scale curve: each route's p50/p95 for the heavy user at SCALES (plan,100k; add 1m): figures/curve.json, reports/out/curve.html
	SCALES=$${SCALES:-plan,100k} $(PY) -m benchmarks.scale_curve $(CURVE_ARGS)

bench-micro: $(STAMP) ## the microbenchmarks, timed, at SCALE: reports/out/bench-micro.json + figures/bench.json
	@mkdir -p reports/out
	$(VENV)/bin/pytest benchmarks --benchmark-json=reports/out/bench-micro.json $(PYTEST_ARGS)

gate: $(STAMP) ## benchmarks at SCALE, targets from same-run ratios; regressions A/B against GATE_BASE (a commit), else vs the history (exit 0/1/2/3)
	$(WSBENCH) gate $(if $(GATE_JSON),--json $(GATE_JSON)) $(GATE_ARGS) $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

load: $(STAMP) ## headless load test: database, SCALE data, WORKERS service processes (URL_MODE), Locust on every core; LOCUST_* override
	$(WSBENCH) load --modes $${URL_MODE:-unified} $(LOAD_ARGS)

load-ui: $(STAMP) ## database, data, service and Locust's web UI on 127.0.0.1:8089 (Thresholds tab)
	$(WSBENCH) load --ui --modes $${URL_MODE:-unified} $(LOAD_ARGS)

clean: ## remove generated output (keeps .venv and the history, reports/history.jsonl)
	rm -rf reports/out .pytest_cache .mypy_cache .ruff_cache .data

gate-selftest: $(STAMP) ## the gate proves itself: 5 A/B runs on unchanged code (0 false alarms) and one with a 20% slowdown (caught)
	SCALE=$${SELFTEST_SCALE:-tiny} $(PY) -m reports.selftest $(SELFTEST_ARGS)
