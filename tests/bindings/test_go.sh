#!/usr/bin/env bash
# The Go package against the library just built: `go test ./...` and its example (offline).
# usage: test_go.sh BUILD_DIR SOURCE_DIR GOLDEN_DIR TOKENIZER_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"; src="$(cd "$2" && pwd)"
export DSV4_MODEL="$3/tiny-a" DSV4_TOKENIZER="$4"
# Go's build cache does not notice changes to C headers outside the package: a cache per version
# of dsv4.h, so a grown struct is never read with a stale cgo layout (that smashed the stack).
header_hash=$(sha256sum "$src/capi/include/dsv4.h" | cut -c1-16)
export PKG_CONFIG_PATH="$build/pkgconfig" GOCACHE="$build/go-cache-$header_hash" GOPATH="$build/go-path"
export GOPROXY=off GOFLAGS=-buildvcs=false
command -v go >/dev/null || { echo "go is not installed (scripts/setup installs golang-go)"; exit 1; }
cd "$src/bindings/go"
go test ./...
go run ./examples/generate
