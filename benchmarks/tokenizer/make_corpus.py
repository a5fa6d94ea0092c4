#!/usr/bin/env python3
"""Writes the tokenizer benchmark's mixed corpus as JSON Lines (one document per line): the
reference vectors (prose, edge cases, CJK, emoji, numbers), the rendered chat prompts, and this
repository's C++ sources and Markdown docs, repeated to about `size_mb` MB.
usage: make_corpus.py TOKENIZER_DIR REPO_DIR OUT [size_mb]"""
import glob
import json
import sys

tok_dir, repo, out = sys.argv[1], sys.argv[2], sys.argv[3]
size = float(sys.argv[4]) if len(sys.argv) > 4 else 4.0
docs = [json.loads(l)["text"] for l in open(f"{tok_dir}/vectors.jsonl", encoding="utf-8")]
docs += [json.loads(l)["rendered"] for l in open(f"{tok_dir}/chat-cases.jsonl", encoding="utf-8")
         if '"rendered"' in l]
for pattern in ("src/text/*.cpp", "src/cpu/*.hpp", "docs/*.md", "README.md"):
    for path in sorted(glob.glob(f"{repo}/{pattern}")):
        docs.append(open(path, encoding="utf-8").read())
lines, total = [], 0
while total < size * 1e6:
    for d in docs:
        lines.append(json.dumps(d, ensure_ascii=False))
        total += len(d.encode())
with open(out, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
print(f"{out}: {len(lines)} documents, {total / 1e6:.2f} MB")
