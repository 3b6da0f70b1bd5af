# The two commands of the README: `make run` (the whole stack locally) and `make test`.
# `make run` installs what running needs (requirements.txt); `make test`, `lint` and `bench` add the
# development tools (requirements-dev.txt: pytest, ruff, import-linter, Playwright, schemathesis, Flower).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: run test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME): requirements.txt requirements-worker.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(RUNTIME)

$(DEV): requirements-dev.txt $(RUNTIME)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(DEV)

run: $(RUNTIME)
	$(PY) -m scripts.dev_stack

test: $(DEV)
	$(PY) -m pytest -n 2

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: $(DEV)
	$(PY) bench/reconcile.py
	$(PY) bench/dispatch.py
	$(PY) bench/scale.py
	$(PY) bench/bot.py
	$(PY) bench/chaos.py
	$(PY) bench/failover.py
	$(PY) bench/board.py
	$(PY) bench/cli.py
	$(PY) bench/operations.py
	$(PY) bench/import_formats.py
	$(PY) bench/proxy_failover.py
	$(PY) bench/real_scale.py
	$(PY) bench/sandbox.py
	$(PY) bench/sealing.py

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache
