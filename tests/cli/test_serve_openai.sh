#!/usr/bin/env bash
# dsv4 serve driven by the official openai npm client (installed here, into the build tree: npm
# packages are test tooling only). usage: test_serve_openai.sh DSV4_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
bin="$1"; src="$(cd "$2" && pwd)"; work="$3"
command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are needed"; exit 1; }
mkdir -p "$work"
cp "$src/tests/serve/package.json" "$src/tests/serve/openai_client.mjs" "$work/"
if [ ! -d "$work/node_modules/openai" ]; then
  (cd "$work" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
key="openai-test-key"
out="$work/serve.out"
"$bin" serve --demo --port 0 --api-key "$key" >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do grep -q "http://" "$out" && break; sleep 0.1; done
base=$(grep -o "127.0.0.1:[0-9]*" "$out" | head -1)
[ -n "$base" ] || { cat "$out"; exit 1; }
node "$work/openai_client.mjs" "$base" "$key"
