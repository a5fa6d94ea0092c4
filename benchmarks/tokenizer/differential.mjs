// Ids of every JSON-string line of FILE by @huggingface/tokenizers (the reference the vectors
// were made with), one JSON array per line: the other half of differential.sh.
// usage: node differential.mjs TOKENIZER_DIR FILE
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, file] = process.argv.slice(2);
const tok = new Tokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
                          JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")));
for (const line of readFileSync(file, "utf8").split("\n"))
  if (line) console.log(JSON.stringify(tok.encode(JSON.parse(line), { add_special_tokens: false }).ids));
