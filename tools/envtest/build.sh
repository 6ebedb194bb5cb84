#!/usr/bin/env bash
# Build a Kubernetes test control plane from Go sources (no Docker here): kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl from the k8s.io/kubernetes module, etcd from go.etcd.io,
# and KWOK (sigs.k8s.io/kwok) to simulate nodes. Binaries are cached outside the repo, keyed by
# version, and each is built only when missing, so a machine builds them once.
#   tools/envtest/build.sh            -> prints the bin directory
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-1.31.4}"
ETCD_VERSION="${ETCD_VERSION:-3.5.17}"
KWOK_VERSION="${KWOK_VERSION:-0.7.0}"
CACHE="${INFERGRAPH_CACHE:-$HOME/.cache/infergraph}/envtest-k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
BIN="$CACHE/bin"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
export GOFLAGS=-mod=mod
# Progress goes to stderr: stdout carries only the bin directory, for the Makefile.
missing() { [ ! -x "$BIN/$1" ] && echo "building $1" >&2; }
mkdir -p "$BIN"

if missing kube-apiserver || missing kube-controller-manager || missing kube-scheduler \
  || missing kubectl; then
  mkdir -p "$CACHE/src" && cd "$CACHE/src"
  minor="${K8S_VERSION#1.}"                # 31.4
  staging_version="v0.${minor}"            # v0.31.4
  cat > go.mod <<GOMOD
module infergraph.local/envtest

go 1.22

require k8s.io/kubernetes v${K8S_VERSION}
GOMOD
  # k8s.io/kubernetes requires its staging modules at v0.0.0; pin each to the matching release.
  for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
    cri-client csi-translation-lib dynamic-resource-allocation endpointslice kms kube-aggregator \
    kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils \
    pod-security-admission sample-apiserver sample-cli-plugin sample-controller; do
    echo "replace k8s.io/$m => k8s.io/$m $staging_version" >> go.mod
  done
  cat > tools.go <<'GOSRC'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GOSRC
  "$GO" mod tidy >/dev/null 2>&1 || "$GO" get "k8s.io/kubernetes@v${K8S_VERSION}"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$BIN/$cmd" ] || "$GO" build -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
fi

if missing etcd; then
  # etcd's own go.mod has replace directives, so `go install` refuses it; as a dependency of a
  # module of ours its replaces are ignored and it builds.
  mkdir -p "$CACHE/etcd-src" && cd "$CACHE/etcd-src"
  printf 'module infergraph.local/etcd\n\ngo 1.22\n' > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  "$GO" get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >/dev/null 2>&1
  "$GO" mod tidy >/dev/null 2>&1 || true
  "$GO" build -o "$BIN/etcd" go.etcd.io/etcd/server/v3
fi

if missing kwok; then
  # KWOK's go.mod has no replace directives, so `go install` at a version works as is.
  GOBIN="$BIN" "$GO" install "sigs.k8s.io/kwok/cmd/kwok@v${KWOK_VERSION}"
fi
echo "$BIN"
