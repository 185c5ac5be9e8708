# `make check` is the one command for lint, types and tests (CI runs it too).
PY ?= python
.PHONY: check lint types test test-fast fmt demo

check: lint types test

lint:
	$(PY) -m ruff check sync tests bench celeryconfig.py
	$(PY) -m ruff format --check sync tests bench celeryconfig.py
	lint-imports  # the layer contracts in pyproject.toml ([tool.importlinter])

types:
	$(PY) -m mypy sync

test:
	$(PY) -m pytest -q

# The edit-test loop: the pure core and the clients against in-process sandboxes (no
# Redis, PostgreSQL or npm), Hypothesis' quick profile. About a minute.
test-fast:
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-dev} $(PY) -m pytest -q -p no:cacheprovider tests/core tests/clients -m "not services and not prism and not slow"

fmt:
	$(PY) -m ruff format sync tests bench celeryconfig.py
	$(PY) -m ruff check --fix sync tests bench celeryconfig.py

demo:
	erpsync demo
