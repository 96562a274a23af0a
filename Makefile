# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make run   - create .venv, install, materialize every asset of every use case
#   make test  - create .venv, install, run lint, the import contract and the test suite (CI's
#                tier: the tests marked slow left out)
#   make test-all - the same with the slow tests too
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-all servers lint dev schema screenshot clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: the CPU wheel, before anything can pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# wrk: the load generator of the SLO checks (configs' `slo` sections) that gate promotion
run: $(STAMP)
	scripts/install_wrk.sh
	$(BIN)/playbook materialize --all

# The UI listens on this machine only; `make dev DEV_HOST=0.0.0.0` serves other machines too.
DEV_HOST ?= 127.0.0.1

# The home's dagster.yaml (run queue per use case, dead-run monitoring) is written first, so a
# fresh home gets it before the daemon starts.
dev: $(STAMP)
	PLAYBOOK_HOME=$${PLAYBOOK_HOME:-$(CURDIR)/.playbook} $(BIN)/python -c "from resources.home import dagster_home, playbook_home; dagster_home(playbook_home())"
	PLAYBOOK_HOME=$${PLAYBOOK_HOME:-$(CURDIR)/.playbook} DAGSTER_HOME=$${PLAYBOOK_HOME:-$(CURDIR)/.playbook}/dagster $(BIN)/dagster dev -w workspace.yaml -h $(DEV_HOST)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# the servers the integration tests start on 127.0.0.1 (and stop): installed here if missing
servers:
	scripts/install_redis.sh
	scripts/install_postgres.sh
	scripts/install_triton.sh
	scripts/install_wrk.sh

# CI's tier: every test but those marked slow (each says which CI test covers its feature)
test: lint servers
	$(BIN)/python -m pytest -n 2 -m "not slow" tests

# the browser is for the UI test only, which is slow
test-all: lint servers
	scripts/install_chromium.sh
	$(BIN)/python -m pytest -n 2 tests

schema: $(STAMP)
	$(BIN)/playbook schema --output configs/playbook.schema.json

screenshot: $(STAMP)
	scripts/install_chromium.sh
	$(BIN)/python scripts/screenshot_ui.py

clean:
	rm -rf .playbook
