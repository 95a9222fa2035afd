# voipwatch: `make run` and `make test` each set themselves up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CATALOGUE ?= configs/catalogue.yaml
PYTEST_ARGS ?=
# two pytest-xdist workers: most tests wait on timeouts and daemons, not on the CPU
TEST_WORKERS ?= 2

.PHONY: help venv system-deps test lint run bench accuracy demo clean i18n

help:
	@echo "make run        one full probe pass against an embedded collector (CATALOGUE=file.yaml)"
	@echo "make test       install everything the tests need, then run the whole suite"
	@echo "make lint       ruff, mypy, the layer contracts (lint-imports)"
	@echo "make bench      speed, memory and traffic figures (ratios against a baseline)"
	@echo "make accuracy   every censorship-lab scenario, confusion matrix (root)"
	@echo "make demo       replay Morocco 2016 in the censorship lab (root)"

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[collector,test]'
	@touch $@

venv: $(BIN)/.installed

# System packages (coturn, kamailio, postgresql, nftables...): apt-get when root.
system-deps:
	@deploy/install-system-deps.sh

test: venv system-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check probe collector tests bench deploy
	$(BIN)/mypy
	$(BIN)/lint-imports

# Embedded collector (./var/) + one probe pass + upload + results table (collector/quickstart.py).
run: venv
	$(BIN)/python -m collector.quickstart --catalogue "$(CATALOGUE)"

# Every bench/*.py in turn (bench/_*.py are shared helpers); each prints its own figures as ratios.
bench: venv system-deps
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[fuzz]' \
		|| echo "atheris does not install here: bench/fuzz.py uses its own mutation fuzzer"
	@set -e; for f in bench/[!_]*.py; do $(BIN)/python $$f; done

# The censorship lab (deploy/lab, docs/lab.md) needs root: say so before anything else.
LAB_NEEDS_ROOT = @if [ "$$(id -u)" -ne 0 ]; then \
	echo "make $@ needs root (network namespaces and nftables): run sudo make $@" >&2; exit 1; fi

accuracy:
	$(LAB_NEEDS_ROOT)
	@$(MAKE) --no-print-directory venv system-deps
	$(BIN)/python -m deploy.lab accuracy

demo:
	$(LAB_NEEDS_ROOT)
	@$(MAKE) --no-print-directory venv system-deps
	$(BIN)/python -m deploy.lab demo

# Translations (Babel): re-extract the strings of the dashboard and the probe's terminal,
# merge them into the catalogues (translators then fill the .po files), compile the probe's .mo.
i18n: venv
	$(BIN)/pybabel extract -F babel.cfg -k t -k N_ --no-location --sort-output --omit-header \
		-o collector/dashboard/translations/messages.pot .
	$(BIN)/pybabel update -i collector/dashboard/translations/messages.pot \
		-d collector/dashboard/translations
	$(BIN)/pybabel extract -F probe/ui/babel.cfg -k _ --no-location --sort-output --omit-header \
		-o probe/ui/locale/voipwatch-probe.pot probe/ui
	$(BIN)/pybabel update -D voipwatch-probe -i probe/ui/locale/voipwatch-probe.pot \
		-d probe/ui/locale
	$(BIN)/pybabel compile -D voipwatch-probe -d probe/ui/locale

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
