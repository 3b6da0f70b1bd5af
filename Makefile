# The two commands of the README: `make run` (the whole stack locally) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): requirements.txt requirements-worker.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m scripts.dev_stack

test: $(STAMP)
	$(PY) -m pytest -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) bench/reconcile.py
	$(PY) bench/dispatch.py
	$(PY) bench/scale.py
	$(PY) bench/bot.py
	$(PY) bench/chaos.py
	$(PY) bench/board.py

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache
