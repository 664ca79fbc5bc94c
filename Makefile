# Two set-up commands on a fresh machine (see README):
#   make demo   # install, start a worker on the embedded broker, submit the example, see it finish
#   make test   # install with test extras, lint, run the whole test suite

VENV ?= .venv
PY := $(VENV)/bin/python
# gage-queue alone, all `make demo` needs; then its test extras (pytest, ruff, ...).
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed
# The venv's commands (gage-submit, gage-worker) first on PATH, as a user who
# activated it has them: the demo and the README tests run them by name.
WITH_VENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: demo test lint install clean

# Editable: the checkout goes on sys.path by a plain .pth entry (pyproject.toml's
# package-dir makes it so), not by setuptools' import finder, which costs ~40 ms at
# every start of every command.
$(DEMO_STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(WITH_VENV) bash examples/demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	$(WITH_VENV) $(PY) -m tests.support.real_gage
	$(WITH_VENV) $(PY) -m pytest -q

clean:
	rm -rf $(VENV) .demo .cache

# Screenshots of the web view's pages (`gage-submit view`: runs, a run, compare,
# the pool) over a demo runs dir, into docs/screenshots/, by Debian's headless
# chromium (apt-get install chromium chromium-driver).
.PHONY: screenshots
screenshots: $(STAMP)
	$(WITH_VENV) $(PY) -m tests.support.browser docs/screenshots
