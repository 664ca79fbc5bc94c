# Two set-up commands on a fresh machine (see README):
#   make demo   # install, start a worker on the embedded broker, submit the example, see it finish
#   make test   # install with test extras, lint, run the whole test suite

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	$(PY) -m tests.support.real_gage
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .demo
