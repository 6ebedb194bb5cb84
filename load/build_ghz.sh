#!/usr/bin/env bash
# Build ghz (github.com/bojand/ghz), a gRPC load generator, from the Go module proxy for the
# gRPC rows of `make bench`. Cached outside the repo, keyed by version, so a machine builds it
# once; built with `nice` so it does not take the cores from whatever else runs.
#   load/build_ghz.sh        -> prints the path of the binary
set -euo pipefail
GHZ_VERSION="${GHZ_VERSION:-0.120.0}"
CACHE="${INFERGRAPH_CACHE:-$HOME/.cache/infergraph}/ghz-${GHZ_VERSION}"
BIN="$CACHE/bin/ghz"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE/bin"
GOBIN="$CACHE/bin" nice -n 19 "$GO" install "github.com/bojand/ghz/cmd/ghz@v${GHZ_VERSION}" >&2
echo "$BIN"
