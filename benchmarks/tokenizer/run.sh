#!/usr/bin/env bash
# The tokenizer encode benchmark side by side with @huggingface/tokenizers on the same corpus.
# usage: benchmarks/tokenizer/run.sh [TOKENIZER_DIR]   (from the repository root, after building
# build-bench with -DDSV4_BUILD_BENCHMARKS=ON). Installs the JS package with npm (test tooling).
set -euo pipefail
cd "$(dirname "$0")/../.."
tok="${1:-../shared/tokenizer/deepseek-v4}"
corpus=build-bench/tokenizer_corpus.jsonl
python3 benchmarks/tokenizer/make_corpus.py "$tok" . "$corpus" 4
(cd benchmarks/tokenizer && [ -d node_modules ] || npm ci --silent --no-audit --no-fund)
for i in 1 2 3; do node benchmarks/tokenizer/bench_tokenizer.mjs "$tok" "$corpus" 5; done
DSV4_TOKENIZER_CORPUS="$corpus" DSV4_TOKENIZER_DIR="$tok" build-bench/bin/bench_tokenizer \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
