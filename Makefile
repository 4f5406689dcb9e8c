# The two commands a newcomer needs: `make dev` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed-stamp

.PHONY: dev test lint typecheck unit bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip<26.3"  # chalice 1.34 requires pip<26.3
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## make dev: install what is needed and start the local stack on 127.0.0.1:$(PORT)
dev: $(STAMP)
	$(BIN)/python -m devstack --port $(PORT)

## make test: install what is needed, lint, type-check and run the test suite
test: $(STAMP) lint typecheck
	@# pytest exits 5 when it collects no test: not a failure of the suite.
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy chalicelib

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## make bench: sohbet against the naive design on the local stack (BENCH_N listeners, default 400)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)
