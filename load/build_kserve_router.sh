#!/usr/bin/env bash
# Build KServe's own InferenceGraph router (github.com/kserve/kserve, cmd/router) from the Go
# module proxy, so the bench compares against it in the same run rather than quoting figures.
# The binary is cached outside the repo, keyed by version, so a machine builds it once.
#   load/build_kserve_router.sh        -> prints the path of the binary
set -euo pipefail
KSERVE_VERSION="${KSERVE_VERSION:-0.15.2}"
CACHE="${INFERGRAPH_CACHE:-$HOME/.cache/infergraph}/kserve-router-${KSERVE_VERSION}"
BIN="$CACHE/bin/kserve-router"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE/src" "$CACHE/bin"
cd "$CACHE/src"
cat > go.mod <<GOMOD
module infergraph.local/kserverouter

go 1.24

require github.com/kserve/kserve v${KSERVE_VERSION}
GOMOD
printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/kserve/kserve/cmd/router"\n' > tools.go
export GOFLAGS=-mod=mod
"$GO" mod tidy >&2 || true
"$GO" build -o "$BIN" github.com/kserve/kserve/cmd/router >&2
echo "$BIN"
