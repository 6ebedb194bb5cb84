#!/usr/bin/env bash
# Build the node half of a one-node cluster (kubelet, kube-proxy) from the same k8s.io/kubernetes
# release as tools/envtest/build.sh, into the same cached bin directory, so the control plane and
# the node come from one version. Each binary is built only when missing.
#   tools/cluster/build.sh            -> prints the bin directory
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="$("$HERE/../envtest/build.sh")"
K8S_VERSION="${K8S_VERSION:-1.31.4}"
CACHE="$(dirname "$BIN")"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
export GOFLAGS=-mod=mod
missing() { [ ! -x "$BIN/$1" ] && echo "building $1" >&2; }

if missing kubelet || missing kube-proxy; then
  # A module of its own: the envtest module's go.sum covers only the control-plane commands.
  mkdir -p "$CACHE/node-src" && cd "$CACHE/node-src"
  minor="${K8S_VERSION#1.}"
  staging_version="v0.${minor}"
  cat > go.mod <<GOMOD
module infergraph.local/node

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
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GOSRC
  "$GO" mod tidy >/dev/null 2>&1 || "$GO" get "k8s.io/kubernetes@v${K8S_VERSION}"
  for cmd in kubelet kube-proxy; do
    [ -x "$BIN/$cmd" ] || nice -n 19 "$GO" build -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
fi
echo "$BIN"
