#!/usr/bin/env bash
# Build the node half of a one-node cluster from sources, into the cached bin directory of
# tools/envtest/build.sh (which it runs first), so control plane and node come from one release:
#   kubelet, kube-proxy   k8s.io/kubernetes, the envtest release
#   pause                 Kubernetes' own build/pause/linux/pause.c from that module, static: the
#                         CRI sandbox image, which no registry can provide here
#   coredns               CoreDNS with only the plugins a cluster's DNS needs (kubernetes, cache,
#                         errors, health, ready, bind), so none of its cloud SDKs are compiled
# Each binary is built only when missing.
#   tools/cluster/build.sh            -> prints the bin directory
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="$("$HERE/../envtest/build.sh")"
K8S_VERSION="${K8S_VERSION:-1.31.4}"
COREDNS_VERSION="${COREDNS_VERSION:-1.11.3}"
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

if missing pause; then
  src="$(cd "$CACHE/node-src" && "$GO" list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux"
  gcc -Os -Wall -Werror -static -DVERSION="v${K8S_VERSION}-infergraph" -o "$BIN/pause" "$src/pause.c"
fi

if missing coredns; then
  mkdir -p "$CACHE/coredns-src" && cd "$CACHE/coredns-src"
  printf 'module infergraph.local/coredns\n\ngo 1.22\n' > go.mod
  # CoreDNS's own main compiles every plugin of plugin.cfg; an external main sets the directive
  # list (in plugin.cfg's order, which is the order a query passes them) and imports only those.
  cat > main.go <<'GOSRC'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GOSRC
  "$GO" get "github.com/coredns/coredns@v${COREDNS_VERSION}" >/dev/null 2>&1
  "$GO" mod tidy >/dev/null 2>&1
  nice -n 19 "$GO" build -o "$BIN/coredns" .
fi
echo "$BIN"
