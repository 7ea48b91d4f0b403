# bankmesh build. `make run` and `make test` are all a newcomer needs: each
# creates .venv/ and installs what it needs on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
PROTOC := $(BIN)/python -m grpc_tools.protoc -I protos -I third_party/googleapis

.PHONY: help venv generate check-generated lint test test-all run clean

help:
	@echo "make run              start the mesh (embedded PostgreSQL when DATABASE_URL is unset)"
	@echo "make test             unit + integration tests (embedded PostgreSQL unless BANKMESH_TEST_DATABASE_URL)"
	@echo "make lint             buf lint, ruff, mypy --strict"
	@echo "make generate         protos/ -> generated/"

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# generated/ is committed so that a checkout runs without protoc; `make
# check-generated` (part of lint and CI) fails when it is stale.
generate: $(INSTALLED)
	rm -rf generated/bankmesh
	mkdir -p generated
	PATH="$(abspath $(BIN)):$$PATH" $(PROTOC) \
		--python_out=generated --pyi_out=generated \
		--grpc_python_out=generated --mypy_grpc_out=generated \
		$(PROTO_FILES)
	find generated/bankmesh -type d -exec touch {}/__init__.py \;

check-generated: $(INSTALLED)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	PATH="$(abspath $(BIN)):$$PATH" $(PROTOC) \
		--python_out=$$tmp --pyi_out=$$tmp \
		--grpc_python_out=$$tmp --mypy_grpc_out=$$tmp \
		$(PROTO_FILES) >/dev/null && \
	find $$tmp/bankmesh -type d -exec touch {}/__init__.py \; && \
	diff -r -q $$tmp/bankmesh generated/bankmesh >/dev/null || \
	{ echo "generated/ is stale: run 'make generate' and commit the result"; exit 1; }

run: $(INSTALLED)
	$(BIN)/bankmesh up $(ARGS)

test: $(INSTALLED)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(INSTALLED)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
