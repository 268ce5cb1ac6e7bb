# The two set-up commands of the README: `make demo` and `make test`. Both work from a clean clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export CITYCARD_DATA_DIR ?= $(CURDIR)/.citycard/demo
SYSTEM_PACKAGES := pcscd vsmartcard-vpcd pcsc-tools libpcsclite-dev swig redis-server chromium fonts-wqy-zenhei

.PHONY: demo test system-deps venv lint bench clean

# System packages for the smart-card stack (pcscd + vpcd, pyscard's build), Redis (the embedded Celery
# broker, which hands a task whose worker died out again) and Chromium with CJK fonts (the console's browser
# tests, tests/e2e/test_console_browser.py); only as root.
system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else echo "not root or no apt-get: install $(SYSTEM_PACKAGES) yourself for the PC/SC tests and the embedded broker"; fi

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,terminal]' || $(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

demo: system-deps venv
	$(BIN)/citycard demo $(ARGS)

# Lint first: a tree that is not ruff-clean, ruff-formatted and within its import contracts fails fast.
test: system-deps venv lint
	CITYCARD_DATA_DIR=$(CURDIR)/.citycard/test $(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check citycard tests benchmarks
	$(BIN)/ruff format --check citycard tests benchmarks
	$(BIN)/lint-imports

bench: venv
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	-$(BIN)/citycard db stop 2>/dev/null
	-$(BIN)/citycard broker stop 2>/dev/null
	rm -rf $(VENV) .citycard
