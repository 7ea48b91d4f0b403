# bankmesh build. `make run` and `make test` are all a newcomer needs: each
# creates .venv/ and installs what it needs on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
PROTOC := $(BIN)/python -m grpc_tools.protoc -I protos -I third_party/googleapis
NODE_INSTALLED := node_modules/.installed
BUF := node_modules/.bin/buf
PY_LINT_PATHS := services mesh tests examples bench chaos

.PHONY: help venv generate check-generated node-deps lint test test-all run clean bench bench-full chaos

help:
	@echo "make run              start the mesh (embedded PostgreSQL when DATABASE_URL is unset)"
	@echo "make test             unit + integration tests (embedded PostgreSQL unless BANKMESH_TEST_DATABASE_URL)"
	@echo "make lint             buf lint, ruff, mypy --strict"
	@echo "make generate         protos/ -> generated/"
	@echo "make bench            quick benchmark -> bench/results (ARGS=--check holds it to the targets)"
	@echo "make bench-full       the same, longer per level"
	@echo "make chaos            the bank under injected faults -> chaos/results (docs/reliability.md)"

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# protoc-gen-mypy announces every file it writes on stderr; only those lines
# are dropped, anything else protoc says (errors, warnings) still shows.
# Callers must `set -o pipefail` so that protoc's exit status survives grep.
protoc_into = PATH="$(abspath $(BIN)):$$PATH" $(PROTOC) \
	--python_out=$(1) --pyi_out=$(1) --grpc_python_out=$(1) --mypy_grpc_out=$(1) \
	$(PROTO_FILES) 2>&1 | { grep -v '^Writing mypy to ' || true; } >&2

# generated/ is committed so that a checkout runs without protoc; `make
# check-generated` (part of lint and CI) fails when it is stale.
generate: $(INSTALLED)
	@set -o pipefail; \
	rm -rf generated/bankmesh && mkdir -p generated && \
	$(call protoc_into,generated) && \
	find generated/bankmesh -type d -exec touch {}/__init__.py \; && \
	echo "generated/bankmesh regenerated from protos/"

check-generated: $(INSTALLED)
	@set -o pipefail; \
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(call protoc_into,"$$tmp") && \
	find "$$tmp/bankmesh" -type d -exec touch {}/__init__.py \; && \
	if ! diff -r -q -x __pycache__ "$$tmp/bankmesh" generated/bankmesh >"$$tmp/diff"; then \
		sed "s|$$tmp/||" "$$tmp/diff" >&2; \
		echo "generated/ is stale: run 'make generate' and commit the result" >&2; \
		exit 1; \
	fi

# buf is an npm package pinned in package.json/package-lock.json; `npm ci`
# runs only when node_modules/ is missing or older than those files.
node-deps: $(NODE_INSTALLED)

$(NODE_INSTALLED): package.json package-lock.json
	npm ci --silent
	@touch $@

# Every check runs even when an earlier one fails, so one run shows all
# problems; the target fails if any of them did.
lint: $(INSTALLED) $(NODE_INSTALLED)
	@fail=0; \
	step() { \
		printf '\n== %s\n' "$$1"; shift; \
		if "$$@"; then echo "-- ok"; else echo "-- FAILED"; fail=1; fi; \
	}; \
	step "generated/ matches protos/" $(MAKE) --no-print-directory check-generated; \
	step "buf lint" $(BUF) lint; \
	step "ruff check" $(BIN)/ruff check $(PY_LINT_PATHS); \
	step "ruff format --check" $(BIN)/ruff format --check $(PY_LINT_PATHS); \
	step "mypy (strict)" $(BIN)/mypy $(PY_LINT_PATHS); \
	if [ $$fail -ne 0 ]; then printf '\nlint failed\n' >&2; fi; \
	exit $$fail

run: $(INSTALLED)
	$(BIN)/bankmesh up $(ARGS)

test: $(INSTALLED)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(INSTALLED)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The benchmark needs the bench extra (matplotlib for the chart) on top of dev.
BENCH_INSTALLED := $(VENV)/.bench-installed

$(BENCH_INSTALLED): $(INSTALLED) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

# One run measures every scenario and its baselines on this machine; see
# docs/performance.md. ARGS="--check" exits 1 when a target is missed.
bench: $(BENCH_INSTALLED)
	$(BIN)/python -m bench $(ARGS)

bench-full: $(BENCH_INSTALLED)
	$(BIN)/python -m bench --full $(ARGS)

# The chaos run draws its timeline with matplotlib: the chaos extra on top of dev.
CHAOS_INSTALLED := $(VENV)/.chaos-installed

$(CHAOS_INSTALLED): $(INSTALLED) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,chaos]'
	@touch $@

# Every fault kind twice against a real mesh; exits 1 on any invariant
# violation. ARGS="--profile short" for the one-minute version the tests run.
chaos: $(CHAOS_INSTALLED)
	$(BIN)/python -m chaos $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
