# The two commands a newcomer needs are `make demo` and `make test`; each does its own set-up.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo picture browser live-page-screenshot go envtest kserve-oracle controller-scale bench soak cluster-e2e clean

venv: $(STAMP)

# Reinstall when the dependency list changes; the stamp keeps repeated runs fast.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,models]'
	touch $(STAMP)

# tests/k8s run against a real control plane and KServe's own controller: build both first
# (fast when cached) and hand pytest the directories the build scripts print. Go is checked
# before the venv's minutes of installing.
test: go browser venv envtest kserve-oracle
	INFERGRAPH_ENVTEST_BIN="$$(tools/envtest/build.sh)" \
		INFERGRAPH_KSERVE_HOME="$$(tools/kserve/build.sh)" $(BIN)/pytest

lint: venv
	$(BIN)/ruff check router schemas graph_controller tests examples load tools
	$(BIN)/ruff format --check router schemas graph_controller tests examples load tools
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

# Debian's Chromium and its chromedriver, for the live page's browser test
# (tests/e2e/test_live_page.py); installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

# docs/live-page.png, the README's picture of the live graph page: the browser test's
# screenshot of a failing canary with a request's path shown.
live-page-screenshot: browser venv
	mkdir -p docs
	INFERGRAPH_LIVE_PAGE_SCREENSHOT=docs/live-page.png $(BIN)/pytest -q \
		tests/e2e/test_live_page.py -k failing_step_turns_red

# A Kubernetes test control plane built from Go sources (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, KWOK), cached in ~/.cache/infergraph;
# several minutes on 2 cores, once; then a no-op.
envtest: go
	@tools/envtest/build.sh

# Go >= 1.24 builds the control plane and the GJSON oracle; says how to install it otherwise.
go:
	@tools/require-go.sh

# KServe's controller (cmd/manager of github.com/kserve/kserve v0.15.2) with its published CRDs
# and runtimes, for the differential test tests/k8s/test_kserve_oracle.py; cached in
# ~/.cache/infergraph; about 15 minutes on 2 cores, once; then a no-op.
kserve-oracle: go
	@tools/kserve/build.sh

# The controller at scale: N graphs + N InferenceServices on a fresh envtest control plane;
# writes load/results/controller_scale.json. A few minutes for the default 500.
GRAPHS ?= 500
controller-scale: venv envtest
	INFERGRAPH_ENVTEST_BIN="$$(tools/envtest/build.sh)" $(BIN)/python load/controller_scale.py --graphs $(GRAPHS)

# The router's overhead against a direct backend, a bare Python proxy and KServe's Go router,
# side by side (load/bench.py); 23 minutes on a quiet machine once KServe's router and ghz are
# built, `BENCH_ARGS=--quick` a few. Installs wrk and
# nginx from Debian's packages when missing, and builds KServe's router once (Go module proxy).
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[dev,models,bench]'
	touch $(BENCH_STAMP)

bench: venv $(BENCH_STAMP)
	command -v wrk >/dev/null 2>&1 && command -v nginx >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq wrk nginx-light)
	$(BIN)/python -m load.bench $(BENCH_ARGS)

# Real pods: a one-node cluster on this machine (tests/cluster/node.py) whose kubelet runs
# containers under Debian's containerd and runc, images built here (tools/cluster/images.py),
# then tests/cluster end to end. Needs root. Installs its Debian packages when missing; builds
# kubelet, kube-proxy, CoreDNS and pause once (tools/cluster/build.sh). See the README for times.
CLUSTER_PACKAGES := containerd runc containernetworking-plugins iptables conntrack debootstrap \
	gcc libc6-dev
cluster-e2e: go venv
	@[ "$$(id -u)" = 0 ] || { echo "cluster-e2e needs root: containerd, iptables, mounts"; exit 1; }
	@for p in $(CLUSTER_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi
	$(BIN)/python examples/train.py
	bin="$$(tools/cluster/build.sh)" && \
	images="$$($(BIN)/python -m tools.cluster.images --bin-dir "$$bin")" && \
	INFERGRAPH_ENVTEST_BIN="$$bin" INFERGRAPH_CLUSTER_IMAGES="$$images" \
		$(BIN)/pytest tests/cluster -q $(CLUSTER_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
