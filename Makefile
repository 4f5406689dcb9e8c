# The two commands a newcomer needs: `make dev` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed-stamp

WEB_BUNDLE := web/vendor/amazon-chime-sdk.min.js

.PHONY: dev test lint typecheck unit bench clean web browser-deps

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip<26.3"  # chalice 1.34 requires pip<26.3
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## make dev: install what is needed and start the local stack on 127.0.0.1:$(PORT)
dev: $(STAMP)
	$(BIN)/python -m devstack --port $(PORT) --broadcast

# Two workers, a file each at a time (module fixtures stay in one process; each worker runs its
# own local stack in the session's loopback-only namespace). PYTEST_ARGS= runs in one process.
PYTEST_ARGS ?= -n 2 --dist loadfile

## make test: install what is needed, lint, type-check and run the test suite
test: $(STAMP) lint typecheck browser-deps $(WEB_BUNDLE)
	@# pytest exits 5 when it collects no test: not a failure of the suite.
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy chalicelib

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache web/node_modules web/vendor

## make web: bundle the pinned amazon-chime-sdk-js for the web client's AWS path (npm ci + esbuild)
web: $(WEB_BUNDLE)

$(WEB_BUNDLE): web/package.json web/package-lock.json web/build-chime.mjs
	@command -v npm >/dev/null || { echo "make web needs Node.js and npm: apt-get install -y nodejs npm"; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error && node build-chime.mjs

# The browser tests drive Debian's chromium and make their microphone input with sox; the
# captions test makes its speech with espeak-ng.
browser-deps:
	@missing=""; \
	command -v chromium >/dev/null || [ -n "$$CHROMIUM" ] || missing="chromium"; \
	command -v sox >/dev/null || missing="$$missing sox"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif sudo -n true 2>/dev/null; then sudo="sudo"; \
	  else echo "The browser tests need:$$missing. Install it, then run make test again:"; \
	    echo "    sudo apt-get install -y$$missing"; exit 1; fi; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

## make bench: sohbet against the naive design on the local stack (BENCH_N listeners, default 1000)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)
