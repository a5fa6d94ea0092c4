#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "cli.hpp"
#include "dsv4/version.hpp"

namespace {

void print_usage() {
  std::printf(
      "dsv4 %s — DeepSeek-V4 inference\n\n"
      "usage:\n"
      "  dsv4 info --model DIR       print the config, a per-layer table and parameter/byte "
      "counts\n"
      "  dsv4 plan --model DIR | --preset v4-flash|v4-pro --context N [--kv-format F] [--ram B]\n"
      "                              memory plan: weights by dtype, cache per kind and layer,\n"
      "                              the RAM/disk split under a budget, vs a V3.2 dense MLA cache\n"
      "  dsv4 eval --model DIR --tokens FILE --prompt-len S --out OUT.safetensors [--threads N]\n"
      "            [--save SESSION [--swa full|none|checkpoint:N]] [--resume SESSION]\n"
      "                              prefill S tokens, decode the rest one by one; write logits,\n"
      "                              print mean NLL and tokens/s; --save writes the session at\n"
      "                              the end (--swa: with every window ring, none (recomputed on\n"
      "                              resume), or the rings every N tokens), --resume continues a\n"
      "                              saved one (the token file starts with its tokens)\n"
      "  dsv4 generate --model DIR --tokens FILE [-n N] [--temperature T] [--top-k K] [--seed S]\n"
      "                              sample N tokens after the prompt (greedy when T = 0)\n"
      "  dsv4 demo [--tokens N] [--decode N] [--threads N]\n"
      "                              long-context session on an embedded V4-shaped model\n"
      "  dsv4 bench [--model DIR | --preset v4-flash-slice|demo] [--contexts 1024,16384,65536]\n"
      "             [--steps N] [--prefill N] [--threads N] [--kv-format f32|bf16|packed]\n"
      "             [--batch 1,4]\n"
      "                              prefill and decode against rooflines measured in the same "
      "run;\n"
      "                              --batch: decode steps of B sessions at once, vs one\n"
      "  dsv4 run [--model DIR | --preset demo] [--tokenizer PATH] \"prompt\" [-n N] [--think]\n"
      "           [--system TEXT] [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed "
      "S]\n"
      "                              one chat turn, the reply streamed as it is generated\n"
      "  dsv4 chat [--model DIR | --preset demo] [--think] [--system TEXT] [sampling options]\n"
      "                              interactive multi-turn chat; the session (KV cache) is kept\n"
      "                              between turns, so each turn prefills only its new tokens\n"
      "  dsv4 serve --model DIR | --demo [--host 127.0.0.1] [--port 8080] [--api-key KEY]\n"
      "             [--parallel 4] [--queue 16] [--timeout 600] [--ctx N] [--kv-format F]\n"
      "             [--cache-dir DIR]\n"
      "                              OpenAI-compatible HTTP server: /health, /v1/models,\n"
      "                              /v1/chat/completions and /v1/completions (plain or\n"
      "                              streamed), /metrics; --parallel requests decoded in one\n"
      "                              batch, --queue admitted (503 beyond), --timeout seconds\n"
      "                              each; requests reuse the longest cached prefix (RAM, DIR)\n"
      "  dsv4 tokenize --tokenizer PATH --jsonl [--special]\n"
      "                              JSON strings on stdin, one JSON array of ids per line out\n"
      "  dsv4 chat-render --tokenizer PATH --jsonl\n"
      "                              {messages, args, variant} per line in, {rendered, ids} out\n"
      "  dsv4 chat-parse --jsonl     {completion, thinking_mode} per line in, the message out\n"
      "  dsv4 version                print the library version\n"
      "\n"
      "eval, generate, run, chat, demo and bench take --kv-format f32|bf16|packed (the KV cache's\n"
      "storage; packed = the official 584-byte entries and FP4 indexer keys) and --numerics\n"
      "exact|official (official = DeepSeek's inference numerics, which store the packed cache),\n"
      "--ram-budget BYTES (the disk tier: at most that much of the compressed entries and indexer\n"
      "keys stay in RAM, the rest in a zstd-compressed scratch file), --spill-dir DIR and\n"
      "--lossy-cold (opt-in: spilled compressed entries stored as e2m1, see docs/numerics.md).\n",
      dsv4::kVersionString);
}

bool parse_args(int argc, char** argv, dsv4::cli::Args* out) {
  for (int i = 2; i < argc; ++i) {
    std::string key = argv[i];
    if (key == "-n") key = "--n";
    if (key.rfind("--", 0) != 0 || key == "--") {
      out->positional.push_back(key == "--" && i + 1 < argc ? argv[++i] : argv[i]);
      continue;
    }
    key = key.substr(2);
    // Options that take no value, so that `--think "prompt"` leaves the prompt positional.
    static const char* kFlags[] = {"jsonl", "special",    "think", "raw",
                                   "text",  "lossy-cold", "demo"};
    const bool is_flag =
        std::any_of(std::begin(kFlags), std::end(kFlags), [&](const char* f) { return key == f; });
    if (!is_flag && i + 1 < argc &&
        (std::strncmp(argv[i + 1], "--", 2) != 0 || std::strcmp(argv[i + 1], "--") == 0)) {
      out->options[key] = argv[++i];
    } else {
      out->options[key] = "";
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  dsv4::cli::Args args;
  if (!parse_args(argc, argv, &args)) return 2;
  if (command == "info") return dsv4::cli::command_info(args);
  if (command == "plan") return dsv4::cli::command_plan(args);
  if (command == "eval") return dsv4::cli::command_eval(args);
  if (command == "generate") return dsv4::cli::command_generate(args);
  if (command == "demo") return dsv4::cli::command_demo(args);
  if (command == "bench") return dsv4::cli::command_bench(args);
  if (command == "tokenize") return dsv4::cli::command_tokenize(args);
  if (command == "chat-render") return dsv4::cli::command_chat_render(args);
  if (command == "chat-parse") return dsv4::cli::command_chat_parse(args);
  if (command == "run") return dsv4::cli::command_run(args);
  if (command == "chat") return dsv4::cli::command_chat(args);
  if (command == "serve") return dsv4::cli::command_serve(args);
  if (command == "version") {
    std::printf("%s\n", dsv4::kVersionString);
    return 0;
  }
  std::fprintf(stderr, "dsv4: unknown command \"%s\" (try dsv4 --help)\n", command.c_str());
  return 2;
}
