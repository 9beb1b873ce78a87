# The two commands: `make run` and `make test`. Both set themselves up first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check lint types unit e2e setup debian prepare lock clean

setup:
	@scripts/setup.sh

## make run: argus in its embedded default (local Ray head, Serve on :8000, UI/API on :8080)
run: setup
	@$(BIN)/argus models prepare-demo
	@$(BIN)/argus up

## make test: ruff, mypy, then every test tier with coverage (fails under 90%).
## Two workers: every end-to-end module on one, in line (two at once thrash two cores),
## everything else (unit, integration, fuzz, browser) on the other; the grouping is
## tests/conftest.py's scheduler.
test: prepare lint types
	@$(BIN)/pytest -n 2 --cov --cov-report=term -p no:cacheprovider --durations=15

## make check: the fast loop: lint, types, unit and integration tests (no browser, no Ray),
## their files spread over two workers (50 to 70 s on two cores)
check: setup lint types
	@$(BIN)/pytest -n 2 --dist loadfile -m "not e2e and not browser and not fuzz" \
		--ignore=tests/fuzz -q -p no:cacheprovider

lint:
	@$(BIN)/ruff check src tests
	@$(BIN)/ruff format --check src tests

# mypy's cache lives outside the checkout, so a fresh clone checks in seconds instead of
# half a minute (mypy checks each cached module against its source file's hash).
MYPY_CACHE := $(HOME)/.cache/argus-mypy

types:
	@MYPY_CACHE_DIR=$(MYPY_CACHE) $(BIN)/mypy

e2e: setup debian
	@$(BIN)/pytest -m e2e -p no:cacheprovider

debian:
	@scripts/setup-debian.sh

# The venv (uv, from the lock) and the Debian packages (apt) at once: they share nothing,
# and on a fresh machine each spends most of its time downloading.
prepare:
	@$(MAKE) --no-print-directory -j2 setup debian

## make lock: re-resolve requirements/cpu-dev.in into the lock
lock:
	@scripts/lock.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .coverage htmlcov
