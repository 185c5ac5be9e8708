# `make check` is the one command for lint, types and tests (CI runs it too).
PY ?= python
.PHONY: check lint types test fmt demo

check: lint types test

lint:
	$(PY) -m ruff check sync tests bench celeryconfig.py
	$(PY) -m ruff format --check sync tests bench celeryconfig.py

types:
	$(PY) -m mypy sync

test:
	$(PY) -m pytest -q

fmt:
	$(PY) -m ruff format sync tests bench celeryconfig.py
	$(PY) -m ruff check --fix sync tests bench celeryconfig.py

demo:
	erpsync demo
