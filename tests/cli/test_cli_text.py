#!/usr/bin/env python3
"""The JSON Lines batch tools against the reference files: every tokenizer vector through
`dsv4 tokenize --special`, every render case through `dsv4 chat-render`, every parse case through
`dsv4 chat-parse`. usage: test_cli_text.py DSV4_BINARY TOKENIZER_DIR"""
import json
import subprocess
import sys

dsv4, tok_dir = sys.argv[1], sys.argv[2]


def run(args, rows):
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    out = subprocess.run([dsv4] + args, input=lines.encode(), capture_output=True, check=True)
    answers = [json.loads(l) for l in out.stdout.decode().splitlines()]
    assert len(answers) == len(rows), f"{len(answers)} answers for {len(rows)} lines"
    return answers


failures = 0
vectors = [json.loads(l) for l in open(f"{tok_dir}/vectors.jsonl", encoding="utf-8")]
for v, ids in zip(vectors, run(["tokenize", "--tokenizer", tok_dir, "--jsonl", "--special"], [v["text"] for v in vectors])):
    if ids != v["ids"]:
        failures += 1
        print(f"tokenize vector {v['i']}: {ids} != {v['ids']}")

cases = [json.loads(l) for l in open(f"{tok_dir}/chat-cases.jsonl", encoding="utf-8")]
render = [c for c in cases if c["kind"] == "render"]
for c, got in zip(render, run(["chat-render", "--tokenizer", tok_dir, "--jsonl"],
                              [{"messages": c["messages"], "args": c["args"], "variant": c["variant"]} for c in render])):
    if got.get("rendered") != c["rendered"] or got.get("ids") != c["ids"]:
        failures += 1
        print(f"chat-render {c['id']}: {got}")

parse = [c for c in cases if c["kind"] == "parse"]
for c, got in zip(parse, run(["chat-parse", "--jsonl"],
                             [{"completion": c["completion"], "thinking_mode": c["thinking_mode"]} for c in parse])):
    if "error" in c:
        ok = "error" in got and got["error"] in c["error"]
    else:
        ok = got == c["parsed"]
    if not ok:
        failures += 1
        print(f"chat-parse {c['id']}: {got}")

# A line that is not JSON gets an error line, and the next line is still answered.
bad = subprocess.run([dsv4, "tokenize", "--tokenizer", tok_dir, "--jsonl"], input=b'not json\n"ok"\n',
                     capture_output=True, check=True).stdout.decode().splitlines()
if len(bad) != 2 or "error" not in json.loads(bad[0]) or json.loads(bad[1]) != [633]:
    failures += 1
    print(f"bad-line handling: {bad}")

print(f"{len(vectors)} vectors, {len(render)} render cases, {len(parse)} parse cases: {failures} failures")
sys.exit(1 if failures else 0)
