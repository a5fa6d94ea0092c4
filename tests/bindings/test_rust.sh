#!/usr/bin/env bash
# The Rust crate against the library just built: `cargo test --offline` and its example.
# usage: test_rust.sh BUILD_DIR SOURCE_DIR GOLDEN_DIR TOKENIZER_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"; src="$(cd "$2" && pwd)"
export DSV4_MODEL="$3/tiny-a" DSV4_TOKENIZER="$4"
export PKG_CONFIG_PATH="$build/pkgconfig" CARGO_TARGET_DIR="$build/rust-target"
export PATH="$PATH:$HOME/.cargo/bin"
command -v cargo >/dev/null || { echo "cargo is not installed (scripts/setup installs it)"; exit 1; }
cd "$src/bindings/rust"
cargo test --offline -q
cargo run --offline -q --example generate
