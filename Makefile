# voipwatch: `make run` and `make test` each set themselves up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CATALOGUE ?= configs/catalogue.yaml
PYTEST_ARGS ?=

.PHONY: help venv system-deps test lint run bench accuracy demo clean

help:
	@echo "make run        one full probe pass against an embedded collector (CATALOGUE=file.yaml)"
	@echo "make test       install everything the tests need, then run the whole suite"
	@echo "make lint       ruff"
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
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check probe collector tests bench deploy

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
