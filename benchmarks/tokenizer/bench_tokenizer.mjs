// Encode throughput of @huggingface/tokenizers (the implementation the reference vectors were
// made with) on the same corpus and files as bench_tokenizer.cpp. Prints the median MB/s.
// usage: node bench_tokenizer.mjs TOKENIZER_DIR CORPUS.jsonl [repetitions]
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, corpusPath, reps = "5"] = process.argv.slice(2);
const tokenizer = new Tokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
                                JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")));
const docs = readFileSync(corpusPath, "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l));
const bytes = docs.reduce((n, d) => n + Buffer.byteLength(d), 0);
let tokens = 0;
for (const d of docs) tokens += tokenizer.encode(d, { add_special_tokens: false }).ids.length;  // warm-up
const rates = [];
for (let r = 0; r < Number(reps); ++r) {
  const t0 = process.hrtime.bigint();
  for (const d of docs) tokenizer.encode(d, { add_special_tokens: false });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  rates.push(bytes / 1e6 / seconds);
}
rates.sort((a, b) => a - b);
console.log(JSON.stringify({ implementation: "@huggingface/tokenizers 0.2.0 (node " + process.version + ")",
                             documents: docs.length, mb: bytes / 1e6, tokens, median_mb_per_s: rates[rates.length >> 1] }));
