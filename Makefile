# The two commands a newcomer needs are `make demo` and `make test`; each does its own set-up.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo picture envtest soak clean

venv: $(STAMP)

# Reinstall when the dependency list changes; the stamp keeps repeated runs fast.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,models]'
	touch $(STAMP)

test: venv
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check router schemas graph_controller tests examples load
	$(BIN)/ruff format --check router schemas graph_controller tests examples load
	$(BIN)/mypy
	$(BIN)/lint-imports

demo: venv
	$(BIN)/python examples/train.py
	$(BIN)/python examples/demo.py

# 10 minutes of load with 1% backend faults; writes load/results/soak-<date>.{json,md} and
# fails if any request got no response or the router's RSS grew > 10%. SOAK_ARGS="--minutes 1".
soak: venv
	$(BIN)/python load/soak.py $(SOAK_ARGS)

# SVG pictures of the example graphs; installs Graphviz from Debian's packages when missing.
picture: venv
	command -v dot >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq graphviz)
	mkdir -p docs
	$(BIN)/infergraph graph examples/digits-pipeline/digits.yaml --format svg > docs/digits-pipeline.svg

# A Kubernetes test control plane built from Go sources (etcd, kube-apiserver,
# kube-controller-manager), cached in ~/.cache/infergraph; about 7 minutes on 2 cores, once.
envtest:
	tools/envtest/build.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
