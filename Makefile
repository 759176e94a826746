# Everything a developer or CI runs. Each target installs what it needs, so a fresh clone works.
PYTHON ?= python3
PYTHON312 ?= python3.12
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: help venv node test test-py312 unit integration browser screenshots lint format bench run clean

help:
	@echo "make run          serve the app locally (demo stand-ins unless local.settings.json exists)"
	@echo "make test         unit + integration (+ browser, when Chromium is installed) tests"
	@echo "make test-py312   unit + integration tests on Python 3.12"
	@echo "make unit         unit tests only (no Node, no network)"
	@echo "make browser      browser tests only (needs chromium + chromium-driver)"
	@echo "make screenshots  refresh docs/screenshots from the browser tests"
	@echo "make lint         ruff"
	@echo "make bench        benchmark table -> docs/benchmarks.md"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

node: node_modules/.installed

test: venv node
	$(PY) -m pytest

# The same unit and integration suites on Python 3.12, in a venv of their own.
test-py312: node
	$(MAKE) venv VENV=.venv312 PYTHON=$(PYTHON312)
	.venv312/bin/python -m pytest tests/unit tests/integration tests/test_secrets.py

unit: venv
	$(PY) -m pytest tests/unit

integration: venv node
	$(PY) -m pytest tests/integration

browser: venv node
	$(PY) -m pytest tests/e2e/test_browser.py -ra

screenshots: venv node
	SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest tests/e2e/test_browser.py -ra

run: venv node
	$(PY) -m devhost

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .venv312 node_modules .pytest_cache .ruff_cache .hypothesis outbox .run

bench: venv node
	$(PY) -m bench
