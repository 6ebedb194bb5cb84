#!/usr/bin/env bash
# Build KServe's own controller (github.com/kserve/kserve, cmd/manager) from the Go module proxy,
# the version the router bench builds its router from, so tests/k8s/test_kserve_oracle.py can
# run it beside ours and diff what the two produce. Its published CRDs (config/crd/full) and
# serving runtimes (config/runtimes, with the default ClusterStorageContainer) come from the same module and are copied next to the
# binary: nothing of KServe's is committed here. Cached outside the repo, keyed by version, so
# a machine builds it once (about 15 minutes on 2 shared cores with an empty Go module cache).
#   tools/kserve/build.sh        -> prints the directory holding bin/manager, crd/, runtimes/
set -euo pipefail
KSERVE_VERSION="${KSERVE_VERSION:-0.15.2}"
CACHE="${INFERGRAPH_CACHE:-$HOME/.cache/infergraph}/kserve-manager-${KSERVE_VERSION}"
BIN="$CACHE/bin/manager"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [ -x "$BIN" ] && [ -f "$CACHE/crd/.complete" ] && [ -f "$CACHE/runtimes/.complete" ]; then
  echo "$CACHE"; exit 0
fi
echo "building KServe's manager v${KSERVE_VERSION} into $CACHE (once)" >&2
mkdir -p "$CACHE/src" "$CACHE/bin" "$CACHE/crd" "$CACHE/runtimes"
cd "$CACHE/src"
cat > go.mod <<GOMOD
module infergraph.local/kservemanager

go 1.24

require github.com/kserve/kserve v${KSERVE_VERSION}
GOMOD
printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/kserve/kserve/cmd/manager"\n' > tools.go
export GOFLAGS=-mod=mod
"$GO" mod tidy >&2 || true
[ -x "$BIN" ] || "$GO" build -o "$BIN" github.com/kserve/kserve/cmd/manager >&2
module_dir="$("$GO" list -m -f '{{.Dir}}' "github.com/kserve/kserve")"
cp "$module_dir"/config/crd/full/serving.kserve.io_*.yaml "$CACHE/crd/"
cp "$module_dir"/config/runtimes/*.yaml "$CACHE/runtimes/"
cp "$module_dir"/config/storagecontainers/default.yaml "$CACHE/runtimes/storagecontainer-default.yaml"
# The module cache is read-only; the copies need not be.
chmod -R u+w "$CACHE/crd" "$CACHE/runtimes"
touch "$CACHE/crd/.complete" "$CACHE/runtimes/.complete"
echo "$CACHE"
