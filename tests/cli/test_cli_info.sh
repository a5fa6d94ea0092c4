#!/usr/bin/env bash
# dsv4 info on the golden prints the right per-layer table and totals; bad input fails cleanly.
set -euo pipefail
bin="$1"; golden="$2"
out=$("$bin" info --model "$golden/tiny-a")
expect() { if ! grep -qE "$1" <<<"$out"; then echo "missing line matching: $1"; echo "$out"; exit 1; fi; }
expect '^ +0 +SWA +- +hash +81\.15K +bf16 +bf16 *$'
expect '^ +1 +CSA +1/4 +top-k +97\.97K +bf16 +bf16 *$'
expect '^ +2 +HCA +1/128 +top-k +88\.87K +bf16 +bf16 *$'
expect '^ +3 +CSA +1/4 +top-k +97\.97K'
expect '^ +4 +HCA +1/128 +top-k +88\.87K'
expect '^ +5 +SWA +- +top-k +80\.64K'
expect '^parameters: 569\.32K total \(569321\)'
expect '^ +BF16 +216 +483328 +966656'
expect '^ +total +1310628'
outq=$("$bin" info --model "$golden/tiny-a-q")
grep -qE '^ +1 +CSA +1/4 +top-k +97\.97K +fp8-e4m3-b128 +fp4-e2m1-b32' <<<"$outq" || { echo "$outq"; exit 1; }
grep -qE '^ +F8_E8M0 +194 ' <<<"$outq" || { echo "$outq"; exit 1; }
# Bad input: a clear message and a non-zero exit, never a crash.
if "$bin" info --model /nonexistent 2>err.txt; then echo "accepted a missing model"; exit 1; fi
grep -q 'IO' err.txt
if "$bin" info 2>err.txt; then echo "accepted no --model"; exit 1; fi
grep -q -- '--model' err.txt
echo "dsv4 info: all checks passed"
