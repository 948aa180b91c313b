# Shortcuts for developers; the README's two commands need only python3 and pip.
VENV ?= .venv
PY := $(VENV)/bin/python

$(PY):
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e ".[dev]"

run: $(PY)
	$(VENV)/bin/envfactory run

test: $(PY)
	$(PY) -m pytest -q

bench: $(PY)
	$(VENV)/bin/envfactory bench all

.PHONY: run test bench
