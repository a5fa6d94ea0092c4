#!/usr/bin/env bash
# `dsv4 chat` in a real terminal (tmux): two turns, and the second turn prefills only its own new
# tokens (the first turn's prompt and reply stay in the session's cache). The expected counts come
# from `dsv4 chat-render` of the same messages.
# usage: test_cli_chat_tmux.sh DSV4_BINARY TOKENIZER_DIR
set -euo pipefail
dsv4="$1"
tok="$2"
command -v tmux >/dev/null || { echo "tmux is not installed (scripts/setup installs it)"; exit 1; }
name="dsv4chat$$"
log="$(mktemp)"
trap 'tmux kill-session -t "$name" 2>/dev/null || true; rm -f "$log"' EXIT

tmux new-session -d -s "$name" -x 200 -y 50 \
  "$dsv4 chat --preset demo --tokenizer '$tok' -n 6 --seed 1 --system 'Be brief.' 2>&1; sleep 30"
wait_for() {  # wait_for PATTERN COUNT: until PATTERN appears COUNT times on the pane
  for _ in $(seq 1 600); do
    tmux capture-pane -p -t "$name" -S - > "$log"
    [ "$(grep -c -- "$1" "$log" || true)" -ge "$2" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$1'"; cat "$log"; exit 1
}
wait_for '^>' 1
tmux send-keys -t "$name" 'Hello there' Enter
wait_for '^\[prefill' 1
tmux send-keys -t "$name" 'And a second question?' Enter
wait_for '^\[prefill' 2
tmux send-keys -t "$name" '/exit' Enter
cat "$log"

first=$(grep -o '^\[prefill [0-9]*' "$log" | sed -n 1p | grep -o '[0-9]*$')
second=$(grep -o '^\[prefill [0-9]*' "$log" | sed -n 2p | grep -o '[0-9]*$')
count_ids() { "$dsv4" chat-render --tokenizer "$tok" --jsonl | python3 -c 'import json,sys; print(len(json.loads(sys.stdin.read())["ids"]))'; }
want_first=$(echo '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"}],"args":{"thinking_mode":"chat"}}' | count_ids)
# With the first turn as context only the new user turn and the assistant opening are rendered.
want_second=$(echo '{"messages":[{"role":"user","content":"And a second question?"}],"args":{"thinking_mode":"chat","context":[{"role":"user","content":"Hello there"},{"role":"assistant","content":"x"}]}}' | count_ids)
echo "prefill: turn 1 $first tokens (expected $want_first), turn 2 $second tokens (expected $want_second)"
[ "$first" = "$want_first" ] && [ "$second" = "$want_second" ]
