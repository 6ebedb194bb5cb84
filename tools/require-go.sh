#!/usr/bin/env bash
# Fail early, with the way out, when the Go toolchain `make test` and `make envtest` need is
# missing or too old. Go builds the test control plane (tools/envtest/build.sh) and the GJSON
# oracle (tests/gjson_oracle). The minimum is the highest `go` line among what they build:
# KWOK v0.7.0's go.mod says `go 1.24.0` (kubernetes v1.31.4 says 1.22.0, etcd v3.5.17 1.22,
# tests/gjson_oracle 1.22). Finds `go` the way build.sh does: $GO, then PATH, then Go's own
# install location. Prints nothing when Go is fine; explains on stderr and exits 1 otherwise.
set -euo pipefail
MIN_MAJOR=1
MIN_MINOR=24
GIVEN="${GO:-}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

explain() {
  cat >&2 <<EOF
make test / make envtest need Go ${MIN_MAJOR}.${MIN_MINOR} or newer: $1.
Go builds the Kubernetes test control plane (tools/envtest/build.sh: KWOK v0.7.0 needs Go 1.24)
and the GJSON oracle the condition tests compare against (tests/gjson_oracle).
Install it from https://go.dev/dl/ (Debian 12's golang-go package is 1.19, too old); on
linux-amd64 (other platforms: the matching archive there):
    curl -fsSLO https://go.dev/dl/go${MIN_MAJOR}.${MIN_MINOR}.0.linux-amd64.tar.gz
    sudo rm -rf /usr/local/go && sudo tar -C /usr/local -xzf go${MIN_MAJOR}.${MIN_MINOR}.0.linux-amd64.tar.gz
/usr/local/go/bin/go is found without changing PATH; elsewhere, put it on PATH or set GO=/path/to/go.
EOF
  exit 1
}

if [ -n "$GIVEN" ] && [ ! -x "$GO" ]; then
  explain "GO=$GO is not an executable file"
fi
[ -x "$GO" ] || explain "no \`go\` on PATH and none at /usr/local/go/bin/go"
version="$("$GO" version 2>/dev/null || true)"
# `go version` prints e.g. "go version go1.24.3 linux/amd64" (or "go1.25rc1", "devel go1.26-…").
if [[ ! "$version" =~ go([0-9]+)\.([0-9]+) ]]; then
  explain "\`$GO version\` printed '${version}', which names no Go version"
fi
major="${BASH_REMATCH[1]}"
minor="${BASH_REMATCH[2]}"
if ((major < MIN_MAJOR || (major == MIN_MAJOR && minor < MIN_MINOR))); then
  explain "$GO is Go ${major}.${minor} ('${version}')"
fi
