# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install -q --disable-pip-version-check
PORT ?= 8501

.PHONY: install install-dev demo test test-fast bench

install:
	$(PIP) -r requirements.txt

install-dev: install
	$(PIP) -r requirements-dev.txt
	scripts/install_system_deps.sh

## Start the dashboard on the bundled demo run (cache/demo).
demo: install
	$(PYTHON) -m streamlit run app.py --server.port $(PORT) --server.headless true

## The whole suite, slow end-to-end tests included, with a throwaway PostgreSQL.
test: install-dev
	set -e; eval "$$(scripts/start_postgres.sh)"; \
	trap 'scripts/start_postgres.sh stop' EXIT; \
	$(PYTHON) -m pytest -q

## Only the fast tests (no model training, no browser).
test-fast: install
	$(PYTHON) -m pytest -q -m "not slow and not e2e"
