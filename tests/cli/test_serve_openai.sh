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
# Runs the client in MODE against a fresh server (with DSV4_SERVE_FORCED_REPLY=REPLY when given).
run_mode() {
  local mode="$1" reply="${2:-}" out="$work/serve-$1.out" base
  if [ -n "$reply" ]; then
    DSV4_SERVE_FORCED_REPLY="$reply" "$bin" serve --demo --port 0 --api-key "$key" >"$out" 2>&1 &
  else
    "$bin" serve --demo --port 0 --api-key "$key" >"$out" 2>&1 &
  fi
  server_pid=$!
  for _ in $(seq 1 600); do grep -q "http://" "$out" && break; sleep 0.1; done
  base=$(grep -o "127.0.0.1:[0-9]*" "$out" | head -1)
  [ -n "$base" ] || { cat "$out"; exit 1; }
  node "$work/openai_client.mjs" "$base" "$key" "$mode"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
server_pid=""
trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true' EXIT
run_mode basic
run_mode tools $'Checking.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_time">\n<｜DSML｜parameter name="zone" string="true">UTC</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>'
run_mode reasoning 'Two plus two is four.</think>4'
