#!/usr/bin/env bash
# dsv4 eval reproduces the golden logits through the CLI; generate is deterministic; bad input fails.
set -euo pipefail
bin="$1"; tool="$2"; golden="$3"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for name in tiny-a tiny-a-q; do
  "$tool" tokens "$golden/$name" > "$work/tokens.txt"
  out=$("$bin" eval --model "$golden/$name" --tokens "$work/tokens.txt" --prompt-len 250 --out "$work/$name.safetensors")
  echo "$out"
  grep -qE '^mean NLL: [0-9.]+ nats/token' <<<"$out"
  grep -qE '^prefill: [0-9.]+ tokens/s' <<<"$out"
  grep -qE '^decode: +[0-9.]+ tokens/s' <<<"$out"
  grep -qE '^memory: weights [0-9.]+ MB resident, KV cache [0-9.]+ MB, peak working [0-9.]+ MB' <<<"$out"
  "$tool" compare "$work/$name.safetensors" "$golden/$name"
done
# The official numerics through the CLI reproduce the official reference.
out=$("$bin" eval --model "$golden/tiny-a-q" --numerics official --tokens "$work/tokens.txt" --prompt-len 250 --out "$work/official.safetensors")
"$tool" compare "$work/official.safetensors" "$golden/tiny-a-q/official.safetensors"
if "$bin" eval --model "$golden/tiny-a-q" --numerics fast --tokens "$work/tokens.txt" --prompt-len 250 --out "$work/x.safetensors" 2>"$work/err"; then exit 1; fi
grep -q -- '--numerics must be exact or official' "$work/err"
# Save after 200 tokens, resume with the whole file: the decode matches the golden.
head -200 "$work/tokens.txt" > "$work/first200.txt"
"$bin" eval --model "$golden/tiny-a" --tokens "$work/first200.txt" --prompt-len 200 --out "$work/first.safetensors" --save "$work/s.session" | grep -q 'saved the session (200 tokens)'
out=$("$bin" eval --model "$golden/tiny-a" --tokens "$work/tokens.txt" --prompt-len 250 --resume "$work/s.session" --out "$work/resumed.safetensors")
grep -q '200 resumed' <<<"$out"
"$tool" compare-decode "$work/resumed.safetensors" "$golden/tiny-a"
# The window-less and checkpoint strategies resume to the same logits as the full one.
for swa in none checkpoint:64; do
  "$bin" eval --model "$golden/tiny-a" --tokens "$work/first200.txt" --prompt-len 200 --out "$work/first.safetensors" --save "$work/s-$swa.session" --swa "$swa" >/dev/null
  "$bin" eval --model "$golden/tiny-a" --tokens "$work/tokens.txt" --prompt-len 250 --resume "$work/s-$swa.session" --out "$work/resumed-$swa.safetensors" >/dev/null
  cmp "$work/resumed.safetensors" "$work/resumed-$swa.safetensors"
done
[ "$(stat -c %s "$work/s-none.session")" -lt "$(stat -c %s "$work/s.session")" ]
if "$bin" eval --model "$golden/tiny-a" --tokens "$work/first200.txt" --prompt-len 200 --out "$work/x.safetensors" --save "$work/x.session" --swa checkpoint:0 2>"$work/err"; then exit 1; fi
grep -q -- '--swa must be full, none or checkpoint:N' "$work/err"
# A token file that does not start with the saved tokens, a damaged file, another model.
tail -n +2 "$work/tokens.txt" > "$work/shifted.txt"
if "$bin" eval --model "$golden/tiny-a" --tokens "$work/shifted.txt" --prompt-len 250 --resume "$work/s.session" --out "$work/x.safetensors" 2>"$work/err"; then exit 1; fi
grep -q 'does not continue the saved session' "$work/err"
printf 'garbage' > "$work/bad.session"
if "$bin" eval --model "$golden/tiny-a" --tokens "$work/tokens.txt" --prompt-len 250 --resume "$work/bad.session" --out "$work/x.safetensors" 2>"$work/err"; then exit 1; fi
grep -q 'CORRUPT_FILE' "$work/err"
if "$bin" eval --model "$golden/tiny-a-q" --tokens "$work/tokens.txt" --prompt-len 250 --resume "$work/s.session" --out "$work/x.safetensors" 2>"$work/err"; then exit 1; fi
grep -q 'MODEL_MISMATCH' "$work/err"
head -20 "$work/tokens.txt" > "$work/prompt.txt"
a=$("$bin" generate --model "$golden/tiny-a" --tokens "$work/prompt.txt" -n 12 2>/dev/null)
b=$("$bin" generate --model "$golden/tiny-a" --tokens "$work/prompt.txt" -n 12 2>/dev/null)
[ "$a" = "$b" ] && [ "$(wc -w <<<"$a")" -eq 12 ] || { echo "greedy generation not deterministic: '$a' vs '$b'"; exit 1; }
c=$("$bin" generate --model "$golden/tiny-a" --tokens "$work/prompt.txt" -n 12 --temperature 0.8 --top-k 20 --seed 3 2>"$work/gen_err")
[ "$(wc -w <<<"$c")" -eq 12 ]
grep -qE 'prefill [0-9.]+ tokens/s; memory: weights [0-9.]+ MB resident' "$work/gen_err"
# Bad input: clear messages, non-zero exit.
echo "1 2 x 4" > "$work/bad.txt"
if "$bin" eval --model "$golden/tiny-a" --tokens "$work/bad.txt" --prompt-len 2 --out "$work/x.safetensors" 2>"$work/err"; then exit 1; fi
grep -q 'not an integer' "$work/err"
echo "1 2 999" > "$work/range.txt"
if "$bin" eval --model "$golden/tiny-a" --tokens "$work/range.txt" --prompt-len 2 --out "$work/x.safetensors" 2>"$work/err"; then exit 1; fi
grep -q 'outside the vocabulary' "$work/err"
if "$bin" eval --model "$golden/tiny-a" --tokens "$work/prompt.txt" --prompt-len 0 --out "$work/x.safetensors" 2>"$work/err"; then exit 1; fi
grep -q 'prompt-len' "$work/err"
if "$bin" eval --model "$golden/tiny-a" --tokens "$work/prompt.txt" --prompt-len 5 --out /nonexistent/dir/x.safetensors 2>"$work/err"; then exit 1; fi
grep -q 'IO' "$work/err"
echo "dsv4 eval/generate: all checks passed"
