#include <algorithm>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

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
      "  dsv4 COMMAND --help         every option of a command (unknown options are refused)\n"
      "\n"
      "eval, generate, run, chat, demo and bench take --kv-format f32|bf16|packed (the KV cache's\n"
      "storage; packed = the official 584-byte entries and FP4 indexer keys) and --numerics\n"
      "exact|official (official = DeepSeek's inference numerics, which store the packed cache),\n"
      "--ram-budget BYTES (the disk tier: at most that much of the compressed entries and indexer\n"
      "keys stay in RAM, the rest in a zstd-compressed scratch file), --spill-dir DIR and\n"
      "--lossy-cold (opt-in: spilled compressed entries stored as e2m1, see docs/numerics.md).\n",
      dsv4::kVersionString);
}

// An option a command takes: its name (after "--"), the value it wants (null: a flag) and what it
// does, for `dsv4 COMMAND --help` and for the message that refuses an unknown one.
struct Option {
  const char* name;
  const char* value;
  const char* help;
};
using Options = std::vector<Option>;

Options join(std::initializer_list<Options> groups) {
  Options out;
  for (const Options& g : groups) out.insert(out.end(), g.begin(), g.end());
  return out;
}

// Options several commands take, with one wording.
const Option kThreads = {"threads", "N", "threads (0 = all cores)"};
const Option kNumerics = {"numerics", "exact|official",
                          "exact fp32, or DeepSeek's inference numerics"};
const Option kWeights = {"weights", "repacked|stored",
                         "weights copied at load into the backend's fastest layout (default), or "
                         "as stored, mapped from the files"};

const Options kModelOptions = {
    {"model", "DIR", "a checkpoint directory (config.json, *.safetensors, tokenizer.json)"},
    {"preset", "NAME", "a built-in model with random weights instead (demo)"},
    {"tokenizer", "PATH", "a tokenizer.json (default: the model's, or the one found at build)"},
    kThreads,
    kNumerics,
    kWeights,
};
const Options kSessionOptions = {
    {"kv-format", "f32|bf16|packed", "how the KV cache stores its entries"},
    {"ram-budget", "BYTES", "keep at most this much of the compressed cache in RAM (e.g. 2G)"},
    {"spill-dir", "DIR", "where the disk tier's scratch file goes (default: the temp dir)"},
    {"lossy-cold", nullptr, "store spilled compressed entries as e2m1 (lossy, smaller)"},
};
const Options kSamplingOptions = {
    {"temperature", "T", "sampling temperature (0 = greedy)"},
    {"top-k", "K", "keep the K most likely tokens (0 = all)"},
    {"top-p", "P", "nucleus sampling"},
    {"min-p", "P", "drop tokens below P times the most likely one's probability"},
    {"repeat-penalty", "R", "repetition penalty"},
    {"presence-penalty", "R", "presence penalty"},
    {"frequency-penalty", "R", "frequency penalty"},
    {"seed", "S", "random seed"},
};
const Options kChatOptions = {
    {"n", "N", "at most N generated tokens (also -n)"},
    {"think", nullptr, "thinking mode"},
    {"system", "TEXT", "a system message"},
};

struct Command {
  const char* name;
  int (*run)(const dsv4::cli::Args&);
  Options options;
  size_t max_positional;  // arguments that are not options (run: the prompt)
};

