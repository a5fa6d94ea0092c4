#!/usr/bin/env bash
# Differential test of the tokenizer against @huggingface/tokenizers on 3,300 random strings drawn
# from hard character classes (every White_Space code point and U+FEFF/U+200B, combining marks,
# the "digit" classes of \p{N}, CJK inside and outside the split range, Hangul, kana, RTL, emoji
# sequences, control characters, protocol-token look-alikes). Needs npm (test tooling) and a
# build of dsv4. usage: benchmarks/tokenizer/differential.sh [TOKENIZER_DIR] [DSV4_BINARY]
set -euo pipefail
cd "$(dirname "$0")"
tok="$(cd "${1:-../../../shared/tokenizer/deepseek-v4}" && pwd)"
dsv4="${2:-../../build/bin/dsv4}"
[ -d node_modules ] || npm ci --silent --no-audit --no-fund
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && python3 "$OLDPWD/differential_corpus.py")
node differential.mjs "$tok" "$work/texts.jsonl" > "$work/ref.txt"
"$dsv4" tokenize --tokenizer "$tok" --jsonl --special < "$work/texts.jsonl" > "$work/ours.txt"
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
ref, ours = open(f"{w}/ref.txt").read().splitlines(), open(f"{w}/ours.txt").read().splitlines()
texts = open(f"{w}/texts.jsonl", encoding="utf-8").read().splitlines()
bad = [i for i in range(len(ref)) if json.loads(ref[i]) != json.loads(ours[i])]
for i in bad[:10]:
    print("mismatch:", texts[i], ref[i][:100], ours[i][:100])
print(f"{len(ref)} strings, {len(bad)} mismatches")
sys.exit(1 if bad or len(ref) != len(ours) else 0)
PY
