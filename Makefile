# The two set-up commands of the README: `make demo` and `make test`. Both work from a clean clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export CITYCARD_DATA_DIR ?= $(CURDIR)/.citycard/demo
SYSTEM_PACKAGES := pcscd vsmartcard-vpcd pcsc-tools libpcsclite-dev swig redis-server chromium fonts-wqy-zenhei gettext pgbouncer python3-yaml

.PHONY: demo test system-deps venv messages messages-update lint bench clean

# System packages for the smart-card stack (pcscd + vpcd, pyscard's build), Redis (the embedded Celery
# broker, which hands a task whose worker died out again) and Chromium with CJK fonts (the console's browser
# tests, tests/e2e/test_console_browser.py), gettext (msgfmt compiles the zh_Hans catalogue) and PgBouncer (the
# transaction-pooling tests, tests/e2e/test_pgbouncer.py), python3-yaml (reads infra/docker-compose.yml in
# tests/platform/test_compose_pgbouncer.py without a Python dependency); only as root.
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

# The translation catalogues (Chinese first: citycard/locale/zh_Hans): the .po is committed, its .mo is built
# here with Django's compilemessages (gettext's msgfmt) and never committed. docs/configuration.md, "Languages".
# citycard-terminal has its own catalogue for the standard library's gettext (terminal_kit imports nothing of
# Django): citycard/terminal_kit/locale/*/LC_MESSAGES/citycard_terminal.po, compiled the same way with msgfmt.
LOCALE_MO := $(patsubst %.po,%.mo,$(wildcard citycard/locale/*/LC_MESSAGES/django.po))
TERMINAL_LOCALE := citycard/terminal_kit/locale
TERMINAL_PO := $(TERMINAL_LOCALE)/zh_Hans/LC_MESSAGES/citycard_terminal.po
TERMINAL_MO := $(patsubst %.po,%.mo,$(wildcard $(TERMINAL_LOCALE)/*/LC_MESSAGES/citycard_terminal.po))
messages: $(LOCALE_MO) $(TERMINAL_MO)

citycard/locale/%/LC_MESSAGES/django.mo: citycard/locale/%/LC_MESSAGES/django.po $(BIN)/.installed
	cd citycard && ../$(BIN)/django-admin compilemessages --locale $* --verbosity 0

$(TERMINAL_LOCALE)/%/LC_MESSAGES/citycard_terminal.mo: $(TERMINAL_LOCALE)/%/LC_MESSAGES/citycard_terminal.po
	msgfmt --check -o $@ $<

# After wrapping new strings: add them to the catalogue (then translate every empty msgstr, and run make).
# citycard-terminal's strings: _(), N_() and ngettext() in citycard/terminal_kit, extracted by xgettext.
messages-update: venv
	cd citycard && ../$(BIN)/django-admin makemessages --locale zh_Hans --settings citycard.platform.settings \
	  --ignore 'terminal_kit/*' --add-location file --no-obsolete --verbosity 0
	xgettext --language=Python --from-code=UTF-8 --keyword=_ --keyword=N_ --keyword=ngettext:1,2 \
	  --add-location=file --sort-by-file --package-name=citycard-terminal -o $(TERMINAL_LOCALE)/citycard_terminal.pot \
	  $$(find citycard/terminal_kit -name '*.py' | sort)
	msgmerge --quiet --update --backup=none --no-fuzzy-matching --add-location=file $(TERMINAL_PO) \
	  $(TERMINAL_LOCALE)/citycard_terminal.pot
	msgattrib --no-obsolete -o $(TERMINAL_PO) $(TERMINAL_PO)
	rm $(TERMINAL_LOCALE)/citycard_terminal.pot

demo: system-deps venv messages
	$(BIN)/citycard demo $(ARGS)

# Lint first: a tree that is not ruff-clean, ruff-formatted and within its import contracts fails fast.
test: system-deps venv messages lint
	CITYCARD_DATA_DIR=$(CURDIR)/.citycard/test CITYCARD_PG_DURABLE=off $(BIN)/pytest $(PYTEST_ARGS)

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
