# Development entry points. `make test` bootstraps everything it needs (uv, the virtualenv).
SHELL := /bin/bash

# Python 3.12 develops against the newest Django; PYTHON=python3.11 VENV=.venv-3.11 runs the
# Django 5.2 leg. pyenv installs are used when present because their shims may not be on PATH.
PYENV_ROOT := $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
PYTHON ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.12*/bin/python3.12) $(shell command -v python3.12) python3)
VENV ?= .venv
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) run --locked --python $(PYTHON) --no-python-downloads

.PHONY: demo test test-redis7 lint docs sync uv bench clean

uv:
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --user --quiet uv

sync: uv
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --python $(PYTHON) --no-python-downloads

# The example project: an embedded Redis unless REDIS_URL is set, migrations, the web server and
# runworker; Ctrl-C stops them all. DEMO_ARGS="--port 8001" (or PORT=8001) picks another port.
# It has a virtualenv of its own with only what it needs: the project, its `fast` extra and the
# `example` group (no test tools, linters, Playwright or Compose binary).
DEMO_VENV ?= .venv-demo
demo: uv
	UV_PROJECT_ENVIRONMENT=$(DEMO_VENV) $(UV) sync --locked --python $(PYTHON) --no-python-downloads \
		--no-default-groups --group example --extra fast
	$(DEMO_VENV)/bin/python example/run_demo.py $(DEMO_ARGS)

test: sync
	$(RUN) pytest $(PYTEST_ARGS)

# The redis-backed worker tests again on redis-py 7, whose idle read behaviour differs from 8.
test-redis7: sync
	$(RUN) --with 'redis>=7,<8' pytest -m redis tests/worker $(PYTEST_ARGS)

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy --strict routing worker tests bench example
	$(RUN) lint-imports

# The documentation site: warnings are errors, and every cross-reference must resolve (-n).
docs: sync
	$(RUN) sphinx-build -W --keep-going -n -b html docs docs/_build/html

bench: sync
	$(RUN) python bench/bench_routing.py

clean:
	rm -rf .venv .venv-3.11 .venv-demo .mypy_cache .pytest_cache .ruff_cache