const std::vector<Command>& commands() {
  using namespace dsv4::cli;
  static const std::vector<Command> table = {
      {"info", command_info, {{"model", "DIR", "the checkpoint directory"}}, 0},
      {"plan",
       command_plan,
       {{"model", "DIR", "a checkpoint directory"},
        {"preset", "v4-flash|v4-pro", "a released model's shape instead"},
        {"context", "N", "tokens of context"},
        {"kv-format", "f32|bf16|packed", "how the KV cache stores its entries"},
        {"ram", "BYTES", "a RAM budget for the cache (the rest on disk)"}},
       0},
      {"eval", command_eval,
       join({{{"model", "DIR", "the checkpoint directory"},
              {"tokens", "FILE", "token ids (JSON array or safetensors)"},
              {"prompt-len", "S", "prefill S tokens, decode the rest one by one"},
              {"out", "FILE", "where the logits go (safetensors)"},
              kThreads,
              kNumerics,
              kWeights,
              {"save", "FILE", "save the session at the end"},
              {"swa", "full|none|checkpoint:N", "how --save keeps the window"},
              {"resume", "FILE", "continue a saved session"}},
             kSessionOptions}),
       0},
      {"generate", command_generate,
       join({{{"model", "DIR", "the checkpoint directory"},
              {"tokens", "FILE", "the prompt's token ids"},
              {"n", "N", "tokens to sample (also -n)"},
              {"temperature", "T", "sampling temperature (0 = greedy)"},
              {"top-k", "K", "keep the K most likely tokens"},
              {"seed", "S", "random seed"},
              kThreads,
              kNumerics,
              kWeights},
             kSessionOptions}),
       0},
      {"demo", command_demo,
       join({{{"tokens", "N", "prompt length of the long-context demo"},
              {"decode", "N", "tokens to decode"},
              {"layers", "N", "layers of the embedded model"},
              kThreads,
              kNumerics,
              kWeights,
              {"text", nullptr, "the text path instead: chat prompt, sampling, streaming"},
              {"tokenizer", "PATH", "the tokenizer for --text"}},
             kSessionOptions,
             kSamplingOptions}),
       0},
      {"bench", command_bench,
       join({{{"model", "DIR", "a checkpoint directory"},
              {"preset", "v4-flash-slice|demo", "a built-in model with random weights"},
              {"contexts", "N,N,...", "decode contexts"},
              {"batch", "B,B,...", "also decode B sessions at once (vs B = 1)"},
              {"steps", "N", "decode steps per context"},
              {"prefill", "N", "prefill tokens (0 = none)"},
              kThreads,
              kNumerics,
              kWeights},
             kSessionOptions}),
       0},
      {"tokenize",
       command_tokenize,
       {{"tokenizer", "PATH", "the tokenizer.json"},
        {"jsonl", nullptr, "JSON strings on stdin, one per line (required)"},
        {"special", nullptr, "match special tokens in the text"}},
       0},
      {"chat-render",
       command_chat_render,
       {{"tokenizer", "PATH", "the tokenizer.json"},
        {"jsonl", nullptr, "one request per line on stdin (required)"}},
       0},
      {"chat-parse",
       command_chat_parse,
       {{"jsonl", nullptr, "one completion per line on stdin (required)"}},
       0},
      {"run", command_run, join({kModelOptions, kSamplingOptions, kSessionOptions, kChatOptions}),
       1},
      {"chat", command_chat, join({kModelOptions, kSamplingOptions, kSessionOptions, kChatOptions}),
       0},
      {"serve", command_serve,
       join({{{"model", "DIR", "a checkpoint directory"},
              {"demo", nullptr, "serve the embedded demo model instead"},
              {"tokenizer", "PATH", "a tokenizer.json"},
              kThreads,
              kNumerics,
              kWeights,
              {"host", "ADDR", "listen address (default 127.0.0.1)"},
              {"port", "N", "port (default 8080, 0 = any free one)"},
              {"api-key", "KEY", "require Authorization: Bearer KEY"},
              {"parallel", "N", "requests generating at once, batched (default 4)"},
              {"queue", "N", "requests admitted, running or waiting (default 16)"},
              {"timeout", "S", "seconds a request may take (default 600)"},
              {"ctx", "N", "the context of every session"},
              {"cache-dir", "DIR", "keep finished sessions on disk for the prefix cache"}},
             kSessionOptions}),
       0},
  };
  return table;
}

const Command* find_command(const std::string& name) {
  for (const Command& c : commands())
    if (name == c.name) return &c;
  return nullptr;
}

const Option* find_option(const Command& command, const std::string& name) {
  for (const Option& o : command.options)
    if (name == o.name) return &o;
  return nullptr;
}

void print_command_help(const Command& command) {
  std::printf("dsv4 %s%s\n\noptions:\n", command.name, command.max_positional ? " \"TEXT\"" : "");
  for (const Option& o : command.options) {
    const std::string left =
        std::string("--") + o.name + (o.value ? std::string(" ") + o.value : std::string());
    std::printf("  %-36s %s\n", left.c_str(), o.help);
  }
}

std::string valid_options(const Command& command) {
  std::string out;
  for (const Option& o : command.options)
    out += (out.empty() ? "--" : ", --") + std::string(o.name);
  return out;
}

// Splits the arguments after the command into options and positionals, refusing (with a message
// naming it and the valid ones, exit status 2) an unknown option, an option without its value,
// a repeated option and an argument the command does not take. 0: run; 1: --help was printed.
int parse_args(const Command& command, int argc, char** argv, dsv4::cli::Args* out) {
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      print_command_help(command);
      return 1;
    }
    if (arg == "--") {  // everything after is positional
      for (++i; i < argc; ++i) out->positional.push_back(argv[i]);
      break;
    }
    const bool is_option = arg == "-n" || (arg.rfind("--", 0) == 0 && arg.size() > 2);
    if (!is_option) {
      out->positional.push_back(arg);
      continue;
    }
    const std::string key = arg == "-n" ? "n" : arg.substr(2);
    const Option* option = find_option(command, key);
    if (!option) {
      std::fprintf(stderr, "dsv4 %s: unknown option %s (valid: %s; see dsv4 %s --help)\n",
                   command.name, arg.c_str(), valid_options(command).c_str(), command.name);
      return 2;
    }
    if (out->has(key)) {
      std::fprintf(stderr, "dsv4 %s: --%s is given twice\n", command.name, key.c_str());
      return 2;
    }
    if (!option->value) {
      out->options[key] = "";
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "dsv4 %s: --%s needs a value (%s)\n", command.name, key.c_str(),
                   option->value);
      return 2;
    }
    out->options[key] = argv[++i];
  }
  if (out->positional.size() > command.max_positional) {
    std::fprintf(stderr, "dsv4 %s: unexpected argument \"%s\"%s (see dsv4 %s --help)\n",
                 command.name, out->positional[command.max_positional].c_str(),
                 command.max_positional ? "" : ": this command takes only options", command.name);
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  if (name == "version") {
    std::printf("%s\n", dsv4::kVersionString);
    return 0;
  }
  if (const Command* command = find_command(name)) {
    dsv4::cli::Args args;
    const int parsed = parse_args(*command, argc, argv, &args);
    if (parsed != 0) return parsed == 1 ? 0 : parsed;
    return command->run(args);
  }
  std::fprintf(stderr, "dsv4: unknown command \"%s\" (try dsv4 --help)\n", name.c_str());
  return 2;
}
