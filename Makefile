# Praneya Clinical Safety Engine. `make help` lists the targets.
# DATABASE_URL is used when set; otherwise `db-up` finds or starts a PostgreSQL (store/provision.py).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The engine's hot modules compiled with mypyc (engine/ops/native.py); rebuilt when one of them changes.
NATIVE := engine/_native.json
# The compiled modules and what they are compiled against: every module of the engine package.
NATIVE_SRC := $(wildcard engine/*.py) engine/ops/native.py
LOCK := requirements.lock
# The tool that writes the lock; it runs from a throwaway virtualenv, never from .venv.
UV_VERSION ?= 0.13.8
T ?= tests
PYTEST_ARGS ?=
# Resolve the database once per recipe line: DATABASE_URL when set, else provision one.
DB := DATABASE_URL="$${DATABASE_URL:-$$($(PY) -m store.provision up)}"

.DEFAULT_GOAL := help

.PHONY: help
# Colour only on a terminal (and not with NO_COLOR): piped or captured output stays plain text.
help: ## list the targets
	@if [ -t 1 ] && [ -z "$${NO_COLOR:-}" ]; then on='\033[36m' off='\033[0m'; else on='' off=''; fi; \
	grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) \
		| awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*?## "}; {printf "  %s%-12s%s %s\n", on, $$1, off, $$2}'

# Every file pip downloads must match a hash in the lock (--require-hashes), pip itself included:
# the venv's own pip (bundled with Python) installs the locked pip, setuptools and wheel with the
# rest, in place of the old unpinned `pip install --upgrade pip`. The project is then installed alone
# (--no-deps), built with the locked setuptools (--no-build-isolation: an isolated build would fetch
# setuptools unhashed); `pip check` fails when pyproject.toml needs something the lock lacks.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	@touch $(STAMP)

$(NATIVE): $(STAMP) $(NATIVE_SRC)
	$(PY) -m engine.ops.native build

.PHONY: install
install: $(STAMP) $(NATIVE) ## create .venv and install the project (editable, with dev tools) from requirements.lock, hashes checked

.PHONY: native
native: $(STAMP) ## compile the engine's hot modules with mypyc (make install does; an edited module runs from source until then)
	$(PY) -m engine.ops.native build

# uv keeps the versions already in the lock (only what pyproject.toml added or dropped changes);
# UPGRADE=1 moves every package to its newest release. Universal: one lock for Python 3.11+ on any
# platform, with the hashes of every wheel and sdist of each pinned release.
.PHONY: lock
lock: ## regenerate requirements.lock (every package, hashed) from pyproject.toml (UPGRADE=1: newest releases)
	@tool="$$(mktemp -d)" && trap 'rm -rf "$$tool"' EXIT && \
	$(PYTHON) -m venv "$$tool" && "$$tool/bin/python" -m pip install --quiet "uv==$(UV_VERSION)" && \
	"$$tool/bin/uv" pip compile pyproject.toml requirements-install.in --extra dev --universal \
		--python-version 3.11 --generate-hashes --custom-compile-command "make lock" \
		$(if $(UPGRADE),--upgrade,) --quiet -o $(LOCK)

.PHONY: db-up
db-up: $(STAMP) ## find or start PostgreSQL and create the database; prints its URL
	@$(PY) -m store.provision up

.PHONY: db-down
db-down: $(STAMP) ## stop the project-local cluster (a shared server is left alone)
	@$(PY) -m store.provision down

.PHONY: migrate
migrate: $(STAMP) ## apply the migrations to DATABASE_URL (or the provisioned database)
	@$(DB) $(VENV)/bin/praneya migrate

.PHONY: run
run: migrate $(NATIVE) ## set everything up (database, keys, knowledge, rules, demo) and serve on 127.0.0.1, PORT (default 50051)
	@$(DB) $(VENV)/bin/praneya dev up

.PHONY: test
test: $(STAMP) $(NATIVE) ## run the test suite against a real PostgreSQL (T=tests/path for a subset)
	@$(DB) $(PY) -m pytest -n 2 $(T) $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff and mypy (strict)
	$(VENV)/bin/ruff check engine store tests migrations
	$(VENV)/bin/mypy engine store tests

.PHONY: bench
bench: $(STAMP) $(NATIVE) ## EvaluateSafety and CDS Hooks vs two floors: wall clock and CPU per call, 1,000 patients; writes bench-results.json (QUICK=1: shorter)
	@$(DB) $(PY) -m engine.ops.bench $(if $(QUICK),--quick,)

.PHONY: soak
soak: $(STAMP) $(NATIVE) ## 20,000 evaluations from 32 clients with a database restart, a killed worker, a slow database
	@$(PY) -m engine.ops.soak $(if $(QUICK),--quick,)

.PHONY: check-drift
check-drift: $(STAMP) ## migrations and store/models.py agree (alembic check)
	@$(DB) $(VENV)/bin/praneya migrate --check

.PHONY: clean
clean: ## remove the virtualenv and caches (not the local database)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info build/native engine/*.so $(NATIVE)
