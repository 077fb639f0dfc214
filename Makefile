# Two commands for a fresh machine:  make demo  |  make test
# Both create .venv, install Loupe and its dependencies, then run.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of PyTorch, installed before the rest so nothing resolves a CUDA build.
# Elsewhere: TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# The browser front end (TypeScript, Vite) and Debian's Chromium for its tests.
NPM ?= npm
FRONTEND_STAMP := frontend/node_modules/.installed-$(shell cat frontend/package-lock.json | cksum | cut -d' ' -f1)
FRONTEND_SOURCES := $(shell find frontend/src -type f) frontend/vite.config.ts frontend/tsconfig.json
FRONTEND_BUILD := frontend/static/frontend/app/manifest.json
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo run test pytest lint typecheck migrate clean frontend frontend-test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[ml,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

$(FRONTEND_STAMP): frontend/package-lock.json
	cd frontend && $(NPM) ci --no-audit --no-fund --loglevel=error
	rm -f frontend/node_modules/.installed-*
	touch $@

$(FRONTEND_BUILD): $(FRONTEND_STAMP) $(FRONTEND_SOURCES)
	cd frontend && $(NPM) run --silent build

frontend: $(FRONTEND_BUILD)

# Type check and unit tests (Vitest) of the front end.
frontend-test: $(FRONTEND_STAMP)
	cd frontend && npx tsc --noEmit && npx vitest run

# Browser tests drive Debian's Chromium; no tool downloads a browser of its own.
$(CHROMIUM):
	$(SUDO) apt-get install -y --no-install-recommends chromium || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

migrate: install frontend
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0

# The whole box on this machine, with a line simulator posting parts. Ctrl-C stops it all.
demo: migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py run_stack --demo

# The same processes without the simulator.
run: migrate
	$(PY) manage.py run_stack

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

typecheck: install
	$(VENV)/bin/mypy .

pytest: install frontend $(CHROMIUM)
	$(PY) -m pytest

# Lint, types, then the suite. Uses DATABASE_URL / REDIS_URL when set (CI: PostgreSQL and
# Redis), else SQLite and an embedded Redis.
test: lint typecheck frontend-test pytest

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache frontend/node_modules frontend/static/frontend/app
