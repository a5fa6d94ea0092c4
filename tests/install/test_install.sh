#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs consumers through
# find_package(dsv4) and through pkg-config.
set -euo pipefail
build="$1"; src="$2"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/dsv4.h"
test -f "$work/prefix/include/dsv4/core/dtype.hpp"
test -f "$work/prefix/lib/pkgconfig/dsv4.pc"
cmake -S "$src/tests/install" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" -j2 >/dev/null
LD_LIBRARY_PATH="$work/prefix/lib" "$work/consumer/consumer_c"
"$work/consumer/consumer_cpp"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
cc $(pkg-config --cflags dsv4) "$src/tests/install/consumer.c" -o "$work/consumer_pc" $(pkg-config --libs dsv4)
LD_LIBRARY_PATH="$work/prefix/lib" "$work/consumer_pc"
echo "install: find_package and pkg-config consumers built and ran"
