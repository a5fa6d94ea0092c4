#!/usr/bin/env bash
# Every symbol libdsv4.so exports must start with dsv4_ (everything else stays hidden).
set -euo pipefail
lib="$1"
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^$' || true)
bad=$(echo "$exported" | grep -v '^dsv4_' | grep -v -E '^(_init|_fini|_edata|_end|__bss_start)$' || true)
count=$(echo "$exported" | grep -c '^dsv4_' || true)
if [ -n "$bad" ]; then
  echo "symbols outside the dsv4_ prefix are exported:"; echo "$bad" | head -20
  exit 1
fi
if [ "$count" -lt 10 ]; then echo "only $count dsv4_ symbols exported"; exit 1; fi
echo "$count dsv4_* symbols exported, nothing else"
