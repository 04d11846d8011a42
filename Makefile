# Two commands do all the set-up on a fresh machine:  `make demo`  and  `make test`.
# Both install into a project virtualenv, .venv/ (never into the Python on PATH); `make clean` removes it.
# PYTHON picks the interpreter the virtualenv is made from, e.g. `make PYTHON=/usr/bin/python3 test`.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8501
TEST_WORKERS ?= auto
PARALLEL := -n $(TEST_WORKERS) --dist worksteal
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip install -q --disable-pip-version-check

.PHONY: install install-dev demo test test-fast test-pages lint format bench clean

$(VPY):
	scripts/ensure_venv.sh "$(PYTHON)" "$(VENV)"

# Stamps in .venv/: pip runs again only when the dependency files change (or .venv/ is new), so the
# everyday targets start at once.
INSTALLED := $(VENV)/.clipmem-installed
INSTALLED_DEV := $(VENV)/.clipmem-installed-dev

$(INSTALLED): $(VPY) pyproject.toml requirements.txt
	$(PIP) -e .
	touch $@

$(INSTALLED_DEV): $(INSTALLED) requirements-dev.txt scripts/install_system_deps.sh
	$(PIP) -e ".[dev]"
	scripts/install_system_deps.sh
	touch $@

## Runtime dependencies and the clipmem package (editable) into .venv.
install: $(INSTALLED)

## Also the test and lint tools, Chromium and PostgreSQL (Debian packages, when missing).
install-dev: $(INSTALLED_DEV)

## Start the dashboard on the bundled demo run (cache/demo).
demo: install
	$(VPY) -m streamlit run serve.py --server.port $(PORT) --server.headless true

## Lint and format checks, then the whole suite (slow and browser tests included) with a throwaway PostgreSQL.
## Tests run on every core (pytest-xdist); TEST_WORKERS=0 runs them in this one process.
test: install-dev lint
	set -e; eval "$$(scripts/start_postgres.sh)"; \
	trap 'scripts/start_postgres.sh stop' EXIT; \
	$(VPY) -m pytest -q $(PARALLEL)

## Only the quick tests: library, CLI and review store; no model training, no subprocess runs, no pages, no browser.
test-fast: install-dev
	$(VPY) -m pytest -q $(PARALLEL) -m "not slow and not e2e and not pages"

## The dashboard's pages under Streamlit's AppTest (no browser).
test-pages: install-dev
	$(VPY) -m pytest -q $(PARALLEL) -m "pages and not slow"

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info
