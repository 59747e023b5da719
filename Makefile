# Praneya Clinical Safety Engine. `make help` lists the targets.
# DATABASE_URL is used when set; otherwise `db-up` finds or starts a PostgreSQL (store/provision.py).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
T ?= tests
PYTEST_ARGS ?=
# Resolve the database once per recipe line: DATABASE_URL when set, else provision one.
DB := DATABASE_URL="$${DATABASE_URL:-$$($(PY) -m store.provision up)}"

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the project (editable, with dev tools, pinned by constraints.txt)

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
run: migrate ## set everything up (database, keys, knowledge, rules, demo) and serve on 127.0.0.1, PORT (default 50051)
	@$(DB) $(VENV)/bin/praneya dev up

.PHONY: test
test: $(STAMP) ## run the test suite against a real PostgreSQL (T=tests/path for a subset)
	@$(DB) $(PY) -m pytest -n 2 $(T) $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff and mypy (strict)
	$(VENV)/bin/ruff check engine store tests migrations
	$(VENV)/bin/mypy engine store tests

.PHONY: bench
bench: $(STAMP) ## EvaluateSafety vs its floor, at scale; prints a table, writes bench-results.json (QUICK=1: smaller)
	@$(DB) $(PY) -m engine.api.bench $(if $(QUICK),--quick,)

.PHONY: soak
soak: $(STAMP) ## 20,000 evaluations from 32 clients with a database restart, a killed worker, a slow database
	@$(PY) -m engine.api.soak $(if $(QUICK),--quick,)

.PHONY: check-drift
check-drift: $(STAMP) ## migrations and store/models.py agree (alembic check)
	@$(DB) $(VENV)/bin/praneya migrate --check

.PHONY: clean
clean: ## remove the virtualenv and caches (not the local database)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
